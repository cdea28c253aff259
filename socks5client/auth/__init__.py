"""Authentication methods: one module per method, all behind one small interface.

A method object has the RFC 1928 method ``code`` it answers to and an
``authenticate(channel)`` that runs the method's sub-negotiation over a
:class:`Channel`.  The channel hides the socket and the deadline, so methods
are written against messages, not I/O.
"""

from __future__ import annotations

from typing import Callable, Protocol, TypeVar

from .._codec import NeedData, Parsed

__all__ = ["AuthMethod", "Channel", "methods_for"]

_T = TypeVar("_T")


class Channel(Protocol):
    """The handshake's connection to the proxy, as an auth method sees it."""

    def send(self, data: bytes) -> None:
        """Send all of ``data`` within the handshake's deadline."""

    def receive(self, parser: Callable[[bytearray], NeedData | Parsed[_T]], what: str) -> _T:
        """Read exactly one message with ``parser``; ``what`` names it in errors."""


class AuthMethod(Protocol):
    """One SOCKS5 authentication method."""

    @property
    def code(self) -> int:
        """The METHOD byte offered in the greeting."""

    def authenticate(self, channel: Channel) -> None:
        """Run the sub-negotiation once the proxy has chosen this method."""


def methods_for(username: object, password: object) -> list[AuthMethod]:
    """The methods to offer, in order of preference, for the given credentials."""
    from .none import NoAuth
    from .userpass import UsernamePasswordAuth

    methods: list[AuthMethod] = [NoAuth()]
    if username is not None:
        methods.append(UsernamePasswordAuth(username, password))  # type: ignore[arg-type]
    return methods
