"""The interface every authentication method implements."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol, Union

    from .._conversation import Steps
    from .._secret import Secret

    #: See :meth:`AuthMethod.script`.
    Script = Union[tuple[()], tuple[Union[bytes, Secret[bytes]], bytes, str]]
else:
    from .._runtime_types import Protocol

__all__ = ["AuthMethod", "Protection"]


class Protection(Protocol):
    """Per-message protection a method agreed on (GSS-API integrity or confidentiality).

    The handshake wraps the request and unwraps the reply with it, and the
    socket then wraps all data (``socks5client._gssapi_socket``).
    """

    #: The RFC 1961 level: 1 integrity, 2 confidentiality.
    level: int
    #: The most plaintext one token may carry.
    max_payload: int

    def wrap(self, data: bytes) -> bytes:
        """A token carrying ``data``."""

    def unwrap(self, token: bytes) -> bytes:
        """The plaintext a token from the proxy carries; raise if it fails verification."""


class AuthMethod(Protocol):
    """One SOCKS5 authentication method.

    Its sub-negotiation is a conversation (see ``socks5client._conversation``):
    a generator yielding send and receive steps, so the blocking and the
    asyncio clients run the same code.
    """

    @property
    def code(self) -> int:
        """The METHOD byte offered in the greeting."""

    def negotiate(self, command: int | None = None) -> Steps[Protection | None]:
        """Run the sub-negotiation once the proxy has chosen this method.

        ``command`` is the request's CMD (CONNECT, BIND, UDP ASSOCIATE) when
        known: GSS-API asks for sequence checking on streams only.

        Returns the per-message protection it agreed on, or ``None`` for
        none (the data then flows as it is).
        """

    def script(self) -> Script | None:
        """The whole sub-negotiation when the proxy accepts, if known in advance.

        ``()`` when nothing is exchanged; ``(message, reply, what)`` for one
        message, the exact reply that accepts it and that reply's name (for
        timeout messages, as :meth:`negotiate` names it); ``None`` when the
        messages depend on the proxy's answers (GSSAPI).  The blocking
        client's quick path plays it (``SocketChannel.quick``) and hands
        any other answer to :meth:`negotiate`.
        """

    def first_message(self) -> bytes | Secret[bytes] | None:
        """What the sub-negotiation sends first, if known before the proxy answers.

        ``None`` for a method that cannot be pipelined (one whose later
        messages depend on the proxy's answers, such as GSSAPI).  A
        pipelined handshake sends this right behind the greeting, then
        runs :meth:`finish`.
        """

    def finish(self) -> Steps[None]:
        """The rest of the sub-negotiation after :meth:`first_message` was sent."""
