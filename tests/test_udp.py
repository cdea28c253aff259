"""socks5client's UDP variant against the reference server's relay, over loopback.

``socksocket(type=SOCK_DGRAM)`` runs UDP ASSOCIATE on a control connection
and wraps each datagram in the RFC 1928 header.  The first half checks the
association and the socket API (what the proxy is told, addresses, sizes,
truncation, ``connect`` filtering).  The second half scripts the relay to
misbehave -- foreign sources, malformed headers, fragments, a control
connection closed under the client, a relay that never answers -- and
checks that junk is never returned or raised: the call keeps waiting within
its timeout for the next valid datagram, as a plain UDP socket would for a
lost one.  Every test ends with no file descriptor left open.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import re
import select
import socket
import threading
import time
import types
import warnings
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import socks5client
import socks5client.asyncio
import socks5client.udp
from socks5client import errors
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
#: How late after its timeout a call may give up.
MARGIN = 0.5

#: A remote named in injected datagrams.  Loopback, with nothing listening:
#: should a datagram be relayed to it, it stays on this host.
REMOTE = ("127.0.0.9", 5300)

FdCount = FdCounter
ScriptedServer = Callable[..., SocksServer]
MakeUDP = Callable[..., UDPSocksSocket]
Address = tuple[str, int]


def _url(server: SocksServer, scheme: str = "socks5h", userinfo: str = "") -> str:
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{userinfo}{shown}:{port}"


def _dgram(data: bytes, source: Address = REMOTE, frag: int = 0) -> bytes:
    """A datagram as the relay sends it: header naming ``source``, then ``data``."""
    atyp = ATYP_IPV6 if ":" in source[0] else ATYP_IPV4
    return encode_udp_datagram(frag, atyp, source[0], source[1], data)


@pytest.fixture
def make_udp(fd_count: FdCount) -> Iterator[MakeUDP]:
    """``make_udp(server, family=AF_INET, scheme="socks5h", userinfo="",
    timeout=TIMEOUT)``: a UDP socksocket using ``server`` as its proxy.

    List it after the server fixtures: the fd count taken when the first
    socket is made must be found again once all are closed.
    """
    made: list[UDPSocksSocket] = []
    baseline: list[int] = []

    def make(
        server: SocksServer,
        family: int = socket.AF_INET,
        scheme: str = "socks5h",
        userinfo: str = "",
        timeout: float | None = TIMEOUT,
    ) -> UDPSocksSocket:
        if not baseline:
            baseline.append(fd_count())
        sock = socks5client.socksocket(family, socket.SOCK_DGRAM)
        assert isinstance(sock, UDPSocksSocket)
        made.append(sock)
        sock.set_proxy(_url(server, scheme, userinfo))
        sock.settimeout(timeout)
        return sock

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


def _control_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Warnings about an unclosed TCP socket (the control connection)."""
    texts = [str(w.message) for w in caught]
    return [t for t in texts if re.search(r"type=(1|SocketKind\.SOCK_STREAM)\b", t)]


# --------------------------------------------------------------------------
# The association: when it opens and what the proxy is told.
# --------------------------------------------------------------------------


def test_first_sendto_opens_association_naming_the_real_udp_address(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    assert socks_server.connections == 0
    assert sock.sendto(b"hello", udp_echo_server.address) == 5
    assert sock.recvfrom(100) == (b"hello", udp_echo_server.address)
    (record,) = socks_server.records
    assert (record.command, record.atyp) == (CMD_UDP_ASSOCIATE, ATYP_IPV4)
    # Bound to the wildcard (as sendto binds a plain socket), the client
    # names the address its control connection leaves from, and its real port.
    local_host, local_port = sock.getsockname()
    assert local_host == "0.0.0.0"
    assert (record.dst_addr, record.dst_port) == (record.client_address[0], local_port)
    assert record.dst_port != 0


def test_bound_socket_associates_at_bind_naming_that_address(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    sock.bind(("127.0.0.1", 0))
    assoc = socks_server.wait_for_association(timeout=0.5)
    record = socks_server.records[0]
    assert (record.dst_addr, record.dst_port) == sock.getsockname()
    assert (assoc.client_host, assoc.client_port) == sock.getsockname()
    sock.sendto(b"bound", udp_echo_server.address)
    assert sock.recvfrom(100) == (b"bound", udp_echo_server.address)


def test_connect_opens_association_and_sets_default_destination(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    sock.connect(udp_echo_server.address)
    socks_server.wait_for_association(timeout=0.5)
    assert socks_server.records[0].command == CMD_UDP_ASSOCIATE
    assert sock.getpeername() == udp_echo_server.address
    assert sock.send(b"connected") == 9
    assert sock.recv(100) == b"connected"


def test_associate_opens_one_association(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    sock.associate()
    sock.associate()
    sock.sendto(b"x", udp_echo_server.address)
    assert sock.recv(10) == b"x"
    assert socks_server.connections == 1
    assoc = socks_server.wait_for_association()
    assert sock.get_proxy_sockname() == assoc.relay_address
    assert sock.get_proxy_peername() == socks_server.address
    assert sock.getsockname()[1] == socks_server.records[0].dst_port
    assert sock.getsockname()[1] != assoc.relay_address[1]


def test_ipv6_socket_through_ipv6_proxy(
    socks_server_v6: SocksServer, udp_echo_server_v6: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server_v6, socket.AF_INET6)
    host, port = udp_echo_server_v6.address
    sock.sendto(b"six", (host, port))
    assert sock.recvfrom(100) == (b"six", (host, port, 0, 0))
    record = socks_server_v6.records[0]
    assert (record.atyp, record.dst_addr) == (ATYP_IPV6, "::1")
    assoc = socks_server_v6.wait_for_association()
    assert assoc.received == [Datagram(0, ATYP_IPV6, host, port, b"six")]
    assert sock.get_proxy_sockname() == assoc.relay_address
    assert assoc.relay_address[0] == "::1"


def test_hostname_goes_to_relay_unresolved_with_remote_dns(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server, scheme="socks5h")
    port = udp_echo_server.port
    sock.sendto(b"name", ("localhost", port))
    # The reply names the address the relay saw it come from.
    assert sock.recvfrom(100) == (b"name", ("127.0.0.1", port))
    assoc = socks_server.wait_for_association()
    assert assoc.received == [Datagram(0, ATYP_DOMAIN, "localhost", port, b"name")]


def test_hostname_is_resolved_locally_without_remote_dns(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server, scheme="socks5")
    port = udp_echo_server.port
    sock.sendto(b"name", ("localhost", port))
    assert sock.recvfrom(100) == (b"name", ("127.0.0.1", port))
    assoc = socks_server.wait_for_association()
    assert assoc.received == [Datagram(0, ATYP_IPV4, "127.0.0.1", port, b"name")]


def test_local_resolution_looks_up_the_name_the_proxy_would_get(
    socks_server: SocksServer, make_udp: MakeUDP, monkeypatch: pytest.MonkeyPatch
) -> None:
    # socks5:// resolves here, in the IDNA 2008 form that TCP uses and a
    # proxy would get ("xn--fa-hia.de"), not Python's IDNA 2003 ("fass.de",
    # another domain).  Both names are refused by the recorder, so nothing
    # reaches a real resolver.
    from dns_recorder import install_recorder

    sock = make_udp(socks_server, scheme="socks5")
    resolver = install_recorder(monkeypatch)
    resolver.forbidden |= {"xn--fa-hia.de", "fass.de"}
    with pytest.raises(socket.gaierror):
        sock.sendto(b"x", ("faß.de", 53))
    names = [host for _what, host in resolver.names()]
    assert "xn--fa-hia.de" in names
    assert "fass.de" not in names


def test_association_with_username_and_password(
    auth_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(auth_server, userinfo="alice:s3cret@")
    sock.sendto(b"authenticated", udp_echo_server.address)
    assert sock.recv(100) == b"authenticated"
    record = auth_server.records[0]
    assert (record.username, record.password, record.command) == (
        "alice",
        "s3cret",
        CMD_UDP_ASSOCIATE,
    )


def test_rejected_credentials_fail_the_association(
    auth_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(auth_server, userinfo="alice:Wrong-Pw-9x@")
    with pytest.raises(errors.ProxyError) as info:
        sock.sendto(b"x", udp_echo_server.address)
    assert type(info.value) is errors.SOCKS5AuthError
    for text in (str(info.value), repr(info.value), repr(info.value.args)):
        assert "Wrong-Pw-9x" not in text
    assert udp_echo_server.received == []


def test_zero_relay_address_means_the_proxy_address(
    scripted_server: ScriptedServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    server = scripted_server(None, udp_reply_zero_address=True)
    sock = make_udp(server)
    sock.sendto(b"zero", udp_echo_server.address)
    assert sock.recvfrom(100) == (b"zero", udp_echo_server.address)
    assoc = server.wait_for_association()
    assert sock.get_proxy_sockname() == ("127.0.0.1", assoc.relay_address[1])


def test_zero_ipv6_relay_address_means_the_proxy_address(
    scripted_server: ScriptedServer, udp_echo_server_v6: UDPEchoServer, make_udp: MakeUDP
) -> None:
    server = scripted_server(None, "::1", udp_reply_zero_address=True)
    sock = make_udp(server, socket.AF_INET6)
    sock.sendto(b"zero", udp_echo_server_v6.address)
    assert sock.recvfrom(100)[0] == b"zero"
    assoc = server.wait_for_association()
    assert sock.get_proxy_sockname() == ("::1", assoc.relay_address[1])


# --------------------------------------------------------------------------
# Datagram semantics: truncation, buffers, connect(), sizes.
# --------------------------------------------------------------------------


def test_recvfrom_truncates_and_discards_the_rest_like_udp(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    echo = udp_echo_server.address
    sock.sendto(b"0123456789", echo)
    assert sock.recvfrom(4) == (b"0123", echo)
    sock.sendto(b"second", echo)
    assert sock.recvfrom(100) == (b"second", echo)
    sock.sendto(b"third", echo)
    assert sock.recv(0) == b""
    sock.sendto(b"fourth", echo)
    assert sock.recv(100) == b"fourth"


def test_recv_into_and_recvfrom_into(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server)
    echo = udp_echo_server.address
    small = bytearray(4)
    sock.sendto(b"abcdefgh", echo)
    assert sock.recv_into(small) == 4
    assert small == b"abcd"
    big = bytearray(b"-" * 16)
    sock.sendto(b"ijklmn", echo)
    assert sock.recvfrom_into(big, 3) == (3, echo)
    assert big == b"ijk" + b"-" * 13
    sock.sendto(b"opq", echo)
    assert sock.recvfrom_into(memoryview(big)) == (3, echo)
    assert big[:4] == b"opq-"
    sock.sendto(b"rs", echo)
    assert sock.recv_into(big, 10) == 2


def test_connected_socket_drops_datagrams_from_other_remotes(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    echo = udp_echo_server.address
    sock = make_udp(socks_server)
    with UDPEchoServer() as other:
        sock.connect(echo)
        assoc = socks_server.wait_for_association()
        # A real reply from another remote, reaching the client first ...
        sock.sendto(b"to the other", other.address)
        assert assoc.wait_until(lambda a: len(a.forwarded) == 1)
        # ... and forged ones: the right port at another IP, the right IP at
        # another port.
        assoc.send_to_client(_dgram(b"other ip", ("127.0.0.2", echo[1])))
        assoc.send_to_client(_dgram(b"other port", ("127.0.0.1", other.port)))
        sock.send(b"to the connected")
        assert sock.recvfrom(100) == (b"to the connected", echo)
        sock.settimeout(SHORT)
        with pytest.raises(socket.timeout):  # what a plain UDP socket raises
            sock.recv(100)
        assert [p for p, _ in other.received] == [b"to the other"]


@pytest.mark.parametrize(
    ("header_source", "reported"),
    [
        ((ATYP_IPV4, "192.0.2.1", 53), ("192.0.2.1", 53)),
        ((ATYP_IPV6, "2001:db8::1", 53), ("2001:db8::1", 53, 0, 0)),
        ((ATYP_DOMAIN, "dns.example", 853), ("dns.example", 853)),
    ],
    ids=["ipv4", "ipv6", "domain"],
)
def test_source_of_any_address_type_is_reported(
    associated: tuple[UDPSocksSocket, UDPAssociation],
    header_source: tuple[int, str, int],
    reported: tuple[Any, ...],
) -> None:
    sock, assoc = associated
    assoc.send_to_client(encode_udp_datagram(0, *header_source, b"from afar"))
    assert sock.recvfrom(100) == (b"from afar", reported)


def test_send_without_connect_and_sendall_are_refused(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    with pytest.raises(OSError) as info:
        sock.send(b"where to?")
    assert info.value.errno == errno.EDESTADDRREQ
    with pytest.raises(OSError):
        sock.sendall(b"datagrams are not streams")
    sock.connect(REMOTE)
    with pytest.raises(OSError):
        sock.sendall(b"not even when connected")
    with pytest.raises(OSError):
        sock.recv(10, socket.MSG_PEEK)
    assert assoc.received == []


@pytest.mark.parametrize("size", [0, 1, 8000, "max"])
def test_payload_sizes_round_trip(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP, size: int | str
) -> None:
    sock = make_udp(socks_server)
    echo = udp_echo_server.address
    n = sock.max_payload(echo) if size == "max" else int(size)
    payload = bytes(i % 251 for i in range(n))
    assert sock.sendto(payload, echo) == n
    assert sock.recvfrom(70000) == (payload, echo)


def test_largest_payloads_per_destination_type(
    socks_server: SocksServer,
    udp_echo_server: UDPEchoServer,
    socks_server_v6: SocksServer,
    udp_echo_server_v6: UDPEchoServer,
    make_udp: MakeUDP,
) -> None:
    v4 = make_udp(socks_server)
    by_name = ("localhost", udp_echo_server.port)
    assert v4.max_payload(udp_echo_server.address) == 65507 - 10
    assert v4.max_payload(by_name) == 65507 - 16
    assert v4.max_payload() == 65507 - 262
    payload = b"n" * v4.max_payload(by_name)
    v4.sendto(payload, by_name)
    assert v4.recv(70000) == payload
    with pytest.raises(OSError) as info:
        v4.sendto(b"x" * (v4.max_payload(udp_echo_server.address) + 1), udp_echo_server.address)
    assert info.value.errno == errno.EMSGSIZE
    v6 = make_udp(socks_server_v6, socket.AF_INET6)
    assert v6.max_payload(udp_echo_server_v6.address) == 65527 - 22
    payload = b"6" * v6.max_payload(udp_echo_server_v6.address)
    v6.sendto(payload, udp_echo_server_v6.address)
    assert v6.recv(70000) == payload


@pytest.mark.parametrize(
    ("scheme", "overhead"), [("socks5h", 262), ("socks5", 22)], ids=["remote-dns", "local-dns"]
)
def test_buffer_sizes_are_reduced_by_the_header(
    socks_server: SocksServer, make_udp: MakeUDP, scheme: str, overhead: int
) -> None:
    sock = make_udp(socks_server, scheme=scheme)
    assert sock.header_overhead() == overhead
    for _ in range(2):  # before and after the association opens
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            raw = socket.socket.getsockopt(sock, socket.SOL_SOCKET, option)
            assert sock.getsockopt(socket.SOL_SOCKET, option) == raw - overhead
        sock.associate()
    assert sock.header_overhead(("192.0.2.1", 1)) == 10
    assert sock.header_overhead(("2001:db8::1", 1)) == 22
    assert sock.header_overhead(("localhost", 1)) == (16 if scheme == "socks5h" else 10)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM


# --------------------------------------------------------------------------
# Closing.
# --------------------------------------------------------------------------


def test_close_closes_the_control_connection(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.close()
    assert assoc.closed.wait(TIMEOUT)
    sock.close()  # idempotent
    with pytest.raises(OSError):
        sock.sendto(b"x", REMOTE)


def test_makefile_keeps_the_association_until_the_last_file_closes(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    # As on a plain socket, close() only marks the socket closed while a
    # makefile() object holds it; the descriptor (and so the association)
    # goes with the last file.
    sock, assoc = associated
    sock.connect(REMOTE)
    file = sock.makefile("rwb", buffering=0)
    sock.close()
    assert file.write(b"query") == 5
    assert assoc.wait_until(lambda a: len(a.received) == 1)
    assert assoc.received[0].data == b"query"
    assoc.send_to_client(_dgram(b"answer"))
    assert file.read(100) == b"answer"
    assert not assoc.closed.is_set()
    file.close()
    assert assoc.closed.wait(TIMEOUT)
    assert sock.fileno() == -1


def test_garbage_collection_closes_the_control_connection_quietly(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, fd_count: FdCount
) -> None:
    # The detector must see a leaked TCP socket, or its silence means nothing.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        socket.socket()
        gc.collect()
    assert len(_control_warnings(caught)) == 1

    before = fd_count()
    sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.set_proxy(_url(socks_server))
    sock.settimeout(TIMEOUT)
    sock.sendto(b"x", udp_echo_server.address)
    assert sock.recv(10) == b"x"
    assoc = socks_server.wait_for_association()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del sock
        gc.collect()
        # A recorded ResourceWarning keeps its source -- the UDP socket --
        # alive; let go of it so the socket is freed, inside the recording.
        for message in list(caught):
            message.source = None
        gc.collect()
    assert _control_warnings(caught) == []
    assert assoc.closed.wait(TIMEOUT)
    assert fd_count.settle(before) == before


# --------------------------------------------------------------------------
# Hostile relay: junk is dropped, and the call keeps waiting.
# --------------------------------------------------------------------------

_JUNK: dict[str, bytes] = {
    "rsv-low": encode_udp_datagram(0, ATYP_IPV4, "192.0.2.9", 53, b"junk", rsv=0x0001),
    "rsv-high": encode_udp_datagram(0, ATYP_IPV4, "192.0.2.9", 53, b"junk", rsv=0x0100),
    "atyp-0": encode_udp_datagram(0, 0x00, b"\xc0\x00\x02\x09", 53, b"junk"),
    "atyp-2": encode_udp_datagram(0, 0x02, b"\xc0\x00\x02\x09", 53, b"junk"),
    "atyp-5": encode_udp_datagram(0, 0x05, b"\xc0\x00\x02\x09", 53, b"junk"),
    "atyp-ff": encode_udp_datagram(0, 0xFF, b"\xc0\x00\x02\x09", 53, b"junk"),
    "empty": b"",
    "rsv-only": b"\x00\x00",
    "no-address": b"\x00\x00\x00\x01",
    "half-ipv4": b"\x00\x00\x00\x01\xc0\x00",
    "ipv4-half-port": b"\x00\x00\x00\x01\xc0\x00\x02\x09\x00",
    "half-ipv6": b"\x00\x00\x00\x04" + b"\x20\x01" * 4,
    "no-domain-length": b"\x00\x00\x00\x03",
    "short-domain": b"\x00\x00\x00\x03\x0aabc",
    "empty-domain": b"\x00\x00\x00\x03\x00\x00\x35junk",
    "end-bit-at-position-0": _dgram(b"junk", frag=0x80),
}


def _send_later(delay: float, send: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(delay, send)
    timer.start()
    return timer


@pytest.mark.parametrize("junk", list(_JUNK.values()), ids=list(_JUNK))
def test_malformed_datagram_is_dropped_and_recv_keeps_waiting(
    associated: tuple[UDPSocksSocket, UDPAssociation], junk: bytes
) -> None:
    sock, assoc = associated
    assoc.send_to_client(junk)
    timer = _send_later(0.1, lambda: assoc.send_to_client(_dgram(b"valid")))
    try:
        started = time.monotonic()
        assert sock.recvfrom(100) == (b"valid", REMOTE)
        assert time.monotonic() - started >= 0.05
    finally:
        timer.join()


@pytest.mark.parametrize("host", [None, "127.0.0.2"], ids=["other-port", "other-ip"])
def test_datagram_from_foreign_source_is_dropped(
    associated: tuple[UDPSocksSocket, UDPAssociation], host: str | None
) -> None:
    sock, assoc = associated
    assoc.send_from_foreign(_dgram(b"forged"), host=host)
    timer = _send_later(0.1, lambda: assoc.send_to_client(_dgram(b"from the relay")))
    try:
        assert sock.recvfrom(100) == (b"from the relay", REMOTE)
    finally:
        timer.join()


def test_only_junk_means_timeout_within_the_timeout(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.settimeout(SHORT)
    for junk in _JUNK.values():
        assoc.send_to_client(junk)
    assoc.send_from_foreign(_dgram(b"forged"))
    started = time.monotonic()
    with pytest.raises(socket.timeout):  # what a plain UDP socket raises
        sock.recvfrom(100)
    assert SHORT * 0.9 <= time.monotonic() - started < SHORT + MARGIN
    assert sock.fileno() != -1


# --------------------------------------------------------------------------
# Hostile relay: fragments (FRAG != 0).
# --------------------------------------------------------------------------


def _fragments(assoc: UDPAssociation, *pieces: tuple[int, bytes]) -> None:
    for frag, data in pieces:
        assoc.send_to_client(_dgram(data, frag=frag))


def test_fragments_in_order_are_delivered_as_one_datagram(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    _fragments(assoc, (1, b"ab"), (2, b"cd"), (0x83, b"ef"))
    assert sock.recvfrom(100) == (b"abcdef", REMOTE)
    _fragments(assoc, (0x81, b"single"))
    assert sock.recvfrom(100) == (b"single", REMOTE)


@pytest.mark.parametrize(
    "pieces",
    [
        [(2, b"cd"), (1, b"ab"), (0x83, b"ef")],
        [(1, b"ab"), (0x83, b"ef")],
        [(1, b"ab"), (3, b"ef"), (0x82, b"cd")],
        [(1, b"ab"), (2, b"cd"), (0, b"standalone")],
    ],
    ids=["out-of-order", "missing-middle", "end-before-middle", "standalone-interrupts"],
)
def test_broken_fragment_sequence_is_abandoned(
    associated: tuple[UDPSocksSocket, UDPAssociation], pieces: list[tuple[int, bytes]]
) -> None:
    sock, assoc = associated
    _fragments(assoc, *pieces)
    assoc.send_to_client(_dgram(b"next"))
    expected = [b"standalone", b"next"] if pieces[-1][0] == 0 else [b"next"]
    for data in expected:
        assert sock.recvfrom(100) == (data, REMOTE)


def test_restarted_fragment_sequence_delivers_the_new_one(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    _fragments(assoc, (1, b"old-1"), (2, b"old-2"), (1, b"new-1,"), (0x82, b"new-2"))
    assert sock.recvfrom(100) == (b"new-1,new-2", REMOTE)


def test_fragment_sequence_without_end_times_out(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.settimeout(SHORT)
    _fragments(assoc, (1, b"ab"), (2, b"cd"))
    started = time.monotonic()
    with pytest.raises(socket.timeout):  # what a plain UDP socket raises
        sock.recvfrom(100)
    assert time.monotonic() - started < SHORT + MARGIN


@pytest.mark.parametrize(
    ("elapsed", "delivered"),
    [(4.0, b"abcd"), (6.0, b"next")],
    ids=["within-timer", "after-timer"],
)
def test_reassembly_timer_abandons_a_slow_sequence(
    associated: tuple[UDPSocksSocket, UDPAssociation],
    monkeypatch: pytest.MonkeyPatch,
    elapsed: float,
    delivered: bytes,
) -> None:
    # The RFC's timer is at least 5 s; the client's clock is advanced
    # instead of waiting for it.
    skew = [0.0]
    clock = types.SimpleNamespace(monotonic=lambda: time.monotonic() + skew[0])
    monkeypatch.setattr(socks5client.udp, "time", clock)
    sock, assoc = associated
    sock.settimeout(SHORT)
    _fragments(assoc, (1, b"ab"))
    with pytest.raises(socket.timeout):  # what a plain UDP socket raises
        sock.recvfrom(100)  # the first fragment is taken in, then nothing
    skew[0] = elapsed
    sock.settimeout(TIMEOUT)
    _fragments(assoc, (0x82, b"cd"))
    assoc.send_to_client(_dgram(b"next"))
    assert sock.recvfrom(100) == (delivered, REMOTE)


# --------------------------------------------------------------------------
# Hostile relay: the association ends, or never answers.
# --------------------------------------------------------------------------


def test_control_closed_by_proxy_ends_the_association(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    assoc.close_control()
    with pytest.raises(errors.ProxyError) as info:
        sock.sendto(b"x", REMOTE)
    assert type(info.value) is errors.UDPAssociationClosedError
    assert info.value.errno == errno.ECONNRESET
    for call in (
        lambda: sock.recvfrom(10),
        lambda: sock.sendto(b"x", REMOTE),
        sock.get_proxy_peername,
    ):
        with pytest.raises(errors.UDPAssociationClosedError):
            call()
    assert assoc.received == []
    sock.close()


def test_recvfrom_fails_first_when_proxy_closes_control(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    assoc.close_control()
    with pytest.raises(errors.UDPAssociationClosedError):
        sock.recvfrom(10)
    with pytest.raises(errors.UDPAssociationClosedError):
        sock.sendto(b"x", REMOTE)


def test_blocked_recvfrom_wakes_when_proxy_closes_control(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.settimeout(10.0)
    timer = _send_later(0.2, assoc.close_control)
    try:
        started = time.monotonic()
        with pytest.raises(errors.UDPAssociationClosedError):
            sock.recvfrom(10)
        assert time.monotonic() - started < 1.5
    finally:
        timer.join()


def test_bytes_on_the_control_connection_are_ignored(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    assoc.control.sendall(b"RFC 1928 defines nothing here")
    timer = _send_later(0.1, lambda: assoc.send_to_client(_dgram(b"still relayed")))
    try:
        assert sock.recvfrom(100) == (b"still relayed", REMOTE)
    finally:
        timer.join()
    sock.sendto(b"out", REMOTE)
    assert assoc.wait_until(lambda a: len(a.received) == 1)


def test_relay_that_never_answers_honours_the_timeout(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server, timeout=SHORT)
    sock.associate()
    assoc = socks_server.wait_for_association()
    assoc.mute = True
    sock.sendto(b"lost", udp_echo_server.address)
    started = time.monotonic()
    with pytest.raises(socket.timeout):  # what a plain UDP socket raises
        sock.recvfrom(100)
    assert SHORT * 0.9 <= time.monotonic() - started < SHORT + MARGIN
    assert assoc.wait_until(lambda a: len(a.dropped) == 1)
    assert udp_echo_server.received == []


def test_non_blocking_recvfrom_raises_blocking_io_error(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    sock.setblocking(False)
    started = time.monotonic()
    with pytest.raises(BlockingIOError):
        sock.recvfrom(100)
    assert time.monotonic() - started < 0.2
    assoc.send_to_client(_dgram(b"now"))
    select.select([sock], [], [], TIMEOUT)
    assert sock.recvfrom(100) == (b"now", REMOTE)


def test_non_blocking_before_first_use_still_associates(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, make_udp: MakeUDP
) -> None:
    sock = make_udp(socks_server, timeout=0.0)
    sock.sendto(b"nb", udp_echo_server.address)
    assert sock.gettimeout() == 0.0
    assert select.select([sock], [], [], TIMEOUT)[0]
    assert sock.recvfrom(100) == (b"nb", udp_echo_server.address)


# --------------------------------------------------------------------------
# Hostile proxy: the UDP ASSOCIATE handshake fails.
# --------------------------------------------------------------------------


def _until_client_closes(conn: socket.socket) -> None:
    """Stay silent until the client gives up and closes the connection."""
    conn.settimeout(10.0)
    while conn.recv(4096):
        pass


def test_proxy_without_udp_associate_raises_command_not_supported(
    socks_server: SocksServer, make_udp: MakeUDP
) -> None:
    del socks_server.commands[CMD_UDP_ASSOCIATE]
    sock = make_udp(socks_server)
    with pytest.raises(errors.ProxyError) as info:
        sock.sendto(b"x", REMOTE)
    assert type(info.value) is errors.SOCKS5CommandNotSupportedError
    assert info.value.reply_code == 7
    # What happens next: the UDP socket stays open, unassociated, and each
    # use tries the association again (one more control connection each).
    assert sock.fileno() != -1
    assert sock.get_proxy_sockname() is None
    with pytest.raises(errors.SOCKS5CommandNotSupportedError):
        sock.recvfrom(10)
    assert socks_server.connections == 2
    assert [r.reply_code for r in socks_server.records] == [7, 7]


def test_proxy_silent_after_request_times_out(
    scripted_server: ScriptedServer, make_udp: MakeUDP
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn, server.record_for(conn))
        _until_client_closes(conn)

    server = scripted_server(script)
    sock = make_udp(server, timeout=SHORT)
    started = time.monotonic()
    with pytest.raises(errors.ProxyError) as info:
        sock.sendto(b"x", REMOTE)
    assert type(info.value) is errors.ProxyTimeoutError
    assert time.monotonic() - started < SHORT + MARGIN
    assert server.records[0].command == CMD_UDP_ASSOCIATE


def test_relay_of_the_other_family_is_protocol_error(
    scripted_server: ScriptedServer, make_udp: MakeUDP
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(0, ATYP_IPV6, "::1", 4000))
        _until_client_closes(conn)

    server = scripted_server(script)
    sock = make_udp(server)
    with pytest.raises(errors.ProxyError) as info:
        sock.sendto(b"x", REMOTE)
    assert type(info.value) is errors.ProxyProtocolError


# --------------------------------------------------------------------------
# Bad arguments.
# --------------------------------------------------------------------------

_HOST_256 = ".".join(["a" * 50] * 5) + ".b"
assert len(_HOST_256) == 256

_BAD_DESTINATIONS = {
    "hostname-256-bytes": (_HOST_256, 53),
    "empty-hostname": ("", 53),
    "port-65536": ("localhost", 65536),
    "port-minus-1": ("localhost", -1),
}


@pytest.mark.parametrize("dest", list(_BAD_DESTINATIONS.values()), ids=list(_BAD_DESTINATIONS))
def test_bad_destination_is_value_error_and_sends_nothing(
    associated: tuple[UDPSocksSocket, UDPAssociation], dest: Address
) -> None:
    sock, assoc = associated
    with pytest.raises(ValueError):
        sock.sendto(b"x", dest)
    with pytest.raises(ValueError):
        sock.connect(dest)
    assoc.send_to_client(_dgram(b"still fine"))
    assert sock.recv(100) == b"still fine"
    assert assoc.received == []
    assert assoc.dropped == []


@pytest.mark.parametrize("method", ["connect", "sendto"])
@pytest.mark.parametrize("dest", list(_BAD_DESTINATIONS.values()), ids=list(_BAD_DESTINATIONS))
def test_bad_destination_is_refused_before_contacting_the_proxy(
    socks_server: SocksServer,
    make_udp: MakeUDP,
    dest: Address,
    method: str,
) -> None:
    sock = make_udp(socks_server)
    with pytest.raises(ValueError):
        if method == "connect":
            sock.connect(dest)
        else:
            sock.sendto(b"x", dest)
    assert socks_server.connections == 0


def test_associate_without_a_proxy_does_nothing() -> None:
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert isinstance(sock, UDPSocksSocket)
        sock.set_proxy()
        sock.associate()
        assert sock.get_proxy_sockname() is None
        assert sock.getsockname()[1] == 0


def test_relay_name_that_does_not_resolve_is_a_proxy_error(
    scripted_server: Callable[..., SocksServer], fd_count: FdCount
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(0, ATYP_DOMAIN, "relay.invalid", 53))
        # Waits for the client to hang up, so the server's side is closed
        # before the fd count below.
        conn.recv(1)

    server = scripted_server(script)
    before = fd_count()
    sock = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    assert isinstance(sock, UDPSocksSocket)
    sock.set_proxy(f"socks5h://127.0.0.1:{server.port}")
    sock.settimeout(TIMEOUT)
    with pytest.raises(errors.GeneralProxyError, match=r"relay\.invalid") as info:
        sock.associate()
    assert isinstance(info.value.socket_err, socket.gaierror)
    sock.close()
    assert fd_count.settle(before) == before


@pytest.mark.parametrize(
    "name",
    [b"a..b", b".", b"x" * 64 + b".example"],
    ids=["empty-label", "dot", "label-over-63"],
)
@pytest.mark.parametrize("api", ["socket", "asyncio"])
def test_relay_name_the_resolver_refuses_is_a_proxy_error(
    scripted_server: Callable[..., SocksServer], fd_count: FdCount, name: bytes, api: str
) -> None:
    # Names getaddrinfo will not even encode (its IDNA step raises
    # UnicodeError): as much the proxy's fault as a name that does not resolve.
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(0, ATYP_DOMAIN, name, 53))
        conn.recv(1)  # until the client hangs up (for the fd count)

    server = scripted_server(script)
    before = fd_count()
    url = f"socks5h://127.0.0.1:{server.port}"
    with pytest.raises(errors.GeneralProxyError, match="cannot resolve the UDP relay") as info:
        if api == "socket":
            with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.set_proxy(url)
                sock.settimeout(TIMEOUT)
                sock.sendto(b"hello", REMOTE)
        else:
            asyncio.run(socks5client.asyncio.open_udp(url, timeout=TIMEOUT))
    assert isinstance(info.value.socket_err, ValueError)
    # The control connection was closed with the error.
    assert fd_count.settle(before) == before


def test_bad_call_shapes_are_refused_like_a_plain_udp_socket(
    associated: tuple[UDPSocksSocket, UDPAssociation],
) -> None:
    sock, assoc = associated
    with pytest.raises(TypeError):
        sock.sendto(b"x")
    with pytest.raises(TypeError):
        sock.sendto(b"x", 0, REMOTE, "extra")
    with pytest.raises(TypeError):
        sock.sendto(b"x", "not an address")
    with pytest.raises(ValueError):
        sock.recvfrom(-1)
    with pytest.raises(OSError) as info:
        sock.recvfrom(10, socket.MSG_PEEK)
    assert info.value.errno == errno.EOPNOTSUPP
    assert assoc.received == []
