"""BIND against real servers: Dante, plus FTP active mode as a real application.

On a proxied TCP socksocket ``bind()`` is local; ``listen()`` (unbound, or
bound to a non-loopback address) sends the SOCKS5 BIND for any peer, and
``proxy_bind(expected_peer)`` sends it at once for one expected peer.

What was seen here (Debian 12, Dante 1.4.2):

* the first reply carries 127.0.0.1 (or ::1 for an IPv6 client) and a port
  that accepts; the second reply, when a peer connects, its real address;
* with a specific DST.ADDR, a peer from another address makes the second
  reply REP 2 (Dante logs "expected bindreply from ..., but got it from");
* microsocks answers BIND with REP 7; ``ssh -D`` closes the connection
  without a reply.

For FTP, ``ftplib`` in active mode is routed through Dante the way a user
would do it today: ``set_default_proxy`` and ``wrap_module(ftplib)`` (or
``socket.socket = socksocket``).  Its ``socket.create_server(("", 0))``
binds locally to the wildcard, and the ``listen()`` that follows becomes a
SOCKS BIND; the PORT command names Dante's BIND port.  pyftpdlib accepts
that PORT without ``permit_foreign_addresses``, since the address in it
(our local 127.0.0.1) equals the control connection's peer as pyftpdlib
sees it (Dante's external 127.0.0.1).  With ``source_address`` the control
connection (and passive data connections) bind locally first, then CONNECT
through Dante from there.
"""

from __future__ import annotations

import errno
import ftplib
import io
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

import pytest

import socks5client
from socks5client import errors

if TYPE_CHECKING:
    from .conftest import FTPServerProcess, ProxyServer

pytestmark = pytest.mark.interop

TIMEOUT = 5.0
#: How much later than its timeout a waiting accept() may give up.
TIMEOUT_MARGIN = 1.0


def _proxied_socket(
    server: ProxyServer, *, family: int = socket.AF_INET, timeout: float | None = TIMEOUT
) -> socks5client.socksocket:
    sock = socks5client.socksocket(family, socket.SOCK_STREAM)
    sock.set_proxy(server.url(ipv6=family == socket.AF_INET6))
    sock.settimeout(timeout)
    return sock


def _bind_socket(
    server: ProxyServer,
    expected_peer: tuple[str, int] | None = None,
    *,
    family: int = socket.AF_INET,
    timeout: float | None = TIMEOUT,
) -> socks5client.socksocket:
    """A socket whose BIND is done: ``listen()`` for any peer, else ``proxy_bind``."""
    sock = _proxied_socket(server, family=family, timeout=timeout)
    if expected_peer is None:
        sock.listen()
    else:
        sock.proxy_bind(expected_peer)
    return sock


def _connect_peer(address: Any, source: str | None = None) -> socket.socket:
    """A plain socket connected to ``address`` (where the proxy listens for us)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    peer = socket.socket(family, socket.SOCK_STREAM)
    peer.settimeout(TIMEOUT)
    if source is not None:
        peer.bind((source, 0))
    peer.connect(address[:2])
    return peer


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(65536, size - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _exchange(a: socket.socket, b: socket.socket, size: int) -> None:
    """Send ``size`` random bytes each way at once and check both arrive."""
    a_to_b, b_to_a = os.urandom(size), os.urandom(size)
    failures: list[BaseException] = []

    def send(sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)

    senders = [
        threading.Thread(target=send, args=(a, a_to_b), daemon=True),
        threading.Thread(target=send, args=(b, b_to_a), daemon=True),
    ]
    for thread in senders:
        thread.start()
    got_at_b = _read_exactly(b, size)
    got_at_a = _read_exactly(a, size)
    for thread in senders:
        thread.join(TIMEOUT)
    assert not failures, failures
    assert got_at_b == a_to_b
    assert got_at_a == b_to_a


# ---------------------------------------------------------------------------
# Dante


@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_first_reply_names_a_loopback_port_that_accepts(server: ProxyServer) -> None:
    with _proxied_socket(server) as sock:
        sock.bind(("0.0.0.0", 0))  # local: Dante hears nothing yet
        local_port = sock.getsockname()[1]
        assert sock.getsockname() == ("0.0.0.0", local_port)
        assert sock.get_proxy_sockname() is None
        sock.listen(1)
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port not in (0, server.port, local_port)
        assert sock.get_proxy_sockname() == (host, port)
        assert sock.get_proxy_peername() == (server.host, server.port)
        sock.listen(1)  # the BIND is done: nothing more to do
        with _connect_peer((host, port)) as peer:
            conn, address = sock.accept()
            with conn:
                assert address == peer.getsockname()


@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_peer_and_client_exchange_data(server: ProxyServer) -> None:
    with _bind_socket(server) as sock:
        peer = _connect_peer(sock.getsockname())
        conn, address = sock.accept()
        with peer, conn:
            # accept() reports the peer's real address, and so does conn.
            assert address == peer.getsockname()
            assert conn.getpeername() == address
            assert isinstance(conn, socket.socket)
            conn.settimeout(TIMEOUT)
            _exchange(conn, peer, 256 * 1024)
            # A close on either side reaches the other.
            peer.shutdown(socket.SHUT_WR)
            assert conn.recv(16) == b""
            conn.sendall(b"last words")
            conn.close()
            assert _read_exactly(peer, 64) == b"last words"


def test_ipv6_client_through_dante_ipv6_listener(dante: ProxyServer) -> None:
    # Expecting a peer from ::1 (any port): see the next test for "::".
    with _bind_socket(dante, ("::1", 0), family=socket.AF_INET6) as sock:
        where = sock.getsockname()
        assert where[0] == "::1"
        assert where[1] not in (0, dante.port)
        peer = _connect_peer(where)
        conn, address = sock.accept()
        with peer, conn:
            assert address[:2] == peer.getsockname()[:2]
            conn.settimeout(TIMEOUT)
            _exchange(conn, peer, 16 * 1024)


@pytest.mark.parametrize(
    "how",
    ["listen", "bind-wildcard-listen", "bind-empty-host-listen", "proxy_bind", "proxy_bind-any"],
)
def test_dante_refuses_ipv6_bind_for_any_peer(dante: ProxyServer, how: str) -> None:
    # A quirk of Dante, asserted as seen: DST [::]:0 ("any peer") over IPv6
    # gets REP 3, "could not get address to use on external side", unless
    # the config has "external.rotation: same-same" (which would break
    # CONNECT from 127.0.0.1 to ::1, so the fixture does not set it).
    # Every way of asking for any peer on an AF_INET6 socket sends it.
    sock = _proxied_socket(dante, family=socket.AF_INET6)
    if how == "bind-wildcard-listen":
        sock.bind(("::", 0))
    elif how == "bind-empty-host-listen":
        sock.bind(("", 0))
    call: Callable[[], object]
    if how.startswith("proxy_bind"):
        call = sock.proxy_bind if how == "proxy_bind" else lambda: sock.proxy_bind(("::", 0))
    else:
        call = sock.listen
    with pytest.raises(errors.SOCKS5NetworkUnreachableError) as info:
        call()
    assert info.value.reply_code == 3
    assert sock.fileno() == -1


def test_accept_times_out(dante: ProxyServer) -> None:
    timeout = 0.5
    with _bind_socket(dante, timeout=timeout) as sock:
        started = time.monotonic()
        with pytest.raises(errors.ProxyTimeoutError) as info:
            sock.accept()
        waited = time.monotonic() - started
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, socket.timeout)
    assert timeout - 0.05 <= waited < timeout + TIMEOUT_MARGIN


def test_accept_after_a_timeout_still_gets_the_peer(dante: ProxyServer) -> None:
    # The proxy sent nothing before the timeout, so the BIND is still good.
    with _bind_socket(dante, timeout=0.2) as sock:
        with pytest.raises(errors.ProxyTimeoutError):
            sock.accept()
        sock.settimeout(TIMEOUT)
        peer = _connect_peer(sock.getsockname())
        conn, address = sock.accept()
        with peer, conn:
            assert address == peer.getsockname()
            conn.sendall(b"ping")
            assert _read_exactly(peer, 4) == b"ping"


def test_expected_peer_address_and_port(dante: ProxyServer) -> None:
    # DST names the one peer that may connect: its address and port.
    peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    peer.settimeout(TIMEOUT)
    peer.bind(("127.0.0.1", 0))
    with peer, _bind_socket(dante, peer.getsockname()) as sock:
        peer.connect(sock.getsockname())
        conn, address = sock.accept()
        with conn:
            assert address == peer.getsockname()
            peer.sendall(b"expected")
            assert _read_exactly(conn, 8) == b"expected"


def test_proxy_bind_restricts_the_peer_and_listen_takes_any(dante: ProxyServer) -> None:
    # proxy_bind: Dante waits for 127.0.0.2; the peer comes from 127.0.0.1: REP 2.
    with _bind_socket(dante, ("127.0.0.2", 0)) as sock:
        peer = _connect_peer(sock.getsockname(), source="127.0.0.1")
        with peer, pytest.raises(errors.SOCKS5ConnectionNotAllowedError) as info:
            sock.accept()
        assert info.value.reply_code == 2
        assert sock.fileno() == -1
    # listen(): the same peer address and another one are both let through.
    for source in ["127.0.0.1", "127.0.0.2"]:
        with _proxied_socket(dante) as sock:
            sock.bind(("0.0.0.0", 0))
            sock.listen()
            peer = _connect_peer(sock.getsockname(), source=source)
            conn, address = sock.accept()
            with peer, conn:
                assert address == peer.getsockname()
                assert address[0] == source
                peer.sendall(b"any peer")
                assert _read_exactly(conn, 8) == b"any peer"


def test_second_accept_raises(dante: ProxyServer) -> None:
    with _bind_socket(dante) as sock:
        peer = _connect_peer(sock.getsockname())
        conn, _ = sock.accept()
        with peer, conn:
            with pytest.raises(OSError) as info:
                sock.accept()
            assert info.value.errno == errno.EINVAL  # as documented (was EBADF)
            # The first connection is not disturbed by it.
            conn.sendall(b"fine")
            assert _read_exactly(peer, 4) == b"fine"


def test_no_descriptor_leaks(dante: ProxyServer, fd_count: Callable[[], int]) -> None:
    def one_round() -> None:
        with _bind_socket(dante) as sock:
            peer = _connect_peer(sock.getsockname())
            conn, _ = sock.accept()
            with peer, conn:
                conn.sendall(b"x" * 1000)
                assert len(_read_exactly(peer, 1000)) == 1000
        # And a BIND that times out.
        with _bind_socket(dante) as sock, pytest.raises(errors.ProxyTimeoutError):
            sock.settimeout(0.05)
            sock.accept()
        # And one refused by the proxy (REP 2).
        with _bind_socket(dante, ("127.0.0.2", 0)) as sock:
            peer = _connect_peer(sock.getsockname())
            with peer, pytest.raises(errors.SOCKS5Error):
                sock.accept()

    one_round()  # warm-up: lazily created state is not a leak
    baseline = fd_count()
    for _ in range(5):
        one_round()
    assert fd_count() == baseline


# ---------------------------------------------------------------------------
# Servers without BIND


@pytest.mark.parametrize("how", ["listen", "proxy_bind"])
def test_microsocks_refuses_bind(microsocks: ProxyServer, how: str) -> None:
    sock = _proxied_socket(microsocks)
    sock.bind(("0.0.0.0", 0))  # local: succeeds whatever the proxy supports
    with pytest.raises(errors.SOCKS5CommandNotSupportedError) as info:
        sock.listen() if how == "listen" else sock.proxy_bind()
    assert info.value.reply_code == 7
    assert sock.fileno() == -1


@pytest.mark.parametrize("how", ["listen", "proxy_bind"])
def test_ssh_closes_on_bind(ssh_socks: ProxyServer, how: str) -> None:
    sock = _proxied_socket(ssh_socks)
    with pytest.raises(errors.ProxyProtocolError) as info:
        sock.listen() if how == "listen" else sock.proxy_bind()
    assert not isinstance(info.value, errors.SOCKS5Error)
    assert sock.fileno() == -1


# ---------------------------------------------------------------------------
# A real application: ftplib in active mode against pyftpdlib, via Dante


@pytest.fixture(params=["wrap_module", "assign_socket"])
def ftplib_through_dante(
    request: pytest.FixtureRequest, dante: ProxyServer, ftp_server: FTPServerProcess
) -> Iterator[ProxyServer]:
    """ftplib's sockets (so socket.socket, process-wide) go through Dante.

    The two ways a user does that today with a PySocks-style API; both
    replace ``socket.socket`` itself, restored afterwards.
    """
    original_socket = socket.socket
    previous_default = socks5client.get_default_proxy()
    socks5client.set_default_proxy(dante.url())
    try:
        if request.param == "wrap_module":
            socks5client.wrap_module(ftplib)
        else:
            socket.socket = socks5client.socksocket  # type: ignore[misc]
        # ftplib.socket is the socket module itself.
        assert issubclass(socket.socket, socks5client.socksocket)
        yield dante
    finally:
        socks5client.unpatch()  # what wrap_module did
        socket.socket = original_socket  # type: ignore[misc]
        socks5client.set_default_proxy(previous_default)


def _bind_ports_used(log: str) -> set[int]:
    """Ports on which Dante accepted a peer for a BIND (its bindreply lines)."""
    return {
        int(m.group(1)) for m in re.finditer(r"tcp/bindreply \[: \S+ 127\.0\.0\.1\.(\d+) ", log)
    }


def _connects_to(log: str, port: int) -> int:
    return len(re.findall(rf"tcp/connect \[: .* 127\.0\.0\.1\.{port}\b", log))


@pytest.mark.parametrize(
    "source_address", [None, ("127.0.0.1", 0)], ids=["no-source", "source-address"]
)
@pytest.mark.parametrize("pasv", [False, True], ids=["active", "passive"])
def test_ftplib_through_dante(
    ftplib_through_dante: ProxyServer,
    ftp_server: FTPServerProcess,
    pasv: bool,
    source_address: tuple[str, int] | None,
) -> None:
    dante = ftplib_through_dante
    mark = dante.log_size()
    announced_before = len(ftp_server.announced())
    download = os.urandom(100 * 1024)
    upload = os.urandom(100 * 1024 + 17)
    (ftp_server.root / "download.bin").write_bytes(download)
    upload_name = f"upload-{'pasv' if pasv else 'port'}.bin"

    with ftplib.FTP(timeout=TIMEOUT, source_address=source_address) as ftp:
        # With source_address this is socket.create_connection(...,
        # source_address=...): a local bind, then CONNECT from there.
        ftp.connect(ftp_server.host, ftp_server.port)
        assert isinstance(ftp.sock, socks5client.socksocket)
        assert ftp.sock.getpeername() == (ftp_server.host, ftp_server.port)
        assert ftp.sock.get_proxy_peername() == (dante.host, dante.port)
        if source_address is not None:
            assert ftp.sock.getsockname()[0] == source_address[0]
        ftp.login(ftp_server.user, ftp_server.password)
        ftp.set_pasv(pasv)

        received = bytearray()
        ftp.retrbinary("RETR download.bin", received.extend)
        assert bytes(received) == download

        ftp.storbinary(f"STOR {upload_name}", io.BytesIO(upload))
        listing: list[str] = []
        ftp.retrlines("LIST", listing.append)
        assert any(line.endswith(" download.bin") for line in listing), listing
        assert any(line.endswith(f" {upload_name}") for line in listing), listing
        ftp.voidcmd("TYPE I")  # LIST left ASCII mode on; SIZE wants binary
        assert ftp.size(upload_name) == len(upload)
        ftp.quit()
    assert (ftp_server.root / upload_name).read_bytes() == upload

    announced = ftp_server.announced()[announced_before:]
    if pasv:
        # Data connections are CONNECTs through Dante; no PORT at all.
        assert announced == []
        log = dante.wait_for_log(lambda text: _connects_to(text, ftp_server.port) >= 1, mark)
        assert _connects_to(log, ftp_server.port) == 1, log
        return

    # Active mode: three data connections (RETR, STOR, LIST), each announced
    # with PORT, each to a port where Dante accepted pyftpdlib's connection
    # for one of our BINDs.
    assert [kind for kind, _, _ in announced] == ["PORT"] * 3, announced
    assert {host for _, host, _ in announced} == {"127.0.0.1"}
    ports = {port for _, _, port in announced}
    log = dante.wait_for_log(lambda text: ports <= _bind_ports_used(text), mark)
    assert ports <= _bind_ports_used(log), log
    # The control connection went through Dante too (a CONNECT to the FTP port).
    assert _connects_to(log, ftp_server.port) == 1, log
