"""SOCKS BIND (``bind``, ``listen``, ``proxy_bind``, ``accept``) against the reference server.

With a proxy set on a TCP socksocket, ``bind(address)`` is a local bind
(as on a plain socket) that is remembered.  ``listen()`` on a socket bound
to a non-loopback address (the wildcard included), or not bound at all,
asks the proxy to listen for one connection from any peer (SOCKS5 BIND);
``getsockname()`` then says where the peer must connect and ``accept()``
waits for the proxy's second reply, then hands the tunnel over as the
accepted connection.  ``proxy_bind(expected_peer)`` sends the BIND at once
with a given expected peer.  A socket bound to loopback listens locally,
and ``bind()`` then ``connect()`` connects through the proxy from the bound
address.

Failure replies, a proxy closing or babbling between the replies, timeouts
and non-blocking mode are checked here, as are ``socket.create_server``,
``socket.create_connection(source_address=...)`` and ``socketserver`` when
``socket.socket`` is a socksocket.  Every test ends with no file descriptor
left open.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import socks5client
from socks5client import errors

from conftest import FdCounter
from server import (
    ATYP_IPV4,
    CMD_BIND,
    CMD_CONNECT,
    METHOD_NO_AUTH,
    SocksServer,
    encode_reply,
    read_greeting,
    read_request,
    recv_exact,
)

TIMEOUT = 2.0
#: Socket timeout for waits that must time out.
SHORT = 0.3
#: How late after its timeout a call may give up.
MARGIN = 0.5
#: Bytes sent each way through an accepted tunnel.
BIG = 1 << 20

#: The socket class before any test patches ``socket.socket``: peers and
#: clients that must not go through the proxy use it.
PlainSocket = socket.socket

FdCount = FdCounter
ScriptedServer = Callable[..., SocksServer]
MakeClient = Callable[..., socks5client.socksocket]
PatchSocketModule = Callable[[SocksServer], None]


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


@pytest.fixture
def patch_socket_module(
    monkeypatch: pytest.MonkeyPatch, fd_count: FdCount
) -> Iterator[PatchSocketModule]:
    """``patch_socket_module(server)``: what ``wrap_module(socket)`` does, with
    ``server`` as the default proxy; both undone at teardown.  Start every
    server before patching (they create sockets through the module)."""
    previous = socks5client.get_default_proxy()
    baseline: list[int] = []

    def patch(server: SocksServer) -> None:
        baseline.append(fd_count())
        socks5client.set_default_proxy(_url(server))
        monkeypatch.setattr(socket, "socket", socks5client.socksocket)

    try:
        yield patch
    finally:
        monkeypatch.undo()
        socks5client.set_default_proxy(previous)
    assert socket.socket is PlainSocket
    if baseline:
        assert fd_count.settle(baseline[0]) == baseline[0]


def _connect_peer(address: Any, source: str | None = None) -> socket.socket:
    """A plain TCP connection to ``address``, optionally from ``source``."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    peer = PlainSocket(family)
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


def _errno_of(call: Callable[[], object]) -> int | None:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno


# --------------------------------------------------------------------------
# The happy path.
# --------------------------------------------------------------------------


def test_listen_sends_bind_and_reports_where_the_peer_must_connect(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.bind(("0.0.0.0", 0))
    # bind() is local: the proxy has heard nothing yet.
    local_port = sock.getsockname()[1]
    assert sock.getsockname() == ("0.0.0.0", local_port) and local_port != 0
    assert socks_server.connections == 0
    sock.listen(1)
    record = socks_server.records[0]
    assert (record.command, record.dst_addr, record.dst_port) == (CMD_BIND, "0.0.0.0", 0)
    # The control connection leaves from the bound address.
    assert record.client_address == ("127.0.0.1", local_port)
    assert record.bind_address is not None
    assert sock.getsockname() == record.bind_address
    assert sock.get_proxy_sockname() == record.bind_address
    assert sock.get_proxy_peername() == socks_server.address
    assert sock.gettimeout() == TIMEOUT
    sock.listen(1)  # accepted, and changes nothing
    sock.listen()
    assert len(socks_server.records) == 1
    assert sock.getsockname() == record.bind_address
    with pytest.raises(OSError) as info:
        sock.getpeername()
    assert info.value.errno == errno.ENOTCONN


@pytest.mark.parametrize(
    "how",
    [
        "listen-unbound",
        "bind-wildcard-listen",
        "bind-empty-host-listen",
        "proxy_bind",
        "proxy_bind-empty-host",
    ],
)
def test_each_way_of_asking_for_any_peer_sends_the_wildcard(
    socks_server: SocksServer, make_client: MakeClient, how: str
) -> None:
    sock = make_client(socks_server)
    if how == "listen-unbound":
        sock.listen()
    elif how == "bind-wildcard-listen":
        sock.bind(("0.0.0.0", 0))
        sock.listen()
    elif how == "bind-empty-host-listen":
        sock.bind(("", 0))
        sock.listen()
    elif how == "proxy_bind":
        assert sock.proxy_bind() == socks_server.records[0].bind_address
    else:
        assert sock.proxy_bind(("", 0)) == socks_server.records[0].bind_address
    record = socks_server.records[0]
    assert (record.command, record.dst_addr, record.dst_port) == (CMD_BIND, "0.0.0.0", 0)
    assert sock.getsockname() == record.bind_address


def test_accept_hands_over_the_tunnel_to_the_peer(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.listen()
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
    sock.listen()
    with _connect_peer(sock.getsockname()) as peer:
        peer.sendall(b"early bytes")
        # Let them travel behind the second reply before accept() reads it.
        time.sleep(0.1)
        conn, _ = sock.accept()
        with conn:
            assert recv_exact(conn, 11) == b"early bytes"


def test_clearing_the_default_proxy_after_listen_does_not_break_accept(
    socks_server: SocksServer, fd_count: FdCount
) -> None:
    before = fd_count()
    previous = socks5client.get_default_proxy()
    socks5client.set_default_proxy(_url(socks_server))
    sock = socks5client.socksocket()
    try:
        sock.settimeout(TIMEOUT)
        sock.bind(("0.0.0.0", 0))
        sock.listen()
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
    assert socks_server_v6.connections == 0
    sock.listen()
    record = socks_server_v6.records[0]
    assert (record.dst_addr, record.dst_port) == ("::", 0)
    host, port, *_ = sock.getsockname()
    assert (host, port) == record.bind_address
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
    sock.listen()
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
    where = sock.proxy_bind()
    with _connect_peer(where) as peer:
        conn, _ = sock.accept()
        with conn:
            _assert_tunnel(conn, peer, 1000)
    assert auth_server.records[0].username == "alice"


# --------------------------------------------------------------------------
# bind() is local; loopback listens locally; bind() then connect().
# --------------------------------------------------------------------------


def test_bind_errors_come_from_the_local_bind(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    with PlainSocket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # A wildcard bind (which listen() would take to the proxy) is still
        # checked against this machine's ports, at once.
        assert _errno_of(lambda: sock.bind(("0.0.0.0", taken.getsockname()[1]))) == (
            errno.EADDRINUSE
        )
    assert sock.fileno() != -1  # a plain bind error leaves the socket usable
    assert socks_server.connections == 0
    sock.bind(("0.0.0.0", 0))
    assert _errno_of(lambda: sock.bind(("0.0.0.0", 0))) == errno.EINVAL  # bound already


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_loopback_bind_listens_locally(
    socks_server: SocksServer, make_client: MakeClient, host: str
) -> None:
    sock = make_client(socks_server, socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    sock.listen()
    where = sock.getsockname()
    assert where[0] == host and where[1] != 0
    assert sock.get_proxy_sockname() is None
    with _connect_peer(where) as peer:
        conn, address = sock.accept()
        with conn:
            assert address[:2] == peer.getsockname()[:2]
            _assert_tunnel(conn, peer, 1000)
    # The listener keeps listening, as a plain one does.
    with _connect_peer(where) as peer:
        conn, _ = sock.accept()
        conn.close()
    assert socks_server.connections == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_bind_then_connect_goes_through_the_proxy_from_the_bound_address(
    socks_server: SocksServer, echo_server: tuple[str, int], make_client: MakeClient, host: str
) -> None:
    sock = make_client(socks_server)
    sock.bind((host, 0))
    local_port = sock.getsockname()[1]
    assert sock.getsockname() == (host, local_port)
    sock.connect(echo_server)
    record = socks_server.records[0]
    assert (record.command, record.dst_addr, record.dst_port) == (CMD_CONNECT, *echo_server)
    assert record.client_address == ("127.0.0.1", local_port)
    assert sock.getsockname() == ("127.0.0.1", local_port)
    assert sock.getpeername() == echo_server
    sock.sendall(b"through the proxy")
    assert recv_exact(sock, 17) == b"through the proxy"


def test_bind_after_listen_or_connect_raises_einval(
    socks_server: SocksServer, echo_server: tuple[str, int], make_client: MakeClient
) -> None:
    listening = make_client(socks_server)
    listening.listen()
    assert _errno_of(lambda: listening.bind(("0.0.0.0", 0))) == errno.EINVAL
    connected = make_client(socks_server)
    connected.connect(echo_server)
    assert _errno_of(lambda: connected.bind(("0.0.0.0", 0))) == errno.EINVAL
    # Refused without harm: both still work.
    assert listening.fileno() != -1
    connected.sendall(b"ok")
    assert recv_exact(connected, 2) == b"ok"


def test_connect_after_listen_raises_eisconn(
    socks_server: SocksServer, echo_server: tuple[str, int], make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.bind(("0.0.0.0", 0))
    sock.listen()
    assert _errno_of(lambda: sock.connect(echo_server)) == errno.EISCONN
    with _connect_peer(sock.getsockname()) as peer:
        conn, _ = sock.accept()
        with conn:
            _assert_tunnel(conn, peer, 1000)
    assert [r.command for r in socks_server.records] == [CMD_BIND]


# --------------------------------------------------------------------------
# proxy_bind(): an explicit expected peer.
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
def test_proxy_bind_address_restricts_the_peer(
    socks_server: SocksServer, make_client: MakeClient, expected: str, source: str, allowed: bool
) -> None:
    sock = make_client(socks_server)
    where = sock.proxy_bind((expected, 0))
    assert where == sock.getsockname() == socks_server.records[0].bind_address
    assert socks_server.records[0].dst_addr == expected
    with _connect_peer(where, source) as peer:
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
def test_proxy_bind_port_restricts_the_peer(
    socks_server: SocksServer, make_client: MakeClient, same_port: bool
) -> None:
    sock = make_client(socks_server)
    with PlainSocket() as peer:
        peer.settimeout(TIMEOUT)
        peer.bind(("127.0.0.1", 0))
        peer_port = peer.getsockname()[1]
        sock.proxy_bind(("127.0.0.1", peer_port if same_port else (peer_port % 60000) + 1024))
        peer.connect(sock.getsockname())
        if same_port:
            conn, address = sock.accept()
            with conn:
                assert address == ("127.0.0.1", peer_port)
        else:
            _failure(sock.accept, errors.SOCKS5ConnectionNotAllowedError)


def test_proxy_bind_on_a_loopback_bound_socket_uses_the_proxy(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.bind(("127.0.0.1", 0))
    local = sock.getsockname()
    where = sock.proxy_bind()
    record = socks_server.records[0]
    assert record.command == CMD_BIND
    assert record.client_address == local  # from the bound address
    assert where == sock.getsockname() == record.bind_address != local
    sock.listen()  # after the BIND: changes nothing
    with _connect_peer(where) as peer:
        conn, address = sock.accept()
        with conn:
            assert address == peer.getsockname()
            _assert_tunnel(conn, peer, 1000)


def test_proxy_bind_refusals_leave_the_socket_open(
    socks_server: SocksServer, echo_server: tuple[str, int], make_client: MakeClient
) -> None:
    no_proxy = make_client(socks_server)
    no_proxy.set_proxy()
    assert _errno_of(no_proxy.proxy_bind) == errno.EOPNOTSUPP
    twice = make_client(socks_server)
    twice.proxy_bind()
    assert _errno_of(twice.proxy_bind) == errno.EINVAL
    after_listen = make_client(socks_server)
    after_listen.listen()
    assert _errno_of(after_listen.proxy_bind) == errno.EINVAL
    listening_locally = make_client(socks_server)
    listening_locally.bind(("127.0.0.1", 0))
    listening_locally.listen()
    assert _errno_of(listening_locally.proxy_bind) == errno.EINVAL
    connected = make_client(socks_server)
    connected.connect(echo_server)
    assert _errno_of(connected.proxy_bind) == errno.EINVAL
    for sock in (no_proxy, twice, after_listen, listening_locally, connected):
        assert sock.fileno() != -1
    # Two BINDs (twice, after_listen) and one CONNECT reached the proxy.
    assert sorted(r.command or 0 for r in socks_server.records) == [
        CMD_CONNECT,
        CMD_BIND,
        CMD_BIND,
    ]


# --------------------------------------------------------------------------
# Waiting for the peer: timeouts and non-blocking mode.
# --------------------------------------------------------------------------


def test_accept_timeout_then_retry_succeeds(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server, timeout=SHORT)
    sock.bind(("0.0.0.0", 0))
    sock.listen()
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
    sock.listen()
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


def _stall_in_the_second_reply(conn: socket.socket, server: SocksServer) -> None:
    """Answer a BIND, send one byte of the second reply after 0.8 s, then stall."""
    read_greeting(conn)
    conn.sendall(bytes([5, METHOD_NO_AUTH]))
    read_request(conn)
    conn.sendall(encode_reply(0, ATYP_IPV4, "127.0.0.1", 9))
    if not server.wait(0.8):
        conn.sendall(b"\x05")
        conn.recv(1)  # stalls until the client gives up and closes


def test_accept_keeps_one_deadline_for_the_wait_and_the_reply(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    server = scripted_server(_stall_in_the_second_reply)
    sock = make_client(server, timeout=1.0)
    sock.listen()
    started = time.monotonic()
    with pytest.raises(errors.ProxyTimeoutError):
        sock.accept()
    elapsed = time.monotonic() - started
    # Not 0.8 s of waiting plus a fresh second for the rest of the reply.
    assert 0.9 <= elapsed < 1.4, f"took {elapsed:.2f}s"
    # Part of the reply was consumed: the BIND cannot be resumed.
    assert sock.fileno() == -1


def test_proxy_giving_up_waiting_is_ttl_expired(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    server = scripted_server(None, bind_timeout=SHORT)
    sock = make_client(server)
    sock.listen()
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


@pytest.mark.parametrize("how", ["listen", "proxy_bind"])
@pytest.mark.parametrize(("code", "expected"), sorted(_REPLY_ERRORS.items()))
def test_failure_in_first_reply_raises_from_listen_or_proxy_bind(
    scripted_server: ScriptedServer,
    make_client: MakeClient,
    code: int,
    expected: type[errors.SOCKS5Error],
    how: str,
) -> None:
    server = scripted_server(None, bind_first_reply=code)
    sock = make_client(server)
    sock.bind(("0.0.0.0", 0))  # local: no error yet
    call = sock.listen if how == "listen" else sock.proxy_bind
    exc = _failure(call, expected)
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
    sock.listen()
    with _connect_peer(sock.getsockname()):
        exc = _failure(sock.accept, expected)
    assert isinstance(exc, errors.SOCKS5Error) and exc.reply_code == code
    assert sock.fileno() == -1


def test_listen_failure_on_the_proxy_is_general_failure(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    server = scripted_server(None, bind_host="192.0.2.1")  # not an address of ours
    sock = make_client(server)
    sock.bind(("0.0.0.0", 0))
    _failure(sock.listen, errors.SOCKS5GeneralFailureError)


def test_failure_reply_does_not_show_the_password(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    password = "Bind-Pw-never-shown-4k"
    server = scripted_server(None, users={"bob": password}, bind_second_reply=5)
    sock = make_client(server, userinfo=f"bob:{password}@")
    sock.listen()
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
    sock.listen()
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
    sock.listen()
    with _connect_peer(sock.getsockname()):
        _failure(sock.accept, errors.ProxyProtocolError)
    assert sock.fileno() == -1


# --------------------------------------------------------------------------
# The standard library with socket.socket patched to socksocket.
# --------------------------------------------------------------------------


def test_create_connection_with_source_address_goes_through_the_proxy(
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    patch_socket_module: PatchSocketModule,
) -> None:
    patch_socket_module(socks_server)
    with socket.create_connection(
        echo_server, timeout=TIMEOUT, source_address=("127.0.0.1", 0)
    ) as sock:
        assert isinstance(sock, socks5client.socksocket)
        record = socks_server.records[0]
        assert (record.command, record.dst_addr, record.dst_port) == (CMD_CONNECT, *echo_server)
        # The connection to the proxy left from the source address.
        assert record.client_address == sock.getsockname()
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getpeername() == echo_server
        sock.sendall(b"from the source address")
        assert recv_exact(sock, 23) == b"from the source address"


class _EchoOnce(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(recv_exact(self.request, 5))


def test_loopback_tcpserver_stays_local(
    socks_server: SocksServer, patch_socket_module: PatchSocketModule
) -> None:
    patch_socket_module(socks_server)
    with socketserver.TCPServer(("127.0.0.1", 0), _EchoOnce) as server:
        assert isinstance(server.socket, socks5client.socksocket)
        host, port = server.server_address
        assert host == "127.0.0.1" and port != 0
        assert server.socket.getsockname() == (host, port)
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        with _connect_peer((host, port)) as client:
            client.sendall(b"hello")
            assert recv_exact(client, 5) == b"hello"
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    # The proxy saw nothing: no BIND, no connection at all.
    assert socks_server.connections == 0
    assert socks_server.records == []


def test_locally_accepted_connection_has_no_proxy(
    socks_server: SocksServer, patch_socket_module: PatchSocketModule
) -> None:
    patch_socket_module(socks_server)
    server = socket.create_server(("127.0.0.1", 0))
    with server, _connect_peer(server.getsockname()) as client:
        conn, address = server.accept()
        assert address == client.getsockname()
        # A direct connection, already open: it may be handed over (as ssl's
        # wrap_socket does with detach()) like any accepted socket.
        assert getattr(conn, "proxy", None) is None
        with PlainSocket(fileno=conn.detach()) as taken:
            client.sendall(b"direct")
            assert recv_exact(taken, 6) == b"direct"
    assert socks_server.connections == 0


def test_create_server_binds_through_the_default_proxy(
    socks_server: SocksServer, patch_socket_module: PatchSocketModule
) -> None:
    patch_socket_module(socks_server)
    with socket.create_server(("", 0)) as server:
        assert isinstance(server, socks5client.socksocket)
        record = socks_server.records[0]
        assert (record.command, record.dst_addr, record.dst_port) == (CMD_BIND, "0.0.0.0", 0)
        assert server.getsockname() == record.bind_address
        server.settimeout(TIMEOUT)
        with _connect_peer(server.getsockname()) as peer:
            conn, address = server.accept()
            with conn:
                assert address == peer.getsockname()
                _assert_tunnel(conn, peer, 1000)


def test_create_server_reports_a_refused_bind_as_a_socks5_error(
    scripted_server: ScriptedServer, patch_socket_module: PatchSocketModule
) -> None:
    # The BIND goes out from listen(), outside create_server's bind() error
    # rewrapping, so the caller gets the proxy's verdict as its own class.
    server = scripted_server(None, bind_first_reply=7)
    patch_socket_module(server)
    started = time.monotonic()
    with pytest.raises(errors.SOCKS5CommandNotSupportedError) as info:
        socket.create_server(("", 0))
    assert time.monotonic() - started < 1.0
    assert info.value.reply_code == 7
    assert server.records[0].command == CMD_BIND


# --------------------------------------------------------------------------
# Hostile first replies, concurrent and repeated accept(), inherited
# listeners, and I/O on a socket waiting for its peer.
# --------------------------------------------------------------------------


def _answer_bind_with(first: bytes, second: bytes | None = None) -> Callable[..., None]:
    """A script: answer a BIND with ``first``; then ``second`` (if any) after 0.3 s.

    ``second`` may hold a ``|`` to split it: the part before goes 0.2 s
    before the rest, in its own segment.
    """

    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(bytes([5, METHOD_NO_AUTH]))
        read_request(conn)
        conn.sendall(first)
        if second is None:
            server.wait(TIMEOUT)
            return
        server.wait(0.3)
        head, _, tail = second.partition(b"|")
        conn.sendall(head)
        if tail:
            server.wait(0.2)
            conn.sendall(tail)
        server.wait(TIMEOUT)

    return script


def _bind_via_asyncio(server: SocksServer) -> tuple[Any, ...]:
    import socks5client.asyncio as aio

    async def go() -> tuple[Any, ...]:
        listener = await aio.bind(_url(server), timeout=TIMEOUT)
        listener.close()
        return tuple(listener.address)

    import asyncio

    return asyncio.run(go())


@pytest.mark.parametrize("how", ["listen", "proxy_bind", "asyncio"])
def test_domain_bnd_addr_with_a_nul_is_a_protocol_error(
    scripted_server: ScriptedServer, make_client: MakeClient, how: str
) -> None:
    # Was a bare ValueError: the reply's name was validated as if it were
    # an argument of ours.
    server = scripted_server(_answer_bind_with(encode_reply(0, 3, "a\0b", 4242)))
    if how == "asyncio":
        _failure(lambda: _bind_via_asyncio(server), errors.ProxyProtocolError)
        return
    sock = make_client(server)
    _failure(sock.listen if how == "listen" else sock.proxy_bind, errors.ProxyProtocolError)
    assert sock.fileno() == -1


@pytest.mark.parametrize("how", ["listen", "proxy_bind", "asyncio"])
@pytest.mark.parametrize("name", ["::1%", "0.0.0.0", "::"])
def test_domain_bnd_addr_is_kept_as_the_proxy_sent_it(
    scripted_server: ScriptedServer, make_client: MakeClient, how: str, name: str
) -> None:
    # A name (ATYP 3) is never the wildcard, whatever it reads like, and is
    # not parsed as an IP literal ("::1%" made ipaddress raise ValueError).
    server = scripted_server(_answer_bind_with(encode_reply(0, 3, name, 4242)))
    if how == "asyncio":
        assert _bind_via_asyncio(server) == (name, 4242)
        return
    sock = make_client(server)
    if how == "listen":
        sock.listen()
    else:
        assert sock.proxy_bind() == (name, 4242)
    assert sock.getsockname() == (name, 4242)
    assert sock.get_proxy_sockname() == (name, 4242)


def test_second_accept_raises_einval(socks_server: SocksServer, make_client: MakeClient) -> None:
    sock = make_client(socks_server)
    sock.listen()
    with _connect_peer(sock.getsockname()) as peer:
        conn, _ = sock.accept()
        with conn:
            # Documented: one BIND serves one connection (was EBADF).
            assert _errno_of(sock.accept) == errno.EINVAL
            sock.close()
            assert _errno_of(sock.accept) == errno.EINVAL
            _assert_tunnel(conn, peer, 1000)


def test_the_listener_left_detached_by_accept_detaches_as_a_closed_socket(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    # accept() handed the descriptor to the connection: what is left is a
    # closed socket, whose detach() returns -1, as a plain closed one does.
    sock = make_client(socks_server)
    sock.listen()
    with _connect_peer(sock.getsockname()) as peer:
        conn, _ = sock.accept()
        with conn:
            assert sock.detach() == -1
            assert _errno_of(lambda: sock.set_inheritable(True)) == errno.EBADF
            _assert_tunnel(conn, peer, 1000)


def test_two_threads_accepting_one_bind_give_the_peer_to_one_of_them(
    scripted_server: ScriptedServer, make_client: MakeClient
) -> None:
    # The second reply arrives in two segments while both threads wait.
    second = encode_reply(0, ATYP_IPV4, "127.0.0.2", 555)
    server = scripted_server(
        _answer_bind_with(
            encode_reply(0, ATYP_IPV4, "127.0.0.1", 4242),
            second[:4] + b"|" + second[4:] + b"PEER-DATA",
        )
    )
    sock = make_client(server)
    sock.listen()
    outcomes: list[Any] = []

    def accept() -> None:
        try:
            conn, peer = sock.accept()
        except OSError as exc:
            outcomes.append(exc.errno)
            return
        with conn:
            conn.settimeout(TIMEOUT)
            outcomes.append((peer, recv_exact(conn, 9)))

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    # The other thread, like one calling accept() after it, gets EINVAL.
    assert sorted(outcomes, key=str) == sorted(
        [(("127.0.0.2", 555), b"PEER-DATA"), errno.EINVAL], key=str
    )


def test_accept_waiting_behind_another_thread_keeps_its_deadline(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server, timeout=1.0)
    sock.listen()
    first = threading.Thread(target=lambda: _errno_of(sock.accept))
    first.start()
    time.sleep(0.2)  # the first thread holds the wait for the second reply
    sock.settimeout(SHORT)
    started = time.monotonic()
    with pytest.raises(errors.ProxyTimeoutError):
        sock.accept()
    assert time.monotonic() - started < SHORT + MARGIN
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.accept()
    first.join(TIMEOUT)
    # Nothing was read: the BIND is still usable.
    sock.settimeout(TIMEOUT)
    with _connect_peer(sock.getsockname()) as peer:
        conn, _ = sock.accept()
        with conn:
            _assert_tunnel(conn, peer, 1000)


@pytest.mark.parametrize("how", ["socksocket-fileno", "fromfd-patched"])
def test_listen_on_an_inherited_listening_descriptor_stays_local(
    scripted_server: ScriptedServer,
    patch_socket_module: PatchSocketModule,
    fd_count: FdCount,
    how: str,
) -> None:
    # gunicorn and systemd sockets: socket.fromfd() on a descriptor that
    # already listens, then listen() again (was EINVAL, "already listens").
    server = scripted_server(None)
    if how == "fromfd-patched":
        patch_socket_module(server)  # (PlainSocket is still the real class)
    plain = PlainSocket()
    with plain:
        plain.bind(("0.0.0.0", 0))
        plain.listen(1)
        port = plain.getsockname()[1]
        if how == "socksocket-fileno":
            sock = socks5client.socksocket(fileno=plain.dup().detach())
            sock.set_proxy(_url(server))
        else:
            sock = socket.fromfd(plain.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            assert isinstance(sock, socks5client.socksocket)
            sock.listen(128)
            assert sock.getsockname() == ("0.0.0.0", port)
            with _connect_peer(("127.0.0.1", port)) as peer:
                sock.settimeout(TIMEOUT)
                conn, _ = sock.accept()
                with conn:
                    peer.sendall(b"direct")
                    assert recv_exact(conn, 6) == b"direct"
    assert server.connections == 0


_SENDS: dict[str, Callable[[socket.socket], object]] = {
    "send": lambda s: s.send(b"app bytes"),
    "sendall": lambda s: s.sendall(b"app bytes"),
    "sendto": lambda s: s.sendto(b"app bytes", ("127.0.0.1", 9)),
    "sendmsg": lambda s: s.sendmsg([b"app bytes"]),
    "sendfile": lambda s: _sendfile(s),
    "makefile-write": lambda s: _write_through_makefile(s),
}
_RECVS: dict[str, Callable[[socket.socket], object]] = {
    "recv": lambda s: s.recv(100),
    "recv_into": lambda s: s.recv_into(bytearray(100)),
    "recvfrom": lambda s: s.recvfrom(100),
    "recvfrom_into": lambda s: s.recvfrom_into(bytearray(100)),
    "recvmsg": lambda s: s.recvmsg(100),
    "recvmsg_into": lambda s: s.recvmsg_into([bytearray(100)]),
    "makefile-read": lambda s: s.makefile("rb").read(1),
}


def _sendfile(sock: socket.socket) -> int:
    import tempfile

    with tempfile.TemporaryFile() as file:
        file.write(b"app bytes")
        file.seek(0)
        return sock.sendfile(file)


def _write_through_makefile(sock: socket.socket) -> None:
    with sock.makefile("wb") as file:
        file.write(b"app bytes")
        file.flush()


def _plain_listener_errno(call: Callable[[socket.socket], object]) -> int | None:
    with PlainSocket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        # Blocking: with a timeout, a plain sendfile() or makefile() read
        # waits for the whole timeout instead (and non-blocking, sendfile()
        # raises ValueError).
        return _errno_of(lambda: call(plain))


class _OwnSend(socks5client.socksocket):
    """A subclass with its own send/recv, as applications write them."""

    def send(self, *args: Any) -> int:
        return super().send(*args)

    def recv(self, *args: Any) -> bytes:
        return super().recv(*args)


@pytest.mark.parametrize("cls", [socks5client.socksocket, _OwnSend], ids=["socksocket", "subclass"])
@pytest.mark.parametrize("name", [*_SENDS, *_RECVS])
def test_io_on_a_socket_waiting_for_its_bind_peer_is_refused_as_on_a_listener(
    socks_server: SocksServer, fd_count: FdCount, name: str, cls: type
) -> None:
    # Was: send put application bytes into the SOCKS conversation, recv
    # took the proxy's second reply away from accept().
    call = {**_SENDS, **_RECVS}[name]
    baseline = fd_count()
    sock = cls()
    with sock:
        sock.set_proxy(_url(socks_server))
        sock.settimeout(TIMEOUT)
        sock.listen()
        with _connect_peer(sock.getsockname()) as peer:
            time.sleep(0.1)  # the second reply is there to be (wrongly) read
            expected = _plain_listener_errno(call)
            assert expected == (errno.EPIPE if name in _SENDS else errno.ENOTCONN)
            assert _errno_of(lambda: call(sock)) == expected
            conn, address = sock.accept()
            assert address == peer.getsockname()
            # The wait is over: the usual class (and C data path) again.
            assert type(sock) is cls
            assert type(conn) is socks5client.socksocket
            with conn:
                # Nothing the application wrote reached the proxy or the peer.
                conn.sendall(b"first")
                assert recv_exact(peer, 5) == b"first"
    assert fd_count.settle(baseline) == baseline


def test_a_connected_socksocket_keeps_the_c_data_path(
    socks_server: SocksServer, make_client: MakeClient
) -> None:
    sock = make_client(socks_server)
    sock.listen()
    assert type(sock) is not socks5client.socksocket  # only while it waits
    for name in ("send", "sendall", "recv", "recv_into"):
        assert getattr(socks5client.socksocket, name) is getattr(PlainSocket, name)
    sock.close()
    # Closed while waiting: the usual errors, not the listener's.
    assert _errno_of(lambda: sock.send(b"x")) == errno.EBADF
    assert _errno_of(lambda: sock.recv(1)) == errno.EBADF
