"""No datagram around the relay, one deadline, plain-socket semantics (UDP).

Regression tests for the UDP variant against the reference server on
loopback.  Each one names a way a proxied UDP socksocket could let a
datagram leave (or arrive) around the proxy's relay, block past its
deadline, or differ from a plain UDP socket where SOCKS forces no
difference: ``sendmsg``/``recvmsg``, ``dup``, ``detach``, subclasses,
``MSG_DONTWAIT``, the association's deadline, threads, the ``*_into``
argument checks and AF_INET6 address shapes.

"Through the relay" is checked on both sides: the reference server's
association recorded the datagram, and the UDP echo server heard it from
the relay, never from the client's own port.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import select
import socket
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import socks5client
import socks5client.sock
from socks5client import _negotiate, errors
from socks5client.udp import UDPSocksSocket

from conftest import FdCounter
from server import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    CMD_UDP_ASSOCIATE,
    Datagram,
    SocksServer,
    UDPAssociation,
    UDPEchoServer,
    encode_reply,
    encode_udp_datagram,
    read_greeting,
    read_request,
)

#: Socket timeout for calls that should succeed.
TIMEOUT = 2.0
#: Socket timeout for calls that must time out.
SHORT = 0.4
#: How late after its deadline a call may give up.
MARGIN = 0.25
#: How long a call that must not wait may take.
AT_ONCE = 0.3

#: A remote named in injected datagrams: loopback, with nothing listening.
REMOTE = ("127.0.0.9", 5300)

ScriptedServer = Callable[..., SocksServer]
MakeUDP = Callable[..., UDPSocksSocket]
PlainSocket = socket.socket
# Linux's value; the socket module does not name it.
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)


def _url(server: SocksServer) -> str:
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    return f"socks5h://{shown}:{port}"


def _dgram(data: bytes, source: tuple[str, int] = REMOTE, frag: int = 0) -> bytes:
    """A datagram as the relay sends it: a header naming ``source``, then ``data``."""
    return encode_udp_datagram(frag, ATYP_IPV4, source[0], source[1], data)


def _heard_from_relay(echo: UDPEchoServer, sock: socket.socket) -> None:
    """Everything the echo server heard came from the relay, none from ``sock`` itself."""
    ours = sock.getsockname()[1]
    sources = [source for _, source in echo.received]
    assert sources, "the echo server heard nothing"
    assert all(port != ours for _, port in sources), (sources, ours)


def _control_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Warnings about an unclosed TCP socket (a control connection)."""
    texts = [str(w.message) for w in caught]
    return [t for t in texts if re.search(r"type=(1|SocketKind\.SOCK_STREAM)\b", t)]


def _bounded(call: Callable[[], Any], limit: float, unblock: Callable[[], None]) -> Any:
    """``call()``'s result (or exception, returned), failing if it blocks past ``limit``.

    A call that blocks is woken with ``unblock`` so that the test ends
    instead of hanging the run.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # the caller inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        unblock()
        thread.join(TIMEOUT)
        pytest.fail(f"the call was still blocked after {limit} s")
    return outcome[0]


def _answering_with_relay_of(
    relay: Callable[[], socket.socket], delay: float = 0.0
) -> Callable[[socket.socket, SocksServer], None]:
    """A proxy script that answers UDP ASSOCIATE (after ``delay``) with ``relay()``'s address."""

    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn, server.record_for(conn))
        time.sleep(delay)
        conn.sendall(encode_reply(0, ATYP_IPV4, "127.0.0.1", relay().getsockname()[1]))
        conn.settimeout(10.0)
        while conn.recv(4096):
            pass

    return script


def _test_relay(make_udp: MakeUDP) -> socket.socket:
    """A plain UDP socket on loopback standing for the relay, closed at teardown.

    Made after the first ``make_udp`` socket, so the fd count covers it.
    """
    relay: socket.socket = make_udp.track(  # type: ignore[attr-defined]
        PlainSocket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    relay.bind(("127.0.0.1", 0))
    relay.settimeout(TIMEOUT)
    return relay


def _silent_after_request(conn: socket.socket, server: SocksServer) -> None:
    """A proxy that takes the UDP ASSOCIATE request and never answers it."""
    read_greeting(conn)
    conn.sendall(b"\x05\x00")
    read_request(conn, server.record_for(conn))
    conn.settimeout(10.0)
    while conn.recv(4096):
        pass


@pytest.fixture
def make_udp(fd_count: FdCounter) -> Iterator[MakeUDP]:
    """``make_udp(server, family=AF_INET, timeout=TIMEOUT)``: a UDP socksocket via ``server``.

    Everything made (and everything passed to ``make_udp.track``) is closed
    at teardown, and the process must then have the descriptors it had
    before the first one.  List it after the server fixtures.
    """
    made: list[socket.socket] = []
    baseline: list[int] = []

    def make(
        server: SocksServer, family: int = socket.AF_INET, timeout: float | None = TIMEOUT
    ) -> UDPSocksSocket:
        if not baseline:
            baseline.append(fd_count())
        sock = socks5client.socksocket(family, socket.SOCK_DGRAM)
        assert isinstance(sock, UDPSocksSocket)
        made.append(sock)
        sock.set_proxy(_url(server))
        sock.settimeout(timeout)
        return sock

    def track(sock: socket.socket) -> Any:
        made.append(sock)
        return sock

    make.track = track  # type: ignore[attr-defined]
    yield make
    for sock in made:
        sock.close()
    if baseline:
        assert fd_count.settle(baseline[0]) == baseline[0]


@pytest.fixture
def associated(
    socks_server: SocksServer, make_udp: MakeUDP
) -> tuple[UDPSocksSocket, UDPAssociation]:
    """A UDP socksocket with its association open, and the server's side of it."""
    sock = make_udp(socks_server)
    sock.associate()
    return sock, socks_server.wait_for_association()


# --------------------------------------------------------------------------
# 1. sendmsg, recvmsg and recvmsg_into go through the relay.
# --------------------------------------------------------------------------


def test_sendmsg_and_recvmsg_go_through_the_relay(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    echo = udp_echo_server.address
    assert sock.sendmsg([b"scat", memoryview(b"ter")], [], 0, echo) == 7
    assert sock.recvmsg(100) == (b"scatter", [], 0, echo)
    assoc = socks_server.wait_for_association()
    assert assoc.received == [Datagram(0, ATYP_IPV4, echo[0], echo[1], b"scatter")]
    _heard_from_relay(udp_echo_server, sock)


def test_sendmsg_without_address_needs_connect(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    with pytest.raises(OSError) as info:
        sock.sendmsg([b"where to?"])
    assert info.value.errno == errno.EDESTADDRREQ
    assert socks_server.connections == 0
    sock.connect(udp_echo_server.address)
    assert sock.sendmsg([b"to the ", b"peer"]) == 11
    assert sock.sendmsg([b"explicit"], [], 0, None) == 8
    assert sock.recv(100) == b"to the peer"
    assert sock.recv(100) == b"explicit"
    _heard_from_relay(udp_echo_server, sock)


def test_sendmsg_passes_ancillary_data_and_writes_the_header(
    scripted_server: ScriptedServer, make_udp: MakeUDP
) -> None:
    # The test owns the "relay": it reads what the client sends, with its
    # ancillary data.
    server = scripted_server(_answering_with_relay_of(lambda: relay))
    sock = make_udp(server)
    relay = _test_relay(make_udp)
    relay.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    ttl = [(socket.IPPROTO_IP, socket.IP_TTL, struct.pack("i", 7))]
    assert sock.sendmsg([b"ttl ", b"seven"], ttl, 0, REMOTE) == 9
    data, ancdata, _, source = relay.recvmsg(100, socket.CMSG_SPACE(4))
    assert data == _dgram(b"ttl seven")
    assert source[1] == sock.getsockname()[1]
    assert [(lvl, kind, struct.unpack("i", d)[0]) for lvl, kind, d in ancdata] == [
        (socket.IPPROTO_IP, socket.IP_TTL, 7)
    ]


def test_recvmsg_returns_the_accepted_datagrams_ancillary_data(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    # IP_RECVTOS is 13 on Linux; the socket module names it from 3.10 on.
    sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTOS", 13), 1)
    relay = assoc.relay
    # Junk from the relay and from a stranger, each with its own TOS, then
    # the valid datagram with another: only the last one's TOS may show.
    relay.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x28)
    assoc.send_to_client(b"\x00\x00\x00\x09junk")
    assoc.send_from_foreign(_dgram(b"forged"))
    relay.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x48)
    assoc.send_to_client(_dgram(b"valid"))
    relay.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0)
    data, ancdata, flags, source = sock.recvmsg(100, socket.CMSG_SPACE(1))
    assert (data, flags, source) == (b"valid", 0, REMOTE)
    assert ancdata == [(socket.IPPROTO_IP, socket.IP_TOS, b"\x48")]


def test_recvmsg_sets_msg_trunc_when_the_payload_is_cut(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    assoc.send_to_client(_dgram(b"0123456789"))
    assoc.send_to_client(_dgram(b"fits"))
    assert sock.recvmsg(4) == (b"0123", [], socket.MSG_TRUNC, REMOTE)
    assert sock.recvmsg(4) == (b"fits", [], 0, REMOTE)


def test_recvmsg_into_scatters_the_payload(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    assoc.send_to_client(_dgram(b"abcdefgh"))
    assoc.send_to_client(_dgram(b"0123456789"))
    first, second = bytearray(3), bytearray(6)
    assert sock.recvmsg_into([first, second]) == (8, [], 0, REMOTE)
    assert (bytes(first), bytes(second[:5])) == (b"abc", b"defgh")
    assert sock.recvmsg_into([first, second]) == (9, [], socket.MSG_TRUNC, REMOTE)
    assert bytes(first + second) == b"012345678"


def test_recvmsg_drops_what_recvfrom_drops(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.settimeout(SHORT)
    assoc.send_from_foreign(_dgram(b"forged"))
    assoc.send_to_client(b"\x00\x00\x00")
    assoc.send_to_client(_dgram(b"ab", frag=1))
    assoc.send_to_client(_dgram(b"cd", frag=0x82))
    assert sock.recvmsg(100) == (b"abcd", [], 0, REMOTE)
    with pytest.raises(socket.timeout):
        sock.recvmsg(100)


def test_sendmsg_and_recvmsg_without_a_proxy_are_plain() -> None:
    with (
        socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        PlainSocket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
    ):
        sock.set_proxy()
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(TIMEOUT)
        sock.settimeout(TIMEOUT)
        assert sock.sendmsg([b"plain"], [], 0, peer.getsockname()) == 5
        data, source = peer.recvfrom(100)
        assert (data, source[1]) == (b"plain", sock.getsockname()[1])
        peer.sendto(b"back", source)
        assert sock.recvmsg(100)[0] == b"back"


# --------------------------------------------------------------------------
# 2. dup(): one kernel socket, one association.
# --------------------------------------------------------------------------


def test_dup_shares_the_association_until_the_last_close(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    echo = udp_echo_server.address
    first = make_udp(socks_server)
    first.sendto(b"one", echo)
    assert first.recvfrom(100) == (b"one", echo)
    second = make_udp.track(first.dup())  # type: ignore[attr-defined]
    assert isinstance(second, UDPSocksSocket)
    assert second.getsockname() == first.getsockname()
    assert second.get_proxy_sockname() == first.get_proxy_sockname()
    second.sendto(b"two", echo)
    assert second.recvfrom(100) == (b"two", echo)
    assoc = socks_server.wait_for_association()
    first.close()
    # The dup still holds the association: its control connection is open.
    assert not assoc.closed.wait(0.3)
    second.sendto(b"three", echo)
    assert second.recv(100) == b"three"
    assert [d.data for d in assoc.received] == [b"one", b"two", b"three"]
    assert socks_server.connections == 1
    _heard_from_relay(udp_echo_server, second)
    second.close()
    assert assoc.closed.wait(TIMEOUT)


def test_dup_before_the_association_shares_the_first_one_opened(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    echo = udp_echo_server.address
    first = make_udp(socks_server)
    second = make_udp.track(first.dup())  # type: ignore[attr-defined]
    assert socks_server.connections == 0
    second.sendto(b"from the dup", echo)
    assert second.recv(100) == b"from the dup"
    first.sendto(b"from the original", echo)
    assert first.recv(100) == b"from the original"
    assert [r.command for r in socks_server.records] == [CMD_UDP_ASSOCIATE]
    assert first.get_proxy_sockname() == second.get_proxy_sockname()
    _heard_from_relay(udp_echo_server, first)


def test_dup_of_a_connected_socket_keeps_the_destination_and_its_filter(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    echo = udp_echo_server.address
    first = make_udp(socks_server)
    first.connect(echo)
    second = make_udp.track(first.dup())  # type: ignore[attr-defined]
    assert second.getpeername() == echo
    assert second.send(b"peer") == 4
    assoc = socks_server.wait_for_association()
    assoc.send_to_client(_dgram(b"not the peer"))
    assert second.recv(100) == b"peer"
    second.settimeout(SHORT)
    with pytest.raises(socket.timeout):
        second.recv(100)


def test_dup_polls_its_own_descriptor(
    associated: tuple[UDPSocksSocket, UDPAssociation], make_udp: MakeUDP
) -> None:
    first, assoc = associated
    second = make_udp.track(first.dup())  # type: ignore[attr-defined]
    first.close()
    # A busy socket likely takes the closed descriptor's number: whatever
    # waits on the old number would see it readable.
    squatter = make_udp.track(PlainSocket(socket.AF_INET, socket.SOCK_DGRAM))
    squatter.bind(("127.0.0.1", 0))
    squatter.sendto(b"noise", squatter.getsockname())
    second.settimeout(SHORT)
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        second.recvfrom(100)
    assert time.monotonic() - started >= SHORT * 0.9
    assoc.send_to_client(_dgram(b"for the dup"))
    second.settimeout(TIMEOUT)
    assert second.recvfrom(100) == (b"for the dup", REMOTE)


def test_dups_collected_without_close_end_the_association_quietly(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, fd_count: FdCounter
) -> None:
    before = fd_count()
    first = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    first.set_proxy(_url(socks_server))
    first.settimeout(TIMEOUT)
    first.sendto(b"x", udp_echo_server.address)
    assert first.recv(10) == b"x"
    assoc = socks_server.wait_for_association()
    second = first.dup()
    third = second.dup()

    def collect() -> None:
        gc.collect()
        # A recorded warning keeps its source (a UDP socket) alive.
        for message in caught:
            message.source = None
        gc.collect()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del first, second
        collect()
        assert not assoc.closed.wait(0.2)
        del third
        collect()
    assert _control_warnings(caught) == []
    assert assoc.closed.wait(TIMEOUT)
    assert fd_count.settle(before) == before


def test_socket_made_from_a_duplicated_descriptor_joins_the_association(
    associated: tuple[UDPSocksSocket, UDPAssociation],
    udp_echo_server: UDPEchoServer,
    make_udp: MakeUDP,
) -> None:
    # What socket.fromfd does under global patching: a new object on a
    # duplicate of the descriptor.  Even without a proxy of its own, its
    # datagrams must use the association that owns the port.
    first, assoc = associated
    other = make_udp.track(  # type: ignore[attr-defined]
        socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM, fileno=os.dup(first.fileno()))
    )
    other.set_proxy()
    other.settimeout(TIMEOUT)
    other.sendto(b"fromfd", udp_echo_server.address)
    assert other.recvfrom(100) == (b"fromfd", udp_echo_server.address)
    assert [d.data for d in assoc.received] == [b"fromfd"]
    _heard_from_relay(udp_echo_server, other)


# --------------------------------------------------------------------------
# 3. detach() and set_inheritable(): no plain owner of a proxied descriptor.
# --------------------------------------------------------------------------


def test_detach_before_the_association_is_refused_and_leaks_nothing(
    socks_server: SocksServer, fd_count: FdCounter
) -> None:
    before = fd_count()
    sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.set_proxy(_url(socks_server))
    with pytest.raises(OSError) as info:
        sock.detach()
    assert info.value.errno == errno.EOPNOTSUPP
    assert sock.fileno() == -1
    sock.close()
    assert fd_count.settle(before) == before
    assert socks_server.connections == 0


def test_detach_with_only_a_default_proxy_is_refused(
    socks_server: SocksServer, fd_count: FdCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = fd_count()
    monkeypatch.setattr(socks5client.sock, "get_default_proxy", lambda: _proxy(socks_server))
    sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError) as info:
        sock.detach()
    assert info.value.errno == errno.EOPNOTSUPP
    sock.close()
    assert fd_count.settle(before) == before


def test_detach_of_an_associated_socket_is_refused_and_ends_the_association(
    socks_server: SocksServer, fd_count: FdCounter
) -> None:
    before = fd_count()
    sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.set_proxy(_url(socks_server))
    sock.settimeout(TIMEOUT)
    sock.associate()
    assoc = socks_server.wait_for_association()
    sock.set_proxy()  # the association alone must be enough to refuse
    with pytest.raises(OSError) as info:
        sock.detach()
    assert info.value.errno == errno.EOPNOTSUPP
    assert assoc.closed.wait(TIMEOUT)
    sock.close()
    assert fd_count.settle(before) == before


def test_detach_of_one_dup_leaves_the_other_working(
    associated: tuple[UDPSocksSocket, UDPAssociation], make_udp: MakeUDP
) -> None:
    first, assoc = associated
    second = make_udp.track(first.dup())  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        second.detach()
    assert second.fileno() == -1
    assert not assoc.closed.wait(0.2)
    assoc.send_to_client(_dgram(b"still here"))
    assert first.recvfrom(100) == (b"still here", REMOTE)


def test_detach_without_a_proxy_is_plain() -> None:
    sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.set_proxy()
    fd = sock.detach()
    assert fd >= 0
    os.close(fd)


def test_set_inheritable_is_refused_through_a_proxy(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, _ = associated
    with pytest.raises(OSError) as info:
        sock.set_inheritable(True)
    assert info.value.errno == errno.EOPNOTSUPP
    assert not sock.get_inheritable()
    sock.set_inheritable(False)
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.set_proxy()
        plain.set_inheritable(True)
        assert plain.get_inheritable()


# --------------------------------------------------------------------------
# 4. Subclasses of socksocket made with SOCK_DGRAM.
# --------------------------------------------------------------------------


class _Recording(socks5client.socksocket):
    """A user's subclass that overrides sendto and calls super()."""

    sent: list[bytes]

    def sendto(self, data: Any, *args: Any) -> int:
        self.sent = [*getattr(self, "sent", []), bytes(data)]
        return super().sendto(data, *args)


def test_subclass_with_sock_dgram_goes_through_the_relay(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp.track(_Recording(socket.AF_INET, socket.SOCK_DGRAM))  # type: ignore[attr-defined]
    assert isinstance(sock, _Recording)
    assert isinstance(sock, UDPSocksSocket)
    sock.set_proxy(_url(socks_server))
    sock.settimeout(TIMEOUT)
    echo = udp_echo_server.address
    assert sock.sendto(b"sub", echo) == 3
    assert sock.sent == [b"sub"]
    assert sock.recvfrom(100) == (b"sub", echo)
    assoc = socks_server.wait_for_association()
    assert [d.data for d in assoc.received] == [b"sub"]
    _heard_from_relay(udp_echo_server, sock)
    twin = make_udp.track(sock.dup())  # type: ignore[attr-defined]
    assert isinstance(twin, _Recording)
    twin.sendto(b"twin", echo)
    assert twin.recv(100) == b"twin"
    assert socks_server.connections == 1


# --------------------------------------------------------------------------
# 5. MSG_DONTWAIT on a blocking socket does not wait.
# --------------------------------------------------------------------------

_RECEIVES: dict[str, Callable[[socket.socket, int], Any]] = {
    "recv": lambda s, f: s.recv(100, f),
    "recvfrom": lambda s, f: s.recvfrom(100, f),
    "recv_into": lambda s, f: s.recv_into(bytearray(100), 0, f),
    "recvfrom_into": lambda s, f: s.recvfrom_into(bytearray(100), 0, f),
    "recvmsg": lambda s, f: s.recvmsg(100, 0, f),
    "recvmsg_into": lambda s, f: s.recvmsg_into([bytearray(100)], 0, f),
}


@pytest.mark.parametrize("name", list(_RECEIVES))
def test_msg_dontwait_on_a_blocking_socket_raises_at_once(
    associated: tuple[UDPSocksSocket, UDPAssociation], name: str
) -> None:
    sock, assoc = associated
    receive = _RECEIVES[name]
    sock.settimeout(None)
    # Only junk is queued: nothing to return, so nothing to wait for either.
    assoc.send_to_client(b"\x00\x00\x00\x09junk")
    assoc.send_from_foreign(_dgram(b"forged"))
    time.sleep(0.05)
    started = time.monotonic()
    outcome = _bounded(
        lambda: receive(sock, socket.MSG_DONTWAIT),
        AT_ONCE * 3,
        lambda: assoc.send_to_client(_dgram(b"wake up")),
    )
    assert isinstance(outcome, BlockingIOError), outcome
    assert time.monotonic() - started < AT_ONCE
    assert sock.gettimeout() is None
    assoc.send_to_client(_dgram(b"queued"))
    assert select.select([sock], [], [], TIMEOUT)[0]
    outcome = receive(sock, socket.MSG_DONTWAIT)
    assert outcome is not None


def test_msg_dontwait_before_the_association_opens_it_and_does_not_wait(
    socks_server: SocksServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server, timeout=None)
    outcome = _bounded(lambda: sock.recvfrom(100, socket.MSG_DONTWAIT), TIMEOUT, lambda: None)
    assert isinstance(outcome, BlockingIOError), outcome
    socks_server.wait_for_association(timeout=0.5)


# --------------------------------------------------------------------------
# 6. One deadline per call, the association's handshake included.
# --------------------------------------------------------------------------


def test_recvfrom_deadline_covers_the_association_handshake(
    scripted_server: ScriptedServer, make_udp: MakeUDP
) -> None:
    delay, timeout = 0.4, 0.6
    server = scripted_server(_answering_with_relay_of(lambda: relay, delay=delay))
    sock = make_udp(server, timeout=timeout)
    relay = _test_relay(make_udp)
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        sock.recvfrom(100)
    elapsed = time.monotonic() - started
    # One deadline: the handshake's 0.4 s count against the 0.6 s.
    assert timeout * 0.9 <= elapsed < timeout + MARGIN
    assert sock.get_proxy_sockname() == relay.getsockname()


@pytest.mark.parametrize("flags", [0, socket.MSG_DONTWAIT], ids=["non-blocking", "dontwait"])
def test_a_call_that_must_not_wait_bounds_the_handshake(
    scripted_server: ScriptedServer,
    make_udp: MakeUDP,
    monkeypatch: pytest.MonkeyPatch,
    flags: int,
) -> None:
    monkeypatch.setattr(_negotiate, "NONBLOCKING_HANDSHAKE_TIMEOUT", SHORT)
    server = scripted_server(_silent_after_request)
    sock = make_udp(server, timeout=0.0 if flags == 0 else None)
    started = time.monotonic()
    outcome = _bounded(lambda: sock.recvfrom(100, flags), SHORT + 2, sock.close)
    assert isinstance(outcome, errors.ProxyTimeoutError), outcome
    assert time.monotonic() - started < SHORT + MARGIN
    assert sock.gettimeout() == (0.0 if flags == 0 else None)


def test_default_timeout_zero_does_not_break_the_association(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0)
    try:
        sock = make_udp(socks_server, timeout=0.0)
        sock.sendto(b"nb", udp_echo_server.address)
        assert select.select([sock], [], [], TIMEOUT)[0]
        assert sock.recvfrom(100) == (b"nb", udp_echo_server.address)
        blocking = make_udp(socks_server, timeout=TIMEOUT)
        blocking.connect(udp_echo_server.address)
        blocking.send(b"b")
        assert blocking.recv(10) == b"b"
    finally:
        socket.setdefaulttimeout(previous)


# --------------------------------------------------------------------------
# 6b. Junk that keeps arriving does not stretch a receive past its deadline.
# --------------------------------------------------------------------------

#: More junk datagrams than a receive that must not wait reads (64), so that
#: some are left when it gives up.
JUNK = 100
#: A timeout shorter than one pass of the receive loop: the deadline has
#: passed by the time the first junk datagram has been dropped.
TINY = 1e-6
#: A source that is not the relay.
OTHER_REMOTE = ("127.0.0.8", 5300)


def _queue_junk(sock: UDPSocksSocket, assoc: UDPAssociation, kind: str, count: int) -> None:
    """Put ``count`` datagrams the receive filter drops in ``sock``'s queue.

    ``foreign``: from a socket that is not the relay; ``malformed``: from the
    relay, with a bad address type; ``other-remote``: from the relay, naming
    a remote other than the ``connect()`` destination.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    if kind == "other-remote":
        sock.connect(REMOTE)
    with PlainSocket(socket.AF_INET, socket.SOCK_DGRAM) as foreign:
        foreign.bind(("127.0.0.1", 0))
        for _ in range(count):
            if kind == "foreign":
                foreign.sendto(_dgram(b"forged"), sock.getsockname())
            elif kind == "malformed":
                assoc.send_to_client(b"\x00\x00\x00\x09junk")
            else:
                assoc.send_to_client(_dgram(b"not connected", OTHER_REMOTE))
    time.sleep(0.05)
    assert select.select([sock], [], [], TIMEOUT)[0]


def _datagrams_left(sock: UDPSocksSocket) -> int:
    """How many datagrams are still queued on ``sock`` (read and thrown away)."""
    # Non-blocking: with a timeout the C method would first wait that long.
    sock.setblocking(False)
    count = 0
    while True:
        try:
            PlainSocket.recvfrom(sock, 100, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return count
        count += 1


def _control_readable(sock: UDPSocksSocket) -> bool:
    """Whether data the proxy wrote on the control connection is still unread."""
    assert sock._assoc is not None
    return bool(select.select([sock._assoc.control], [], [], 0)[0])


@pytest.mark.parametrize("kind", ["foreign", "malformed", "other-remote"])
@pytest.mark.parametrize("name", list(_RECEIVES))
def test_a_receive_stops_at_its_deadline_between_dropped_datagrams(
    associated: tuple[UDPSocksSocket, UDPAssociation], name: str, kind: str
) -> None:
    sock, assoc = associated
    _queue_junk(sock, assoc, kind, JUNK)
    sock.settimeout(TINY)
    outcome = _bounded(
        lambda: _RECEIVES[name](sock, 0), AT_ONCE * 3, lambda: assoc.send_to_client(_dgram(b"x"))
    )
    assert isinstance(outcome, socket.timeout), outcome
    assert not isinstance(outcome, errors.ProxyError)
    # It gave up once its deadline had passed, not once the junk ran out:
    # junk arriving as fast as it is dropped would never run out.
    assert _datagrams_left(sock) >= JUNK - 3


@pytest.mark.parametrize("kind", ["foreign", "malformed", "other-remote"])
@pytest.mark.parametrize("flags", [0, socket.MSG_DONTWAIT], ids=["non-blocking", "dontwait"])
@pytest.mark.parametrize("name", list(_RECEIVES))
def test_a_receive_that_must_not_wait_reads_a_bounded_run_of_junk(
    associated: tuple[UDPSocksSocket, UDPAssociation], name: str, flags: int, kind: str
) -> None:
    sock, assoc = associated
    _queue_junk(sock, assoc, kind, JUNK)
    assoc.send_to_client(_dgram(b"behind the junk"))
    sock.settimeout(0.0 if flags == 0 else TIMEOUT)
    receive = _RECEIVES[name]
    started = time.monotonic()
    outcome = _bounded(lambda: receive(sock, flags), AT_ONCE * 3, lambda: None)
    # It gave up before the junk ran out (junk arriving as fast as it is
    # dropped would never run out), as the kernel's own "readable, then
    # EAGAIN" for a dropped datagram does...
    assert isinstance(outcome, BlockingIOError), outcome
    assert time.monotonic() - started < AT_ONCE
    # ...so a caller that sees the socket readable calls again and gets
    # the datagram behind the junk.
    assert select.select([sock], [], [], 0)[0]
    assert receive(sock, flags)  # the rest of the junk (36), then the datagram


def _fill_control(assoc: UDPAssociation, at_least: int) -> None:
    """Make the proxy write on the control connection, as much as it holds unread."""
    assoc.control.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    chunk = bytes(65536)
    written = 0
    while written < 4 << 20:
        try:
            written += assoc.control.send(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    assert written >= at_least, written
    time.sleep(0.05)


def test_a_receive_stops_at_its_deadline_while_the_proxy_writes_on_the_control_connection(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    # RFC 1928 gives the proxy nothing to send there: it is read and ignored.
    _fill_control(assoc, 65536)
    sock.settimeout(TINY)
    outcome = _bounded(lambda: sock.recvfrom(100), AT_ONCE * 3, lambda: None)
    assert isinstance(outcome, socket.timeout), outcome
    assert _control_readable(sock)


@pytest.mark.parametrize("flags", [0, socket.MSG_DONTWAIT], ids=["non-blocking", "dontwait"])
def test_a_receive_that_must_not_wait_reads_a_bounded_run_of_control_data(
    associated: tuple[UDPSocksSocket, UDPAssociation], flags: int
) -> None:
    sock, assoc = associated
    # More than 64 reads of 4096 bytes: what such a call reads at most.
    _fill_control(assoc, 2 * 64 * 4096)
    sock.settimeout(0.0 if flags == 0 else TIMEOUT)
    started = time.monotonic()
    outcome = _bounded(lambda: sock.recvfrom(100, flags), AT_ONCE * 3, lambda: None)
    assert isinstance(outcome, BlockingIOError), outcome
    assert time.monotonic() - started < AT_ONCE
    assert _control_readable(sock)
    sock.settimeout(TIMEOUT)
    assoc.send_to_client(_dgram(b"still associated"))
    assert sock.recvfrom(100) == (b"still associated", REMOTE)


# --------------------------------------------------------------------------
# 7. Threads: one association per socket, one proxy per call.
# --------------------------------------------------------------------------


def test_first_sendto_from_eight_threads_opens_one_association(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, fd_count: FdCounter
) -> None:
    before = fd_count()
    sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.set_proxy(_url(socks_server))
    sock.settimeout(TIMEOUT)
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def first_send(i: int) -> None:
        start.wait()
        try:
            sock.sendto(b"%d" % i, udp_echo_server.address)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=first_send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert failures == []
    assert [r.command for r in socks_server.records] == [CMD_UDP_ASSOCIATE]
    assoc = socks_server.wait_for_association()
    assert assoc.wait_until(lambda a: len(a.received) == 8)
    sock.close()
    assert assoc.closed.wait(TIMEOUT)
    assert fd_count.settle(before) == before


def test_threads_receiving_on_one_socket_at_once(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    got: list[Any] = []
    lock = threading.Lock()

    def receive() -> None:
        try:
            result: Any = sock.recvfrom(100)
        except BaseException as exc:
            result = exc
        with lock:
            got.append(result)

    threads = [threading.Thread(target=receive) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # all four are waiting
    for i in range(4):
        assoc.send_to_client(_dgram(b"%d" % i))
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert sorted(got) == [(b"%d" % i, REMOTE) for i in range(4)]


def _proxy(server: SocksServer) -> socks5client.Proxy:
    return socks5client.Proxy(*server.address)


def test_proxy_is_read_once_per_call(
    socks_server: SocksServer,
    udp_echo_server: UDPEchoServer,
    make_udp: MakeUDP,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another thread clears the default proxy while sendto runs: sendto
    # must finish with the proxy it read, through the relay.
    answers = iter([_proxy(socks_server)])
    monkeypatch.setattr(socks5client.sock, "get_default_proxy", lambda: next(answers, None))
    sock = make_udp.track(  # type: ignore[attr-defined]
        socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    sock.settimeout(TIMEOUT)
    assert sock.sendto(b"once", udp_echo_server.address) == 4
    # The association, once open, is used whatever the default says now.
    assert sock.recvfrom(100) == (b"once", udp_echo_server.address)
    _heard_from_relay(udp_echo_server, sock)


# --------------------------------------------------------------------------
# 8. *_into argument checks, as on a plain socket.
# --------------------------------------------------------------------------

_BAD_INTO: dict[str, Callable[[socket.socket], Any]] = {
    "recvfrom_into-nbytes-too-big": lambda s: s.recvfrom_into(bytearray(10), 20),
    "recv_into-nbytes-too-big": lambda s: s.recv_into(bytearray(10), 20),
    "recvfrom_into-negative": lambda s: s.recvfrom_into(bytearray(10), -1),
    "recv_into-negative": lambda s: s.recv_into(bytearray(10), -1),
    "recvmsg-negative": lambda s: s.recvmsg(-1),
    "recvmsg-negative-ancillary": lambda s: s.recvmsg(10, -1),
}


@pytest.mark.parametrize("name", list(_BAD_INTO))
def test_bad_receive_sizes_raise_value_error_and_take_nothing(
    associated: tuple[UDPSocksSocket, UDPAssociation], name: str
) -> None:
    sock, assoc = associated
    call = _BAD_INTO[name]
    with PlainSocket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.setblocking(False)
        with pytest.raises(ValueError):
            call(plain)  # the behaviour to match
    assoc.send_to_client(_dgram(b"0123456789abc"))
    with pytest.raises(ValueError):
        call(sock)
    buffer = bytearray(20)
    assert sock.recvfrom_into(buffer, 13) == (13, REMOTE)
    assert bytes(buffer[:13]) == b"0123456789abc"


def test_bad_receive_size_is_refused_before_the_association(
    socks_server: SocksServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    for call in _BAD_INTO.values():
        with pytest.raises(ValueError):
            call(sock)
    assert socks_server.connections == 0


# --------------------------------------------------------------------------
# 9. AF_INET6: 4-tuples for every source, and from getpeername.
# --------------------------------------------------------------------------


def test_ipv6_socket_reports_4_tuples_for_every_source(
    socks_server_v6: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server_v6, socket.AF_INET6)
    host, port = udp_echo_server.address  # an IPv4 remote, reached through an IPv6 relay
    sock.sendto(b"to four", (host, port))
    assert sock.recvfrom(100) == (b"to four", (host, port, 0, 0))
    assoc = socks_server_v6.wait_for_association()
    assoc.send_to_client(encode_udp_datagram(0, ATYP_DOMAIN, "dns.example", 853, b"named"))
    assert sock.recvfrom(100) == (b"named", ("dns.example", 853, 0, 0))
    assoc.send_to_client(encode_udp_datagram(0, ATYP_IPV4, "192.0.2.1", 53, b"msg"))
    assert sock.recvmsg(100) == (b"msg", [], 0, ("192.0.2.1", 53, 0, 0))
    assoc.send_to_client(encode_udp_datagram(0, ATYP_IPV4, "192.0.2.1", 53, b"into"))
    assert sock.recvfrom_into(bytearray(10)) == (4, ("192.0.2.1", 53, 0, 0))
    sock.connect((host, port))
    assert sock.getpeername() == (host, port, 0, 0)
    sock.send(b"connected")
    assert sock.recvfrom(100) == (b"connected", (host, port, 0, 0))
    sock.connect(("localhost", port))
    assert sock.getpeername() == ("localhost", port, 0, 0)


def test_ipv4_socket_keeps_2_tuples(associated: tuple[UDPSocksSocket, UDPAssociation]) -> None:
    sock, assoc = associated
    assoc.send_to_client(encode_udp_datagram(0, ATYP_DOMAIN, "dns.example", 853, b"named"))
    assert sock.recvfrom(100) == (b"named", ("dns.example", 853))
    sock.connect(REMOTE)
    assert sock.getpeername() == REMOTE


# --------------------------------------------------------------------------
# Around the list: connect_ex, and datagrams the kernel would merge.
# --------------------------------------------------------------------------


def test_connect_ex_associates_like_connect(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    assert sock.connect_ex(udp_echo_server.address) == 0
    sock.send(b"ex")
    assert sock.recv(10) == b"ex"
    _heard_from_relay(udp_echo_server, sock)
    # A refusal comes back as its errno (REP 7: EOPNOTSUPP), not raised.
    del socks_server.commands[CMD_UDP_ASSOCIATE]
    other = make_udp(socks_server)
    assert other.connect_ex(udp_echo_server.address) == errno.EOPNOTSUPP
    assert socks_server.records[-1].reply_code == 7


def test_merging_datagrams_is_refused(
    associated: tuple[UDPSocksSocket, UDPAssociation], make_udp: MakeUDP, socks_server: SocksServer
) -> None:
    sock, assoc = associated
    for call in (
        lambda: sock.sendto(b"x", socket.MSG_MORE, REMOTE),
        lambda: sock.sendmsg([b"x"], [], socket.MSG_MORE, REMOTE),
        lambda: sock.sendmsg([b"x"], [(socket.IPPROTO_UDP, 103, struct.pack("H", 1))], 0, REMOTE),
        lambda: sock.setsockopt(socket.IPPROTO_UDP, 1, 1),  # UDP_CORK
    ):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EOPNOTSUPP
    sock.sendto(b"alone", REMOTE)
    assert assoc.wait_until(lambda a: len(a.received) + len(a.dropped) >= 1)
    assert [d.data for d in assoc.received] == [b"alone"]
    # Corked before the proxy was set: the association is refused.
    corked = make_udp(socks_server)
    corked.set_proxy()
    corked.setsockopt(socket.IPPROTO_UDP, 1, 1)
    corked.set_proxy(_url(socks_server))
    with pytest.raises(OSError) as info:
        corked.sendto(b"x", REMOTE)
    assert info.value.errno == errno.EOPNOTSUPP


class _Unequal(int):
    """An int that equals nothing and is false, while ``__index__`` gives its value."""

    def __eq__(self, other: object) -> bool:
        return False

    def __bool__(self) -> bool:
        return False

    __hash__ = int.__hash__


def test_merging_options_hidden_in_int_subclasses_are_still_refused(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    # The C methods read level, option, value and control message type by
    # __index__: the refusal must judge the same ints, not ==, in or bool().
    sock, assoc = associated
    segment = struct.pack("H", 1)
    for call in (
        lambda: sock.setsockopt(_Unequal(socket.IPPROTO_UDP), 1, 1),
        lambda: sock.setsockopt(socket.IPPROTO_UDP, _Unequal(1), 1),
        lambda: sock.setsockopt(socket.IPPROTO_UDP, 1, _Unequal(1)),
        lambda: sock.sendmsg([b"x"], [(socket.IPPROTO_UDP, _Unequal(103), segment)], 0, REMOTE),
        lambda: sock.sendmsg([b"x"], [(_Unequal(socket.IPPROTO_UDP), 103, segment)], 0, REMOTE),
        # A list is an ancillary item the C method takes too.
        lambda: sock.sendmsg([b"x"], [[socket.IPPROTO_UDP, 103, segment]], 0, REMOTE),
    ):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EOPNOTSUPP
    assert sock.getsockopt(socket.IPPROTO_UDP, 1) == 0  # not corked
    sock.setsockopt(socket.IPPROTO_UDP, _Unequal(1), _Unequal(0))  # uncorking is fine
    sock.sendto(b"alone", REMOTE)
    assert assoc.wait_until(lambda a: len(a.received) + len(a.dropped) >= 1)
    assert [d.data for d in assoc.received] == [b"alone"]


@pytest.mark.parametrize("name", list(_RECEIVES))
def test_peek_and_error_queue_are_refused_by_every_receive(
    associated: tuple[UDPSocksSocket, UDPAssociation], name: str
) -> None:
    # MSG_PEEK would leave the header and the relay's datagram in place;
    # the error queue holds datagrams addressed to the relay.
    sock, assoc = associated
    assoc.send_to_client(_dgram(b"kept"))
    for flag in (socket.MSG_PEEK, socket.MSG_ERRQUEUE):
        with pytest.raises(OSError) as info:
            _RECEIVES[name](sock, flag)
        assert info.value.errno == errno.EOPNOTSUPP
    assert sock.recvfrom(100) == (b"kept", REMOTE)


# --------------------------------------------------------------------------
# 11. Reads after this module's poll never wait on their own; mapped
#     addresses; closed sockets; queued ICMP errors.
# --------------------------------------------------------------------------

#: A receive's timeout in the two-reader race (the datagram comes halfway).
RACE_TIMEOUT = 1.0


@pytest.mark.parametrize("default_timeout", [False, True], ids=["own-timeout", "default-timeout"])
@pytest.mark.parametrize("name", ["recvfrom", "recv_into", "recvmsg"])
def test_the_reader_that_loses_a_datagram_still_stops_at_its_deadline(
    socks_server: SocksServer, make_udp: MakeUDP, name: str, default_timeout: bool
) -> None:
    # All readers wake for one datagram; those that find it gone must
    # wait on within their own deadline, as on a plain socket, not a fresh
    # whole timeout inside the socket's C method.  A default timeout at
    # association time once made the fast paths read through that method.
    saved = socket.getdefaulttimeout()
    if default_timeout:
        socket.setdefaulttimeout(RACE_TIMEOUT)
    try:
        sock = make_udp(socks_server, timeout=RACE_TIMEOUT)
        sock.associate()
    finally:
        socket.setdefaulttimeout(saved)
    assoc = socks_server.wait_for_association()
    outcomes: list[tuple[Any, float]] = []
    lock = threading.Lock()

    def receive() -> None:
        started = time.monotonic()
        try:
            result: Any = _RECEIVES[name](sock, 0)
        except BaseException as exc:
            result = exc
        with lock:
            outcomes.append((result, time.monotonic() - started))

    # Several losers: whether one of them reads before the winner has taken
    # the datagram is down to the scheduler, and without the fix any loser
    # that reads after it waits too long.
    readers = 4
    threads = [threading.Thread(target=receive) for _ in range(readers)]
    for thread in threads:
        thread.start()
    time.sleep(RACE_TIMEOUT / 2)
    assoc.send_to_client(_dgram(b"one"))
    for thread in threads:
        thread.join(RACE_TIMEOUT * 4)
    assert len(outcomes) == readers
    timed_out = [(r, t) for r, t in outcomes if isinstance(r, BaseException)]
    assert len(timed_out) == readers - 1, outcomes
    for result, elapsed in timed_out:
        assert isinstance(result, socket.timeout), result
        # Without the fix: about 1.5 s (half a timeout, then a whole one).
        assert elapsed < RACE_TIMEOUT + MARGIN, outcomes


@pytest.mark.parametrize(
    ("connected", "reported"),
    [
        ("::ffff:192.0.2.1", (ATYP_IPV4, "192.0.2.1")),
        ("::ffff:192.0.2.1", (ATYP_IPV6, "::ffff:192.0.2.1")),
        ("192.0.2.1", (ATYP_IPV6, "::ffff:192.0.2.1")),
    ],
    ids=["mapped-reported-as-ipv4", "mapped-reported-mapped", "ipv4-reported-mapped"],
)
def test_connected_filter_takes_an_ipv4_mapped_address_as_its_ipv4_address(
    socks_server_v6: SocksServer,
    make_udp: MakeUDP,
    connected: str,
    reported: tuple[int, str],
) -> None:
    # A relay may name an IPv4 remote with an IPv4 header (Dante does)
    # whichever way the caller spelled it; a plain dual-stack socket
    # connected to ::ffff:192.0.2.1 gets that remote's replies.
    sock = make_udp(socks_server_v6, socket.AF_INET6)
    sock.connect((connected, 53))
    assoc = socks_server_v6.wait_for_association()
    atyp, host = reported
    # Another host first: the filter still drops it.
    assoc.send_to_client(encode_udp_datagram(0, ATYP_IPV4, "192.0.2.2", 53, b"other"))
    for payload in (b"first", b"again"):  # the second one through the fast path
        assoc.send_to_client(encode_udp_datagram(0, atyp, host, 53, payload))
        assert sock.recvfrom(100) == (payload, (host, 53, 0, 0))


_AFTER_CLOSE: dict[str, Callable[[socket.socket], Any]] = {
    "sendto": lambda s: s.sendto(b"x", REMOTE),
    "send": lambda s: s.send(b"x"),
    "sendmsg": lambda s: s.sendmsg([b"x"]),
    "sendall": lambda s: s.sendall(b"x"),
    "connect": lambda s: s.connect(REMOTE),
    "recvfrom": lambda s: s.recvfrom(100),
}


def _assert_fails_as_a_closed_plain_socket(sock: socket.socket) -> None:
    """Every call of _AFTER_CLOSE on ``sock`` fails as on a closed plain UDP socket: EBADF."""
    plain = PlainSocket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.close()
    for name, call in _AFTER_CLOSE.items():
        with pytest.raises(OSError) as expected:
            call(plain)
        with pytest.raises(OSError) as info:
            call(sock)
        assert (info.value.errno, type(info.value)) == (errno.EBADF, type(expected.value)), name
    assert plain.connect_ex(REMOTE) == errno.EBADF


@pytest.mark.parametrize("dup_alive", [False, True], ids=["last", "dup-alive"])
def test_a_closed_socket_fails_with_ebadf_as_a_plain_one(
    associated: tuple[UDPSocksSocket, UDPAssociation], make_udp: MakeUDP, dup_alive: bool
) -> None:
    # Not UDPAssociationClosedError (ECONNRESET): that one says the proxy
    # ended the association.  With a dup still open the association lives
    # on, and the send fast paths see a closed object, not an ended one.
    sock, _ = associated
    sock.connect(REMOTE)
    assert sock.send(b"warm") == 4  # the fast paths have their headers
    assert sock.sendto(b"warm", REMOTE) == 4
    if dup_alive:
        make_udp.track(sock.dup())  # type: ignore[attr-defined]
    sock.close()
    _assert_fails_as_a_closed_plain_socket(sock)
    assert sock.connect_ex(REMOTE) == errno.EBADF
    with pytest.raises(OSError) as info:
        sock.associate()
    assert info.value.errno == errno.EBADF


def test_a_closed_socket_never_connected_fails_with_ebadf_too(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    # send() and sendmsg() without an address have no destination either:
    # a plain closed socket still says EBADF first, not EDESTADDRREQ.
    sock, _ = associated
    sock.close()
    _assert_fails_as_a_closed_plain_socket(sock)


IP_RECVERR = getattr(socket, "IP_RECVERR", 11)


def test_a_queued_icmp_error_does_not_make_a_receive_spin(
    scripted_server: ScriptedServer, make_udp: MakeUDP
) -> None:
    # With IP_RECVERR the relay's ICMP errors are queued on the UDP socket;
    # poll() reports POLLERR while one is queued, and MSG_ERRQUEUE is
    # refused through a relay, so the receive must clear them itself.
    server = scripted_server(_answering_with_relay_of(lambda: relay))
    sock = make_udp(server, timeout=RACE_TIMEOUT)
    relay = _test_relay(make_udp)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    sock.sendto(b"x", REMOTE)
    relay.recvfrom(100)
    relay.close()  # its port unreachable from now on
    sock.sendto(b"y", REMOTE)
    poller = select.poll()
    poller.register(sock.fileno(), 0)
    assert poller.poll(TIMEOUT * 1000), "no ICMP error was queued"
    # The error is reported once, as a plain socket reports it.
    with pytest.raises(ConnectionRefusedError):
        sock.recvfrom(100)
    started_cpu = time.process_time()
    with pytest.raises(socket.timeout):
        sock.recvfrom(100)
    # Without the fix: the whole timeout at 100 % CPU.
    assert time.process_time() - started_cpu < RACE_TIMEOUT / 3
    assert not poller.poll(0), "the error queue was not cleared"
