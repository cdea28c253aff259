"""socksocket and create_connection against the reference server, over real loopback sockets."""

from __future__ import annotations

import errno
import http.server
import importlib
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import socks5client
from socks5client import errors

from server import SocksServer, encode_reply, read_greeting, read_request

# -- helpers ------------------------------------------------------------------


def proxied(
    server: SocksServer, family: int = socket.AF_INET, **kw: Any
) -> socks5client.socksocket:
    s = socks5client.socksocket(family)
    host, port = server.address[:2]
    s.set_proxy(socks5client.SOCKS5, host, port, **kw)
    s.settimeout(5)
    return s


def echo_round_trip(s: socket.socket, payload: bytes = b"hello through the tunnel") -> None:
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        assert chunk, "tunnel closed early"
        got += chunk
    assert got == payload


@pytest.fixture()
def http_server() -> Iterator[tuple[str, int]]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the target"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield ("127.0.0.1", httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


@pytest.fixture()
def default_proxy_reset() -> Iterator[None]:
    yield
    socks5client.set_default_proxy()


# -- CONNECT to each kind of destination ----------------------------------------


@pytest.mark.parametrize(
    "args",
    [(), (socket.AF_INET,), (socket.AF_INET, socket.SOCK_STREAM), (-1, -1, socket.IPPROTO_TCP)],
    ids=["defaults", "family", "family-type", "tcp-proto"],
)
def test_new_tcp_socket_is_set_up_as_socket_socket_sets_it_up(args: tuple[int, ...]) -> None:
    # socksocket() builds these without socket.socket.__init__'s frame: it
    # must still set every slot that one sets, to the same values, and the
    # default timeout the C initialiser applies.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(3.5)
    try:
        ours, plain = socks5client.socksocket(*args), socket.socket(*args)
    finally:
        socket.setdefaulttimeout(previous)
    with ours, plain:
        for name in socket.socket.__slots__:
            if name != "__weakref__":
                assert getattr(ours, name) == getattr(plain, name), name
        assert (ours.family, ours.type, ours.proto) == (plain.family, plain.type, plain.proto)
        assert ours.gettimeout() == plain.gettimeout() == 3.5
    assert ours._closed and plain._closed  # type: ignore[attr-defined]


def test_connect_ipv4_destination(socks_server: SocksServer, echo_server: tuple[str, int]) -> None:
    with proxied(socks_server) as s:
        s.connect(echo_server)
        echo_round_trip(s)
        assert s.getpeername() == echo_server
        assert s.get_proxy_peername() == socks_server.address[:2]
        bnd_host, bnd_port = s.get_proxy_sockname()  # type: ignore[misc]
        assert bnd_host == "127.0.0.1"
        assert 0 < bnd_port < 65536
    rec = socks_server.records[-1]
    assert (rec.atyp, rec.dst_addr, rec.dst_port) == (1, "127.0.0.1", echo_server[1])


def test_connect_ipv6_destination_with_four_tuple(
    socks_server: SocksServer, echo_server_v6: tuple[Any, ...]
) -> None:
    dest = ("::1", echo_server_v6[1], 0, 0)
    with proxied(socks_server) as s:
        s.connect(dest)
        echo_round_trip(s)
        assert s.getpeername() == dest
    rec = socks_server.records[-1]
    assert (rec.atyp, rec.dst_addr) == (4, "::1")


def test_hostname_goes_to_the_proxy_unresolved_by_default(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        s.connect(("localhost", echo_server[1]))
        echo_round_trip(s)
        assert s.getpeername() == ("localhost", echo_server[1])
    rec = socks_server.records[-1]
    assert (rec.atyp, rec.dst_addr) == (3, "localhost")


def test_socks5_scheme_resolves_locally(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    s = socks5client.socksocket()
    s.set_proxy(f"socks5://127.0.0.1:{socks_server.port}")
    with s:
        s.settimeout(5)
        s.connect(("localhost", echo_server[1]))
        echo_round_trip(s)
        assert s.getpeername() == ("localhost", echo_server[1])
    rec = socks_server.records[-1]
    assert (rec.atyp, rec.dst_addr) == (1, "127.0.0.1")


def test_local_resolution_tries_each_address_in_turn(
    scripted_server: Callable[..., SocksServer], mocker: Any
) -> None:
    seen: list[str] = []

    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        _cmd, _atyp, addr, _port = read_request(conn)
        seen.append(str(addr))
        if len(seen) < 3:
            conn.sendall(encode_reply(4 if len(seen) == 1 else 5))
            conn.close()
            return
        conn.sendall(encode_reply(0, 1, "127.0.0.1", 4242) + b"welcome")

    server = scripted_server(script)
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "multi.test":
            port = args[0]
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.2", port)),
            ]
        return real(host, *args, **kw)

    mocker.patch("socket.getaddrinfo", side_effect=fake)
    s = socks5client.socksocket()
    s.set_proxy(f"socks5://127.0.0.1:{server.port}")
    s.settimeout(5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fd = s.fileno()
    with s:
        s.connect(("multi.test", 80))
        assert s.recv(100) == b"welcome"
        # The same object and descriptor number, now carrying the third attempt.
        assert s.fileno() == fd
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert seen == ["2001:db8::1", "192.0.2.1", "192.0.2.2"]


def test_next_address_attempt_runs_on_a_descriptor_in_the_sockets_mode(
    scripted_server: Callable[..., SocksServer], mocker: Any
) -> None:
    """The descriptor swapped in for the next attempt is as blocking as the socket.

    A fresh socket takes the default timeout (non-blocking underneath),
    while this one was made blocking: on a descriptor left non-blocking,
    the second attempt's first read would fail at once with EAGAIN.
    """
    attempts: list[str] = []

    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        attempts.append(str(read_request(conn)[2]))
        if len(attempts) == 1:
            conn.sendall(encode_reply(4))
            return
        conn.sendall(encode_reply(0, 1, "127.0.0.1", 4242) + b"welcome")

    server = scripted_server(script)
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "two.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", args[0])),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.2", args[0])),
            ]
        return real(host, *args, **kw)

    mocker.patch("socket.getaddrinfo", side_effect=fake)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    try:
        s = socks5client.socksocket()
        s.settimeout(None)
        s.set_proxy(f"socks5://127.0.0.1:{server.port}")
        with s:
            s.connect(("two.test", 80))
            assert s.recv(100) == b"welcome"
    finally:
        socket.setdefaulttimeout(previous)
    assert attempts == ["192.0.2.1", "192.0.2.2"]


def test_local_resolution_raises_the_last_error_when_all_fail(
    scripted_server: Callable[..., SocksServer],
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(5))

    server = scripted_server(script)
    s = socks5client.socksocket()
    s.set_proxy(f"socks5://127.0.0.1:{server.port}")
    s.settimeout(5)
    with pytest.raises(errors.SOCKS5ConnectionRefusedError):
        s.connect(("localhost", 9))
    assert s.fileno() == -1


def test_idna_name_goes_on_the_wire_as_idna2008(
    scripted_server: Callable[..., SocksServer],
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        record = server.record_for(conn)
        read_greeting(conn, record)
        conn.sendall(b"\x05\x00")
        read_request(conn, record)
        conn.sendall(encode_reply(4))

    server = scripted_server(script)
    with proxied(server) as s, pytest.raises(errors.SOCKS5HostUnreachableError):
        s.connect(("faß.de", 443))
    rec = server.records[-1]
    assert (rec.atyp, rec.dst_addr, rec.dst_port) == (3, "xn--fa-hia.de", 443)


# -- how the proxy itself is given ------------------------------------------------


def test_proxy_given_as_ipv6_literal(
    socks_server_v6: SocksServer, echo_server: tuple[str, int]
) -> None:
    s = socks5client.socksocket(socket.AF_INET6)
    s.set_proxy(f"socks5h://[::1]:{socks_server_v6.port}")
    with s:
        s.settimeout(5)
        s.connect(echo_server)
        echo_round_trip(s)
        assert s.get_proxy_peername()[:2] == ("::1", socks_server_v6.port)


def test_proxy_given_as_hostname(socks_server: SocksServer, echo_server: tuple[str, int]) -> None:
    s = socks5client.socksocket()
    s.set_proxy(socks5client.SOCKS5, "localhost", socks_server.port)
    with s:
        s.settimeout(5)
        s.connect(echo_server)
        echo_round_trip(s)


def test_ipv6_proxy_on_an_ipv4_socket_is_a_clear_error(socks_server_v6: SocksServer) -> None:
    s = socks5client.socksocket(socket.AF_INET)
    s.set_proxy(f"socks5h://[::1]:{socks_server_v6.port}")
    with pytest.raises(errors.ProxyConnectionError, match="IPv4"):
        s.connect(("127.0.0.1", 9))
    assert s.fileno() == -1


def test_unreachable_proxy_is_a_proxy_connection_error() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    s = socks5client.socksocket()
    s.set_proxy(socks5client.SOCKS5, "127.0.0.1", port)
    with pytest.raises(errors.ProxyConnectionError) as info:
        s.connect(("127.0.0.1", 80))
    assert info.value.errno == errno.ECONNREFUSED
    assert isinstance(info.value.socket_err, ConnectionRefusedError)
    assert s.fileno() == -1


# -- authentication ---------------------------------------------------------------


def test_username_password_accepted(auth_server: SocksServer, echo_server: tuple[str, int]) -> None:
    with proxied(auth_server, username="alice", password="s3cret") as s:
        s.connect(echo_server)
        echo_round_trip(s)
    rec = auth_server.records[-1]
    assert (rec.username, rec.password) == ("alice", "s3cret")
    assert rec.methods == b"\x00\x02"


def test_wrong_password_is_an_auth_error_without_the_password(auth_server: SocksServer) -> None:
    s = proxied(auth_server, username="alice", password="not-the-password")
    with pytest.raises(errors.SOCKS5AuthError) as info:
        s.connect(("127.0.0.1", 9))
    assert "not-the-password" not in str(info.value)
    assert "not-the-password" not in repr(info.value)
    assert "alice" in str(info.value)
    assert s.fileno() == -1


def test_no_credentials_for_an_auth_proxy_is_an_auth_error(auth_server: SocksServer) -> None:
    s = proxied(auth_server)
    with pytest.raises(errors.SOCKS5AuthError, match="none of the authentication methods"):
        s.connect(("127.0.0.1", 9))


def test_only_no_auth_offered_without_credentials(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        s.connect(echo_server)
    assert socks_server.records[-1].methods == b"\x00"


# -- timeouts ---------------------------------------------------------------------


def _silent(conn: socket.socket, server: SocksServer) -> None:
    read_greeting(conn)
    server.wait()


def test_socket_timeout_bounds_the_whole_handshake(
    scripted_server: Callable[..., SocksServer],
) -> None:
    server = scripted_server(_silent)
    s = proxied(server)
    s.settimeout(0.5)
    start = time.monotonic()
    with pytest.raises(errors.ProxyTimeoutError) as info:
        s.connect(("127.0.0.1", 80))
    assert time.monotonic() - start < 1.5
    assert isinstance(info.value, TimeoutError)
    assert info.value.errno == errno.ETIMEDOUT


def test_default_timeout_applies(scripted_server: Callable[..., SocksServer]) -> None:
    server = scripted_server(_silent)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.4)
    try:
        s = socks5client.socksocket()
    finally:
        socket.setdefaulttimeout(old)
    s.set_proxy(socks5client.SOCKS5, "127.0.0.1", server.port)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        s.connect(("127.0.0.1", 80))
    assert time.monotonic() - start < 1.4


def test_timeout_is_restored_after_the_handshake(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        s.settimeout(7.5)
        s.connect(echo_server)
        assert s.gettimeout() == 7.5
    with proxied(socks_server) as s:
        s.settimeout(None)
        s.connect(echo_server)
        assert s.gettimeout() is None


# -- connect_ex --------------------------------------------------------------------


def test_connect_ex_returns_zero_then_works(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        assert s.connect_ex(echo_server) == 0
        echo_round_trip(s)


def test_connect_ex_returns_errno_for_a_refused_destination(socks_server: SocksServer) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with proxied(socks_server) as s:
        assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
        # As with a plain socket, the socket stays open and a second
        # connect_ex tries again and reports the same error (not EBADF).
        assert s.fileno() != -1
        assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    assert socks_server.connections == 2


# -- default proxy, no proxy, other families and flags --------------------------------


def test_default_proxy_is_used_by_sockets_without_their_own(
    socks_server: SocksServer, echo_server: tuple[str, int], default_proxy_reset: None
) -> None:
    socks5client.set_default_proxy(socks5client.SOCKS5, "127.0.0.1", socks_server.port)
    with socks5client.socksocket() as s:
        s.settimeout(5)
        s.connect(echo_server)
        echo_round_trip(s)
    assert socks_server.connections == 1


def test_hostname_with_a_nul_is_refused_before_anything_is_sent(
    socks_server: SocksServer,
) -> None:
    # A plain socket refuses it too; a proxy in C would connect to "127.0.0.1".
    with proxied(socks_server) as s, pytest.raises(ValueError, match="NUL"):
        s.connect(("127.0.0.1\x00.allowed.example", 80))
    assert socks_server.connections == 0


def test_set_proxy_without_arguments_connects_directly(
    socks_server: SocksServer, echo_server: tuple[str, int], default_proxy_reset: None
) -> None:
    socks5client.set_default_proxy(socks5client.SOCKS5, "127.0.0.1", socks_server.port)
    with socks5client.socksocket() as s:
        s.set_proxy()
        s.connect(echo_server)
        echo_round_trip(s)
        assert s.get_proxy_sockname() is None
    assert socks_server.connections == 0


def test_without_any_proxy_it_is_a_plain_socket(echo_server: tuple[str, int]) -> None:
    with socks5client.socksocket() as s:
        s.connect(echo_server)
        echo_round_trip(s)
        assert s.getpeername() == echo_server


def test_af_unix_ignores_the_default_proxy(
    socks_server: SocksServer, default_proxy_reset: None
) -> None:
    socks5client.set_default_proxy(socks5client.SOCKS5, "127.0.0.1", socks_server.port)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(1)
        with listener, socks5client.socksocket(socket.AF_UNIX) as s:
            s.connect(path)
            conn, _ = listener.accept()
            with conn:
                s.sendall(b"unix")
                assert conn.recv(10) == b"unix"
                assert s.getpeername() == path
    assert socks_server.connections == 0


def test_type_flags_are_accepted_and_nonblocking_survives_the_handshake(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    s = socks5client.socksocket(
        socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    )
    with s:
        assert s.type == socket.SOCK_STREAM
        assert s.gettimeout() == 0.0
        assert not os.get_inheritable(s.fileno())
        s.set_proxy(socks5client.SOCKS5, "127.0.0.1", socks_server.port)
        s.connect(echo_server)
        assert s.gettimeout() == 0.0
        s.setblocking(True)
        echo_round_trip(s)


# -- the tunnel is a plain socket ---------------------------------------------------


def test_no_python_code_on_the_data_path() -> None:
    # sendto and sendmsg are wrapped on TCP: before the handshake, MSG_FASTOPEN
    # would open a direct connection (tests/test_hardening.py).
    names = ("send", "recv", "sendall", "recv_into", "recvfrom", "recvfrom_into", "recvmsg")
    for name in (*names, "recvmsg_into", "makefile", "sendfile", "shutdown", "settimeout"):
        assert getattr(socks5client.socksocket, name) is getattr(socket.socket, name), name


def test_recv_into_makefile_and_sendfile(
    socks_server: SocksServer, echo_server: tuple[str, int], tmp_path: Any
) -> None:
    data = os.urandom(200_000)
    src = tmp_path / "payload"
    src.write_bytes(data)
    with proxied(socks_server) as s:
        s.connect(echo_server)
        with open(src, "rb") as f:
            received = bytearray()
            sender = threading.Thread(target=s.sendfile, args=(f,))
            sender.start()
            buf = bytearray(65536)
            while len(received) < len(data):
                n = s.recv_into(buf)
                assert n
                received += buf[:n]
            sender.join(10)
        assert bytes(received) == data
        s.sendall(b"line one\nline two\n")
        with s.makefile("rb") as rf:
            assert rf.readline() == b"line one\n"
            assert rf.readline() == b"line two\n"


def test_tls_over_the_tunnel(socks_server: SocksServer) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with listener:
        s = proxied(socks_server)
        s.connect(("localhost", port))
        with client_ctx.wrap_socket(s, server_hostname="localhost") as tls:
            tls.sendall(b"secret")
            assert tls.recv(100) == b"SECRET"
            assert tls.version() is not None
        t.join(5)


# -- create_connection -----------------------------------------------------------


def test_create_connection_with_a_url(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with socks5client.create_connection(
        echo_server, timeout=5, proxy=f"socks5h://127.0.0.1:{socks_server.port}"
    ) as s:
        assert isinstance(s, socks5client.socksocket)
        assert s.gettimeout() == 5
        echo_round_trip(s)


@pytest.mark.parametrize("form", ["str-port", "list", "bytes-port"])
def test_create_connection_takes_what_socket_create_connection_takes(
    socks_server: SocksServer, echo_server: tuple[str, int], form: str
) -> None:
    # Through a proxy as without one: any pair, a port given as a string
    # (under patch() this is socket.create_connection for every program).
    host, port = echo_server
    address: Any = {
        "str-port": (host, str(port)),
        "list": [host, port],
        "bytes-port": (host, str(port).encode()),
    }[form]
    url = f"socks5h://127.0.0.1:{socks_server.port}"
    with socks5client.create_connection(address, 5, proxy=url) as s:
        echo_round_trip(s)
    assert socks_server.records[-1].dst_port == port


def test_create_connection_with_pysocks_keywords(
    auth_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with socks5client.create_connection(
        ("localhost", echo_server[1]),
        timeout=5,
        source_address=("127.0.0.1", 0),
        proxy_type=socks5client.PROXY_TYPE_SOCKS5,
        proxy_addr="localhost",
        proxy_port=auth_server.port,
        proxy_rdns=True,
        proxy_username="alice",
        proxy_password="s3cret",
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    ) as s:
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        echo_round_trip(s)
    assert auth_server.records[-1].dst_addr == "localhost"


def test_create_connection_without_a_proxy_is_direct(echo_server: tuple[str, int]) -> None:
    with socks5client.create_connection(echo_server, timeout=5) as s:
        echo_round_trip(s)
    # socket.create_connection's rules without a proxy: a service port too.
    with socks5client.create_connection((echo_server[0], str(echo_server[1])), 5) as s:
        echo_round_trip(s)


def test_create_connection_refuses_bad_destinations_before_connecting(
    socks_server: SocksServer,
) -> None:
    url = f"socks5h://127.0.0.1:{socks_server.port}"
    with pytest.raises(ValueError):
        socks5client.create_connection(("a" * 256, 80), proxy=url)
    with pytest.raises(ValueError):
        socks5client.create_connection(("example.com", 65536), proxy=url)
    assert socks_server.connections == 0


# -- PySocks compatibility --------------------------------------------------------


def test_pysocks_names_work(socks_server: SocksServer, echo_server: tuple[str, int]) -> None:
    socks = socks5client
    s = socks.socksocket()
    s.setproxy(socks.PROXY_TYPE_SOCKS5, "127.0.0.1", socks_server.port, True)
    s.settimeout(5)
    with s:
        s.connect(echo_server)
        assert s.get_peername() == echo_server
    assert issubclass(socks.SOCKS5Error, socks.ProxyError)


def test_wrap_module_patches_the_module_socket(
    socks_server: SocksServer, default_proxy_reset: None
) -> None:
    original = socket.socket
    fake_socket_module = types.SimpleNamespace(socket=original)
    module = types.ModuleType("client")
    module.socket = fake_socket_module  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="default proxy"):
        socks5client.wrap_module(module)
    socks5client.set_default_proxy(socks5client.SOCKS5, "127.0.0.1", socks_server.port)
    socks5client.wrap_module(module)
    # As in PySocks, module.socket.socket is replaced; the socket module
    # itself is patched as well (it is what module.socket normally is).
    assert issubclass(fake_socket_module.socket, socks5client.socksocket)
    assert issubclass(socket.socket, socks5client.socksocket)
    socks5client.unpatch()
    # unpatch() puts both back.
    assert fake_socket_module.socket is original
    assert socket.socket is original


def _urllib3_socks_on_socks5client(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``urllib3.contrib.socks`` imported afresh with socks5client as ``socks``.

    All of it is undone after the test: the module in ``sys.modules`` and
    the attribute the import sets on ``urllib3.contrib``, which a later
    ``from urllib3.contrib import socks`` would otherwise find.
    """
    import urllib3.contrib

    monkeypatch.setitem(sys.modules, "socks", socks5client)
    # setitem then del, not delitem: delitem records nothing to put back
    # for an entry that is absent, and the import below would stay.
    monkeypatch.setitem(sys.modules, "urllib3.contrib.socks", None)
    del sys.modules["urllib3.contrib.socks"]
    monkeypatch.setattr(urllib3.contrib, "socks", None, raising=False)
    return importlib.import_module("urllib3.contrib.socks")


def test_urllib3_contrib_socks_runs_on_socks5client(
    socks_server: SocksServer, http_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3's SOCKS support, written for PySocks, runs unchanged on socks5client."""
    contrib = _urllib3_socks_on_socks5client(monkeypatch)
    assert contrib.socks is socks5client
    with contrib.SOCKSProxyManager(f"socks5h://127.0.0.1:{socks_server.port}") as pm:
        resp = pm.request("GET", f"http://localhost:{http_server[1]}/", retries=False)
        assert resp.status == 200
        assert resp.data == b"hello from the target"
    assert socks_server.records[-1].dst_addr == "localhost"


def test_urllib3_sees_our_refusal_as_a_new_connection_error(
    socks_server: SocksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib3

    contrib = _urllib3_socks_on_socks5client(monkeypatch)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with (
        contrib.SOCKSProxyManager(f"socks5h://127.0.0.1:{socks_server.port}") as pm,
        pytest.raises(urllib3.exceptions.NewConnectionError, match="connection refused"),
    ):
        pm.request("GET", f"http://127.0.0.1:{port}/", retries=False)


# -- regressions found in review ----------------------------------------------------


def test_wrap_module_of_socket_itself_routes_everything_without_recursion(
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    default_proxy_reset: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    socks5client.set_default_proxy(socks5client.SOCKS5, "127.0.0.1", socks_server.port)
    socks5client.wrap_module(socket)
    try:
        assert issubclass(socket.socket, socks5client.socksocket)
        with socket.create_connection(echo_server, timeout=5) as s:
            echo_round_trip(s)
            assert isinstance(s, socks5client.socksocket)
    finally:
        socks5client.unpatch()
    assert socks_server.connections == 1


def test_connect_ex_on_a_connected_socket_returns_eisconn(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        s.connect(echo_server)
        assert s.connect_ex(echo_server) == errno.EISCONN
        echo_round_trip(s)


def _tunnel(made: str, server: SocksServer, echo_server: tuple[str, int]) -> socket.socket:
    """A socket through ``server``, with no proxy of its own any more."""
    if made == "create_connection":
        # Its socket has no proxy set: the one given was for the call.
        return socks5client.create_connection(
            echo_server, timeout=5, proxy=f"socks5://127.0.0.1:{server.port}"
        )
    s = proxied(server)
    if made == "connect":
        s.connect(echo_server)
    else:  # "bind": waiting for its peer
        s.bind(("0.0.0.0", 0))
        s.listen()
    s.set_proxy(None)
    return s


@pytest.mark.parametrize("made", ["create_connection", "connect", "bind"])
def test_a_tunnel_without_a_proxy_refuses_another_connect_with_eisconn(
    socks_server: SocksServer, echo_server: tuple[str, int], made: str
) -> None:
    # Such a connect takes the direct branch, the C call, which on Linux
    # answers success once after a connect completed in non-blocking mode:
    # the tunnel passed for a direct connection to the other address.
    with socket.create_server(("127.0.0.1", 0)) as other:
        s = _tunnel(made, socks_server, echo_server)
        with s:
            with pytest.raises(OSError) as info:
                s.connect(other.getsockname())
            assert info.value.errno == errno.EISCONN
            assert s.connect_ex(other.getsockname()) == errno.EISCONN
            if made != "bind":
                echo_round_trip(s)  # still the tunnel
        with pytest.raises(OSError) as info:
            s.connect(other.getsockname())
        assert info.value.errno == errno.EBADF  # closed: as a plain socket


def test_unresolvable_proxy_host_has_a_positive_errno_and_says_so() -> None:
    s = socks5client.socksocket()
    s.set_proxy(socks5client.SOCKS5, "proxy.invalid", 1080)
    with pytest.raises(errors.ProxyConnectionError, match="cannot resolve proxy host") as info:
        s.connect(("127.0.0.1", 80))
    assert info.value.errno is not None and info.value.errno > 0
    assert isinstance(info.value.socket_err, socket.gaierror)


def test_listen_without_backlog_works_on_a_plain_socksocket() -> None:
    with socks5client.socksocket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        peer = socket.create_connection(s.getsockname(), timeout=5)
        conn, _ = s.accept()
        conn.close()
        peer.close()


def test_local_resolution_uses_idna2008(mocker: Any, socks_server: SocksServer) -> None:
    real = socket.getaddrinfo
    asked: list[str] = []

    def fake(host: Any, *args: Any, **kw: Any) -> Any:
        if (isinstance(host, str) and host.startswith("xn--")) or host == "fass.de":
            asked.append(host)
            return real("127.0.0.1", *args, **kw)
        return real(host, *args, **kw)

    mocker.patch("socket.getaddrinfo", side_effect=fake)
    s = socks5client.socksocket()
    s.set_proxy(f"socks5://127.0.0.1:{socks_server.port}")
    s.settimeout(5)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(errors.SOCKS5ConnectionRefusedError):
        s.connect(("faß.de", port))
    assert asked == ["xn--fa-hia.de"]


def test_create_connection_refuses_mixed_proxy_arguments(socks_server: SocksServer) -> None:
    with pytest.raises(ValueError, match="not both"):
        socks5client.create_connection(
            ("127.0.0.1", 80), proxy=f"socks5h://127.0.0.1:{socks_server.port}", proxy_port=1
        )
    assert socks_server.connections == 0


def test_create_connection_direct_applies_socket_options(echo_server: tuple[str, int]) -> None:
    with socks5client.create_connection(
        echo_server, timeout=5, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    ) as s:
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        echo_round_trip(s)


def test_debug_log_names_the_handshake_but_never_the_password(
    auth_server: SocksServer, echo_server: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="socks5client")
    with proxied(auth_server, username="alice", password="s3cret") as s:
        s.connect(echo_server)
    bad = proxied(auth_server, username="alice", password="wrong-pw-123")
    with pytest.raises(errors.SOCKS5AuthError):
        bad.connect(echo_server)
    text = caplog.text
    assert "succeeded" in text and "failed" in text
    assert "s3cret" not in text and "wrong-pw-123" not in text


def test_create_connection_closes_its_socket_on_any_error(
    socks_server: SocksServer, fd_count: Callable[[], int]
) -> None:
    before = fd_count()
    with pytest.raises(TypeError):
        socks5client.create_connection(
            ("127.0.0.1", 9),
            proxy=f"socks5h://127.0.0.1:{socks_server.port}",
            socket_options=[(1,)],  # type: ignore[list-item]
        )
    assert fd_count() == before


def test_create_connection_proxy_rdns_false_alone_resolves_locally_via_the_default(
    socks_server: SocksServer, echo_server: tuple[str, int], default_proxy_reset: None
) -> None:
    socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    with socks5client.create_connection(
        ("localhost", echo_server[1]), timeout=5, proxy_rdns=False
    ) as s:
        echo_round_trip(s)
    assert socks_server.records[-1].atyp == 1


def _closed_outcomes(s: socket.socket) -> list[object]:
    """What detach(), set_inheritable(True) and a Fast Open send give once ``s`` is closed."""
    s.close()
    outcomes: list[object] = []
    for call, args in (
        (s.detach, ()),
        (s.set_inheritable, (True,)),
        (s.sendto, (b"x", socket.MSG_FASTOPEN, ("127.0.0.1", 9))),
    ):
        try:
            outcomes.append(call(*args))  # type: ignore[operator]
        except OSError as exc:
            outcomes.append(exc.errno)
    return outcomes


def test_a_closed_socksocket_fails_as_a_closed_plain_socket(socks_server: SocksServer) -> None:
    # Nothing can bypass the proxy through a closed descriptor: the answers
    # are the plain socket's (detach() returns -1, the others EBADF), not
    # the refusals meant for an open one.
    expected = [-1, errno.EBADF, errno.EBADF]
    assert _closed_outcomes(socket.socket()) == expected
    assert _closed_outcomes(proxied(socks_server)) == expected
    assert socks_server.connections == 0
