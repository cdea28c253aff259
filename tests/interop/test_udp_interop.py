"""UDP ASSOCIATE against a real relay: Dante, plus dnsmasq as a real UDP application.

Dante relays datagrams for an association whose request carries the
client's real UDP address (what socks5client sends).  The relay's address
family follows that address, so an AF_INET6 socket gets a relay on ::1
(``external: ::1`` in the fixture's config).  What was seen here (Debian 12,
Dante 1.4.2):

* a hostname destination is resolved by Dante to 127.0.0.1, and the reply
  carries that address, not the name;
* Dante relays replies only from remotes the client has sent to (its
  outgoing socket is connected while there is one); with two remotes it
  relays both, so a connected socksocket must drop the other one itself;
* ``timeout.io.udp`` ends an idle association by closing its control
  connection;
* microsocks answers UDP ASSOCIATE with REP 7.

dnspython's ``dns.query.udp(..., sock=s)`` documents that ``s`` must be
non-blocking; a socksocket made non-blocking before its first datagram
works (the association's TCP handshake still completes), as does one made
non-blocking after ``connect()``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import select
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import socks5client
from socks5client import errors

from .conftest import (
    DANTE_UDP_IDLE_TIMEOUT,
    DNS_A,
    DNS_AAAA,
    DNS_MISSING,
    DNS_NAME,
    UDP_DELAY,
    UDP_DELAY_PREFIX,
)

if TYPE_CHECKING:
    from .conftest import DNSServer, ProxyServer, UDPEchoServer

pytestmark = pytest.mark.interop

TIMEOUT = 5.0

#: Header bytes the API hides from SO_SNDBUF/SO_RCVBUF: the largest header
#: (a 255-byte name with remote DNS, an IPv6 address without).  Neither
#: "none" nor username/password adds per-datagram overhead.
OVERHEAD_REMOTE_DNS = 262
OVERHEAD_LOCAL_DNS = 22


def _udp_socket(
    server: ProxyServer,
    *,
    family: int = socket.AF_INET,
    remote_dns: bool = True,
    password: str | None = None,
    timeout: float | None = TIMEOUT,
) -> socks5client.socksocket:
    sock = socks5client.socksocket(family, socket.SOCK_DGRAM)
    sock.set_proxy(
        server.url(remote_dns=remote_dns, ipv6=family == socket.AF_INET6, password=password)
    )
    sock.settimeout(timeout)
    return sock


def _is_loopback(host: Any) -> bool:
    return ipaddress.ip_address(str(host).split("%")[0]).is_loopback


def _check_source(source: Any, port: int, host: str | None, *, six: bool = False) -> None:
    """``source`` is what recvfrom returned for a reply from ``host:port``.

    An IPv4 address comes as (host, port), an IPv6 one as (host, port, 0, 0);
    an AF_INET6 socket (``six``) gets 4-tuples for both, as a plain one does.
    ``host=None``: some loopback address (a name the proxy resolved).
    """
    assert isinstance(source, tuple), source
    assert isinstance(source[0], str), source
    version = ipaddress.ip_address(source[0]).version
    assert source[1] == port, source
    if version == 4 and not six:
        assert len(source) == 2, source
    else:
        assert source[2:] == (0, 0), source
    if host is None:
        assert _is_loopback(source[0]), source
    else:
        assert source[0] == host, source


def _check_not_from(source: Any, sock: socket.socket) -> None:
    """A datagram seen at ``source`` was not sent by ``sock`` itself.

    Dante binds its outgoing socket to the client's port number when it can
    (on ::1, for a client on IPv4), so only an address of our own family
    with our own port would be ours.
    """
    ours = sock.getsockname()
    same_family = ipaddress.ip_address(source[0]).version == (
        6 if sock.family == socket.AF_INET6 else 4
    )
    assert not (same_family and source[1] == ours[1]), (source, ours)


def _recv_all(sock: socket.socket, limit: int) -> list[tuple[bytes, Any]]:
    """Datagrams until ``limit`` have come or none comes for a while."""
    got: list[tuple[bytes, Any]] = []
    sock.settimeout(1.0)
    try:
        while len(got) < limit:
            got.append(sock.recvfrom(65535))
    except (socket.timeout, TimeoutError):
        pass
    return got


@dataclass(frozen=True)
class Destination:
    id: str
    host: str
    remote_dns: bool
    #: The address the reply must come from (None: a loopback address).
    source: str | None


DESTINATIONS = [
    Destination("ipv4-literal", "127.0.0.1", True, "127.0.0.1"),
    Destination("ipv6-literal", "::1", True, "::1"),
    Destination("hostname-remote-dns", "localhost", True, None),
    Destination("hostname-local-dns", "localhost", False, None),
]
PAYLOAD_SIZES = [1, 1400, 8000]


# ---------------------------------------------------------------------------
# Datagrams through the relay


@pytest.mark.parametrize("size", PAYLOAD_SIZES)
@pytest.mark.parametrize("dest", DESTINATIONS, ids=[d.id for d in DESTINATIONS])
@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_sendto_recvfrom_through_dante(
    server: ProxyServer, dest: Destination, size: int, udp_echo_server: UDPEchoServer
) -> None:
    payload = os.urandom(size)
    before = udp_echo_server.count()
    with _udp_socket(server, remote_dns=dest.remote_dns) as sock:
        sent = sock.sendto(payload, (dest.host, udp_echo_server.port))
        assert sent == size
        data, source = sock.recvfrom(65535)
        assert data == payload
        _check_source(source, udp_echo_server.port, dest.source)

        relay = sock.get_proxy_sockname()
        assert relay is not None
        assert relay[0] == "127.0.0.1"
        assert relay[1] not in (0, server.port)
        # The echo server heard Dante's relay, not our socket.
        heard = udp_echo_server.sources_since(before)
        assert len(heard) == 1, heard
        _check_not_from(heard[0], sock)


@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_many_datagrams_in_a_row(server: ProxyServer, udp_echo_server: UDPEchoServer) -> None:
    count = 200
    with _udp_socket(server) as sock:
        sock.sendto(b"warm-up", ("127.0.0.1", udp_echo_server.port))
        assert sock.recvfrom(100)[0] == b"warm-up"
        payloads = {b"%04d:" % i + b"x" * 100 for i in range(count)}
        for payload in sorted(payloads):
            sock.sendto(payload, ("127.0.0.1", udp_echo_server.port))
        got = _recv_all(sock, count)
    received = {data for data, _ in got}
    # Loopback and a relay that keeps up: nothing may be lost.
    assert len(got) == count, f"{len(got)} of {count} datagrams came back"
    assert received == payloads


@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_one_socket_many_destinations(server: ProxyServer, udp_echo_server: UDPEchoServer) -> None:
    # One association, destinations of all three address types in turn.
    with _udp_socket(server) as sock:
        for host, expected in [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("localhost", None)]:
            sock.sendto(host.encode(), (host, udp_echo_server.port))
            data, source = sock.recvfrom(2048)
            assert data == host.encode()
            _check_source(source, udp_echo_server.port, expected)


# ---------------------------------------------------------------------------
# connect(): a default destination


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_connect_then_send_recv(
    dante: ProxyServer, host: str, udp_echo_server: UDPEchoServer
) -> None:
    with _udp_socket(dante) as sock:
        sock.connect((host, udp_echo_server.port))
        assert sock.getpeername()[:2] == (host, udp_echo_server.port)
        for payload in (b"one", b"two" * 500):
            assert sock.send(payload) == len(payload)
            assert sock.recv(65535) == payload


def test_replies_from_two_remotes_reach_an_unconnected_socket(
    dante: ProxyServer, udp_echo_server: UDPEchoServer
) -> None:
    # The premise of the next test: one association, two remotes, and Dante
    # relays the replies of both.
    with _udp_socket(dante) as sock:
        sock.sendto(UDP_DELAY_PREFIX + b"late", ("127.0.0.1", udp_echo_server.other_port))
        sock.sendto(b"now", ("127.0.0.1", udp_echo_server.port))
        assert sock.recvfrom(2048) == (b"now", ("127.0.0.1", udp_echo_server.port))
        assert sock.recvfrom(2048) == (
            UDP_DELAY_PREFIX + b"late",
            ("127.0.0.1", udp_echo_server.other_port),
        )


def test_connected_socket_drops_replies_from_other_remotes(
    dante: ProxyServer, udp_echo_server: UDPEchoServer
) -> None:
    with _udp_socket(dante) as sock:
        # Before connect(): a datagram whose reply comes back late, from
        # another remote than the one we then connect to.
        sock.sendto(UDP_DELAY_PREFIX + b"dropped", ("127.0.0.1", udp_echo_server.other_port))
        sock.connect(("127.0.0.1", udp_echo_server.port))
        sock.send(b"kept")
        assert sock.recv(2048) == b"kept"
        sock.settimeout(UDP_DELAY + 0.7)
        with pytest.raises((socket.timeout, TimeoutError)):
            data = sock.recv(2048)
            pytest.fail(f"a connected socket received {data!r} from another remote")
        # The association is still fine.
        sock.settimeout(TIMEOUT)
        sock.send(b"still")
        assert sock.recv(2048) == b"still"


# ---------------------------------------------------------------------------
# IPv6 relay


@pytest.mark.parametrize(
    ("host", "expected"),
    [("::1", "::1"), ("127.0.0.1", "127.0.0.1"), ("localhost", None)],
    ids=["to-ipv6", "to-ipv4", "to-hostname"],
)
@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_ipv6_socket_through_dante_ipv6_listener(
    server: ProxyServer, host: str, expected: str | None, udp_echo_server: UDPEchoServer
) -> None:
    with _udp_socket(server, family=socket.AF_INET6) as sock:
        assert sock.family == socket.AF_INET6
        sock.sendto(b"over six", (host, udp_echo_server.port))
        data, source = sock.recvfrom(2048)
        assert data == b"over six"
        _check_source(source, udp_echo_server.port, expected, six=True)
        relay = sock.get_proxy_sockname()
        assert relay is not None
        assert relay[0] == "::1"
        assert sock.get_proxy_peername()[:2] == ("::1", server.port)


# ---------------------------------------------------------------------------
# Buffer sizes


@pytest.mark.parametrize(
    ("remote_dns", "overhead"),
    [(True, OVERHEAD_REMOTE_DNS), (False, OVERHEAD_LOCAL_DNS)],
    ids=["socks5h", "socks5"],
)
@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_buffer_sizes_are_reduced_by_the_header(
    server: ProxyServer, remote_dns: bool, overhead: int, udp_echo_server: UDPEchoServer
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain_snd = plain.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        plain_rcv = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    with _udp_socket(server, remote_dns=remote_dns) as sock:
        sock.sendto(b"x", ("127.0.0.1", udp_echo_server.port))
        sock.recvfrom(16)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == plain_snd - overhead
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == plain_rcv - overhead


# ---------------------------------------------------------------------------
# Authentication and refusal


def test_wrong_password_fails_the_association(
    dante_auth: ProxyServer, udp_echo_server: UDPEchoServer
) -> None:
    sock = _udp_socket(dante_auth, password="not-the-password")
    with sock, pytest.raises(errors.SOCKS5AuthError) as info:
        sock.sendto(b"x", ("127.0.0.1", udp_echo_server.port))
    assert "not-the-password" not in str(info.value)


def test_microsocks_refuses_udp_associate(
    microsocks: ProxyServer, udp_echo_server: UDPEchoServer
) -> None:
    with (
        _udp_socket(microsocks) as sock,
        pytest.raises(errors.SOCKS5CommandNotSupportedError) as info,
    ):
        sock.sendto(b"x", ("127.0.0.1", udp_echo_server.port))
    assert info.value.reply_code == 7


# ---------------------------------------------------------------------------
# The association's life: close() on our side, the proxy ending it


def _closed_association_lines(log: str, relay_port: int) -> list[str]:
    """Dante's end-of-session lines for the association with that relay port."""
    pattern = re.compile(
        r"udp/udpassociate \]: .*127\.0\.0\.1\.\d+ "
        rf"127\.0\.0\.1\.{relay_port} .*local client closed"
    )
    return [line for line in log.splitlines() if pattern.search(line)]


def test_close_ends_the_association_and_leaks_nothing(
    dante: ProxyServer, udp_echo_server: UDPEchoServer, fd_count: Callable[[], int]
) -> None:
    mark = dante.log_size()
    # One association first, so that lazily created state (imports, the
    # resolver...) does not count as a leak.
    with _udp_socket(dante) as warm:
        warm.sendto(b"warm", ("127.0.0.1", udp_echo_server.port))
        warm.recvfrom(16)
    baseline = fd_count()
    relay_ports = []
    for i in range(5):
        sock = _udp_socket(dante)
        sock.sendto(b"%d" % i, ("127.0.0.1", udp_echo_server.port))
        assert sock.recvfrom(16)[0] == b"%d" % i
        relay = sock.get_proxy_sockname()
        assert relay is not None
        relay_ports.append(relay[1])
        assert fd_count() >= baseline + 2  # the UDP socket and its control connection
        sock.close()
        assert sock.fileno() == -1
    assert fd_count() == baseline
    # Dante saw each control connection close (and says so in its log).
    log = dante.wait_for_log(
        lambda text: all(_closed_association_lines(text, p) for p in relay_ports), mark
    )
    for port in relay_ports:
        assert _closed_association_lines(log, port), f"no end of association {port}:\n{log}"
    # And a new association still works.
    with _udp_socket(dante) as sock:
        sock.sendto(b"again", ("127.0.0.1", udp_echo_server.port))
        assert sock.recvfrom(16)[0] == b"again"


def test_proxy_ending_the_association_raises(
    dante_udp_idle: ProxyServer, udp_echo_server: UDPEchoServer
) -> None:
    with _udp_socket(dante_udp_idle) as sock:
        sock.sendto(b"alive", ("127.0.0.1", udp_echo_server.port))
        assert sock.recvfrom(16)[0] == b"alive"
        # Stay silent: Dante ends the association and closes the control
        # connection; a recvfrom blocked meanwhile must notice.
        started = time.monotonic()
        with pytest.raises(errors.UDPAssociationClosedError) as info:
            sock.recvfrom(16)
        waited = time.monotonic() - started
        assert waited < TIMEOUT, "recvfrom waited for its timeout, not for the proxy"
        assert waited > DANTE_UDP_IDLE_TIMEOUT - 0.5
        assert isinstance(info.value, errors.ProxyError)
        assert isinstance(info.value, OSError)
        # Every later operation raises it too.
        with pytest.raises(errors.UDPAssociationClosedError):
            sock.sendto(b"too late", ("127.0.0.1", udp_echo_server.port))
        with pytest.raises(errors.UDPAssociationClosedError):
            sock.recvfrom(16)


# ---------------------------------------------------------------------------
# A real application: DNS queries with dnspython, answered by dnsmasq


def _nonblocking_from_the_start(sock: socks5client.socksocket, dns_server: DNSServer) -> None:
    # What dnspython asks for; the association is made by its first sendto.
    sock.setblocking(False)


def _nonblocking_after_connect(sock: socks5client.socksocket, dns_server: DNSServer) -> None:
    sock.connect((dns_server.host, dns_server.port))
    sock.setblocking(False)


PREPARATIONS: dict[str, Callable[[socks5client.socksocket, DNSServer], None]] = {
    "nonblocking-first": _nonblocking_from_the_start,
    "connect-then-nonblocking": _nonblocking_after_connect,
}


def _dnsmasq_sources(dns_server: DNSServer, name: str) -> list[int]:
    """The source ports of the queries dnsmasq logged for ``name``."""
    pattern = re.compile(rf"127\.0\.0\.1/(\d+) query\[\w+\] {re.escape(name)} from")
    return [int(m.group(1)) for m in pattern.finditer(dns_server.log_text())]


def _query(
    sock: socks5client.socksocket, dns_server: DNSServer, name: str, rdtype: str
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=TIMEOUT, sock=sock)


@pytest.mark.parametrize("prepare", list(PREPARATIONS), ids=list(PREPARATIONS))
@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_dnspython_query_through_dante(
    server: ProxyServer, prepare: str, dnsmasq: DNSServer
) -> None:
    with _udp_socket(server) as sock:
        PREPARATIONS[prepare](sock, dnsmasq)
        answer = _query(sock, dnsmasq, DNS_NAME, "A")
        assert answer.rcode() == dns.rcode.NOERROR
        addresses = [rr.address for rrset in answer.answer for rr in rrset]
        assert addresses == [DNS_A]

        answer6 = _query(sock, dnsmasq, DNS_NAME, "AAAA")
        assert [rr.address for rrset in answer6.answer for rr in rrset] == [DNS_AAAA]
        assert answer6.answer[0].rdtype == dns.rdatatype.AAAA

        missing = _query(sock, dnsmasq, DNS_MISSING, "A")
        assert missing.rcode() == dns.rcode.NXDOMAIN
        assert not missing.answer

        # dnsmasq heard the queries from Dante's relay, not from our socket.
        local_port = sock.getsockname()[1]
        sources = _dnsmasq_sources(dnsmasq, DNS_MISSING)
        assert sources, dnsmasq.log_text()[-2000:]
        assert local_port not in sources


def test_dnspython_ipv6_socket_through_dante(dante: ProxyServer, dnsmasq: DNSServer) -> None:
    # An AF_INET6 socket (relay on ::1) querying dnsmasq on ::1.  (dnspython
    # compares reply addresses in the socket's family, so an AF_INET6 socket
    # cannot query an IPv4 server by its IPv4 address: its own limitation.)
    with _udp_socket(dante, family=socket.AF_INET6) as sock:
        sock.setblocking(False)
        query = dns.message.make_query(DNS_NAME, "A")
        answer = dns.query.udp(query, dnsmasq.host6, port=dnsmasq.port, timeout=TIMEOUT, sock=sock)
    assert [rr.address for rrset in answer.answer for rr in rrset] == [DNS_A]


# ---------------------------------------------------------------------------
# sendmsg/recvmsg, dup() and MSG_DONTWAIT through a real relay


@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_sendmsg_recvmsg_through_dante(server: ProxyServer, udp_echo_server: UDPEchoServer) -> None:
    before = udp_echo_server.count()
    echo = ("127.0.0.1", udp_echo_server.port)
    with _udp_socket(server) as sock:
        assert sock.sendmsg([b"gather ", b"and ", memoryview(b"scatter")], [], 0, echo) == 18
        assert sock.recvmsg(65535) == (b"gather and scatter", [], 0, echo)
        sock.connect(echo)
        assert sock.sendmsg([b"0123456789"]) == 10
        data, ancdata, flags, source = sock.recvmsg(4)
        assert (data, ancdata, source) == (b"0123", [], echo)
        assert flags & socket.MSG_TRUNC
        first, second = bytearray(2), bytearray(10)
        sock.sendmsg([b"abcdef"])
        assert sock.recvmsg_into([first, second]) == (6, [], 0, echo)
        assert bytes(first) + bytes(second[:4]) == b"abcdef"
        heard = udp_echo_server.sources_since(before)
        assert len(heard) == 3, heard
        for source in heard:
            _check_not_from(source, sock)


def test_dup_shares_one_dante_association(
    dante: ProxyServer, udp_echo_server: UDPEchoServer, fd_count: Callable[[], int]
) -> None:
    echo = ("127.0.0.1", udp_echo_server.port)
    mark = dante.log_size()
    baseline = fd_count()
    sock = _udp_socket(dante)
    sock.sendto(b"original", echo)
    assert sock.recvfrom(100) == (b"original", echo)
    relay = sock.get_proxy_sockname()
    assert relay is not None
    twin = sock.dup()
    assert twin.get_proxy_sockname() == relay
    assert twin.getsockname() == sock.getsockname()
    before = udp_echo_server.count()
    twin.sendto(b"twin", echo)
    assert twin.recvfrom(100) == (b"twin", echo)
    sock.close()
    # The association outlives the original: Dante still relays for the twin.
    twin.sendto(b"after close", echo)
    assert twin.recvfrom(100) == (b"after close", echo)
    for source in udp_echo_server.sources_since(before):
        _check_not_from(source, twin)
    twin.close()
    log = dante.wait_for_log(lambda text: bool(_closed_association_lines(text, relay[1])), mark)
    assert len(_closed_association_lines(log, relay[1])) == 1, log
    assert fd_count() == baseline


def test_msg_dontwait_on_a_blocking_socket_through_dante(
    dante: ProxyServer, udp_echo_server: UDPEchoServer
) -> None:
    echo = ("127.0.0.1", udp_echo_server.port)
    # A timeout rather than None, so that a call that does wait fails the
    # test instead of hanging it; MSG_DONTWAIT must not wait either way.
    with _udp_socket(dante, timeout=TIMEOUT) as sock:
        sock.sendto(b"warm-up", echo)
        assert sock.recvfrom(100) == (b"warm-up", echo)
        for receive in (
            lambda: sock.recvfrom(100, socket.MSG_DONTWAIT),
            lambda: sock.recv_into(bytearray(100), 0, socket.MSG_DONTWAIT),
            lambda: sock.recvmsg(100, 0, socket.MSG_DONTWAIT),
        ):
            started = time.monotonic()
            with pytest.raises(BlockingIOError):
                receive()
            assert time.monotonic() - started < 0.3
        assert sock.gettimeout() == TIMEOUT
        sock.sendto(b"later", echo)
        assert select.select([sock], [], [], TIMEOUT)[0]
        assert sock.recvfrom(100, socket.MSG_DONTWAIT) == (b"later", echo)
