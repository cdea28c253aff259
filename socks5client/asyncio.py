"""The asyncio client: the SOCKS5 handshake driven by an event loop.

The handshake itself is the sans-I/O conversation of
``socks5client._conversation``, the very generators the blocking client
runs; this module only moves their bytes with the loop's own primitives
(``sock_connect``, ``sock_sendall``, ``sock_recv``, ``add_writer``), so it
works on any event loop (the default one, uvloop) and never blocks it.

What the blocking client promises holds here too:

* **One deadline per call.**  ``timeout`` bounds the whole call (resolving
  and reaching the proxy, every message, and for :func:`open_connection`
  and :func:`create_connection` the TLS handshake), whatever the number of
  steps.  Past it the call raises the blocking client's error
  (:class:`~socks5client.errors.ProxyTimeoutError` or
  :class:`~socks5client.errors.ProxyConnectionTimeoutError`, both
  ``TimeoutError``), with the same message; once the tunnel is up, what
  runs out of time is the TLS handshake, and the error a plain
  ``TimeoutError``.
* **Cancellable at every await.**  Cancelling the task closes the socket
  of the call and raises ``CancelledError``; no descriptor is left behind.
* **The same errors**, raised by the same code: what the proxy says is
  judged by the conversation, transport trouble is worded by the helpers
  of ``socks5client._negotiate``.
* **No DNS leak.**  With ``socks5h://`` (remote DNS) the destination's name
  goes to the proxy unresolved; with ``socks5://`` it is resolved here, by
  the real resolver in the loop's executor, never through a patched one.

Usage::

    reader, writer = await socks5client.asyncio.open_connection(
        "example.com", 443, proxy="socks5h://127.0.0.1:1080", ssl=True, timeout=10
    )
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl as _ssl
import sys
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

from . import _codec, _conversation, _negotiate
from ._codec import Command, Reply
from ._conversation import RECV, SEND
from ._negotiate import Budget, PlainSocket, debug_logger, describe
from .auth import plan_for
from .errors import ProxyConnectionError, ProxyError, ProxyTimeoutError, SOCKS5Error
from .proxy import Proxy, get_default_proxy, proxy_from_args
from .sock import (
    _connect_context,
    _is_ip_literal,
    _resolve_locally,
    _split_address,
    _with_host,
    socksocket,
    swap_descriptor,
)

if TYPE_CHECKING:
    from ._conversation import Steps
    from ._secret import Secret
    from .proxy import ProxyLike

__all__ = [
    "BindListener",
    "UDPEndpoint",
    "bind",
    "connect",
    "create_connection",
    "open_connection",
    "open_socket",
    "open_udp",
]

_T = TypeVar("_T")

#: What ``ssl=`` takes, as in :func:`asyncio.open_connection`.
SSLArg = Union[_ssl.SSLContext, bool, None]

_send = PlainSocket.send
_connect_ex = PlainSocket.connect_ex
_IN_PROGRESS = frozenset([errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY])
_HAS_TIMEOUT = sys.version_info >= (3, 11)  # asyncio.timeout; tests may turn it off

#: The destination side of ``loop.create_connection``'s arguments: they shape
#: a direct connection and mean nothing for one through a proxy.
_DIRECT_ONLY = ("happy_eyeballs_delay", "interleave", "all_errors", "proto", "flags")


class _Call:
    """Where one call stands: what its timeout error must say when the deadline hits.

    The deadline is enforced around the whole call (``asyncio.timeout``), so
    the code that was waiting does not see it coming; it keeps this record
    up to date instead, and the handler words the error from it, exactly as
    the blocking driver words its own.  It also keeps what a fresh
    descriptor for the next address must get again (see :func:`_renew`).
    """

    __slots__ = (
        "after",
        "budget",
        "connecting",
        "heard",
        "hint",
        "last",
        "local",
        "local_exact",
        "options",
        "proxy",
        "waiting_for",
    )

    def __init__(self, proxy: Proxy, timeout: float | None) -> None:
        self.proxy = proxy
        self.budget = Budget(timeout)
        #: True until the connection to the proxy is up.
        self.connecting = True
        #: The last error connecting to one of the proxy's addresses.
        self.last: OSError | None = None
        self.waiting_for = ""
        self.heard = False
        self.hint = ""
        #: Once the tunnel is up, what the call still waits for (the TLS
        #: handshake with the destination): running out of time then is
        #: no fault of the proxy's.
        self.after: str | None = None
        #: The local address a plain socket of the call leaves from (None:
        #: the kernel's choice), and whether its port is the caller's own
        #: (else it is only what the kernel picked when the caller bound).
        self.local: tuple[Any, ...] | None = None
        self.local_exact = True
        #: setsockopt() arguments the caller gave for the call's sockets.
        self.options: tuple[tuple[Any, ...], ...] = ()

    def timed_out(self) -> TimeoutError:
        if self.after is not None:
            # A plain TimeoutError: the proxy's part is over (docs/asyncio.md).
            return TimeoutError(f"{self.after} did not complete {self.budget.describe()}")
        if self.connecting:
            return _negotiate._connect_timeout(self.proxy, self.budget, self.last)
        return _negotiate.handshake_timeout(
            self.proxy, self.budget, self.waiting_for, self.heard, self.hint
        )

    def lost(self, exc: OSError) -> ProxyError:
        return _negotiate.handshake_lost(self.proxy, exc, self.waiting_for, self.hint)


async def _bounded(timeout: float | None, work: Awaitable[_T], call: _Call | None) -> _T:
    """``await work``, all of it within ``timeout`` seconds (``None``: no limit).

    At the deadline the work is cancelled where it waits and ``call``'s
    timeout error is raised (a plain ``TimeoutError`` without ``call``).
    Python 3.11+ has ``asyncio.timeout``; before, ``asyncio.wait_for`` runs
    the work as a task of its own and cancels it the same way.
    """
    if timeout is None:
        return await work
    if _HAS_TIMEOUT:
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await work
        except TimeoutError:
            # Only the scope's own expiry: a TimeoutError the work raised
            # itself (a ProxyTimeoutError) is already the right one.
            if call is None or not scope.expired():
                raise
            raise call.timed_out() from None
    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        # Before 3.11 asyncio.TimeoutError is not the builtin one that
        # ProxyTimeoutError derives from: this can only be the deadline.
        if call is None:
            raise TimeoutError(f"did not complete within {timeout:g} s") from None
        raise call.timed_out() from None


def _check_timeout(timeout: float | None) -> None:
    """Refuse what ``socket.settimeout`` refuses, with its errors, as the blocking client does.

    Called on entry, before any coroutine is made: a NaN deadline never
    fires on the default loop, and uvloop raises from inside
    ``asyncio.timeout``, leaving the call's coroutine never awaited.
    """
    if timeout is None:
        return
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        raise ValueError("Timeout value out of range")


def _forget(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Close ``sock`` after making sure the loop no longer watches its descriptor.

    A cancelled ``sock_recv`` unregisters the descriptor only in a callback
    that runs later; closing first would leave the selector watching a
    number that the next socket may reuse.
    """
    fd = sock.fileno()
    if fd != -1:
        for remove in (loop.remove_reader, loop.remove_writer):
            with contextlib.suppress(Exception):  # a loop that never watched it
                remove(fd)
    sock.close()


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` can be written to (or has an error to report)."""
    future = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _set_done, future)
    try:
        await future
    finally:
        loop.remove_writer(fd)


async def _connect_socket(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, address: tuple[Any, ...]
) -> None:
    """Connect ``sock`` to the resolved ``address`` without blocking.

    A plain socket uses ``loop.sock_connect``.  A socksocket (the caller's,
    or a patched program's) would route that call's ``sock.connect`` into
    itself: its descriptor is connected here with the C method, and the
    loop tells when the outcome is known.
    """
    if type(sock).connect is PlainSocket.connect:
        await loop.sock_connect(sock, address)
        return
    code = _connect_ex(sock, address)
    if code in _IN_PROGRESS:
        await _writable(loop, sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, f"Connect call failed {address}")


async def _getaddrinfo(
    loop: asyncio.AbstractEventLoop, host: str, port: int, family: int
) -> list[Any]:
    """The real resolver (never a patched one), in the loop's executor."""
    from . import _resolve

    return await loop.run_in_executor(
        None, _resolve.getaddrinfo, host, port, family, socket.SOCK_STREAM
    )


async def _proxy_addresses(
    loop: asyncio.AbstractEventLoop, proxy: Proxy, family: int
) -> list[tuple[int, Proxy, Any]]:
    """``(family, proxy, sockaddr)`` for each address of ``proxy`` to try, in order.

    An IP-literal proxy is its own one address; a name is resolved (by the
    real resolver) and each address gets a ``Proxy`` naming it.  Only
    addresses of ``family`` are kept when it is given.
    """
    literal = proxy._literal
    if literal is not None:
        infos: list[Any] = [(literal[0], socket.SOCK_STREAM, 0, "", literal[1])]
    else:
        try:
            infos = await _getaddrinfo(loop, proxy.host, proxy.port, family)
        except socket.gaierror as exc:
            raise ProxyConnectionError(f"cannot resolve proxy host {proxy.host!r}", exc) from exc
    return [
        (info[0], proxy if literal is not None else _with_host(proxy, str(info[4][0])), info[4])
        for info in infos
        if not family or info[0] == family
    ]


async def _send_message(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes | Secret[bytes]
) -> None:
    """Write all of ``data``.

    A :class:`~socks5client._secret.Secret` (the RFC 1929 request, a
    GSS-API context token) is written here, unwrapped only inside each
    ``send`` call: handed to ``loop.sock_sendall`` it would sit in that
    coroutine's frame, which a traceback of a timeout or a cancellation
    keeps.
    """
    if isinstance(data, bytes):
        await loop.sock_sendall(sock, data)
        return
    sent = 0
    while True:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            sent += _send(sock, memoryview(data.reveal())[sent:])
        if sent >= len(data.reveal()):
            return
        await _writable(loop, sock)


async def _run(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, call: _Call, steps: Steps[_T]
) -> _T:
    """Drive a conversation (``socks5client._conversation``) over ``sock``."""
    advance = steps.send
    result: bytes | None = None
    try:
        while True:
            try:
                step = advance(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            kind = step[0]
            if kind == RECV:
                call.waiting_for = step[2]
                try:
                    result = await loop.sock_recv(sock, step[1])
                except OSError as exc:
                    raise call.lost(exc) from exc
                if result:
                    call.heard = True
            elif kind == SEND:
                call.waiting_for = "proxy to accept our request"
                try:
                    await _send_message(loop, sock, step[1])
                except OSError as exc:
                    raise call.lost(exc) from exc
                result = None
            else:
                call.hint = step[1]
                result = None
    finally:
        steps.close()


async def _reach_proxy(loop: asyncio.AbstractEventLoop, sock: socket.socket, call: _Call) -> None:
    """Connect ``sock`` to ``call.proxy``, trying each of its addresses of the socket's family."""
    proxy = call.proxy
    family = sock.family
    addrs = proxy._literal_sockaddrs(family)
    if addrs is None:
        try:
            infos = await _getaddrinfo(loop, proxy.host, proxy.port, family)
        except socket.gaierror as exc:
            # The error's wording looks the name up once more: in the executor.
            error = await loop.run_in_executor(None, _negotiate._unresolvable, proxy, family, exc)
            raise error from exc
        addrs = [info[4] for info in infos]
    for i, addr in enumerate(addrs):
        if i:
            # A TCP socket whose connect failed cannot connect again (Linux
            # answers ECONNABORTED): the next address gets a fresh one.
            _renew(sock, call)
        try:
            await _connect_socket(loop, sock, addr)
        except OSError as exc:
            call.last = exc
            continue
        call.connecting = False
        return
    raise _negotiate.connect_failed(proxy, call.last) from call.last


async def _handshake(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    call: _Call,
    request: bytes | Callable[[], bytes],
    context: str | Callable[[], str],
    name: str | None = None,
) -> Reply:
    """Reach ``call.proxy`` on ``sock``, authenticate, send ``request``; return the reply.

    The asyncio twin of ``_negotiate.handshake``: same conversation, same
    errors, same debug lines.  ``request`` may be a function, called once
    connected (UDP ASSOCIATE names our own address).  Raises a
    :class:`ProxyError`; the caller closes the socket.
    """
    proxy = call.proxy
    where = describe(proxy.host, proxy.port)
    log = debug_logger()
    if log is not None:
        log.debug("%s: connecting to proxy %s", _conversation.text(context), where)
    try:
        plan = plan_for(proxy)
        call.connecting = True
        call.heard = False
        call.hint = ""
        await _reach_proxy(loop, sock, call)
        if callable(request):
            request = request()
        reply, protected = await _run(
            loop,
            sock,
            call,
            _conversation.handshake(plan, proxy.pipeline, request, context, where, name),
        )
    except ProxyError as exc:
        if log is not None:
            log.debug("%s via proxy %s failed: %s", _conversation.text(context), where, exc)
        raise
    if protected is not None:
        # The data would have to be wrapped per message (GSS-API integrity
        # or confidentiality): the asyncio client has no such stream yet.
        # Only the level is kept: the protection holds the live security
        # context (its keys), not for this frame's locals in the traceback.
        level = protected[0].level
        protected = None
        raise OSError(
            errno.EOPNOTSUPP,
            f"proxy {where} agreed on GSS-API per-message protection (level"
            f" {level}), which the asyncio client does not support yet;"
            " use gssapi_protection='none' for this proxy",
        )
    if log is not None:
        log.debug(
            "%s via proxy %s succeeded (BND %s)",
            _conversation.text(context),
            where,
            describe(reply.host, reply.port),
        )
    return reply


def _renew(sock: socket.socket, call: _Call) -> None:
    """A fresh, unconnected descriptor under ``sock`` (for the next address to try).

    It must leave as the first one did, by the same interface and route.  A
    socksocket renews itself (its recorded options and bind).  A plain
    socket gets what the blocking client's ``socksocket._renew_fd`` carries
    over (``swap_descriptor``: the options that differ from a fresh
    socket's, however they were set), then the call's ``socket_options``
    and its local address.  An option that cannot be copied raises rather
    than being dropped.
    """
    if isinstance(sock, socksocket):
        sock._renew_fd()
    else:
        carried = swap_descriptor(sock)
        for option in call.options:
            sock.setsockopt(*option)
        for level, name, value in carried:
            sock.setsockopt(level, name, value)
        if call.local is not None:
            _bind_again(sock, call.local, call.local_exact)
    # The new descriptor is blocking: settimeout rewrites the flags.
    PlainSocket.settimeout(sock, 0.0)


def _bind_again(sock: socket.socket, address: tuple[Any, ...], exact: bool) -> None:
    """Bind the renewed ``sock`` to ``address``, where the previous descriptor was.

    If we closed the previous connection first (a proxy that refused and
    kept it open), its port stays taken for a while (FIN_WAIT, TIME_WAIT).
    A port the caller gave (``local_addr``, ``exact``) is asked for again
    and, if taken, fails the call with EADDRINUSE, as the blocking client's
    bind does.  A port read back from a socket its owner bound may be the
    kernel's pick (a bind to port 0), which cannot be told apart: then the
    same host with a new port will do.
    """
    try:
        sock.bind(address)
    except OSError as exc:
        if exact or exc.errno != errno.EADDRINUSE or not address[1]:
            raise
        sock.bind((address[0], 0, *address[2:]))


def _bound_address(sock: socket.socket) -> tuple[Any, ...] | None:
    """The local address the owner of the unconnected plain ``sock`` bound it to, if any."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    address: tuple[Any, ...] = sock.getsockname()
    if not address[1] and _unspecified(str(address[0]).split("%", 1)[0]):
        return None
    return address


async def _connect_via(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    call: _Call,
    host: str,
    port: int,
) -> Reply:
    """CONNECT to ``(host, port)`` through ``call.proxy`` on ``sock`` (unconnected).

    With ``socks5://`` a name is resolved here (in the executor) and each
    of its addresses is asked for in turn, as the blocking client does.
    """
    proxy = call.proxy
    request = _codec.encode_request(Command.CONNECT, host, port)
    is_name = request[3] == _codec.AddressType.DOMAIN
    if proxy.remote_dns or not is_name:
        targets, requests = [host], [request]
    else:
        targets = await loop.run_in_executor(None, _resolve_locally, host, port)
        requests = [_codec.encode_request(Command.CONNECT, t, port) for t in targets]
    last: SOCKS5Error | None = None
    for i, target in enumerate(targets):
        if i:
            _renew(sock, call)
        name = host if is_name and target == host else None
        try:
            return await _handshake(
                loop,
                sock,
                call,
                requests[i],
                lambda target=target: _connect_context(host, port, target),  # type: ignore[misc]
                name,
            )
        except SOCKS5Error as exc:
            # Like socket.create_connection: another address may work.
            last = exc
    assert last is not None
    raise last


def _chosen_proxy(proxy: ProxyLike | None) -> Proxy | None:
    """``proxy`` as a :class:`Proxy`; the default proxy when ``None``.

    A URL that fails validation raises an error that keeps no credentials
    (``proxy_from_args`` is guarded), but the traceback still holds this
    frame and the caller's: both drop their copies of the URL first.  The
    callers do so with ``try``/``finally``: ``del proxy``.
    """
    if proxy is None:
        return get_default_proxy()
    try:
        return proxy_from_args(proxy)
    except BaseException:
        del proxy
        raise


def _mark_connected(sock: socket.socket, address: Any, host: str, port: int, reply: Reply) -> None:
    """Give a socksocket the state its own ``connect`` would have left.

    Its ``getpeername()`` is then the destination, ``get_proxy_sockname()``
    the reply's address, and nothing treats it as unconnected any more.
    """
    if isinstance(sock, socksocket):
        sock._peername = sock._sockaddr(address, host, port)
        sock._proxy_sockname = (reply.host, reply.port)


#: Flags Linux folds into a socket's type; what is left says TCP or not.
_TYPE_FLAGS = getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)


def _check_stream(sock: socket.socket) -> None:
    # The handshake is TCP's: on a datagram socket each message would go as
    # a datagram to whatever UDP service has the proxy's port number, the
    # RFC 1929 password included.  Older Pythons (and some subclasses) may
    # report the type with the creation flags in it.
    kind = int(sock.type) & ~_TYPE_FLAGS
    if kind != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise OSError(
            errno.EOPNOTSUPP, "connect() takes a TCP socket (AF_INET or AF_INET6, SOCK_STREAM)"
        )


def _check_unconnected(sock: socket.socket) -> None:
    # The same judgement as socksocket._connect_via's, before any byte of
    # the handshake is sent.
    if isinstance(sock, socksocket) and sock._is_connected_already():
        raise OSError(errno.EISCONN, "the socket is already connected")


async def connect(
    sock: socket.socket,
    address: tuple[Any, ...],
    proxy: ProxyLike | None = None,
    *,
    timeout: float | None = None,
) -> tuple[str, int] | None:
    """Connect ``sock`` to ``address`` through ``proxy``, on the running loop.

    ``sock`` is an unconnected TCP socket (a plain ``socket.socket`` or a
    :class:`~socks5client.socksocket`); it is made non-blocking and left so,
    as ``loop.sock_*`` and transports want it.  ``address`` is ``(host,
    port)`` (or an IPv6 4-tuple); a name goes to the proxy unresolved with
    remote DNS.  ``proxy`` is a :class:`~socks5client.Proxy` or URL, else
    the proxy a socksocket's own ``connect()`` would use (its own, set with
    ``set_proxy``, else the default), else for a plain socket the default
    proxy; with none, the connection is direct (``loop.sock_connect``).

    Returns BND.ADDR and BND.PORT of the proxy's reply (``None`` for a
    direct connection).  ``timeout`` bounds the whole call.  On any
    failure, cancellation included, ``sock`` is closed; the errors are
    those of the blocking client.
    """
    loop = asyncio.get_running_loop()
    try:
        if proxy is None and isinstance(sock, socksocket):
            # What its own connect() would use, as the loop hook (patch) passes.
            chosen = sock._effective_proxy()
        else:
            chosen = _chosen_proxy(proxy)
    finally:
        # The URL may hold a password: no local of this frame keeps it, even
        # in the traceback of a URL that fails validation.
        del proxy
    # Argument errors, like the proxy URL's: the socket is left as it was.
    _check_timeout(timeout)
    if chosen is not None:
        host, port = _split_address(address)
        # A port out of range, an empty, over-long or NUL-holding name: the
        # request the proxy would get cannot be made.
        _codec.encode_request(Command.CONNECT, host, port)
    try:
        _check_stream(sock)
        _check_unconnected(sock)
        sock.setblocking(False)
        if chosen is None:
            await _direct(loop, sock, address, timeout)
            return None
        call = _Call(chosen, timeout)
        if not isinstance(sock, socksocket):
            # A socksocket renews its descriptor with its recorded bind; a
            # plain one's bind is read now, before connecting changes it.
            call.local = _bound_address(sock)
            call.local_exact = False
        reply = await _bounded(timeout, _connect_via(loop, sock, call, host, port), call)
    except socket.gaierror:
        # Only the destination's own lookup (socks5://, or a direct
        # connection) raises it unwrapped, before anything is sent (the
        # proxy's name failing is a ProxyConnectionError): as from a plain
        # socket, the socket is left open.
        raise
    except BaseException:
        _forget(loop, sock)
        raise
    _mark_connected(sock, address, host, port, reply)
    return (reply.host, reply.port)


async def _direct(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    address: tuple[Any, ...],
    timeout: float | None,
) -> None:
    """``loop.sock_connect``: ``sock`` connects directly to ``address``."""
    if not isinstance(sock, socksocket):
        await _bounded(timeout, loop.sock_connect(sock, address), None)
        return
    # The loop calls sock.connect(), which looks for a proxy again: a
    # default proxy set meanwhile must not turn this into a (blocking)
    # handshake.  The socket's own setting is pinned to "direct" for the
    # call only, and then restored.
    own = sock._proxy
    sock._proxy = None
    try:
        await _bounded(timeout, loop.sock_connect(sock, address), None)
    finally:
        sock._proxy = own


async def _open_tunnel(
    loop: asyncio.AbstractEventLoop,
    proxy: Proxy,
    host: str,
    port: int,
    call: _Call,
    family: int,
    local_addr: tuple[str, int] | None,
    socket_options: list[tuple[Any, ...]] | None = None,
) -> socket.socket:
    """A connected socksocket through ``proxy`` to ``(host, port)``.

    Each address of the proxy is tried in turn (the ones of ``family``
    only, if it is given), as the blocking ``create_connection`` does.
    ``socket_options`` are set on each socket before it connects.
    """
    errors: list[OSError] = []
    for fam, via, _sockaddr in await _proxy_addresses(loop, proxy, family):
        call.proxy = via
        sock = PlainSocket(fam, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if local_addr is not None:
                sock.bind(local_addr)
            reply = await _connect_via(loop, sock, call, host, port)
        except BaseException as exc:
            _forget(loop, sock)
            if not isinstance(exc, ProxyConnectionError):
                raise
            # Another address of the proxy may work; a proxy that answered
            # and refused will not do better.
            errors.append(exc)
            continue
        # Handed over as a socksocket, so that getpeername() is the
        # destination as requested, as on the blocking client's sockets.
        tunnel = socksocket(fam, socket.SOCK_STREAM, 0, fileno=sock.detach())
        tunnel.setblocking(False)
        tunnel._peername = tunnel._sockaddr((host, port), host, port)
        tunnel._proxy_sockname = (reply.host, reply.port)
        return tunnel
    if not errors:
        raise ProxyConnectionError(
            f"proxy {describe(proxy.host, proxy.port)} has no address of the family asked for"
        )
    raise errors[-1]


def _server_hostname(ssl: SSLArg, server_hostname: str | None, host: str) -> str | None:
    if server_hostname is not None or not ssl:
        return server_hostname
    # asyncio needs the name when it is given a socket rather than a host:
    # SNI and the certificate check are about the destination, never the proxy.
    return _tls_name(host)


def _tls_name(host: str) -> str:
    """The name TLS must check for ``host``: the form the proxy was asked to connect to.

    ssl encodes non-ASCII text in IDNA 2003, which can spell another domain
    than the IDNA 2008 form the request carried ("faß.de" is "fass.de" there,
    "xn--fa-hia.de" here): a proxy could then hand over a server holding a
    valid certificate for that other domain.  So a name gets exactly the
    DST.ADDR bytes (``socks5://`` looks up that same form); an IP literal is
    left as given.
    """
    atyp, encoded = _codec.encode_host(host)
    if atyp != _codec.AddressType.DOMAIN:
        return host
    return encoded[1:].decode("ascii")


#: Per event loop class: the keyword arguments its ``create_connection``
#: takes (None: any), read once, when first needed (inspect is costly to
#: import).
_LOOP_KEYWORDS: dict[type, frozenset[str] | None] = {}


def _loop_keywords(loop: asyncio.AbstractEventLoop) -> frozenset[str] | None:
    kind = type(loop)
    if kind not in _LOOP_KEYWORDS:
        import inspect

        try:
            params = inspect.signature(kind.create_connection).parameters.values()
        except (TypeError, ValueError):  # no signature to read: the loop judges later
            _LOOP_KEYWORDS[kind] = None
        else:
            kinds = {p.kind for p in params}
            _LOOP_KEYWORDS[kind] = (
                None
                if inspect.Parameter.VAR_KEYWORD in kinds
                else frozenset(p.name for p in params if p.kind == p.KEYWORD_ONLY)
            )
    return _LOOP_KEYWORDS[kind]


def _check_arguments(
    loop: asyncio.AbstractEventLoop,
    function: str,
    ssl: SSLArg,
    server_hostname: str | None,
    kwargs: dict[str, Any],
    extra: tuple[str, ...] = (),
) -> None:
    """Refuse, before the tunnel opens, what the loop would refuse once it is up.

    asyncio checks these before it connects anywhere; here the loop only
    sees them with the tunnel's socket, after the destination was reached.
    ``extra`` names keywords ``function`` takes besides the loop's.
    """
    if kwargs.get("sock") is not None:
        raise ValueError("host/port and sock can not be specified at the same time")
    # sock=None (the patch hook's) means "no socket": the tunnel's goes in.
    kwargs.pop("sock", None)
    if not ssl:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        for name in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
            if kwargs.get(name) is not None:
                raise ValueError(f"{name} is only meaningful with ssl")
    known = _loop_keywords(loop)
    if known is None:
        return
    # _DIRECT_ONLY ones are dropped with a proxy (documented), whatever the
    # loop takes; socket_options is this module's own.
    allowed = known.union(_DIRECT_ONLY, extra, ("socket_options",))
    for name in kwargs:
        if name not in allowed:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")


async def _tunnel_for(
    host: str,
    port: int,
    chosen: Proxy,
    timeout: float | None,
    kwargs: dict[str, Any],
    then: Callable[[socket.socket], Awaitable[_T]],
    after: str | None = None,
) -> _T:
    """Open a tunnel and run ``then(sock)`` on it, all of it within ``timeout``.

    ``after`` names what ``then`` waits for (the TLS handshake), for the
    plain ``TimeoutError`` raised if the deadline hits it.
    """
    loop = asyncio.get_running_loop()
    family = int(kwargs.pop("family", 0) or 0)
    local_addr = kwargs.pop("local_addr", None)
    options = kwargs.pop("socket_options", None)
    for name in _DIRECT_ONLY:
        kwargs.pop(name, None)
    host, port = _split_address((host, port))
    call = _Call(chosen, timeout)
    # A descriptor renewed for the destination's next address binds and
    # sets these again.
    call.local = local_addr
    call.options = tuple(options or ())

    async def work() -> _T:
        sock = await _open_tunnel(loop, chosen, host, port, call, family, local_addr, options)
        if after is not None:
            call.after = (
                f"{after} with {describe(host, port)} (through the tunnel via proxy"
                f" {describe(call.proxy.host, call.proxy.port)})"
            )
        try:
            return await then(sock)
        except BaseException:
            _forget(loop, sock)
            raise

    return await _bounded(timeout, work(), call)


async def _as_is(sock: socket.socket) -> socket.socket:
    return sock


async def open_socket(
    host: str,
    port: int,
    proxy: ProxyLike | None,
    *,
    timeout: float | None = None,
    local_addr: tuple[str, int] | None = None,
    socket_options: list[tuple[Any, ...]] | None = None,
) -> socket.socket:
    """A non-blocking socksocket connected through ``proxy`` to ``(host, port)``.

    For integrations that wrap the socket themselves (the httpx transport
    hands it to anyio).  ``proxy`` is a :class:`~socks5client.Proxy` or URL,
    or ``None`` for the default proxy (with none set: ``OSError(EOPNOTSUPP)``).
    ``timeout`` bounds the whole call; on failure or cancellation nothing is
    left open.
    """
    try:
        chosen = _chosen_proxy(proxy)
    finally:
        del proxy  # see _chosen_proxy
    _check_timeout(timeout)
    if chosen is None:
        # A socksocket through a proxy is what the callers wrap; with no
        # proxy at all there is nothing to make one of.
        raise OSError(errno.EOPNOTSUPP, "open_socket needs a proxy, and none is set")
    kwargs: dict[str, Any] = {"local_addr": local_addr, "socket_options": socket_options}
    return await _tunnel_for(host, port, chosen, timeout, kwargs, _as_is)


async def open_connection(
    host: str,
    port: int,
    *,
    proxy: ProxyLike | None = None,
    ssl: SSLArg = None,
    server_hostname: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Like :func:`asyncio.open_connection`, through a SOCKS5 proxy.

    ``proxy``: a :class:`~socks5client.Proxy` or URL; else the default
    proxy; with neither, a direct connection.  ``ssl`` makes TLS with the
    destination, through the tunnel (``server_hostname`` defaults to
    ``host``; a non-ASCII name in the IDNA 2008 form sent to the proxy).
    ``timeout`` bounds the whole call, TLS handshake included.
    Other keyword arguments are :func:`asyncio.open_connection`'s
    (``limit``, ``ssl_handshake_timeout``...); ``local_addr`` and ``family``
    apply to the connection to the proxy, and the arguments that shape a
    direct connection (``happy_eyeballs_delay``...) are ignored with a proxy.
    """
    try:
        chosen = _chosen_proxy(proxy)
    finally:
        del proxy  # see _chosen_proxy
    _check_timeout(timeout)
    if chosen is None:
        return await _bounded(
            timeout,
            asyncio.open_connection(host, port, ssl=ssl, server_hostname=server_hostname, **kwargs),
            None,
        )
    _check_arguments(
        asyncio.get_running_loop(), "open_connection", ssl, server_hostname, kwargs, ("limit",)
    )
    hostname = _server_hostname(ssl, server_hostname, host)

    def then(sock: socket.socket) -> Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        return asyncio.open_connection(sock=sock, ssl=ssl, server_hostname=hostname, **kwargs)

    after = "the TLS handshake" if ssl else "the connection"
    return await _tunnel_for(host, port, chosen, timeout, kwargs, then, after)


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    *,
    proxy: ProxyLike | None = None,
    ssl: SSLArg = None,
    server_hostname: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Like ``loop.create_connection(protocol_factory, host, port, ...)``, through a proxy.

    Arguments as for :func:`open_connection`; returns ``(transport,
    protocol)`` from the running loop.
    """
    loop = asyncio.get_running_loop()
    try:
        chosen = _chosen_proxy(proxy)
    finally:
        del proxy  # see _chosen_proxy
    _check_timeout(timeout)
    if chosen is None:
        return await _bounded(
            timeout,
            loop.create_connection(
                protocol_factory, host, port, ssl=ssl, server_hostname=server_hostname, **kwargs
            ),
            None,
        )
    _check_arguments(loop, "create_connection", ssl, server_hostname, kwargs)
    hostname = _server_hostname(ssl, server_hostname, host)

    def then(sock: socket.socket) -> Awaitable[tuple[asyncio.Transport, asyncio.BaseProtocol]]:
        return loop.create_connection(
            protocol_factory, sock=sock, ssl=ssl, server_hostname=hostname, **kwargs
        )

    after = "the TLS handshake" if ssl else "the connection"
    return await _tunnel_for(host, port, chosen, timeout, kwargs, then, after)


# -- BIND ------------------------------------------------------------------------


class _AcceptCall(_Call):
    """The wait for a BIND's peer: until the proxy says something, nobody has come."""

    __slots__ = ("address",)

    def __init__(self, proxy: Proxy, timeout: float | None, address: tuple[Any, ...]) -> None:
        super().__init__(proxy, timeout)
        self.address = address

    def timed_out(self) -> TimeoutError:
        if self.heard:
            return super().timed_out()
        # Worded as the blocking client's accept() words it.
        return ProxyTimeoutError(
            f"no peer connected to {describe(*self.address[:2])}"
            f" (BIND via proxy {describe(self.proxy.host, self.proxy.port)})"
            f" {self.budget.describe()}"
        )


async def _reply_unless_closed(reading: asyncio.Task[Reply], closed: asyncio.Future[None]) -> Reply:
    """The reply ``reading`` gets, or ``closed``'s error if ``BindListener.close()`` is first."""
    await asyncio.wait((reading, closed), return_when=asyncio.FIRST_COMPLETED)
    if closed.done():
        closed.result()  # raises the EBADF close() set
    return reading.result()


class BindListener:
    """A SOCKS5 BIND waiting for its peer: made by :func:`bind`.

    :attr:`address` is where the peer must connect (on the proxy);
    :meth:`accept` waits for it.  One BIND serves one connection.
    """

    def __init__(self, sock: socket.socket, proxy: Proxy, address: tuple[Any, ...]) -> None:
        self._sock: socket.socket | None = sock
        self._proxy = proxy
        #: Where the peer must connect: the proxy's BND.ADDR and BND.PORT.
        self.address = address
        # The task reading the second reply while accept() waits, and the
        # future close() fails with EBADF to end that wait (see accept()).
        self._reading: asyncio.Task[Reply] | None = None
        self._closed: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<BindListener {describe(*self.address[:2])} via {self._proxy!r}>"

    async def accept(self, *, timeout: float | None = None) -> tuple[socket.socket, Any]:
        """Wait for the peer; return ``(sock, peer_address)``.

        ``sock`` carries the connection (non-blocking, for ``loop.sock_*``
        or ``asyncio.open_connection(sock=sock)``).  ``timeout`` bounds the
        wait for the proxy's second reply; past it a
        :class:`~socks5client.errors.ProxyTimeoutError` is raised and the
        BIND is closed, as on any failure or cancellation.  :meth:`close`
        while it waits makes it raise ``OSError(EBADF)``.
        """
        _check_timeout(timeout)
        sock = self._sock
        if sock is None:
            raise OSError(errno.EINVAL, "this SOCKS5 BIND has been accepted or closed")
        if self._reading is not None:
            raise OSError(errno.EINVAL, "another accept() is waiting on this SOCKS5 BIND")
        loop = asyncio.get_running_loop()
        where = describe(self._proxy.host, self._proxy.port)
        call = _AcceptCall(self._proxy, timeout, self.address)
        call.connecting = False
        # The socket stays on the listener and the read runs as a task of its
        # own, so that close() can end this wait: a read the loop watches
        # does not end when its socket is closed.  close() ends it through
        # a future of its own, failed with EBADF, never by a cancellation:
        # a CancelledError here is then always the caller's (Python 3.9
        # and 3.10 cannot tell whose a cancellation is).
        reading = self._reading = loop.create_task(
            _run(loop, sock, call, _conversation.read_reply("BIND (the peer's connection)", where))
        )
        closed = self._closed = loop.create_future()
        try:
            reply = await _bounded(timeout, _reply_unless_closed(reading, closed), call)
        except BaseException:
            self._sock = None
            reading.cancel()
            _forget(loop, sock)
            raise
        finally:
            self._reading = self._closed = None
        self._sock = None
        peer: tuple[Any, ...]
        if sock.family == socket.AF_INET6 or reply.atyp == _codec.AddressType.IPV6:
            peer = (reply.host, reply.port, 0, 0)
        else:
            peer = (reply.host, reply.port)
        conn = socksocket(sock.family, socket.SOCK_STREAM, 0, fileno=sock.detach())
        conn.setblocking(False)
        conn._peername = peer
        return conn, peer

    def close(self) -> None:
        """Give up the BIND (closes the connection to the proxy).

        A task waiting in :meth:`accept` wakes and raises ``OSError(EBADF)``.
        """
        sock, self._sock = self._sock, None
        reading, self._reading = self._reading, None
        closed, self._closed = self._closed, None
        if closed is not None and not closed.done():
            closed.set_exception(OSError(errno.EBADF, "the SOCKS5 BIND was closed"))
            # Marked as seen: accept() raises it, unless its task was
            # cancelled first, when asyncio would log it as never retrieved.
            closed.exception()
        if reading is not None:
            # Before the socket closes: the read stops watching its
            # descriptor, whose number is free for reuse after.
            reading.cancel()
        if sock is not None:
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is None:
                sock.close()
            else:
                _forget(loop, sock)


async def bind(
    proxy: ProxyLike | None = None,
    peer: tuple[str, int] | None = None,
    *,
    timeout: float | None = None,
    family: int = 0,
) -> BindListener:
    """Ask the proxy to accept one inbound connection (SOCKS5 BIND).

    ``peer`` is the address the proxy should accept a connection from
    (``None``: any; proxies such as Dante refuse other peers).  Returns a
    :class:`BindListener` whose ``address`` is where the peer must connect;
    then ``await listener.accept()``.  ``timeout`` bounds this call (not
    the wait for the peer).
    """
    loop = asyncio.get_running_loop()
    try:
        chosen = _chosen_proxy(proxy)
    finally:
        del proxy  # see _chosen_proxy
    _check_timeout(timeout)
    if chosen is None:
        raise OSError(errno.EOPNOTSUPP, "SOCKS5 BIND needs a proxy, and none is set")
    call = _Call(chosen, timeout)

    async def work() -> BindListener:
        errors: list[OSError] = []
        for fam, via, _sockaddr in await _proxy_addresses(loop, chosen, family):
            six = fam == socket.AF_INET6
            if peer is None:
                host, port = ("::" if six else "0.0.0.0"), 0
            else:
                host, port = _split_address(peer)
            if not chosen.remote_dns and not _is_ip_literal(host):
                host = (await loop.run_in_executor(None, _resolve_locally, host, port))[0]
            request = _codec.encode_request(Command.BIND, host, port)
            call.proxy = via
            sock = PlainSocket(fam, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                reply = await _handshake(
                    loop, sock, call, request, f"BIND for {describe(host, port)}"
                )
                bnd_host = reply.host
                # From ATYP and the decoded address (see sock.py's
                # _socks_bind): never a ValueError for a hostile BND.ADDR.
                if _codec.is_unspecified(reply.atyp, bnd_host):
                    # The proxy listens on all its addresses; the one we
                    # reached it on is the one a peer can use too.
                    bnd_host = str(sock.getpeername()[0])
            except BaseException as exc:
                _forget(loop, sock)
                if not isinstance(exc, ProxyConnectionError):
                    raise
                errors.append(exc)
                continue
            address: tuple[Any, ...] = (
                (bnd_host, reply.port, 0, 0) if six else (bnd_host, reply.port)
            )
            return BindListener(sock, via, address)
        if not errors:
            raise ProxyConnectionError(
                f"proxy {describe(chosen.host, chosen.port)} has no address of the family asked for"
            )
        raise errors[-1]

    return await _bounded(timeout, work(), call)


def _unspecified(host: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(host).is_unspecified


# -- UDP ASSOCIATE -------------------------------------------------------------


class UDPEndpoint:
    """A UDP association on the event loop: made by :func:`open_udp`.

    Datagrams go to the proxy's relay with the RFC 1928 header and come
    back with their real source.  The association logic is the UDP
    variant's (``socks5client.udp``): datagrams not from the relay and
    malformed ones are dropped, fragments (FRAG != 0) are reassembled, and
    the association ends when the proxy closes the control connection
    (:class:`~socks5client.errors.UDPAssociationClosedError`).
    """

    def __init__(self, udp: socket.socket, assoc: Any, proxy: Proxy) -> None:
        self._udp = udp
        self._assoc = assoc
        self._proxy = proxy
        # The tasks waiting in recvfrom() and in sendto(): one registration
        # per descriptor and direction serves each set (a second add_reader
        # or add_writer on a descriptor replaces the first's callback, and
        # either task's remove would drop both), and close() must wake them.
        self._waiters: set[asyncio.Future[None]] = set()
        self._writers: set[asyncio.Future[None]] = set()
        # The loop holding the registrations, and which are held: the UDP
        # socket for reading, for writing, the control connection for
        # reading (while any task waits: its end fails every call).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held = (False, False, False)

    def __repr__(self) -> str:
        return f"<UDPEndpoint relay={self.relay_address!r} via {self._proxy!r}>"

    @property
    def local_address(self) -> Any:
        """The local UDP socket's address."""
        return self._udp.getsockname()

    @property
    def relay_address(self) -> Any:
        """The proxy's relay, where the datagrams go."""
        return self._assoc.relay

    def _check(self) -> None:
        if self._udp.fileno() == -1:
            raise OSError(errno.EBADF, "the UDP endpoint is closed")
        # A read that cannot block: raises once the proxy has closed the
        # control connection, ignores anything else it might send.
        self._assoc.read_control()

    async def sendto(self, data: bytes, address: tuple[Any, ...]) -> int:
        """Send one datagram to ``address`` (a name unresolved with remote DNS).

        Returns the payload's length.
        """
        # First, as a socket does: a non-buffer (an int, which bytes() would
        # turn into that many NULs; a list of ints) is a TypeError before
        # anything is sent.
        payload = memoryview(data).cast("B")
        loop = asyncio.get_running_loop()
        host, port = _split_address(address)
        if not self._proxy.remote_dns and not _is_ip_literal(host):
            host = (await loop.run_in_executor(None, _resolve_locally, host, port))[0]
        datagram = _codec.encode_udp_header(host, port) + payload.tobytes()
        while True:
            self._check()
            try:
                self._udp.sendto(datagram, self._assoc.relay)
            except (BlockingIOError, InterruptedError):
                await self._wait(loop, self._writers)
                continue
            return len(payload)

    async def recvfrom(self, *, timeout: float | None = None) -> tuple[bytes, Any]:
        """The next valid datagram's payload and real source, within ``timeout``.

        Raises ``TimeoutError`` past ``timeout``, and
        :class:`~socks5client.errors.UDPAssociationClosedError` once the proxy
        has ended the association.
        """
        _check_timeout(timeout)
        return await _bounded(timeout, self._receive(), None)

    async def _receive(self) -> tuple[bytes, Any]:
        loop = asyncio.get_running_loop()
        udp, assoc = self._udp, self._assoc
        while True:
            self._check()
            try:
                data, source = udp.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                await self._wait(loop, self._waiters)
                continue
            complete = None
            if assoc.from_relay(source):
                try:
                    dgram = _codec.parse_udp_datagram(data)
                except ProxyError:
                    pass  # malformed: dropped, as a lost datagram would be
                else:
                    complete = assoc.reassembler.push(dgram, time.monotonic())
            if complete is None:
                # Dropped (foreign, malformed, or a fragment kept for later).
                # A flood of these is always readable: without a yield here
                # the loop would never run other tasks, the deadline or a
                # cancellation until the queue drained.
                await asyncio.sleep(0)
                continue
            atyp, host, port, payload = complete
            if assoc.six or atyp == _codec.AddressType.IPV6:
                return payload, (host, port, 0, 0)
            return payload, (host, port)

    async def _wait(
        self, loop: asyncio.AbstractEventLoop, waiters: set[asyncio.Future[None]]
    ) -> None:
        """Wait until the UDP socket is ready or the control connection is readable.

        Ready for reading for ``self._waiters``, for writing for
        ``self._writers``.

        Every task waiting here shares the registrations and is woken by
        them, then retries or raises from ``_check()``; the last one to
        leave a set drops what only that set needed.
        """
        future = loop.create_future()
        waiters.add(future)
        try:
            self._watch(loop)
            await future
        finally:
            waiters.discard(future)
            self._watch(loop)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the loop's registrations those the waiting tasks need.

        Nothing once close() has run: the descriptor numbers may be another
        socket's by then.
        """
        udp_fd = self._udp.fileno()
        if udp_fd == -1:
            return
        want = (bool(self._waiters), bool(self._writers), bool(self._waiters or self._writers))
        held, self._held = self._held, want
        self._loop = loop
        watches = (
            (loop.add_reader, loop.remove_reader, udp_fd, self._wake_readers),
            (loop.add_writer, loop.remove_writer, udp_fd, self._wake_writers),
            (loop.add_reader, loop.remove_reader, self._assoc.control_fd, self._wake),
        )
        for (add, remove, fd, callback), had, wanted in zip(watches, held, want):
            if wanted and not had:
                add(fd, callback)
            elif had and not wanted:
                with contextlib.suppress(Exception):  # a loop already closed
                    remove(fd)

    def _wake_readers(self) -> None:
        for future in self._waiters:
            _set_done(future)

    def _wake_writers(self) -> None:
        for future in self._writers:
            _set_done(future)

    def _wake(self) -> None:
        self._wake_readers()
        self._wake_writers()

    def _unwatch(self) -> None:
        loop, held = self._loop, self._held
        self._held = (False, False, False)
        if loop is not None:
            removes = (loop.remove_reader, loop.remove_writer, loop.remove_reader)
            fds = (self._udp.fileno(), self._udp.fileno(), self._assoc.control_fd)
            for remove, fd, had in zip(removes, fds, held):
                if had:
                    with contextlib.suppress(Exception):  # a loop already closed
                        remove(fd)

    def close(self) -> None:
        """End the association: close the UDP socket and the control connection.

        Tasks waiting in :meth:`recvfrom` or :meth:`sendto` wake and raise
        ``OSError(EBADF)``.
        """
        if self._udp.fileno() != -1:
            # Before the sockets close: their numbers are free for reuse after.
            self._unwatch()
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            for sock in (self._udp, self._assoc.control):
                if loop is None:
                    sock.close()
                else:
                    _forget(loop, sock)
            self._assoc.close()
            # Each waiter goes back to _check(), which raises EBADF now.
            self._wake()

    async def __aenter__(self) -> UDPEndpoint:
        return self

    async def __aexit__(self, *args: object) -> None:
        self.close()


async def open_udp(
    proxy: ProxyLike | None = None,
    *,
    local_addr: tuple[str, int] | None = None,
    family: int = 0,
    timeout: float | None = None,
) -> UDPEndpoint:
    """Open a UDP association through ``proxy`` (UDP ASSOCIATE); return a :class:`UDPEndpoint`.

    ``local_addr`` is where the local UDP socket binds (default: the
    wildcard, any port); ``family`` restricts the proxy's addresses tried.
    ``timeout`` bounds this call, as for :func:`connect`.
    """
    from .udp import UDPSocksSocket, _Association

    loop = asyncio.get_running_loop()
    try:
        chosen = _chosen_proxy(proxy)
    finally:
        del proxy  # see _chosen_proxy
    _check_timeout(timeout)
    if chosen is None:
        raise OSError(errno.EOPNOTSUPP, "a SOCKS5 UDP association needs a proxy, and none is set")
    call = _Call(chosen, timeout)
    where = describe(chosen.host, chosen.port)

    async def associate(fam: int, via: Proxy) -> UDPEndpoint:
        udp = PlainSocket(fam, socket.SOCK_DGRAM)
        control = PlainSocket(fam, socket.SOCK_STREAM)
        try:
            udp.setblocking(False)
            control.setblocking(False)
            udp.bind(local_addr or ("::" if fam == socket.AF_INET6 else "0.0.0.0", 0))
            local_host, local_port = udp.getsockname()[:2]

            def request() -> bytes:
                host = local_host
                if _unspecified(host.split("%", 1)[0]):
                    # Datagrams leave from the address the control
                    # connection uses to reach the proxy.
                    host = control.getsockname()[0]
                return _codec.encode_request(Command.UDP_ASSOCIATE, host, local_port)

            call.proxy = via
            reply = await _handshake(loop, control, call, request, f"UDP ASSOCIATE via {where}")
            # The UDP variant's reading of the reply (a relay named by the
            # proxy is resolved: in the executor, it may be a DNS query).
            shim: Any = _FamilyOnly(fam)
            relay = await loop.run_in_executor(
                None, UDPSocksSocket._relay_address, shim, control, reply
            )
        except BaseException:
            _forget(loop, udp)
            _forget(loop, control)
            raise
        return UDPEndpoint(udp, _Association(control, via, relay, fam == socket.AF_INET6), via)

    async def work() -> UDPEndpoint:
        errors: list[OSError] = []
        for fam, via, _sockaddr in await _proxy_addresses(loop, chosen, family):
            try:
                return await associate(fam, via)
            except ProxyConnectionError as exc:
                errors.append(exc)
        if not errors:
            raise ProxyConnectionError(f"proxy {where} has no address of the family asked for")
        raise errors[-1]

    return await _bounded(timeout, work(), call)


class _FamilyOnly:
    """What ``UDPSocksSocket._relay_address`` reads of its socket: the family."""

    def __init__(self, family: int) -> None:
        self.family = family
