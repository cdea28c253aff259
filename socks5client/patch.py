"""Process-wide routing: the default proxy and PySocks-style module wrapping.

``set_default_proxy``/``get_default_proxy`` live in :mod:`socks5client.proxy`
(they are plain data) and are re-exported here beside :func:`wrap_module`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .proxy import get_default_proxy, set_default_proxy

__all__ = ["get_default_proxy", "set_default_proxy", "wrap_module"]


def wrap_module(module: ModuleType) -> None:
    """Make ``module.socket.socket`` a :class:`~socks5client.socksocket` (PySocks' API).

    Every socket that module then creates uses the default proxy, which must
    be set first with :func:`set_default_proxy`.  As in PySocks this replaces
    the class in the ``socket`` module itself, so it affects the whole
    process; ``wrap_module(socket)`` says so directly.
    """
    from .sock import socksocket

    if get_default_proxy() is None:
        raise ValueError("no default proxy is set; call set_default_proxy() first")
    target: Any = module if module.__name__ == "socket" else module.socket
    target.socket = socksocket
