"""The blocking SOCKS5 conversation with a proxy, bounded by one deadline.

``sock.py`` (CONNECT, BIND) and ``udp.py`` (UDP ASSOCIATE on the control
connection) share these steps: reach the proxy, greet it, run the chosen
authentication method, send a request and read its reply.  Byte layouts
stay in ``_codec``; this module only moves messages and turns transport
trouble into the library's errors.

Reads ask the kernel for exactly the bytes the parser still needs, so not
one byte past the reply is taken from the socket: data the destination
sends right behind the reply stays there for the application.
"""

from __future__ import annotations

import _socket
import socket
import sys
import time

from . import _codec, _conversation, _resolve
from ._codec import Reply
from ._conversation import RECV, SEND
from ._secret import Secret
from .auth import plan_for
from .errors import (
    GeneralProxyError,
    ProxyConnectionError,
    ProxyConnectionTimeoutError,
    ProxyError,
    ProxyTimeoutError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any, Callable, Literal, Optional, TypeVar

    from ._conversation import Protected, Steps
    from .auth import Protection
    from .auth.base import Script
    from .proxy import Proxy

    _T = TypeVar("_T")

    #: See _quick_plan.
    QuickPlan = tuple[int, tuple[Any, ...], dict[bytes, Script], bytes]

_ipv4_reply = _codec.ipv4_reply
_MIN_REPLY_SIZE = _codec.MIN_REPLY_SIZE
#: The first bytes of a success reply with an IPv4 BND.ADDR: version 5,
#: REP 0, RSV 0, ATYP 1.
_IPV4_SUCCESS = b"\x05\x00\x00\x01"
_NEVER = float("inf")
_ALWAYS = float("-inf")
#: What a send waits for, as timeout messages name it.
_SENDING = "proxy to accept our request"
_SELECTION = _conversation.SELECTION
_REPLY = _conversation.REPLY
#: What an IPv4 reply has beyond the MIN_REPLY_SIZE bytes read first.
_IPV4_REPLY_REST = 10 - _MIN_REPLY_SIZE

#: The socket class as it was when socks5client was imported.  Internal calls
#: go through it, never through ``socket.socket``: once a program has
#: replaced ``socket.socket`` with socksocket (``wrap_module``, patching),
#: looking it up again would route the library's own connections back into
#: itself.
PlainSocket = socket.socket

# The C methods, looked up once: the handshake calls them a dozen times.
_recv = PlainSocket.recv
_sendall = PlainSocket.sendall
_connect = PlainSocket.connect
_gettimeout = PlainSocket.gettimeout
_settimeout = PlainSocket.settimeout
_monotonic = time.monotonic
#: How far past its deadline a call may end, in seconds: the precision of
#: the millisecond timeouts every wait is rounded to anyway.
DEADLINE_SLACK = 0.001

if TYPE_CHECKING:
    # A deadline is a time.monotonic() value, or None for "wait forever".
    Deadline = Optional[float]

#: Longest a handshake on a non-blocking socket may block, in seconds.
#: A non-blocking ``connect()`` cannot return before the proxy's reply
#: without letting the caller believe the tunnel is open (asyncio's
#: ``sock_connect`` would then send application bytes into the handshake),
#: so the exchange runs blocking, bounded by this (or by
#: ``socket.getdefaulttimeout()`` when that is shorter and positive).
NONBLOCKING_HANDSHAKE_TIMEOUT = 5.0

_logger: logging.Logger | None = None


def debug_logger() -> logging.Logger | None:
    """The ``socks5client`` logger if it logs debug lines, else ``None``.

    ``logging`` is not imported for this: a program that never imported it
    cannot have configured a handler, and importing it would double the
    time ``import socks5client`` takes.
    """
    global _logger
    if _logger is None:
        logging = sys.modules.get("logging")
        if logging is None:
            return None
        _logger = logging.getLogger("socks5client")
    return _logger if _logger.isEnabledFor(10) else None  # 10: logging.DEBUG


class Budget:
    """The time one user call may take: its timeout and the deadline computed once.

    Every step of the call (resolving, reaching the proxy, each message,
    each retry) draws on the same deadline, so a timeout of *t* seconds
    bounds the whole call, however many steps it takes.
    """

    __slots__ = ("deadline", "nonblocking", "timeout")

    def __init__(self, timeout: float | None, nonblocking: bool = False) -> None:
        self.timeout = timeout
        self.nonblocking = nonblocking
        self.deadline: Deadline = None if timeout is None else _monotonic() + timeout

    @classmethod
    def for_socket(cls, sock_timeout: float | None) -> Budget:
        """The budget of a call on a socket whose timeout is ``sock_timeout``."""
        if sock_timeout == 0.0:
            default = socket.getdefaulttimeout()
            limit = NONBLOCKING_HANDSHAKE_TIMEOUT
            if default is not None and 0 < default < limit:
                limit = default
            return cls(limit, nonblocking=True)
        return cls(sock_timeout)

    def remaining(self) -> float | None:
        """Seconds left (may be negative), or None for no limit."""
        if self.deadline is None:
            return None
        return self.deadline - _monotonic()

    def describe(self) -> str:
        """``within N s`` for messages, with the non-blocking bound explained."""
        if self.timeout is None:
            return "in time"
        text = f"within {self.timeout:g} s"
        if self.nonblocking:
            text += (
                " (the socket is non-blocking, so its SOCKS5 handshake runs blocking"
                f" for at most {self.timeout:g} s; use a blocking socket with a timeout"
                " for a slow proxy)"
            )
        return text


def describe(host: str, port: int) -> str:
    """``host:port`` with brackets around IPv6 literals, for messages."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SocketChannel:
    """A connected socket to the proxy plus the call's time budget.

    Every read and write is the plain C method.  Without a deadline the
    socket is blocking.  With one, the socket's own timeout (the bound of
    each C call) is kept no longer than what is left of the deadline, give
    or take :data:`DEADLINE_SLACK`: it is set again only when it would
    outlast the deadline by more than that.  A handshake on a socket whose
    timeout is the call's own therefore makes exactly the system calls a
    hand-written exchange would, and still ends within its one deadline.
    The caller restores the socket's timeout when the handshake is over.
    """

    # Defaults most handshakes never change, kept on the class (no
    # __slots__, so an instance may shadow them) to spare each handshake
    # setting them.
    #: Added to transport errors: set while a pipelined handshake is read.
    _hint = ""
    #: Whether the endpoint has sent anything at all: a timeout before its
    #: first byte suggests it is not a SOCKS5 server.
    _heard = False
    #: Set by :func:`handshake` when GSS-API agreed on per-message
    #: protection: the protection, and the application bytes it unwrapped
    #: past the reply (the socket's first bytes to read).
    protection: Protection | None = None
    pending = b""

    def __init__(self, sock: socket.socket, proxy: Proxy, budget: Budget) -> None:
        self._sock = sock
        self._proxy = proxy
        self._budget = budget
        deadline = self._deadline = budget.deadline
        # The socket's timeout as it is now: each C call's own bound.
        current = self._c_timeout = _gettimeout(sock)
        if deadline is None:
            if current is not None:
                _settimeout(sock, None)
                self._c_timeout = None
            self._rearm_after = _NEVER
        else:
            # The time after which that bound would outlast the deadline by
            # more than the slack: until then a step needs no _arm() (one
            # clock read).  Without a deadline, never.
            self._rearm_after = deadline - current + DEADLINE_SLACK if current else _ALWAYS

    def _arm(self, waiting_for: str) -> None:
        """Bound the next C call by the deadline; raise if it has passed."""
        left = self._deadline - _monotonic()  # type: ignore[operator]
        if left <= 0:
            raise self._timed_out(waiting_for)
        c_timeout = self._c_timeout
        if not c_timeout or c_timeout > left + DEADLINE_SLACK:
            # None (blocking), 0 (non-blocking) or too long: set it to what
            # is left.  On a socket whose timeout is the call's own, this
            # does not happen while the handshake is quick.
            _settimeout(self._sock, left)
            self._c_timeout = left
            self._rearm_after = self._deadline - left + DEADLINE_SLACK  # type: ignore[operator]

    def _timed_out(self, waiting_for: str) -> ProxyTimeoutError:
        return handshake_timeout(self._proxy, self._budget, waiting_for, self._heard, self._hint)

    def _lost(self, exc: OSError, waiting_for: str) -> ProxyError:
        return transport_error(self._proxy, self._budget, exc, waiting_for, self._heard, self._hint)

    def connect(self) -> None:
        """Connect the socket to the proxy, trying each of its addresses.

        Only addresses of the socket's own family can be used.
        """
        sock, proxy = self._sock, self._proxy
        family = _family_of(sock)
        addrs = proxy._literal_sockaddrs(family)
        if addrs is None:
            try:
                infos = _resolve.getaddrinfo(proxy.host, proxy.port, family, socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise _unresolvable(proxy, family, exc) from exc
            addrs = [info[4] for info in infos]
        last: OSError | None = None
        for addr in addrs:
            if last is not None:
                # After a failed non-blocking connect, Linux answers the next
                # connect() on the same socket with ECONNABORTED.
                _renew(sock)
            if _monotonic() > self._rearm_after:
                try:
                    self._arm("")
                except ProxyTimeoutError:
                    raise _connect_timeout(proxy, self._budget, last) from None
            try:
                _connect(sock, addr)
                return
            except socket.timeout as exc:
                raise _connect_timeout(proxy, self._budget, exc) from exc
            except OSError as exc:
                last = exc
        raise connect_failed(proxy, last) from last

    def send(self, data: bytes | Secret[bytes]) -> None:
        """Send all of ``data`` before the deadline.

        A :class:`Secret` (the RFC 1929 request, a GSS-API context token) is
        unwrapped only inside the call that writes it, so no local of this
        frame, which the traceback of a timeout keeps, holds the credential.
        """
        try:
            if _monotonic() > self._rearm_after:
                self._arm(_SENDING)
            _sendall(self._sock, data if isinstance(data, bytes) else data.reveal())
        except ProxyError:
            raise
        except OSError as exc:
            raise self._lost(exc, _SENDING) from exc

    def recv_some(self, size: int, what: str) -> bytes:
        """At most ``size`` bytes, at least one; ``b""`` when the proxy closed."""
        try:
            if _monotonic() > self._rearm_after:
                self._arm(what)
            chunk = _recv(self._sock, size)
        except ProxyError:
            raise
        except OSError as exc:
            raise self._lost(exc, what) from exc
        if chunk:
            self._heard = True
        return chunk

    def run(self, steps: Steps[_T]) -> _T:
        """Drive a conversation (``socks5client._conversation``) over this connection."""
        advance = steps.send
        sock = self._sock
        result: bytes | None = None
        try:
            while True:
                step = advance(result)
                kind = step[0]
                if kind == RECV:
                    # The usual read, inline.
                    if _monotonic() > self._rearm_after:
                        self._arm(step[2])
                    try:
                        result = _recv(sock, step[1])
                    except OSError as exc:
                        raise self._lost(exc, step[2]) from exc
                    if result:
                        self._heard = True
                elif kind == SEND:
                    self.send(step[1])
                    result = None
                else:
                    self._hint = step[1]
                    result = None
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except BaseException:
            # As the asyncio driver does: a conversation left suspended by a
            # failed read or write still holds what its method keeps (the
            # GSS-API security context), reachable from this frame's locals
            # in the traceback; closing it runs the method's cleanup.
            steps.close()
            raise


# The texts of transport errors, shared by the blocking driver (SocketChannel)
# and the asyncio one (socks5client.asyncio), so both word them alike.


def handshake_timeout(
    proxy: Proxy, budget: Budget, waiting_for: str, heard: bool, hint: str = ""
) -> ProxyTimeoutError:
    """The error for a handshake past its deadline while waiting for ``waiting_for``.

    ``heard`` says whether the proxy sent anything at all: silence suggests
    it is not a SOCKS5 server.
    """
    silent = (
        ""
        if heard
        else "; it accepted the connection but sent nothing at all, so it may not"
        " be a SOCKS5 server"
    )
    return ProxyTimeoutError(
        f"proxy {describe(proxy.host, proxy.port)} did not complete the"
        f" SOCKS5 handshake {budget.describe()} (waiting for the {waiting_for})"
        f"{silent}{hint}"
    )


def handshake_lost(proxy: Proxy, exc: OSError, waiting_for: str, hint: str = "") -> ProxyError:
    """The error for a connection to the proxy that failed mid-handshake (not a timeout)."""
    return GeneralProxyError(
        f"connection to proxy {describe(proxy.host, proxy.port)} failed"
        f" during the SOCKS5 handshake (waiting for the {waiting_for}){hint}",
        exc,
    )


def transport_error(
    proxy: Proxy, budget: Budget, exc: OSError, waiting_for: str, heard: bool, hint: str = ""
) -> ProxyError:
    """The error for a C call on the connection to the proxy that failed (or timed out)."""
    if isinstance(exc, socket.timeout):
        return handshake_timeout(proxy, budget, waiting_for, heard, hint)
    return handshake_lost(proxy, exc, waiting_for, hint)


def connect_failed(proxy: Proxy, last: OSError | None) -> ProxyConnectionError:
    """The error for a proxy none of whose addresses accepted the connection."""
    return ProxyConnectionError(f"cannot connect to proxy {describe(proxy.host, proxy.port)}", last)


def _renew(sock: socket.socket) -> None:
    """A fresh, unconnected descriptor under ``sock``, in the same mode, for the next attempt.

    A ``socksocket`` also keeps its options and local address
    (``_renew_fd``); a plain socket here is one this package made itself
    (a UDP association's control connection).
    """
    renew_fd = getattr(sock, "_renew_fd", None)
    if renew_fd is not None:
        renew_fd()
        return
    from .sock import swap_descriptor  # here: sock imports this module

    for level, name, value in swap_descriptor(sock):
        sock.setsockopt(level, name, value)
    _settimeout(sock, _gettimeout(sock))


def connect_to_proxy(sock: socket.socket, proxy: Proxy, budget: Budget) -> SocketChannel:
    """Connect ``sock`` (unconnected, TCP) to the proxy; return the channel on it."""
    channel = SocketChannel(sock, proxy, budget)
    channel.connect()
    return channel


#: The C attribute: ``socket.socket.family`` converts to an enum on each read.
_family_of: Callable[[socket.socket], int] = _socket.socket.family.__get__


def _connect_timeout(
    proxy: Proxy, budget: Budget, last: OSError | None
) -> ProxyConnectionTimeoutError:
    return ProxyConnectionTimeoutError(
        f"connecting to proxy {describe(proxy.host, proxy.port)} did not succeed"
        f" {budget.describe()}",
        last,
    )


def _unresolvable(proxy: Proxy, family: int, exc: OSError) -> ProxyConnectionError:
    """The error for a proxy host with no address this socket can use."""
    where = describe(proxy.host, proxy.port)
    try:
        _resolve.getaddrinfo(proxy.host, proxy.port, 0, socket.SOCK_STREAM)
    except OSError:
        return ProxyConnectionError(f"cannot resolve proxy host {proxy.host!r}", exc)
    fam, other = ("IPv6", "AF_INET6") if family == socket.AF_INET6 else ("IPv4", "AF_INET")
    return ProxyConnectionError(
        f"proxy {where} has no {fam} address, and this socket is {other};"
        " create the socksocket with the proxy's address family",
        exc,
    )


def read_reply(
    channel: SocketChannel, context: str | Callable[[], str], where: str, name: str | None = None
) -> Reply:
    """Read one reply on ``channel``; raise the matching :class:`SOCKS5Error` unless REP is 0."""
    return channel.run(_conversation.read_reply(context, where, name))


def tunnel(
    sock: socket.socket,
    proxy: Proxy,
    budget: Budget,
    request: bytes,
    context: str | Callable[[], str],
    name: str | None = None,
) -> tuple[Reply, Protected]:
    """Connect ``sock`` to ``proxy`` and have it carry out ``request`` (CONNECT).

    Returns the reply and the per-message protection agreed on, if any
    (see :func:`handshake`, which this is, for a request whose reply ends
    the conversation).  The usual handshake takes :func:`quick_tunnel`.
    """
    quick = quick_plan(sock, proxy)
    if quick:
        reply = quick_tunnel(sock, proxy, budget, quick, request, context, name)
        return (_ipv4_reply(reply) if isinstance(reply, bytes) else reply), None
    channel, reply = handshake(sock, proxy, budget, request, context, name)
    if channel.protection is None:
        return reply, None
    return reply, (channel.protection, channel.pending)


def quick_plan(sock: socket.socket, proxy: Proxy) -> QuickPlan | Literal[False]:
    """What :func:`quick_tunnel` needs to connect ``sock`` to ``proxy``, or ``False``.

    ``False`` when the quick path does not apply (see :func:`_proxy_plan`),
    when the proxy's address is of another family than the socket, or while
    the ``socks5client`` logger logs debug lines: only the conversation
    writes them.
    """
    quick: QuickPlan | Literal[False] | None = proxy._quick
    if quick is None:
        quick = _proxy_plan(proxy)
    if quick and quick[0] == _family_of(sock) and debug_logger() is None:
        return quick
    return False


def _proxy_plan(proxy: Proxy) -> QuickPlan | Literal[False]:
    """What :func:`quick_tunnel` needs for ``proxy``, worked out once and kept on it.

    ``(family, sockaddr, scripted, greeting)``: the proxy's one address (an
    IP literal), the method selections whose sub-negotiation is known in
    advance, the greeting.  ``False`` when the quick path does not apply: a
    proxy given by name, pipelining, or a method such as GSS-API.
    """
    plan = plan_for(proxy)
    literal = proxy._literal
    quick: QuickPlan | Literal[False] = False
    if literal is not None and plan.scripted is not None and not proxy.pipeline:
        quick = (literal[0], literal[1], plan.scripted, plan.greeting)
    # Proxy is immutable to its users; like its other caches, this one is
    # not part of its value, and two threads making it make equal ones.
    object.__setattr__(proxy, "_quick", quick)
    return quick


def quick_tunnel(
    sock: socket.socket,
    proxy: Proxy,
    budget: Budget,
    quick: QuickPlan,
    request: bytes,
    context: str | Callable[[], str],
    name: str | None,
) -> Reply | bytes:
    """The usual handshake in one function: what nearly every connection runs.

    It connects to the proxy's one address, sends the messages of
    ``_conversation.handshake`` and reads as it does (the same sizes, never
    past the reply), as long as each answer is the exact one that lets the
    handshake go on: the method selection of a method in ``scripted``, its
    accepting reply, a success reply with an IPv4 address.  At the first
    other answer, or once the deadline has passed, it hands what it sent and
    read to a :class:`SocketChannel` running that conversation
    (``_conversation.replayed``), which decides and words every error, so
    the two cannot disagree.  It only saves the cost of a generator and a
    channel for messages whose bytes are known.

    Returns the reply: when this function read it, its 10 bytes, an IPv4
    success reply (``_codec.ipv4_reply`` decodes it: callers that need no
    more than BND.ADDR and BND.PORT decode it only when asked for them);
    after a hand-over, the conversation's :class:`Reply`.  The socket's
    timeout is as it was when this returns or raises (a step may shorten it
    to keep the deadline, as a channel does), so callers never restore it.
    """
    _, sockaddr, scripted, greeting = quick
    deadline = budget.deadline
    timeout = _gettimeout(sock)
    if deadline is None:
        rearm = _NEVER if timeout is None else _ALWAYS
    else:
        # As in SocketChannel: each C call is bounded by the socket's own
        # timeout, which may not outlast the deadline by more than the slack.
        # Past this time, a step shortens it (_bound) before waiting.
        rearm = deadline - timeout + DEADLINE_SLACK if timeout else _ALWAYS
    sent = -1  # not even connected
    selection = accepted = data = b""
    try:
        # One pass; each `break` hands over to the conversation.  The clock
        # is read before each wait only: a handshake message never waits to
        # be sent (it goes into a fresh connection's empty send buffer), so
        # a send starts within the slack of the check before it.
        while True:
            if _monotonic() > rearm and (rearm := _bound(sock, deadline)) == _ALWAYS:
                break
            _connect(sock, sockaddr)
            sent = 0
            what = _SENDING
            _sendall(sock, greeting)
            sent = 1
            if _monotonic() > rearm and (rearm := _bound(sock, deadline)) == _ALWAYS:
                break
            what = _SELECTION
            selection = _recv(sock, 2)
            script = scripted.get(selection)
            if script is None:
                break
            if script:
                message, expected, awaited = script
                what = _SENDING
                _sendall(sock, message if type(message) is bytes else message.reveal())  # type: ignore[union-attr]
                sent = 2
                if _monotonic() > rearm and (rearm := _bound(sock, deadline)) == _ALWAYS:
                    break
                what = awaited
                accepted = _recv(sock, len(expected))
                if accepted != expected:
                    break
                what = _SENDING
            _sendall(sock, request)
            sent += 1
            if _monotonic() > rearm and (rearm := _bound(sock, deadline)) == _ALWAYS:
                break
            what = _REPLY
            data = _recv(sock, _MIN_REPLY_SIZE)
            if data[:4] != _IPV4_SUCCESS:
                break
            if _monotonic() > rearm and (rearm := _bound(sock, deadline)) == _ALWAYS:
                break
            data += _recv(sock, _IPV4_REPLY_REST)
            if len(data) != 10:
                break
            return data
    except OSError as exc:
        if sent < 0:
            if isinstance(exc, socket.timeout):
                raise _connect_timeout(proxy, budget, exc) from exc
            raise connect_failed(proxy, exc) from exc
        raise transport_error(proxy, budget, exc, what, bool(selection)) from exc
    finally:
        # (Compared, not tracked: a timeout _bound set stays set when a
        # later _bound finds the deadline passed.)
        if _gettimeout(sock) != timeout and sock.fileno() != -1:
            _settimeout(sock, timeout)
    return _handover(sock, proxy, budget, request, context, name, sent, selection + accepted + data)


def _bound(sock: socket.socket, deadline: Deadline) -> float:
    """Bound ``sock``'s next C calls by ``deadline``, as ``SocketChannel._arm`` does.

    Returns the time after which to do it again, or ``_ALWAYS`` if the
    deadline has passed (the caller then hands over, and the channel words
    the timeout).  Without a deadline the socket is made blocking.
    """
    if deadline is None:
        _settimeout(sock, None)
        return _NEVER
    left = deadline - _monotonic()
    if left <= 0:
        return _ALWAYS
    _settimeout(sock, left)
    return deadline - left + DEADLINE_SLACK


def _handover(
    sock: socket.socket,
    proxy: Proxy,
    budget: Budget,
    request: bytes,
    context: str | Callable[[], str],
    name: str | None,
    sent: int,
    received: bytes,
) -> Reply:
    """Go on where :func:`quick_tunnel` stopped: ``sent`` messages written (-1:
    not even connected) and ``received`` read, with a channel and the
    conversation.

    The socket's timeout, which the channel may shorten to keep the
    deadline, is as it was when this returns or raises.
    """
    timeout = _gettimeout(sock)
    channel = SocketChannel(sock, proxy, budget)
    if sent < 0:
        channel.connect()
        sent = 0
    channel._heard = bool(received)
    where = describe(proxy.host, proxy.port)
    steps = _conversation.handshake(plan_for(proxy), False, request, context, where, name)
    try:
        reply: Reply = channel.run(_conversation.replayed(steps, sent, received))[0]
    finally:
        if channel._c_timeout != timeout and sock.fileno() != -1:
            _settimeout(sock, timeout)
    return reply


def handshake(
    sock: socket.socket,
    proxy: Proxy,
    budget: Budget,
    request_bytes: bytes | Callable[[], bytes],
    context: str | Callable[[], str],
    name: str | None = None,
) -> tuple[SocketChannel, Reply]:
    """Connect ``sock`` to ``proxy``, authenticate and send one request.

    ``request_bytes`` may be a function, called once connected, for a
    request that depends on the connection (UDP ASSOCIATE names our own
    address).  ``context`` names the request in messages; it may be a
    function, called only when a message needs it.  ``budget`` is the
    calling operation's one deadline; all of the handshake fits in what is
    left of it.  Returns the channel (BIND reads a second reply from it;
    its ``protection`` says whether the data must be wrapped) and the
    reply.  Raises a :class:`ProxyError`; the caller closes the socket.
    The socket is left blocking or non-blocking (see
    :class:`SocketChannel`): the caller sets the timeout it wants.
    """
    log = debug_logger()
    where = describe(proxy.host, proxy.port)
    if log is not None:
        log.debug("%s: connecting to proxy %s", _conversation.text(context), where)
    try:
        # Before connecting: a method that cannot work here (GSS-API without
        # the gssapi package) is reported before anything reaches the proxy.
        plan = plan_for(proxy)
        channel = connect_to_proxy(sock, proxy, budget)
        if callable(request_bytes):
            request_bytes = request_bytes()
        reply, protected = channel.run(
            _conversation.handshake(plan, proxy.pipeline, request_bytes, context, where, name)
        )
        if protected is not None:
            channel.protection, channel.pending = protected
    except ProxyError as exc:
        if log is not None:
            log.debug("%s via proxy %s failed: %s", _conversation.text(context), where, exc)
        raise
    if log is not None:
        log.debug(
            "%s via proxy %s succeeded (BND %s)",
            _conversation.text(context),
            where,
            describe(reply.host, reply.port),
        )
    return channel, reply
