"""socks5client's SOCKS BIND (``bind``/``listen``/``accept``) against the reference server.

With a proxy set, ``bind(address)`` on a TCP socksocket asks the proxy to
listen for one connection from ``address`` (any peer for 0.0.0.0/""),
``getsockname()`` says where the peer must connect, ``listen()`` is a
no-op and ``accept()`` waits for the proxy's second reply, then hands the
tunnel over as the accepted connection.  Failure replies, a proxy closing
or babbling between the replies, timeouts and non-blocking mode are
checked here, as is ``socket.create_server`` when ``socket.socket`` is a
socksocket.  Every test ends with no file descriptor left open.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import socks5client
from socks5client import errors

from conftest import FdCounter
from server import CMD_BIND, SocksServer, recv_exact

TIMEOUT = 2.0
#: Socket timeout for waits that must time out.
SHORT = 0.3
#: How late after its timeout a call may give up.
MARGIN = 0.5
#: Bytes sent each way through an accepted tunnel.
BIG = 1 << 20

FdCount = FdCounter
ScriptedServer = Callable[..., SocksServer]
MakeClient = Callable[..., socks5client.socksocket]


def _url(server: SocksServer, userinfo: str = "") -> str:
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    return f"socks5h://{userinfo}{shown}:{port}"


@pytest.fixture
def make_client(fd_count: FdCount) -> Iterator[MakeClient]:
    """``make_client(server, family=AF_INET, timeout=TIMEOUT, userinfo="")``:
    a TCP socksocket using ``server`` as proxy.  List it after the server
    fixtures; no fd may be left once its sockets are closed."""
    made: list[socks5client.socksocket] = []
    baseline: list[int] = []

    def make(
        server: SocksServer,
        family: int = socket.AF_INET,
        timeout: float | None = TIMEOUT,
        userinfo: str = "",
    ) -> socks5client.socksocket:
        if not baseline:
            baseline.append(fd_count())
        sock = socks5client.socksocket(family)
        made.append(sock)
        sock.set_proxy(_url(server, userinfo))
        sock.settimeout(timeout)
        return sock

    yield make
    for sock in made:
        sock.close()
    if baseline:
        assert fd_count.settle(baseline[0]) == baseline[0]


def _connect_peer(address: Any, source: str | None = None) -> socket.socket:
    """A plain TCP connection to the BIND address, optionally from ``source``."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    peer = socket.socket(family)
    try:
        peer.settimeout(TIMEOUT)
        if source is not None:
            peer.bind((source, 0))
        peer.connect(address[:2])
    except BaseException:
        peer.close()
        raise
    return peer


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _assert_tunnel(conn: socket.socket, peer: socket.socket, size: int = BIG) -> None:
    """``size`` bytes each way at once, then EOF each way."""
    to_peer, to_conn = os.urandom(size), os.urandom(size)
    senders = [
        threading.Thread(target=conn.sendall, args=(to_peer,)),
        threading.Thread(target=peer.sendall, args=(to_conn,)),
    ]
    received: dict[str, bytes] = {}
    reader = threading.Thread(target=lambda: received.update(peer=recv_exact(peer, size)))
    for thread in [*senders, reader]:
        thread.start()
    received["conn"] = recv_exact(conn, size)
    for thread in [*senders, reader]:
        thread.join(TIMEOUT * 5)
    assert received == {"peer": to_peer, "conn": to_conn}
    conn.shutdown(socket.SHUT_WR)
    assert _read_to_eof(peer) == b""
    peer.sendall(b"last words")
    peer.shutdown(socket.SHUT_WR)
    assert _read_to_eof(conn) == b"last words"


def _failure(
    call: Callable[[], object], expected: type[errors.ProxyError], limit: float = 1.0
) -> errors.ProxyError:
    """Run ``call``; it must raise exactly ``expected`` within ``limit`` seconds."""
    started = time.monotonic()
    with pytest.raises(errors.ProxyError) as info:
        call()
    elapsed = time.monotonic() - started
    exc = info.value
    del info
    assert type(exc) is expected, f"{type(exc).__name__}: {exc}"
    assert elapsed < limit, f"took {elapsed:.2f}s"
    assert isinstance(exc.errno, int)
    return exc


# --------------------------------------------------------------------------
# The happy path.
# --------------------------------------------------------------------------


def test_bind_reports_where_the_peer_must_connect(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.bind(("0.0.0.0", 0))
    record = socks_server.records[0]
    assert (record.command, record.dst_addr, record.dst_port) == (CMD_BIND, "0.0.0.0", 0)
    assert record.bind_address is not None
    assert sock.getsockname() == record.bind_address
    assert sock.get_proxy_sockname() == record.bind_address
    assert sock.get_proxy_peername() == socks_server.address
    assert sock.gettimeout() == TIMEOUT
    sock.listen(1)  # accepted, and changes nothing
    sock.listen()
    assert sock.getsockname() == record.bind_address
    with pytest.raises(OSError) as info:
        sock.getpeername()
    assert info.value.errno == errno.ENOTCONN


def test_empty_host_means_any_peer(socks_server: SocksServer, make_client: MakeClient) -> None:
    sock = make_client(socks_server)
    sock.bind(("", 0))
    assert (socks_server.records[0].dst_addr, socks_server.records[0].dst_port) == ("0.0.0.0", 0)


def test_accept_hands_over_the_tunnel_to_the_peer(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.bind(("0.0.0.0", 0))
    sock.listen(1)
    with _connect_peer(sock.getsockname()) as peer:
        conn, address = sock.accept()
        with conn:
            assert address == peer.getsockname()
            assert conn.getpeername() == address
            assert socks_server.records[0].peer_address == address
            # As socket.accept() does: blocking, whatever the listener's timeout.
            assert conn.gettimeout() is None
            _assert_tunnel(conn, peer)
    # One BIND serves one connection.
    assert sock.fileno() == -1
    with pytest.raises(OSError):
        sock.accept()


def test_peer_bytes_sent_before_accept_reach_the_connection(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.bind(("0.0.0.0", 0))
    with _connect_peer(sock.getsockname()) as peer:
        peer.sendall(b"early bytes")
        # Let them travel behind the second reply before accept() reads it.
        time.sleep(0.1)
        conn, _ = sock.accept()
        with conn:
            assert recv_exact(conn, 11) == b"early bytes"


def test_clearing_the_default_proxy_after_bind_does_not_break_accept(
    socks_server: SocksServer, fd_count: FdCount
) -> None:
    before = fd_count()
    previous = socks5client.get_default_proxy()
    socks5client.set_default_proxy(_url(socks_server))
    sock = socks5client.socksocket()
    try:
        sock.settimeout(TIMEOUT)
        sock.bind(("0.0.0.0", 0))
        socks5client.set_default_proxy(previous)
        with _connect_peer(sock.getsockname()) as peer:
            conn, address = sock.accept()
            with conn:
                assert address == peer.getsockname()
    finally:
        sock.close()
        socks5client.set_default_proxy(previous)
    assert fd_count.settle(before) == before


def test_bind_and_accept_on_ipv6(socks_server_v6: SocksServer, make_client: MakeClient) -> None:
    sock = make_client(socks_server_v6, socket.AF_INET6)
    sock.bind(("::", 0))
    host, port, *_ = sock.getsockname()
    assert (host, port) == socks_server_v6.records[0].bind_address
    assert host == "::1"
    assert len(sock.getsockname()) == 4
    with _connect_peer((host, port)) as peer:
        conn, address = sock.accept()
        with conn:
            assert address == (*peer.getsockname()[:2], 0, 0)
            _assert_tunnel(conn, peer, 65536)


def test_zero_bind_address_means_the_proxy_address(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    server = scripted_server(None, bind_reply_zero_address=True)
    sock = make_client(server)
    sock.bind(("0.0.0.0", 0))
    bound = server.records[0].bind_address
    assert bound is not None
    assert sock.getsockname() == ("127.0.0.1", bound[1])
    assert sock.get_proxy_sockname() == ("0.0.0.0", bound[1])
    with _connect_peer(sock.getsockname()) as peer:
        conn, _ = sock.accept()
        with conn:
            _assert_tunnel(conn, peer, 1000)


def test_bind_with_credentials(auth_server: SocksServer, make_client: MakeClient) -> None:
    sock = make_client(auth_server, userinfo="alice:s3cret@")
    sock.bind(("0.0.0.0", 0))
    with _connect_peer(sock.getsockname()) as peer:
        conn, _ = sock.accept()
        with conn:
            _assert_tunnel(conn, peer, 1000)
    assert auth_server.records[0].username == "alice"


# --------------------------------------------------------------------------
# The expected peer.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "source", "allowed"),
    [
        ("127.0.0.2", "127.0.0.2", True),
        ("127.0.0.2", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.1", True),
    ],
    ids=["same-ip", "other-ip", "loopback"],
)
def test_bind_address_restricts_the_peer(
    socks_server: SocksServer, make_client: MakeClient, expected: str, source: str, allowed: bool
) -> None:
    sock = make_client(socks_server)
    sock.bind((expected, 0))
    assert socks_server.records[0].dst_addr == expected
    with _connect_peer(sock.getsockname(), source) as peer:
        if allowed:
            conn, address = sock.accept()
            with conn:
                assert address == peer.getsockname()
                _assert_tunnel(conn, peer, 1000)
        else:
            exc = _failure(sock.accept, errors.SOCKS5ConnectionNotAllowedError)
            assert isinstance(exc, errors.SOCKS5Error) and exc.reply_code == 2
            assert sock.fileno() == -1
            assert _read_to_eof(peer) == b""


@pytest.mark.parametrize("same_port", [True, False], ids=["same-port", "other-port"])
def test_bind_port_restricts_the_peer(
    socks_server: SocksServer, make_client: MakeClient, same_port: bool
) -> None:
    sock = make_client(socks_server)
    with socket.socket() as peer:
        peer.settimeout(TIMEOUT)
        peer.bind(("127.0.0.1", 0))
        peer_port = peer.getsockname()[1]
        sock.bind(("127.0.0.1", peer_port if same_port else (peer_port % 60000) + 1024))
        peer.connect(sock.getsockname())
        if same_port:
            conn, address = sock.accept()
            with conn:
                assert address == ("127.0.0.1", peer_port)
        else:
            _failure(sock.accept, errors.SOCKS5ConnectionNotAllowedError)


# --------------------------------------------------------------------------
# Waiting for the peer: timeouts and non-blocking mode.
# --------------------------------------------------------------------------


def test_accept_timeout_then_retry_succeeds(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server, timeout=SHORT)
    sock.bind(("0.0.0.0", 0))
    started = time.monotonic()
    exc = _failure(sock.accept, errors.ProxyTimeoutError, SHORT + MARGIN)
    assert time.monotonic() - started >= SHORT * 0.9
    assert isinstance(exc, TimeoutError) and isinstance(exc, socket.timeout)
    assert exc.errno == errno.ETIMEDOUT
    # Nothing was received: the socket is still waiting, and may try again.
    assert sock.fileno() != -1
    with _connect_peer(sock.getsockname()) as peer:
        conn, address = sock.accept()
        with conn:
            assert address == peer.getsockname()
            _assert_tunnel(conn, peer, 1000)


def test_non_blocking_accept_raises_blocking_io_error_until_the_peer_comes(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    started = time.monotonic()
    with pytest.raises(BlockingIOError):
        sock.accept()
    assert time.monotonic() - started < 0.2
    with _connect_peer(sock.getsockname()) as peer:
        assert select.select([sock], [], [], TIMEOUT)[0]
        conn, address = sock.accept()
        with conn:
            assert address == peer.getsockname()
            conn.setblocking(True)
            _assert_tunnel(conn, peer, 1000)


def test_proxy_giving_up_waiting_is_ttl_expired(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    server = scripted_server(None, bind_timeout=SHORT)
    sock = make_client(server)
    sock.bind(("0.0.0.0", 0))
    exc = _failure(sock.accept, errors.SOCKS5TTLExpiredError, SHORT + MARGIN)
    assert isinstance(exc, errors.SOCKS5Error) and exc.reply_code == 6
    assert sock.fileno() == -1


# --------------------------------------------------------------------------
# Failure replies and misbehaviour.
# --------------------------------------------------------------------------

_REPLY_ERRORS = {
    1: errors.SOCKS5GeneralFailureError,
    2: errors.SOCKS5ConnectionNotAllowedError,
    4: errors.SOCKS5HostUnreachableError,
    5: errors.SOCKS5ConnectionRefusedError,
    7: errors.SOCKS5CommandNotSupportedError,
}


@pytest.mark.parametrize(("code", "expected"), sorted(_REPLY_ERRORS.items()))
def test_failure_in_first_reply_raises_from_bind(
    scripted_server: ScriptedServer,
    make_client: MakeClient,
    code: int,
    expected: type[errors.SOCKS5Error],
) -> None:
    server = scripted_server(None, bind_first_reply=code)
    sock = make_client(server)
    exc = _failure(lambda: sock.bind(("0.0.0.0", 0)), expected)
    assert isinstance(exc, errors.SOCKS5Error) and exc.reply_code == code
    assert sock.fileno() == -1


@pytest.mark.parametrize(("code", "expected"), sorted(_REPLY_ERRORS.items()))
def test_failure_in_second_reply_raises_from_accept(
    scripted_server: ScriptedServer,
    make_client: MakeClient,
    code: int,
    expected: type[errors.SOCKS5Error],
) -> None:
    server = scripted_server(None, bind_second_reply=code)
    sock = make_client(server)
    sock.bind(("0.0.0.0", 0))
    with _connect_peer(sock.getsockname()):
        exc = _failure(sock.accept, expected)
    assert isinstance(exc, errors.SOCKS5Error) and exc.reply_code == code
    assert sock.fileno() == -1


def test_listen_failure_on_the_proxy_is_general_failure(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    server = scripted_server(None, bind_host="192.0.2.1")  # not an address of ours
    sock = make_client(server)
    _failure(lambda: sock.bind(("0.0.0.0", 0)), errors.SOCKS5GeneralFailureError)


def test_failure_reply_does_not_show_the_password(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    password = "Bind-Pw-never-shown-4k"
    server = scripted_server(None, users={"bob": password}, bind_second_reply=5)
    sock = make_client(server, userinfo=f"bob:{password}@")
    sock.bind(("0.0.0.0", 0))
    with _connect_peer(sock.getsockname()):
        exc = _failure(sock.accept, errors.SOCKS5ConnectionRefusedError)
    for text in (str(exc), repr(exc), repr(exc.args)):
        assert password not in text


@pytest.mark.parametrize("with_peer", [True, False], ids=["peer-connected", "no-peer"])
def test_proxy_closing_between_replies_is_protocol_error(
    scripted_server: ScriptedServer, make_client: MakeClient, with_peer: bool
) -> None:
    # b"": nothing is sent when the second reply is due, then the proxy closes.
    server = scripted_server(None, bind_second_reply=b"", bind_timeout=SHORT)
    sock = make_client(server)
    sock.bind(("0.0.0.0", 0))
    if with_peer:
        with _connect_peer(sock.getsockname()):
            _failure(sock.accept, errors.ProxyProtocolError)
    else:
        _failure(sock.accept, errors.ProxyProtocolError, SHORT + MARGIN)
    assert sock.fileno() == -1


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x05\x00\x00\x09\x7f\x00\x00\x01\x00\x50",
        b"\x04\x5a\x00\x50\x7f\x00\x00\x01",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"\x05\x00\x00\x01\x7f\x00",
        b"\x05\x00\x00\x03\x00\x00\x50",
    ],
    ids=["unknown-atyp", "socks4-reply", "http", "truncated", "empty-domain"],
)
def test_garbage_as_second_reply_is_protocol_error(
    scripted_server: ScriptedServer, make_client: MakeClient, garbage: bytes
) -> None:
    server = scripted_server(None, bind_second_reply=garbage)
    sock = make_client(server)
    sock.bind(("0.0.0.0", 0))
    with _connect_peer(sock.getsockname()):
        _failure(sock.accept, errors.ProxyProtocolError)
    assert sock.fileno() == -1


# --------------------------------------------------------------------------
# socket.create_server through a patched socket module.
# --------------------------------------------------------------------------


def test_create_server_binds_through_the_default_proxy(
    socks_server: SocksServer, monkeypatch: pytest.MonkeyPatch, fd_count: FdCount
) -> None:
    before = fd_count()
    previous = socks5client.get_default_proxy()
    socks5client.set_default_proxy(_url(socks_server))
    try:
        with monkeypatch.context() as patch:
            patch.setattr(socket, "socket", socks5client.socksocket)
            server = socket.create_server(("", 0))
        with server:
            assert isinstance(server, socks5client.socksocket)
            record = socks_server.records[0]
            assert (record.command, record.dst_addr) == (CMD_BIND, "0.0.0.0")
            assert server.getsockname() == record.bind_address
            server.settimeout(TIMEOUT)
            with _connect_peer(server.getsockname()) as peer:
                conn, address = server.accept()
                with conn:
                    assert address == peer.getsockname()
                    _assert_tunnel(conn, peer, 1000)
    finally:
        socks5client.set_default_proxy(previous)
    assert socket.socket is not socks5client.socksocket
    assert fd_count.settle(before) == before
