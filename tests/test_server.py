"""Tests of the reference SOCKS5 server itself, spoken to by hand.

Nothing here imports socks5client: these tests pin down what the reference
server does, so that failures elsewhere can be blamed on the client.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from server import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    CMD_BIND,
    CMD_CONNECT,
    CMD_UDP_ASSOCIATE,
    Datagram,
    EchoServer,
    SocksServer,
    UDPAssociation,
    UDPEchoServer,
    decode_udp_datagram,
    encode_reply,
    encode_udp_datagram,
    read_greeting,
    read_request,
    read_userpass,
    recv_exact,
)

TIMEOUT = 5.0

ScriptedServer = Callable[..., SocksServer]
FdCount = Callable[[], int]
Address = tuple[str, int]


def _open(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=TIMEOUT)
    return sock


def _encode_addr(atyp: int, addr: str | bytes) -> bytes:
    if atyp == ATYP_IPV4:
        assert isinstance(addr, str)
        return socket.inet_pton(socket.AF_INET, addr)
    if atyp == ATYP_IPV6:
        assert isinstance(addr, str)
        return socket.inet_pton(socket.AF_INET6, addr)
    raw = addr.encode("ascii") if isinstance(addr, str) else addr
    return bytes([len(raw)]) + raw


def _request(cmd: int, atyp: int, addr: str | bytes, port: int) -> bytes:
    return bytes([5, cmd, 0, atyp]) + _encode_addr(atyp, addr) + port.to_bytes(2, "big")


def _read_reply(sock: socket.socket) -> tuple[int, int, str, int]:
    """Parse a reply by hand: ``(rep, atyp, addr, port)``."""
    ver, rep, rsv, atyp = recv_exact(sock, 4)
    assert (ver, rsv) == (5, 0)
    if atyp == ATYP_IPV4:
        addr = socket.inet_ntop(socket.AF_INET, recv_exact(sock, 4))
    elif atyp == ATYP_IPV6:
        addr = socket.inet_ntop(socket.AF_INET6, recv_exact(sock, 16))
    else:
        assert atyp == ATYP_DOMAIN
        addr = recv_exact(sock, recv_exact(sock, 1)[0]).decode("ascii")
    port = int.from_bytes(recv_exact(sock, 2), "big")
    return rep, atyp, addr, port


def _handshake(
    proxy: tuple[str, int],
    cmd: int,
    atyp: int,
    addr: str | bytes,
    port: int,
    *,
    auth: tuple[str, str] | None = None,
) -> tuple[socket.socket, tuple[int, int, str, int]]:
    sock = _open(proxy)
    if auth is None:
        sock.sendall(b"\x05\x01\x00")
        assert recv_exact(sock, 2) == b"\x05\x00"
    else:
        user, password = (x.encode() for x in auth)
        sock.sendall(b"\x05\x01\x02")
        assert recv_exact(sock, 2) == b"\x05\x02"
        sock.sendall(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        assert recv_exact(sock, 2) == b"\x01\x00"
    sock.sendall(_request(cmd, atyp, addr, port))
    return sock, _read_reply(sock)


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _assert_echoes(sock: socket.socket) -> None:
    payload = os.urandom(100_000)
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()
    received = recv_exact(sock, len(payload))
    sender.join()
    assert received == payload
    # Half-close: our EOF must travel through the relay to the echo server,
    # whose EOF comes back.
    sock.sendall(b"tail")
    sock.shutdown(socket.SHUT_WR)
    assert _read_to_eof(sock) == b"tail"


# --- CONNECT -------------------------------------------------------------


def test_connect_ipv4_relays_both_ways(socks_server: SocksServer, echo_server: Address) -> None:
    host, port = echo_server
    sock, (rep, atyp, bnd_addr, bnd_port) = _handshake(
        socks_server.address, CMD_CONNECT, ATYP_IPV4, host, port
    )
    with sock:
        assert (rep, atyp, bnd_addr) == (0, ATYP_IPV4, "127.0.0.1")
        assert bnd_port != 0
        _assert_echoes(sock)
    assert socks_server.errors == []


def test_connect_ipv6_via_ipv6_server(
    socks_server_v6: SocksServer, echo_server_v6: Address
) -> None:
    assert socks_server_v6.address[0] == "::1"
    host, port = echo_server_v6
    sock, (rep, atyp, bnd_addr, _) = _handshake(
        socks_server_v6.address, CMD_CONNECT, ATYP_IPV6, host, port
    )
    with sock:
        assert (rep, atyp, bnd_addr) == (0, ATYP_IPV6, "::1")
        _assert_echoes(sock)


def test_connect_domain_resolved_by_server(socks_server: SocksServer, echo_server: Address) -> None:
    _, port = echo_server
    sock, (rep, _, _, _) = _handshake(
        socks_server.address, CMD_CONNECT, ATYP_DOMAIN, "localhost", port
    )
    with sock:
        assert rep == 0
        _assert_echoes(sock)
    record = socks_server.records[0]
    assert (record.atyp, record.dst_addr, record.dst_port) == (ATYP_DOMAIN, "localhost", port)


def test_records_capture_the_request(socks_server: SocksServer, echo_server: Address) -> None:
    host, port = echo_server
    request = _request(CMD_CONNECT, ATYP_IPV4, host, port)
    sock = _open(socks_server.address)
    client_name = sock.getsockname()
    with sock:
        sock.sendall(b"\x05\x02\x00\x80")
        assert recv_exact(sock, 2) == b"\x05\x00"
        sock.sendall(request)
        assert _read_reply(sock)[0] == 0
    socks_server.stop()
    assert socks_server.connections == 1
    (record,) = socks_server.records
    assert record.methods == b"\x00\x80"
    assert record.username is None and record.password is None
    assert (record.command, record.atyp) == (CMD_CONNECT, ATYP_IPV4)
    assert (record.dst_addr, record.dst_port) == (host, port)
    assert record.raw_request == request
    assert record.reply_code == 0
    assert record.error is None
    assert record.client_address == client_name


def test_domain_recorded_as_raw_ascii(socks_server: SocksServer) -> None:
    sock = _open(socks_server.address)
    with sock:
        sock.sendall(b"\x05\x01\x00")
        recv_exact(sock, 2)
        sock.sendall(_request(CMD_CONNECT, ATYP_DOMAIN, b"xn--fa-hia.invalid", 80))
        rep = _read_reply(sock)[0]
    assert rep == 4  # name resolution failure
    assert socks_server.records[0].dst_addr == "xn--fa-hia.invalid"


def test_non_ascii_domain_bytes_are_visible_in_record(socks_server: SocksServer) -> None:
    sock = _open(socks_server.address)
    with sock:
        sock.sendall(b"\x05\x01\x00")
        recv_exact(sock, 2)
        sock.sendall(_request(CMD_CONNECT, ATYP_DOMAIN, "faß.invalid".encode(), 80))
        _read_reply(sock)
    assert socks_server.records[0].dst_addr == "fa\\xc3\\x9f.invalid"


def test_refused_destination_gives_rep_5(socks_server: SocksServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    sock, (rep, _, _, _) = _handshake(
        socks_server.address, CMD_CONNECT, ATYP_IPV4, "127.0.0.1", dead_port
    )
    with sock:
        assert rep == 5
        assert _read_to_eof(sock) == b""  # failure replies are followed by a close
    assert socks_server.records[0].reply_code == 5


@pytest.mark.parametrize("cmd", [0x00, 0x04, 0xFF])
def test_unsupported_command_gives_rep_7(socks_server: SocksServer, cmd: int) -> None:
    sock, (rep, _, _, _) = _handshake(socks_server.address, cmd, ATYP_IPV4, "127.0.0.1", 9)
    with sock:
        assert rep == 7
        assert _read_to_eof(sock) == b""
    assert socks_server.records[0].command == cmd


@pytest.mark.parametrize("cmd", [CMD_BIND, CMD_UDP_ASSOCIATE])
def test_command_removed_from_dispatch_table_gives_rep_7(
    socks_server: SocksServer, cmd: int
) -> None:
    del socks_server.commands[cmd]
    sock, (rep, _, _, _) = _handshake(socks_server.address, cmd, ATYP_IPV4, "0.0.0.0", 0)
    with sock:
        assert rep == 7
        assert _read_to_eof(sock) == b""
    assert socks_server.associations == []


@pytest.mark.parametrize("atyp", [0x00, 0x02, 0x05, 0xFF])
def test_unknown_atyp_gives_rep_8(socks_server: SocksServer, atyp: int) -> None:
    sock = _open(socks_server.address)
    with sock:
        sock.sendall(b"\x05\x01\x00")
        recv_exact(sock, 2)
        sock.sendall(bytes([5, 1, 0, atyp]) + b"\x7f\x00\x00\x01\x00\x50")
        assert _read_reply(sock)[0] == 8
        assert _read_to_eof(sock) == b""


def test_bad_request_version_gives_rep_1(socks_server: SocksServer) -> None:
    sock = _open(socks_server.address)
    with sock:
        sock.sendall(b"\x05\x01\x00")
        recv_exact(sock, 2)
        sock.sendall(b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50")
        assert _read_reply(sock)[0] == 1


def test_no_acceptable_method_gives_ff_and_close(socks_server: SocksServer) -> None:
    sock = _open(socks_server.address)
    with sock:
        sock.sendall(b"\x05\x02\x01\x02")
        assert recv_exact(sock, 2) == b"\x05\xff"
        assert _read_to_eof(sock) == b""
    assert socks_server.records[0].methods == b"\x01\x02"


# --- authentication ----------------------------------------------------------


def test_auth_success_then_connect(auth_server: SocksServer, echo_server: Address) -> None:
    host, port = echo_server
    sock, (rep, _, _, _) = _handshake(
        auth_server.address, CMD_CONNECT, ATYP_IPV4, host, port, auth=("alice", "s3cret")
    )
    with sock:
        assert rep == 0
        _assert_echoes(sock)
    record = auth_server.records[0]
    assert (record.username, record.password) == ("alice", "s3cret")


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("bob", "s3cret"), ("alice", "")],
)
def test_auth_failure_status_1_then_close(
    auth_server: SocksServer, user: str, password: str
) -> None:
    sock = _open(auth_server.address)
    with sock:
        sock.sendall(b"\x05\x01\x02")
        assert recv_exact(sock, 2) == b"\x05\x02"
        u, p = user.encode(), password.encode()
        sock.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        assert recv_exact(sock, 2) == b"\x01\x01"
        assert _read_to_eof(sock) == b""
    assert auth_server.records[0].username == user


def test_auth_server_refuses_no_auth_only_client(auth_server: SocksServer) -> None:
    sock = _open(auth_server.address)
    with sock:
        sock.sendall(b"\x05\x01\x00")
        assert recv_exact(sock, 2) == b"\x05\xff"


# --- scripts -------------------------------------------------------------------


def test_bytes_script_answers_first_message_and_stays_open(scripted_server: ScriptedServer) -> None:
    server = scripted_server(b"\x05\x00garbage")
    sock = _open(server.address)
    with sock:
        sock.sendall(b"\x05\x01\x00")
        assert recv_exact(sock, 9) == b"\x05\x00garbage"
        sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sock.recv(1)  # still open: no EOF
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        sock.settimeout(TIMEOUT)
        assert sock.recv(1) == b""


def test_callable_script_with_helpers(scripted_server: ScriptedServer) -> None:
    seen: list[object] = []

    def script(conn: socket.socket, server: SocksServer) -> None:
        seen.append(read_greeting(conn, server.record_for(conn)))
        conn.sendall(b"\x05\x02")
        seen.append(read_userpass(conn))
        conn.sendall(b"\x01\x00")
        seen.append(read_request(conn))
        conn.sendall(encode_reply(0, ATYP_DOMAIN, "bnd.example", 4242))

    server = scripted_server(script)
    sock, reply = _handshake(
        server.address, CMD_CONNECT, ATYP_DOMAIN, "dst.example", 80, auth=("u", "p")
    )
    sock.close()
    server.stop()
    assert reply == (0, ATYP_DOMAIN, "bnd.example", 4242)
    assert seen == [b"\x02", ("u", "p"), (CMD_CONNECT, ATYP_DOMAIN, "dst.example", 80)]
    assert server.records[0].methods == b"\x02"
    assert server.errors == []


def test_script_assertion_failures_are_collected(scripted_server: ScriptedServer) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        raise AssertionError("script saw something wrong")

    server = scripted_server(script)
    _open(server.address).close()
    assert server.wait_for_connections(1)
    server.stop()
    assert [str(e) for e in server.errors] == ["script saw something wrong"]


def test_stop_interrupts_stalled_scripts_quickly(
    scripted_server: ScriptedServer, fd_count: FdCount
) -> None:
    before = fd_count()
    threads_before = threading.active_count()

    def script(conn: socket.socket, server: SocksServer) -> None:
        server.wait()

    server = scripted_server(script)
    clients = [_open(server.address) for _ in range(5)]
    assert server.wait_for_connections(5)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    for client in clients:
        client.close()
    assert threading.active_count() == threads_before
    assert fd_count() == before


def test_stop_ends_live_relays(
    socks_server: SocksServer, echo_server: Address, fd_count: FdCount
) -> None:
    host, port = echo_server
    sock, (rep, _, _, _) = _handshake(socks_server.address, CMD_CONNECT, ATYP_IPV4, host, port)
    with sock:
        assert rep == 0
        started = time.monotonic()
        socks_server.stop()
        assert time.monotonic() - started < 1.0
        assert _read_to_eof(sock) == b""


def test_server_leaks_no_fds_or_threads(fd_count: FdCount) -> None:
    before = fd_count()
    threads_before = threading.active_count()
    with EchoServer() as echo, SocksServer() as server:
        for _ in range(3):
            sock, _ = _handshake(server.address, CMD_CONNECT, ATYP_IPV4, *echo.address)
            with sock:
                _assert_echoes(sock)
    assert threading.active_count() == threads_before
    assert fd_count() == before


def test_echo_server_on_ipv6(echo_server_v6: Address) -> None:
    with socket.create_connection(echo_server_v6, timeout=TIMEOUT) as sock:
        sock.sendall(b"ping")
        sock.shutdown(socket.SHUT_WR)
        assert _read_to_eof(sock) == b"ping"


def test_address_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = SocksServer().address
    with pytest.raises(RuntimeError):
        _ = EchoServer().port


# --- BIND ----------------------------------------------------------------------


def _bind(
    server: SocksServer, addr: str = "0.0.0.0", port: int = 0, atyp: int = ATYP_IPV4
) -> tuple[socket.socket, tuple[int, int, str, int]]:
    return _handshake(server.address, CMD_BIND, atyp, addr, port)


def _assert_tunnel(client: socket.socket, peer: socket.socket) -> None:
    """100 kB each way, then EOF each way."""
    for src, dst in ((client, peer), (peer, client)):
        payload = os.urandom(100_000)
        sender = threading.Thread(target=src.sendall, args=(payload,))
        sender.start()
        assert recv_exact(dst, len(payload)) == payload
        sender.join()
    peer.sendall(b"from peer")
    peer.shutdown(socket.SHUT_WR)
    assert _read_to_eof(client) == b"from peer"
    client.sendall(b"from client")
    client.shutdown(socket.SHUT_WR)
    assert _read_to_eof(peer) == b"from client"


def _refused(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def test_bind_reports_listener_then_peer_and_relays(socks_server: SocksServer) -> None:
    sock, (rep, atyp, host, port) = _bind(socks_server)
    with sock:
        assert (rep, atyp, host) == (0, ATYP_IPV4, "127.0.0.1")
        assert port != 0
        with socket.create_connection((host, port), timeout=TIMEOUT) as peer:
            peer_name = peer.getsockname()
            assert _read_reply(sock) == (0, ATYP_IPV4, *peer_name)
            # One BIND, one connection: the listener is gone.
            assert _refused((host, port))
            _assert_tunnel(sock, peer)
    record = socks_server.records[0]
    assert (record.command, record.dst_addr, record.dst_port) == (CMD_BIND, "0.0.0.0", 0)
    assert record.bind_address == (host, port)
    assert record.peer_address == peer_name
    assert (record.reply_code, record.second_reply_code, record.error) == (0, 0, None)
    assert socks_server.errors == []


def test_bind_on_ipv6_server(socks_server_v6: SocksServer) -> None:
    sock, (rep, atyp, host, port) = _bind(socks_server_v6, "::", 0, ATYP_IPV6)
    with sock:
        assert (rep, atyp, host) == (0, ATYP_IPV6, "::1")
        with socket.create_connection((host, port), timeout=TIMEOUT) as peer:
            assert _read_reply(sock) == (0, ATYP_IPV6, *peer.getsockname()[:2])
            _assert_tunnel(sock, peer)


def test_bind_dst_address_refuses_other_peers_with_rep_2(socks_server: SocksServer) -> None:
    sock, (rep, _, host, port) = _bind(socks_server, "127.0.0.2")
    with sock:
        assert rep == 0
        with socket.create_connection((host, port), timeout=TIMEOUT) as peer:
            assert _read_reply(sock)[0] == 2
            assert _read_to_eof(sock) == b""
            assert _read_to_eof(peer) == b""
    record = socks_server.records[0]
    assert record.second_reply_code == 2
    assert record.peer_address is not None and record.peer_address[0] == "127.0.0.1"
    assert record.error is not None and "127.0.0.2" in record.error


@pytest.mark.parametrize("port_matches", [True, False], ids=["same-port", "other-port"])
def test_bind_dst_port_restricts_peer_port(socks_server: SocksServer, port_matches: bool) -> None:
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))
        peer_port = peer.getsockname()[1]
        wanted = peer_port if port_matches else (peer_port % 60000) + 1024
        sock, (rep, _, host, port) = _bind(socks_server, "127.0.0.1", wanted)
        with sock:
            assert rep == 0
            peer.settimeout(TIMEOUT)
            peer.connect((host, port))
            if port_matches:
                assert _read_reply(sock) == (0, ATYP_IPV4, "127.0.0.1", peer_port)
                _assert_tunnel(sock, peer)
            else:
                assert _read_reply(sock)[0] == 2
                assert _read_to_eof(sock) == b""


@pytest.mark.parametrize("code", [1, 2, 5])
def test_bind_first_reply_can_be_scripted(socks_server: SocksServer, code: int) -> None:
    socks_server.bind_first_reply = code
    sock, (rep, _, _, _) = _bind(socks_server)
    with sock:
        assert rep == code
        assert _read_to_eof(sock) == b""
    record = socks_server.records[0]
    assert (record.reply_code, record.bind_address) == (code, None)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (4, encode_reply(4)),
        (0x05, encode_reply(5)),
        (b"\x05\x00\x00\x09garbage", b"\x05\x00\x00\x09garbage"),
        (b"", b""),
    ],
    ids=["rep-4", "rep-5", "raw-bytes", "nothing"],
)
def test_bind_second_reply_can_be_scripted(
    socks_server: SocksServer, setting: int | bytes, expected: bytes
) -> None:
    socks_server.bind_second_reply = setting
    sock, (rep, _, host, port) = _bind(socks_server)
    with sock:
        assert rep == 0
        with socket.create_connection((host, port), timeout=TIMEOUT) as peer:
            assert _read_to_eof(sock) == expected
            assert _read_to_eof(peer) == b""
    record = socks_server.records[0]
    assert record.second_reply_code == (setting if isinstance(setting, int) else None)
    assert record.error == "scripted second BIND reply"


def test_bind_timeout_gives_rep_6_and_closes_listener(scripted_server: ScriptedServer) -> None:
    server = scripted_server(None, bind_timeout=0.3)
    sock, (rep, _, host, port) = _bind(server)
    with sock:
        assert rep == 0
        started = time.monotonic()
        assert _read_reply(sock)[0] == 6
        assert 0.25 < time.monotonic() - started < 1.5
        assert _read_to_eof(sock) == b""
    assert _refused((host, port))


def test_bind_listen_failure_gives_rep_1(scripted_server: ScriptedServer) -> None:
    server = scripted_server(None, bind_host="192.0.2.1")  # TEST-NET-1: not ours
    sock, (rep, _, _, _) = _bind(server)
    with sock:
        assert rep == 1
        assert _read_to_eof(sock) == b""
    assert server.records[0].error is not None


def test_bind_reply_with_zero_address(scripted_server: ScriptedServer) -> None:
    server = scripted_server(None, bind_reply_zero_address=True)
    sock, (rep, atyp, host, port) = _bind(server)
    with sock:
        assert (rep, atyp, host) == (0, ATYP_IPV4, "0.0.0.0")
        assert server.records[0].bind_address == ("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as peer:
            assert _read_reply(sock)[0] == 0
            _assert_tunnel(sock, peer)


def test_bind_ends_when_client_closes_while_waiting(socks_server: SocksServer) -> None:
    sock, (_, _, host, port) = _bind(socks_server)
    sock.close()
    deadline = time.monotonic() + TIMEOUT
    while socks_server.records[0].error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "client closed" in str(socks_server.records[0].error)
    assert _refused((host, port))


# --- UDP ASSOCIATE -----------------------------------------------------------------


def _udp_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(TIMEOUT)
    return sock


def _associate(
    server: SocksServer, udp: socket.socket | None, dst: tuple[str, int] | None = None
) -> tuple[socket.socket, tuple[str, int], UDPAssociation]:
    """UDP ASSOCIATE for ``udp``'s address (or ``dst``); the control socket,
    the relay address from the reply, and the server's association."""
    if dst is None:
        assert udp is not None
        dst = udp.getsockname()[:2]
    atyp = ATYP_IPV6 if ":" in dst[0] else ATYP_IPV4
    ctl, (rep, reply_atyp, host, port) = _handshake(
        server.address, CMD_UDP_ASSOCIATE, atyp, dst[0], dst[1]
    )
    assert (rep, reply_atyp) == (0, atyp)
    return ctl, (host, port), server.wait_for_association(len(server.associations) - 1)


def _datagram(dest: tuple[str, int], data: bytes, frag: int = 0) -> bytes:
    atyp = ATYP_IPV6 if ":" in dest[0] else ATYP_IPV4
    return encode_udp_datagram(frag, atyp, dest[0], dest[1], data)


def test_udp_associate_relays_both_ways(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer
) -> None:
    echo = udp_echo_server.address
    with _udp_socket() as udp:
        ctl, relay, assoc = _associate(socks_server, udp)
        assert relay[0] == "127.0.0.1" and relay[1] != 0
        udp.sendto(_datagram(echo, b"ping"), relay)
        assert udp.recvfrom(65536) == (_datagram(echo, b"ping"), relay)
        assert assoc.received == [Datagram(0, ATYP_IPV4, *echo, b"ping")]
        assert assoc.forwarded == [Datagram(0, ATYP_IPV4, *echo, b"ping")]
        # The remote sees the outbound socket, not the relay socket.
        ((payload, source),) = udp_echo_server.received
        assert payload == b"ping" and source[0] == "127.0.0.1" and source != relay
        record = socks_server.records[0]
        assert (record.command, record.atyp) == (CMD_UDP_ASSOCIATE, ATYP_IPV4)
        assert (record.dst_addr, record.dst_port) == udp.getsockname()
        assert record.udp_client_address == udp.getsockname()
        assert record.relay_address == relay == assoc.relay_address
        # The association ends with the control connection.
        ctl.close()
        assert assoc.closed.wait(TIMEOUT)
        assert assoc.relay.fileno() == -1
    assert socks_server.errors == []


def test_udp_associate_resolves_domain_destinations(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer
) -> None:
    port = udp_echo_server.port
    with _udp_socket() as udp:
        ctl, relay, assoc = _associate(socks_server, udp)
        with ctl:
            udp.sendto(encode_udp_datagram(0, ATYP_DOMAIN, "localhost", port, b"name"), relay)
            assert udp.recvfrom(65536) == (_datagram(("127.0.0.1", port), b"name"), relay)
            assert assoc.received == [Datagram(0, ATYP_DOMAIN, "localhost", port, b"name")]


def test_udp_associate_on_ipv6(
    socks_server_v6: SocksServer, udp_echo_server_v6: UDPEchoServer
) -> None:
    echo = udp_echo_server_v6.address
    with _udp_socket("::1") as udp:
        ctl, relay, assoc = _associate(socks_server_v6, udp)
        with ctl:
            assert relay[0] == "::1"
            udp.sendto(_datagram(echo, b"six"), relay)
            data, source = udp.recvfrom(65536)
            assert data == _datagram(echo, b"six")
            assert source[:2] == relay
            assert assoc.forwarded == [Datagram(0, ATYP_IPV6, *echo, b"six")]


def test_udp_zero_dst_means_control_peer_ip_and_any_port(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer
) -> None:
    echo = udp_echo_server.address
    with _udp_socket() as first, _udp_socket() as second:
        ctl, relay, assoc = _associate(socks_server, None, ("0.0.0.0", 0))
        with ctl:
            assert socks_server.records[0].udp_client_address == ("127.0.0.1", 0)
            assert assoc.client_address is None
            for udp in (first, second):
                # Replies go to the source of the last datagram accepted.
                udp.sendto(_datagram(echo, b"any port"), relay)
                assert udp.recvfrom(65536)[0] == _datagram(echo, b"any port")
            assert assoc.client_address == second.getsockname()
            # Another IP is still foreign.
            with _udp_socket("127.0.0.2") as foreign:
                foreign.sendto(_datagram(echo, b"foreign"), relay)
                assert assoc.wait_until(lambda a: len(a.dropped) == 1)
            assert assoc.dropped[0][0].startswith("foreign source 127.0.0.2:")


def test_udp_drops_datagrams_from_a_foreign_port(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer
) -> None:
    echo = udp_echo_server.address
    with _udp_socket() as udp, _udp_socket() as foreign:
        foreign_port = foreign.getsockname()[1]
        ctl, relay, assoc = _associate(socks_server, udp)
        with ctl:
            foreign.sendto(_datagram(echo, b"foreign"), relay)
            assert assoc.wait_until(lambda a: len(a.dropped) == 1)
            udp.sendto(_datagram(echo, b"own"), relay)
            assert udp.recvfrom(65536)[0] == _datagram(echo, b"own")
    assert [payload for payload, _ in udp_echo_server.received] == [b"own"]
    ((reason, raw),) = assoc.dropped
    assert reason == f"foreign source 127.0.0.1:{foreign_port}"
    assert raw == _datagram(echo, b"foreign")


@pytest.mark.parametrize(
    ("junk", "reason"),
    [
        (b"", "too short"),
        (b"\x00\x00\x00", "too short"),
        (b"\x00\x01\x00\x01\x7f\x00\x00\x01\x00\x07x", "RSV"),
        (b"\x00\x00\x00\x05\x7f\x00\x00\x01\x00\x07x", "unknown ATYP"),
        (b"\x00\x00\x00\x01\x7f\x00\x00", "truncated"),
        (b"\x00\x00\x00\x03", "truncated"),
        (b"\x00\x00\x00\x03\x00\x00\x07x", "empty domain"),
        (b"\x00\x00\x00\x04" + b"\x00" * 15, "truncated"),
        (b"\x00\x00\x01\x01\x7f\x00\x00\x01\x00\x07x", "fragment 0x01"),
        (b"\x00\x00\x81\x01\x7f\x00\x00\x01\x00\x07x", "fragment 0x81"),
    ],
    ids=[
        "empty",
        "three-bytes",
        "rsv",
        "atyp-5",
        "short-ipv4",
        "no-domain-length",
        "empty-domain",
        "short-ipv6",
        "frag-1",
        "frag-81",
    ],
)
def test_udp_drops_malformed_datagrams_and_fragments(
    socks_server: SocksServer, udp_echo_server: UDPEchoServer, junk: bytes, reason: str
) -> None:
    echo = udp_echo_server.address
    with _udp_socket() as udp:
        ctl, relay, assoc = _associate(socks_server, udp)
        with ctl:
            udp.sendto(junk, relay)
            udp.sendto(_datagram(echo, b"valid"), relay)
            assert udp.recvfrom(65536)[0] == _datagram(echo, b"valid")
    ((why, raw),) = assoc.dropped
    assert reason in why
    assert raw == junk
    assert [payload for payload, _ in udp_echo_server.received] == [b"valid"]


def test_udp_reply_with_zero_address(
    scripted_server: ScriptedServer, udp_echo_server: UDPEchoServer
) -> None:
    server = scripted_server(None, udp_reply_zero_address=True)
    with _udp_socket() as udp:
        ctl, relay, assoc = _associate(server, udp)
        with ctl:
            assert relay == ("0.0.0.0", assoc.relay_address[1])
            assert assoc.relay_address[0] == "127.0.0.1"
            udp.sendto(_datagram(udp_echo_server.address, b"z"), assoc.relay_address)
            assert udp.recvfrom(65536)[1] == assoc.relay_address


def test_udp_scripting_hooks(socks_server: SocksServer, udp_echo_server: UDPEchoServer) -> None:
    echo = udp_echo_server.address
    with _udp_socket() as udp:
        ctl, relay, assoc = _associate(socks_server, udp)
        with ctl:
            assoc.send_to_client(b"raw bytes")
            assert udp.recvfrom(65536) == (b"raw bytes", relay)
            assoc.send_from_foreign(b"foreign")
            data, source = udp.recvfrom(65536)
            assert data == b"foreign"
            assert source[0] == relay[0] and source[1] != relay[1]
            assoc.send_from_foreign(b"other ip", host="127.0.0.2")
            data, source = udp.recvfrom(65536)
            assert (data, source[0]) == (b"other ip", "127.0.0.2")
            # A muted relay drops everything.
            assoc.mute = True
            udp.sendto(_datagram(echo, b"muted"), relay)
            assert assoc.wait_until(lambda a: len(a.dropped) == 1)
            assert assoc.dropped[0][0] == "muted"
            assert udp_echo_server.received == []
            assoc.mute = False
            udp.sendto(_datagram(echo, b"unmuted"), relay)
            assert udp.recvfrom(65536)[0] == _datagram(echo, b"unmuted")
            # The proxy may end the association.
            assoc.close_control()
            assert assoc.closed.is_set()
            assert _read_to_eof(ctl) == b""
            assert assoc.relay.fileno() == -1
    assert socks_server.errors == []


def test_wait_for_association_times_out(socks_server: SocksServer) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        socks_server.wait_for_association(timeout=0.1)
    assert time.monotonic() - started < 1.0


def test_send_to_client_needs_a_known_client_port(socks_server: SocksServer) -> None:
    ctl, _, assoc = _associate(socks_server, None, ("0.0.0.0", 0))
    with ctl, pytest.raises(RuntimeError):
        assoc.send_to_client(b"nowhere")


# --- stopping with BIND and UDP in progress -----------------------------------------


def test_stop_ends_binds_and_associations_quickly(fd_count: FdCount) -> None:
    before = fd_count()
    threads_before = threading.active_count()
    with UDPEchoServer() as echo:
        server = SocksServer().start()
        try:
            waiting, _ = _bind(server)
            relaying, (_, _, host, port) = _bind(server)
            peer = socket.create_connection((host, port), timeout=TIMEOUT)
            assert _read_reply(relaying)[0] == 0
            udp = _udp_socket()
            ctl, relay, assoc = _associate(server, udp)
            udp.sendto(_datagram(echo.address, b"x"), relay)
            assert udp.recvfrom(65536)[0] == _datagram(echo.address, b"x")
            assert server.wait_for_connections(3)
        finally:
            started = time.monotonic()
            server.stop()
            elapsed = time.monotonic() - started
        assert elapsed < 1.0
        assert assoc.closed.is_set()
        for sock in (waiting, relaying, peer, ctl):
            with sock:
                assert _read_to_eof(sock) == b""
        udp.close()
        assert server.errors == []
    assert threading.active_count() == threads_before
    assert fd_count() == before


# --- encoder -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0,), b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
        ((5, ATYP_IPV4, "10.1.2.3", 0x1234), b"\x05\x05\x00\x01\x0a\x01\x02\x03\x12\x34"),
        ((0, ATYP_IPV6, "::1", 80), b"\x05\x00\x00\x04" + b"\x00" * 15 + b"\x01\x00\x50"),
        ((0, ATYP_DOMAIN, "ab", 1), b"\x05\x00\x00\x03\x02ab\x00\x01"),
        ((0, ATYP_DOMAIN, b"", 1), b"\x05\x00\x00\x03\x00\x00\x01"),
        ((0, 0x09, b"\x01\x02", 1), b"\x05\x00\x00\x09\x01\x02\x00\x01"),
    ],
)
def test_encode_reply_layout(args: tuple[Any, ...], expected: bytes) -> None:
    assert encode_reply(*args) == expected


def test_encode_reply_can_break_version_and_rsv() -> None:
    assert encode_reply(0, ver=4, rsv=7)[:3] == b"\x04\x00\x07"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, ATYP_IPV4, "10.1.2.3", 0x1234, b"hi"), b"\x00\x00\x00\x01\x0a\x01\x02\x03\x12\x34hi"),
        ((0x81, ATYP_IPV6, "::1", 53, b""), b"\x00\x00\x81\x04" + b"\x00" * 15 + b"\x01\x00\x35"),
        ((2, ATYP_DOMAIN, "ab", 1, b"x"), b"\x00\x00\x02\x03\x02ab\x00\x01x"),
        ((0, 0x09, b"\x01", 1, b""), b"\x00\x00\x00\x09\x01\x00\x01"),
    ],
)
def test_encode_udp_datagram_layout(args: tuple[Any, ...], expected: bytes) -> None:
    assert encode_udp_datagram(*args) == expected


def test_encode_udp_datagram_can_break_rsv() -> None:
    assert encode_udp_datagram(0, ATYP_IPV4, "1.2.3.4", 5, b"", rsv=0x0102)[:2] == b"\x01\x02"


@pytest.mark.parametrize(
    "dgram",
    [
        Datagram(0, ATYP_IPV4, "192.0.2.7", 53, b"payload"),
        Datagram(0x83, ATYP_IPV6, "2001:db8::1", 65535, b""),
        Datagram(1, ATYP_DOMAIN, "b" * 255, 0, b"\x00" * 100),
    ],
)
def test_decode_udp_datagram_inverts_encode(dgram: Datagram) -> None:
    assert decode_udp_datagram(encode_udp_datagram(*dgram)) == dgram


def test_udp_echo_server_echoes_and_records(udp_echo_server: UDPEchoServer) -> None:
    with _udp_socket() as udp:
        udp.sendto(b"echo me", udp_echo_server.address)
        assert udp.recvfrom(100) == (b"echo me", udp_echo_server.address)
        assert udp_echo_server.received == [(b"echo me", udp.getsockname())]


# --- command line --------------------------------------------------------------


def test_command_line_serves_until_interrupted(echo_server: Address) -> None:
    script = Path(__file__).with_name("server.py")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--user",
            "u",
            "--password",
            "p",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("SOCKS5 server listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        sock, (rep, _, _, _) = _handshake(
            ("127.0.0.1", port), CMD_CONNECT, ATYP_IPV4, *echo_server, auth=("u", "p")
        )
        with sock:
            assert rep == 0
            _assert_echoes(sock)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(TIMEOUT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
