"""``urllib.request`` through a SOCKS5 proxy.

Standard library only; nothing in :mod:`socks5client` imports this module,
so programs that do not use it never load it::

    from socks5client.contrib.urllib import build_opener

    opener = build_opener("socks5h://127.0.0.1:1080")
    with opener.open("https://example.com/", timeout=10) as response:
        body = response.read()

What is here:

* :class:`SOCKSHandler` -- a handler that opens ``http`` and ``https`` URLs
  over connections made by :func:`socks5client.create_connection`.  Its
  proxy is a :class:`~socks5client.Proxy`, a URL, or ``None``: then each
  request looks the proxy up in the environment (``http_proxy``,
  ``https_proxy``, ``all_proxy``, ``no_proxy``...: see
  :mod:`socks5client._environ`) and goes direct when no SOCKS5 proxy applies.
* :func:`build_opener` -- ``urllib.request.build_opener`` with that handler
  installed, and urllib's own environment-driven ``ProxyHandler`` left out.
* :class:`SocksiPyHandler` -- PySocks' ``sockshandler.SocksiPyHandler``
  arguments, on top of :class:`SOCKSHandler`.

Everything else is stock ``urllib``: one connection per request (urllib
sends ``Connection: close``), redirects handled by ``HTTPRedirectHandler``
(each hop is a new request, so a new connection through the proxy, with its
own environment lookup), errors wrapped as ``urllib.error.URLError`` exactly
where urllib wraps a plain connection's errors.  ``timeout=`` bounds the
whole SOCKS5 handshake (one deadline), then each read, as on a plain socket.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import sys
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from .._environ import proxy_from_environment
from .._noproxy import lookup_name
from .._secret import guard_secrets
from ..proxy import Proxy, proxy_from_args
from ..sock import create_connection

if TYPE_CHECKING:
    from ..proxy import Credential, ProxyLike

#: Ports of URLs that give none, for ``no_proxy`` entries with a port.
_DEFAULT_PORTS = {"http": 80, "https": 443}

__all__ = [
    "SOCKSHTTPConnection",
    "SOCKSHTTPSConnection",
    "SOCKSHandler",
    "SocksiPyHandler",
    "build_opener",
]

#: What ``urllib.request.build_opener`` accepts as a handler.
HandlerLike = Union[urllib.request.BaseHandler, type[urllib.request.BaseHandler]]

#: Connection arguments SocksiPyHandler forwards, as PySocks does; the rest
#: of what it forwards (timeout, host, port) is per request in urllib.
_FORWARDED = frozenset({"source_address", "blocksize"})


class SOCKSHTTPConnection(http.client.HTTPConnection):
    """An ``http.client.HTTPConnection`` whose socket goes through a SOCKS5 proxy.

    ``socks_proxy`` is the proxy (``None``: connect directly, as the base
    class does, but to a non-ASCII host's IDNA 2008 form, the one the proxy
    would get and ``no_proxy`` judged; see :meth:`connect`).  Everything
    after ``connect()`` is the base class's.
    """

    #: The proxy of this connection; None means direct.
    socks_proxy: Proxy | None = None
    # Set by HTTPConnection.__init__; typeshed does not declare it.
    source_address: tuple[str, int] | None

    def __init__(
        self,
        host: str,
        port: int | None = None,
        timeout: float | None = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: tuple[str, int] | None = None,
        blocksize: int = 8192,
        *,
        socks_proxy: Proxy | None = None,
    ) -> None:
        super().__init__(host, port, timeout, source_address, blocksize)
        self.socks_proxy = socks_proxy

    def connect(self) -> None:
        """Open the connection, through the proxy unless there is none.

        Mirrors ``HTTPConnection.connect``: the same audit event, TCP_NODELAY,
        and an HTTP CONNECT tunnel when ``set_tunnel()`` asked for one (then
        ``self.host`` is the HTTP proxy, reached through the SOCKS5 proxy).
        """
        proxy = self.socks_proxy
        sys.audit("http.client.connect", self, self.host, self.port)
        if proxy is None:
            # Direct, as HTTPConnection.connect, but not to self.host as
            # text: the socket module would look a non-ASCII name up in its
            # IDNA 2003 form ("faß.de" is "fass.de"), another domain than
            # the IDNA 2008 one no_proxy judged and the proxy would get, and
            # connect there directly.  So the judged form, or gaierror when
            # the name has none.  self.host stays as given, for the Host
            # header and the audit event.
            sock = self._create_connection(  # type: ignore[attr-defined]
                (lookup_name(self.host), self.port), self.timeout, self.source_address
            )
        else:
            # One call, one deadline: self.timeout bounds connecting to the
            # proxy and the whole handshake, then stays on the socket as the
            # per-operation timeout urllib expects for reads.
            try:
                sock = create_connection(
                    (self.host, self.port), self.timeout, self.source_address, proxy=proxy
                )
            except ValueError as exc:
                # A host SOCKS5 cannot carry (a name over 255 bytes...), from
                # a redirect say: a name that cannot be looked up, as the
                # direct route reports it, so that urllib raises URLError.
                raise socket.gaierror(socket.EAI_NONAME, str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            # As in http.client: a platform without the option is fine.
            if exc.errno != errno.ENOPROTOOPT:
                sock.close()
                raise
        self.sock = sock
        # Not in typeshed: http.client's own state for set_tunnel().
        if getattr(self, "_tunnel_host", None):
            self._tunnel()  # type: ignore[attr-defined]


class SOCKSHTTPSConnection(http.client.HTTPSConnection, SOCKSHTTPConnection):
    """An ``http.client.HTTPSConnection`` whose socket goes through a SOCKS5 proxy.

    :meth:`connect` makes the TCP connection with
    :meth:`SOCKSHTTPConnection.connect` (through the proxy or direct), then
    wraps the socket in TLS with its context and ``server_hostname`` set to
    the host of the URL (or of the CONNECT tunnel), never the proxy's, in
    the form that was connected to: a non-ASCII host's IDNA 2008 form.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        socks_proxy: Proxy | None = None,
        **kwargs: Any,
    ) -> None:
        # HTTPSConnection.__init__ calls SOCKSHTTPConnection.__init__ (the
        # next class in the MRO) without socks_proxy; set it afterwards.
        super().__init__(host, port, **kwargs)
        self.socks_proxy = socks_proxy

    def connect(self) -> None:
        """Open the TCP connection (:meth:`SOCKSHTTPConnection.connect`), then TLS."""
        SOCKSHTTPConnection.connect(self)
        # HTTPSConnection.connect would give ssl the URL's host as text,
        # which ssl encodes in IDNA 2003: the certificate of the server
        # reached at "xn--fa-hia.de" (the IDNA 2008 form of "faß.de", which
        # both the proxy and a direct connection use) would be checked
        # against "fass.de", another domain's name.  SNI and the check must
        # name the server actually reached, so they get that same form.
        # Through an HTTP CONNECT tunnel the HTTP proxy picks the server
        # from the tunnel host as http.client sent it: left to http.client.
        tunnel_host = getattr(self, "_tunnel_host", None)
        server_hostname = tunnel_host or lookup_name(self.host)
        context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)


def _as_proxy(proxy: object) -> Proxy:
    if isinstance(proxy, Proxy):
        return proxy
    if isinstance(proxy, str):
        return Proxy.from_url(proxy)
    raise TypeError(f"proxy must be a Proxy, a proxy URL or None, not {type(proxy).__name__}")


class SOCKSHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """A ``urllib.request`` handler for ``http`` and ``https`` URLs through SOCKS5.

    :param proxy: a :class:`~socks5client.Proxy`, a URL
        (``socks5h://user:password@host:1080``), or ``None`` to take the
        proxy from the environment at each request, with
        ``proxy_from_environment(scheme, host)``: the ``<scheme>_proxy``
        variable, else ``all_proxy``, else ``socks_proxy``; ``no_proxy``
        hosts, localhost and loopback addresses go direct, and so does a
        request whose variable names a proxy that is not SOCKS5 (an HTTP
        proxy in ``http_proxy``, for example).  A SOCKS4 URL in the
        environment raises ``ValueError`` at the request.  An explicit
        proxy is used for every request, ``no_proxy`` notwithstanding.
    :param context: the ``ssl.SSLContext`` for ``https`` URLs; ``None``
        means http.client's default (certificates verified against the
        system store, host name checked).
    :param debuglevel: as for ``urllib.request.HTTPHandler``.

    Its ``handler_order`` is below that of ``urllib.request.ProxyHandler``,
    so in any opener it handles http and https requests before a
    ``ProxyHandler`` could send them to an HTTP proxy; a request it has no
    SOCKS5 proxy for goes direct, not on to another handler.  Being a
    subclass of ``HTTPHandler`` and ``HTTPSHandler``, it also replaces those
    two in ``urllib.request.build_opener(SOCKSHandler(...))``.
    """

    # ProxyHandler is 100; the default HTTP handlers 500.
    handler_order = urllib.request.ProxyHandler.handler_order - 10

    #: The proxy for every request, or None for the environment's.
    proxy: Proxy | None
    #: The TLS context for https (None: http.client's default).
    context: ssl.SSLContext | None

    @guard_secrets
    def __init__(
        self,
        proxy: ProxyLike | None = None,
        *,
        context: ssl.SSLContext | None = None,
        debuglevel: int | None = None,
    ) -> None:
        # HTTPSHandler.__init__ would build a context of its own (3.12+);
        # only the base class's state is wanted.
        urllib.request.AbstractHTTPHandler.__init__(
            self, http.client.HTTPConnection.debuglevel if debuglevel is None else debuglevel
        )
        self.proxy = None if proxy is None else _as_proxy(proxy)
        self.context = context
        # Extra HTTPConnection arguments (SocksiPyHandler's **kwargs).
        self._connection_kwargs: dict[str, Any] = {}

    def proxy_for(self, req: urllib.request.Request) -> Proxy | None:
        """The proxy ``req`` goes through, or ``None`` for a direct connection."""
        if self.proxy is not None:
            return self.proxy
        # req.host is "name:port" or "[v6]:port"; no_proxy matches the name.
        parts = urlsplit(f"//{req.host}")
        port = parts.port or _DEFAULT_PORTS.get(req.type)
        return proxy_from_environment(req.type, parts.hostname, port=port)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            SOCKSHTTPConnection,
            req,
            socks_proxy=self.proxy_for(req),
            **self._connection_kwargs,
        )

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            SOCKSHTTPSConnection,
            req,
            socks_proxy=self.proxy_for(req),
            context=self.context,
            **self._connection_kwargs,
        )

    def ftp_open(self, req: urllib.request.Request) -> None:
        """Refuse an ``ftp`` URL that has a SOCKS5 proxy; leave one without to urllib.

        urllib's own FTP handler resolves the host and connects directly,
        so an ``ftp://`` URL (a redirect from a page fetched through the
        proxy, say) would reach the network around the proxy.  This
        handler comes before it, and refuses such a URL with
        ``URLError``; one that goes direct anyway (``no_proxy``, no proxy
        in the environment) is left to the FTP handler (``None``).
        """
        if self.proxy_for(req) is None:
            return None
        import urllib.error

        raise urllib.error.URLError(
            "ftp:// URLs are not carried through the SOCKS5 proxy (urllib's FTP handler"
            " would connect directly, around it)"
        )

    def __repr__(self) -> str:
        where = "from the environment" if self.proxy is None else str(self.proxy)
        return f"<{type(self).__name__} {where}>"


class SocksiPyHandler(SOCKSHandler):
    """PySocks' ``sockshandler.SocksiPyHandler``, for code moving from PySocks.

    Same arguments: ``SocksiPyHandler(socks5client.SOCKS5, "127.0.0.1",
    9050)``.  ``proxyport`` defaults to 1080; ``rdns=True`` lets the proxy
    resolve names (``socks5h``); empty ``username`` and ``password`` mean no
    authentication.  ``SOCKS4`` and ``HTTP`` proxy types raise
    ``ValueError`` here, since only SOCKS5 is spoken.

    Keyword arguments go to the HTTP connections, as in PySocks:
    ``context`` (for https), ``source_address`` and ``blocksize``.  Others
    raise ``TypeError`` now rather than at the first request.
    """

    @guard_secrets
    def __init__(
        self,
        proxytype: int,
        proxyaddr: str,
        proxyport: int | None = None,
        rdns: bool = True,
        username: Credential | None = None,
        password: Credential | None = None,
        **kwargs: Any,
    ) -> None:
        context = kwargs.pop("context", None)
        unknown = sorted(set(kwargs) - _FORWARDED)
        if unknown:
            raise TypeError(
                f"SocksiPyHandler got unexpected keyword arguments: {', '.join(unknown)}"
                " (accepted: context, source_address, blocksize; the timeout is"
                " per request: opener.open(url, timeout=...))"
            )
        proxy = proxy_from_args(proxytype, proxyaddr, proxyport, rdns, username, password)
        if proxy is None:  # proxyaddr is required, so proxy_from_args refused already
            raise ValueError("SocksiPyHandler needs a proxy type and address")
        super().__init__(proxy, context=context)
        self._connection_kwargs = dict(kwargs)


def _is_instance_or_subclass(handler: HandlerLike, cls: type[Any]) -> bool:
    if isinstance(handler, type):
        return issubclass(handler, cls)
    return isinstance(handler, cls)


@guard_secrets
def build_opener(
    proxy: ProxyLike | None = None,
    *handlers: HandlerLike,
    context: ssl.SSLContext | None = None,
) -> urllib.request.OpenerDirector:
    """``urllib.request.build_opener`` whose http and https go through SOCKS5.

    ``proxy`` is as for :class:`SOCKSHandler` (``None``: from the
    environment, per request); ``context`` is the TLS context for https.
    ``handlers`` are added as ``urllib.request.build_opener`` adds them
    (instances or classes): cookie processors, auth handlers, a redirect
    handler of your own...

    urllib's environment-driven ``ProxyHandler`` is *not* installed (an
    empty ``ProxyHandler({})`` stands in its place): the proxy variables are
    read by :class:`SOCKSHandler` alone, with socks5client's rules, so an
    ``http_proxy`` naming an HTTP proxy does not send http requests there.

    A :class:`SOCKSHandler` (or :class:`SocksiPyHandler`) among
    ``handlers`` is used instead of a new one; ``proxy`` and ``context``
    must then be left out.  Plain ``HTTPHandler``/``HTTPSHandler`` are
    refused, as the SOCKS handler would silently take their place: give the
    TLS context with ``context=``.
    """
    own: Sequence[HandlerLike] = [h for h in handlers if _is_instance_or_subclass(h, SOCKSHandler)]
    for handler in handlers:
        if not _is_instance_or_subclass(handler, SOCKSHandler) and (
            _is_instance_or_subclass(handler, urllib.request.HTTPHandler)
            or _is_instance_or_subclass(handler, urllib.request.HTTPSHandler)
        ):
            raise ValueError(
                f"{handler!r} would never open a URL: the SOCKS handler opens every http"
                " and https URL in its place; give a TLS context as build_opener(proxy,"
                " context=ctx), or pass SOCKSHandler(proxy, context=..., debuglevel=...)"
            )
    if len(own) > 1:
        raise ValueError("give at most one SOCKSHandler")
    if own:
        if proxy is not None or context is not None:
            raise ValueError("give proxy and context to the SOCKSHandler passed, not here")
        return urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), SOCKSHandler(proxy, context=context), *handlers
    )
