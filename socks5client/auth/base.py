"""The interface every authentication method implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._conversation import Steps
    from .._secret import Secret

__all__ = ["AuthMethod"]


class AuthMethod(Protocol):
    """One SOCKS5 authentication method.

    Its sub-negotiation is a conversation (see ``socks5client._conversation``):
    a generator yielding send and receive steps, so the blocking and the
    asyncio clients run the same code.
    """

    @property
    def code(self) -> int:
        """The METHOD byte offered in the greeting."""

    def negotiate(self) -> Steps[None]:
        """Run the sub-negotiation once the proxy has chosen this method."""

    def first_message(self) -> bytes | Secret[bytes] | None:
        """What the sub-negotiation sends first, if known before the proxy answers.

        ``None`` for a method that cannot be pipelined (one whose later
        messages depend on the proxy's answers, such as GSSAPI).  A
        pipelined handshake sends this right behind the greeting, then
        runs :meth:`finish`.
        """

    def finish(self) -> Steps[None]:
        """The rest of the sub-negotiation after :meth:`first_message` was sent."""
