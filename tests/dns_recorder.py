"""A recorder under the real resolver, for the tests that prove no DNS leaks.

:func:`install_recorder` replaces ``_socket.getaddrinfo`` (which
``socket.getaddrinfo`` calls) and the C-level ``socket.gethostbyname``,
``gethostbyname_ex``, ``gethostbyaddr`` and ``getnameinfo`` with wrappers
that record each call.  Installed *before* ``socks5client.patch()`` saves
the functions it replaces, it sees every lookup that reaches the real
resolver.  A lookup of a forbidden name also fails loudly
(``socket.gaierror``), so a leak cannot go unnoticed even by code that
catches errors.  Lookups made on daemon threads are not recorded: the
in-process reference servers and destinations resolve for themselves there.
"""

from __future__ import annotations

import _socket
import ipaddress
import socket
import threading
from typing import Any

import pytest

__all__ = ["Resolver", "install_recorder", "is_ip_literal"]


def is_ip_literal(host: Any) -> bool:
    """Whether ``host`` names no name: an IP literal, or None/a port (a service lookup)."""
    if not isinstance(host, str):
        return True
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class Resolver:
    """Every real lookup made off daemon threads; the forbidden names are refused."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.forbidden: set[str] = set()

    def record(self, what: str, host: Any) -> None:
        if threading.current_thread().daemon:
            return
        text = host.decode() if isinstance(host, (bytes, bytearray)) else host
        self.calls.append((what, text))
        if isinstance(text, str) and text.lower().rstrip(".") in self.forbidden:
            raise socket.gaierror(socket.EAI_NONAME, f"DNS LEAK: {what}({text!r})")

    def hosts(self) -> list[Any]:
        """The host of every recorded lookup, IP literals included."""
        return [host for _what, host in self.calls]

    def names(self) -> list[tuple[str, Any]]:
        """The recorded lookups of names (not IP literals)."""
        return [(what, host) for what, host in self.calls if not is_ip_literal(host)]


def install_recorder(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    """Put a :class:`Resolver` under the socket module (before any patch saves it)."""
    rec = Resolver()
    real_gai = _socket.getaddrinfo

    def gai(host: Any, *args: Any, **kwargs: Any) -> Any:
        rec.record("getaddrinfo", host)
        return real_gai(host, *args, **kwargs)

    monkeypatch.setattr(_socket, "getaddrinfo", gai)
    for name in ("gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        real = getattr(socket, name)

        def wrapper(host: Any, *args: Any, _real: Any = real, _name: str = name) -> Any:
            rec.record(_name, host)
            return _real(host, *args)

        monkeypatch.setattr(socket, name, wrapper)
    real_gni = socket.getnameinfo

    def gni(sockaddr: Any, flags: int) -> Any:
        if not flags & socket.NI_NUMERICHOST:
            rec.record("getnameinfo", sockaddr[0])
        return real_gni(sockaddr, flags)

    monkeypatch.setattr(socket, "getnameinfo", gni)
    return rec
