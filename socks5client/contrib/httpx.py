"""httpx through a SOCKS5 proxy: :class:`SOCKSTransport`.

Usage::

    import httpx
    from socks5client.contrib.httpx import SOCKSTransport

    with httpx.Client(transport=SOCKSTransport("socks5h://127.0.0.1:1080")) as client:
        client.get("https://example.com/")

The transport is httpcore's connection pool (the one ``httpx.HTTPTransport``
uses) given a network backend whose every TCP connection is a
:func:`socks5client.create_connection` tunnel.  So pooling, keep-alive,
HTTP/2, TLS and retries are httpcore's, and what goes through the proxy is
socks5client's: one deadline for the whole SOCKS5 handshake (httpx's
*connect* timeout), replies read however the proxy splits them, names sent
to the proxy (``socks5h://``) or resolved here (``socks5://``) as the URL
says, and socks5client's errors turned into httpx's (see
:class:`SOCKSTransport`).

For ``httpx.AsyncClient`` there is :class:`AsyncSOCKSTransport`, with the
same arguments and the same error mapping::

    async with httpx.AsyncClient(transport=AsyncSOCKSTransport("socks5h://...")) as client:
        await client.get("https://example.com/")

On asyncio its handshakes run on the event loop (``socks5client.asyncio``);
on trio (anyio's other backend) they run in a worker thread.  Each
transport refuses the other kind of client with a :class:`TypeError`.

This is the only module of socks5client that imports httpx and httpcore
(``pip install socks5client[httpx]``).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import math
import select
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, Union

import httpcore
import httpx

from .. import errors
from .._environ import proxy_from_environment
from .._negotiate import describe
from .._secret import guard_secrets
from ..proxy import Proxy, proxy_from_args
from ..sock import create_connection

if TYPE_CHECKING:
    from ..proxy import ProxyLike

if not all(
    hasattr(httpcore, name) for name in ("NetworkBackend", "NetworkStream", "SOCKET_OPTION")
):
    # Older httpcore (httpx 0.23 has 0.16) exports no network backend
    # interface with socket options: say so, rather than AttributeError.
    raise ImportError(
        "socks5client.contrib.httpx needs httpx 0.24.1 or later, whose httpcore exports"
        " NetworkBackend, NetworkStream and SOCKET_OPTION: pip install --upgrade httpx"
    )

__all__ = [
    "AsyncSOCKSNetworkBackend",
    "AsyncSOCKSStream",
    "AsyncSOCKSTransport",
    "SOCKSNetworkBackend",
    "SOCKSStream",
    "SOCKSTransport",
]

#: What ``cert=`` takes, as in ``httpx.HTTPTransport``: a PEM file with the
#: certificate and key, or ``(certfile, keyfile)``, or ``(certfile,
#: keyfile, password)``.
CertTypes = Union[str, tuple[str, str], tuple[str, str, str]]

#: What ``verify=`` takes, as in ``httpx.HTTPTransport``.
VerifyTypes = Union[ssl.SSLContext, str, bool]

#: httpx's own default limits (``httpx.HTTPTransport`` uses the same).
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# Before Python 3.10 socket.timeout was not TimeoutError.
_TIMEOUTS = (socket.timeout, TimeoutError)

#: Reply codes that say the proxy worked but the destination could not be
#: reached: what a direct connection would report as a connect error.  The
#: other codes (general failure, ruleset, unsupported command or address
#: type, unassigned) are the proxy failing or refusing: a proxy error.
_DESTINATION_REPLIES = frozenset({3, 4, 5, 6})

_SYNC_ONLY = (
    "socks5client.contrib.httpx.SOCKSTransport is synchronous: use it with httpx.Client."
    " For httpx.AsyncClient use socks5client.contrib.httpx.AsyncSOCKSTransport."
)

_ASYNC_ONLY = (
    "socks5client.contrib.httpx.AsyncSOCKSTransport is asynchronous: use it with"
    " httpx.AsyncClient.  For httpx.Client use socks5client.contrib.httpx.SOCKSTransport."
)


# ---------------------------------------------------------------------------
# Error mapping


#: The attribute of an httpcore exception raised here that holds the
#: OSError behind it.  ``__cause__`` alone does not do: httpcore's
#: connection pool re-raises with ``from None``, which clears it.
_ORIGINAL = "_socks5client_original"


def _httpcore_error(cls: type[Exception], exc: OSError) -> Exception:
    """An httpcore exception of class ``cls`` for ``exc``, which it keeps."""
    error = cls(str(exc) or type(exc).__name__)
    setattr(error, _ORIGINAL, exc)
    return error


def _connect_failure(exc: OSError) -> Exception:
    """The httpcore exception for a failed proxied connect (httpx maps it on)."""
    if isinstance(exc, errors.SOCKS5Error):
        if exc.reply_code in _DESTINATION_REPLIES:
            return _httpcore_error(httpcore.ConnectError, exc)
        return _httpcore_error(httpcore.ProxyError, exc)
    # Both ProxyConnectionTimeoutError (reaching the proxy) and
    # ProxyTimeoutError (the handshake) are TimeoutErrors: the one deadline
    # that covers them is httpx's connect timeout.
    if isinstance(exc, _TIMEOUTS):
        return _httpcore_error(httpcore.ConnectTimeout, exc)
    if isinstance(exc, errors.ProxyError):
        # Unreachable proxy, refused authentication, protocol violation.
        return _httpcore_error(httpcore.ProxyError, exc)
    # Local trouble: binding local_address, resolving a name for socks5://.
    return _httpcore_error(httpcore.ConnectError, exc)


def _unreachable_host(exc: ValueError) -> Exception:
    """httpcore's ConnectError for a host SOCKS5 cannot carry (a name over 255 bytes...).

    Such a host can come from a redirect; without a proxy httpx reports it
    as a failed connection, so ``except httpx.HTTPError`` must catch it here
    too.  The message is our own validation's, naming no secret.
    """
    error = httpcore.ConnectError(str(exc))
    setattr(error, _ORIGINAL, exc)
    return error


@contextlib.contextmanager
def _stream_errors(timeout_error: type[Exception], other_error: type[Exception]) -> Iterator[None]:
    """Socket errors of an established stream as the httpcore exceptions given."""
    try:
        yield
    except _TIMEOUTS as exc:
        raise _httpcore_error(timeout_error, exc) from exc
    except OSError as exc:
        raise _httpcore_error(other_error, exc) from exc


#: httpcore's exceptions and httpx's, most specific first (first match wins).
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.RequestError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    """httpcore's exceptions as httpx's, caused by the socket-level error if there is one.

    httpx's own transport chains its exception to httpcore's; here the
    cause is the error that httpcore's exception stands for when this
    module raised it (a socks5client error, an ``ssl`` or socket error), so
    ``exc.__cause__`` says what happened, with ``reply_code``, ``errno``
    and so on.  Other httpcore exceptions (h11's protocol errors...) are
    the cause themselves.
    """
    try:
        yield
    except Exception as exc:
        httpx_class = next((h for c, h in _HTTPX_ERRORS if isinstance(exc, c)), None)
        if httpx_class is None:
            raise
        original = getattr(exc, _ORIGINAL, None)
        cause = original if isinstance(original, (OSError, ValueError)) else exc
        raise httpx_class(str(exc), request=request) from cause


# ---------------------------------------------------------------------------
# The stream and the network backend (httpcore's interfaces)


def _is_readable(sock: socket.socket) -> bool:
    """Whether reading would not block: data, EOF or an error waiting.

    httpcore asks this of idle pooled connections; a readable idle
    HTTP/1.1 connection has been closed by the server (or the proxy) and
    must not be reused.
    """
    if sock.fileno() < 0:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class SOCKSStream(httpcore.NetworkStream):
    """One connection through the proxy, as httpcore reads and writes it.

    ``sock`` is connected (the SOCKS5 handshake is over), so reads and
    writes are the socket's own.  Timeouts are per call, as httpcore gives
    them.
    """

    def __init__(self, sock: socket.socket, server_addr: Any) -> None:
        self._sock = sock
        # The destination as requested, kept across start_tls(): the TLS
        # socket is a plain ssl.SSLSocket whose getpeername() is the proxy.
        self._server_addr = server_addr

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _stream_errors(httpcore.ReadTimeout, httpcore.ReadError):
            self._sock.settimeout(timeout)
            return self._sock.recv(max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _stream_errors(httpcore.WriteTimeout, httpcore.WriteError):
            # sendall's timeout bounds the whole call (Python 3.5+), as
            # httpcore's write timeout means.
            self._sock.settimeout(timeout)
            self._sock.sendall(buffer)

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> SOCKSStream:
        """TLS with the destination, through the tunnel.

        ``server_hostname`` is the destination's name (httpcore passes the
        URL's host), so SNI and the certificate check are about the site,
        never about the proxy.
        """
        with _stream_errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            try:
                self._sock.settimeout(timeout)
                tls = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
            except BaseException:
                self._sock.close()
                raise
        return SOCKSStream(tls, self._server_addr)

    def get_extra_info(self, info: str) -> Any:
        """``ssl_object``, ``client_addr``, ``server_addr``, ``socket``, ``is_readable``.

        ``server_addr`` is the destination as requested (the name, with
        ``socks5h://``); ``client_addr`` is this end of the connection to
        the proxy.  ``ssl_object`` is the ``ssl.SSLSocket``, which has the
        methods of ``ssl.SSLObject`` that callers use
        (``selected_alpn_protocol``, ``getpeercert``, ``version``...).
        """
        if info == "ssl_object":
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._server_addr
        if info == "socket":
            return self._sock
        if info == "is_readable":
            return _is_readable(self._sock)
        return None


class SOCKSNetworkBackend(httpcore.NetworkBackend):
    """An httpcore network backend whose TCP connections go through one SOCKS5 proxy.

    :class:`SOCKSTransport` builds on it; it also serves httpcore on its
    own: ``httpcore.ConnectionPool(network_backend=SOCKSNetworkBackend(url))``.
    Failures are raised as httpcore's exceptions (``ProxyError``,
    ``ConnectTimeout``, ``ConnectError``) chained to socks5client's error.
    """

    @guard_secrets
    def __init__(self, proxy: ProxyLike) -> None:
        chosen = proxy_from_args(proxy)
        if chosen is None:  # pragma: no cover - proxy_from_args needs a proxy here
            raise ValueError("a SOCKS5 proxy is required")
        self._proxy = chosen

    @property
    def proxy(self) -> Proxy:
        """The proxy every connection goes through."""
        return self._proxy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> SOCKSStream:
        """A tunnel to ``(host, port)``, the whole handshake within ``timeout``.

        ``host`` goes to the proxy as a name with ``socks5h://`` and is
        resolved here with ``socks5://``.  ``local_address`` is where the
        connection to the proxy leaves from; ``socket_options`` are set on
        that socket before it connects.
        """
        # TCP_NODELAY as httpcore's own backend sets it; before connecting,
        # so that the handshake's small messages are not held back either.
        options: list[Any] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        options.extend(socket_options or ())
        source = None if local_address is None else (local_address, 0)
        try:
            sock = create_connection(
                (host, port), timeout, source, socket_options=options, proxy=self._proxy
            )
        except OSError as exc:
            raise _connect_failure(exc) from exc
        except ValueError as exc:
            raise _unreachable_host(exc) from exc
        try:
            server_addr = sock.getpeername()
        except OSError as exc:
            sock.close()
            raise _httpcore_error(httpcore.ConnectError, exc) from exc
        return SOCKSStream(sock, server_addr)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> NoReturn:
        raise httpcore.ConnectError("a SOCKS5 proxy carries TCP connections, not Unix sockets")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._proxy.url!r})"


# ---------------------------------------------------------------------------
# The httpx transport


class _ResponseStream(httpx.SyncByteStream):
    """httpcore's response body, with httpcore's errors turned into httpx's."""

    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors(self._request):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _httpx_errors(self._request):
                close()


class _TransportBase:
    """What the synchronous and the asynchronous transports share: settings and routes."""

    @guard_secrets
    def __init__(
        self,
        proxy: ProxyLike | None = None,
        *,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> None:
        if proxy is None and not trust_env:
            raise ValueError(
                f"{type(self).__name__} needs a proxy: give one, or leave trust_env on to take it"
                " from the environment"
            )
        if http2 and importlib.util.find_spec("h2") is None:
            # Said now, rather than at the first HTTP/2 connection.
            raise ImportError("http2=True needs the 'h2' package: pip install httpx[http2]")
        self._proxy: Proxy | None = None if proxy is None else proxy_from_args(proxy)
        self._ssl_context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        self._limits = limits
        self._http1 = http1
        self._http2 = http2
        self._retries = retries
        self._local_address = local_address
        self._socket_options = None if socket_options is None else list(socket_options)
        # One pool per route: the proxy, or None for direct connections.
        # The network backend only sees host and port, so a pool cannot pick
        # a proxy per request; the choice is made here, before the pool.
        self._pools: dict[Proxy | None, Any] = {}
        self._lock = threading.Lock()

    @property
    def proxy(self) -> Proxy | None:
        """The proxy given, or ``None`` when each request takes its own from the environment."""
        return self._proxy

    def __repr__(self) -> str:
        shown = "<from the environment>" if self._proxy is None else repr(self._proxy.url)
        return f"{type(self).__name__}(proxy={shown})"

    # -- choosing the route ------------------------------------------------

    def _environment_route(self, request: httpx.Request) -> Proxy | None:
        """The proxy the environment gives ``request``; ``None`` to go direct.

        The rules are those every socks5client integration shares
        (:func:`socks5client._environ.proxy_from_environment`): no variable,
        a ``no_proxy`` match, or a variable naming a proxy that is not
        SOCKS5 (an ``http://`` proxy, which httpx's own transport serves)
        all mean direct.
        """
        problem: str | None = None
        try:
            proxy = proxy_from_environment(
                request.url.scheme,
                request.url.host,
                port=request.url.port or {"http": 80, "https": 443}.get(request.url.scheme),
            )
        except ValueError as exc:
            # A SOCKS4 or malformed SOCKS5 URL.  The message names the
            # variable and the problem, never the URL's password.  Only the
            # text is kept, and the URL is not looked up again here: this
            # frame is in the traceback of the error raised below.
            problem = str(exc)
            proxy = None
        if problem is not None:
            raise httpx.ProxyError(f"cannot use the proxy environment: {problem}", request=request)
        return proxy

    def _route_for(self, request: httpx.Request) -> Proxy | None:
        """The proxy for ``request``: the transport's own, else the environment's."""
        return self._proxy if self._proxy is not None else self._environment_route(request)

    def _pool_options(self) -> dict[str, Any]:
        """The settings every pool of this transport is made with, sync or async."""
        return {
            "ssl_context": self._ssl_context,
            "max_connections": self._limits.max_connections,
            "max_keepalive_connections": self._limits.max_keepalive_connections,
            "keepalive_expiry": self._limits.keepalive_expiry,
            "http1": self._http1,
            "http2": self._http2,
            "retries": self._retries,
            "local_address": self._local_address,
            "socket_options": self._socket_options,
        }


def _core_request(request: httpx.Request) -> httpcore.Request:
    """``request`` as httpcore takes it."""
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        ),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


class SOCKSTransport(_TransportBase, httpx.BaseTransport):
    """An httpx transport that sends every request through a SOCKS5 proxy.

    ``httpx.Client(transport=SOCKSTransport("socks5h://user:pass@proxy:1080"))``

    :param proxy: a :class:`~socks5client.Proxy` or a ``socks5h://`` /
        ``socks5://`` URL.  ``socks5h://`` sends host names to the proxy to
        resolve (nothing is looked up here); ``socks5://`` resolves them
        here and sends the address.  ``None``: the proxy is chosen for each
        request from the environment (below).
    :param verify: as in ``httpx.HTTPTransport``: ``True``, ``False``, a CA
        bundle path or an ``ssl.SSLContext``.  Certificates are checked
        against the URL's host name, which is also the SNI.
    :param cert: a client certificate, as in ``httpx.HTTPTransport``.
    :param trust_env: read ``SSL_CERT_FILE``/``SSL_CERT_DIR`` (as httpx
        does) and, with ``proxy=None``, the proxy variables.
    :param http1, http2: the HTTP versions to offer (``http2`` needs
        ``h2``: ``pip install httpx[http2]``).
    :param limits: an ``httpx.Limits``; with ``proxy=None`` each proxy (and
        the direct route) has its own pool with these limits.
    :param retries: how many times to retry a connection that failed with
        ``ConnectError`` or ``ConnectTimeout`` (httpcore's retries).
    :param local_address: the local IP address the connections to the
        proxy leave from.
    :param socket_options: ``(level, option, value)`` tuples set on each
        socket to the proxy before it connects.

    **Timeouts.** httpx's *connect* timeout bounds the whole SOCKS5
    handshake -- resolving and reaching the proxy, authentication and the
    CONNECT reply -- as one deadline, then (for https) the TLS handshake
    as httpx always does.  *read*, *write* and *pool* timeouts mean what
    they mean without a proxy.

    **Pooling.** Connections are kept alive and reused as by
    ``httpx.HTTPTransport``: one SOCKS5 handshake per pooled connection,
    so sequential requests to one origin make one handshake.

    **Proxy from the environment** (``proxy=None``). For each request, the
    variables curl and requests read decide, through the URL's scheme and
    host: ``<scheme>_proxy``, else ``all_proxy``, else ``socks_proxy``
    (lower case first), and ``no_proxy``, to which localhost and loopback
    addresses always belong.  They are read at every request.  A request
    goes direct when its host matches ``no_proxy``, when no variable is
    set, and when the variable that applies names a proxy that is not
    SOCKS5 (an ``http://`` proxy: there is no SOCKS5 proxy for that URL,
    and ``all_proxy`` is not tried instead) -- the rules every
    socks5client integration shares.  A ``socks4://`` or malformed URL
    fails the request with ``httpx.ProxyError``.  Each proxy met gets its
    own connection pool, kept until :meth:`close`.

    **Errors**, as httpx's own, each with socks5client's error (or the
    socket error) as ``__cause__``:

    * proxy unreachable, proxy protocol violation, authentication refused,
      a reply code 1, 2, 7, 8 or unassigned: ``httpx.ProxyError``;
    * the handshake (or reaching the proxy) past the connect timeout:
      ``httpx.ConnectTimeout``;
    * reply code 3, 4, 5 or 6 (the destination unreachable, refusing or
      too far) and local failures (a ``socks5://`` name that does not
      resolve here, ``local_address`` unusable): ``httpx.ConnectError``;
    * afterwards, as without a proxy: ``httpx.ReadTimeout``,
      ``httpx.ReadError``, ``httpx.WriteTimeout``...;
    * with ``proxy=None``, a SOCKS4 or malformed proxy URL in the
      environment: ``httpx.ProxyError`` (no cause: the message says it).

    **Synchronous only.** Use it with ``httpx.Client``; with
    ``httpx.AsyncClient`` it raises :class:`TypeError`: use
    :class:`AsyncSOCKSTransport` there.
    """

    def _pool_for(self, request: httpx.Request) -> httpcore.ConnectionPool:
        route = self._route_for(request)
        with self._lock:
            pool = self._pools.get(route)
            if pool is None:
                pool = self._pools[route] = httpcore.ConnectionPool(
                    **self._pool_options(),
                    # None: httpcore's own backend, for direct routes.
                    network_backend=None if route is None else SOCKSNetworkBackend(route),
                )
            return pool

    # -- httpx.BaseTransport -------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the proxy (pooled) and return the response."""
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError(_SYNC_ONLY)
        pool = self._pool_for(request)
        core_request = _core_request(request)
        with _httpx_errors(request):
            core_response = pool.handle_request(core_request)
        body = core_response.stream
        if not isinstance(body, Iterable):  # pragma: no cover - a sync pool's body
            raise TypeError("httpcore returned an asynchronous body to a synchronous pool")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(body, request),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        """Close every pooled connection (of every proxy, with ``proxy=None``)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    # -- refusing httpx.AsyncClient clearly ------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> NoReturn:
        """Refused: this transport is synchronous (see the class docstring)."""
        raise TypeError(_SYNC_ONLY)

    async def __aenter__(self) -> NoReturn:
        raise TypeError(_SYNC_ONLY)

    async def __aexit__(self, *args: object) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the pools, so that ``AsyncClient.aclose()`` after the error is quiet."""
        self.close()


# ---------------------------------------------------------------------------
# The asynchronous side: httpx.AsyncClient


def _os_error_behind(exc: BaseException) -> OSError | None:
    """The first ``OSError`` in the chain of causes of one of anyio's stream errors."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


@contextlib.contextmanager
def _async_stream_errors(
    timeout_error: type[Exception], other_error: type[Exception]
) -> Iterator[None]:
    """anyio's and the socket's errors of an established stream as httpcore's.

    anyio raises its own ``BrokenResourceError`` from the socket's (or
    ``ssl``'s) ``OSError``; that ``OSError`` is what the synchronous stream
    reports, so it is the one kept here too.
    """
    import anyio

    try:
        yield
    except _TIMEOUTS as exc:
        raise _httpcore_error(timeout_error, exc) from exc
    except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        original = _os_error_behind(exc)
        if original is None:
            # Nothing from the system behind it (a stream closed here, or
            # broken by an earlier failure): the errno a socket would give.
            if isinstance(exc, anyio.ClosedResourceError):
                original = OSError(errno.EBADF, "the connection was closed")
            else:
                original = ConnectionAbortedError(errno.ECONNABORTED, "the connection is broken")
        raise _httpcore_error(other_error, original) from original
    except OSError as exc:
        raise _httpcore_error(other_error, exc) from exc


class AsyncSOCKSStream(httpcore.AsyncNetworkStream):
    """One connection through the proxy, as httpcore's asynchronous side reads and writes it.

    An anyio byte stream over the tunnel's socket (TLS with the destination
    after :meth:`start_tls`).  Timeouts are per call, as httpcore gives them.
    """

    def __init__(self, stream: Any, server_addr: Any) -> None:
        self._stream = stream
        # The destination as requested, kept across start_tls().
        self._server_addr = server_addr

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import anyio

        with _async_stream_errors(httpcore.ReadTimeout, httpcore.ReadError):
            with anyio.fail_after(timeout):
                try:
                    data: bytes = await self._stream.receive(max_bytes)
                except anyio.EndOfStream:
                    return b""
                return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        import anyio

        with _async_stream_errors(httpcore.WriteTimeout, httpcore.WriteError):
            with anyio.fail_after(timeout):
                await self._stream.send(buffer)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncSOCKSStream:
        """TLS with the destination, through the tunnel (SNI: the destination's name)."""
        import anyio
        from anyio.streams.tls import TLSStream

        with _async_stream_errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            try:
                with anyio.fail_after(timeout):
                    tls = await TLSStream.wrap(
                        self._stream,
                        ssl_context=ssl_context,
                        hostname=server_hostname,
                        standard_compatible=False,
                        server_side=False,
                    )
            except BaseException:
                await self.aclose()
                raise
        return AsyncSOCKSStream(tls, self._server_addr)

    def get_extra_info(self, info: str) -> Any:
        """As :meth:`SOCKSStream.get_extra_info`."""
        from anyio.abc import SocketAttribute
        from anyio.streams.tls import TLSAttribute

        if info == "ssl_object":
            return self._stream.extra(TLSAttribute.ssl_object, None)
        if info == "client_addr":
            return self._stream.extra(SocketAttribute.local_address, None)
        if info == "server_addr":
            return self._server_addr
        if info == "socket":
            return self._stream.extra(SocketAttribute.raw_socket, None)
        if info == "is_readable":
            sock = self._stream.extra(SocketAttribute.raw_socket, None)
            return True if sock is None else _is_readable(sock)
        return None


def _running_asyncio() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _WorkerHandoff:
    """A worker thread's socket on its way to a task that may have left.

    A task cancelled while its thread connects does not wait for it
    (``abandon_on_cancel``), and anyio drops an abandoned thread's result:
    left to the collector, a tunnel that completed after the cancel would
    stay connected to the proxy.  Whichever of the two comes second, under
    the lock, closes it.
    """

    __slots__ = ("abandoned", "lock", "sock", "started")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.started = False
        self.sock: socket.socket | None = None


def _worker_timeout(proxy: Proxy, timeout: float | None, *, started: bool) -> OSError:
    """The error for a handshake in a worker thread past its deadline."""
    where = f"proxy {describe(proxy.host, proxy.port)}"
    within = "in time" if timeout is None else f"within {timeout:g} s"
    if started:
        return errors.ProxyTimeoutError(f"{where} did not complete the SOCKS5 handshake {within}")
    return errors.ProxyConnectionTimeoutError(
        f"connecting to {where} did not start {within} (waiting for a worker thread)"
    )


class AsyncSOCKSNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore asynchronous network backend whose TCP connections go through one proxy.

    On asyncio the handshake runs on the event loop
    (:func:`socks5client.asyncio.open_socket`: one deadline, cancellable);
    on trio it is the blocking client's, in a worker thread, under one
    deadline from the call (a wait for a free thread included) and
    cancellable too.  The connected socket is handed to anyio.  Failures
    are httpcore's exceptions, as for :class:`SOCKSNetworkBackend`.
    """

    @guard_secrets
    def __init__(self, proxy: ProxyLike) -> None:
        import anyio.abc

        if not hasattr(anyio.abc.SocketStream, "from_socket"):
            raise ImportError(
                "socks5client.contrib.httpx.AsyncSOCKSTransport needs anyio 4.7 or later"
                " (SocketStream.from_socket): pip install --upgrade anyio"
            )
        chosen = proxy_from_args(proxy)
        if chosen is None:  # pragma: no cover - proxy_from_args needs a proxy here
            raise ValueError("a SOCKS5 proxy is required")
        self._proxy = chosen

    @property
    def proxy(self) -> Proxy:
        """The proxy every connection goes through."""
        return self._proxy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncSOCKSStream:
        """A tunnel to ``(host, port)``, the whole handshake within ``timeout``."""
        import anyio
        import anyio.abc

        options: list[Any] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        options.extend(socket_options or ())
        source = None if local_address is None else (local_address, 0)
        try:
            if _running_asyncio():
                from ..asyncio import open_socket

                sock = await open_socket(
                    host, port, self._proxy, timeout=timeout, local_addr=source,
                    socket_options=options,
                )  # fmt: skip
            else:
                sock = await self._connect_in_worker(host, port, timeout, source, options)
        except OSError as exc:
            raise _connect_failure(exc) from exc
        except ValueError as exc:
            raise _unreachable_host(exc) from exc
        try:
            server_addr = sock.getpeername()
            sock.setblocking(False)
            if not _running_asyncio():
                # trio wraps only sockets of exactly the socket module's
                # class: the tunnel's descriptor goes into one.
                sock = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            stream = await anyio.abc.SocketStream.from_socket(sock)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                raise _httpcore_error(httpcore.ConnectError, exc) from exc
            raise
        return AsyncSOCKSStream(stream, server_addr)

    async def _connect_in_worker(
        self,
        host: str,
        port: int,
        timeout: float | None,
        source: tuple[str, int] | None,
        options: list[Any],
    ) -> socket.socket:
        """The blocking client's handshake in one of anyio's worker threads.

        The deadline is fixed before a thread is asked for: a wait for a
        free one (the default limiter has 40) is part of the connect
        timeout, and the thread gets what is left.  The task leaves when
        cancelled, abandoning the thread, which then closes whatever it
        connected (see :class:`_WorkerHandoff`).
        """
        import anyio
        import anyio.from_thread

        proxy = self._proxy
        if timeout is None:
            deadline = None
            scope = anyio.CancelScope()
        else:
            deadline = time.monotonic() + timeout
            scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)
        handoff = _WorkerHandoff()

        def lift_deadline() -> None:
            scope.deadline = math.inf

        def time_left() -> float | None:
            if deadline is None:
                return None
            # Whole milliseconds: the figure is in the handshake's messages.
            left = math.floor((deadline - time.monotonic()) * 1000) / 1000
            if left <= 0:  # 0 would make the socket non-blocking, not "no time"
                raise _worker_timeout(proxy, timeout, started=False)
            return left

        def connect() -> socket.socket:
            with handoff.lock:
                if handoff.abandoned:
                    raise _worker_timeout(proxy, timeout, started=False)
                handoff.started = True
            if deadline is not None:
                # The same deadline now bounds the handshake itself, whose
                # timeout error says what the proxy was doing; the scope's,
                # racing it, would not.
                time_left()
                anyio.from_thread.run_sync(lift_deadline)
            sock = create_connection(
                (host, port), time_left(), source, socket_options=options, proxy=proxy
            )
            with handoff.lock:
                if not handoff.abandoned:
                    handoff.sock = sock
                    return sock
            sock.close()
            return sock

        with scope:
            try:
                return await anyio.to_thread.run_sync(connect, abandon_on_cancel=True)
            except BaseException:
                with handoff.lock:
                    handoff.abandoned = True
                    sock, handoff.sock = handoff.sock, None
                # The thread had connected, but its answer came after the cancel.
                if sock is not None:
                    sock.close()
                raise
        # Only the scope's deadline ends up here (another cancel propagates):
        # no thread was free in time, or one started just as time ran out.
        with handoff.lock:
            started = handoff.started
        raise _worker_timeout(proxy, timeout, started=started)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> NoReturn:
        raise httpcore.ConnectError("a SOCKS5 proxy carries TCP connections, not Unix sockets")

    async def sleep(self, seconds: float) -> None:
        import anyio

        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._proxy.url!r})"


class _AsyncResponseStream(httpx.AsyncByteStream):
    """httpcore's asynchronous response body, with httpcore's errors turned into httpx's."""

    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with _httpx_errors(self._request):
                await aclose()


class AsyncSOCKSTransport(_TransportBase, httpx.AsyncBaseTransport):
    """The asynchronous twin of :class:`SOCKSTransport`, for ``httpx.AsyncClient``.

    ``httpx.AsyncClient(transport=AsyncSOCKSTransport("socks5h://user:pass@proxy:1080"))``

    Same arguments, same routes (a proxy given, or each request's from the
    environment), same pooling and the same error mapping as
    :class:`SOCKSTransport`; httpx's *connect* timeout is the one deadline
    of the SOCKS5 handshake.  On asyncio (and uvloop) the handshake runs on
    the event loop and is cancelled with the request; on trio it runs in a
    worker thread, abandoned when the request is cancelled, and a wait for
    a free thread counts against the connect timeout.  Needs anyio 4.7 or
    later.  With ``httpx.Client`` it raises :class:`TypeError`.
    """

    def _pool_for(self, request: httpx.Request) -> httpcore.AsyncConnectionPool:
        route = self._route_for(request)
        with self._lock:
            pool = self._pools.get(route)
            if pool is None:
                pool = self._pools[route] = httpcore.AsyncConnectionPool(
                    **self._pool_options(),
                    network_backend=None if route is None else AsyncSOCKSNetworkBackend(route),
                )
            return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the proxy (pooled) and return the response."""
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError(_ASYNC_ONLY)
        pool = self._pool_for(request)
        core_request = _core_request(request)
        with _httpx_errors(request):
            core_response = await pool.handle_async_request(core_request)
        body = core_response.stream
        if not isinstance(body, AsyncIterable):  # pragma: no cover - an async pool's body
            raise TypeError("httpcore returned a synchronous body to an asynchronous pool")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_AsyncResponseStream(body, request),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection (of every proxy, with ``proxy=None``)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            await pool.aclose()

    # -- refusing httpx.Client clearly -------------------------------------------

    def handle_request(self, request: httpx.Request) -> NoReturn:
        """Refused: this transport is asynchronous (see the class docstring)."""
        raise TypeError(_ASYNC_ONLY)

    def __enter__(self) -> NoReturn:
        raise TypeError(_ASYNC_ONLY)

    def __exit__(self, *args: object) -> None:
        pass

    def close(self) -> None:
        """Nothing to close synchronously (``Client.close()`` after the error stays quiet)."""
