"""The reference SOCKS5 server that socks5client's tests talk to.

It speaks RFC 1928 (SOCKS5), RFC 1929 (username/password) and RFC 1961
(GSS-API, as an acceptor on the ``gssapi`` package, with each protection
level: see :class:`GSSStream`) with its own small encoder and parser and
deliberately imports nothing from ``socks5client``: if client and server
shared a codec, a bug in it would be on both sides of every test and no
test would see it.

What it offers:

* :class:`SocksServer` -- a threaded server (one thread per connection) that
  answers CONNECT to IPv4, IPv6 and domain targets and relays the data,
  BIND (accepting one inbound connection for the client) and UDP ASSOCIATE
  (a UDP relay, see :class:`UDPAssociation`), or runs a *script* instead of
  the protocol so that a test can make it misbehave on purpose.  It records
  what each client sent, for assertions.
* :class:`EchoServer` and :class:`UDPEchoServer` -- threaded TCP and UDP
  echo servers, the usual destinations.
* Helpers for scripts (:func:`recv_exact`, :func:`read_greeting`,
  :func:`read_userpass`, :func:`read_request`, :func:`encode_reply`) and for
  UDP tests (:func:`encode_udp_datagram`, :func:`decode_udp_datagram`).

Every socket the server makes is a plain ``socket.socket`` captured at
import time, so it keeps working while a test patches ``socket.socket``.

Run it on its own to try a client by hand::

    python tests/server.py --host 127.0.0.1 --port 1080 [--user NAME --password PW] [--gssapi]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import ipaddress
import select
import selectors
import socket
import struct
import sys
import threading
import time
from types import TracebackType
from typing import Any, Callable, NamedTuple, TypeVar, Union

__all__ = [
    "ATYP_DOMAIN",
    "ATYP_IPV4",
    "ATYP_IPV6",
    "CMD_BIND",
    "CMD_CONNECT",
    "CMD_UDP_ASSOCIATE",
    "MAX_STALL",
    "METHOD_GSSAPI",
    "METHOD_NO_ACCEPTABLE",
    "METHOD_NO_AUTH",
    "METHOD_USERPASS",
    "Datagram",
    "EchoServer",
    "GSSStream",
    "PeerClosed",
    "ProtocolViolation",
    "Record",
    "RequestError",
    "Script",
    "SocksServer",
    "UDPAssociation",
    "UDPEchoServer",
    "decode_udp_datagram",
    "encode_gss_frame",
    "encode_reply",
    "encode_udp_datagram",
    "read_greeting",
    "read_gss_frame",
    "read_request",
    "read_userpass",
    "recv_exact",
]

SOCKS_VERSION = 0x05
USERPASS_VERSION = 0x01  # RFC 1929 sub-negotiation version

METHOD_NO_AUTH = 0x00
METHOD_GSSAPI = 0x01
METHOD_USERPASS = 0x02
METHOD_NO_ACCEPTABLE = 0xFF

GSS_VERSION = 0x01  # RFC 1961 message version
GSS_CONTEXT = 0x01
GSS_PROTECTION = 0x02
GSS_ENCAPSULATED = 0x03
GSS_ABORT = 0xFF

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

#: Big enough for any UDP datagram.
_UDP_BUFFER = 65536

#: How long a BIND waits for its peer unless told otherwise.
BIND_TIMEOUT = 30.0

#: The socket class before any test could patch ``socket.socket``: a test of
#: global patching must not turn the server's own sockets into proxied ones.
_PlainSocket: type[socket.socket] = socket.socket


def _getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
    """The real resolver, even while a test has socks5client.patch() in effect.

    The server runs in the test process: with the patch on, ``socket.getaddrinfo``
    would answer the names it must resolve with synthetic addresses.  Looked
    up at each call (not captured at import) so that a test may still
    replace ``socket.getaddrinfo`` while nothing is patched.
    """
    patch_module = sys.modules.get("socks5client.patch")
    active = getattr(patch_module, "_active", None)
    real = active.originals["getaddrinfo"] if active is not None else socket.getaddrinfo
    result: list[Any] = real(*args, **kwargs)
    return result


#: How long a closing connection waits for the client's EOF (see _close_gracefully).
_LINGER = 1.0

_T = TypeVar("_T", bound="_ThreadedTCPServer")
_U = TypeVar("_U", bound="UDPEchoServer")


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
    #: The REP code the server answered, if it answered one (for BIND, the
    #: first reply).
    reply_code: int | None = None
    #: Why the server gave up on this client, if it did.
    error: str | None = None
    #: BIND: where the server really listens for the peer (the first reply
    #: carries this, or zeros with ``bind_reply_zero_address``).
    bind_address: tuple[str, int] | None = None
    #: BIND: the peer that connected, whether or not it was let through.
    peer_address: tuple[str, int] | None = None
    #: BIND: the REP code of the second reply (``None`` if raw bytes or
    #: nothing were sent instead, see ``bind_second_reply``).
    second_reply_code: int | None = None
    #: UDP ASSOCIATE: the relay's real address (the reply carries this, or
    #: zeros with ``udp_reply_zero_address``).
    relay_address: tuple[str, int] | None = None
    #: UDP ASSOCIATE: the client address datagrams must come from, as derived
    #: from DST (a zero DST.ADDR means the control connection's peer; port 0
    #: means any port).
    udp_client_address: tuple[str, int] | None = None
    #: Whether the client's next message was already waiting when the server
    #: had read the greeting: the client pipelined its handshake.
    pipelined: bool = False
    #: GSS-API: the client's Kerberos principal once the context completed,
    #: the protection level it asked for and the level the server answered.
    gssapi_principal: str | None = None
    gssapi_level_asked: int | None = None
    gssapi_level: int | None = None


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
    return bytes([ver, rep, rsv]) + _encode_address(atyp, addr, port)


def _encode_address(atyp: int, addr: bytes | str, port: int) -> bytes:
    """``ATYP ADDR PORT``; text is packed for the type, bytes go as they are."""
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
    return bytes([atyp]) + packed + port.to_bytes(2, "big")


class Datagram(NamedTuple):
    """A UDP datagram of RFC 1928 section 7: header fields and payload."""

    frag: int
    atyp: int
    #: IPv4/IPv6 address as text, or a domain's bytes decoded as ASCII.
    addr: str
    port: int
    data: bytes


def encode_udp_datagram(
    frag: int, atyp: int, addr: bytes | str, port: int, data: bytes, *, rsv: int = 0
) -> bytes:
    """Encode ``RSV FRAG ATYP DST.ADDR DST.PORT DATA``.

    ``addr`` is text or raw bytes, as for :func:`encode_reply`; any ``frag``,
    ``atyp`` or ``rsv`` (two octets) is accepted, so that tests can build
    invalid datagrams.
    """
    return rsv.to_bytes(2, "big") + bytes([frag]) + _encode_address(atyp, addr, port) + data


def decode_udp_datagram(raw: bytes) -> Datagram:
    """Parse a whole datagram; raise :class:`ValueError` saying what is wrong."""
    if len(raw) < 4:
        raise ValueError(f"a {len(raw)}-byte datagram is too short for a header")
    if raw[0] or raw[1]:
        raise ValueError(f"RSV is {raw[:2].hex()}, not 0000")
    frag, atyp = raw[2], raw[3]
    if atyp == ATYP_IPV4:
        start, end = 4, 8
    elif atyp == ATYP_IPV6:
        start, end = 4, 20
    elif atyp == ATYP_DOMAIN:
        if len(raw) < 5:
            raise ValueError("truncated before the domain length")
        start, end = 5, 5 + raw[4]
        if start == end:
            raise ValueError("empty domain name")
    else:
        raise ValueError(f"unknown ATYP {atyp:#04x}")
    if len(raw) < end + 2:
        raise ValueError("truncated inside the header")
    if atyp == ATYP_DOMAIN:
        addr = raw[start:end].decode("ascii", "backslashreplace")
    else:
        family = socket.AF_INET if atyp == ATYP_IPV4 else socket.AF_INET6
        addr = socket.inet_ntop(family, raw[start:end])
    port = int.from_bytes(raw[end : end + 2], "big")
    return Datagram(frag, atyp, addr, port, raw[end + 2 :])


def encode_gss_frame(mtyp: int, token: bytes, *, ver: int = GSS_VERSION) -> bytes:
    """RFC 1961's ``VER MTYP LEN TOKEN`` (any values, so tests can build bad ones)."""
    return bytes([ver, mtyp]) + struct.pack("!H", len(token)) + token


def read_gss_frame(conn: Any) -> tuple[int, bytes]:
    """Read one RFC 1961 message; ``(MTYP, TOKEN)``, an abort being ``(0xFF, b"")``.

    Raises :class:`ProtocolViolation` if VER is not 1.
    """
    ver, mtyp = recv_exact(conn, 2)
    if ver != GSS_VERSION:
        raise ProtocolViolation(f"GSS-API message has version {ver:#04x}, expected 0x01")
    if mtyp == GSS_ABORT:
        return mtyp, b""
    (length,) = struct.unpack("!H", recv_exact(conn, 2))
    return mtyp, recv_exact(conn, length)


class GSSStream:
    """The SOCKS stream inside RFC 1961 section 5 frames, for the server side.

    ``recv``/``sendall`` make it usable where a socket is (``read_request``);
    :meth:`feed` unwraps raw bytes for the relay.  Outgoing data is cut into
    frames of at most ``frame_size`` plaintext bytes, so frame boundaries
    need not match the messages (a small size splits the reply).
    """

    def __init__(self, conn: socket.socket, context: Any, level: int, frame_size: int) -> None:
        self.conn = conn
        self.context = context
        self.encrypt = level == 2
        self.frame_size = frame_size
        self.plain = bytearray()  # unwrapped, not yet consumed
        self.raw = bytearray()  # received, not yet a whole frame

    def _unwrap(self, token: bytes) -> bytes:
        result = self.context.unwrap(token)
        if self.encrypt and not result.encrypted:
            raise ProtocolViolation("a level 2 token arrived without confidentiality")
        return bytes(result.message)

    def wrap_frames(self, data: bytes) -> bytes:
        """``data`` as encapsulation frames."""
        out = bytearray()
        for i in range(0, len(data), self.frame_size):
            token = self.context.wrap(data[i : i + self.frame_size], self.encrypt).message
            out += encode_gss_frame(GSS_ENCAPSULATED, token)
        return bytes(out)

    def sendall(self, data: bytes) -> None:
        self.conn.sendall(self.wrap_frames(data))

    def recv(self, n: int) -> bytes:
        while not self.plain:
            mtyp, token = read_gss_frame(self.conn)
            if mtyp != GSS_ENCAPSULATED:
                raise ProtocolViolation(f"GSS-API message type {mtyp:#04x} where 0x03 was due")
            self.plain += self._unwrap(token)
        data = bytes(self.plain[:n])
        del self.plain[:n]
        return data

    def feed(self, data: bytes) -> bytes:
        """Raw bytes in; the plaintext of every frame they complete out."""
        self.raw += data
        out = bytearray(self.plain)
        self.plain.clear()
        while len(self.raw) >= 4:
            if self.raw[0] != GSS_VERSION or self.raw[1] != GSS_ENCAPSULATED:
                raise ProtocolViolation(f"bad GSS-API frame header {bytes(self.raw[:2]).hex()}")
            end = 4 + struct.unpack_from("!H", self.raw, 2)[0]
            if len(self.raw) < end:
                break
            out += self._unwrap(bytes(self.raw[4:end]))
            del self.raw[:end]
        return bytes(out)


def _readable_now(conn: socket.socket) -> bool:
    """Whether ``conn`` has bytes waiting (or EOF) right now."""
    readable, _, _ = select.select([conn], [], [], 0)
    return bool(readable)


def _reply_for_address(rep: int, sockaddr: tuple[Any, ...], *, zero: bool = False) -> bytes:
    """A reply naming ``sockaddr``; with ``zero``, its port but an all-zero address."""
    host = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 scope id
    port = int(sockaddr[1])
    atyp = ATYP_IPV6 if ":" in host else ATYP_IPV4
    if zero:
        host = "::" if atyp == ATYP_IPV6 else "0.0.0.0"
    return encode_reply(rep, atyp, host, port)


def _host_port(sockaddr: tuple[Any, ...]) -> tuple[str, int]:
    return str(sockaddr[0]).split("%", 1)[0], int(sockaddr[1])


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return a == b


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


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
        self._ready = threading.Event()
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
        # Wait for the accept loop's own descriptors (its selector), so that
        # a test counting fds after start() sees them all.
        self._ready.wait(_JOIN_DEADLINE)
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
            self._ready.set()
            while not self._stopping.is_set():
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready or self._stopping.is_set():
                    return
                try:
                    conn, addr = self._listener.accept()
                except OSError:
                    continue  # e.g. the client reset before we accepted
                # Blocking whatever socket.setdefaulttimeout() a test chose
                # for its clients: the server runs in the same process.
                conn.settimeout(None)
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


class UDPEchoServer:
    """A UDP server that sends every datagram back to where it came from.

    :attr:`received` lists ``(payload, source)`` for each datagram, so a test
    can see what arrived (through a relay, the source is the relay's).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._received: list[tuple[bytes, tuple[str, int]]] = []

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server is bound to."""
        if self._address is None:
            raise RuntimeError("server is not started")
        return self._address

    @property
    def port(self) -> int:
        """The port actually bound."""
        return self.address[1]

    @property
    def received(self) -> list[tuple[bytes, tuple[str, int]]]:
        """``(payload, (host, port) of the source)`` per datagram, oldest first."""
        with self._lock:
            return list(self._received)

    def start(self: _U) -> _U:
        """Bind and start echoing; return ``self``."""
        if self._sock is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = _PlainSocket(family, socket.SOCK_DGRAM)
        self._sock.bind((self.host, self._requested_port))
        self._address = _host_port(self._sock.getsockname())
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._loop, name="UDPEchoServer", daemon=True)
        self._thread.start()
        self._ready.wait(_JOIN_DEADLINE)  # its selector exists: fd counts are stable
        return self

    def stop(self) -> None:
        """Stop echoing, join the thread and close the sockets.  Idempotent."""
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(_JOIN_DEADLINE)
        for own in (self._sock, self._wake_r, self._wake_w):
            if own is not None:
                own.close()

    def __enter__(self: _U) -> _U:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _loop(self) -> None:
        assert self._sock is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            self._ready.set()
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                try:
                    data, source = self._sock.recvfrom(_UDP_BUFFER)
                except OSError:
                    continue  # e.g. an ICMP error reported for an earlier send
                with self._lock:
                    self._received.append((data, _host_port(source)))
                with contextlib.suppress(OSError):
                    self._sock.sendto(data, source)


class SocksServer(_ThreadedTCPServer):
    """A SOCKS5 server for tests.

    ``users`` switches authentication from "none" (method 0x00) to RFC 1929
    username/password (method 0x02) checked against the dict.  ``script``
    replaces the protocol: a callable ``script(conn, server)`` is run on each
    connection (use :meth:`wait` to stall), and ``bytes`` are sent in answer
    to the client's first message, after which the connection stays open
    until :meth:`stop`.

    Commands are served through a dispatch table (:attr:`commands`): CONNECT,
    BIND and UDP ASSOCIATE.  Delete an entry (``del server.commands[CMD_BIND]``)
    and that command is answered with REP 7, as by a proxy without it.

    BIND listens on the address the client reached the server on, answers
    with that address, accepts one connection and relays it.  A DST other
    than 0.0.0.0/:: restricts the peer's address (and a non-zero DST.PORT its
    port); another peer gets REP 2 as the second reply.  UDP ASSOCIATE opens
    a relay, see :class:`UDPAssociation`; tests reach live associations
    through :attr:`associations` and :meth:`wait_for_association`.

    These settings are plain attributes, read when needed, so a test may
    change them on a running server:

    * ``bind_timeout`` -- seconds a BIND waits for its peer; then the second
      reply is REP 6 (TTL expired).
    * ``bind_host`` -- where the BIND listener binds (default: the address the
      client reached the server on).  An address that is not local makes
      listening fail: the first reply is then REP 1.
    * ``bind_reply_zero_address`` / ``udp_reply_zero_address`` -- answer with
      an all-zero address (and the real port) in the first BIND reply / the
      UDP ASSOCIATE reply, as some proxies do.
    * ``bind_first_reply`` -- a REP code answered to BIND at once, instead of
      listening; the connection then closes.
    * ``bind_second_reply`` -- sent in place of the second BIND reply when it
      is due (a peer connected, or ``bind_timeout`` ran out): an ``int`` is a
      REP code (sent with a zero address), ``bytes`` go as they are (``b""``
      sends nothing); then the connection closes.
    * ``gssapi`` -- offer GSS-API (method 0x01) and nothing else, as an
      acceptor with the keytab ``KRB5_KTNAME`` names (the environment is
      read when a client arrives).  Each level the client asks for is
      granted if it is in ``gssapi_levels``; otherwise the connection is
      closed, as Dante does (``gssapi_refuse="close"``) or answered with an
      abort (``"abort"``).  ``gssapi_answer`` answers that level whatever
      the client asks; ``gssapi_abort`` sends ``01 FF`` instead of the
      ``"context"`` token or the ``"protection"`` answer;
      ``gssapi_context_reply`` sends those bytes instead of the context
      token.  At levels 1 and 2 the request, the replies and all relayed
      data (CONNECT, BIND, and UDP datagrams) are wrapped, in frames of at most
      ``gssapi_frame_size`` plaintext bytes; ``gssapi_banner`` is sent
      right behind the reply, in the same token.
    * ``strict_order`` -- answer each message before reading the next, as
      microsocks does: bytes that arrive before the server has answered
      the greeting (a pipelined handshake) are read and thrown away, and
      the server then waits for a request that never comes.  Otherwise
      (the default, like Dante and ``ssh -D``) it reads exactly one
      message at a time and pipelining works.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: dict[str, str] | None = None,
        script: Script | None = None,
        bind_timeout: float = BIND_TIMEOUT,
        bind_host: str | None = None,
        bind_reply_zero_address: bool = False,
        bind_first_reply: int | None = None,
        bind_second_reply: int | bytes | None = None,
        udp_reply_zero_address: bool = False,
        strict_order: bool = False,
        gssapi: bool = False,
        gssapi_levels: tuple[int, ...] = (0, 1, 2),
        gssapi_answer: int | None = None,
        gssapi_refuse: str = "close",
        gssapi_abort: str | None = None,
        gssapi_context_reply: bytes | None = None,
        gssapi_frame_size: int = 16384,
        gssapi_banner: bytes = b"",
    ) -> None:
        super().__init__(host, port)
        self.strict_order = strict_order
        self.gssapi = gssapi
        self.gssapi_levels = gssapi_levels
        self.gssapi_answer = gssapi_answer
        self.gssapi_refuse = gssapi_refuse
        self.gssapi_abort = gssapi_abort
        self.gssapi_context_reply = gssapi_context_reply
        self.gssapi_frame_size = gssapi_frame_size
        self.gssapi_banner = gssapi_banner
        self.users = users
        self.script = script
        self.bind_timeout = bind_timeout
        self.bind_host = bind_host
        self.bind_reply_zero_address = bind_reply_zero_address
        self.bind_first_reply = bind_first_reply
        self.bind_second_reply = bind_second_reply
        self.udp_reply_zero_address = udp_reply_zero_address
        self._records: list[Record] = []
        self._by_conn: dict[socket.socket, Record] = {}
        self._associations: list[UDPAssociation] = []
        self._association_added = threading.Condition(self._lock)
        #: CMD octet -> handler(conn, record, atyp, addr, port).
        self.commands: dict[int, Callable[[socket.socket, Record, int, str, int], None]] = {
            CMD_CONNECT: self._do_connect,
            CMD_BIND: self._do_bind,
            CMD_UDP_ASSOCIATE: self._do_udp_associate,
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

    @property
    def associations(self) -> list[UDPAssociation]:
        """Every UDP association so far, live or ended, oldest first."""
        with self._lock:
            return list(self._associations)

    def wait_for_association(self, index: int = 0, timeout: float = 5.0) -> UDPAssociation:
        """The ``index``-th association (0 = the first), once it exists.

        An association is registered before its reply is sent, so after a
        client's UDP ASSOCIATE has succeeded this returns at once.  Raises
        :class:`TimeoutError` after ``timeout`` seconds.
        """
        with self._association_added:
            if not self._association_added.wait_for(
                lambda: len(self._associations) > index, timeout
            ):
                raise TimeoutError(f"no UDP association #{index} within {timeout:g} s")
            return self._associations[index]

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
        record.pipelined = _readable_now(conn)
        if record.pipelined and self.strict_order:
            # What microsocks does: the greeting was parsed out of one read
            # and the rest of that read is gone.
            conn.recv(_RELAY_CHUNK)
        if self.gssapi:
            wanted = METHOD_GSSAPI
        else:
            wanted = METHOD_NO_AUTH if self.users is None else METHOD_USERPASS
        if wanted not in methods:
            record.error = "no acceptable method"
            conn.sendall(bytes([SOCKS_VERSION, METHOD_NO_ACCEPTABLE]))
            return
        conn.sendall(bytes([SOCKS_VERSION, wanted]))
        if self.users is not None and not self.gssapi and not self._authenticate(conn, record):
            return
        if self.gssapi:
            stream = self._gssapi_negotiate(conn, record)
            if stream is None:
                return
            if isinstance(stream, GSSStream):
                self._serve_protected(conn, stream, record)
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

    def _gssapi_negotiate(self, conn: socket.socket, record: Record) -> GSSStream | bool | None:
        """RFC 1961 as the acceptor: ``None`` to hang up, ``True`` for level 0, else the stream."""
        import gssapi

        try:
            context = gssapi.SecurityContext(
                creds=gssapi.Credentials(usage="accept"), usage="accept"
            )
            while not context.complete:
                mtyp, token = read_gss_frame(conn)
                if mtyp != GSS_CONTEXT:
                    raise ProtocolViolation(f"GSS-API message type {mtyp:#04x} where 0x01 was due")
                if self.gssapi_abort == "context":
                    record.error = "scripted GSS-API abort (context)"
                    conn.sendall(bytes([GSS_VERSION, GSS_ABORT]))
                    return None
                if self.gssapi_context_reply is not None:
                    record.error = "scripted GSS-API context reply"
                    conn.sendall(self.gssapi_context_reply)
                    return None
                try:
                    out = context.step(token)
                except gssapi.exceptions.GSSError as exc:
                    record.error = f"GSS-API context failed: {exc}"
                    conn.sendall(bytes([GSS_VERSION, GSS_ABORT]))
                    return None
                # Like Dante: every client token gets a frame, empty if need be.
                conn.sendall(encode_gss_frame(GSS_CONTEXT, out or b""))
            record.gssapi_principal = str(context.initiator_name)
            mtyp, token = read_gss_frame(conn)
            if mtyp != GSS_PROTECTION:
                raise ProtocolViolation(f"GSS-API message type {mtyp:#04x} where 0x02 was due")
            asked = bytes(context.unwrap(token).message)
            if len(asked) != 1:
                raise ProtocolViolation(f"protection level of {len(asked)} octets")
            record.gssapi_level_asked = asked[0]
            if self.gssapi_abort == "protection":
                record.error = "scripted GSS-API abort (protection)"
                conn.sendall(bytes([GSS_VERSION, GSS_ABORT]))
                return None
            level = asked[0] if self.gssapi_answer is None else self.gssapi_answer
            if self.gssapi_answer is None and level not in self.gssapi_levels:
                record.error = f"protection level {level} refused"
                if self.gssapi_refuse == "abort":
                    conn.sendall(bytes([GSS_VERSION, GSS_ABORT]))
                return None
            record.gssapi_level = level
            answer = context.wrap(bytes([level]), False).message
            conn.sendall(encode_gss_frame(GSS_PROTECTION, answer))
        except gssapi.exceptions.GSSError as exc:
            raise ProtocolViolation(f"GSS-API: {exc}") from None
        if level == 0:
            return True
        return GSSStream(conn, context, level, self.gssapi_frame_size)

    def _serve_protected(self, conn: socket.socket, stream: GSSStream, record: Record) -> None:
        """CONNECT with the request, the reply and the data wrapped (levels 1 and 2)."""
        try:
            cmd, atyp, addr, port = read_request(stream, record)  # type: ignore[arg-type]
        except RequestError as exc:
            record.reply_code, record.error = exc.reply_code, str(exc)
            stream.sendall(encode_reply(exc.reply_code))
            return
        if cmd == CMD_UDP_ASSOCIATE and CMD_UDP_ASSOCIATE in self.commands:
            self._do_udp_associate(conn, record, atyp, addr, port, gss=stream)
            return
        if cmd == CMD_BIND and CMD_BIND in self.commands:
            self._do_bind(conn, record, atyp, addr, port, gss=stream)
            return
        if cmd != CMD_CONNECT:
            record.reply_code, record.error = REP_COMMAND_NOT_SUPPORTED, f"command {cmd:#04x}"
            stream.sendall(encode_reply(REP_COMMAND_NOT_SUPPORTED))
            return
        try:
            outbound = self._open_outbound(addr, port)
        except OSError as exc:
            record.reply_code, record.error = _reply_code_for(exc), f"{exc}"
            stream.sendall(encode_reply(record.reply_code))
            return
        try:
            record.reply_code = REP_SUCCEEDED
            reply = _reply_for_address(REP_SUCCEEDED, outbound.getsockname())
            # The banner rides in the reply's last token, as if the
            # destination had spoken at once.
            stream.sendall(reply + self.gssapi_banner)
            _relay_protected(conn, stream, outbound)
        finally:
            self.untrack(outbound)

    def _authenticate(self, conn: socket.socket, record: Record) -> bool:
        assert self.users is not None
        user, password = read_userpass(conn, record)
        ok = bool(user) and bool(password) and self.users.get(user) == password
        if not ok:
            # RFC 1929: on failure the server MUST close the connection.
            record.error = "authentication failed"
        conn.sendall(bytes([USERPASS_VERSION, 0x00 if ok else 0x01]))
        return ok

    def _fail(self, conn: socket.socket, record: Record, rep: int, reason: str) -> None:
        # The record is complete before the answer leaves (here and below):
        # a client that has read it may look at the record at once.
        record.reply_code = rep
        record.error = reason
        conn.sendall(encode_reply(rep))

    def _do_connect(
        self, conn: socket.socket, record: Record, atyp: int, addr: str, port: int
    ) -> None:
        try:
            outbound = self._open_outbound(addr, port)
        except OSError as exc:
            self._fail(conn, record, _reply_code_for(exc), f"{type(exc).__name__}: {exc}")
            return
        try:
            record.reply_code = REP_SUCCEEDED
            conn.sendall(_reply_for_address(REP_SUCCEEDED, outbound.getsockname()))
            _relay(conn, outbound)
        finally:
            self.untrack(outbound)

    def _do_bind(
        self,
        conn: socket.socket,
        record: Record,
        atyp: int,
        addr: str,
        port: int,
        gss: GSSStream | None = None,
    ) -> None:
        # Replies go through the GSS-API stream when one is agreed; the
        # descriptor itself is still what is waited on.
        out: Any = gss or conn
        if self.bind_first_reply is not None:
            self._fail(out, record, self.bind_first_reply, "scripted first BIND reply")
            return
        try:
            allowed = _allowed_hosts(atyp, addr)
        except OSError as exc:
            self._fail(out, record, REP_HOST_UNREACHABLE, f"{type(exc).__name__}: {exc}")
            return
        listener = _PlainSocket(conn.family, socket.SOCK_STREAM)
        self.track(listener)
        try:
            try:
                listener.bind((self.bind_host or conn.getsockname()[0], 0))
                listener.listen(1)
            except OSError as exc:
                self._fail(out, record, REP_GENERAL_FAILURE, f"cannot listen: {exc}")
                return
            sockname = listener.getsockname()
            record.bind_address = _host_port(sockname)
            record.reply_code = REP_SUCCEEDED
            out.sendall(
                _reply_for_address(REP_SUCCEEDED, sockname, zero=self.bind_reply_zero_address)
            )
            peer = self._await_peer(conn, listener)
        finally:
            # One BIND, one connection: nobody else may connect from now on.
            self.untrack(listener)
        if peer is None:
            self._second_reply(out, record, REP_TTL_EXPIRED, "no peer within bind_timeout")
            return
        try:
            peername = peer.getpeername()
            record.peer_address = _host_port(peername)
            peer_host, peer_port = record.peer_address
            if (allowed is not None and not any(_same_ip(peer_host, a) for a in allowed)) or (
                port != 0 and peer_port != port
            ):
                reason = f"peer {peer_host}:{peer_port} is not the expected {addr}:{port}"
                self._second_reply(out, record, REP_NOT_ALLOWED, reason)
                return
            if self._second_reply(out, record, REP_SUCCEEDED, "", peername):
                if gss is None:
                    _relay(conn, peer)
                else:
                    _relay_protected(conn, gss, peer)
        finally:
            self.untrack(peer)

    def _await_peer(self, conn: socket.socket, listener: socket.socket) -> socket.socket | None:
        """Accept the BIND peer (tracked); None when ``bind_timeout`` runs out."""
        deadline = time.monotonic() + self.bind_timeout
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(conn, selectors.EVENT_READ)
            while True:
                if self.stopping:
                    raise PeerClosed("server is stopping")
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                # Short slices, so that stop() is noticed even if nothing wakes us.
                for key, _ in selector.select(min(left, 0.25)):
                    if key.fileobj is conn:
                        if not conn.recv(1, socket.MSG_PEEK):
                            raise PeerClosed("client closed while waiting for the BIND peer")
                        # Early data from the client: it waits for the relay.
                        selector.unregister(conn)
                        continue
                    try:
                        peer, _ = listener.accept()
                    except OSError:
                        continue  # stop() shut the listener down, or the peer reset
                    peer.settimeout(None)
                    self.track(peer)
                    return peer

    def _second_reply(
        self,
        conn: socket.socket,
        record: Record,
        rep: int,
        reason: str,
        sockaddr: tuple[Any, ...] = ("0.0.0.0", 0),
    ) -> bool:
        """Send the second BIND reply, or the scripted stand-in for it.

        Returns True only if a success reply went out (then relay).
        """
        override = self.bind_second_reply
        if override is None:
            reply = _reply_for_address(rep, sockaddr)
            record.second_reply_code = rep
        elif isinstance(override, int):
            reply = encode_reply(override)
            record.second_reply_code = override
        else:
            reply = override
        if override is not None:
            reason = "scripted second BIND reply"
        succeeded = override is None and rep == REP_SUCCEEDED
        if not succeeded:
            record.error = reason
        conn.sendall(reply)
        return succeeded

    def _do_udp_associate(
        self,
        conn: socket.socket,
        record: Record,
        atyp: int,
        addr: str,
        port: int,
        gss: GSSStream | None = None,
    ) -> None:
        host = addr
        if atyp == ATYP_DOMAIN:
            try:
                infos = _getaddrinfo(addr, port, conn.family, socket.SOCK_DGRAM)
            except OSError as exc:
                self._fail(conn, record, REP_HOST_UNREACHABLE, f"{type(exc).__name__}: {exc}")
                return
            host = _host_port(infos[0][4])[0]
        if _is_unspecified(host):
            # RFC 1928: the client may not know its address; the control
            # connection's source is the best guess.
            host = _host_port(conn.getpeername())[0]
        record.udp_client_address = (host, port)
        relay = _PlainSocket(conn.family, socket.SOCK_DGRAM)
        self.track(relay)
        assoc: UDPAssociation | None = None
        try:
            try:
                relay.bind((conn.getsockname()[0], 0))
            except OSError as exc:
                self._fail(conn, record, REP_GENERAL_FAILURE, f"cannot open the relay: {exc}")
                return
            assoc = UDPAssociation(self, conn, relay, host, port, gss)
            record.relay_address = assoc.relay_address
            with self._association_added:
                self._associations.append(assoc)
                self._association_added.notify_all()
            record.reply_code = REP_SUCCEEDED
            (gss or conn).sendall(
                _reply_for_address(
                    REP_SUCCEEDED, relay.getsockname(), zero=self.udp_reply_zero_address
                )
            )
            assoc.run()
        finally:
            self.untrack(relay)
            if assoc is not None:
                assoc.finish()

    def _open_outbound(self, host: str, port: int) -> socket.socket:
        """Connect to the destination, trying each address like
        ``socket.create_connection`` but with every attempt tracked, so
        that stop() can interrupt it."""
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in _getaddrinfo(host, port, type=socket.SOCK_STREAM):
            sock = _PlainSocket(family, kind, proto)
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


def _allowed_hosts(atyp: int, addr: str) -> list[str] | None:
    """The peer addresses a BIND's DST.ADDR allows; None for any."""
    if atyp == ATYP_DOMAIN:
        return [_host_port(info[4])[0] for info in _getaddrinfo(addr, None)]
    return None if _is_unspecified(addr) else [addr]


class UDPAssociation:
    """One UDP association on the reference server, to inspect and steer.

    Its connection's thread relays, as RFC 1928 section 7 asks: datagrams on
    the relay socket from anywhere but the client's address (see
    :attr:`client_host`, :attr:`client_port`) are dropped, as are malformed
    ones and fragments (this relay does not reassemble); the others are
    unwrapped and sent from an outbound socket (one per address family) to
    their destination, domain names resolved with ``getaddrinfo``.
    Datagrams reaching an outbound socket are wrapped with a header naming
    their source and sent to the client.  The association ends when the
    control connection closes (either side) or the server stops.

    What happened is kept in :attr:`received` (datagrams accepted from the
    client, as parsed), :attr:`forwarded` (datagrams sent to the client, as
    sent) and :attr:`dropped`; :meth:`wait_until` waits for a condition on
    them.  For hostile tests: :meth:`send_to_client`,
    :meth:`send_from_foreign`, :meth:`close_control` and :attr:`mute`.

    With ``gss`` (a GSS-API association at level 1 or 2) every datagram each
    way is ``01 03 LEN TOKEN``, the token wrapping the whole SOCKS datagram
    (RFC 1961 section 5, as Dante does); :attr:`received` and
    :attr:`forwarded` hold the unwrapped datagrams.
    """

    def __init__(
        self,
        server: SocksServer,
        control: socket.socket,
        relay: socket.socket,
        client_host: str,
        client_port: int,
        gss: GSSStream | None = None,
    ) -> None:
        self.server = server
        self.gss = gss
        self.control = control
        self.relay = relay
        #: The relay's real address.
        self.relay_address = _host_port(relay.getsockname())
        #: The IP datagrams must come from.
        self.client_host = client_host
        #: The port they must come from; 0 accepts any (replies then go to
        #: the source of the last datagram accepted).
        self.client_port = client_port
        #: When True, every datagram is dropped, both ways: a relay that
        #: never answers.
        self.mute = False
        #: Set once the association has ended and its sockets are closed.
        self.closed = threading.Event()
        self._changed = threading.Condition()
        self._received: list[Datagram] = []
        self._forwarded: list[Datagram] = []
        self._dropped: list[tuple[str, bytes]] = []
        self._last_source: tuple[str, int] | None = None
        self._outbound: dict[int, socket.socket] = {}
        self._selector: selectors.BaseSelector | None = None

    # -- what happened ------------------------------------------------------

    @property
    def received(self) -> list[Datagram]:
        """Datagrams accepted from the client, as parsed, oldest first."""
        with self._changed:
            return list(self._received)

    @property
    def forwarded(self) -> list[Datagram]:
        """Datagrams from remotes, as wrapped and sent to the client."""
        with self._changed:
            return list(self._forwarded)

    @property
    def dropped(self) -> list[tuple[str, bytes]]:
        """``(reason, raw datagram)`` for everything dropped, oldest first."""
        with self._changed:
            return list(self._dropped)

    @property
    def client_address(self) -> tuple[str, int] | None:
        """Where datagrams for the client go (None: port 0 and nothing received yet)."""
        if self.client_port:
            return (self.client_host, self.client_port)
        with self._changed:
            return self._last_source

    def wait_until(self, predicate: Callable[[UDPAssociation], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` holds (checked after each event); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    # -- scripting ----------------------------------------------------------

    def send_to_client(self, raw: bytes) -> None:
        """Send ``raw`` as it is from the relay socket to the client."""
        self.relay.sendto(raw, self._client_sockaddr())

    def send_from_foreign(self, raw: bytes, host: str | None = None) -> None:
        """Send ``raw`` to the client from a fresh socket: a foreign source.

        It is bound to ``host`` (default: the relay's IP, so that only the
        port differs) and closed at once.
        """
        with _PlainSocket(self.relay.family, socket.SOCK_DGRAM) as sock:
            sock.bind((host or self.relay_address[0], 0))
            sock.sendto(raw, self._client_sockaddr())

    def close_control(self, timeout: float = 5.0) -> None:
        """Close the control connection from the proxy's side and wait
        (up to ``timeout``) until the association has ended."""
        with contextlib.suppress(OSError):
            self.control.shutdown(socket.SHUT_RDWR)
        self.closed.wait(timeout)

    def _client_sockaddr(self) -> tuple[str, int]:
        address = self.client_address
        if address is None:
            raise RuntimeError("the client's UDP port is not known yet (DST.PORT was 0)")
        return address

    # -- the relay (run by SocksServer) ---------------------------------------

    def run(self) -> None:
        """Relay until the control connection closes or the server stops."""
        try:
            with selectors.DefaultSelector() as selector:
                self._selector = selector
                selector.register(self.control, selectors.EVENT_READ)
                selector.register(self.relay, selectors.EVENT_READ)
                while not self.server.stopping:
                    for key, _ in selector.select():
                        sock = key.fileobj
                        assert isinstance(sock, _PlainSocket)
                        if sock is self.control:
                            if not self._control_open():
                                return
                        elif sock is self.relay:
                            self._from_client()
                        else:
                            self._from_remote(sock)
        finally:
            self._selector = None
            for sock in self._outbound.values():
                self.server.untrack(sock)

    def finish(self) -> None:
        """Mark the association ended (its sockets are closed)."""
        with self._changed:
            self.closed.set()
            self._changed.notify_all()

    def _control_open(self) -> bool:
        try:
            # RFC 1928 gives the client nothing to send here; discard it.
            return bool(self.control.recv(_RELAY_CHUNK))
        except OSError:
            return False

    def _drop(self, reason: str, raw: bytes) -> None:
        with self._changed:
            self._dropped.append((reason, raw))
            self._changed.notify_all()

    def _from_client(self) -> None:
        try:
            raw, sockaddr = self.relay.recvfrom(_UDP_BUFFER)
        except OSError:
            return  # e.g. an ICMP error for an earlier send
        if sockaddr is None:
            return  # stop() shut the socket down (Linux reports no source then)
        source = _host_port(sockaddr)
        if not _same_ip(source[0], self.client_host) or (
            self.client_port and source[1] != self.client_port
        ):
            self._drop(f"foreign source {source[0]}:{source[1]}", raw)
            return
        if self.mute:
            self._drop("muted", raw)
            return
        if self.gss is not None:
            try:
                raw = self._unwrap(raw)
            except (ValueError, ProtocolViolation) as exc:
                self._drop(f"bad GSS-API datagram: {exc}", raw)
                return
        try:
            dgram = decode_udp_datagram(raw)
        except ValueError as exc:
            self._drop(f"malformed: {exc}", raw)
            return
        if dgram.frag != 0:
            self._drop(f"fragment {dgram.frag:#04x} (not reassembled)", raw)
            return
        with self._changed:
            self._last_source = source
            self._received.append(dgram)
            self._changed.notify_all()
        try:
            family, dest = self._destination(dgram)
            self._outbound_for(family).sendto(dgram.data, dest)
        except OSError as exc:
            self._drop(f"cannot relay to {dgram.addr}:{dgram.port}: {exc}", raw)

    def _unwrap(self, framed: bytes) -> bytes:
        assert self.gss is not None
        if len(framed) < 4 or framed[0] != GSS_VERSION or framed[1] != GSS_ENCAPSULATED:
            raise ValueError("not a 01 03 frame")
        (length,) = struct.unpack_from("!H", framed, 2)
        if len(framed) != 4 + length:
            raise ValueError(f"LEN {length} for a {len(framed) - 4}-byte token")
        try:
            return self.gss._unwrap(framed[4:])
        except Exception as exc:  # gssapi's GSSError: a token that fails verification
            raise ValueError(f"unwrap failed: {exc}") from None

    def _destination(self, dgram: Datagram) -> tuple[int, tuple[Any, ...]]:
        if dgram.atyp == ATYP_IPV4:
            return socket.AF_INET, (dgram.addr, dgram.port)
        if dgram.atyp == ATYP_IPV6:
            return socket.AF_INET6, (dgram.addr, dgram.port, 0, 0)
        family, _, _, _, sockaddr = _getaddrinfo(dgram.addr, dgram.port, type=socket.SOCK_DGRAM)[0]
        return family, tuple(sockaddr)

    def _outbound_for(self, family: int) -> socket.socket:
        sock = self._outbound.get(family)
        if sock is None:
            sock = _PlainSocket(family, socket.SOCK_DGRAM)
            self.server.track(sock)
            self._outbound[family] = sock
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ)
        return sock

    def _from_remote(self, sock: socket.socket) -> None:
        try:
            data, sockaddr = sock.recvfrom(_UDP_BUFFER)
        except OSError:
            return
        if sockaddr is None:
            return  # shut down by stop()
        host, port = _host_port(sockaddr)
        dgram = Datagram(0, ATYP_IPV6 if ":" in host else ATYP_IPV4, host, port, data)
        raw = encode_udp_datagram(*dgram)
        if self.gss is not None:
            token = self.gss.context.wrap(raw, self.gss.encrypt).message
            raw = encode_gss_frame(GSS_ENCAPSULATED, token)
        client = self.client_address
        if self.mute:
            self._drop("muted", raw)
            return
        if client is None:
            self._drop("the client's port is not known yet", raw)
            return
        # Recorded before sending, so that a test that has received the
        # datagram finds it here.
        with self._changed:
            self._forwarded.append(dgram)
        try:
            self.relay.sendto(raw, client)
        except OSError as exc:
            with self._changed:
                self._forwarded.remove(dgram)
            self._drop(f"cannot send to the client: {exc}", raw)
            return
        with self._changed:
            self._changed.notify_all()


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
                assert isinstance(src, _PlainSocket)
                data = src.recv(_RELAY_CHUNK)
                if data:
                    dst.sendall(data)
                    continue
                selector.unregister(src)
                open_directions -= 1
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)


def _relay_protected(conn: socket.socket, stream: GSSStream, outbound: socket.socket) -> None:
    """:func:`_relay` with the client's side in GSS-API frames."""
    pending = stream.feed(b"")  # anything unwrapped along with the request
    if pending:
        outbound.sendall(pending)
    with selectors.DefaultSelector() as selector:
        selector.register(conn, selectors.EVENT_READ)
        selector.register(outbound, selectors.EVENT_READ)
        open_directions = 2
        while open_directions:
            for key, _ in selector.select():
                src = key.fileobj
                assert isinstance(src, _PlainSocket)
                data = src.recv(_RELAY_CHUNK)
                if data:
                    if src is conn:
                        plain = stream.feed(data)
                        if plain:
                            outbound.sendall(plain)
                    else:
                        stream.sendall(data)
                    continue
                selector.unregister(src)
                open_directions -= 1
                if src is conn and stream.raw:
                    raise ProtocolViolation("client closed in the middle of a GSS-API frame")
                with contextlib.suppress(OSError):
                    (outbound if src is conn else conn).shutdown(socket.SHUT_WR)


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
    parser.add_argument(
        "--gssapi",
        action="store_true",
        help="require GSS-API (RFC 1961); the service key comes from KRB5_KTNAME",
    )
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    users = None if args.user is None else {args.user: args.password}
    server = SocksServer(args.host, args.port, users=users, gssapi=args.gssapi).start()
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
