"""socks5client: a complete SOCKS5 client that is a drop-in for the ``socket`` module.

Quick start::

    import socks5client

    sock = socks5client.create_connection(
        ("example.com", 80), timeout=10, proxy="socks5h://127.0.0.1:1080"
    )

Names follow PySocks wherever PySocks has them, so ``import socks5client as
socks`` is usually all a PySocks user has to change.
"""

from __future__ import annotations

from .errors import (
    GeneralProxyError,
    GSSAPIAbortError,
    GSSAPIError,
    GSSAPIFramingError,
    GSSAPINoCredentialsError,
    GSSAPIProtectionRefusedError,
    GSSAPIUnknownServiceError,
    HTTPError,
    ProxyConnectionError,
    ProxyConnectionTimeoutError,
    ProxyError,
    ProxyProtocolError,
    ProxyTimeoutError,
    SOCKS4Error,
    SOCKS5AddressTypeNotSupportedError,
    SOCKS5AuthError,
    SOCKS5CommandNotSupportedError,
    SOCKS5ConnectionNotAllowedError,
    SOCKS5ConnectionRefusedError,
    SOCKS5Error,
    SOCKS5GeneralFailureError,
    SOCKS5HostUnreachableError,
    SOCKS5NetworkUnreachableError,
    SOCKS5TTLExpiredError,
    SOCKS5UnassignedReplyError,
    UDPAssociationClosedError,
)
from .patch import is_patched, patch, patched, unpatch, wrap_module
from .proxy import (
    HTTP,
    PROXY_TYPE_HTTP,
    PROXY_TYPE_SOCKS4,
    PROXY_TYPE_SOCKS5,
    SOCKS4,
    SOCKS5,
    Proxy,
    get_default_proxy,
    set_default_proxy,
)
from .sock import create_connection, socksocket

#: PySocks' older names.
setdefaultproxy = set_default_proxy
getdefaultproxy = get_default_proxy
wrapmodule = wrap_module

__version__ = "0.1.0.dev0"

__all__ = [
    "HTTP",
    "PROXY_TYPE_HTTP",
    "PROXY_TYPE_SOCKS4",
    "PROXY_TYPE_SOCKS5",
    "SOCKS4",
    "SOCKS5",
    "GSSAPIAbortError",
    "GSSAPIError",
    "GSSAPIFramingError",
    "GSSAPINoCredentialsError",
    "GSSAPIProtectionRefusedError",
    "GSSAPIUnknownServiceError",
    "GeneralProxyError",
    "HTTPError",
    "Proxy",
    "ProxyConnectionError",
    "ProxyConnectionTimeoutError",
    "ProxyError",
    "ProxyProtocolError",
    "ProxyTimeoutError",
    "SOCKS4Error",
    "SOCKS5AddressTypeNotSupportedError",
    "SOCKS5AuthError",
    "SOCKS5CommandNotSupportedError",
    "SOCKS5ConnectionNotAllowedError",
    "SOCKS5ConnectionRefusedError",
    "SOCKS5Error",
    "SOCKS5GeneralFailureError",
    "SOCKS5HostUnreachableError",
    "SOCKS5NetworkUnreachableError",
    "SOCKS5TTLExpiredError",
    "SOCKS5UnassignedReplyError",
    "UDPAssociationClosedError",
    "create_connection",
    "get_default_proxy",
    "getdefaultproxy",
    "is_patched",
    "patch",
    "patched",
    "set_default_proxy",
    "setdefaultproxy",
    "socksocket",
    "unpatch",
    "wrap_module",
    "wrapmodule",
]
