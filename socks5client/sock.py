"""``socksocket``: a ``socket.socket`` that reaches its destination through a SOCKS5 proxy.

The SOCKS5 conversation happens inside :meth:`socksocket.connect`.  Once it
succeeds the socket *is* the tunnel: ``send``, ``recv``, ``sendall``,
``makefile``, ``sendfile`` and TLS wrapping are the C socket's own methods,
so there is no Python code on the data path.

Sockets of other families (``AF_UNIX``...) and sockets with no proxy (none
set and no default) behave exactly as plain sockets.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
from typing import Any

from . import _codec, _negotiate
from ._codec import Command
from ._negotiate import PlainSocket
from .errors import ProxyConnectionError, ProxyError, ProxyTimeoutError, SOCKS5Error
from .proxy import Credential, Proxy, ProxyLike, get_default_proxy, proxy_from_args

__all__ = ["create_connection", "socksocket"]

_PROXIED_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_UNSET: Any = object()

# Options carried over to the fresh socket used when a locally resolved
# destination has several addresses and the first attempt failed.
_CARRIED_OPTIONS = [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (socket.SOL_SOCKET, socket.SO_RCVBUF),
    (socket.SOL_SOCKET, socket.SO_SNDBUF),
    (socket.IPPROTO_TCP, socket.TCP_NODELAY),
] + [
    (socket.IPPROTO_TCP, getattr(socket, name))
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")
    if hasattr(socket, name)
]


def _split_address(address: Any) -> tuple[str, int]:
    """``(host, port)`` from a 2-tuple or an IPv6 4-tuple, type-checked."""
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError(
            "a SOCKS5 destination must be a (host, port) or (host, port, flowinfo,"
            f" scope_id) tuple, not {address!r}"
        )
    host, port = address[0], address[1]
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii")
    if not isinstance(host, str):
        raise TypeError(f"destination host must be a str, not {type(host).__name__}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"destination port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"destination port {port} is out of range 0-65535")
    return host, port


def _is_ip_literal(host: str) -> bool:
    return _codec.encode_host(host)[0] != _codec.AddressType.DOMAIN


class socksocket(socket.socket):
    """A socket that connects through a SOCKS5 proxy.

    Takes the same arguments as :class:`socket.socket`.  Give it a proxy
    with :meth:`set_proxy`, or set a process default with
    :func:`socks5client.set_default_proxy`; then :meth:`connect` as usual.
    """

    def __init__(
        self,
        family: int = -1,
        type: int = -1,
        proto: int = -1,
        fileno: int | None = None,
    ) -> None:
        super().__init__(family, type, proto, fileno)
        self._proxy: Proxy | None = _UNSET
        self._peername: tuple[Any, ...] | None = None
        self._proxy_sockname: tuple[str, int] | None = None
        # After a SOCKS BIND: where the peer must connect; None otherwise.
        self._bind_address: tuple[Any, ...] | None = None
        self._bind_accepted = False
        self._bind_proxy: Proxy | None = None
        # Read once: the family and type properties convert to enums on every
        # access, and neither can change for the life of the socket.
        self._inet = self.family in _PROXIED_FAMILIES
        self._stream = self.type == socket.SOCK_STREAM
        if self._inet and self.type == socket.SOCK_DGRAM and self.__class__ is socksocket:
            # The UDP variant overrides sendto/recvfrom; keeping it a
            # separate class keeps TCP's send/recv the C methods.
            from .udp import UDPSocksSocket

            self.__class__ = UDPSocksSocket

    # -- configuration -----------------------------------------------------

    def set_proxy(
        self,
        proxy_type: int | ProxyLike | None = None,
        addr: str | None = None,
        port: int | None = None,
        rdns: bool = True,
        username: Credential | None = None,
        password: Credential | None = None,
    ) -> None:
        """Set this socket's proxy (PySocks' signature).

        ``proxy_type`` is :data:`~socks5client.SOCKS5`, or a :class:`Proxy`,
        or a ``socks5://``/``socks5h://`` URL (then give nothing else).
        ``rdns=True`` sends hostnames to the proxy unresolved.  With no
        arguments the socket connects directly, ignoring any default proxy.
        """
        self._proxy = proxy_from_args(proxy_type, addr, port, rdns, username, password)

    #: PySocks' older name for :meth:`set_proxy`.
    setproxy = set_proxy

    @property
    def proxy(self) -> Proxy | None:
        """The proxy :meth:`connect` will use: this socket's own, else the default."""
        if not self._inet:
            return None
        return get_default_proxy() if self._proxy is _UNSET else self._proxy

    # -- connecting --------------------------------------------------------

    def connect(self, address: Any) -> None:
        """Connect to ``address`` through the proxy (directly if there is none).

        Raises :class:`~socks5client.errors.ProxyError` subclasses for proxy
        trouble and :class:`ValueError` for an address that cannot be sent;
        after a proxy error the socket is closed.
        """
        proxy = self.proxy
        if proxy is None or not self._stream:
            super().connect(address)
            return
        self._connect_via(proxy, address)

    def connect_ex(self, address: Any) -> int:
        """Like :meth:`connect`, but return an errno instead of raising OSErrors.

        As with a plain socket, name resolution errors (``socket.gaierror``)
        and bad arguments still raise.
        """
        if not self._proxied():
            return super().connect_ex(address)
        try:
            self.connect(address)
        except socket.gaierror:
            raise
        except OSError as exc:
            if not isinstance(exc.errno, int):
                raise
            return exc.errno
        return 0

    def _proxied(self) -> bool:
        """Whether connect() goes through a proxy."""
        return self._stream and self.proxy is not None

    def _handshake_timeout(self) -> float | None:
        timeout = self.gettimeout()
        if timeout == 0.0:
            # A non-blocking socket cannot run a multi-step exchange inside
            # one connect() call; it is done blocking, bounded by the
            # default timeout, and the socket is non-blocking again after.
            return socket.getdefaulttimeout()
        return timeout

    def _connect_via(self, proxy: Proxy, address: Any) -> None:
        if self._peername is not None or self._bind_address is not None:
            # What a plain socket says; this one stays usable.
            raise OSError(errno.EISCONN, os.strerror(errno.EISCONN))
        host, port = _split_address(address)
        # encode_host also refuses empty and over-long names, in both modes.
        if proxy.remote_dns or _is_ip_literal(host):
            targets = [host]
        else:
            targets = _resolve_locally(host, port)
        # Encode every request first: a bad destination is refused with a
        # ValueError before any byte goes to the proxy.
        requests = [_codec.encode_request(Command.CONNECT, t, port) for t in targets]
        shown = _negotiate.describe(host, port)
        user_timeout = self.gettimeout()
        handshake_timeout = self._handshake_timeout()
        last: ProxyError | None = None
        try:
            for i, (target, req) in enumerate(zip(targets, requests)):
                if i:
                    self._renew_fd()
                context = (
                    f"CONNECT to {shown}" if target == host else (f"CONNECT to {shown} ({target})")
                )
                try:
                    _, reply = _negotiate.handshake(self, proxy, handshake_timeout, req, context)
                except SOCKS5Error as exc:
                    # Like socket.create_connection: a failure for one
                    # address of the destination is a reason to try the next.
                    last = exc
                    continue
                self._peername = tuple(address) if len(address) == 4 else (host, port)
                self._proxy_sockname = (reply.host, reply.port)
                PlainSocket.settimeout(self, user_timeout)
                return
        except BaseException:
            self.close()
            raise
        self.close()
        assert last is not None
        raise last

    def _renew_fd(self) -> None:
        """Swap in a fresh, unconnected socket under this object's descriptor.

        A TCP socket cannot connect twice, so a second attempt needs a new
        one; ``dup2`` keeps the file descriptor number and this object.
        """
        fresh = PlainSocket(self.family, self.type, self.proto)
        try:
            for level, name in _CARRIED_OPTIONS:
                with contextlib.suppress(OSError):
                    fresh.setsockopt(level, name, self.getsockopt(level, name))
            os.dup2(fresh.fileno(), self.fileno(), inheritable=self.get_inheritable())
        finally:
            fresh.close()

    # -- BIND: accepting one inbound connection through the proxy -------------

    def bind(self, address: Any) -> None:
        """Bind locally, or, with a proxy, ask it to accept a connection for us.

        With a proxy (on a TCP socket), this sends a SOCKS5 BIND request:
        ``address`` is the peer expected to connect (``("0.0.0.0", 0)`` or
        ``("", 0)`` for any) and the proxy's first reply says where the peer
        must connect -- :meth:`getsockname` returns that.  Then
        :meth:`listen` is accepted and :meth:`accept` waits for the peer.
        """
        proxy = self.proxy
        if proxy is None or not self._stream:
            super().bind(address)
            return
        if self._peername is not None or self._bind_address is not None:
            raise OSError(errno.EINVAL, "this socket is already connected or bound")
        host, port = _split_address(address)
        if not host:
            host = "::" if self.family == socket.AF_INET6 else "0.0.0.0"
        if not proxy.remote_dns and not _is_ip_literal(host):
            host = _resolve_locally(host, port)[0]
        request = _codec.encode_request(Command.BIND, host, port)
        user_timeout = self.gettimeout()
        try:
            _, reply = _negotiate.handshake(
                self,
                proxy,
                self._handshake_timeout(),
                request,
                f"BIND for {_negotiate.describe(host, port)}",
            )
            bnd_host = reply.host
            if _is_ip_literal(bnd_host) and ipaddress.ip_address(bnd_host).is_unspecified:
                # The proxy listens on all its addresses; the one we reached
                # it on is the one a peer can use too.
                bnd_host = str(super().getpeername()[0])
        except BaseException:
            self.close()
            raise
        PlainSocket.settimeout(self, user_timeout)
        self._proxy_sockname = (reply.host, reply.port)
        # accept() reads the second reply from this same proxy, whatever
        # happens to the default proxy meanwhile.
        self._bind_proxy = proxy
        bind_address: tuple[Any, ...] = (
            (bnd_host, reply.port, 0, 0)
            if self.family == socket.AF_INET6
            else (bnd_host, reply.port)
        )
        self._bind_address = bind_address

    def listen(self, *backlog: int) -> None:
        """Accepted and ignored after a SOCKS BIND (the proxy does the listening)."""
        if self._bind_address is None:
            super().listen(*backlog)

    def accept(self) -> tuple[socket.socket, Any]:
        """Wait for the peer of a SOCKS BIND; return ``(conn, peer_address)``.

        Honours the socket's timeout: on expiry a
        :class:`~socks5client.errors.ProxyTimeoutError` (a ``TimeoutError``)
        is raised and, if the proxy sent nothing yet, ``accept`` may be
        called again.  ``conn`` takes over the tunnel (this socket's file
        descriptor); one BIND serves exactly one connection.
        """
        if self._bind_address is None:
            if self._bind_accepted:
                raise OSError(
                    errno.EINVAL,
                    "a SOCKS5 BIND serves one connection, and it has been accepted",
                )
            return super().accept()
        proxy = self._bind_proxy
        assert proxy is not None
        timeout = self.gettimeout()
        where = _negotiate.describe(proxy.host, proxy.port)
        if not _wait_readable(self, timeout):
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "no peer has connected yet")
            raise ProxyTimeoutError(
                f"no peer connected to {_negotiate.describe(*self._bind_address[:2])}"
                f" (BIND via proxy {where}) within {timeout:g} s"
            )
        read_timeout = self._handshake_timeout()
        channel = _negotiate.SocketChannel(
            self, proxy, read_timeout, _negotiate.deadline_after(read_timeout)
        )
        try:
            reply = _negotiate.read_reply(channel, "BIND (the peer's connection)", where)
        except BaseException:
            self.close()
            raise
        peer = (
            (reply.host, reply.port, 0, 0)
            if reply.atyp == _codec.AddressType.IPV6
            else (reply.host, reply.port)
        )
        family, type_, proto = self.family, self.type, self.proto
        PlainSocket.settimeout(self, timeout)
        fd = self.detach()
        self._bind_address = None
        self._bind_accepted = True
        conn = socksocket(family, type_, proto, fileno=fd)
        conn.set_proxy()
        conn._peername = peer
        conn._proxy_sockname = self._proxy_sockname
        # As socket.accept() does: the new socket starts with the default
        # timeout.  Setting it also resets the descriptor's O_NONBLOCK flag,
        # which the listening socket's timeout may have left on.
        conn.settimeout(socket.getdefaulttimeout())
        return conn, peer

    # -- addresses ---------------------------------------------------------

    def getsockname(self) -> Any:
        """After a SOCKS BIND, where the peer must connect; else the local address."""
        if self._bind_address is not None and self.fileno() != -1:
            return self._bind_address
        return super().getsockname()

    def getpeername(self) -> Any:
        """The destination as it was requested (hostname kept) when proxied."""
        if self._peername is not None and self.fileno() != -1:
            return self._peername
        if self._bind_address is not None:
            raise OSError(errno.ENOTCONN, "no peer has connected to the BIND address yet")
        return super().getpeername()

    #: PySocks' name for :meth:`getpeername`.
    get_peername = getpeername

    def get_proxy_sockname(self) -> tuple[str, int] | None:
        """BND.ADDR and BND.PORT from the proxy's reply (``None`` before it)."""
        return self._proxy_sockname

    def get_proxy_peername(self) -> Any:
        """The address of the proxy this socket is connected to."""
        return super().getpeername()


def _wait_readable(sock: socket.socket, timeout: float | None) -> bool:
    """Whether ``sock`` becomes readable within ``timeout`` (None: wait forever)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    wait_ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(poller.poll(wait_ms))


def _resolve_locally(host: str, port: int) -> list[str]:
    """The destination's addresses, resolved here (``socks5://``), without repeats.

    The name is looked up in the same IDNA 2008 form that remote resolution
    would send (Python's own codec would use IDNA 2003).
    """
    atyp, encoded = _codec.encode_host(host)
    if atyp == _codec.AddressType.DOMAIN:
        host = encoded[1:].decode("ascii")
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        ip = str(info[4][0])
        if ip not in seen:
            seen.append(ip)
    return seen


def create_connection(
    address: tuple[str, int],
    timeout: float | None = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: tuple[str, int] | None = None,
    *,
    proxy: ProxyLike | None = None,
    proxy_type: int | None = None,
    proxy_addr: str | None = None,
    proxy_port: int | None = None,
    proxy_rdns: bool = True,
    proxy_username: Credential | None = None,
    proxy_password: Credential | None = None,
    socket_options: list[tuple[int, int, int | bytes]] | None = None,
) -> socket.socket:
    """Connect to ``address`` through a proxy and return the socket.

    Like :func:`socket.create_connection`.  The proxy is ``proxy`` (a
    :class:`Proxy` or URL), else PySocks' ``proxy_*`` keywords, else the
    default proxy; with none at all, the connection is direct.  Each of
    the proxy's addresses is tried in turn; ``socket_options`` are applied
    before connecting, as ``urllib3`` expects.
    """
    pysocks_args = (proxy_type, proxy_addr, proxy_port, proxy_username, proxy_password)
    if proxy is not None:
        if pysocks_args != (None,) * 5 or not proxy_rdns:
            raise ValueError("give either proxy= or the proxy_* arguments, not both")
        chosen = proxy_from_args(proxy)
    elif pysocks_args != (None,) * 5:
        chosen = proxy_from_args(
            proxy_type, proxy_addr, proxy_port, proxy_rdns, proxy_username, proxy_password
        )
    else:
        chosen = get_default_proxy()
        if chosen is not None and not proxy_rdns:
            # proxy_rdns=False alone: the default proxy, resolving locally.
            chosen = _with_host(chosen, chosen.host, remote_dns=False)
    host, port = _split_address(address)
    if chosen is not None:
        # Refuse a bad destination before resolving or connecting anything.
        _codec.encode_host(host)
        where = (chosen.host, chosen.port)
    else:
        where = (host, port)
    try:
        infos = socket.getaddrinfo(where[0], where[1], 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if chosen is None:
            raise
        raise ProxyConnectionError(f"cannot resolve proxy host {chosen.host!r}", exc) from exc
    last: OSError | None = None
    for family, _type, _proto, _canon, sockaddr in infos:
        sock = socksocket(family, socket.SOCK_STREAM)
        try:
            for opt in socket_options or ():
                sock.setsockopt(*opt)
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address is not None:
                # PlainSocket.bind: a socksocket's bind() may mean SOCKS BIND.
                PlainSocket.bind(sock, source_address)
            if chosen is None:
                sock.set_proxy()
                sock.connect(sockaddr)
            else:
                sock.set_proxy(_with_host(chosen, str(sockaddr[0])))
                sock.connect((host, port))
            return sock
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            # Another address of the proxy (or, direct, of the destination)
            # may work; a proxy that answered and refused will not do better.
            if chosen is not None and not isinstance(exc, ProxyConnectionError):
                raise
            last = exc
    if last is None:
        raise OSError(f"getaddrinfo returned no addresses for {where[0]!r}")
    raise last


def _with_host(proxy: Proxy, host: str, remote_dns: bool | None = None) -> Proxy:
    """``proxy`` with another host (one of its addresses), and maybe another DNS mode."""
    return Proxy(
        host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        remote_dns=proxy.remote_dns if remote_dns is None else remote_dns,
    )
