"""The UDP variant of socksocket: UDP ASSOCIATE and the RFC 1928 datagram header.

``socksocket(type=SOCK_DGRAM)`` becomes a :class:`UDPSocksSocket`.  With a
proxy set, its first ``bind``, ``connect``, ``sendto`` or ``recvfrom`` (or an
explicit :meth:`UDPSocksSocket.associate`) opens a TCP *control connection*
to the proxy and asks for a UDP association; the proxy answers with the
address of its *relay*.  From then on every datagram goes to the relay with
a header naming its real destination, and every datagram from the relay
carries a header naming its real source, which ``recvfrom`` returns.

The association lives as long as the control connection (RFC 1928 section
7), so that connection is watched: once the proxy closes it, every UDP
operation raises :class:`~socks5client.errors.UDPAssociationClosedError`.

Receiving is strict: a datagram that does not come from the relay, whose
header is malformed, or (after ``connect``) that comes from another remote,
is dropped silently and the call keeps waiting within its timeout -- the
same thing a plain UDP socket's caller would see for a lost datagram.
Fragments (FRAG != 0) are reassembled as the RFC describes; outgoing
datagrams are never fragmented.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import time
import weakref
from typing import Any

from . import _codec, _negotiate
from ._codec import AddressType, Command
from ._negotiate import PlainSocket
from .errors import GeneralProxyError, ProxyProtocolError, UDPAssociationClosedError
from .proxy import Proxy
from .sock import _split_address as _split
from .sock import socksocket

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
# Plain ints: the socket module's MSG_* are IntFlag members, and a bitwise
# operation on those costs more than the rest of a datagram's bookkeeping.
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_MSG_PEEK = int(socket.MSG_PEEK)

Sockaddr = tuple[Any, ...]


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


def _sockaddr(atyp: AddressType, host: str, port: int) -> Sockaddr:
    """An address as ``recvfrom`` returns it: IPv6 as a 4-tuple, like AF_INET6 sockets."""
    if atyp == AddressType.IPV6:
        return (host, port, 0, 0)
    return (host, port)


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return a.lower() == b.lower()


class _Association:
    """The state of one UDP association: control connection, relay, reassembly."""

    def __init__(self, control: socket.socket, proxy: Proxy, relay: Sockaddr) -> None:
        self.control = control
        self.proxy = proxy
        self.relay = relay
        self.relay_key = (str(relay[0]), int(relay[1]))
        self.reassembler = Reassembler()
        self.buffer = bytearray(_RECV_BUFFER)
        self.closed_by_proxy = False
        # poll(2) objects made once: one on the control connection, for the
        # liveness check before each send; one on both sockets, for receiving.
        self.control_fd = control.fileno()
        self.control_poll = select.poll()
        self.control_poll.register(self.control_fd, select.POLLIN)
        self.both_poll = select.poll()
        self.both_poll.register(self.control_fd, select.POLLIN)

    def check_alive(self) -> None:
        """Raise if the proxy has closed the control connection.

        One ``poll`` with no wait: the control connection is readable only
        when the proxy closed it (or, against the RFC, sent something).
        """
        if self.closed_by_proxy:
            raise self.ended_error()
        if self.control.fileno() == -1:
            raise UDPAssociationClosedError("the UDP association was closed")
        if self.control_poll.poll(0):
            self.read_control()

    def read_control(self) -> None:
        """Read the readable control connection; raise if the proxy closed it."""
        try:
            data = self.control.recv(4096, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.closed_by_proxy = True
            self.control.close()
            raise self.ended_error(exc) from exc
        if not data:
            self.closed_by_proxy = True
            self.control.close()
            raise self.ended_error()
        # RFC 1928 defines nothing the proxy may send here; ignore it.

    def ended_error(self, cause: OSError | None = None) -> UDPAssociationClosedError:
        where = _negotiate.describe(self.proxy.host, self.proxy.port)
        return UDPAssociationClosedError(
            f"the UDP association has ended: proxy {where} closed its control connection",
            cause,
        )


class UDPSocksSocket(socksocket):
    """A UDP socket whose datagrams leave from a SOCKS5 proxy's relay.

    Made by ``socksocket(family, SOCK_DGRAM)``; without a proxy it is a plain
    UDP socket.  ``getsockname()`` is the local address as usual;
    :meth:`get_proxy_sockname` is the relay's address.
    """

    _assoc: _Association | None = None
    _default_dest: tuple[str, int] | None = None
    _default_sockaddr: Sockaddr | None = None
    # (host, port) that replies must come from after connect(); host None
    # for a hostname destination.
    _peer_filter: tuple[str | None, int] | None = None
    _finalizer: weakref.finalize[Any, Any] | None = None
    # The last destination and its encoded header: most programs send to
    # one destination over and over.
    _header_cache: tuple[Any, bytes] = (None, b"")

    # -- the association ----------------------------------------------------

    def associate(self) -> None:
        """Open the UDP association now, if there is a proxy and none is open.

        Binds the socket first when it is not bound yet, so that the proxy is
        told the real address and port datagrams will come from.
        """
        if self._proxied():
            self._association()

    def _association(self, check: bool = True) -> _Association:
        assoc = self._assoc
        if assoc is not None:
            if check:
                assoc.check_alive()
            return assoc
        proxy = self.proxy
        assert proxy is not None
        if self.getsockname()[1] == 0:
            wildcard = "::" if self.family == socket.AF_INET6 else "0.0.0.0"
            PlainSocket.bind(self, (wildcard, 0))
        local_host, local_port = self.getsockname()[:2]
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
            _, reply = _negotiate.handshake(
                control, proxy, self._handshake_timeout(), request, f"UDP ASSOCIATE via {where}"
            )
            relay = self._relay_address(control, reply)
        except BaseException:
            control.close()
            raise
        PlainSocket.settimeout(control, None)
        assoc = _Association(control, proxy, relay)
        assoc.both_poll.register(self.fileno(), select.POLLIN)
        self._assoc = assoc
        # Garbage collection of this socket must close the control connection
        # too, quietly: it is ours, not the user's, to leak.
        self._finalizer = weakref.finalize(self, control.close)
        return assoc

    def _relay_address(self, control: socket.socket, reply: _codec.Reply) -> Sockaddr:
        host = reply.host
        if reply.atyp == AddressType.DOMAIN:
            try:
                infos = socket.getaddrinfo(host, reply.port, self.family, socket.SOCK_DGRAM)
            except socket.gaierror as exc:
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
        return _sockaddr(
            AddressType.IPV6 if ip_family == socket.AF_INET6 else AddressType.IPV4, host, reply.port
        )

    def _proxied(self) -> bool:
        """Whether datagrams go through a relay (an association exists or will)."""
        return self._assoc is not None or self.proxy is not None

    # -- socket API ----------------------------------------------------------

    def bind(self, address: Any) -> None:
        """Bind locally, then open the association from that address."""
        PlainSocket.bind(self, address)
        if self.proxy is not None:
            self._association()

    def connect(self, address: Any) -> None:
        """Set the default destination for :meth:`send` and filter replies by it."""
        if not self._proxied():
            super().connect(address)
            return
        host, port = _split(address)
        self._header_for(address)
        self._association()
        self._default_dest = (host, port)
        self._default_sockaddr = tuple(address)
        is_name = _codec.encode_host(host)[0] == AddressType.DOMAIN
        self._peer_filter = (None if is_name else host, port)

    def getpeername(self) -> Any:
        """The default destination set by :meth:`connect`."""
        if self._default_sockaddr is not None and self.fileno() != -1:
            return self._default_sockaddr
        return PlainSocket.getpeername(self)

    def get_proxy_sockname(self) -> tuple[str, int] | None:
        """The relay's address (where datagrams are sent), once associated."""
        if self._assoc is None:
            return None
        return self._assoc.relay_key

    def get_proxy_peername(self) -> Any:
        """The proxy's address at the other end of the control connection."""
        if self._assoc is None:
            raise OSError(errno.ENOTCONN, "no UDP association yet")
        if self._assoc.closed_by_proxy:
            raise self._assoc.ended_error()
        return self._assoc.control.getpeername()

    def _wire_destination(self, host: str, port: int) -> tuple[str, int]:
        proxy = self._assoc.proxy if self._assoc is not None else self.proxy
        if (
            proxy is not None
            and not proxy.remote_dns
            and (_codec.encode_host(host)[0] == AddressType.DOMAIN)
        ):
            host = str(socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][4][0])
        return host, port

    def _header_for(self, address: Any) -> bytes:
        """The UDP header for ``address``; the last one is cached."""
        host, port = _split(address)
        key = (host, port)
        cached_key, header = self._header_cache
        if cached_key != key:
            header = _codec.encode_udp_header(*self._wire_destination(host, port))
            self._header_cache = (key, header)
        return header

    def sendto(self, data: Any, *args: Any) -> int:
        """Send ``data`` to an address through the relay; return the payload size."""
        if not self._proxied():
            return PlainSocket.sendto(self, data, *args)
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            flags, address = args
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        # The header first: a bad destination is refused before the
        # association (and the proxy) is involved.
        header = self._header_for(address)
        assoc = self._association()
        payload = memoryview(data).cast("B")
        PlainSocket.sendto(self, header + payload, flags, assoc.relay)
        return len(payload)

    def send(self, data: Any, flags: int = 0) -> int:
        """Send to the default destination set by :meth:`connect`."""
        if not self._proxied():
            return PlainSocket.send(self, data, flags)
        if self._default_dest is None:
            raise OSError(errno.EDESTADDRREQ, os.strerror(errno.EDESTADDRREQ))
        return self.sendto(data, flags, self._default_dest)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Refused through a proxy: datagrams are sent whole with :meth:`send`."""
        if not self._proxied():
            PlainSocket.sendall(self, data, flags)
            return
        raise OSError(errno.EOPNOTSUPP, "sendall() is not for datagrams; use send() or sendto()")

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        """Receive one datagram's payload (truncated to ``bufsize``) and its real source."""
        if not self._proxied():
            return PlainSocket.recvfrom(self, bufsize, flags)
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        data, address = self._receive(flags)
        return data[:bufsize], address

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive one datagram's payload."""
        if not self._proxied():
            return PlainSocket.recv(self, bufsize, flags)
        return self.recvfrom(bufsize, flags)[0]

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """Receive one datagram's payload into ``buffer``; return its size and source."""
        if not self._proxied():
            return PlainSocket.recvfrom_into(self, buffer, nbytes, flags)
        view = memoryview(buffer).cast("B")
        limit = len(view) if nbytes == 0 else min(nbytes, len(view))
        data, address = self._receive(flags)
        n = min(len(data), limit)
        view[:n] = data[:n]
        return n, address

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive one datagram's payload into ``buffer``; return its size."""
        if not self._proxied():
            return PlainSocket.recv_into(self, buffer, nbytes, flags)
        return self.recvfrom_into(buffer, nbytes, flags)[0]

    def _receive(self, flags: int) -> tuple[bytes, Sockaddr]:
        if flags & _MSG_PEEK:
            raise OSError(errno.EOPNOTSUPP, "MSG_PEEK is not supported through a SOCKS5 relay")
        assoc = self._association(check=False)  # the poll below watches it
        timeout = self.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        udp_fd, control_fd = self.fileno(), assoc.control_fd
        while True:
            if assoc.closed_by_proxy:
                raise assoc.ended_error()
            left = None if deadline is None else deadline - time.monotonic()
            wait_ms = None if left is None else max(0, int(left * 1000 + 0.999))
            ready = dict(assoc.both_poll.poll(wait_ms))
            if control_fd in ready:
                assoc.read_control()
            if udp_fd not in ready:
                if control_fd in ready:
                    continue
                if timeout == 0.0:
                    raise BlockingIOError(errno.EAGAIN, "no datagram is waiting")
                raise socket.timeout("timed out")
            try:
                n, source = PlainSocket.recvfrom_into(self, assoc.buffer, 0, flags | _MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            result = self._accept_datagram(assoc, n, source)
            if result is not None:
                return result

    def _accept_datagram(
        self, assoc: _Association, n: int, source: Sockaddr
    ) -> tuple[bytes, Sockaddr] | None:
        """The payload and source of a valid datagram; None for one to drop."""
        relay_host, relay_port = assoc.relay_key
        if source[1] != relay_port or (
            source[0] != relay_host and not _same_host(str(source[0]), relay_host)
        ):
            return None
        try:
            dgram = _codec.parse_udp_datagram(memoryview(assoc.buffer)[:n])
        except ProxyProtocolError:
            return None
        if dgram.frag == 0 and not assoc.reassembler.pending:
            atyp, host, port, data = dgram.atyp, dgram.host, dgram.port, dgram.data
        else:
            complete = assoc.reassembler.push(dgram, time.monotonic())
            if complete is None:
                return None
            atyp, host, port, data = complete
        if self._peer_filter is not None:
            want_host, want_port = self._peer_filter
            if port != want_port:
                return None
            # A hostname destination is resolved by the proxy, so only its
            # port can be checked without a local DNS query (want_host None).
            if want_host is not None and host != want_host and not _same_host(host, want_host):
                return None
        return data, _sockaddr(atyp, host, port)

    # -- buffer sizes ----------------------------------------------------------

    def header_overhead(self, address: tuple[str, int] | None = None) -> int:
        """Bytes the SOCKS5 header takes per datagram.

        For ``address``, the exact figure; without one, the worst case this
        socket can send: a 255-byte domain name (262) when the proxy resolves
        names, else an IPv6 address (22; RFC 1928 says 20, but RSV, FRAG,
        ATYP, 16 address bytes and the port add up to 22).  No supported
        authentication method adds per-datagram overhead.
        """
        if address is not None:
            host, port = _split(address)
            return len(_codec.encode_udp_header(*self._wire_destination(host, port)))
        proxy = self._assoc.proxy if self._assoc is not None else self.proxy
        if proxy is None:
            return 0
        if proxy.remote_dns:
            return _codec.udp_header_size(AddressType.DOMAIN)
        return _codec.udp_header_size(AddressType.IPV6)

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
        """Close the UDP socket and the association's control connection."""
        if self._finalizer is not None:
            self._finalizer()
        super().close()
