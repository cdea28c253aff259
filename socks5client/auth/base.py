"""The interface every authentication method implements."""

from __future__ import annotations

from typing import Callable, Protocol, TypeVar

from .._codec import NeedData, Parsed
from .._secret import Secret

__all__ = ["AuthMethod", "Channel"]

_T = TypeVar("_T")


class Channel(Protocol):
    """The handshake's connection to the proxy, as an auth method sees it."""

    def send(self, data: bytes | Secret[bytes]) -> None:
        """Send all of ``data`` within the handshake's deadline.

        Bytes that hold a password come wrapped in a :class:`Secret`; the
        channel unwraps them only inside the call that writes them.
        """

    def receive(self, parser: Callable[[bytearray], NeedData | Parsed[_T]], what: str) -> _T:
        """Read exactly one message with ``parser``; ``what`` names it in errors."""


class AuthMethod(Protocol):
    """One SOCKS5 authentication method."""

    @property
    def code(self) -> int:
        """The METHOD byte offered in the greeting."""

    def authenticate(self, channel: Channel) -> None:
        """Run the sub-negotiation once the proxy has chosen this method."""

    def first_message(self) -> bytes | Secret[bytes] | None:
        """What the sub-negotiation sends first, if known before the proxy answers.

        ``None`` for a method that cannot be pipelined (GSSAPI's first token
        depends on nothing the proxy says, but the exchange that follows
        does).  A pipelined handshake sends this right behind the greeting,
        then calls :meth:`finish`.
        """

    def finish(self, channel: Channel) -> None:
        """The rest of the sub-negotiation after :meth:`first_message` was sent."""
