"""The UDP variant of socksocket: UDP ASSOCIATE and the RFC 1928 datagram header.

``socksocket(type=SOCK_DGRAM)`` becomes a :class:`UDPSocksSocket`.  With a
proxy set, its first ``bind``, ``connect``, ``sendto``/``sendmsg`` or receive
(or an explicit :meth:`UDPSocksSocket.associate`) opens a TCP *control
connection* to the proxy and asks for a UDP association; the proxy answers
with the address of its *relay*.  From then on every datagram goes to the
relay with a header naming its real destination, and every datagram from
the relay carries a header naming its real source, which ``recvfrom`` and
``recvmsg`` return.

The association lives as long as the control connection (RFC 1928 section
7), so that connection is watched: once the proxy closes it, every UDP
operation raises :class:`~socks5client.errors.UDPAssociationClosedError`.

One kernel socket, one association: socket objects on the same kernel
socket (``dup()``, or a ``socksocket`` made from a duplicate of the
descriptor) share it, with its destination after ``connect`` and its
fragment reassembly, and the control connection closes when the last of
them is closed or collected.

Receiving is strict: a datagram that does not come from the relay, whose
header is malformed, or (after ``connect``) that comes from another remote,
is dropped silently and the call keeps waiting within its timeout -- the
same thing a plain UDP socket's caller would see for a lost datagram.
Fragments (FRAG != 0) are reassembled as the RFC describes; outgoing
datagrams are never fragmented.

The datagram path is kept short, since it runs per datagram: each
association keeps the encoded header of every destination it has sent to
and what every header the relay sent decodes to (both bounded), so that
the common ``sendto`` is a dict lookup, a liveness ``poll`` of the control
connection and the send, and the common ``recvfrom`` one ``poll`` on both
sockets, the read, a tuple comparison with the relay's address and a
prefix comparison with the header accepted last -- with every check above
still made, and each written out in the method itself (no Python call).
The sends and reads go
through a private, timeout-less socket object on a duplicate of the
descriptor (closed with the socket), because the socket's own methods would
poll the descriptor once more before each call when it has a timeout: that
way a datagram costs the same system calls as on a plain UDP socket.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import select
import socket
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _codec, _negotiate, _resolve
from ._codec import AddressType, Command
from ._negotiate import Budget, PlainSocket
from .errors import (
    GeneralProxyError,
    ProxyProtocolError,
    ProxyTimeoutError,
    UDPAssociationClosedError,
)
from .proxy import Proxy
from .sock import _MAX_POLL_MS, _c_int, _errno_of, _resolve_locally, socksocket
from .sock import _split_address as _split

if TYPE_CHECKING:
    from collections.abc import Callable

    from .auth import Protection

__all__ = ["FRAGMENT_TIMEOUT", "MAX_REASSEMBLED", "Reassembler", "UDPSocksSocket"]

#: Seconds a fragment sequence may take to complete (the RFC's minimum is 5).
FRAGMENT_TIMEOUT = 5.0
#: Largest reassembled datagram kept, in bytes: a bound against a proxy that
#: sends endless fragments.  Larger sequences are abandoned.
MAX_REASSEMBLED = 1 << 20

_END_OF_SEQUENCE = 0x80
# The largest UDP payload the relay path can carry: 65535 minus the IPv4
# (20) and UDP (8) headers; IPv6's payload length excludes its own header.
_MAX_UDP_PAYLOAD = {socket.AF_INET: 65507, socket.AF_INET6: 65527}
_RECV_BUFFER = 65536
# How many passes (a poll and the datagram or control data it found) a
# receive that must not wait makes before it gives up with BlockingIOError
# when none of them had a datagram to return; see _may_pass_again.
_NONBLOCKING_PASSES = 64
# How many destinations' headers and sources' decoded headers an association
# keeps; past that the cache starts again (a program talking to more remotes
# than this pays one encode or decode per datagram, as without a cache).
_MAX_CACHED = 256
_split_udp_datagram = _codec.split_udp_datagram
_lookup_udp_datagram = _codec.lookup_udp_datagram
# Bound once: a module global is one lookup where ``time.monotonic`` is two.
_monotonic = time.monotonic
# The C method, called as a function by the fast paths (see the note above
# _receive_other for why): neither socket.socket nor socksocket overrides it.
_gettimeout = PlainSocket.gettimeout
# The longest socket timeout the fast receive path waits out in one poll
# (whose limit is _MAX_POLL_MS); longer ones take the full path, which
# polls in several steps.  A millisecond short of the limit, so that poll()
# rounding the milliseconds up never crosses it.
_LONGEST_ONE_POLL = (_MAX_POLL_MS - 1) / 1000
# The flags of a call without any: ``flags is _NO_FLAGS`` is how the fast
# paths test for that.  CPython keeps one object for each small int, so the
# default ``0`` and a caller's literal ``0`` are this very object, while
# ``False``, an int subclass or anything else that only compares equal never
# is (those take the full path, which converts them as the C method would):
# one identity test instead of ``type(flags) is int and not flags``.
_NO_FLAGS = 0
# sendto()'s address when none is given (it takes 2 or 3 arguments).
_NO_ADDRESS: Any = object()
# Plain ints: the socket module's MSG_* are IntFlag members, and a bitwise
# operation on those costs more than the rest of a datagram's bookkeeping.
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_MSG_PEEK = int(socket.MSG_PEEK)
_MSG_TRUNC = int(socket.MSG_TRUNC)
_MSG_MORE = int(getattr(socket, "MSG_MORE", 0))
_MSG_ERRQUEUE = int(getattr(socket, "MSG_ERRQUEUE", 0))
_SOCK_NONBLOCK = int(getattr(socket, "SOCK_NONBLOCK", 0))
# Linux UDP options (the socket module does not name them) that make the
# kernel merge several sends into one datagram (UDP_CORK), split one send
# into several (UDP_SEGMENT), or merge received datagrams (UDP_GRO).  Through
# a relay the first would put one destination's header inside another
# destination's payload, the second would send header-less datagrams, the
# third would hand a header to the application as payload.
_MERGING_OPTIONS = (
    {1: "UDP_CORK", 103: "UDP_SEGMENT", 104: "UDP_GRO"} if sys.platform.startswith("linux") else {}
)
_UDP_SEGMENT = 103

Sockaddr = tuple[Any, ...]

# Never the connect() destination of any socket: _Endpoint.last starts with
# it, so that the empty header there (a prefix of every datagram) is never
# taken for a known one.
_NEVER = object()
_NO_LAST: tuple[bytes, int, Sockaddr, Any] = (b"", 0, (), _NEVER)


class Reassembler:
    """RFC 1928 fragment reassembly for one association: a queue and a timer.

    Pure logic with the clock passed in, so it is tested without sockets.
    FRAG 1-127 is a fragment's position; the high bit marks the last one.
    The queue is abandoned when the timer expires, when a datagram arrives
    whose position is lower than the highest seen (a standalone datagram,
    FRAG 0, counts as position 0), or when it grows past ``max_bytes``.
    """

    def __init__(self, timeout: float = FRAGMENT_TIMEOUT, max_bytes: int = MAX_REASSEMBLED) -> None:
        if timeout < 5.0:
            raise ValueError("RFC 1928 requires a reassembly timer of at least 5 seconds")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._pieces: dict[int, bytes] = {}
        self._source: tuple[AddressType, str, int] | None = None
        self._highest = 0
        self._started = 0.0
        self._size = 0
        #: How many sequences were abandoned (for tests and diagnostics).
        self.abandoned = 0

    def _reset(self, abandoned: bool) -> None:
        if abandoned and self._pieces:
            self.abandoned += 1
        self._pieces.clear()
        self._source = None
        self._highest = 0
        self._size = 0

    @property
    def pending(self) -> bool:
        """Whether a fragment sequence is being collected."""
        return bool(self._pieces)

    def expire(self, now: float) -> None:
        """Abandon the queue if its timer has run out."""
        if self._pieces and now - self._started > self.timeout:
            self._reset(abandoned=True)

    def push(
        self, dgram: _codec.UDPDatagram, now: float
    ) -> tuple[AddressType, str, int, bytes] | None:
        """Take one datagram; return a complete one ``(atyp, host, port, data)`` or None."""
        self.expire(now)
        position = dgram.frag & ~_END_OF_SEQUENCE
        if position < self._highest or (position == 0 and self._pieces):
            self._reset(abandoned=True)
        elif self._pieces and (dgram.atyp, dgram.host, dgram.port) != self._source:
            # Each fragment's header names the remote its data is from: one
            # naming another remote is no part of this sequence, whose
            # bytes would otherwise be delivered as the first remote's
            # (past a connect() filter that sees the first header only).
            self._reset(abandoned=True)
        if dgram.frag == 0:
            return dgram.atyp, dgram.host, dgram.port, dgram.data
        if position == 0:
            # 0x80: "last fragment" at position 0 is not a sequence at all.
            return None
        if not self._pieces:
            self._started = now
            self._source = (dgram.atyp, dgram.host, dgram.port)
        self._highest = position
        self._size += len(dgram.data) - len(self._pieces.get(position, b""))
        self._pieces[position] = dgram.data
        if self._size > self.max_bytes:
            self._reset(abandoned=True)
            return None
        if not dgram.frag & _END_OF_SEQUENCE:
            return None
        complete = len(self._pieces) == position and all(
            i in self._pieces for i in range(1, position + 1)
        )
        source = self._source
        data = b"".join(self._pieces[i] for i in range(1, position + 1)) if complete else b""
        self._reset(abandoned=not complete)
        if not complete or source is None:
            return None
        return (*source, data)


def _sockaddr(six: bool, atyp: AddressType, host: str, port: int) -> Sockaddr:
    """A source address as ``recvfrom`` returns it.

    An AF_INET6 socket always gets 4-tuples, as a plain AF_INET6 socket
    does, whatever the header named; an AF_INET socket gets IPv6 sources as
    4-tuples too (it cannot have a plain equivalent for those).
    """
    if six or atyp == AddressType.IPV6:
        return (host, port, 0, 0)
    return (host, port)


@functools.lru_cache(maxsize=256)
def _same_host(a: str, b: str) -> bool:
    """Whether two spellings name one IP address (case-blind for names).

    Cached: a source spelled differently from the relay or the connected
    remote would otherwise cost two ``ipaddress`` parses per datagram.  An
    IPv4-mapped IPv6 address is its IPv4 address: a relay may report an
    IPv4 remote with either header, whichever way the caller spelled it.
    """
    try:
        return _unmapped(a) == _unmapped(b)
    except ValueError:
        return a.lower() == b.lower()


def _unmapped(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host`` (an IP address, any scope dropped) as IPv4 when it is IPv4-mapped IPv6."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _poll(poller: select.poll, fds: tuple[int, ...], timeout_ms: int | None) -> list[Any]:
    """``poller.poll(timeout_ms)``, or a fresh poll object's if another thread is in it.

    CPython refuses concurrent ``poll()`` calls on one poll object (it
    raises RuntimeError), and several threads may use one socket at once.
    """
    try:
        return poller.poll(timeout_ms)
    except RuntimeError:
        fresh = select.poll()
        for fd in fds:
            fresh.register(fd, select.POLLIN)
        return fresh.poll(timeout_ms)


def _may_pass_again(nonblocking: bool, deadline: float | None, passes: int) -> None:
    """Raise unless a receive whose ``passes`` found nothing to return may poll again.

    Called only after a pass that had nothing to return (a datagram
    dropped, control data ignored, a datagram another thread took), so a
    call whose first datagram is accepted never reaches it (and the fast
    receive paths never reach the loop at all).  A call with a
    deadline stops at it with the timeout the expired ``poll`` raises.  A
    call that must not wait still reads past junk already queued, since a
    valid datagram may be behind it, but at most _NONBLOCKING_PASSES times:
    while junk keeps arriving the queue never empties.  Its BlockingIOError
    then is the spurious "readable, then EAGAIN" that select(2) documents
    for datagrams the kernel drops; a poller that sees the socket readable
    again simply calls again.
    """
    if nonblocking:
        if passes >= _NONBLOCKING_PASSES:
            raise BlockingIOError(errno.EAGAIN, "no datagram is waiting")
    elif deadline is not None and time.monotonic() >= deadline:
        raise socket.timeout("timed out")


def _c_int_or_same(value: Any) -> Any:
    """``value`` as the C socket methods read an int (see ``_c_int``); else itself."""
    try:
        return _c_int(value)
    except TypeError:
        return value  # a buffer, None, or what the C method refuses


def _is_set(value: Any) -> bool:
    """Whether a setsockopt value turns an option on, as the C method reads it.

    An int by its ``__index__`` (what the kernel gets), never by a
    ``__bool__`` an int subclass could answer falsely; a buffer by its bytes.
    """
    if value is None:
        return False
    try:
        return _c_int(value) != 0
    except TypeError:
        pass
    try:
        return any(memoryview(value).tobytes())
    except TypeError:
        return bool(value)  # neither: the C method refuses it anyway


def _merging_refused(what: str) -> OSError:
    return OSError(
        errno.EOPNOTSUPP,
        f"{what} would merge or split datagrams, and through a SOCKS5 relay every"
        " datagram needs its own header",
    )


class _Association:
    """The state of one UDP association: control connection, relay, reassembly.

    Shared by every socket object on the same kernel socket; per-object
    state (poll objects on the object's own descriptor) is in
    :class:`_Endpoint`.
    """

    def __init__(
        self,
        control: socket.socket,
        proxy: Proxy,
        relay: Sockaddr,
        six: bool,
        protection: Protection | None = None,
    ) -> None:
        self.control = control
        # GSS-API integrity or confidentiality (RFC 1961): every datagram
        # each way is then one wrapped token in a 01 03 LEN frame.
        self.protection = protection
        self.control_fd = control.fileno()
        self.proxy = proxy
        # As recvfrom reports it, too: a datagram from the relay usually has
        # exactly this source, and one tuple comparison accepts it.
        self.relay = relay
        self.relay_key = (str(relay[0]), int(relay[1]))
        # Whether sources are reported as 4-tuples (an AF_INET6 socket).
        self.six = six
        # Encoded headers by destination as the caller gave it (only exact
        # str/int tuples that need no lookup), and what the relay's headers
        # decode to -- (host, port, source address) by the header's bytes
        # (standalone datagrams only).  Plain dicts: a lookup or an insert
        # is atomic, and two threads computing one entry agree on it.
        self.headers: dict[Any, bytes] = {}
        self.sources: dict[bytes, tuple[str, int, Sockaddr]] = {}
        self.reassembler = Reassembler()
        # Two threads (or two dups) may take fragments in at once.
        self.reassembly_lock = threading.Lock()
        self.closed_by_proxy = False
        self.closed = False
        # Either of the two: what the fast paths test, one attribute.
        self.ended = False

    def close(self) -> None:
        """Close the control connection (the last socket object using it has gone)."""
        self.closed = True
        self.ended = True
        self.control.close()

    def from_relay(self, source: Sockaddr) -> bool:
        """Whether a datagram's source is the relay, however its address is spelled."""
        relay_host, relay_port = self.relay_key
        return source[1] == relay_port and (
            source[0] == relay_host or _same_host(str(source[0]), relay_host)
        )

    def remember_header(self, address: Any, header: bytes) -> None:
        if self.protection is not None:
            return  # the fast paths send unwrapped: keep them off
        headers = self.headers
        if len(headers) >= _MAX_CACHED:
            headers.clear()
        headers[address] = header

    def check_alive(self, end: _Endpoint) -> None:
        """Raise if the proxy has closed the control connection.

        One ``poll`` with no wait: the control connection is readable only
        when the proxy closed it (or, against the RFC, sent something).
        """
        if self.closed_by_proxy:
            raise self.ended_error()
        if self.closed:
            raise UDPAssociationClosedError("the UDP association was closed")
        if _poll(end.control, end.control_fds, 0):
            self.read_control()

    def read_control(self) -> None:
        """Read the readable control connection; raise if the proxy closed it.

        The connection itself stays open until the last socket object lets
        go of it: closing it here would free its descriptor number while
        other objects' poll objects still watch that number.
        """
        try:
            data = self.control.recv(4096, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.closed_by_proxy = self.ended = True
            raise self.ended_error(exc) from exc
        if not data:
            self.closed_by_proxy = self.ended = True
            raise self.ended_error()
        # RFC 1928 defines nothing the proxy may send here; ignore it.

    def ended_error(self, cause: OSError | None = None) -> UDPAssociationClosedError:
        where = _negotiate.describe(self.proxy.host, self.proxy.port)
        return UDPAssociationClosedError(
            f"the UDP association has ended: proxy {where} closed its control connection",
            cause,
        )


class _Endpoint:
    """One socket object's view of an association: poll objects on its own descriptor.

    It also holds, bound once, everything the per-datagram fast paths of
    :class:`UDPSocksSocket` use, so that they reach it from ``self._end``
    alone: each hop saved (``self._assoc.reassembler._pieces``, ``io.sendto``)
    is an attribute lookup saved per datagram.
    """

    __slots__ = (
        "assoc",
        "both",
        "both_fds",
        "control",
        "control_fd",
        "control_fds",
        "headers",
        "io",
        "io_recvfrom",
        "io_sendto",
        "last",
        "pieces",
        "poll_both",
        "poll_control",
        "relay",
        "share",
        "sources",
        "udp_fd",
        "udp_ready",
    )

    def __init__(
        self,
        assoc: _Association,
        share: _Shared,
        udp_fd: int,
        io: socket.socket,
    ) -> None:
        control_fd = assoc.control_fd
        self.assoc = assoc
        # The socket object's _Shared, whose ``peer`` is the connect()
        # destination (the object's own attribute is a slow lookup).
        self.share = share
        self.udp_fd = udp_fd
        self.control_fd = control_fd
        # The association's own objects, for the fast paths.  The dicts are
        # only ever cleared, never replaced (Reassembler._reset clears its
        # queue too), so these references stay the live ones.
        self.relay = assoc.relay
        self.headers = assoc.headers
        self.sources = assoc.sources
        self.pieces = assoc.reassembler._pieces
        # ``io`` is a plain socket object on a duplicate of the UDP
        # descriptor, with no timeout of its own, for every read and the
        # fast paths' writes (all with MSG_DONTWAIT): on the user's object,
        # which has one, every call would first poll the descriptor once
        # more -- up to a whole fresh timeout when another thread took the
        # datagram -- after this module has polled it already.  Its sendto
        # and recvfrom are bound here once (binding a method costs as much
        # per call as the attribute lookups around it).  Both None once the
        # object is closed or detached (UDPSocksSocket._release): the fast
        # paths then stop, since the descriptor numbers the poll objects
        # watch may name other files by then.
        self.io = io
        self.io_sendto: Callable[[Any, int, Sockaddr], int] | None = io.sendto
        self.io_recvfrom: Callable[[int, int], tuple[bytes, Any]] | None = io.recvfrom
        # Made once: one on the control connection, for the liveness check
        # before each send; one on both, for receiving.
        self.control_fds = (control_fd,)
        self.control = select.poll()
        self.control.register(control_fd, select.POLLIN)
        self.both_fds = (udp_fd, control_fd)
        self.both = select.poll()
        self.both.register(udp_fd, select.POLLIN)
        self.both.register(control_fd, select.POLLIN)
        self.poll_control = self.control.poll
        self.poll_both = self.both.poll
        # What poll_both returns when a datagram is waiting and nothing
        # else happened (the control connection quiet, no error pending on
        # the UDP socket): one list comparison tells the common case from
        # all the others, which take the full path.
        self.udp_ready = [(udp_fd, select.POLLIN)]
        # The last relay header the fast receive path accepted, as one
        # tuple (replaced whole, so threads never see half of an update):
        # (header, its length, the source it names as recvfrom returns it,
        # the connect() destination it was checked against).  See
        # UDPSocksSocket.recvfrom.
        self.last: tuple[bytes, int, Sockaddr, Any] = _NO_LAST


class _Peer(NamedTuple):
    """The destination set by ``connect()``, as one value so that it changes atomically."""

    dest: tuple[str, int]
    sockaddr: Sockaddr
    # (host, port) replies must come from; host None for a hostname
    # destination, which only the proxy resolves.
    filter_host: str | None
    filter_port: int
    # The header send() puts on each datagram; None when the destination
    # needed a local lookup (then each send() encodes it as sendto() does)
    # or the association is under GSS-API protection (each send() seals).
    header: bytes | None


class _Shared:
    """What every socket object on one kernel UDP socket shares.

    A plain socket's ``dup()`` shares the kernel socket: its local port, its
    receive queue, its connected peer.  Through a proxy the same goes for the
    association (two associations on one local port would each get the
    other's datagrams) and for the ``connect()`` destination.  ``users``
    counts the objects; the last one to leave closes the control connection.
    """

    def __init__(self, key: tuple[int, int]) -> None:
        self.key = key
        self.users = 0
        self.dead = False
        # Held while the association is being opened, so that only one is.
        self.lock = threading.Lock()
        self.assoc: _Association | None = None
        self.peer: _Peer | None = None

    def leave(self) -> None:
        """One object is done (closed, detached or collected)."""
        with _shared_lock:
            self.users -= 1
            if self.users > 0:
                return
            self.dead = True
            if _shared_by_socket.get(self.key) is self:
                del _shared_by_socket[self.key]
            assoc = self.assoc
        if assoc is not None:
            assoc.close()


# The live _Shared records by kernel socket identity: (st_dev, st_ino) of
# the descriptor, the same for every duplicate of it.  A socksocket made
# from a duplicated descriptor (socket.fromfd under patching, or
# socksocket(fileno=...)) finds the association this way.  Reentrant: a
# finalizer (leave) may run on this thread while it holds the lock, when
# an allocation triggers garbage collection.
_shared_lock = threading.RLock()
#: Serialises _adopt(): rare (once per socket object and association).
_adopt_lock = threading.Lock()
_shared_by_socket: dict[tuple[int, int], _Shared] = {}


def _after_fork_in_child() -> None:
    """New locks for a forked child, where only the forking thread lives on.

    A lock another thread held at the fork would stay held for ever, and
    the child would hang on its first use of a UDP socket it inherited.
    Usage counts cut short by the fork can only keep a control connection
    (the parent's too) open longer; fragments being reassembled are
    dropped, as the RFC lets a client do with any it has not completed.
    """
    global _shared_lock, _adopt_lock
    _shared_lock = threading.RLock()
    _adopt_lock = threading.Lock()
    for share in _shared_by_socket.values():
        if share.lock.locked():
            # Its association was being opened: the child opens its own.
            share.lock = threading.Lock()
        assoc = share.assoc
        if assoc is not None and assoc.reassembly_lock.locked():
            assoc.reassembly_lock = threading.Lock()
            # In place: the endpoints' fast paths hold its queue.
            assoc.reassembler._reset(abandoned=True)


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _kernel_socket(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


class UDPSocksSocket(socksocket):
    """A UDP socket whose datagrams leave from a SOCKS5 proxy's relay.

    Made by ``socksocket(family, SOCK_DGRAM)``; without a proxy it is a plain
    UDP socket.  ``getsockname()`` is the local address as usual;
    :meth:`get_proxy_sockname` is the relay's address.  Safe to use from
    several threads at once, like a plain socket.
    """

    _udp_variant = True
    # Per-object state.  socksocket.__init__ (in sock.py) knows nothing of
    # it, so the defaults live on the class and objects set their own.
    _share: _Shared | None = None
    _leave: weakref.finalize[Any, Any] | None = None
    # The association once this object has used it, and its endpoint.
    _assoc: _Association | None = None
    _end: _Endpoint | None = None
    _io: socket.socket | None = None
    _io_close: weakref.finalize[Any, Any] | None = None
    # The last destination and its encoded header, for destinations the
    # association's own cache does not keep (or before there is one).
    _header_cache: tuple[Any, bytes, bool] = (None, b"", False)

    # -- sharing one kernel socket --------------------------------------------

    def _enter(self, share: _Shared) -> None:
        with _shared_lock:
            if self._share is not None:
                return
            share.users += 1
            self._share = share
            # Garbage collection of this object must let go of the
            # association too, quietly: the control connection is ours, not
            # the user's, to leak.
            self._leave = weakref.finalize(self, share.leave)

    def _join(self, create: bool) -> _Shared | None:
        """This object's :class:`_Shared`, found by kernel socket (or made, with ``create``)."""
        share = self._share
        if share is not None:
            return share
        key = _kernel_socket(self.fileno())  # EBADF once closed
        with _shared_lock:
            share = self._share
            if share is not None:
                return share
            share = _shared_by_socket.get(key)
            if share is None or share.dead:
                if not create:
                    return None
                share = _Shared(key)
                _shared_by_socket[key] = share
            self._enter(share)
        return share

    def _release(self) -> None:
        end = self._end
        if end is not None:
            # Before the descriptor goes: the fast paths stop at these
            # rather than ask for fileno() (a C call) on each datagram.
            end.io_sendto = end.io_recvfrom = None
        io_close = self._io_close
        if io_close is not None:
            io_close()
        leave = self._leave
        if leave is not None:
            leave()

    def _copy_state_to(self, other: socksocket) -> None:
        """Give ``other`` (a dup of this socket) this socket's proxy state and association.

        Both objects then use one association, one destination and one
        reassembly queue, as they use one local port; the control
        connection closes with the last of them.  If there is no
        association yet, the first of them to need one opens it for both.
        """
        super()._copy_state_to(other)
        if not isinstance(other, UDPSocksSocket):
            return
        # Plain sockets stay out of the registry; should one of them get a
        # proxy later, _join finds the other by kernel socket anyway.
        if self._current() is None and self._share is None and self._effective_proxy() is None:
            return
        share = self._join(create=True)
        assert share is not None
        other._enter(share)

    def _adopt(self, assoc: _Association) -> _Association:
        fd = self.fileno()
        if fd == -1:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        # Threads that waited for the same association adopt it at once:
        # only one may make the endpoint (and its duplicate descriptor).
        with _adopt_lock:
            if self._assoc is assoc and self._end is not None:
                return assoc
            # _end first: the fast paths read _end alone (it carries the
            # association), the other paths _assoc, then _end.
            share = self._share
            # Set by _join, which every way to an association goes through.
            assert share is not None
            self._end = _Endpoint(assoc, share, fd, self._io_socket(fd))
            self._assoc = assoc
        return assoc

    def _io_socket(self, fd: int) -> socket.socket:
        """A timeout-less socket object on a duplicate of ``fd``, closed with this object.

        Every read after this module's own poll goes through it, with
        MSG_DONTWAIT: the object's own methods, with a timeout, would first
        wait up to the whole timeout (past the call's deadline) whenever
        another thread took the datagram.  Made with SOCK_NONBLOCK, which
        gives it a zero timeout without touching the descriptor's flags (a
        default timeout would make the constructor set O_NONBLOCK on the
        descriptor it shares with a blocking socket).  It is ours alone and
        only ever carries datagrams to and from the relay, headers included.
        One per object, kept across associations.
        """
        io = self._io
        if io is not None:
            return io
        blocking = os.get_blocking(fd)
        dup = os.dup(fd)  # EMFILE: the association cannot be used without it
        try:
            io = PlainSocket(self.family, socket.SOCK_DGRAM | _SOCK_NONBLOCK, 0, dup)
        except BaseException:
            os.close(dup)
            raise
        if _SOCK_NONBLOCK == 0:
            # No SOCK_NONBLOCK: timeout-less (its reads and writes carry
            # MSG_DONTWAIT anyway), and the shared flags put back as they were.
            io.settimeout(None)
            os.set_blocking(dup, blocking)
        self._io = io
        # Closed by close() and detach(), or quietly when this object is
        # collected; until then it keeps the kernel socket open too.
        self._io_close = weakref.finalize(self, io.close)
        return io

    def _current(self) -> _Association | None:
        """The association this object's datagrams use, if one is open (nothing sent)."""
        assoc = self._assoc
        if assoc is not None:
            return assoc
        share = self._share
        if share is None:
            if not _shared_by_socket:
                return None
            try:
                share = self._join(create=False)
            except OSError:
                return None  # closed: the plain call reports it
            if share is None:
                return None
        assoc = share.assoc
        if assoc is not None:
            self._adopt(assoc)
        return assoc

    # -- the association ----------------------------------------------------

    def associate(self) -> None:
        """Open the UDP association now, if there is a proxy and none is open.

        Binds the socket first when it is not bound yet, so that the proxy is
        told the real address and port datagrams will come from.  Bounded by
        the socket's timeout (a non-blocking socket's by the short bound of
        ``_negotiate.NONBLOCKING_HANDSHAKE_TIMEOUT``).
        """
        assoc = self._current()
        if assoc is not None:
            self._check_alive(assoc)
            return
        proxy = self._effective_proxy()
        if proxy is not None:
            self._open(proxy, Budget.for_socket(self.gettimeout()))

    def _budget(self, flags: int) -> tuple[Budget, bool]:
        """The call's budget, and whether the call must not wait (non-blocking or MSG_DONTWAIT)."""
        timeout = self.gettimeout()
        if timeout == 0.0 or flags & _MSG_DONTWAIT:
            # A call that must not wait still needs the association; like a
            # non-blocking connect(), it gets a short bounded handshake.
            return Budget.for_socket(0.0), True
        return Budget.for_socket(timeout), False

    def _check_alive(self, assoc: _Association) -> None:
        if self.fileno() == -1:
            # Closed: a plain closed socket's error, not the association's
            # (UDPAssociationClosedError says the proxy ended it).  The send
            # fast paths need no check of their own: on a closed object they
            # come here (the association ended with its last user) or send
            # through the object itself (io_sendto is None): EBADF.
            _raise_closed()
        end = self._end
        assert end is not None
        assoc.check_alive(end)

    def _open(self, proxy: Proxy, budget: Budget) -> _Association:
        """The association of this kernel socket, opened through ``proxy`` if there is none.

        Only one thread opens it; the others wait for it within their own
        budget and then use it.
        """
        if self.fileno() == -1:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        share = self._join(create=True)
        assert share is not None
        assoc = share.assoc
        if assoc is None:
            left = budget.remaining()
            if not share.lock.acquire(timeout=-1 if left is None else max(0.0, left)):
                where = _negotiate.describe(proxy.host, proxy.port)
                raise ProxyTimeoutError(
                    f"the UDP association via proxy {where}, being opened by another"
                    f" thread, was not ready {budget.describe()}"
                )
            try:
                assoc = share.assoc
                if assoc is None:
                    assoc = self._handshake(proxy, budget)
                    share.assoc = assoc
            finally:
                share.lock.release()
        return self._adopt(assoc)

    def _handshake(self, proxy: Proxy, budget: Budget) -> _Association:
        """UDP ASSOCIATE on a new control connection, within ``budget``."""
        for opt, name in _MERGING_OPTIONS.items():
            try:
                value = PlainSocket.getsockopt(self, socket.IPPROTO_UDP, opt)
            except OSError:
                continue  # not known to this kernel
            if value:
                raise _merging_refused(name)
        if PlainSocket.getsockname(self)[1] == 0:
            wildcard = "::" if self.family == socket.AF_INET6 else "0.0.0.0"
            PlainSocket.bind(self, (wildcard, 0))
        local_host, local_port = PlainSocket.getsockname(self)[:2]
        control = PlainSocket(self.family, socket.SOCK_STREAM)

        def request() -> bytes:
            host = local_host
            if ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified:
                # Bound to the wildcard: datagrams to the proxy will leave
                # from the address the control connection uses to reach it.
                host = control.getsockname()[0]
            return _codec.encode_request(Command.UDP_ASSOCIATE, host, local_port)

        where = _negotiate.describe(proxy.host, proxy.port)
        try:
            channel, reply = _negotiate.handshake(
                control, proxy, budget, request, f"UDP ASSOCIATE via {where}"
            )
            relay = self._relay_address(control, reply)
            # Blocking from now on; it is only read with MSG_DONTWAIT.
            PlainSocket.settimeout(control, None)
        except BaseException:
            control.close()
            raise
        return _Association(
            control, proxy, relay, self.family == socket.AF_INET6, channel.protection
        )

    def _relay_address(self, control: socket.socket, reply: _codec.Reply) -> Sockaddr:
        host = reply.host
        if reply.atyp == AddressType.DOMAIN:
            try:
                infos = _resolve.getaddrinfo(host, reply.port, self.family, socket.SOCK_DGRAM)
            except (socket.gaierror, ValueError) as exc:
                # ValueError (UnicodeError among them): a name the local
                # resolver refuses to encode ("a..b", ".", a label over 63
                # characters) is as unusable as one that does not resolve,
                # and just as much the proxy's doing.
                raise GeneralProxyError(
                    f"cannot resolve the UDP relay {host!r} named by the proxy", exc
                ) from exc
            return tuple(infos[0][4])
        if ipaddress.ip_address(host).is_unspecified:
            # RFC 1928 leaves this case open; the only sensible relay is the
            # proxy host itself.
            host = control.getpeername()[0]
        ip_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if ip_family != self.family:
            fam = "IPv6" if ip_family == socket.AF_INET6 else "IPv4"
            raise ProxyProtocolError(
                f"the proxy's UDP relay is at {fam} address {host}, which this"
                f" {'IPv6' if self.family == socket.AF_INET6 else 'IPv4'} socket cannot reach"
            )
        if ip_family == socket.AF_INET6:
            return (host, reply.port, 0, 0)
        return (host, reply.port)

    def _proxied(self) -> bool:
        """Whether datagrams go through a relay (an association exists or will)."""
        return self._current() is not None or self._effective_proxy() is not None

    # -- handing the descriptor over ---------------------------------------------

    def _detach_would_bypass(self) -> bool:
        """Whether a new owner of the descriptor would send datagrams directly.

        Always, with a proxy or an association: whoever owns the descriptor
        then has a plain UDP socket, which writes no header and needs no relay.
        """
        if self.fileno() == -1:
            return False
        return self._current() is not None or self._effective_proxy() is not None

    def detach(self) -> int:
        """Give up the descriptor, as ``socket.detach``; refused with a proxy or an association.

        A refused ``detach()`` raises :class:`OSError` (``EOPNOTSUPP``) and
        closes the socket, like the TCP variant before its handshake.
        Either way this object's share of the association ends here.
        """
        try:
            return super().detach()
        finally:
            if self.fileno() == -1:
                self._release()

    def setsockopt(self, *args: Any) -> None:
        """As usual, but UDP_CORK, UDP_SEGMENT and UDP_GRO are refused through a proxy.

        Each makes the kernel merge or split datagrams, while every datagram
        through the relay needs its own header.
        """
        if len(args) >= 3:
            # Compared and passed on as the ints the C method reads: an int
            # subclass could answer == one way and __index__ another.
            try:
                args = (_c_int(args[0]), _c_int(args[1]), _c_int_or_same(args[2]), *args[3:])
            except TypeError:
                pass  # not ints: the C method refuses them
            else:
                if (
                    args[0] == socket.IPPROTO_UDP
                    and args[1] in _MERGING_OPTIONS
                    and _is_set(args[2])
                    and self._proxied()
                ):
                    raise _merging_refused(_MERGING_OPTIONS[args[1]])
        super().setsockopt(*args)

    # -- addresses and connect() ----------------------------------------------------

    def bind(self, address: Any) -> None:
        """Bind locally, then open the association from that address."""
        PlainSocket.bind(self, address)
        if self._current() is None:
            proxy = self._effective_proxy()
            if proxy is not None:
                self._open(proxy, Budget.for_socket(self.gettimeout()))

    def connect(self, address: Any) -> None:
        """Set the default destination for :meth:`send` and filter replies by it.

        Opens the association first if needed, within the socket's timeout.
        """
        self._connect(address)

    def connect_ex(self, address: Any) -> int:
        """Like :meth:`connect`, but return an errno instead of raising OSErrors.

        As with a plain socket, name resolution errors (``socket.gaierror``)
        and bad arguments still raise.
        """
        return _errno_of(self._connect, address)

    def _connect(self, address: Any) -> None:
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            PlainSocket.connect(self, address)
            return
        host, port = _split(address)
        # Encoding the header refuses a bad destination before the
        # association (and the proxy) is involved.
        self._header_for(host, port, proxy)
        if assoc is None:
            assoc = self._open(proxy, Budget.for_socket(self.gettimeout()))
        else:
            self._check_alive(assoc)
        header, stable = self._header_for(host, port, assoc.proxy)
        if self.family == socket.AF_INET6:
            # The shape a plain AF_INET6 socket's getpeername() has.
            shown: Sockaddr = (
                (host, port, *address[2:4]) if len(address) == 4 else (host, port, 0, 0)
            )
        else:
            shown = tuple(address)
        atyp = _codec.encode_host(host)[0]
        filter_host: str | None = None if atyp == AddressType.DOMAIN else host
        if atyp == AddressType.IPV6:
            # Unmapped once here, not per datagram: a relay reports an IPv4
            # remote with an IPv4 header (Dante does) even when the caller
            # connected to its IPv4-mapped form, as a dual-stack socket may.
            try:
                mapped = ipaddress.IPv6Address(host.split("%", 1)[0]).ipv4_mapped
            except ValueError:  # a spelling inet_pton takes and ipaddress does not
                mapped = None
            if mapped is not None:
                filter_host = str(mapped)
        share = self._share
        assert share is not None
        # No header for send()'s fast path under GSS-API protection: it
        # sends unwrapped datagrams (the full path seals them).
        keep = stable and assoc.protection is None
        share.peer = _Peer((host, port), shown, filter_host, port, header if keep else None)

    def _peer(self) -> _Peer | None:
        share = self._share
        return share.peer if share is not None else None

    def getpeername(self) -> Any:
        """The default destination set by :meth:`connect` (4-tuple on AF_INET6)."""
        self._current()
        peer = self._peer()
        if peer is not None and self.fileno() != -1:
            return peer.sockaddr
        return PlainSocket.getpeername(self)

    def get_proxy_sockname(self) -> tuple[str, int] | None:
        """The relay's address (where datagrams are sent), once associated."""
        assoc = self._current()
        if assoc is None:
            return None
        return assoc.relay_key

    def get_proxy_peername(self) -> Any:
        """The proxy's address at the other end of the control connection."""
        assoc = self._current()
        if assoc is None:
            raise OSError(errno.ENOTCONN, "no UDP association yet")
        if assoc.closed_by_proxy:
            raise assoc.ended_error()
        return assoc.control.getpeername()

    # -- sending -----------------------------------------------------------------

    def _wire_destination(self, host: str, port: int, proxy: Proxy | None) -> tuple[str, int]:
        if (
            proxy is not None
            and not proxy.remote_dns
            and (_codec.encode_host(host)[0] == AddressType.DOMAIN)
        ):
            # The IDNA 2008 form, as TCP resolves it (and as the proxy would
            # get it): Python's own codec would look up another name for
            # "faß.de" ("fass.de").
            host = _resolve_locally(host, port)[0]
        return host, port

    def _header_for(self, host: str, port: int, proxy: Proxy) -> tuple[bytes, bool]:
        """The UDP header for ``(host, port)`` through ``proxy``, and whether it may be kept.

        It may not when the destination was looked up here (a name without
        remote DNS): that lookup is made again for each new destination,
        only the last one is kept.
        """
        key = (host, port, proxy.remote_dns)
        cached_key, header, stable = self._header_cache
        if cached_key != key:
            wire = self._wire_destination(host, port, proxy)
            header = _codec.encode_udp_header(*wire)
            stable = wire[0] is host
            self._header_cache = (key, header, stable)
        return header, stable

    def _destination(self) -> tuple[str, int]:
        peer = self._peer()
        if peer is None:
            if self.fileno() == -1:  # closed: what a plain socket says first
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            raise OSError(errno.EDESTADDRREQ, os.strerror(errno.EDESTADDRREQ))
        return peer.dest

    def _prepare_send(
        self, assoc: _Association | None, proxy: Proxy, flags: int, address: Any
    ) -> tuple[bytes, Sockaddr]:
        """The header for ``address`` and the relay to send to, the association opened if need be.

        A bad destination or flag is refused before the proxy is involved.
        """
        if flags & _MSG_MORE:
            raise _merging_refused("MSG_MORE")
        host, port = _split(address)
        header, stable = self._header_for(host, port, proxy)
        if assoc is None:
            assoc = self._open(proxy, self._budget(flags)[0])
        else:
            self._check_alive(assoc)
        if (
            stable
            and assoc.proxy is proxy
            and type(address) is tuple
            and host is address[0]
            and type(host) is str
            and type(port) is int
        ):
            # Kept for sendto()'s fast path, by the address as given: only
            # a str host that _split kept as it is (not a name patch() made
            # up an address for) and an int port, so that a key equal to
            # another address is one that encodes the same.
            assoc.remember_header(address, header)
        return header, assoc.relay

    def _sealed(self, datagram: bytes) -> bytes:
        """``datagram`` as it goes to the relay: wrapped and framed under GSS-API protection."""
        assoc = self._assoc
        protection = assoc.protection if assoc is not None else None
        if protection is None:
            return datagram
        token = protection.wrap(datagram)
        if len(token) > _codec.GSSAPI_MAX_TOKEN:
            raise OSError(
                errno.EMSGSIZE,
                f"a {len(datagram)}-byte datagram does not fit one GSS-API token"
                f" (at most {protection.max_payload} bytes with its header)",
            )
        return _codec.encode_gssapi_frame(_codec.GSSAPIMessage.ENCAPSULATED, token)

    def sendto(self, data: Any, address: Any = _NO_ADDRESS, /, *rest: Any) -> int:
        """Send ``data`` to an address through the relay; return the payload size.

        ``sendto(data, address)`` or ``sendto(data, flags, address)``, as on
        a plain socket: the second form arrives as ``address`` (the flags)
        and ``rest``.  Spelt so rather than ``*args`` because the usual
        form is then tested with ``not rest`` and builds no tuple.
        """
        end = self._end
        if end is not None and not rest:
            # The fast path: a destination whose header the association
            # keeps (see _prepare_send), given as exactly such a tuple, and
            # a live association whose control connection is quiet (one
            # poll with no wait).  Anything else, the poll object busy in
            # another thread included, takes the full path, which sorts it
            # out.  Written out here rather than called (a Python call costs
            # as much as several of these steps), as in send(): keep the two
            # in step.
            try:
                header = end.headers.get(address)
            except TypeError:  # unhashable: the full path says what is wrong
                header = None
            if header is not None and type(address[1]) is int and not end.assoc.ended:
                poll = end.poll_control  # a slot: a method call on it is not specialised
                try:
                    quiet = not poll(0)
                except RuntimeError:
                    quiet = False
                if quiet:
                    if type(data) is not bytes:
                        data = memoryview(data).cast("B")
                    sendto = end.io_sendto
                    if sendto is not None:
                        try:
                            sendto(header + data, _MSG_DONTWAIT, end.relay)
                            return len(data)
                        except (BlockingIOError, InterruptedError):
                            pass  # the send buffer is full: wait as the timeout says
                    PlainSocket.sendto(self, header + data, end.relay)
                    return len(data)
        # The arguments as the caller gave them.
        args = rest if address is _NO_ADDRESS else (address, *rest)
        assoc = self._current()
        # The proxy is read once per call: another thread may change the
        # default proxy meanwhile.
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.sendto(self, data, *args)
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            # Checked and sent as the int the C method would read: an int
            # subclass could answer ``&`` one way and ``__index__`` another.
            flags, address = _c_int(args[0]), args[1]
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        payload = memoryview(data).cast("B")
        header, relay = self._prepare_send(assoc, proxy, flags, address)
        PlainSocket.sendto(self, self._sealed(header + payload), flags, relay)
        return len(payload)

    def send(self, data: Any, flags: int = 0) -> int:
        """Send to the default destination set by :meth:`connect`."""
        end = self._end
        if end is not None and flags is _NO_FLAGS:
            # The fast path, as in sendto() (keep the two in step), with the
            # header kept for the connect() destination: None when it needs
            # a lookup per datagram or under GSS-API protection (see _connect).
            peer = end.share.peer
            header = peer.header if peer is not None else None
            if header is not None and not end.assoc.ended:
                poll = end.poll_control  # a slot: a method call on it is not specialised
                try:
                    quiet = not poll(0)
                except RuntimeError:
                    quiet = False
                if quiet:
                    if type(data) is not bytes:
                        data = memoryview(data).cast("B")
                    sendto = end.io_sendto
                    if sendto is not None:
                        try:
                            sendto(header + data, _MSG_DONTWAIT, end.relay)
                            return len(data)
                        except (BlockingIOError, InterruptedError):
                            pass  # the send buffer is full: wait as the timeout says
                    PlainSocket.sendto(self, header + data, end.relay)
                    return len(data)
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.send(self, data, flags)
        flags = _c_int(flags)
        payload = memoryview(data).cast("B")
        header, relay = self._prepare_send(assoc, proxy, flags, self._destination())
        PlainSocket.sendto(self, self._sealed(header + payload), flags, relay)
        return len(payload)

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        """Send one datagram made of ``buffers`` through the relay; return the payload size.

        ``sendmsg(buffers, ancdata=(), flags=0, address=None)``: the
        ancillary data and flags apply to the datagram sent to the relay;
        without an address the :meth:`connect` destination is used
        (``EDESTADDRREQ`` if there is none).  ``MSG_MORE`` and a
        ``UDP_SEGMENT`` message are refused (``EOPNOTSUPP``).
        """
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.sendmsg(self, buffers, *args)
        if len(args) > 3:
            raise TypeError(f"sendmsg() takes at most 4 arguments ({len(args) + 1} given)")
        views = [memoryview(b).cast("B") for b in buffers]
        ancdata = list(args[0]) if args else []
        flags = _c_int(args[1]) if len(args) > 1 else 0
        address = args[2] if len(args) > 2 else None
        for i, item in enumerate(ancdata):
            # Checked and passed on as the C method reads it: a plain tuple
            # of the ints behind level and type (an int subclass could answer
            # == one way and __index__ another; a list item is taken too).
            try:
                level, kind, data = item
                item = ancdata[i] = (_c_int(level), _c_int(kind), data)
            except (TypeError, ValueError):
                continue  # not a (level, type, data) item: the C method refuses it
            if (
                item[0] == socket.IPPROTO_UDP
                and item[1] == _UDP_SEGMENT
                and _UDP_SEGMENT in _MERGING_OPTIONS
            ):
                raise _merging_refused("UDP_SEGMENT")
        if address is None:
            address = self._destination()
        header, relay = self._prepare_send(assoc, proxy, flags, address)
        parts: list[Any] = [header, *views]
        if self._assoc is not None and self._assoc.protection is not None:
            parts = [self._sealed(b"".join(parts))]
        PlainSocket.sendmsg(self, parts, ancdata, flags, relay)
        return sum(len(v) for v in views)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Refused through a proxy: datagrams are sent whole with :meth:`send`."""
        if self.fileno() == -1:
            _raise_closed()
        if not self._proxied():
            PlainSocket.sendall(self, data, flags)
            return
        raise OSError(errno.EOPNOTSUPP, "sendall() is not for datagrams; use send() or sendto()")

    # -- receiving ---------------------------------------------------------------

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        """Receive one datagram's payload (truncated to ``bufsize``) and its real source."""
        end = self._end
        if end is not None and flags is _NO_FLAGS and type(bufsize) is int and bufsize >= 0:
            # The fast path: an association, an exact int size and no flag
            # (anything else is checked below as the C method would check
            # it); one poll on the UDP socket and the control connection
            # that finds a datagram and nothing else, one read that cannot
            # block, a datagram from the relay (one tuple comparison), no
            # fragments pending, and the header accepted last for the same
            # connect() destination (the same _Peer object: it is replaced,
            # never changed).  A header ends where its own bytes say (RSV,
            # FRAG, ATYP, the address), so a datagram that starts with one
            # the codec has split off and parsed has exactly that header:
            # one C call.  Anything else goes on in _received,
            # _receive_other or _wait_on, with the same deadline.  Written
            # out here rather than called: a Python call costs as much as
            # several of these steps.  The same steps as in recv(): keep
            # the two in step.
            deadline: float | None
            wait: float | None
            timeout = _gettimeout(self)
            if timeout:  # (None and 0.0 are both false: a timeout is the usual case)
                if timeout >= _LONGEST_ONE_POLL:
                    data, address = _receive_other(self, end, timeout)
                    return data[:bufsize], address
                deadline = _monotonic() + timeout
                # poll() takes float milliseconds too, rounded up: no int() call.
                wait = timeout * 1000.0
            elif timeout is None:
                deadline = wait = None
            else:
                data, address = _receive_other(self, end, timeout)
                return data[:bufsize], address
            recvfrom = end.io_recvfrom
            if recvfrom is not None:  # (None once this object is closed)
                poll = end.poll_both  # a slot: a method call on it is not specialised
                try:
                    ready = poll(wait)
                except RuntimeError:  # another thread is in this poll object
                    ready = None
                if ready == end.udp_ready:
                    try:
                        data, source = recvfrom(_RECV_BUFFER, _MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        pass  # another thread took it
                    else:
                        if source == end.relay and not end.pieces:
                            header, size, address, checked = end.last
                            if checked is end.share.peer and data.startswith(header):
                                # The header off and the payload truncated at once.
                                return data[size : size + bufsize], address
                        data, address = _received(self, end, data, source, deadline)
                        return data[:bufsize], address
            data, address = _wait_on(self, end, deadline)
            return data[:bufsize], address
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.recvfrom(self, bufsize, flags)
        bufsize = _c_int(bufsize)
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        data, address, _, _ = self._receive(assoc, proxy, flags, -1)
        return data[:bufsize], address

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive one datagram's payload (truncated to ``bufsize``)."""
        end = self._end
        if end is not None and flags is _NO_FLAGS and type(bufsize) is int and bufsize >= 0:
            # The fast path, as in recvfrom() (see there; keep the two in step).
            deadline: float | None
            wait: float | None
            timeout = _gettimeout(self)
            if timeout:
                if timeout >= _LONGEST_ONE_POLL:
                    return _receive_other(self, end, timeout)[0][:bufsize]
                deadline = _monotonic() + timeout
                wait = timeout * 1000.0
            elif timeout is None:
                deadline = wait = None
            else:
                return _receive_other(self, end, timeout)[0][:bufsize]
            recvfrom = end.io_recvfrom
            if recvfrom is not None:
                poll = end.poll_both
                try:
                    ready = poll(wait)
                except RuntimeError:
                    ready = None
                if ready == end.udp_ready:
                    try:
                        data, source = recvfrom(_RECV_BUFFER, _MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        pass
                    else:
                        if source == end.relay and not end.pieces:
                            header, size, _, checked = end.last
                            if checked is end.share.peer and data.startswith(header):
                                return data[size : size + bufsize]
                        return _received(self, end, data, source, deadline)[0][:bufsize]
            return _wait_on(self, end, deadline)[0][:bufsize]
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.recv(self, bufsize, flags)
        bufsize = _c_int(bufsize)
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        return self._receive(assoc, proxy, flags, -1)[0][:bufsize]

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """Receive one datagram's payload into ``buffer``; return its size and source."""
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.recvfrom_into(self, buffer, nbytes, flags)
        view, limit = _into(
            buffer, nbytes, "recvfrom_into", "nbytes is greater than the length of the buffer"
        )
        data, address, _, _ = self._receive(assoc, proxy, flags, -1)
        return _fill(view, limit, data, flags), address

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive one datagram's payload into ``buffer``; return its size."""
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.recv_into(self, buffer, nbytes, flags)
        view, limit = _into(buffer, nbytes, "recv_into", "buffer too small for requested bytes")
        data = self._receive(assoc, proxy, flags, -1)[0]
        return _fill(view, limit, data, flags)

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """Receive one datagram: ``(data, ancdata, msg_flags, address)`` with its real source.

        The ancillary data is that of the datagram accepted from the relay
        (of its last fragment, for a reassembled one); ``msg_flags`` has
        ``MSG_TRUNC`` when the payload was longer than ``bufsize``.
        """
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.recvmsg(self, bufsize, ancbufsize, flags)
        bufsize = _c_int(bufsize)
        ancbufsize = _c_int(ancbufsize)
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        if ancbufsize < 0:
            raise ValueError("negative ancillary buffer size in recvmsg()")
        data, address, ancdata, msg_flags = self._receive(assoc, proxy, flags, ancbufsize)
        if len(data) > bufsize:
            msg_flags |= _MSG_TRUNC
            data = data[:bufsize]
        return data, ancdata, msg_flags, address

    def recvmsg_into(
        self, buffers: Any, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        """Receive one datagram's payload into ``buffers``, in order, as :meth:`recvmsg` does.

        Returns ``(nbytes, ancdata, msg_flags, address)``.
        """
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        if proxy is None:
            return PlainSocket.recvmsg_into(self, buffers, ancbufsize, flags)
        views = [_writable(b, "recvmsg_into") for b in buffers]
        ancbufsize = _c_int(ancbufsize)
        if ancbufsize < 0:
            raise ValueError("negative ancillary buffer size in recvmsg_into()")
        data, address, ancdata, msg_flags = self._receive(assoc, proxy, flags, ancbufsize)
        offset = 0
        for view in views:
            chunk = data[offset : offset + len(view)]
            view[: len(chunk)] = chunk
            offset += len(chunk)
        if offset < len(data):
            msg_flags |= _MSG_TRUNC
        return offset, ancdata, msg_flags, address

    def _receive(
        self, assoc: _Association | None, proxy: Proxy, flags: int, ancbufsize: int
    ) -> tuple[bytes, Any, list[tuple[int, int, bytes]], int]:
        """One valid datagram: payload, real source, ancillary data, kernel msg_flags.

        ``ancbufsize`` -1 reads with ``recvfrom`` (no ancillary data).
        The association (if it must be opened) and the wait share one
        deadline; with MSG_DONTWAIT or a non-blocking socket nothing waits.
        """
        # The int the kernel will get: checks on anything else prove nothing.
        flags = _c_int(flags)
        if flags & _MSG_PEEK:
            raise OSError(errno.EOPNOTSUPP, "MSG_PEEK is not supported through a SOCKS5 relay")
        if flags & _MSG_ERRQUEUE:
            raise OSError(
                errno.EOPNOTSUPP,
                "MSG_ERRQUEUE is not supported through a SOCKS5 relay (its errors are the relay's)",
            )
        timeout = self.gettimeout()
        nonblocking = timeout == 0.0 or bool(flags & _MSG_DONTWAIT)
        if assoc is None:
            budget = self._budget(flags)[0]
            assoc = self._open(proxy, budget)
            deadline = budget.deadline
        else:
            # The deadline Budget would compute, without making one per datagram.
            deadline = None if timeout is None else time.monotonic() + timeout
        # The caller's MSG_TRUNC is about its buffer, not the one below.
        kernel_flags = (flags | _MSG_DONTWAIT) & ~_MSG_TRUNC
        return self._wait_for_datagram(assoc, kernel_flags, ancbufsize, nonblocking, deadline)

    def _wait_for_datagram(
        self,
        assoc: _Association,
        kernel_flags: int,
        ancbufsize: int,
        nonblocking: bool,
        deadline: float | None,
    ) -> tuple[bytes, Any, list[tuple[int, int, bytes]], int]:
        """Wait for a valid datagram (or the control connection's end) until ``deadline``.

        One ``poll`` on both the UDP socket and the control connection per
        wait, then a read that cannot block (``kernel_flags`` has
        MSG_DONTWAIT); a datagram that is not valid is dropped and the wait
        goes on.  The deadline is checked after every pass that returned
        nothing, not only when ``poll`` finds nothing: junk arriving faster
        than it is dropped, or a proxy writing on the control connection,
        keeps ``poll`` from ever finding nothing.
        """
        end = self._end
        assert end is not None
        udp_fd = end.udp_fd
        if self.fileno() != udp_fd:
            # Closed: the descriptor numbers in the poll objects may belong
            # to something else by now.
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        both = end.both
        io = end.io
        # Passes (a poll and what it found) that had nothing to return.
        passes = 0
        while True:
            if assoc.closed_by_proxy:
                raise assoc.ended_error()
            if nonblocking:
                wait_ms: int | None = 0
            elif deadline is None:
                wait_ms = None
            else:
                left = deadline - time.monotonic()
                wait_ms = min(_MAX_POLL_MS, max(0, int(left * 1000 + 0.999)))
            try:
                ready = both.poll(wait_ms)
            except RuntimeError:  # another thread is in this poll object
                ready = _poll(both, end.both_fds, wait_ms)
            if len(ready) != 1 or ready[0][0] != udp_fd:
                # Not (only) a datagram: the control connection, or nothing.
                fds = [fd for fd, _ in ready]
                if end.control_fd in fds:
                    assoc.read_control()
                    if udp_fd not in fds:
                        passes += 1
                        _may_pass_again(nonblocking, deadline, passes)
                        continue
                elif udp_fd not in fds:
                    if wait_ms == _MAX_POLL_MS:
                        continue  # a timeout longer than one poll can wait
                    if nonblocking:
                        raise BlockingIOError(errno.EAGAIN, "no datagram is waiting")
                    raise socket.timeout("timed out")
            try:
                # Through the timeout-less object: EAGAIN comes back at once
                # and the wait goes on within this call's deadline.
                if ancbufsize < 0:
                    data, source = io.recvfrom(_RECV_BUFFER, kernel_flags)
                    ancdata: list[tuple[int, int, bytes]] = []
                    msg_flags = 0
                else:
                    data, ancdata, msg_flags, source = io.recvmsg(
                        _RECV_BUFFER, ancbufsize, kernel_flags
                    )
            except (BlockingIOError, InterruptedError):
                # Another thread took it, or only an error was queued.
                if any(fd == udp_fd and not ev & select.POLLIN for fd, ev in ready):
                    _drain_error_queue(io)
                passes += 1
                _may_pass_again(nonblocking, deadline, passes)
                continue
            if source is None:
                # What a plain UDP socket returns once shut down for reading.
                return b"", None, ancdata, msg_flags
            result = self._accept_datagram(assoc, data, source)
            if result is not None:
                return result[0], result[1], ancdata, msg_flags & ~_MSG_TRUNC
            passes += 1
            _may_pass_again(nonblocking, deadline, passes)

    def _accept_datagram(
        self, assoc: _Association, data: bytes, source: Sockaddr
    ) -> tuple[bytes, Sockaddr] | None:
        """The payload and source of a valid datagram; None for one to drop.

        A header seen before is looked up by its bytes; only a new one (or a
        fragment, or any datagram while fragments are being collected) is
        decoded.
        """
        if source != assoc.relay and not assoc.from_relay(source):
            return None
        if assoc.protection is not None:
            # Every datagram of such an association comes here: its decoded
            # headers are never cached (see _decode_datagram), so the fast
            # path's lookup, made before unwrapping, finds none of them.
            unsealed = _unsealed(assoc.protection, data)
            if unsealed is None:
                return None
            data = unsealed
        hit = None if assoc.reassembler._pieces else _lookup_udp_datagram(data, assoc.sources)
        if hit is not None:
            known, payload = hit
        else:
            try:
                header, payload = _split_udp_datagram(data)
            except ProxyProtocolError:
                return None
            cached = assoc.sources.get(header)  # (a name: not looked up above)
            if cached is None or assoc.reassembler._pieces:
                cached, payload = self._decode_datagram(assoc, header, payload)
                if cached is None:
                    return None
            known = cached
        host, port, address = known
        share = self._share
        peer = share.peer if share is not None else None
        if peer is not None:
            if port != peer.filter_port:
                return None
            # A hostname destination is resolved by the proxy, so only its
            # port can be checked without a local DNS query (host None).
            want = peer.filter_host
            if want is not None and host != want and not _same_host(host, want):
                return None
        return payload, address

    def _decode_datagram(
        self, assoc: _Association, header: bytes, payload: bytes
    ) -> tuple[tuple[str, int, Sockaddr] | None, bytes]:
        """Decode a header not seen before; reassemble fragments.

        Returns ``((host, port, source address), payload)``, with None for a
        datagram to drop (malformed, or a fragment of an unfinished sequence).
        """
        try:
            dgram = _codec.parse_udp_datagram(header)
        except ProxyProtocolError:
            return None, b""
        atyp, host, port = dgram.atyp, dgram.host, dgram.port
        if dgram.frag == 0:
            known = (host, port, _sockaddr(assoc.six, atyp, host, port))
            if assoc.protection is None:
                # Not under GSS-API: the fast paths look datagrams up here
                # before anything is unwrapped, and a forged one in clear
                # must not find its header.
                sources = assoc.sources
                if len(sources) >= _MAX_CACHED:
                    sources.clear()
                sources[header] = known
            if not assoc.reassembler._pieces:
                return known, payload
        with assoc.reassembly_lock:
            complete = assoc.reassembler.push(dgram._replace(data=payload), time.monotonic())
        if complete is None:
            return None, b""
        atyp, host, port, payload = complete
        return (host, port, _sockaddr(assoc.six, atyp, host, port)), payload

    # -- buffer sizes ----------------------------------------------------------

    def header_overhead(self, address: tuple[str, int] | None = None) -> int:
        """Bytes the SOCKS5 header takes per datagram.

        For ``address``, the exact figure; without one, the worst case this
        socket can send: a 255-byte domain name (262) when the proxy resolves
        names, else an IPv6 address (22; RFC 1928 says 20, but RSV, FRAG,
        ATYP, 16 address bytes and the port add up to 22).  No supported
        authentication method adds per-datagram overhead, except GSS-API
        with integrity or confidentiality: its frame and token are added.
        """
        assoc = self._current()
        proxy = assoc.proxy if assoc is not None else self._effective_proxy()
        protection = assoc.protection if assoc is not None else None
        # The frame's four octets and what wrapping adds (the most a token
        # may carry is its size minus that).
        sealing = 0 if protection is None else 4 + _MAX_GSS_TOKEN - protection.max_payload
        if address is not None:
            host, port = _split(address)
            header = _codec.encode_udp_header(*self._wire_destination(host, port, proxy))
            return len(header) + sealing
        if proxy is None:
            return 0
        if proxy.remote_dns:
            return _codec.udp_header_size(AddressType.DOMAIN) + sealing
        return _codec.udp_header_size(AddressType.IPV6) + sealing

    def max_payload(self, address: tuple[str, int] | None = None) -> int:
        """The largest payload one datagram can carry through the relay (to ``address``)."""
        return _MAX_UDP_PAYLOAD[self.family] - self.header_overhead(address)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        """As usual, but SO_SNDBUF and SO_RCVBUF are reduced by the header overhead.

        RFC 1928 requires a SOCKS-aware UDP interface to report less buffer
        space than the operating system provides; the worst case of
        :meth:`header_overhead` is subtracted.
        """
        if buflen is not None:
            return PlainSocket.getsockopt(self, level, optname, buflen)
        value = PlainSocket.getsockopt(self, level, optname)
        if (
            level == socket.SOL_SOCKET
            and optname in (socket.SO_SNDBUF, socket.SO_RCVBUF)
            and self._proxied()
        ):
            return max(0, value - self.header_overhead())
        return value

    # -- closing ----------------------------------------------------------------

    def close(self) -> None:
        """Close the UDP socket; the control connection closes with the last dup of it.

        While a :meth:`makefile` object still holds the socket, the descriptor
        stays open (``socket.socket.close`` closes it when the last such file
        is closed, and calls this again then), so the association stays too:
        the file goes on sending and receiving through the relay, as a plain
        UDP socket's file goes on working.
        """
        if self._io_refs <= 0:
            self._release()
        super().close()


# What the per-datagram fast paths of UDPSocksSocket hand over to.
#
# Module functions rather than methods: instances of UDPSocksSocket get
# their class by ``__class__`` assignment (in socksocket.__init__), which
# leaves them with a materialised instance dict, and their per-object state
# has class-level defaults; CPython 3.11 then specialises no
# ``self.method(...)`` call and no ``self._attr`` read on them, and each
# costs a full lookup (the type, then the instance dict).  A module function
# is one specialised global load.  For the same reason the fast paths call
# the socket's C methods through their descriptors (_gettimeout) and take
# the state they need from the _Endpoint, whose slots are specialised loads.


def _raise_closed() -> None:
    raise OSError(errno.EBADF, os.strerror(errno.EBADF))


def _drain_error_queue(io: socket.socket) -> None:
    """Discard the UDP socket's queued errors (IP_RECVERR, IPV6_RECVERR).

    poll() reports POLLERR for as long as one is queued, so a wait would
    spin instead of sleeping.  They concern the relay, not the caller's
    remotes, and MSG_ERRQUEUE is refused through a relay, so nobody else can
    read them.  A pending socket error was already reported by the read
    that found nothing, as a plain socket reports it.
    """
    if not _MSG_ERRQUEUE:
        return
    # Bounded: the kernel bounds the queue by the receive buffer anyway.
    for _ in range(_NONBLOCKING_PASSES):
        try:
            io.recvmsg(1, 1024, _MSG_ERRQUEUE | _MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # a pending error surfaced: the next read reports it


def _receive_other(sock: UDPSocksSocket, end: _Endpoint, timeout: float) -> tuple[bytes, Any]:
    """The receive fast paths' case of a non-blocking socket or a timeout beyond one poll.

    ``sock._wait_for_datagram`` does it all, in several polls if need be.
    """
    if not timeout:
        return sock._wait_for_datagram(end.assoc, _MSG_DONTWAIT, -1, True, None)[:2]
    return _wait_on(sock, end, _monotonic() + timeout)


def _wait_on(sock: UDPSocksSocket, end: _Endpoint, deadline: float | None) -> tuple[bytes, Any]:
    """``(payload, source)`` of the next valid datagram by ``deadline`` (the full path)."""
    return sock._wait_for_datagram(end.assoc, _MSG_DONTWAIT, -1, False, deadline)[:2]


def _received(
    sock: UDPSocksSocket, end: _Endpoint, data: bytes, source: Any, deadline: float | None
) -> tuple[bytes, Any]:
    """The rest of the fast receive path for a datagram read but not accepted there.

    First the association's known headers (and that header becomes the one
    accepted last), then ``sock._accept_datagram``; for a datagram to drop,
    the wait goes on until ``deadline``.
    """
    if source == end.relay and not end.pieces:
        hit = _lookup_udp_datagram(data, end.sources)
        if hit is not None:
            (host, port, address), payload = hit
            peer = end.share.peer
            if peer is None or (
                port == peer.filter_port and (peer.filter_host is None or host == peer.filter_host)
            ):
                size = len(data) - len(payload)
                end.last = (data[:size], size, address, peer)
                return payload, address
    elif source is None:
        return b"", None  # shut down for reading, as a plain socket says
    result = sock._accept_datagram(end.assoc, data, source)
    if result is not None:
        return result
    return _wait_on(sock, end, deadline)


#: The largest token socks5client.auth.gssapi puts in a frame.
_MAX_GSS_TOKEN = 65531


def _unsealed(protection: Protection, data: bytes) -> bytes | None:
    """The datagram inside one ``01 03 LEN TOKEN`` frame; None for one to drop."""
    if len(data) < 4 or data[0] != _codec.GSSAPI_VERSION or data[1] != 3:
        return None
    if len(data) != 4 + ((data[2] << 8) | data[3]):
        return None
    try:
        return protection.unwrap(data[4:])
    except ProxyProtocolError:
        return None  # failed verification: dropped like any malformed datagram


def _writable(buffer: Any, what: str) -> memoryview:
    view = memoryview(buffer).cast("B")
    if view.readonly:
        raise TypeError(f"{what}() argument must be read-write bytes-like object")
    return view


def _into(buffer: Any, nbytes: int, what: str, too_big: str) -> tuple[memoryview, int]:
    """The view and byte limit for a ``*_into`` call, checked as a plain socket checks them."""
    view = _writable(buffer, what)
    nbytes = _c_int(nbytes)
    if nbytes < 0:
        raise ValueError(f"negative buffersize in {what}")
    if nbytes == 0:
        return view, len(view)
    if nbytes > len(view):
        raise ValueError(too_big)
    return view, nbytes


def _fill(view: memoryview, limit: int, data: bytes, flags: int) -> int:
    """Copy what fits; the count a plain socket returns (the full size with MSG_TRUNC)."""
    n = min(len(data), limit)
    view[:n] = data[:n]
    return len(data) if flags & _MSG_TRUNC else n
