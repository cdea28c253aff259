"""The reference SOCKS5 server that socks5client's tests talk to.

It speaks RFC 1928 (SOCKS5) and RFC 1929 (username/password) with its own
small encoder and parser and deliberately imports nothing from
``socks5client``: if client and server shared a codec, a bug in it would be
on both sides of every test and no test would see it.

What it offers:

* :class:`SocksServer` -- a threaded server (one thread per connection) that
  answers CONNECT to IPv4, IPv6 and domain targets and relays the data, or
  runs a *script* instead of the protocol so that a test can make it
  misbehave on purpose.  It records what each client sent, for assertions.
* :class:`EchoServer` -- a threaded TCP echo server, the usual destination.
* Helpers for scripts (:func:`recv_exact`, :func:`read_greeting`,
  :func:`read_userpass`, :func:`read_request`, :func:`encode_reply`).

Run it on its own to try a client by hand::

    python tests/server.py --host 127.0.0.1 --port 1080 [--user NAME --password PW]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import selectors
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any, Callable, TypeVar, Union

__all__ = [
    "ATYP_DOMAIN",
    "ATYP_IPV4",
    "ATYP_IPV6",
    "CMD_BIND",
    "CMD_CONNECT",
    "CMD_UDP_ASSOCIATE",
    "MAX_STALL",
    "METHOD_NO_ACCEPTABLE",
    "METHOD_NO_AUTH",
    "METHOD_USERPASS",
    "EchoServer",
    "PeerClosed",
    "ProtocolViolation",
    "Record",
    "RequestError",
    "Script",
    "SocksServer",
    "encode_reply",
    "read_greeting",
    "read_request",
    "read_userpass",
    "recv_exact",
]

SOCKS_VERSION = 0x05
USERPASS_VERSION = 0x01  # RFC 1929 sub-negotiation version

METHOD_NO_AUTH = 0x00
METHOD_USERPASS = 0x02
METHOD_NO_ACCEPTABLE = 0xFF

CMD_CONNECT = 0x01
CMD_BIND = 0x02
CMD_UDP_ASSOCIATE = 0x03

ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04

REP_SUCCEEDED = 0x00
REP_GENERAL_FAILURE = 0x01
REP_NOT_ALLOWED = 0x02
REP_NETWORK_UNREACHABLE = 0x03
REP_HOST_UNREACHABLE = 0x04
REP_CONNECTION_REFUSED = 0x05
REP_TTL_EXPIRED = 0x06
REP_COMMAND_NOT_SUPPORTED = 0x07
REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08

#: Longest a script should ever wait for anything.  A client that hangs in
#: spite of its timeout then fails its test after this long instead of
#: hanging the whole run.
MAX_STALL = 30.0

#: How long the server waits for a destination to accept its connection.
CONNECT_TIMEOUT = 5.0

#: How long :meth:`SocksServer.stop` waits for connection threads to finish.
_JOIN_DEADLINE = 5.0

_RELAY_CHUNK = 65536

#: How long a closing connection waits for the client's EOF (see _close_gracefully).
_LINGER = 1.0

_T = TypeVar("_T", bound="_ThreadedTCPServer")


class PeerClosed(ConnectionError):
    """The peer closed the connection before a message was complete."""


class ProtocolViolation(Exception):
    """The client sent something RFC 1928/1929 does not allow."""


class RequestError(ProtocolViolation):
    """A client request that the server answers with a failure reply code."""

    def __init__(self, reply_code: int, reason: str) -> None:
        super().__init__(reason)
        self.reply_code = reply_code


@dataclasses.dataclass
class Record:
    """What one client connection sent, filled in as the conversation goes.

    Fields stay ``None`` (or empty) for the parts the client never reached.
    """

    #: ``(host, port)`` of the client as the server saw it.
    client_address: tuple[str, int]
    #: The METHODS octets of the greeting.
    methods: bytes = b""
    #: RFC 1929 credentials, decoded as UTF-8 (undecodable bytes escaped).
    username: str | None = None
    password: str | None = None
    command: int | None = None
    atyp: int | None = None
    #: IPv4/IPv6 address as text; for a domain, its raw bytes decoded as
    #: ASCII (non-ASCII bytes shown as ``\\xNN`` so a test sees them).
    dst_addr: str | None = None
    dst_port: int | None = None
    #: The whole request, byte for byte.
    raw_request: bytes = b""
    #: The REP code the server answered, if it answered one.
    reply_code: int | None = None
    #: Why the server gave up on this client, if it did.
    error: str | None = None


#: What a test may pass as ``script``: a callable run instead of the protocol,
#: or canned bytes answered to the client's first message.
Script = Union[Callable[[socket.socket, "SocksServer"], None], bytes]


# --------------------------------------------------------------------------
# Wire helpers, also meant for scripts.
# --------------------------------------------------------------------------


def recv_exact(conn: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes, or raise :class:`PeerClosed` on EOF."""
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise PeerClosed(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_greeting(conn: socket.socket, record: Record | None = None) -> bytes:
    """Read the client's method-selection message; return the methods offered.

    Raises :class:`ProtocolViolation` if VER is not 5.
    """
    ver, nmethods = recv_exact(conn, 2)
    if ver != SOCKS_VERSION:
        raise ProtocolViolation(f"greeting has version {ver:#04x}, expected 0x05")
    methods = recv_exact(conn, nmethods)
    if record is not None:
        record.methods = methods
    return methods


def read_userpass(conn: socket.socket, record: Record | None = None) -> tuple[str, str]:
    """Read an RFC 1929 username/password request; return ``(user, password)``.

    Raises :class:`ProtocolViolation` if the sub-negotiation version is not 1.
    """
    ver, ulen = recv_exact(conn, 2)
    if ver != USERPASS_VERSION:
        raise ProtocolViolation(f"username/password request has version {ver:#04x}, expected 0x01")
    uname = recv_exact(conn, ulen)
    (plen,) = recv_exact(conn, 1)
    passwd = recv_exact(conn, plen)
    # RFC 1929 says nothing of encodings; UTF-8 is what clients send in
    # practice, and surrogateescape keeps other bytes distinguishable.
    user = uname.decode("utf-8", "surrogateescape")
    password = passwd.decode("utf-8", "surrogateescape")
    if record is not None:
        record.username, record.password = user, password
    return user, password


def _read_request(conn: socket.socket, record: Record | None) -> tuple[int, int, str, int]:
    raw = bytearray(recv_exact(conn, 4))

    def take(n: int) -> bytes:
        data = recv_exact(conn, n)
        raw.extend(data)
        return data

    def remember() -> None:
        if record is not None:
            record.raw_request = bytes(raw)

    ver, cmd, rsv, atyp = raw
    remember()
    if record is not None:
        record.command, record.atyp = cmd, atyp
    if ver != SOCKS_VERSION:
        raise RequestError(REP_GENERAL_FAILURE, f"request has version {ver:#04x}")
    if atyp == ATYP_IPV4:
        addr = socket.inet_ntop(socket.AF_INET, take(4))
    elif atyp == ATYP_IPV6:
        addr = socket.inet_ntop(socket.AF_INET6, take(16))
    elif atyp == ATYP_DOMAIN:
        (length,) = take(1)
        addr = take(length).decode("ascii", "backslashreplace")
    else:
        # The length of DST.ADDR is unknown, so nothing after this is parsable.
        raise RequestError(REP_ADDRESS_TYPE_NOT_SUPPORTED, f"unknown ATYP {atyp:#04x}")
    port = int.from_bytes(take(2), "big")
    remember()
    if record is not None:
        record.dst_addr, record.dst_port = addr, port
    if rsv != 0:
        # Checked last so the record still shows what the client asked for.
        raise RequestError(REP_GENERAL_FAILURE, f"request has RSV {rsv:#04x}")
    if atyp == ATYP_DOMAIN and not addr:
        raise RequestError(REP_GENERAL_FAILURE, "request has an empty domain name")
    return cmd, atyp, addr, port


def read_request(conn: socket.socket, record: Record | None = None) -> tuple[int, int, str, int]:
    """Read a SOCKS5 request; return ``(cmd, atyp, addr, port)``.

    ``addr`` is the address as text (a domain's bytes decoded as ASCII).
    Raises :class:`RequestError`, carrying the REP code a server would answer,
    for a bad version, RSV or ATYP.
    """
    return _read_request(conn, record)


def encode_reply(
    rep: int,
    atyp: int = ATYP_IPV4,
    addr: bytes | str = b"\x00\x00\x00\x00",
    port: int = 0,
    *,
    ver: int = SOCKS_VERSION,
    rsv: int = 0,
) -> bytes:
    """Encode a SOCKS5 reply ``VER REP RSV ATYP BND.ADDR BND.PORT``.

    ``addr`` is either text (an IP address for ATYP 1/4, a name for ATYP 3)
    or raw bytes put on the wire as they are.  For ATYP 3 the length octet
    is added.  Any ``atyp``, ``ver`` or ``rsv`` is accepted, so that tests
    can build invalid replies.
    """
    if isinstance(addr, str):
        if atyp == ATYP_IPV4:
            packed = socket.inet_pton(socket.AF_INET, addr)
        elif atyp == ATYP_IPV6:
            packed = socket.inet_pton(socket.AF_INET6, addr)
        else:
            packed = addr.encode("ascii")
    else:
        packed = addr
    if atyp == ATYP_DOMAIN:
        packed = bytes([len(packed)]) + packed
    return bytes([ver, rep, rsv, atyp]) + packed + port.to_bytes(2, "big")


def _reply_for_address(rep: int, sockaddr: tuple[Any, ...]) -> bytes:
    host = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 scope id
    port = int(sockaddr[1])
    atyp = ATYP_IPV6 if ":" in host else ATYP_IPV4
    return encode_reply(rep, atyp, host, port)


def _reply_code_for(exc: BaseException) -> int:
    """Map a failed outbound connection to the REP code RFC 1928 has for it."""
    if isinstance(exc, socket.gaierror):
        return REP_HOST_UNREACHABLE
    if isinstance(exc, ConnectionRefusedError):
        return REP_CONNECTION_REFUSED
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return REP_TTL_EXPIRED
    if isinstance(exc, OSError):
        if exc.errno == errno.ENETUNREACH:
            return REP_NETWORK_UNREACHABLE
        if exc.errno == errno.EHOSTUNREACH:
            return REP_HOST_UNREACHABLE
    return REP_GENERAL_FAILURE


# --------------------------------------------------------------------------
# Threaded server machinery.
# --------------------------------------------------------------------------


class _ThreadedTCPServer:
    """Accept loop on a background thread, one daemon thread per connection.

    Every socket a connection uses is tracked, so that :meth:`stop` can shut
    them down: ``shutdown()`` wakes a thread blocked in ``recv``/``send`` on
    them, where ``close()`` from another thread would not.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._accepted = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._live: set[socket.socket] = set()
        self._connections = 0
        self._errors: list[BaseException] = []

    # -- public -----------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server is listening on."""
        if self._address is None:
            raise RuntimeError("server is not started")
        return self._address

    @property
    def port(self) -> int:
        """The port actually bound (useful after asking for port 0)."""
        return self.address[1]

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted so far."""
        with self._lock:
            return self._connections

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised in connection threads (a script's
        failed ``assert`` among them); socket errors are not collected,
        since hostile tests provoke them on purpose."""
        with self._lock:
            return list(self._errors)

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``count`` connections were accepted; ``False`` on timeout."""
        with self._accepted:
            return self._accepted.wait_for(lambda: self._connections >= count, timeout)

    def start(self: _T) -> _T:
        """Bind, listen and start accepting; return ``self``."""
        if self._listener is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server(
            (self.host, self._requested_port), family=family, backlog=64
        )
        sockname = self._listener.getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        # A socket pair lets stop() wake the accept loop portably (closing a
        # listening socket does not wake a thread blocked in accept()).
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end every live connection and join all threads.

        Idempotent.  Scripts blocked on a socket or in :meth:`wait` return.
        """
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(_JOIN_DEADLINE)
        with self._lock:
            live = list(self._live)
            threads = list(self._threads)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_DEADLINE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._live)
            self._live.clear()
            self._threads = [t for t in self._threads if t.is_alive()]
        for sock in leftovers:
            sock.close()
        for own in (self._listener, self._wake_r, self._wake_w):
            if own is not None:
                own.close()

    def wait(self, seconds: float = MAX_STALL) -> bool:
        """Sleep up to ``seconds``, returning early (``True``) when stopping.

        Scripts stall with this rather than ``time.sleep`` so that
        :meth:`stop` never waits for them.
        """
        return self._stopping.wait(seconds)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has been called."""
        return self._stopping.is_set()

    def __enter__(self: _T) -> _T:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- for subclasses -----------------------------------------------------

    def handle(self, conn: socket.socket, client_address: tuple[str, int]) -> None:
        """Serve one accepted connection; it is closed after this returns."""
        raise NotImplementedError

    def track(self, sock: socket.socket) -> None:
        """Register a socket for :meth:`stop` to shut down.

        Raises :class:`PeerClosed` (and closes ``sock``) if the server is
        already stopping, so a thread never starts new work during stop().
        """
        with self._lock:
            if not self._stopping.is_set():
                self._live.add(sock)
                return
        sock.close()
        raise PeerClosed("server is stopping")

    def untrack(self, sock: socket.socket) -> None:
        """Close ``sock`` and forget it."""
        with self._lock:
            self._live.discard(sock)
        sock.close()

    # -- internals ----------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready or self._stopping.is_set():
                    return
                try:
                    conn, addr = self._listener.accept()
                except OSError:
                    continue  # e.g. the client reset before we accepted
                try:
                    self.track(conn)
                except PeerClosed:
                    return
                thread = threading.Thread(
                    target=self._run_connection,
                    args=(conn, (str(addr[0]), int(addr[1]))),
                    name=f"{type(self).__name__}-conn-{addr[1]}",
                    daemon=True,
                )
                with self._lock:
                    self._connections += 1
                    self._accepted.notify_all()
                    # Prune finished threads so a long-running server does not grow.
                    self._threads = [t for t in self._threads if t.is_alive()]
                    self._threads.append(thread)
                thread.start()

    def _run_connection(self, conn: socket.socket, client_address: tuple[str, int]) -> None:
        try:
            self.handle(conn, client_address)
        except (OSError, ProtocolViolation):
            # Clients that break off or misbehave are the point of many
            # tests; the record says what happened.
            pass
        except BaseException as exc:
            # After stop() force-closed a socket, using it raises ValueError;
            # anything else (a script's failed assert) is for the test to see.
            if not (self._stopping.is_set() and isinstance(exc, ValueError)):
                with self._lock:
                    self._errors.append(exc)
        finally:
            self.untrack(conn)


class EchoServer(_ThreadedTCPServer):
    """A TCP server that sends back whatever it receives.

    On EOF from the client it half-closes its side too, so a client can
    ``shutdown(SHUT_WR)`` and then read the echo up to EOF.
    """

    def handle(self, conn: socket.socket, client_address: tuple[str, int]) -> None:
        """Echo until the client closes its sending side."""
        while True:
            data = conn.recv(_RELAY_CHUNK)
            if not data:
                conn.shutdown(socket.SHUT_WR)
                return
            conn.sendall(data)


class SocksServer(_ThreadedTCPServer):
    """A SOCKS5 server for tests.

    ``users`` switches authentication from "none" (method 0x00) to RFC 1929
    username/password (method 0x02) checked against the dict.  ``script``
    replaces the protocol: a callable ``script(conn, server)`` is run on each
    connection (use :meth:`wait` to stall), and ``bytes`` are sent in answer
    to the client's first message, after which the connection stays open
    until :meth:`stop`.

    Commands are served through a dispatch table (:attr:`commands`); only
    CONNECT is in it for now, so BIND and UDP ASSOCIATE get REP 7.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: dict[str, str] | None = None,
        script: Script | None = None,
    ) -> None:
        super().__init__(host, port)
        self.users = users
        self.script = script
        self._records: list[Record] = []
        self._by_conn: dict[socket.socket, Record] = {}
        #: CMD octet -> handler(conn, record, atyp, addr, port).  Add BIND and
        #: UDP ASSOCIATE here when they are implemented.
        self.commands: dict[int, Callable[[socket.socket, Record, int, str, int], None]] = {
            CMD_CONNECT: self._do_connect,
        }

    @property
    def records(self) -> list[Record]:
        """One :class:`Record` per accepted connection, oldest first."""
        with self._lock:
            return list(self._records)

    def record_for(self, conn: socket.socket) -> Record:
        """The record of a connection (for scripts that want to fill it)."""
        with self._lock:
            return self._by_conn[conn]

    def handle(self, conn: socket.socket, client_address: tuple[str, int]) -> None:
        """Serve one client: run the script, or speak SOCKS5."""
        record = Record(client_address=client_address)
        with self._lock:
            self._records.append(record)
            self._by_conn[conn] = record
        try:
            if isinstance(self.script, bytes):
                self._serve_canned(conn, self.script)
            elif self.script is not None:
                self.script(conn, self)
            else:
                self._serve_socks(conn, record)
                _close_gracefully(conn)
        except (OSError, ProtocolViolation) as exc:
            if record.error is None:
                record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with self._lock:
                del self._by_conn[conn]

    # -- scripted mode --------------------------------------------------------

    def _serve_canned(self, conn: socket.socket, answer: bytes) -> None:
        conn.recv(_RELAY_CHUNK)
        conn.sendall(answer)
        self.wait()

    # -- the protocol -----------------------------------------------------------

    def _serve_socks(self, conn: socket.socket, record: Record) -> None:
        methods = read_greeting(conn, record)
        wanted = METHOD_NO_AUTH if self.users is None else METHOD_USERPASS
        if wanted not in methods:
            conn.sendall(bytes([SOCKS_VERSION, METHOD_NO_ACCEPTABLE]))
            record.error = "no acceptable method"
            return
        conn.sendall(bytes([SOCKS_VERSION, wanted]))
        if self.users is not None and not self._authenticate(conn, record):
            return
        try:
            cmd, atyp, addr, port = read_request(conn, record)
        except RequestError as exc:
            self._fail(conn, record, exc.reply_code, str(exc))
            return
        handler = self.commands.get(cmd)
        if handler is None:
            self._fail(conn, record, REP_COMMAND_NOT_SUPPORTED, f"command {cmd:#04x}")
            return
        handler(conn, record, atyp, addr, port)

    def _authenticate(self, conn: socket.socket, record: Record) -> bool:
        assert self.users is not None
        user, password = read_userpass(conn, record)
        ok = bool(user) and bool(password) and self.users.get(user) == password
        conn.sendall(bytes([USERPASS_VERSION, 0x00 if ok else 0x01]))
        if not ok:
            # RFC 1929: on failure the server MUST close the connection.
            record.error = "authentication failed"
        return ok

    def _fail(self, conn: socket.socket, record: Record, rep: int, reason: str) -> None:
        conn.sendall(encode_reply(rep))
        record.reply_code = rep
        record.error = reason

    def _do_connect(
        self, conn: socket.socket, record: Record, atyp: int, addr: str, port: int
    ) -> None:
        try:
            outbound = self._open_outbound(addr, port)
        except OSError as exc:
            self._fail(conn, record, _reply_code_for(exc), f"{type(exc).__name__}: {exc}")
            return
        try:
            conn.sendall(_reply_for_address(REP_SUCCEEDED, outbound.getsockname()))
            record.reply_code = REP_SUCCEEDED
            _relay(conn, outbound)
        finally:
            self.untrack(outbound)

    def _open_outbound(self, host: str, port: int) -> socket.socket:
        """Connect to the destination, trying each address like
        ``socket.create_connection`` but with every attempt tracked, so
        that stop() can interrupt it."""
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        ):
            sock = socket.socket(family, kind, proto)
            self.track(sock)
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect(sockaddr)
                sock.settimeout(None)
                return sock
            except OSError as exc:
                self.untrack(sock)
                last = exc
        raise last if last is not None else OSError(errno.EHOSTUNREACH, "no address")


def _close_gracefully(conn: socket.socket) -> None:
    """Send our EOF and wait briefly for the client's before closing.

    Closing a socket with unread input makes the kernel send a reset, which
    can destroy a failure reply the client has not read yet; draining first
    lets the reply arrive intact.
    """
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(_LINGER)
        deadline = time.monotonic() + _LINGER
        while conn.recv(_RELAY_CHUNK) and time.monotonic() < deadline:
            pass


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both directions have reached EOF.

    EOF on one side is passed on as ``shutdown(SHUT_WR)`` of the other, so a
    half-closed conversation finishes; a reset ends everything.
    """
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        open_directions = 2
        while open_directions:
            for key, _ in selector.select():
                src = key.fileobj
                dst: socket.socket = key.data
                assert isinstance(src, socket.socket)
                data = src.recv(_RELAY_CHUNK)
                if data:
                    dst.sendall(data)
                    continue
                selector.unregister(src)
                open_directions -= 1
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Reference SOCKS5 server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1080)
    parser.add_argument("--user", help="require RFC 1929 authentication as this user")
    parser.add_argument("--password", help="the password for --user")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    users = None if args.user is None else {args.user: args.password}
    server = SocksServer(args.host, args.port, users=users).start()
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    print(f"SOCKS5 server listening on {shown}:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
