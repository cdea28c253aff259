"""Error messages a user can act on: each test pins the key phrase of one message."""

from __future__ import annotations

import socket
from typing import Any, Callable

import pytest

import socks5client
from socks5client import errors

from server import SocksServer, encode_reply, read_greeting, read_request

ScriptedServer = Callable[..., SocksServer]


def _client(server: SocksServer, scheme: str = "socks5h", timeout: float = 2.0) -> Any:
    s = socks5client.socksocket()
    s.set_proxy(f"{scheme}://127.0.0.1:{server.port}")
    s.settimeout(timeout)
    return s


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", b"H"],
    ids=["status-line", "one-byte"],
)
def test_an_http_proxy_is_recognised(scripted_server: ScriptedServer, answer: bytes) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(answer)
        server.wait(2)

    with _client(scripted_server(script)) as s, pytest.raises(errors.ProxyProtocolError) as info:
        s.connect(("example.test", 80))
    assert "looks like an HTTP proxy, not SOCKS5" in str(info.value)


def _refuse(code: int) -> Callable[[socket.socket, SocksServer], None]:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(code))

    return script


@pytest.mark.parametrize(
    ("code", "cls"),
    [(1, errors.SOCKS5GeneralFailureError), (4, errors.SOCKS5HostUnreachableError)],
)
def test_a_proxy_side_name_failure_is_suggested(
    scripted_server: ScriptedServer, code: int, cls: type[errors.SOCKS5Error]
) -> None:
    server = scripted_server(_refuse(code))
    with _client(server) as s, pytest.raises(cls) as info:
        s.connect(("exmaple.test", 443))
    assert "the proxy may have failed to resolve 'exmaple.test'" in str(info.value)


@pytest.mark.parametrize(("code", "destination"), [(1, "192.0.2.1"), (5, "exmaple.test")])
def test_no_resolve_hint_where_it_cannot_apply(
    scripted_server: ScriptedServer, code: int, destination: str
) -> None:
    server = scripted_server(_refuse(code))
    with _client(server) as s, pytest.raises(errors.SOCKS5Error) as info:
        s.connect((destination, 443))
    assert "resolve" not in str(info.value)


def test_a_local_resolution_failure_names_the_host_and_the_mode(
    socks_server: SocksServer, mocker: Any
) -> None:
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "exmaple.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    mocker.patch("socket.getaddrinfo", side_effect=fake)
    with _client(socks_server, "socks5") as s, pytest.raises(socket.gaierror) as info:
        s.connect(("exmaple.test", 80))
    assert info.value.errno == socket.EAI_NONAME
    assert "'exmaple.test'" in str(info.value)
    assert "resolved locally because the proxy URL is socks5://" in str(info.value)
    assert socks_server.connections == 0


def test_a_silent_endpoint_may_not_be_a_socks_server(scripted_server: ScriptedServer) -> None:
    def silent(conn: socket.socket, server: SocksServer) -> None:
        server.wait()

    with (
        _client(scripted_server(silent), timeout=0.5) as s,
        pytest.raises(errors.ProxyTimeoutError) as info,
    ):
        s.connect(("example.test", 80))
    assert "sent nothing at all, so it may not be a SOCKS5 server" in str(info.value)


def test_a_proxy_that_answered_then_stalled_gets_no_such_hint(
    scripted_server: ScriptedServer,
) -> None:
    def stall_after_method(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        server.wait()

    with (
        _client(scripted_server(stall_after_method), timeout=0.5) as s,
        pytest.raises(errors.ProxyTimeoutError) as info,
    ):
        s.connect(("example.test", 80))
    assert "may not be a SOCKS5 server" not in str(info.value)


@pytest.mark.parametrize("scheme", ["socks", "socks4", "SOCKS"])
def test_socks_scheme_suggests_socks5h(scheme: str) -> None:
    with pytest.raises(ValueError, match=r"did you mean socks5h://\?"):
        socks5client.Proxy.from_url(f"{scheme}://127.0.0.1:1080")
