"""The name resolution the library itself uses, which the process patch never touches.

While :func:`socks5client.patch` is active, ``socket.getaddrinfo`` answers
proxied names with synthetic addresses.  The library's own lookups -- the
proxy's host, a destination resolved locally for ``socks5://``, a relay
named by the proxy -- must reach the real resolver, so they go through
:func:`getaddrinfo` here.  The patch records the real function in
``_saved`` while it is active; otherwise ``socket.getaddrinfo`` is looked
up at each call (so tests can still replace it).
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["getaddrinfo"]

#: Set by socks5client.patch while active: the functions it replaced.
_saved: dict[str, Any] = {}


def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
    """``socket.getaddrinfo`` as it was before any patch."""
    real = _saved.get("getaddrinfo")
    if real is None:
        real = socket.getaddrinfo
    result: list[Any] = real(*args, **kwargs)
    return result
