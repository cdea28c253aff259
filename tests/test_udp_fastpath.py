"""The UDP variant's fast paths keep every check the full path makes.

``sendto``/``send`` keep each destination's encoded header, and the receive
calls keep what each relay header decodes to, so that the common datagram
costs no encoding, decoding or address parsing.  These tests warm those
caches first and then check that nothing was skipped: the control
connection is still watched, bad arguments are still refused, the
``connect`` filter and fragment reassembly still apply, and no ``ipaddress``
parse runs per datagram.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import socket
import threading
import time
import warnings
from decimal import Decimal
from typing import Any

import pytest
from test_udp import REMOTE, SHORT, TIMEOUT, MakeUDP, _dgram, _url, associated, make_udp

import socks5client.udp
from socks5client import errors
from socks5client.udp import UDPSocksSocket

from server import SocksServer, UDPAssociation, UDPEchoServer

__all__ = ["associated", "make_udp"]  # fixtures, used by name


def test_cached_destination_still_checks_the_control_connection(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.sendto(b"warm", REMOTE)
    sock.sendto(b"warm again", REMOTE)
    assert assoc.wait_until(lambda a: len(a.received) == 2)
    assoc.close_control()
    with pytest.raises(errors.UDPAssociationClosedError):
        sock.sendto(b"x", REMOTE)
    assert len(assoc.received) == 2


def test_connected_send_still_checks_the_control_connection(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.connect(REMOTE)
    sock.send(b"warm")
    assert assoc.wait_until(lambda a: len(a.received) == 1)
    assoc.close_control()
    with pytest.raises(errors.UDPAssociationClosedError):
        sock.send(b"x")
    with pytest.raises(errors.UDPAssociationClosedError):
        sock.recv(10)


@pytest.mark.parametrize("port", [5300.0, Decimal(5300)], ids=["float", "decimal"])
def test_a_port_equal_to_a_cached_one_is_still_type_checked(
    associated: tuple[UDPSocksSocket, UDPAssociation], port: Any
) -> None:
    sock, assoc = associated
    sock.sendto(b"warm", REMOTE)
    sock.sendto(b"warm again", REMOTE)
    with pytest.raises(TypeError):
        sock.sendto(b"x", (REMOTE[0], port))
    with pytest.raises(TypeError):
        sock.sendto(b"x", (REMOTE[0], True))  # True == 1, and hashes alike
    sock.sendto(b"x", (REMOTE[0], 1))
    sock.sendto(b"y", (REMOTE[0], 1))
    with pytest.raises(TypeError):
        sock.sendto(b"x", (REMOTE[0], True))
    assert assoc.wait_until(lambda a: len(a.received) == 4)


def test_unhashable_destination_is_refused_as_before(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, _ = associated
    sock.sendto(b"warm", REMOTE)
    with pytest.raises(TypeError):
        sock.sendto(b"x", [REMOTE[0], REMOTE[1]])
    with pytest.raises(TypeError):
        sock.sendto(b"x", (REMOTE[0], [REMOTE[1]]))


def test_buffers_other_than_bytes_take_the_fast_path_too(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.sendto(b"warm", REMOTE)
    assert sock.sendto(bytearray(b"abc"), REMOTE) == 3
    assert sock.sendto(memoryview(b"defg"), REMOTE) == 4
    sock.connect(REMOTE)
    assert sock.send(memoryview(b"hi")) == 2
    assert assoc.wait_until(lambda a: len(a.received) == 4)
    assert [d.data for d in assoc.received] == [b"warm", b"abc", b"defg", b"hi"]


def test_cached_source_is_still_filtered_after_connect(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    other = ("127.0.0.9", 5301)
    assoc.send_to_client(_dgram(b"before", REMOTE))
    assert sock.recvfrom(100) == (b"before", REMOTE)  # REMOTE's header now known
    sock.connect(other)
    assoc.send_to_client(_dgram(b"from the old remote", REMOTE))
    assoc.send_to_client(_dgram(b"from the connected one", other))
    assert sock.recvfrom(100) == (b"from the connected one", other)
    sock.settimeout(SHORT)
    with pytest.raises(socket.timeout):
        sock.recv(100)


def test_cached_header_from_a_foreign_source_is_still_dropped(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    assoc.send_to_client(_dgram(b"known", REMOTE))
    assert sock.recvfrom(100) == (b"known", REMOTE)
    assoc.send_from_foreign(_dgram(b"same header, not the relay", REMOTE))
    assoc.send_to_client(_dgram(b"from the relay", REMOTE))
    assert sock.recvfrom(100) == (b"from the relay", REMOTE)


def test_known_standalone_header_still_abandons_a_pending_sequence(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    assoc.send_to_client(_dgram(b"one", REMOTE))
    assert sock.recvfrom(100) == (b"one", REMOTE)
    assoc.send_to_client(_dgram(b"ab", REMOTE, frag=1))
    assoc.send_to_client(_dgram(b"two", REMOTE))
    assert sock.recvfrom(100) == (b"two", REMOTE)
    current = sock._assoc
    assert current is not None
    assert current.reassembler.abandoned == 1
    # A complete sequence from the same source is still put together.
    assoc.send_to_client(_dgram(b"ab", REMOTE, frag=1))
    assoc.send_to_client(_dgram(b"cd", REMOTE, frag=0x82))
    assert sock.recvfrom(100) == (b"abcd", REMOTE)


def test_caches_are_bounded(associated: tuple[UDPSocksSocket, UDPAssociation]) -> None:
    sock, assoc = associated
    for port in range(1, 2 * socks5client.udp._MAX_CACHED + 2):
        sock.sendto(b"x", ("127.0.0.9", port))
        assoc.send_to_client(_dgram(b"y", ("127.0.0.9", port)))
        assert sock.recvfrom(10) == (b"y", ("127.0.0.9", port))
    current = sock._assoc
    assert current is not None
    assert 0 < len(current.headers) <= socks5client.udp._MAX_CACHED
    assert 0 < len(current.sources) <= socks5client.udp._MAX_CACHED


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_no_ipaddress_parse_per_datagram(
    socks_server: SocksServer,
    socks_server_v6: SocksServer,
    udp_echo_server: UDPEchoServer,
    udp_echo_server_v6: UDPEchoServer,
    make_udp: MakeUDP,
    monkeypatch: pytest.MonkeyPatch,
    family: int,
) -> None:
    six = family == socket.AF_INET6
    server = socks_server_v6 if six else socks_server
    echo = (udp_echo_server_v6 if six else udp_echo_server).address
    # Spelled differently from the sources the relay reports, so that the
    # connect() filter has to compare addresses, not strings.
    spelled = ("0:0:0:0:0:0:0:1" if six else "127.0.0.1", echo[1])
    calls: list[str] = []
    # Every parse makes an IPv4Address or an IPv6Address (ip_address too).
    # Only this thread's count: the reference server parses in its own.
    me = threading.get_ident()
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        real = cls.__init__

        def counting(self: Any, *args: Any, _real: Any = real) -> None:
            if threading.get_ident() == me:
                calls.append(type(self).__name__)
            _real(self, *args)

        monkeypatch.setattr(cls, "__init__", counting)
    sendto = make_udp(server, family)
    connected = make_udp(server, family)
    for _ in range(3):  # warm up: association, caches
        sendto.sendto(b"ping", echo)
        assert sendto.recvfrom(100)[0] == b"ping"
    connected.connect(spelled)
    for _ in range(3):
        connected.send(b"ping")
        assert connected.recv(100) == b"ping"
    calls.clear()
    for _ in range(50):
        sendto.sendto(b"ping", echo)
        data, source = sendto.recvfrom(100)
        assert data == b"ping"
        assert source[:2] == echo
        connected.send(b"pong")
        assert connected.recv(100) == b"pong"
    assert calls == []


def test_close_releases_the_kernel_socket_at_once(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.sendto(b"warm", REMOTE)
    assoc.send_to_client(_dgram(b"back", REMOTE))
    assert sock.recvfrom(100) == (b"back", REMOTE)
    port = sock.getsockname()[1]
    sock.close()
    # Nothing (such as the fast paths' duplicate descriptor) keeps the port.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("0.0.0.0", port))


@pytest.mark.parametrize("default", [None, 3.0], ids=["no-default", "default-timeout"])
def test_blocking_socket_stays_blocking(
    socks_server: SocksServer,
    udp_echo_server: UDPEchoServer,
    make_udp: MakeUDP,
    default: float | None,
) -> None:
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(default)
    try:
        sock = make_udp(socks_server, timeout=None)
        for _ in range(3):
            sock.sendto(b"ping", udp_echo_server.address)
            assert sock.recvfrom(100) == (b"ping", udp_echo_server.address)
        assert sock.gettimeout() is None
        assert os.get_blocking(sock.fileno())
    finally:
        socket.setdefaulttimeout(saved)


# --------------------------------------------------------------------------
# The header accepted last: a datagram from the relay that starts with it is
# taken without a lookup.  Each test receives a few datagrams first (the
# first one's header is decoded, the next ones' are found known, and that
# makes it the header accepted last), then checks that nothing it stands for
# was skipped.
# --------------------------------------------------------------------------


def _warm(sock: UDPSocksSocket, assoc: UDPAssociation, source: tuple[str, int]) -> None:
    for data in (b"one", b"two", b"three"):
        assoc.send_to_client(_dgram(data, source))
        assert sock.recvfrom(100) == (data, source)


def _warm_for(call: str, sock: UDPSocksSocket, assoc: UDPAssociation) -> None:
    """Have REMOTE's header accepted last by ``call`` (``recv`` connects to REMOTE first)."""
    _warm(sock, assoc, REMOTE)
    if call == "recv":
        sock.connect(REMOTE)
        _warm(sock, assoc, REMOTE)


@pytest.mark.parametrize("call", ["recvfrom", "recv"])
def test_header_accepted_last_is_still_filtered_after_connect(
    associated: tuple[UDPSocksSocket, UDPAssociation], call: str
) -> None:
    sock, assoc = associated
    other = ("127.0.0.9", 5301)

    def receive() -> bytes:
        return sock.recvfrom(100)[0] if call == "recvfrom" else sock.recv(100)

    _warm(sock, assoc, REMOTE)  # unconnected
    sock.connect(other)
    assoc.send_to_client(_dgram(b"from the old remote", REMOTE))
    assoc.send_to_client(_dgram(b"from the connected one", other))
    assert receive() == b"from the connected one"
    # The same with the header accepted last under a connect() destination.
    for _ in range(3):
        assoc.send_to_client(_dgram(b"again", other))
        assert receive() == b"again"
    sock.connect(REMOTE)
    assoc.send_to_client(_dgram(b"from the old remote", other))
    assoc.send_to_client(_dgram(b"from the connected one", REMOTE))
    assert receive() == b"from the connected one"
    sock.settimeout(SHORT)
    with pytest.raises(socket.timeout):
        receive()


@pytest.mark.parametrize("call", ["recvfrom", "recv"])
def test_header_accepted_last_from_a_foreign_source_is_still_dropped(
    associated: tuple[UDPSocksSocket, UDPAssociation], call: str
) -> None:
    sock, assoc = associated
    _warm_for(call, sock, assoc)
    assoc.send_from_foreign(_dgram(b"same header, not the relay", REMOTE))
    assoc.send_to_client(_dgram(b"from the relay", REMOTE))
    received = sock.recvfrom(100)[0] if call == "recvfrom" else sock.recv(100)
    assert received == b"from the relay"


@pytest.mark.parametrize("call", ["recvfrom", "recv"])
def test_header_accepted_last_still_abandons_a_pending_sequence(
    associated: tuple[UDPSocksSocket, UDPAssociation], call: str
) -> None:
    sock, assoc = associated
    _warm_for(call, sock, assoc)
    # The fragment is taken in by a call of its own (which then times out),
    # so that the next call reads the standalone datagram first.
    assoc.send_to_client(_dgram(b"ab", REMOTE, frag=1))
    sock.settimeout(SHORT)
    with pytest.raises(socket.timeout):
        sock.recvfrom(100)
    current = sock._assoc
    assert current is not None
    assert current.reassembler.pending
    sock.settimeout(TIMEOUT)
    assoc.send_to_client(_dgram(b"four", REMOTE))
    received = sock.recvfrom(100)[0] if call == "recvfrom" else sock.recv(100)
    assert received == b"four"
    assert current.reassembler.abandoned == 1
    assert not current.reassembler.pending


def test_header_accepted_last_and_truncation(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    _warm(sock, assoc, REMOTE)
    assoc.send_to_client(_dgram(b"0123456789", REMOTE))
    assert sock.recvfrom(4) == (b"0123", REMOTE)
    assoc.send_to_client(_dgram(b"0123456789", REMOTE))
    assert sock.recvfrom(0) == (b"", REMOTE)
    sock.connect(REMOTE)
    for _ in range(3):
        assoc.send_to_client(_dgram(b"0123456789", REMOTE))
        assert sock.recv(4) == b"0123"
    assoc.send_to_client(_dgram(b"0123456789", REMOTE))
    assert sock.recv(100) == b"0123456789"


# --------------------------------------------------------------------------
# Other shapes of the fast paths.
# --------------------------------------------------------------------------


def test_sendto_with_flags_and_without_a_proxy(
    associated: tuple[UDPSocksSocket, UDPAssociation], udp_echo_server: UDPEchoServer
) -> None:
    sock, assoc = associated
    assert sock.sendto(b"flags", 0, REMOTE) == 5
    assert sock.sendto(b"known", REMOTE) == 5
    assert sock.sendto(b"flags again", 0, REMOTE) == 11
    assert assoc.wait_until(lambda a: len(a.received) == 3)
    assert [(d.addr, d.port, d.data) for d in assoc.received] == [
        (*REMOTE, b"flags"),
        (*REMOTE, b"known"),
        (*REMOTE, b"flags again"),
    ]
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.set_proxy()  # no proxy, not even a default one: a plain UDP socket
        plain.settimeout(TIMEOUT)
        assert plain.sendto(b"direct", 0, udp_echo_server.address) == 6
        assert plain.recvfrom(100) == (b"direct", udp_echo_server.address)
        with pytest.raises(TypeError):
            plain.sendto(b"x")


def test_closed_socket_does_not_poll_its_old_descriptor(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    """After close() the fast paths must not poll the descriptor numbers they
    knew: another file may have them by then (here: a quiet socket)."""
    sock, assoc = associated
    _warm(sock, assoc, REMOTE)
    twin = sock.dup()  # keeps the association (and the control connection) open
    old = sock.fileno()
    sock.close()
    squatters = []
    try:
        for _ in range(20):
            squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            squatters.append(squatter)
            if squatter.fileno() == old:
                break
        else:
            pytest.skip("could not get the closed socket's descriptor number again")
        started = time.monotonic()
        with pytest.raises(OSError):
            sock.recvfrom(100)
        with pytest.raises(OSError):
            sock.recv(100)
        with pytest.raises(OSError):
            sock.sendto(b"x", REMOTE)
        assert time.monotonic() - started < TIMEOUT / 2
        assert twin.sendto(b"twin", REMOTE) == 4
    finally:
        for squatter in squatters:
            squatter.close()
        twin.close()


def test_under_a_default_timeout_a_dropped_socket_ends_its_association(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer
) -> None:
    """With a default timeout set, the fast paths read and write through a
    non-blocking duplicate descriptor too: it must not keep the socket alive."""
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)
    try:
        sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.set_proxy(_url(socks_server))
        sock.connect(udp_echo_server.address)
        for _ in range(3):
            assert sock.sendto(b"ping", udp_echo_server.address) == 4
            assert sock.recvfrom(100) == (b"ping", udp_echo_server.address)
            assert sock.send(b"pong") == 4
            assert sock.recv(100) == b"pong"
        assert sock._io_close is not None  # the duplicate, made under the default timeout
        assoc = socks_server.wait_for_association()
    finally:
        socket.setdefaulttimeout(saved)
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del sock  # no close(): reference counting alone must free it
        assert assoc.closed.wait(TIMEOUT)
    finally:
        gc.enable()
