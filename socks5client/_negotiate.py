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

import logging
import socket
import time
from typing import Callable, Optional, TypeVar

from . import _codec, _resolve
from ._codec import NeedData, Parsed, Reply
from ._secret import Secret
from .auth import AuthMethod, methods_for
from .errors import (
    GeneralProxyError,
    ProxyConnectionError,
    ProxyConnectionTimeoutError,
    ProxyError,
    ProxyProtocolError,
    ProxyTimeoutError,
    SOCKS5AuthError,
    error_for_reply_code,
)
from .proxy import Proxy

_T = TypeVar("_T")

#: Debug-level lines about each handshake.  They name the proxy by host and
#: port, and a rejected user by name; never a password.
log = logging.getLogger("socks5client")

#: The socket class as it was when socks5client was imported.  Internal calls
#: go through it, never through ``socket.socket``: once a program has
#: replaced ``socket.socket`` with socksocket (``wrap_module``, patching),
#: looking it up again would route the library's own connections back into
#: itself.
PlainSocket = socket.socket

# A deadline is a time.monotonic() value, or None for "wait forever".
Deadline = Optional[float]

#: Longest a handshake on a non-blocking socket may block, in seconds.
#: A non-blocking ``connect()`` cannot return before the proxy's reply
#: without letting the caller believe the tunnel is open (asyncio's
#: ``sock_connect`` would then send application bytes into the handshake),
#: so the exchange runs blocking, bounded by this (or by
#: ``socket.getdefaulttimeout()`` when that is shorter and positive).
NONBLOCKING_HANDSHAKE_TIMEOUT = 5.0


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
        self.deadline: Deadline = None if timeout is None else time.monotonic() + timeout

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
        return self.deadline - time.monotonic()

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


class _Truncated(Exception):
    """The proxy closed the connection before a message was complete."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data


class SocketChannel:
    """A connected socket to the proxy plus the call's time budget."""

    def __init__(self, sock: socket.socket, proxy: Proxy, budget: Budget) -> None:
        self._sock = sock
        self._proxy = proxy
        self._budget = budget
        # Whether the endpoint has sent anything at all: a timeout before
        # its first byte suggests it is not a SOCKS5 server.
        self._heard = False

    def _arm(self, waiting_for: str) -> None:
        left = self._budget.remaining()
        if left is not None and left <= 0:
            raise self._timed_out(waiting_for)
        # settimeout(None) blocks; a positive value bounds the next call only,
        # so each call gets what is left of the handshake's time.
        PlainSocket.settimeout(self._sock, left)

    def _timed_out(self, waiting_for: str) -> ProxyTimeoutError:
        hint = (
            ""
            if self._heard
            else "; it accepted the connection but sent nothing at all, so it may not"
            " be a SOCKS5 server"
        )
        return ProxyTimeoutError(
            f"proxy {describe(self._proxy.host, self._proxy.port)} did not complete the"
            f" SOCKS5 handshake {self._budget.describe()} (waiting for the {waiting_for})"
            f"{hint}"
        )

    def _lost(self, exc: OSError, waiting_for: str) -> ProxyError:
        if isinstance(exc, socket.timeout):
            return self._timed_out(waiting_for)
        return GeneralProxyError(
            f"connection to proxy {describe(self._proxy.host, self._proxy.port)} failed"
            f" during the SOCKS5 handshake (waiting for the {waiting_for})",
            exc,
        )

    def send(self, data: bytes | Secret[bytes]) -> None:
        """Send all of ``data`` before the deadline.

        A :class:`Secret` (the RFC 1929 request) is unwrapped only inside the
        ``sendall`` call, so no local of this frame, which the traceback of a
        timeout keeps, holds the password.
        """
        self._arm("proxy to accept our request")
        try:
            self._sock.sendall(data.reveal() if isinstance(data, Secret) else data)
        except OSError as exc:
            raise self._lost(exc, "proxy to accept our request") from exc

    def receive(self, parser: Callable[[bytearray], NeedData | Parsed[_T]], what: str) -> _T:
        """Read one message, never a byte more; raise on EOF or timeout."""
        buf = bytearray()
        while True:
            result = parser(buf)
            if isinstance(result, Parsed):
                return result.message
            self._arm(what)
            try:
                chunk = self._sock.recv(result.size)
            except OSError as exc:
                raise self._lost(exc, what) from exc
            if not chunk:
                raise _Truncated(bytes(buf))
            self._heard = True
            buf += chunk


def connect_to_proxy(sock: socket.socket, proxy: Proxy, budget: Budget) -> None:
    """Connect ``sock`` (unconnected, TCP) to the proxy, trying each address.

    Only addresses of the socket's own family can be used.
    """
    where = describe(proxy.host, proxy.port)
    try:
        infos = _resolve.getaddrinfo(proxy.host, proxy.port, sock.family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _unresolvable(proxy, sock.family, exc) from exc
    last: OSError | None = None
    for _family, _type, _proto, _canon, addr in infos:
        left = budget.remaining()
        if left is not None and left <= 0:
            raise ProxyConnectionTimeoutError(
                f"connecting to proxy {where} did not succeed {budget.describe()}", last
            )
        PlainSocket.settimeout(sock, left)
        try:
            PlainSocket.connect(sock, addr)
            return
        except socket.timeout as exc:
            raise ProxyConnectionTimeoutError(
                f"connecting to proxy {where} did not succeed {budget.describe()}", exc
            ) from exc
        except OSError as exc:
            last = exc
    raise ProxyConnectionError(f"cannot connect to proxy {where}", last) from last


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


def authenticate(channel: SocketChannel, methods: list[AuthMethod], where: str) -> None:
    """Offer ``methods``, follow the proxy's choice and run that method."""
    offered = {m.code: m for m in methods}
    channel.send(_codec.encode_greeting(list(offered)))
    try:
        choice = channel.receive(_codec.parse_method_selection, "method selection").method
    except _Truncated as exc:
        raise _closed(where, "method selection", exc.data) from None
    if choice == _codec.Method.NO_ACCEPTABLE:
        names = ", ".join(_codec.Method(c).name.replace("_", " ").lower() for c in offered)
        raise SOCKS5AuthError(
            f"proxy {where} accepts none of the authentication methods offered ({names})"
        )
    method = offered.get(choice)
    if method is None:
        raise ProxyProtocolError(
            f"proxy {where} chose authentication method {choice:#04x}, which was not offered"
        )
    try:
        method.authenticate(channel)
    except _Truncated as exc:
        raise _closed(where, "authentication reply", exc.data) from None


def _closed(where: str, what: str, data: bytes) -> ProxyProtocolError:
    got = f" after {len(data)} bytes of it" if data else ""
    return ProxyProtocolError(
        f"proxy {where} closed the connection while we waited for the {what}{got}"
    )


def request(
    channel: SocketChannel,
    request_bytes: bytes,
    context: str,
    where: str,
    name: str | None = None,
) -> Reply:
    """Send an encoded request and read its reply; a failure REP raises.

    ``context`` names the request in messages (``"CONNECT to host:port"``).
    """
    channel.send(request_bytes)
    return read_reply(channel, context, where, name)


def read_reply(channel: SocketChannel, context: str, where: str, name: str | None = None) -> Reply:
    """Read one reply; raise the matching :class:`SOCKS5Error` unless REP is 0.

    ``name`` is the hostname the request asked the proxy to resolve, if
    any: the error then says that resolving it may be what failed.
    """
    seen = bytearray()

    def parse(data: bytearray) -> NeedData | Parsed[Reply]:
        seen[:] = data
        code = _codec.peek_reply_code(data)
        if code:
            # The verdict is known from the second byte: a failing proxy
            # that stops there (and keeps the connection open) must not
            # make us wait out the timeout for an address we do not need.
            raise error_for_reply_code(code, context, name)
        return _codec.parse_reply(data)

    try:
        reply = channel.receive(parse, "reply")
    except _Truncated as exc:
        code = _codec.peek_reply_code(exc.data)
        if code:
            # A failing proxy may hang up before the address part; its
            # verdict is still the useful thing to report.
            raise error_for_reply_code(code, context, name) from None
        raise _closed(where, f"reply to {context}", exc.data) from None
    except ProxyProtocolError as exc:
        code = _codec.peek_reply_code(seen)
        if code:
            raise error_for_reply_code(code, context, name) from exc
        raise
    if not reply.succeeded:
        raise error_for_reply_code(reply.reply_code, context, name)
    return reply


def handshake(
    sock: socket.socket,
    proxy: Proxy,
    budget: Budget,
    request_bytes: bytes | Callable[[], bytes],
    context: str,
    name: str | None = None,
) -> tuple[SocketChannel, Reply]:
    """Connect ``sock`` to ``proxy``, authenticate and send one request.

    ``request_bytes`` may be a function, called once connected, for a
    request that depends on the connection (UDP ASSOCIATE names our own
    address).  ``budget`` is the calling operation's one deadline; all of
    the handshake fits in what is left of it.  Returns the channel (BIND
    reads a second reply from it) and the reply.  Raises a
    :class:`ProxyError`; the caller closes the socket.
    """
    where = describe(proxy.host, proxy.port)
    log.debug("%s: connecting to proxy %s", context, where)
    try:
        connect_to_proxy(sock, proxy, budget)
        channel = SocketChannel(sock, proxy, budget)
        authenticate(channel, methods_for(proxy.username, proxy.password), where)
        if callable(request_bytes):
            request_bytes = request_bytes()
        reply = request(channel, request_bytes, context, where, name)
    except ProxyError as exc:
        log.debug("%s via proxy %s failed: %s", context, where, exc)
        raise
    log.debug(
        "%s via proxy %s succeeded (BND %s)", context, where, describe(reply.host, reply.port)
    )
    return channel, reply
