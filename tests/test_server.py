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
    EchoServer,
    SocksServer,
    encode_reply,
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


@pytest.mark.parametrize("cmd", [CMD_BIND, CMD_UDP_ASSOCIATE, 0x04, 0xFF])
def test_unsupported_command_gives_rep_7(socks_server: SocksServer, cmd: int) -> None:
    sock, (rep, _, _, _) = _handshake(socks_server.address, cmd, ATYP_IPV4, "127.0.0.1", 9)
    with sock:
        assert rep == 7
        assert _read_to_eof(sock) == b""
    assert socks_server.records[0].command == cmd


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
