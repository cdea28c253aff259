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
    """Route ``module``'s sockets through the default proxy (PySocks' API).

    Makes ``module.socket.socket`` a :class:`~socks5client.socksocket`, and
    ``module.socket.create_connection`` socks5client's own
    :func:`~socks5client.create_connection`, so that the callers of
    ``socket.create_connection`` (``http.client``, ``smtplib``, ``ftplib``,
    ``urllib``...) hand hostnames to the proxy unresolved when the default
    proxy resolves remotely (``socks5h``), instead of resolving them here
    first.  The default proxy must be set first with
    :func:`set_default_proxy`.  As in PySocks this replaces the names in
    the ``socket`` module itself, so it affects the whole process and is
    not undone; ``wrap_module(socket)`` says so directly.
    """
    from .sock import create_connection, socksocket

    if get_default_proxy() is None:
        raise ValueError("no default proxy is set; call set_default_proxy() first")
    target: Any = module if module.__name__ == "socket" else module.socket
    target.socket = socksocket
    target.create_connection = create_connection
