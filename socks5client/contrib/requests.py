"""A ``requests`` transport adapter that sends HTTP and HTTPS through a SOCKS5 proxy.

Mount it for the schemes that should go through the proxy::

    import requests
    from socks5client.contrib.requests import SOCKSAdapter

    session = requests.Session()
    adapter = SOCKSAdapter("socks5h://127.0.0.1:1080")
    session.mount("http://", adapter)
    session.mount("https://", adapter)

How it is built (the shape of ``urllib3.contrib.socks``, with socks5client
underneath):

* :class:`SOCKSConnection` is a urllib3 ``HTTPConnection`` whose
  ``_new_conn`` returns :func:`socks5client.create_connection`'s socket:
  the SOCKS5 handshake has already happened, the socket *is* the tunnel,
  and urllib3 then speaks HTTP on it as on any socket.
  :class:`SOCKSHTTPSConnection` adds urllib3's usual TLS on top, so SNI and
  the certificate check use the host name of the URL, never the proxy's.
* :class:`SOCKSHTTPConnectionPool` / :class:`SOCKSHTTPSConnectionPool` keep
  those connections, so a pooled connection costs one handshake however
  many requests it carries.
* :class:`SOCKSPoolManager` hands out one pool per (scheme, host, port,
  proxy).  The proxy is part of the pool key (urllib3's ``_socks_options``
  field), so a proxy taken from the environment per request never mixes
  connections made through different proxies, or made directly.
* :class:`SOCKSAdapter` is requests' ``HTTPAdapter`` with that pool manager,
  with requests' own ``proxies`` switched off for what it sends, and with
  failures turned into requests' exceptions (see :class:`SOCKSAdapter`).

``requests`` and ``urllib3`` are optional dependencies of socks5client
(the ``requests`` extra); only this module imports them.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

import requests
import requests.exceptions
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager
from urllib3.util.timeout import Timeout

from .. import errors
from .._environ import proxy_from_environment
from .._secret import guard_secrets
from ..compat import _drop_proxy_authorization
from ..proxy import Proxy
from ..sock import create_connection

if TYPE_CHECKING:
    from ..proxy import ProxyLike

__all__ = [
    "SOCKSAdapter",
    "SOCKSConnection",
    "SOCKSHTTPConnectionPool",
    "SOCKSHTTPSConnection",
    "SOCKSHTTPSConnectionPool",
    "SOCKSPoolManager",
    "SOCKSProxyError",
]

# The argument types HTTPAdapter.send and friends take (requests' own
# aliases live in a private module that older releases do not have).
_Verify = Union[bool, str]
_Cert = Union[None, str, tuple[str, str]]
_Timeout = Union[None, float, tuple[Optional[float], Optional[float]], Timeout]

#: The keyword that carries the proxy from the pool manager to each
#: connection.  urllib3's pool key has a field of this name (made for its
#: own SOCKS support), so the proxy takes part in choosing the pool.
_OPTIONS_KEY = "_socks_options"

#: REP codes that describe the *destination*: the proxy did its job and the
#: target could not be reached, exactly what a direct connection would
#: have reported.  These become requests' ConnectionError; every other
#: failure of the proxy (general failure, refused by its rules, command or
#: address type unsupported, an unassigned code) is a ProxyError.
_DESTINATION_FAILURES = frozenset({3, 4, 5, 6})

# urllib3 2 reports a failed name lookup with its own subclass; 1.26 has none.
_NameResolutionError: Any = getattr(urllib3.exceptions, "NameResolutionError", None)

# HTTPAdapter's own keyword arguments; SOCKSAdapter passes everything else
# to the pool manager.
_ADAPTER_ARGUMENTS = ("pool_connections", "pool_maxsize", "max_retries", "pool_block")


def _as_proxy(proxy: ProxyLike | None) -> Proxy | None:
    if proxy is None or isinstance(proxy, Proxy):
        return proxy
    if isinstance(proxy, str):
        return Proxy.from_url(proxy)
    raise TypeError(f"proxy must be a Proxy, a socks5h:// URL or None, not {type(proxy).__name__}")


def _socket_timeout(value: Any) -> Any:
    """A timeout ``create_connection`` understands.

    urllib3 2 resolves its "default" marker before connecting, urllib3 1.26
    passes ``socket``'s own marker; any other marker means the default too.
    """
    if value is None or isinstance(value, (int, float)):
        return value
    return socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


class SOCKSProxyError(urllib3.exceptions.ProxyError, urllib3.exceptions.NewConnectionError):
    """urllib3's view of a failure of the SOCKS5 proxy (requests raises ``ProxyError``).

    A ``ProxyError`` for requests to report, and a ``NewConnectionError`` so
    that every urllib3 release retries it as a failed connection: urllib3
    1.26 lets a bare ``ProxyError`` from ``_new_conn`` escape its retry loop.
    ``original_error`` is a ``NewConnectionError`` too, as for urllib3's own
    HTTP proxies (``Retry`` looks there to count a connection error), and
    ``__cause__`` is the socks5client error.
    """

    def __init__(self, conn: Any, message: str, error: Exception) -> None:
        # The two bases' __init__ take different arguments; set what each
        # provides by hand.  args are ProxyError's (message, error).
        Exception.__init__(self, message, error)
        self.original_error = error
        self.conn = conn
        self._message = message
        if not isinstance(getattr(type(self), "pool", None), property):
            # urllib3 1.26 names the connection "pool" (a property from 2.0).
            self.pool = conn  # type: ignore[misc]

    def __reduce__(self) -> Any:
        return type(self), (None, self._message, self.original_error)


class SOCKSConnection(HTTPConnection):
    """A urllib3 HTTP connection whose socket is a tunnel through a SOCKS5 proxy.

    The pool passes ``_socks_options={"proxy": Proxy | None}``; with ``None``
    the connection is urllib3's usual direct one.  The connect timeout is
    the deadline of the whole SOCKS5 handshake, the connection to the proxy
    included.
    """

    def __init__(
        self,
        *args: Any,
        _socks_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._socks_proxy: Proxy | None = (_socks_options or {}).get("proxy")
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        proxy = self._socks_proxy
        if proxy is None:
            return super()._new_conn()
        try:
            # _dns_host keeps a trailing dot (an absolute name); the proxy
            # resolves it, as the local resolver would for a direct one.
            sock = create_connection(
                (self._dns_host, self.port),
                _socket_timeout(self.timeout),
                self.source_address,
                socket_options=self.socket_options,
                proxy=proxy,
            )
        except OSError as exc:
            raise self._urllib3_error(exc, proxy) from exc
        except ValueError as exc:
            # A host SOCKS5 cannot carry (a name over 255 bytes...): a bad
            # URL, which requests reports as InvalidURL.
            raise urllib3.exceptions.LocationParseError(f"{self.host} ({exc})") from exc
        # What urllib3 reports for a direct connection, so that audit hooks
        # see the destination either way.
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock

    def _urllib3_error(self, exc: OSError, proxy: Proxy) -> Exception:
        """The urllib3 exception that makes requests raise what ``exc`` means.

        urllib3 retries these as connection errors (``Retry(connect=...)``),
        and requests maps them: ``ConnectTimeoutError`` to ``ConnectTimeout``,
        urllib3's ``ProxyError`` to requests' ``ProxyError``, and
        ``NewConnectionError`` to ``ConnectionError``.
        """
        where = f"{self.host}:{self.port} through the SOCKS5 proxy {proxy.url}"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            # The connection to the proxy or the handshake took longer than
            # the connect timeout (one deadline for both).
            return urllib3.exceptions.ConnectTimeoutError(
                self, f"Connection to {where} timed out. (connect timeout={self.timeout})"
            )
        failed = f"Failed to establish a new connection through the SOCKS5 proxy {proxy.url}: {exc}"
        if isinstance(exc, errors.SOCKS5Error) and exc.reply_code in _DESTINATION_FAILURES:
            return urllib3.exceptions.NewConnectionError(self, failed)
        if isinstance(exc, errors.ProxyError):
            return SOCKSProxyError(
                self,
                f"Unable to connect to SOCKS5 proxy {proxy.url}",
                urllib3.exceptions.NewConnectionError(self, failed),
            )
        if isinstance(exc, socket.gaierror) and _NameResolutionError is not None:
            # socks5:// resolves the destination here.
            error: Exception = _NameResolutionError(self.host, self, exc)
            return error
        return urllib3.exceptions.NewConnectionError(self, failed)


class SOCKSHTTPSConnection(SOCKSConnection, HTTPSConnection):
    """The HTTPS variant: TLS over the tunnel, checked against the URL's host name.

    ``HTTPSConnection.connect`` calls :meth:`SOCKSConnection._new_conn` for
    its socket and wraps it as usual, with the URL's host as SNI and as
    the name the certificate must carry.
    """


class SOCKSHTTPConnectionPool(HTTPConnectionPool):
    """A urllib3 pool of :class:`SOCKSConnection`."""

    ConnectionCls = SOCKSConnection


class SOCKSHTTPSConnectionPool(HTTPSConnectionPool):
    """A urllib3 pool of :class:`SOCKSHTTPSConnection`."""

    ConnectionCls = SOCKSHTTPSConnection


class SOCKSPoolManager(PoolManager):
    """A urllib3 ``PoolManager`` whose pools connect through a SOCKS5 proxy.

    ``proxy`` is used for every destination; ``None`` means: look at the
    environment for each request (``proxy_from_environment(scheme, host)``:
    ``<scheme>_proxy``, ``ALL_PROXY``, ``NO_PROXY``...), and connect
    directly when it names no SOCKS5 proxy.  A SOCKS4 or malformed proxy URL
    in the environment raises ``requests.exceptions.InvalidProxyURL`` (also a
    ``ValueError``).
    """

    # guard_secrets: ``proxy`` may be a URL with a password, which a
    # ValueError for a malformed URL would otherwise keep in this frame's
    # and _as_proxy's locals.
    @guard_secrets
    def __init__(
        self,
        proxy: ProxyLike | None = None,
        num_pools: int = 10,
        headers: Mapping[str, str] | None = None,
        **connection_pool_kw: Any,
    ) -> None:
        if _OPTIONS_KEY in connection_pool_kw:
            raise TypeError(f"{_OPTIONS_KEY} is set by SOCKSPoolManager itself")
        self.socks_proxy = _as_proxy(proxy)
        super().__init__(num_pools, headers, **connection_pool_kw)
        self.pool_classes_by_scheme = {
            "http": SOCKSHTTPConnectionPool,
            "https": SOCKSHTTPSConnectionPool,
        }

    def proxy_for(self, scheme: str, host: str, port: int | None = None) -> Proxy | None:
        """The proxy for connections to ``scheme://host:port`` (``None``: direct)."""
        if self.socks_proxy is not None:
            return self.socks_proxy
        try:
            return proxy_from_environment(scheme.lower(), host, port=port)
        except ValueError as exc:
            # The message names the variable and never shows a password.
            problem = str(exc)
        # Raised outside the except block, so that it has no __context__
        # (``from None`` only hides it from the printed traceback, not from
        # error reporters that follow it).
        raise requests.exceptions.InvalidProxyURL(problem)

    def connection_from_context(self, request_context: dict[str, Any]) -> HTTPConnectionPool:
        # Every way of getting a pool (connection_from_url, _host, requests'
        # get_connection*) ends here, so this is where the proxy is chosen.
        context = dict(request_context)
        scheme = context["scheme"]
        port = context.get("port") or {"http": 80, "https": 443}.get(scheme.lower())
        context[_OPTIONS_KEY] = {"proxy": self.proxy_for(scheme, context["host"], port)}
        return super().connection_from_context(context)


def _socks_error_in(exc: BaseException) -> errors.ProxyError | None:
    """The socks5client error behind ``exc``, searched through urllib3's wrappers.

    requests keeps urllib3's exception in ``args`` (``MaxRetryError``, whose
    ``reason`` is the error urllib3 retried, whose ``__cause__`` or
    ``original_error`` leads on).
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, errors.ProxyError):
            return current
        linked = (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            getattr(current, "original_error", None),
            *current.args,
        )
        pending.extend(e for e in linked if isinstance(e, BaseException))
    return None


class SOCKSAdapter(HTTPAdapter):
    """A ``requests`` transport adapter that connects through a SOCKS5 proxy.

    :param proxy: a :class:`~socks5client.Proxy` or a ``socks5h://`` /
        ``socks5://`` URL used for every request; ``None`` (the default)
        chooses per request from the environment (``<scheme>_proxy``,
        ``ALL_PROXY``, ``SOCKS_PROXY``, ``NO_PROXY``), going direct when no
        SOCKS5 proxy applies.  Loopback and ``localhost`` go direct in that
        case, unless ``NO_PROXY`` says otherwise.
    :param pool_kwargs: ``HTTPAdapter``'s own arguments (``pool_connections``,
        ``pool_maxsize``, ``max_retries``, ``pool_block``) and any keyword a
        urllib3 pool takes (``socket_options``, ``source_address``...).

    Each pooled connection is one SOCKS5 handshake, reused for as many
    requests as HTTP keep-alive allows.  ``timeout=(connect, read)``: the
    connect timeout is the one deadline of the whole handshake (reaching the
    proxy, authentication, the CONNECT reply), the read timeout applies to
    the response as usual.

    requests' own ``proxies`` (from ``proxies=``, ``Session.proxies`` or
    the environment) are not used for what this adapter sends: an HTTP proxy
    in ``http_proxy`` does not take the request, and no request goes through
    urllib3's or PySocks' proxy code.  A ``Proxy-Authorization`` header that
    requests derived from the credentials in such a proxy URL (it adds one
    when following redirects) is removed, so they never reach the site.

    Failures are requests' exceptions, with the socks5client error as
    ``__cause__``:

    * the proxy unreachable, failing the handshake, refusing the
      credentials, breaking the protocol, or refusing the request (reply
      codes 1, 2, 7, 8): ``requests.exceptions.ProxyError``;
    * the handshake, connecting to the proxy included, not done within the
      connect timeout: ``requests.exceptions.ConnectTimeout``;
    * the proxy reporting the destination unreachable, refused or timed out
      (reply codes 3, 4, 5, 6): ``requests.exceptions.ConnectionError``;
    * the response not arriving within the read timeout:
      ``requests.exceptions.ReadTimeout``.

    ``max_retries`` retries connection failures, those to the proxy
    included, as ``HTTPAdapter`` does.
    """

    # What pickling keeps (HTTPAdapter's list plus ours): requests' name and shape.
    __attrs__ = [*HTTPAdapter.__attrs__, "_socks_proxy", "_socks_pool_kwargs"]  # noqa: RUF012

    # guard_secrets: as for SOCKSPoolManager, ``proxy`` may hold a password.
    @guard_secrets
    def __init__(self, proxy: ProxyLike | None = None, **pool_kwargs: Any) -> None:
        # Set before HTTPAdapter.__init__, which calls init_poolmanager.
        self._socks_proxy = _as_proxy(proxy)
        adapter_kwargs = {
            name: pool_kwargs.pop(name) for name in _ADAPTER_ARGUMENTS if name in pool_kwargs
        }
        self._socks_pool_kwargs = pool_kwargs
        super().__init__(**adapter_kwargs)

    @property
    def proxy(self) -> Proxy | None:
        """The proxy given to the constructor (``None``: from the environment)."""
        return self._socks_proxy

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = False,
        **pool_kwargs: Any,
    ) -> None:
        """Make the :class:`SOCKSPoolManager` (as ``HTTPAdapter.init_poolmanager``)."""
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = SOCKSPoolManager(
            self._socks_proxy,
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            **{**self._socks_pool_kwargs, **pool_kwargs},
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The SOCKS pool manager, whatever ``proxy`` says.

        ``HTTPAdapter`` calls this for a request that has an entry in
        ``proxies``; this adapter never lets it, but code that calls it
        anyway must not get urllib3's HTTP or SOCKS proxy machinery.
        """
        return self.poolmanager

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: _Verify,
        proxies: Mapping[str, str] | None = None,
        cert: _Cert = None,
    ) -> HTTPConnectionPool:
        """A pool for ``request`` (requests 2.32.2 and later); ``proxies`` is ignored."""
        return super().get_connection_with_tls_context(request, verify, proxies=None, cert=cert)

    def get_connection(self, url: str, proxies: Mapping[str, str] | None = None) -> Any:
        """A pool for ``url`` (requests before 2.32.2); ``proxies`` is ignored."""
        return super().get_connection(url, None)

    def request_url(
        self, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
    ) -> str:
        """The path to send: never the absolute form that HTTP proxies take."""
        return super().request_url(request, None)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: _Timeout = None,
        verify: _Verify = True,
        cert: _Cert = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` through the SOCKS5 proxy (``proxies`` is not used)."""
        _drop_derived_proxy_authorization(self, request, proxies)
        # requests fills ``proxies`` from the environment (trust_env), proxy
        # URLs and their passwords included; this frame is in the traceback
        # of every failure below, so the mapping must not stay in a local.
        del proxies
        try:
            return super().send(
                request,
                stream=stream,
                # requests accepts a urllib3 Timeout too, though its hints omit it.
                timeout=timeout,  # type: ignore[arg-type]
                verify=verify,
                cert=cert,
                proxies=None,
            )
        except urllib3.exceptions.LocationValueError as exc:
            raise requests.exceptions.InvalidURL(exc, request=request) from exc
        except requests.exceptions.RequestException as exc:
            cause = _socks_error_in(exc)
            if cause is None or exc.__cause__ is cause:
                raise
            # requests raised ``exc`` while handling urllib3's error, which
            # wraps ours two or three levels down; put ours up front.
            raise exc from cause


def _drop_derived_proxy_authorization(
    adapter: HTTPAdapter, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
) -> None:
    """Remove a ``Proxy-Authorization`` header made from a proxy URL's credentials.

    When it follows a redirect, requests adds that header for the proxy its
    ``proxies`` name for the scheme (``Session.rebuild_proxies``), SOCKS
    ones included.  This adapter sends no request to an HTTP proxy, so the
    header would go to the site itself, credentials and all.  A header the
    caller set that matches no proxy URL is left alone.
    """
    if proxies:
        _drop_proxy_authorization(request.headers, _derived_headers(adapter, proxies))


def _derived_headers(adapter: HTTPAdapter, proxies: Mapping[str, str]) -> Iterator[str | None]:
    """The ``Proxy-Authorization`` values requests would make for the URLs in ``proxies``."""
    for url in proxies.values():
        try:
            yield adapter.proxy_headers(url).get("Proxy-Authorization")
        except Exception:  # a malformed URL in proxies: not ours to judge
            continue
