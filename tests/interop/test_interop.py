"""socks5client against real SOCKS5 servers: microsocks, Dante and ``ssh -D``.

The matrix crosses every server with every kind of destination (IPv4
literal, IPv6 literal, a hostname resolved by the proxy, a hostname resolved
here), each time moving 64 KiB through the tunnel and checking the
addresses the socket reports.  Around it: authentication, the error each
server gives for a refused port, ``create_connection``, an IPv6 proxy
address, and a side-by-side run with PySocks.

What each server was seen to do here (Debian 12) is asserted as such:
all three reach ::1; microsocks and ``ssh -D`` report BND 0.0.0.0:0 while
Dante reports the address it connected from; ``ssh -D`` answers a refused
port by closing the connection without a reply.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import socks  # type: ignore[import-untyped]  # PySocks, for comparison

import socks5client
from socks5client import errors

if TYPE_CHECKING:
    from .conftest import EchoServer, ProxyServer

pytestmark = pytest.mark.interop

TIMEOUT = 10.0
PAYLOAD_SIZE = 64 * 1024

ALL_SERVERS = ["microsocks", "microsocks_auth", "dante", "dante_auth", "ssh_socks"]
AUTH_SERVERS = ["microsocks_auth", "dante_auth"]
NO_AUTH_SERVERS = ["microsocks", "dante", "ssh_socks"]
#: Servers that answer a refused destination with REP 5.
REPLYING_SERVERS = ["microsocks", "microsocks_auth", "dante", "dante_auth"]


@dataclass(frozen=True)
class Destination:
    id: str
    host: str
    remote_dns: bool
    #: The address the echo server must see the proxy come from (None: either family).
    seen_from: str | None


DESTINATIONS = [
    Destination("ipv4-literal", "127.0.0.1", True, "127.0.0.1"),
    Destination("ipv6-literal", "::1", True, "::1"),
    Destination("hostname-remote-dns", "localhost", True, None),
    Destination("hostname-local-dns", "localhost", False, None),
]


def _proxied_socket(
    server: ProxyServer,
    *,
    remote_dns: bool = True,
    password: str | None = None,
    family: int = socket.AF_INET,
    host: str | None = None,
) -> socks5client.socksocket:
    sock = socks5client.socksocket(family, socket.SOCK_STREAM)
    sock.set_proxy(
        socks5client.SOCKS5,
        host or server.host,
        server.port,
        rdns=remote_dns,
        username=server.username,
        password=password if password is not None else server.password,
    )
    sock.settimeout(TIMEOUT)
    return sock


def _echo_roundtrip(sock: socket.socket, size: int = PAYLOAD_SIZE) -> None:
    """Send ``size`` random bytes and read exactly them back."""
    payload = os.urandom(size)
    send_errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(payload)
        except BaseException as exc:  # reported below, in the test's thread
            send_errors.append(exc)

    # Send from a thread: the echo comes back while we are still sending.
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = bytearray()
    while len(received) < size:
        chunk = sock.recv(min(65536, size - len(received)))
        if not chunk:
            break
        received += chunk
    sender.join(TIMEOUT)
    assert not send_errors, send_errors
    assert len(received) == size, f"echo stopped after {len(received)} of {size} bytes"
    assert bytes(received) == payload


def _is_loopback(host: Any) -> bool:
    return ipaddress.ip_address(str(host).split("%")[0]).is_loopback


def _check_proxy_sockname(server: ProxyServer, bnd: Any, echo_peer: tuple[Any, ...]) -> None:
    """BND.ADDR/BND.PORT as each server reports them."""
    assert isinstance(bnd, tuple) and len(bnd) == 2, bnd
    assert isinstance(bnd[0], str) and isinstance(bnd[1], int), bnd
    ipaddress.ip_address(bnd[0])
    if server.name.startswith("dante"):
        # Dante reports the address it connected from: the echo server's peer.
        assert bnd == (echo_peer[0], echo_peer[1])
    else:
        # microsocks and ssh -D always send 0.0.0.0:0.
        assert bnd == ("0.0.0.0", 0)


# ---------------------------------------------------------------------------
# The matrix: server x destination (x auth, through the *_auth servers)


@pytest.mark.parametrize("dest", DESTINATIONS, ids=[d.id for d in DESTINATIONS])
@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_connect_moves_data_and_reports_addresses(
    server: ProxyServer, dest: Destination, echo_server: EchoServer
) -> None:
    before = echo_server.peer_count()
    with _proxied_socket(server, remote_dns=dest.remote_dns) as sock:
        sock.connect((dest.host, echo_server.port))
        _echo_roundtrip(sock)

        assert sock.getpeername() == (dest.host, echo_server.port)
        assert sock.get_proxy_peername() == (server.host, server.port)
        peers = echo_server.peers_since(before)
        assert len(peers) == 1, peers
        echo_peer = peers[0]
        if dest.seen_from is not None:
            assert echo_peer[0] == dest.seen_from
        else:
            assert _is_loopback(echo_peer[0])
        _check_proxy_sockname(server, sock.get_proxy_sockname(), echo_peer)
        # The tunnel is the socket itself: timeout restored, still a socksocket.
        assert sock.gettimeout() == TIMEOUT


# ---------------------------------------------------------------------------
# Authentication


@pytest.mark.parametrize("server", AUTH_SERVERS, indirect=True)
def test_wrong_password_raises_auth_error(server: ProxyServer, echo_server: EchoServer) -> None:
    wrong = "definitely-not-the-password"
    sock = _proxied_socket(server, password=wrong)
    with pytest.raises(errors.SOCKS5AuthError) as info:
        sock.connect(("127.0.0.1", echo_server.port))
    assert sock.fileno() == -1, "the socket must be closed after a proxy error"
    assert wrong not in str(info.value)
    assert wrong not in repr(info.value)


@pytest.mark.parametrize("server", AUTH_SERVERS, indirect=True)
def test_missing_credentials_raise_auth_error(server: ProxyServer, echo_server: EchoServer) -> None:
    sock = socks5client.socksocket(socket.AF_INET)
    sock.set_proxy(socks5client.SOCKS5, server.host, server.port)
    sock.settimeout(TIMEOUT)
    with pytest.raises(errors.SOCKS5AuthError):
        sock.connect(("127.0.0.1", echo_server.port))


@pytest.mark.parametrize("server", NO_AUTH_SERVERS, indirect=True)
def test_credentials_offered_to_an_open_server_are_not_needed(
    server: ProxyServer, echo_server: EchoServer
) -> None:
    with socks5client.socksocket(socket.AF_INET) as sock:
        sock.set_proxy(
            socks5client.SOCKS5, server.host, server.port, username="nobody", password="x"
        )
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", echo_server.port))
        _echo_roundtrip(sock, 4096)


def test_url_with_percent_encoded_password(
    microsocks_auth: ProxyServer, echo_server: EchoServer
) -> None:
    url = microsocks_auth.url()
    assert "%" in url  # the password has ':', '@' and '/' in it
    with socks5client.socksocket(socket.AF_INET) as sock:
        sock.set_proxy(url)
        sock.settimeout(TIMEOUT)
        sock.connect(("localhost", echo_server.port))
        _echo_roundtrip(sock, 4096)


# ---------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("server", REPLYING_SERVERS, indirect=True)
def test_refused_port_raises_connection_refused(server: ProxyServer, refused_port: int) -> None:
    sock = _proxied_socket(server)
    with pytest.raises(errors.SOCKS5ConnectionRefusedError) as info:
        sock.connect(("127.0.0.1", refused_port))
    assert info.value.reply_code == 5
    assert isinstance(info.value, ConnectionRefusedError)
    assert sock.fileno() == -1


@pytest.mark.parametrize("server", REPLYING_SERVERS, indirect=True)
def test_refused_port_through_connect_ex_returns_econnrefused(
    server: ProxyServer, refused_port: int
) -> None:
    sock = _proxied_socket(server)
    assert sock.connect_ex(("127.0.0.1", refused_port)) == errno.ECONNREFUSED


def test_ssh_closes_without_reply_on_refused_port(
    ssh_socks: ProxyServer, refused_port: int
) -> None:
    # ssh -D answers a failed channel open by closing the connection, with
    # no reply code: a protocol error of the proxy, not a SOCKS5Error.
    sock = _proxied_socket(ssh_socks)
    with pytest.raises(errors.ProxyProtocolError) as info:
        sock.connect(("127.0.0.1", refused_port))
    assert not isinstance(info.value, errors.SOCKS5Error)
    assert sock.fileno() == -1


# ---------------------------------------------------------------------------
# create_connection, IPv6 proxy address


@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_create_connection_through_each_server(
    server: ProxyServer, echo_server: EchoServer
) -> None:
    sock = socks5client.create_connection(
        ("127.0.0.1", echo_server.port), timeout=TIMEOUT, proxy=server.url()
    )
    with sock:
        assert isinstance(sock, socks5client.socksocket)
        assert sock.gettimeout() == TIMEOUT
        assert sock.getpeername() == ("127.0.0.1", echo_server.port)
        _echo_roundtrip(sock)


@pytest.mark.parametrize("server", REPLYING_SERVERS, indirect=True)
def test_create_connection_refused_port(server: ProxyServer, refused_port: int) -> None:
    with pytest.raises(errors.SOCKS5ConnectionRefusedError):
        socks5client.create_connection(
            ("127.0.0.1", refused_port), timeout=TIMEOUT, proxy=server.url()
        )


@pytest.mark.parametrize("dest", DESTINATIONS, ids=[d.id for d in DESTINATIONS])
def test_ipv6_socket_reaches_dante_on_ipv6_loopback(
    dante: ProxyServer, dest: Destination, echo_server: EchoServer
) -> None:
    assert dante.host6 == "::1"
    with _proxied_socket(
        dante, remote_dns=dest.remote_dns, family=socket.AF_INET6, host=dante.host6
    ) as sock:
        sock.connect((dest.host, echo_server.port))
        _echo_roundtrip(sock)
        assert sock.get_proxy_peername()[:2] == ("::1", dante.port)
        # An AF_INET6 socket's addresses are 4-tuples, as on a plain socket.
        assert sock.getpeername() == (dest.host, echo_server.port, 0, 0)


@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_create_connection_with_bracketed_ipv6_proxy_url(
    server: ProxyServer, echo_server: EchoServer
) -> None:
    url = server.url(ipv6=True)
    assert "[::1]" in url
    with socks5client.create_connection(
        ("::1", echo_server.port), timeout=TIMEOUT, proxy=url
    ) as sock:
        assert isinstance(sock, socks5client.socksocket)
        assert sock.family == socket.AF_INET6
        assert sock.get_proxy_peername()[:2] == ("::1", server.port)
        _echo_roundtrip(sock)


# ---------------------------------------------------------------------------
# Side by side with PySocks


@pytest.mark.parametrize("server", ["microsocks_auth", "dante_auth"], indirect=True)
def test_pysocks_and_socks5client_reach_the_same_echo(
    server: ProxyServer, echo_server: EchoServer
) -> None:
    before = echo_server.peer_count()
    theirs = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
    theirs.set_proxy(socks.SOCKS5, server.host, server.port, True, server.username, server.password)
    theirs.settimeout(TIMEOUT)
    ours = _proxied_socket(server)
    with theirs, ours:
        theirs.connect(("localhost", echo_server.port))
        ours.connect(("localhost", echo_server.port))
        _echo_roundtrip(theirs, 4096)
        _echo_roundtrip(ours, 4096)
        assert ours.getpeername() == theirs.getpeername() == ("localhost", echo_server.port)
        # Both report the server's BND.ADDR (each connection has its own port).
        bnd = ours.get_proxy_sockname()
        assert bnd is not None
        assert bnd[0] == theirs.get_proxy_sockname()[0]
    assert len(echo_server.peers_since(before)) == 2


@pytest.mark.parametrize("server", AUTH_SERVERS, indirect=True)
def test_auth_failure_pysocks_wraps_it_we_do_not(
    server: ProxyServer, echo_server: EchoServer
) -> None:
    # PySocks' connect() catches its own SOCKS5AuthError as a socket.error and
    # re-raises it as GeneralProxyError("Socket error", ...); we raise
    # SOCKS5AuthError itself, which is not a GeneralProxyError.
    theirs = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
    theirs.set_proxy(socks.SOCKS5, server.host, server.port, True, server.username, "wrong")
    theirs.settimeout(TIMEOUT)
    with pytest.raises(socks.GeneralProxyError) as their_info:
        theirs.connect(("127.0.0.1", echo_server.port))
    assert not isinstance(their_info.value, socks.SOCKS5AuthError)
    assert isinstance(their_info.value.socket_err, socks.SOCKS5AuthError)

    ours = _proxied_socket(server, password="wrong")
    with pytest.raises(errors.SOCKS5AuthError) as our_info:
        ours.connect(("127.0.0.1", echo_server.port))
    assert not isinstance(our_info.value, errors.GeneralProxyError)
    assert isinstance(our_info.value, errors.ProxyError)
