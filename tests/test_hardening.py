"""No path around the proxy, one deadline per call, plain-socket semantics (TCP).

Each test here is a regression test for a way a proxied TCP socksocket could
reach the network directly, block past its deadline, or lose an option or
an address.  A *trap* -- a plain listener standing for the real destination
-- counts the connections it gets: a proxied socket must never reach it
directly.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from dns_recorder import install_recorder

import socks5client
from socks5client import _negotiate, errors

from conftest import AUTH_PASSWORD, AUTH_USER
from server import (
    ATYP_DOMAIN,
    CMD_CONNECT,
    SocksServer,
    encode_reply,
    read_greeting,
    read_request,
)

ScriptedServer = Callable[..., SocksServer]
PlainSocket = socket.socket


class Trap:
    """A plain TCP listener on loopback that counts who connects to it directly."""

    def __init__(self) -> None:
        self.sock = PlainSocket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._accepted: list[socket.socket] = []

    def hits(self) -> int:
        """Connections that reached the trap so far (waits a moment for stragglers)."""
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                time.sleep(0.01)
                continue
            self._accepted.append(conn)
        return len(self._accepted)

    def close(self) -> None:
        for conn in self._accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


@pytest.fixture
def default_proxy_reset() -> Iterator[None]:
    yield
    socks5client.set_default_proxy()


def proxied(server: SocksServer, url: str = "socks5h", timeout: float | None = 5.0) -> Any:
    s = socks5client.socksocket()
    s.set_proxy(f"{url}://127.0.0.1:{server.port}")
    s.settimeout(timeout)
    return s


def round_trip(sock: socket.socket) -> None:
    sock.sendall(b"ping")
    got = b""
    while len(got) < 4:
        chunk = sock.recv(4 - len(got))
        assert chunk
        got += chunk
    assert got == b"ping"


# --------------------------------------------------------------------------
# dup(), subclasses, detach()/ssl, TCP Fast Open, other socket types.
# --------------------------------------------------------------------------


def test_dup_before_connect_keeps_the_proxy(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s, s.dup() as d:
        d.settimeout(5)
        d.connect(echo_server)
        round_trip(d)
        assert socks_server.connections == 1
        assert d.getpeername() == echo_server


def test_dup_after_connect_keeps_destination_and_tunnel(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        s.connect(("localhost", echo_server[1]))
        with s.dup() as d:
            assert isinstance(d, socks5client.socksocket)
            assert d.getpeername() == ("localhost", echo_server[1])
            assert d.get_proxy_sockname() == s.get_proxy_sockname()
            round_trip(d)
            # A connected dup cannot connect again, through the proxy or not.
            with pytest.raises(OSError) as info:
                d.connect(echo_server)
            assert info.value.errno == errno.EISCONN


def test_subclass_connects_through_the_proxy(
    socks_server: SocksServer, echo_server: tuple[str, int], trap: Trap
) -> None:
    class MySock(socks5client.socksocket):
        pass

    with MySock() as s:
        s.set_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
        s.settimeout(5)
        s.connect(echo_server)
        round_trip(s)
    assert socks_server.connections == 1


def test_ssl_wrap_before_connect_is_refused_and_goes_nowhere(
    socks_server: SocksServer, trap: Trap, fd_count: Any
) -> None:
    ctx = ssl.create_default_context()
    before = fd_count()
    s = proxied(socks_server)
    with pytest.raises(OSError) as info:
        wrapped = ctx.wrap_socket(s, server_hostname="localhost")
        wrapped.connect(trap.address)  # pragma: no cover - must not be reached
    assert info.value.errno == errno.EOPNOTSUPP
    assert "connect() first" in str(info.value)
    assert s.fileno() == -1
    del info
    s.close()
    assert trap.hits() == 0
    assert socks_server.connections == 0
    assert fd_count.settle(before) == before


def test_ssl_wrap_after_connect_still_works(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    # detach() after the handshake hands over the tunnel, as it must.
    with proxied(socks_server) as s:
        s.connect(echo_server)
        fd = s.fileno()
        raw = s.detach()
        assert raw == fd
        with PlainSocket(fileno=raw) as plain:
            plain.settimeout(5)
            round_trip(plain)


def test_detach_before_connect_is_refused_without_leaking(
    socks_server: SocksServer, fd_count: Any
) -> None:
    before = fd_count()
    s = proxied(socks_server)
    with pytest.raises(OSError):
        s.detach()
    s.close()
    assert fd_count.settle(before) == before


def test_set_inheritable_before_connect_is_refused(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        with pytest.raises(OSError) as info:
            s.set_inheritable(True)
        assert info.value.errno == errno.EOPNOTSUPP
        assert not s.get_inheritable()
        s.set_inheritable(False)  # harmless either way
        s.connect(echo_server)
        s.set_inheritable(True)  # the descriptor is the tunnel now
        assert s.get_inheritable()


def test_detach_without_proxy_is_plain() -> None:
    s = socks5client.socksocket()
    s.set_proxy()
    fd = s.fileno()
    assert s.detach() == fd
    PlainSocket(fileno=fd).close()


def _fastopen_reaches(target: tuple[str, int], sock: socket.socket, use_sendmsg: bool) -> None:
    flags = socket.MSG_FASTOPEN
    if use_sendmsg:
        sock.sendmsg([b"GET / HTTP/1.0\r\n\r\n"], [], flags, target)
    else:
        sock.sendto(b"GET / HTTP/1.0\r\n\r\n", flags, target)


@pytest.mark.parametrize("use_sendmsg", [False, True], ids=["sendto", "sendmsg"])
def test_fast_open_before_connect_is_refused(
    socks_server: SocksServer, trap: Trap, use_sendmsg: bool
) -> None:
    # The precondition that makes this test meaningful: on this machine a
    # plain socket does open a connection with MSG_FASTOPEN.
    with PlainSocket() as plain:
        _fastopen_reaches(trap.address, plain, use_sendmsg)
    assert trap.hits() == 1
    with proxied(socks_server) as s:
        with pytest.raises(OSError) as info:
            _fastopen_reaches(trap.address, s, use_sendmsg)
        assert info.value.errno == errno.EOPNOTSUPP
    assert trap.hits() == 1
    assert socks_server.connections == 0


def test_default_proxy_applies_to_fast_open_too(
    socks_server: SocksServer, trap: Trap, default_proxy_reset: None
) -> None:
    socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    with socks5client.socksocket() as s, pytest.raises(OSError):
        s.sendto(b"x", socket.MSG_FASTOPEN, trap.address)
    assert trap.hits() == 0


def test_sendto_after_connect_goes_into_the_tunnel(
    socks_server: SocksServer, echo_server: tuple[str, int], trap: Trap
) -> None:
    # On a connected TCP socket the kernel ignores sendto's address: the
    # bytes go into the tunnel, as on a plain connected socket.
    with proxied(socks_server) as s:
        s.connect(echo_server)
        assert s.sendto(b"ping", trap.address) == 4
        assert s.recv(4) == b"ping"
    assert trap.hits() == 0


_SENDTO_CHILD = """
import json, socket, sys, time
from test_patch_clients import _DNSTrap, _loopback_up
import socks5client
from server import EchoServer, SocksServer

_loopback_up()
trap = _DNSTrap()
report = {}
try:
    socket.socket().sendto(b"x", ("control.example", 80))
except OSError as exc:
    report["control"] = type(exc).__name__
time.sleep(0.1)
report["control_queries"] = list(trap.names)
trap.names.clear()
with SocksServer("127.0.0.1") as proxy, EchoServer("127.0.0.1") as echo:
    url = f"socks5h://127.0.0.1:{proxy.port}"
    with socks5client.socksocket() as s:
        s.set_proxy(url)
        s.settimeout(5)
        s.connect(echo.address)
        # Connected: the bytes go into the tunnel, as without the address.
        report["sendto"] = s.sendto(b"ab", ("sendto.example", 80))
        report["sendto_flags"] = s.sendto(b"cd", 0, (b"sendto-bytes.example", 80))
        report["sendmsg"] = s.sendmsg([b"ef"], [], 0, ("sendmsg.example", 80))
        got = b""
        while len(got) < 6:
            got += s.recv(6 - len(got))
        report["echoed"] = got.decode()
    with socks5client.socksocket() as s:
        s.set_proxy(url)
        # Not connected: what the kernel says with an address or without.
        try:
            s.sendto(b"x", ("unconnected.example", 80))
        except OSError as exc:
            report["unconnected"] = type(exc).__name__
    # The connection a BIND's accept() returns is a tunnel too, though it
    # has no proxy of its own.
    with socks5client.socksocket() as listener:
        listener.set_proxy(url)
        listener.settimeout(5)
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname(), timeout=5) as peer:
            conn, _ = listener.accept()
            with conn:
                report["bind_sendto"] = conn.sendto(b"gh", ("bind-sendto.example", 80))
                report["bind_sendmsg"] = conn.sendmsg([b"ij"], [], 0, ("bind-sendmsg.example", 80))
                got = b""
                while len(got) < 4:
                    got += peer.recv(4 - len(got))
                report["bind_received"] = got.decode()
time.sleep(0.1)
report["queries"] = list(trap.names)
print(json.dumps(report))
"""


def test_send_address_with_a_name_is_not_looked_up(tmp_path: Any) -> None:
    # The C sendto/sendmsg resolve a host name before the kernel ignores
    # the address of a connected TCP socket (or refuses the send of an
    # unconnected one): a DNS query around the proxy.  Only a network
    # namespace whose name server is a trap shows it: the lookup is made
    # in C, under any Python-level recorder.
    import os
    import sys
    from pathlib import Path

    from test_patch_clients import _namespace_report

    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    child = tmp_path / "child.py"
    child.write_text(_SENDTO_CHILD)
    tests = Path(__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tests.parent), str(tests)]))
    script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" "$3"'
    report = _namespace_report(
        ["sh", "-c", script, "sh", str(resolv), sys.executable, str(child)], env, str(tests)
    )
    # The control: a plain socket's sendto does ask the trap.
    assert "control.example" in report["control_queries"]
    assert (report["sendto"], report["sendto_flags"], report["sendmsg"]) == (2, 2, 2)
    assert report["echoed"] == "abcdef"
    assert report["unconnected"] == "BrokenPipeError"
    bind = (report["bind_sendto"], report["bind_sendmsg"], report["bind_received"])
    assert bind == (2, 2, "ghij")
    assert report["queries"] == []


def test_create_connection_without_a_proxy_refuses_a_synthetic_address(
    socks_server: SocksServer, mocker: Any
) -> None:
    # A synthetic address from patch() leads nowhere but through a proxy;
    # without one, create_connection refuses it as socksocket.connect does.
    # (The direct connection is replaced so that a regression raises
    # instead of sending a SYN to 240.0.0.0/4.)
    direct = mocker.patch.object(
        socks5client.sock, "_direct_connection", side_effect=AssertionError("direct")
    )
    socks5client.patch(f"socks5h://127.0.0.1:{socks_server.port}", no_proxy="")
    try:
        info = socket.getaddrinfo("example.com", 80, socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(OSError) as refused:
            socks5client.create_connection((info[0][4][0], 80), timeout=1)
    finally:
        socks5client.unpatch()
    assert refused.value.errno == errno.EHOSTUNREACH
    direct.assert_not_called()
    assert socks_server.connections == 0


def test_raw_socket_with_a_proxy_is_refused(socks_server: SocksServer) -> None:
    try:
        s = socks5client.socksocket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW")
    with s:
        s.set_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
        echo_request = b"\x08\x00\xf7\xff\x00\x00\x00\x00"
        for call in (
            lambda: s.sendto(echo_request, ("127.0.0.1", 0)),
            lambda: s.sendmsg([echo_request], [], 0, ("127.0.0.1", 0)),
            lambda: s.connect(("127.0.0.1", 0)),
        ):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == errno.EOPNOTSUPP
        assert s.connect_ex(("127.0.0.1", 0)) == errno.EOPNOTSUPP
        with pytest.raises(OSError):
            s.detach()
    # Without a proxy it is the plain raw socket it always was.
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as plain:
        assert plain.sendto(echo_request, ("127.0.0.1", 0)) == len(echo_request)


# --------------------------------------------------------------------------
# DNS: wrap_module routes socket.create_connection's names to the proxy.
# --------------------------------------------------------------------------


@pytest.fixture
def wrapped_socket_module(
    monkeypatch: pytest.MonkeyPatch, default_proxy_reset: None
) -> Iterator[None]:
    yield
    socks5client.unpatch()  # wrap_module applies the global patch


def test_wrap_module_sends_create_connection_names_unresolved(
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    wrapped_socket_module: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under the resolver, before wrap_module replaces anything: every real
    # lookup is seen (the reference server's own, on its threads, are not).
    resolver = install_recorder(monkeypatch)
    socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    socks5client.wrap_module(http.client)
    with socket.create_connection(("localhost", echo_server[1]), timeout=5) as s:
        round_trip(s)
    (record,) = socks_server.records
    assert (record.command, record.atyp, record.dst_addr) == (CMD_CONNECT, ATYP_DOMAIN, "localhost")
    # The only lookup made here is the proxy's own (an IP literal).
    assert "localhost" not in resolver.hosts()


def test_wrap_module_http_client_does_not_resolve_locally(
    socks_server: SocksServer, wrapped_socket_module: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = install_recorder(monkeypatch)
    socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    socks5client.wrap_module(http.client)
    conn = http.client.HTTPConnection("never-resolved.test", 80, timeout=5)
    with pytest.raises(OSError):
        conn.request("GET", "/")  # the reference server cannot resolve it either
    conn.close()
    assert [r.dst_addr for r in socks_server.records] == ["never-resolved.test"]
    assert "never-resolved.test" not in resolver.hosts()


# --------------------------------------------------------------------------
# Calls that must not block: non-blocking sockets.
# --------------------------------------------------------------------------


def _silent_proxy(scripted_server: ScriptedServer) -> SocksServer:
    def script(conn: socket.socket, server: SocksServer) -> None:
        server.wait()

    return scripted_server(script)


@pytest.fixture
def short_nonblocking_bound(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(_negotiate, "NONBLOCKING_HANDSHAKE_TIMEOUT", 0.5)
    return 0.5


def test_non_blocking_connect_to_a_silent_proxy_is_bounded(
    scripted_server: ScriptedServer, short_nonblocking_bound: float
) -> None:
    assert socket.getdefaulttimeout() is None
    server = _silent_proxy(scripted_server)
    s = proxied(server)
    s.setblocking(False)
    started = time.monotonic()
    with s, pytest.raises(errors.ProxyTimeoutError) as info:
        s.connect(("example.test", 80))
    elapsed = time.monotonic() - started
    assert short_nonblocking_bound * 0.9 <= elapsed < short_nonblocking_bound + 1.0
    assert "non-blocking" in str(info.value)


def test_non_blocking_accept_with_a_stalled_second_reply_is_bounded(
    scripted_server: ScriptedServer, short_nonblocking_bound: float
) -> None:
    # The second BIND reply starts to arrive (so accept() cannot just say
    # EAGAIN) and then stalls: the read is bounded like a handshake.
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(0, 1, "127.0.0.1", 4000) + b"\x05")
        server.wait()

    server = scripted_server(script)
    s = proxied(server)
    with s:
        s.listen()
        s.setblocking(False)
        deadline = time.monotonic() + 5
        started = time.monotonic()
        while True:
            try:
                s.accept()
            except BlockingIOError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
                started = time.monotonic()
                continue
            except errors.ProxyTimeoutError as exc:
                assert "non-blocking" in str(exc)
                break
        assert time.monotonic() - started < short_nonblocking_bound + 1.0


def test_default_bound_for_non_blocking_handshakes_is_short() -> None:
    assert 0 < _negotiate.NONBLOCKING_HANDSHAKE_TIMEOUT <= 10


def test_asyncio_sock_connect_to_a_silent_proxy_does_not_freeze_the_loop(
    scripted_server: ScriptedServer, short_nonblocking_bound: float
) -> None:
    server = _silent_proxy(scripted_server)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        s = proxied(server)
        s.setblocking(False)
        started = time.monotonic()
        with s, pytest.raises(errors.ProxyTimeoutError):
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", 9)), 30)
        return time.monotonic() - started

    assert asyncio.run(main()) < short_nonblocking_bound + 1.0


def test_non_blocking_connect_completes_the_handshake_before_returning(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    # asyncio treats "connect returned" as "connected": the reply must have
    # arrived by then, and the socket is non-blocking again afterwards.
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        with proxied(socks_server) as s:
            s.setblocking(False)
            await loop.sock_connect(s, echo_server)
            assert s.gettimeout() == 0.0
            await loop.sock_sendall(s, b"ping")
            return await loop.sock_recv(s, 4)

    assert asyncio.run(main()) == b"ping"


def test_default_timeout_zero_does_not_fail_every_connect(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0)
    try:
        s = socks5client.socksocket()
        s.set_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
        assert s.gettimeout() == 0.0
        with s:
            s.connect(echo_server)
            s.setblocking(True)
            round_trip(s)
        conn = socks5client.create_connection(
            echo_server, proxy=f"socks5h://127.0.0.1:{socks_server.port}"
        )
        with conn:
            conn.setblocking(True)
            round_trip(conn)
    finally:
        socket.setdefaulttimeout(old)


# --------------------------------------------------------------------------
# One deadline per call.
# --------------------------------------------------------------------------


def _fake_resolver(mocker: Any, name: str, addresses: list[str]) -> None:
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port)) for addr in addresses]
        return real(host, port, *args, **kwargs)

    mocker.patch("socket.getaddrinfo", side_effect=fake)


def test_local_dns_attempts_share_one_deadline(
    scripted_server: ScriptedServer, mocker: Any
) -> None:
    # Every address of the destination is refused by the proxy just before
    # the deadline would run out for a single attempt; with one deadline
    # for the call, the whole connect() still ends after about 1 s.
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        if not server.wait(0.6):
            conn.sendall(encode_reply(4))

    server = scripted_server(script)
    _fake_resolver(mocker, "multi.test", ["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    s = proxied(server, "socks5", timeout=1.0)
    started = time.monotonic()
    with s, pytest.raises(errors.ProxyTimeoutError):
        s.connect(("multi.test", 80))
    assert time.monotonic() - started < 1.5
    assert len(server.records) == 2


def test_create_connection_shares_one_deadline_across_proxy_addresses(
    scripted_server: ScriptedServer, mocker: Any
) -> None:
    # The proxy's name resolves to two addresses, both silent proxies on
    # the same port: the second attempt gets what is left of the one
    # timeout, not a fresh one.
    def silent(conn: socket.socket, server: SocksServer) -> None:
        server.wait()

    first = scripted_server(silent, host="127.0.0.1")
    second = scripted_server(silent, host="127.0.0.2", port=first.port)
    _fake_resolver(mocker, "proxies.test", ["127.0.0.1", "127.0.0.2"])
    started = time.monotonic()
    with pytest.raises(errors.ProxyTimeoutError):
        socks5client.create_connection(
            ("example.test", 80), timeout=1.0, proxy=f"socks5h://proxies.test:{first.port}"
        )
    assert time.monotonic() - started < 1.5
    assert len(first.records) == 1
    # Reached, maybe, but given no time of its own.
    assert len(second.records) <= 1


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_the_proxys_next_address_is_tried_on_a_fresh_descriptor(
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    udp_echo_server: Any,
    mocker: Any,
    kind: str,
) -> None:
    # The proxy's name resolves first to an address where nothing listens
    # (refused at once), then to the proxy.  With a timeout the descriptor
    # is non-blocking, and Linux answers a second connect() on it with
    # ECONNABORTED: the next address needs a fresh one (for UDP, the
    # control connection's).
    _fake_resolver(mocker, "proxies.test", ["127.0.0.9", "127.0.0.1"])
    url = f"socks5h://proxies.test:{socks_server.port}"
    if kind == "tcp":
        with socks5client.socksocket() as s:
            s.set_proxy(url)
            s.settimeout(5)
            s.connect(echo_server)
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
    else:
        with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.set_proxy(url)
            s.settimeout(5)
            s.sendto(b"ping", udp_echo_server.address)
            assert s.recvfrom(4)[0] == b"ping"
    assert len(socks_server.records) == 1


# --------------------------------------------------------------------------
# The retry socket keeps its local address and options.
# --------------------------------------------------------------------------


def test_retry_socket_keeps_local_address_and_options(
    scripted_server: ScriptedServer, mocker: Any
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        if len(server.records) < 3:
            conn.sendall(encode_reply(4))
            return
        conn.sendall(encode_reply(0, 1, "127.0.0.1", 4242))
        server.wait()

    server = scripted_server(script)
    _fake_resolver(mocker, "multi.test", ["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    s = proxied(server, "socks5")
    # One option through this object (recorded), one behind its back.
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
    PlainSocket.setsockopt(s, socket.IPPROTO_IP, socket.IP_TTL, 7)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    rcvbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # A struct option: its zero bytes are part of the value.
    linger = struct.pack("ii", 1, 0)
    PlainSocket.setsockopt(s, socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.bind(("127.0.0.2", 0))
    with s:
        s.connect(("multi.test", 80))
        assert s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x10
        assert s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 7
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == rcvbuf
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == linger
        assert s.getsockname()[0] == "127.0.0.2"
    assert [r.client_address[0] for r in server.records] == ["127.0.0.2"] * 3


# --------------------------------------------------------------------------
# Small semantics a plain socket keeps.
# --------------------------------------------------------------------------


def test_connect_ex_again_reports_the_error_again(scripted_server: ScriptedServer) -> None:
    def refuse(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(5))

    server = scripted_server(refuse)
    with proxied(server) as s:
        assert s.connect_ex(("example.test", 80)) == errno.ECONNREFUSED
        assert s.connect_ex(("example.test", 80)) == errno.ECONNREFUSED
        assert s.gettimeout() == 5.0
    assert len(server.records) == 2


def test_ipv6_socket_getpeername_is_a_four_tuple(
    socks_server_v6: SocksServer, echo_server_v6: tuple[str, int]
) -> None:
    with socks5client.socksocket(socket.AF_INET6) as s:
        s.set_proxy(f"socks5h://[::1]:{socks_server_v6.port}")
        s.settimeout(5)
        s.connect(("::1", echo_server_v6[1]))
        with PlainSocket(socket.AF_INET6) as plain:
            plain.connect(echo_server_v6)
            assert len(plain.getpeername()) == 4
        assert s.getpeername() == ("::1", echo_server_v6[1], 0, 0)


def test_default_proxy_cleared_by_another_thread_mid_connect(
    socks_server: SocksServer, echo_server: tuple[str, int], default_proxy_reset: None
) -> None:
    # The proxy is read once per call: clearing the default meanwhile must
    # not break a connect that already chose it.
    socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    failures: list[BaseException] = []

    def worker() -> None:
        for _ in range(20):
            try:
                with socks5client.socksocket() as s:
                    s.settimeout(5)
                    s.connect(echo_server)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(50):
        socks5client.set_default_proxy()
        socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    for t in threads:
        t.join(30)
    assert [f for f in failures if not isinstance(f, OSError)] == []


@pytest.mark.parametrize("call", ["connect", "proxy_bind", "dup-connect"])
def test_a_direct_connection_never_gets_the_handshake_or_the_password(
    auth_server: SocksServer, echo_server: tuple[str, int], call: str
) -> None:
    # Connected without a proxy, then given one: with a timeout, CPython's
    # connect() on a connected socket returns as if it had connected, and
    # the greeting and credentials would go to the direct peer.  A plain
    # socket says EISCONN (connect) or EINVAL (bind), and stays connected.
    url = f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@127.0.0.1:{auth_server.port}"
    with socks5client.socksocket() as s:
        s.set_proxy()
        s.settimeout(2)
        s.connect(echo_server)
        s.set_proxy(url)
        target = s.dup() if call == "dup-connect" else s
        with pytest.raises(OSError) as info:
            if call == "proxy_bind":
                target.proxy_bind()
            else:
                target.connect(("192.0.2.1", 80))
        expected = errno.EINVAL if call == "proxy_bind" else errno.EISCONN
        assert info.value.errno == expected
        assert not isinstance(info.value, errors.ProxyError)
        if target is not s:
            target.close()
        # Still the direct connection, and the echo server got nothing else.
        s.sendall(b"still here")
        assert s.recv(100) == b"still here"
    assert auth_server.connections == 0


def test_a_direct_connection_under_patch_never_gets_the_handshake(
    auth_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    # The same through patch(): loopback goes direct, then the program asks
    # the socket for a SOCKS BIND or another connection.
    socks5client.patch(f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@127.0.0.1:{auth_server.port}")
    try:
        with socket.socket() as s:
            s.settimeout(2)
            s.connect(echo_server)
            with pytest.raises(OSError) as refused:
                s.proxy_bind()  # type: ignore[attr-defined]
            assert refused.value.errno == errno.EINVAL
            with pytest.raises(OSError) as refused:
                s.connect(("192.0.2.1", 80))
            assert refused.value.errno == errno.EISCONN
            s.sendall(b"still here")
            assert s.recv(100) == b"still here"
    finally:
        socks5client.unpatch()
    assert auth_server.connections == 0


def test_connect_on_a_local_listener_is_eisconn_and_keeps_it_open(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    with proxied(socks_server) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with s.dup() as twin:  # the same listening socket
            for listener in (s, twin):
                with pytest.raises(OSError) as info:
                    listener.connect(echo_server)
                assert info.value.errno == errno.EISCONN
                assert not isinstance(info.value, errors.ProxyError)
                assert listener.fileno() != -1
    assert socks_server.connections == 0


# --------------------------------------------------------------------------
# Found by an adversarial review.
# --------------------------------------------------------------------------


class _LyingFlags(int):
    """An int whose ``&`` says "no flag set" while ``__index__`` gives the real flags."""

    def __and__(self, other: Any) -> int:
        return 0


@pytest.mark.parametrize("use_sendmsg", [False, True], ids=["sendto", "sendmsg"])
def test_fast_open_hidden_in_an_int_subclass_is_still_refused(
    socks_server: SocksServer, trap: Trap, use_sendmsg: bool
) -> None:
    flags = _LyingFlags(socket.MSG_FASTOPEN)
    with proxied(socks_server) as s, pytest.raises(OSError) as info:
        if use_sendmsg:
            s.sendmsg([b"x"], [], flags, trap.address)
        else:
            s.sendto(b"x", flags, trap.address)
    assert info.value.errno == errno.EOPNOTSUPP
    assert trap.hits() == 0


def test_udp_descriptor_declared_as_stream_is_not_treated_as_tcp(
    socks_server: SocksServer, udp_echo_server: Any
) -> None:
    udp = PlainSocket(socket.AF_INET, socket.SOCK_DGRAM)
    s = socks5client.socksocket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=udp.detach())
    with s:
        s.set_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
        with pytest.raises(OSError) as info:
            s.sendto(b"direct!", udp_echo_server.address)
        assert info.value.errno == errno.EOPNOTSUPP
    time.sleep(0.1)
    assert udp_echo_server.received == []


def test_refused_ssl_wrap_leaves_nothing_that_can_connect(
    socks_server: SocksServer, trap: Trap
) -> None:
    # ssl's own socket object owns the descriptor when detach() refuses, and
    # a traceback keeps it alive; it must not be able to connect anywhere.
    s = proxied(socks_server)
    ctx = ssl.create_default_context()
    try:
        ctx.wrap_socket(s, server_hostname="localhost")
    except OSError as exc:
        tb = exc.__traceback__
        holders = []
        while tb is not None:
            holders += [v for v in tb.tb_frame.f_locals.values() if isinstance(v, ssl.SSLSocket)]
            tb = tb.tb_next
        assert holders, "ssl's object is expected in the traceback"
        for holder in holders:
            with pytest.raises(OSError):
                PlainSocket.connect(holder, trap.address)
        del holders, tb
    else:  # pragma: no cover
        pytest.fail("wrapping before connect() must be refused")
    assert trap.hits() == 0


def test_timeouts_longer_than_one_poll_call_work(
    socks_server: SocksServer, udp_echo_server: Any
) -> None:
    # poll(2) takes at most 2**31-1 ms (about 24.8 days); a plain socket
    # accepts longer timeouts, so must these waits.
    year = 365 * 86400.0
    udp = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp:
        udp.set_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
        udp.settimeout(year)
        udp.sendto(b"ping", udp_echo_server.address)
        assert udp.recvfrom(100)[0] == b"ping"
    with proxied(socks_server, timeout=year) as s:
        s.listen()
        with PlainSocket() as peer:
            peer.connect(s.getsockname())
            conn, _ = s.accept()
            conn.close()


def test_port_out_of_range_is_what_a_plain_socket_raises_too(socks_server: SocksServer) -> None:
    with PlainSocket() as plain, pytest.raises(OverflowError):
        plain.connect(("127.0.0.1", 70000))
    with proxied(socks_server) as s:
        with pytest.raises(OverflowError):
            s.connect(("127.0.0.1", 70000))
        with pytest.raises(ValueError):
            s.connect(("127.0.0.1", -1))
    assert socks_server.connections == 0


def test_listen_and_accept_on_a_closed_bind_socket_raise_ebadf(socks_server: SocksServer) -> None:
    s = proxied(socks_server)
    s.listen()
    s.close()
    for call in (s.listen, s.accept):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF


def test_udp_flags_are_checked_as_the_kernel_reads_them(
    socks_server: SocksServer, udp_echo_server: Any
) -> None:
    udp = socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp:
        udp.set_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
        udp.settimeout(5)
        with pytest.raises(OSError) as info:
            udp.sendto(b"a", _LyingFlags(socket.MSG_MORE), udp_echo_server.address)
        assert info.value.errno == errno.EOPNOTSUPP
        udp.sendto(b"ping", udp_echo_server.address)
        with pytest.raises(OSError) as info:
            udp.recvfrom(100, _LyingFlags(socket.MSG_PEEK))
        assert info.value.errno == errno.EOPNOTSUPP
        assert udp.recvfrom(100)[0] == b"ping"


@pytest.mark.parametrize("how", ["dup", "fileno", "proxy_bind", "asyncio"])
def test_a_shared_socket_never_sends_its_handshake_into_the_others_tunnel(
    auth_server: SocksServer, how: str
) -> None:
    # Two objects on one kernel socket (dup(), or socksocket(fileno=) on a
    # copy of the descriptor).  Once one has connected it through the proxy
    # with a timeout, Linux answers the next connect() with success, once,
    # whatever the address: the other's greeting and credentials would go
    # down the tunnel to the destination.  Like a plain socket it must say
    # EISCONN (EINVAL for a BIND), send nothing, and leave the tunnel as it is.
    import socks5client.asyncio as aio

    url = f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@127.0.0.1:{auth_server.port}"
    with PlainSocket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(5)
        destination = listener.getsockname()
        s = socks5client.socksocket()
        s.settimeout(2)
        s.set_proxy(url)
        if how == "fileno":
            # The object built on the descriptor is the one that knows.
            first, second = s, socks5client.socksocket(fileno=socket.dup(s.fileno()))
            second.settimeout(2)
            second.set_proxy(url)
        else:
            first, second = s.dup(), s
        with first, second:
            first.connect(destination)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(2)
                with pytest.raises(OSError) as info:
                    if how == "proxy_bind":
                        second.proxy_bind()
                    elif how == "asyncio":
                        asyncio.run(aio.connect(second, destination, timeout=2))
                    else:
                        second.connect(destination)
                expected = errno.EINVAL if how == "proxy_bind" else errno.EISCONN
                assert info.value.errno == expected
                assert not isinstance(info.value, errors.ProxyError)
                # The destination gets the application's bytes, nothing before them.
                first.sendall(b"ping")
                assert conn.recv(100) == b"ping"
                if how != "asyncio":  # (which closes the socket on any failure)
                    second.sendall(b"pong")
                    assert conn.recv(100) == b"pong"
    assert auth_server.connections == 1
    assert len(auth_server.records) == 1


def test_a_listener_shut_down_is_judged_by_the_kernel(
    socks_server: SocksServer, echo_server: tuple[str, int], trap: Trap
) -> None:
    # On Linux shutdown() takes a listening socket back to the closed state,
    # from which it can connect again: no listener any more, so handing the
    # descriptor over is refused as before any connect (the new owner would
    # connect directly), and connect() goes through the proxy.
    def shut_listener() -> Any:
        s = proxied(socks_server)
        s.bind(("127.0.0.1", 0))
        s.listen()
        s.shutdown(socket.SHUT_RD)
        return s

    with shut_listener() as s, s.dup() as twin:
        for sock in (s, twin):
            with pytest.raises(OSError) as info:
                sock.set_inheritable(True)
            assert info.value.errno == errno.EOPNOTSUPP
        twin.connect(echo_server)
        round_trip(twin)
    ctx = ssl.create_default_context()
    with shut_listener() as s:
        with pytest.raises(OSError) as info:
            wrapped = ctx.wrap_socket(s, server_hostname="localhost")
            wrapped.connect(trap.address)  # pragma: no cover - must not be reached
        assert info.value.errno == errno.EOPNOTSUPP
    assert trap.hits() == 0
    assert socks_server.connections == 1
