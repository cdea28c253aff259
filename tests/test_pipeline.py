"""Pipelined handshakes (``Proxy(pipeline=True)``, ``?pipeline=1``) against the reference server.

A pipelined handshake sends the greeting, the credentials and the request in
one write and then reads the replies in order.  The reference server records
whether the client's next message was already waiting once it had read the
greeting (``Record.pipelined``), which is how these tests see that the
client really pipelined; in ``strict_order`` mode it behaves like microsocks
and drops what arrived early.
"""

from __future__ import annotations

import pickle
import socket
import time
from typing import Any, Callable

import pytest

import socks5client
from socks5client import Proxy, errors

from server import SocksServer, recv_exact

TIMEOUT = 5.0


def _proxy(server: SocksServer, **kw: Any) -> Proxy:
    host, port = server.address[:2]
    return Proxy(host, port, pipeline=True, **kw)


def _connect(
    proxy: Proxy | str, dest: tuple[str, int], timeout: float | None = TIMEOUT
) -> socket.socket:
    sock = socks5client.socksocket()
    sock.settimeout(timeout)
    sock.set_proxy(proxy)
    sock.connect(dest)
    return sock


def _echo(sock: socket.socket, payload: bytes = b"through a pipelined handshake") -> None:
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload


@pytest.mark.parametrize("timeout", [TIMEOUT, None], ids=["deadline", "blocking"])
def test_pipelined_connect_sends_everything_in_one_write(
    socks_server: SocksServer, echo_server: tuple[str, int], timeout: float | None
) -> None:
    with _connect(_proxy(socks_server), echo_server, timeout) as sock:
        _echo(sock)
        assert sock.getpeername() == echo_server
    (record,) = socks_server.records
    assert record.pipelined
    assert record.methods == b"\x00"
    assert record.dst_port == echo_server[1]


def test_normal_handshake_waits_for_each_answer(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    host, port = socks_server.address[:2]
    with _connect(Proxy(host, port), echo_server) as sock:
        _echo(sock)
    (record,) = socks_server.records
    assert not record.pipelined


def test_pipelined_with_credentials_offers_only_username_password(
    auth_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    proxy = _proxy(auth_server, username="alice", password="s3cret")
    with _connect(proxy, echo_server) as sock:
        _echo(sock)
    (record,) = auth_server.records
    assert record.pipelined
    assert record.methods == b"\x02"
    assert (record.username, record.password) == ("alice", "s3cret")


def test_pipelined_wrong_password_is_an_auth_error(
    auth_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    proxy = _proxy(auth_server, username="alice", password="wrong")
    with pytest.raises(errors.SOCKS5AuthError, match="rejected the username/password"):
        _connect(proxy, echo_server)


def test_pipelined_url_parameter(socks_server: SocksServer, echo_server: tuple[str, int]) -> None:
    host, port = socks_server.address[:2]
    url = f"socks5h://{host}:{port}?pipeline=1"
    assert Proxy.from_url(url).pipeline
    with _connect(url, echo_server) as sock:
        _echo(sock)
    assert socks_server.records[0].pipelined


def test_pipelined_create_connection(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with socks5client.create_connection(
        echo_server, timeout=TIMEOUT, proxy=_proxy(socks_server)
    ) as sock:
        _echo(sock)
    assert socks_server.records[0].pipelined


def test_data_right_behind_the_reply_is_not_lost(
    scripted_server: Callable[..., SocksServer],
) -> None:
    """The replies are read exactly: bytes the destination sent at once stay for the caller."""

    def script(conn: socket.socket, server: SocksServer) -> None:
        recv_exact(conn, 3 + 10)  # greeting and request, sent together
        conn.sendall(b"\x05\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50" + b"banner\r\n")
        server.wait()

    server = scripted_server(script)
    with _connect(_proxy(server), ("127.0.0.1", 80)) as sock:
        assert recv_exact(sock, 8) == b"banner\r\n"


def test_failure_reply_is_the_usual_error(socks_server: SocksServer) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    refused = probe.getsockname()
    probe.close()
    with pytest.raises(errors.SOCKS5ConnectionRefusedError) as info:
        _connect(_proxy(socks_server), refused)
    assert "pipelining" not in str(info.value)


def test_strict_server_is_reported_with_the_way_out(
    scripted_server: Callable[..., SocksServer], echo_server: tuple[str, int]
) -> None:
    """A server that drops the early request (like microsocks) gives a timeout naming pipelining."""
    server = scripted_server(None, strict_order=True)
    started = time.monotonic()
    with pytest.raises(errors.ProxyTimeoutError) as info:
        _connect(_proxy(server), echo_server, timeout=1.0)
    assert time.monotonic() - started < 1.0 + 0.5
    message = str(info.value)
    assert "pipelining is on" in message
    assert "pipeline=False" in message and "?pipeline=1" in message
    assert server.records[0].pipelined


def test_strict_server_works_without_pipelining(
    scripted_server: Callable[..., SocksServer], echo_server: tuple[str, int]
) -> None:
    server = scripted_server(None, strict_order=True)
    host, port = server.address[:2]
    with _connect(Proxy(host, port), echo_server) as sock:
        _echo(sock)


def test_server_closing_after_the_greeting_names_pipelining(
    scripted_server: Callable[..., SocksServer], echo_server: tuple[str, int]
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        conn.recv(1024)
        conn.sendall(b"\x05\x00")
        conn.close()

    server = scripted_server(script)
    with pytest.raises(errors.ProxyProtocolError, match=r"closed the connection.*pipelining is on"):
        _connect(_proxy(server), echo_server)


def test_server_refusing_the_only_method_names_pipelining(
    scripted_server: Callable[..., SocksServer], echo_server: tuple[str, int]
) -> None:
    server = scripted_server(b"\x05\xff")
    with pytest.raises(
        errors.SOCKS5AuthError, match=r"none of the authentication methods.*pipelining"
    ):
        _connect(_proxy(server, username="u", password="p"), echo_server)


def test_garbage_after_the_greeting_names_pipelining(
    scripted_server: Callable[..., SocksServer], echo_server: tuple[str, int]
) -> None:
    server = scripted_server(b"\x05\x00HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(errors.ProxyProtocolError, match=r"version.*pipelining is on"):
        _connect(_proxy(server), echo_server)


def test_pipelined_bind_and_udp_associate(socks_server: SocksServer, udp_echo_server: Any) -> None:
    proxy = _proxy(socks_server)
    with socks5client.socksocket() as listener:
        listener.settimeout(TIMEOUT)
        listener.set_proxy(proxy)
        where = listener.proxy_bind()
        with socket.create_connection(where[:2], timeout=TIMEOUT) as peer:
            conn, _ = listener.accept()
            with conn:
                peer.sendall(b"ping")
                assert recv_exact(conn, 4) == b"ping"
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(TIMEOUT)
        udp.set_proxy(proxy)
        udp.sendto(b"datagram", udp_echo_server.address)
        data, _ = udp.recvfrom(100)
        assert data == b"datagram"
    assert [r.pipelined for r in socks_server.records] == [True, True]


# -- the option itself -------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", False),
        ("?pipeline=1", True),
        ("?pipeline=true", True),
        ("?pipeline", True),
        ("?pipeline=0", False),
        ("?pipeline=off", False),
    ],
)
def test_url_query_values(query: str, expected: bool) -> None:
    assert Proxy.from_url(f"socks5h://127.0.0.1:1080{query}").pipeline is expected


@pytest.mark.parametrize("query", ["?pipeline=maybe", "?foo=1", "?pipeline=1&x=2"])
def test_bad_url_queries_are_refused(query: str) -> None:
    with pytest.raises(ValueError, match="pipeline"):
        Proxy.from_url(f"socks5h://u:hunter2@127.0.0.1:1080{query}")


def test_pipeline_shows_in_url_repr_equality_and_pickle() -> None:
    proxy = Proxy("::1", 1081, username="u", password="pw", pipeline=True)
    assert proxy.url == "socks5h://u:***@[::1]:1081?pipeline=1"
    assert "pipeline=True" in repr(proxy) and "pw" not in repr(proxy)
    assert proxy != Proxy("::1", 1081, username="u", password="pw")
    assert pickle.loads(pickle.dumps(proxy)) == proxy
    assert Proxy.from_url("socks5h://u:pw@[::1]:1081?pipeline=1") == proxy
    assert "pipeline" not in repr(Proxy("::1", 1081))
