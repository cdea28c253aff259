"""The asyncio client (``socks5client.asyncio``) against good and hostile proxies.

The hostile-proxy scripts are those of ``test_hostile.py``, which proves the
blocking client; here the same table runs against the asyncio driver, on the
default event loop and on uvloop, and each case must end as it does there:
the same exception class, within the deadline (never hanging past it), no
password in the message, the socket closed and no descriptor left behind.

Then what only an asynchronous call has: cancellation at every await (the
socket is closed, nothing leaks), the deadline's fallback for Python 3.9
and 3.10 (``asyncio.wait_for``), and the loop staying free while handshakes
are pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, Callable, TypeVar, Union

import pytest
from test_hostile import (
    _DOMAIN_REPLY,
    _IPV6_REPLY,
    _REPLY_ERRORS,
    FAST_LIMIT,
    FAST_TIMEOUT,
    OK_REPLY,
    PASSWORD,
    STALL,
    STALL_TIMEOUT,
    TARGET,
    TIMEOUT_MARGIN,
    USER,
    Dribble,
    _assert_clean_error,
    _no_auth,
    _userpass_chosen,
    expect_methods,
    proxy_says,
    reset,
)

import socks5client
import socks5client.asyncio as aio
from socks5client import errors

from conftest import FdCounter, sni_recording_contexts
from server import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    Record,
    Script,
    SocksServer,
    UDPEchoServer,
    encode_reply,
    encode_udp_datagram,
    read_greeting,
    read_request,
    read_userpass,
)

_T = TypeVar("_T")
ScriptedServer = Callable[..., SocksServer]
Runner = Callable[[Coroutine[Any, Any, _T]], _T]


# --------------------------------------------------------------------------
# Event loops: the default one, and uvloop where it installs.
# --------------------------------------------------------------------------


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("uvloop is in the test extra and must be installed in CI")
        pytest.skip("uvloop is not installed")
    # The first uvloop of a process opens descriptors that libuv keeps for
    # good (its thread pool's wake-up): open them before anything counts.
    run_on(uvloop.new_event_loop, asyncio.sleep(0))
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _is_uvloop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-loop function for ``name`` (``"asyncio"`` or ``"uvloop"``)."""
    return _uvloop_factory() if name == "uvloop" else asyncio.new_event_loop


def run_on(factory: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a fresh loop, then close the loop (3.9-compatible)."""
    loop = factory()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    """Run a coroutine on a fresh loop of each kind."""
    factory = loop_factory(request.param)
    return lambda coro: run_on(factory, coro)


# --------------------------------------------------------------------------
# The hostile table: one script per misbehaviour, the error it must give.
# --------------------------------------------------------------------------

Expected = Union[type[errors.ProxyError], tuple[type[errors.ProxyError], ...]]
_HTTP_ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_EITHER = (errors.ProxyProtocolError, errors.GeneralProxyError)

FAILURES: list[tuple[str, Script, Expected, bool]] = [
    # Method selection.
    ("method-socks4-version", proxy_says(read_greeting, b"\x04\x00", STALL),
     errors.ProxyProtocolError, False),
    ("method-version-0", proxy_says(read_greeting, b"\x00\x00", STALL),
     errors.ProxyProtocolError, False),
    ("method-socks4-granted", proxy_says(read_greeting, b"\x00\x5a", STALL),
     errors.ProxyProtocolError, False),
    ("method-userpass-unoffered", proxy_says(read_greeting, b"\x05\x02", STALL),
     errors.ProxyProtocolError, False),
    ("method-gssapi-unoffered", proxy_says(read_greeting, b"\x05\x01", STALL),
     errors.ProxyProtocolError, True),
    ("method-private", proxy_says(read_greeting, b"\x05\xfe", STALL),
     errors.ProxyProtocolError, True),
    ("no-acceptable-method", proxy_says(read_greeting, b"\x05\xff"), errors.SOCKS5AuthError, False),
    ("no-acceptable-method-creds", proxy_says(read_greeting, b"\x05\xff"),
     errors.SOCKS5AuthError, True),
    ("method-truncated", proxy_says(read_greeting, b"\x05"), errors.ProxyProtocolError, False),
    ("close-before-any-byte", proxy_says(read_greeting), errors.ProxyProtocolError, False),
    ("close-without-reading", proxy_says(), _EITHER, False),
    ("reset-mid-handshake", proxy_says(read_greeting, reset), errors.GeneralProxyError, False),
    ("http-answer", _HTTP_ANSWER, errors.ProxyProtocolError, False),
    ("garbage-flood", proxy_says(read_greeting, b"\xaa" * 65536), errors.ProxyProtocolError, False),
    # Username/password.
    ("auth-reply-socks-version", _userpass_chosen(b"\x05\x00", STALL),
     errors.ProxyProtocolError, True),
    ("auth-reply-version-2", _userpass_chosen(b"\x02\x00", STALL), errors.ProxyProtocolError, True),
    ("auth-rejected", _userpass_chosen(b"\x01\x01"), errors.SOCKS5AuthError, True),
    ("auth-rejected-ff", _userpass_chosen(b"\x01\xff"), errors.SOCKS5AuthError, True),
    ("auth-rejected-left-open", _userpass_chosen(b"\x01\x01", STALL), errors.SOCKS5AuthError, True),
    ("auth-reply-truncated", _userpass_chosen(b"\x01"), errors.ProxyProtocolError, True),
    ("auth-reply-missing", _userpass_chosen(), errors.ProxyProtocolError, True),
    ("close-after-choosing-userpass", proxy_says(read_greeting, b"\x05\x02"), _EITHER, True),
    # The reply: framing.
    ("reply-version-4", _no_auth(encode_reply(0, ver=4), STALL), errors.ProxyProtocolError, False),
    ("reply-version-0", _no_auth(encode_reply(0, ver=0), STALL), errors.ProxyProtocolError, False),
    ("reply-socks4", _no_auth(b"\x00\x5a\x00\x50\x7f\x00\x00\x01", STALL),
     errors.ProxyProtocolError, False),
    *[
        (f"reply-atyp-{atyp:#04x}", _no_auth(encode_reply(0, atyp, b"\x7f\0\0\1", 80), STALL),
         errors.ProxyProtocolError, False)
        for atyp in (0x00, 0x02, 0x05, 0xFF)
    ],
    ("reply-empty-domain", _no_auth(encode_reply(0, ATYP_DOMAIN, b"", 80), STALL),
     errors.ProxyProtocolError, False),
    *[
        (f"reply-truncated-{i}", _no_auth(partial), errors.ProxyProtocolError, False)
        for i, partial in enumerate(
            [b"", OK_REPLY[:1], OK_REPLY[:3], OK_REPLY[:4], OK_REPLY[:7], OK_REPLY[:9],
             _IPV6_REPLY[:12], _IPV6_REPLY[:-1], _DOMAIN_REPLY[:4], _DOMAIN_REPLY[:8],
             _DOMAIN_REPLY[:-1]]
        )
    ],
    ("reply-garbage-flood", _no_auth(bytes(range(6, 256)) * 263), errors.ProxyProtocolError, False),
    ("reply-socks5-looking-flood", _no_auth(b"\x05\x00\x00\x09" + b"\x05" * 65536),
     errors.ProxyProtocolError, False),
    # The reply: codes, at once even with the connection left open.
    *[
        (f"reply-code-{code}", _no_auth(encode_reply(code), STALL), cls, False)
        for code, cls in sorted(_REPLY_ERRORS.items())
    ],
    ("reply-code-cut-ver-rep", _no_auth(b"\x05\x01", STALL), errors.SOCKS5GeneralFailureError,
     False),
    ("reply-code-cut-half-ipv4", _no_auth(b"\x05\x05\x00\x01\x7f", STALL),
     errors.SOCKS5ConnectionRefusedError, False),
    ("reply-code-cut-domain", _no_auth(b"\x05\x04\x00\x03", STALL),
     errors.SOCKS5HostUnreachableError, False),
    ("reply-code-unassigned", _no_auth(encode_reply(0x7F), STALL),
     errors.SOCKS5UnassignedReplyError, False),
    ("reply-code-ipv6-then-close", _no_auth(encode_reply(4, ATYP_IPV6, "2001:db8::1", 0)),
     errors.SOCKS5HostUnreachableError, False),
    ("refused-cut-then-close", _no_auth(b"\x05\x05\x00\x01"), errors.SOCKS5ConnectionRefusedError,
     False),
    ("auth-then-not-allowed", _userpass_chosen(b"\x01\x00", read_request, encode_reply(2)),
     errors.SOCKS5ConnectionNotAllowedError, True),
    # Stalls: the one deadline ends them.
    ("stall-accepts-never-reads", proxy_says(STALL), errors.ProxyTimeoutError, False),
    ("stall-greeting-unanswered", proxy_says(read_greeting, STALL), errors.ProxyTimeoutError,
     False),
    ("stall-half-method-reply", proxy_says(read_greeting, b"\x05", STALL),
     errors.ProxyTimeoutError, False),
    ("stall-credentials-unanswered",
     proxy_says(read_greeting, b"\x05\x02", read_userpass, STALL), errors.ProxyTimeoutError, True),
    ("stall-request-unanswered", _no_auth(STALL), errors.ProxyTimeoutError, False),
    ("stall-half-reply", _no_auth(OK_REPLY[:5], STALL), errors.ProxyTimeoutError, False),
    ("dribbling-too-slowly",
     proxy_says(read_greeting, Dribble(b"\x05\x00", 0.25), read_request, Dribble(OK_REPLY, 0.25)),
     errors.ProxyTimeoutError, False),
]  # fmt: skip

_STALLS = [case for case in FAILURES if case[2] is errors.ProxyTimeoutError]


def _proxy_url(server: SocksServer, auth: bool) -> str:
    host, port = server.address
    return f"socks5h://{USER}:{PASSWORD}@{host}:{port}" if auth else f"socks5h://{host}:{port}"


#: The ways into the driver: a plain socket or a socksocket given to
#: connect(), and open_connection() (which makes its own).
DRIVERS = ["connect-plain", "connect-socksocket", "open_connection"]


async def _drive(driver: str, url: str, timeout: float, target: tuple[str, int] = TARGET) -> Any:
    """One CONNECT through ``url`` by ``driver``; returns the socket it used (if any)."""
    if driver == "open_connection":
        _reader, writer = await aio.open_connection(*target, proxy=url, timeout=timeout)
        return writer
    sock = socks5client.socksocket() if driver == "connect-socksocket" else socket.socket()
    try:
        await aio.connect(sock, target, url, timeout=timeout)
    except BaseException:
        assert sock.fileno() == -1, "the socket must be closed after a failed handshake"
        raise
    return sock


def _expect_failure(
    run: Runner[Any],
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    script: Script,
    expected: Expected,
    auth: bool,
    driver: str = "connect-plain",
    target: tuple[str, int] = TARGET,
) -> errors.ProxyError:
    allowed = expected if isinstance(expected, tuple) else (expected,)
    is_timeout = any(issubclass(cls, TimeoutError) for cls in allowed)
    timeout = STALL_TIMEOUT if is_timeout else FAST_TIMEOUT
    before = fd_count()
    server = scripted_server(script)

    async def attempt() -> tuple[BaseException, float]:
        started = time.monotonic()
        try:
            await _drive(driver, _proxy_url(server, auth), timeout, target)
        except errors.ProxyError as exc:
            return exc, time.monotonic() - started
        raise AssertionError("the handshake succeeded")

    exc, elapsed = run(attempt())
    server.stop()
    assert type(exc) in allowed, f"{type(exc).__name__}: {exc}"
    _assert_clean_error(exc)
    if is_timeout:
        assert timeout * 0.9 <= elapsed < timeout + TIMEOUT_MARGIN, elapsed
    else:
        assert elapsed < FAST_LIMIT, f"took {elapsed:.2f}s to notice"
    assert server.errors == []
    assert fd_count.settle(before) == before
    assert isinstance(exc, errors.ProxyError)
    return exc


@pytest.mark.parametrize(
    ("script", "expected", "auth"), [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES]
)
def test_hostile_proxy_fails_as_the_blocking_client_does(
    run: Runner[Any],
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    script: Script,
    expected: Expected,
    auth: bool,
) -> None:
    _expect_failure(run, scripted_server, fd_count, script, expected, auth)


_ENTRY_CASES = [
    case
    for case in FAILURES
    if case[0]
    in {
        "method-socks4-version",
        "no-acceptable-method",
        "reset-mid-handshake",
        "auth-rejected",
        "reply-version-4",
        "reply-code-5",
        "stall-request-unanswered",
        "dribbling-too-slowly",
    }
]


@pytest.mark.parametrize("driver", DRIVERS[1:])
@pytest.mark.parametrize(
    ("script", "expected", "auth"),
    [c[1:] for c in _ENTRY_CASES],
    ids=[c[0] for c in _ENTRY_CASES],
)
def test_every_entry_point_fails_alike(
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    script: Script,
    expected: Expected,
    auth: bool,
    driver: str,
) -> None:
    _expect_failure(
        lambda coro: run_on(asyncio.new_event_loop, coro),
        scripted_server,
        fd_count,
        script,
        expected,
        auth,
        driver,
    )


@pytest.mark.parametrize(
    ("script", "auth"), [(c[1], c[3]) for c in _STALLS], ids=[c[0] for c in _STALLS]
)
def test_stalls_time_out_with_the_deadline_fallback_of_python_3_9(
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    monkeypatch: pytest.MonkeyPatch,
    script: Script,
    auth: bool,
) -> None:
    monkeypatch.setattr(aio, "_HAS_TIMEOUT", False)
    exc = _expect_failure(
        lambda coro: run_on(asyncio.new_event_loop, coro),
        scripted_server,
        fd_count,
        script,
        errors.ProxyTimeoutError,
        auth,
    )
    assert isinstance(exc, socket.timeout)


def test_timeout_message_is_the_blocking_clients(
    run: Runner[Any], scripted_server: ScriptedServer, fd_count: FdCounter
) -> None:
    exc = _expect_failure(
        run, scripted_server, fd_count, _no_auth(STALL), errors.ProxyTimeoutError, False
    )
    host, port = exc.msg.split("proxy ", 1)[1].split(" ", 1)[0].rsplit(":", 1)
    assert exc.msg == (
        f"proxy {host}:{port} did not complete the SOCKS5 handshake within"
        f" {STALL_TIMEOUT:g} s (waiting for the reply)"
    )
    silent = _expect_failure(
        run, scripted_server, fd_count, proxy_says(STALL), errors.ProxyTimeoutError, False
    )
    assert "sent nothing at all, so it may not be a SOCKS5 server" in silent.msg


def test_hostname_goes_to_the_proxy_unresolved_and_idna_encoded(
    run: Runner[Any], scripted_server: ScriptedServer, fd_count: FdCounter
) -> None:
    seen: list[Record] = []

    def script(conn: socket.socket, server: SocksServer) -> None:
        record = server.record_for(conn)
        seen.append(record)
        read_greeting(conn, record)
        conn.sendall(b"\x05\x00")
        read_request(conn, record)
        conn.sendall(encode_reply(4))

    _expect_failure(
        run,
        scripted_server,
        fd_count,
        script,
        errors.SOCKS5HostUnreachableError,
        False,
        target=("faß.de", 443),
    )
    (record,) = seen
    assert (record.atyp, record.dst_addr, record.dst_port) == (ATYP_DOMAIN, "xn--fa-hia.de", 443)


def test_nothing_listening_is_proxy_connection_error(run: Runner[Any], fd_count: FdCounter) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    before = fd_count()

    async def attempt() -> BaseException:
        sock = socket.socket()
        with pytest.raises(errors.ProxyError) as info:
            await aio.connect(sock, TARGET, f"socks5h://127.0.0.1:{dead_port}", timeout=2)
        assert sock.fileno() == -1
        return info.value

    exc = run(attempt())
    assert type(exc) is errors.ProxyConnectionError, f"{type(exc).__name__}: {exc}"
    assert isinstance(exc.socket_err, ConnectionRefusedError)
    assert fd_count.settle(before) == before


# --------------------------------------------------------------------------
# Odd but legal: these must succeed, and leave the stream's bytes alone.
# --------------------------------------------------------------------------

SUCCESSES: list[tuple[str, Script, bool, tuple[str, int], bytes]] = [
    (
        "dribbled-one-byte-at-a-time",
        proxy_says(
            read_greeting, Dribble(b"\x05\x02", 0.02), read_userpass, Dribble(b"\x01\x00", 0.02),
            read_request, Dribble(OK_REPLY, 0.02), b"tunnel",
        ),
        True, ("10.0.0.1", 4321), b"tunnel",
    ),
    ("bytes-behind-the-reply", _no_auth(OK_REPLY + b"first bytes"), False, ("10.0.0.1", 4321),
     b"first bytes"),
    ("method-and-reply-in-one-segment",
     proxy_says(read_greeting, b"\x05\x00" + OK_REPLY, read_request, b"data"), False,
     ("10.0.0.1", 4321), b"data"),
    ("auth-and-reply-in-one-segment", _userpass_chosen(b"\x01\x00" + OK_REPLY, read_request, b"d"),
     True, ("10.0.0.1", 4321), b"d"),
    ("no-auth-chosen-though-creds-offered",
     proxy_says(expect_methods(0x00, 0x02), b"\x05\x00", read_request, OK_REPLY, b"x"), True,
     ("10.0.0.1", 4321), b"x"),
    ("bound-domain", _no_auth(encode_reply(0, ATYP_DOMAIN, "bnd.proxy.example", 4321), b"a"),
     False, ("bnd.proxy.example", 4321), b"a"),
    ("bound-longest-domain", _no_auth(encode_reply(0, ATYP_DOMAIN, "b" * 255, 65535), b"a"),
     False, ("b" * 255, 65535), b"a"),
    ("bound-ipv6", _no_auth(encode_reply(0, ATYP_IPV6, "2001:db8::7", 4321), b"a"), False,
     ("2001:db8::7", 4321), b"a"),
    ("bound-zero-ipv4", _no_auth(encode_reply(0, ATYP_IPV4, "0.0.0.0", 0), b"a"), False,
     ("0.0.0.0", 0), b"a"),
]  # fmt: skip


async def _read_to_eof(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    chunks = []
    while chunk := await loop.sock_recv(sock, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("script", "auth", "bound", "data"), [c[1:] for c in SUCCESSES], ids=[c[0] for c in SUCCESSES]
)
def test_odd_but_legal_proxy_succeeds(
    run: Runner[Any],
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    script: Script,
    auth: bool,
    bound: tuple[str, int],
    data: bytes,
) -> None:
    before = fd_count()
    server = scripted_server(script)

    async def attempt() -> None:
        loop = asyncio.get_running_loop()
        with socks5client.socksocket() as sock:
            got = await aio.connect(sock, TARGET, _proxy_url(server, auth), timeout=FAST_TIMEOUT)
            assert got == bound
            assert sock.get_proxy_sockname() == bound
            assert sock.getpeername() == TARGET
            assert sock.gettimeout() == 0.0
            assert await _read_to_eof(loop, sock) == data

    run(attempt())
    server.stop()
    assert server.errors == []
    if auth and server.records[0].username is not None:
        assert (server.records[0].username, server.records[0].password) == (USER, PASSWORD)
    assert fd_count.settle(before) == before


# --------------------------------------------------------------------------
# Through the reference server to a real destination.
# --------------------------------------------------------------------------


def test_open_connection_streams_through_the_proxy(
    run: Runner[Any], auth_server: SocksServer, echo_server: tuple[str, int], fd_count: FdCounter
) -> None:
    before = fd_count()

    async def attempt() -> None:
        url = f"socks5h://alice:s3cret@127.0.0.1:{auth_server.port}"
        reader, writer = await aio.open_connection("localhost", echo_server[1], proxy=url)
        peername = writer.get_extra_info("peername")
        if _is_uvloop():
            # uvloop asks the kernel, which knows only the proxy.
            assert peername == ("127.0.0.1", auth_server.port)
        else:
            assert peername == ("localhost", echo_server[1])
        writer.write(b"ping" * 1000)
        await writer.drain()
        assert await reader.readexactly(4000) == b"ping" * 1000
        writer.close()
        await writer.wait_closed()

    run(attempt())
    record = auth_server.records[0]
    assert (record.atyp, record.dst_addr, record.username) == (ATYP_DOMAIN, "localhost", "alice")
    assert fd_count.settle(before) == before


def test_create_connection_gives_a_transport(
    run: Runner[Any], socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = b""
            self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.data += data
            if len(self.data) >= 5:
                self.done.set_result(self.data)

    async def attempt() -> None:
        transport, protocol = await aio.create_connection(
            Collect, *echo_server, proxy=f"socks5h://127.0.0.1:{socks_server.port}", timeout=5
        )
        assert isinstance(protocol, Collect)
        transport.write(b"hello")
        assert await asyncio.wait_for(protocol.done, 5) == b"hello"
        transport.close()

    run(attempt())


def test_socks5_resolves_here_and_sends_the_address(
    run: Runner[Any], socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    async def attempt() -> None:
        reader, writer = await aio.open_connection(
            "localhost", echo_server[1], proxy=f"socks5://127.0.0.1:{socks_server.port}"
        )
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        writer.close()

    run(attempt())
    record = socks_server.records[0]
    assert record.atyp in (ATYP_IPV4, ATYP_IPV6)
    assert record.dst_addr in ("127.0.0.1", "::1")


def test_default_proxy_is_used_and_no_proxy_means_direct(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    async def attempt() -> None:
        reader, writer = await aio.open_connection(*echo_server)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        writer.close()

    run_on(asyncio.new_event_loop, attempt())
    assert socks_server.records == []
    socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    try:
        run_on(asyncio.new_event_loop, attempt())
    finally:
        socks5client.set_default_proxy()
    assert len(socks_server.records) == 1


def test_tls_to_the_destination_through_the_tunnel(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    server_ctx, client_ctx, names = sni_recording_contexts("tls.test")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    socks_server.commands[1] = _connect_to(listener.getsockname())

    async def attempt() -> None:
        reader, writer = await aio.open_connection(
            "tls.test", 443, proxy=f"socks5h://127.0.0.1:{socks_server.port}", ssl=client_ctx,
            timeout=5,
        )  # fmt: skip
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"HELLO"
        writer.close()

    try:
        run(attempt())
    finally:
        thread.join(5)
        listener.close()
    assert names == ["tls.test"]
    assert socks_server.records[0].dst_addr == "tls.test"


def _connect_to(address: tuple[str, int]) -> Callable[..., None]:
    """A CONNECT handler for the reference server that goes to ``address`` whatever was asked."""

    def handler(conn: socket.socket, record: Record, atyp: int, host: str, port: int) -> None:
        outbound = socket.create_connection(address[:2], timeout=5)
        conn.sendall(encode_reply(0, ATYP_IPV4, "127.0.0.1", 1))
        _relay(conn, outbound)

    return handler


def _relay(a: socket.socket, b: socket.socket) -> None:
    import selectors

    with b, selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in sel.select(5):
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


def test_bad_arguments_are_value_errors_before_anything_is_sent() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        async def attempt(target: tuple[str, int], url: str) -> None:
            with pytest.raises(ValueError) as info:
                await aio.connect(socket.socket(), target, url, timeout=2)
            assert "pw-256" not in repr(info.value)

        url = f"socks5h://127.0.0.1:{port}"
        for target in [("a" * 256, 80), ("", 80), ("example.test", 65536)]:
            run_on(asyncio.new_event_loop, attempt(target, url))
        run_on(
            asyncio.new_event_loop,
            attempt(TARGET, f"socks5h://{'u' * 256}:pw-256@127.0.0.1:{port}"),
        )
        listener.settimeout(0.1)
        with pytest.raises(socket.timeout):
            listener.accept()


# --------------------------------------------------------------------------
# Cancellation: at every await, the socket closes and nothing leaks.
# --------------------------------------------------------------------------


def _signal(event: threading.Event) -> Callable[[socket.socket, Record], None]:
    def step(conn: socket.socket, record: Record) -> None:
        event.set()

    return step


async def _until(event: threading.Event, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not event.is_set():
        assert time.monotonic() < deadline, "the server never got there"
        await asyncio.sleep(0.005)


def _stage_script(stage: str, reached: threading.Event) -> tuple[Script, bool]:
    here = _signal(reached)
    scripts: dict[str, tuple[Script, bool]] = {
        "method-selection": (proxy_says(read_greeting, here, STALL), False),
        "userpass-reply": (
            proxy_says(read_greeting, b"\x05\x02", read_userpass, here, STALL),
            True,
        ),
        "reply": (_no_auth(here, STALL), False),
        "rest-of-reply": (_no_auth(OK_REPLY[:6], here, STALL), False),
        "tls-handshake": (_no_auth(OK_REPLY, here, STALL), False),
    }  # fmt: skip
    return scripts[stage]


_STAGES = ["method-selection", "userpass-reply", "reply", "rest-of-reply"]


@pytest.mark.parametrize(
    ("driver", "stage"),
    [(d, s) for d in DRIVERS for s in _STAGES] + [("open_connection", "tls-handshake")],
)
def test_cancelled_while_waiting_for_the_proxy_closes_the_socket(
    run: Runner[Any],
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    stage: str,
    driver: str,
) -> None:
    before = fd_count()
    reached = threading.Event()
    script, auth = _stage_script(stage, reached)
    server = scripted_server(script)
    url = _proxy_url(server, auth)

    async def attempt() -> None:
        sock = socks5client.socksocket() if driver == "connect-socksocket" else socket.socket()
        if driver == "open_connection":
            import ssl

            work: Any = aio.open_connection(*TARGET, proxy=url, ssl=ssl.create_default_context())
        else:
            work = aio.connect(sock, TARGET, url)
        task = asyncio.ensure_future(work)
        await _until(reached)
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if driver != "open_connection":
            assert sock.fileno() == -1
        sock.close()

    run(attempt())
    server.stop()
    assert fd_count.settle(before) == before


def test_cancelled_while_connecting_to_the_proxy(run: Runner[Any], fd_count: FdCounter) -> None:
    # A listener whose backlog is full drops new SYNs: connect() stays in
    # progress until cancelled.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    before = fd_count()
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(listener.getsockname())
            fillers.append(filler)
        time.sleep(0.05)
        before = fd_count()

        async def attempt() -> None:
            for driver in ("connect-plain", "connect-socksocket"):
                sock = socks5client.socksocket() if driver.endswith("socket") else socket.socket()
                url = "socks5h://{}:{}".format(*listener.getsockname())
                task = asyncio.ensure_future(aio.connect(sock, TARGET, url))
                await asyncio.sleep(0.2)
                assert not task.done(), "the connection to the proxy was not left pending"
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert sock.fileno() == -1

        run(attempt())
        assert fd_count.settle(before) == before
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_cancelled_while_resolving_the_proxy(
    fd_count: FdCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from socks5client import _resolve

    release = threading.Event()
    entered = threading.Event()
    real = _resolve.getaddrinfo

    def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(_resolve, "getaddrinfo", slow)
    before = fd_count()

    async def attempt() -> None:
        sock = socket.socket()
        task = asyncio.ensure_future(aio.connect(sock, TARGET, "socks5h://localhost:9"))
        await _until(entered)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sock.fileno() == -1
        release.set()

    run_on(asyncio.new_event_loop, attempt())
    assert fd_count.settle(before) == before


def test_cancel_sweep_over_every_step_of_a_full_handshake(
    run: Runner[Any], auth_server: SocksServer, echo_server: tuple[str, int], fd_count: FdCounter
) -> None:
    """Cancel after 0, 1, 2... loop iterations until the handshake completes first.

    Whatever the await it lands on, a cancellation must close the socket;
    and a handshake that completed must work.
    """
    url = f"socks5h://alice:s3cret@127.0.0.1:{auth_server.port}"
    before = fd_count()

    async def sweep() -> int:
        cancelled = 0
        # From 1: a task cancelled before its first step never runs a line
        # of the coroutine, and the socket stays as the caller made it.
        for spins in range(1, 5000):
            sock = socket.socket()
            task = asyncio.ensure_future(aio.connect(sock, ("localhost", echo_server[1]), url))
            for _ in range(spins):
                await asyncio.sleep(0)
                if task.done():
                    break
            if task.done():
                await task
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, b"ok")
                assert await loop.sock_recv(sock, 2) == b"ok"
                sock.close()
                return cancelled
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                cancelled += 1
                assert sock.fileno() == -1
            else:  # it completed in the same iteration as the cancel
                sock.close()
        raise AssertionError("the handshake never completed")

    assert run(sweep()) >= 3
    assert fd_count.settle(before) == before


# --------------------------------------------------------------------------
# The loop stays free.
# --------------------------------------------------------------------------


def test_handshakes_run_concurrently_and_the_loop_keeps_ticking(
    run: Runner[Any], scripted_server: ScriptedServer
) -> None:
    def slow(conn: socket.socket, server: SocksServer) -> None:
        record = server.record_for(conn)
        read_greeting(conn, record)
        conn.sendall(b"\x05\x00")
        read_request(conn, record)
        if not server.wait(0.2):
            conn.sendall(OK_REPLY)
            server.wait()

    server = scripted_server(slow)
    url = _proxy_url(server, False)

    async def attempt() -> tuple[float, float]:
        lateness = 0.0

        async def ticker() -> None:
            nonlocal lateness
            while True:
                started = time.monotonic()
                await asyncio.sleep(0.01)
                lateness = max(lateness, time.monotonic() - started - 0.01)

        tick = asyncio.ensure_future(ticker())
        started = time.monotonic()
        socks = [socket.socket() for _ in range(20)]
        await asyncio.gather(*(aio.connect(s, TARGET, url, timeout=10) for s in socks))
        elapsed = time.monotonic() - started
        tick.cancel()
        for s in socks:
            s.close()
        return elapsed, lateness

    elapsed, lateness = run(attempt())
    assert elapsed < 2.0, f"20 handshakes of 200 ms took {elapsed:.2f} s: not concurrent"
    assert lateness < 0.15, f"a 10 ms timer was {lateness * 1000:.0f} ms late"


# --------------------------------------------------------------------------
# BIND.
# --------------------------------------------------------------------------


def test_bind_then_accept_carries_the_peers_connection(
    run: Runner[Any], socks_server: SocksServer, fd_count: FdCounter
) -> None:
    before = fd_count()

    async def attempt() -> None:
        loop = asyncio.get_running_loop()
        listener = await aio.bind(f"socks5h://127.0.0.1:{socks_server.port}", timeout=5)
        host, port = listener.address[:2]
        assert host == "127.0.0.1"
        peer = socket.socket()
        peer.setblocking(False)
        accepting = asyncio.ensure_future(listener.accept(timeout=5))
        await loop.sock_connect(peer, (host, port))
        conn, address = await accepting
        assert address == peer.getsockname()
        assert conn.getpeername() == address
        await loop.sock_sendall(peer, b"from the peer")
        assert await loop.sock_recv(conn, 100) == b"from the peer"
        conn.close()
        peer.close()
        with pytest.raises(OSError):
            await listener.accept()

    run(attempt())
    assert fd_count.settle(before) == before


def test_bind_accept_times_out_and_cancels_cleanly(
    run: Runner[Any], socks_server: SocksServer, fd_count: FdCounter
) -> None:
    before = fd_count()

    async def attempt() -> None:
        url = f"socks5h://127.0.0.1:{socks_server.port}"
        listener = await aio.bind(url, timeout=5)
        started = time.monotonic()
        with pytest.raises(errors.ProxyTimeoutError) as info:
            await listener.accept(timeout=STALL_TIMEOUT)
        assert str(info.value).startswith(
            f"no peer connected to {listener.address[0]}:{listener.address[1]} (BIND via proxy"
        )
        assert time.monotonic() - started < STALL_TIMEOUT + TIMEOUT_MARGIN
        listener = await aio.bind(url, timeout=5)
        task = asyncio.ensure_future(listener.accept())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        listener.close()

    run(attempt())
    assert fd_count.settle(before) == before


def test_bind_refused_by_the_proxy_is_the_reply_error(
    run: Runner[Any], scripted_server: ScriptedServer
) -> None:
    server = scripted_server(_no_auth(encode_reply(7), STALL))

    async def attempt() -> None:
        with pytest.raises(errors.SOCKS5CommandNotSupportedError):
            await aio.bind(_proxy_url(server, False), timeout=FAST_TIMEOUT)

    run(attempt())


# --------------------------------------------------------------------------
# UDP ASSOCIATE.
# --------------------------------------------------------------------------


def _udp_dgram(data: bytes, source: tuple[str, int], frag: int = 0) -> bytes:
    return encode_udp_datagram(frag, ATYP_IPV4, source[0], source[1], data)


def test_udp_datagrams_go_through_the_relay_both_ways(
    run: Runner[Any], socks_server: SocksServer, udp_echo_server: UDPEchoServer, fd_count: FdCounter
) -> None:
    before = fd_count()

    async def attempt() -> None:
        url = f"socks5h://127.0.0.1:{socks_server.port}"
        async with await aio.open_udp(url, timeout=5) as endpoint:
            assert endpoint.relay_address[0] == "127.0.0.1"
            for i in range(3):
                assert await endpoint.sendto(b"ping %d" % i, udp_echo_server.address) == 6
                data, source = await endpoint.recvfrom(timeout=5)
                assert (data, source) == (b"ping %d" % i, udp_echo_server.address)
            # A name goes to the proxy unresolved.
            await endpoint.sendto(b"by name", ("localhost", udp_echo_server.port))
            assert (await endpoint.recvfrom(timeout=5))[0] == b"by name"

    run(attempt())
    assoc = socks_server.wait_for_association()
    assert any(d.atyp == ATYP_DOMAIN and d.addr == "localhost" for d in assoc.received)
    assert fd_count.settle(before) == before


def test_udp_drops_foreign_and_malformed_datagrams_and_reassembles_fragments(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    async def attempt() -> None:
        endpoint = await aio.open_udp(f"socks5h://127.0.0.1:{socks_server.port}", timeout=5)
        try:
            await endpoint.sendto(b"hello", ("127.0.0.1", 9))
            assoc = socks_server.wait_for_association()
            assert assoc.wait_until(lambda a: a.client_address is not None)
            origin = ("192.0.2.7", 53)
            assoc.send_from_foreign(_udp_dgram(b"forged", origin))
            assoc.send_to_client(b"\x00\x01junk")
            for frag, piece in ((1, b"frag"), (2, b"men"), (0x83, b"ted")):
                assoc.send_to_client(_udp_dgram(piece, origin, frag))
            assert await endpoint.recvfrom(timeout=5) == (b"fragmented", origin)
            assoc.send_to_client(_udp_dgram(b"whole", origin))
            assert await endpoint.recvfrom(timeout=5) == (b"whole", origin)
            with pytest.raises(TimeoutError):
                await endpoint.recvfrom(timeout=0.2)
        finally:
            endpoint.close()

    run(attempt())


def test_udp_association_ends_when_the_proxy_closes_the_control_connection(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    async def attempt() -> None:
        endpoint = await aio.open_udp(f"socks5h://127.0.0.1:{socks_server.port}", timeout=5)
        try:
            assoc = socks_server.wait_for_association()
            waiting = asyncio.ensure_future(endpoint.recvfrom(timeout=5))
            await asyncio.sleep(0.05)
            assoc.close_control()
            with pytest.raises(errors.UDPAssociationClosedError):
                await waiting
            with pytest.raises(errors.UDPAssociationClosedError):
                await endpoint.sendto(b"x", ("127.0.0.1", 9))
        finally:
            endpoint.close()

    run(attempt())


def _queue_junk(assoc: Any, count: int, origin: tuple[str, int]) -> None:
    """Queue ``count`` datagrams the endpoint drops: from a foreign source,
    malformed, and fragments of a sequence that never ends, in turn."""
    for i in range(count):
        kind = i % 3
        if kind == 0:
            assoc.send_from_foreign(_udp_dgram(b"forged", origin))
        elif kind == 1:
            assoc.send_to_client(b"\x00\x00\x00\x09junk")
        else:
            assoc.send_to_client(_udp_dgram(b"piece", origin, 1))


def test_udp_junk_flood_yields_to_the_loop_and_keeps_the_deadline(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    # Datagrams already queued are the worst case: every recvfrom on the
    # socket succeeds at once, so only an explicit yield lets the loop run.
    origin = ("192.0.2.7", 53)

    async def attempt() -> None:
        url = f"socks5h://127.0.0.1:{socks_server.port}"
        endpoint = await aio.open_udp(url, local_addr=("127.0.0.1", 0), timeout=5)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        try:
            assoc = socks_server.wait_for_association()
            assert assoc.wait_until(lambda a: a.client_address is not None)
            # A valid datagram behind the junk still comes back.
            _queue_junk(assoc, 90, origin)
            assoc.send_to_client(_udp_dgram(b"behind", origin))
            await asyncio.sleep(0.05)
            before = ticks
            assert await endpoint.recvfrom(timeout=5) == (b"behind", origin)
            assert ticks - before >= 45, "the loop never ran while junk was dropped"
            # Junk alone: the deadline applies and the loop keeps running.
            _queue_junk(assoc, 90, origin)
            await asyncio.sleep(0.05)
            before = ticks
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await endpoint.recvfrom(timeout=FAST_TIMEOUT)
            assert time.monotonic() - started < FAST_TIMEOUT + TIMEOUT_MARGIN
            assert ticks > before
        finally:
            ticking.cancel()
            endpoint.close()

    run(attempt())


def test_udp_close_wakes_a_waiting_receiver_and_spares_reused_descriptors(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    async def attempt() -> None:
        url = f"socks5h://127.0.0.1:{socks_server.port}"
        first = await aio.open_udp(url, local_addr=("127.0.0.1", 0), timeout=5)
        stale = asyncio.ensure_future(first.recvfrom())
        await asyncio.sleep(0.05)
        first.close()
        # asyncio.wait, not wait_for: a waiter still pending must stay so.
        await asyncio.wait({stale}, timeout=2)
        # The next endpoint gets the same descriptor numbers; a stale
        # waiter leaving now must not unregister them.
        second = await aio.open_udp(url, local_addr=("127.0.0.1", 0), timeout=5)
        try:
            fresh = asyncio.ensure_future(second.recvfrom(timeout=2))
            await asyncio.sleep(0.05)
            stale.cancel()
            await asyncio.sleep(0.05)
            assoc = socks_server.wait_for_association(1)
            assert assoc.wait_until(lambda a: a.client_address is not None)
            origin = ("192.0.2.7", 53)
            assoc.send_to_client(_udp_dgram(b"fresh", origin))
            assert await fresh == (b"fresh", origin)
        finally:
            second.close()
        assert stale.done() and not stale.cancelled()
        exc = stale.exception()
        assert isinstance(exc, OSError) and exc.errno == errno.EBADF

    run(attempt())


def test_udp_concurrent_receivers_each_get_datagrams(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    origin = ("192.0.2.7", 53)

    async def attempt() -> None:
        url = f"socks5h://127.0.0.1:{socks_server.port}"
        async with await aio.open_udp(url, local_addr=("127.0.0.1", 0), timeout=5) as endpoint:
            assoc = socks_server.wait_for_association()
            assert assoc.wait_until(lambda a: a.client_address is not None)
            one = asyncio.ensure_future(endpoint.recvfrom(timeout=2))
            await asyncio.sleep(0.05)
            two = asyncio.ensure_future(endpoint.recvfrom(timeout=2))
            await asyncio.sleep(0.05)
            for data in (b"a", b"b"):
                assoc.send_to_client(_udp_dgram(data, origin))
            got = await asyncio.gather(one, two)
            assert sorted(data for data, _ in got) == [b"a", b"b"]
            # One receiver leaving does not deafen the other.
            one = asyncio.ensure_future(endpoint.recvfrom(timeout=2))
            await asyncio.sleep(0.05)
            two = asyncio.ensure_future(endpoint.recvfrom(timeout=2))
            await asyncio.sleep(0.05)
            two.cancel()
            await asyncio.sleep(0.05)
            assoc.send_to_client(_udp_dgram(b"c", origin))
            assert await one == (b"c", origin)

    run(attempt())


# A relay address that routes out of a veth device in the test's network
# namespace, where a slow tbf qdisc holds the datagrams: the UDP socket's send
# buffer fills and sendto() must wait, while the control connection (on lo)
# is unaffected.  Loopback only: nothing leaves the namespace.
_STUCK_RELAY = ("10.99.0.3", 9)
_NETNS_SETUP = (
    "ip link set lo up && ip link add s5v0 type veth peer name s5v1"
    " && ip addr add 10.99.0.1/24 dev s5v0 && ip link set s5v0 up && ip link set s5v1 up"
    " && ip link set s5v1 address 02:00:00:00:99:03"
    " && ip neigh add 10.99.0.3 lladdr 02:00:00:00:99:03 dev s5v0"
    ' && exec "$@"'
)


def _hold_sends(on: bool) -> None:
    held = "add dev s5v0 root tbf rate 8kbit burst 1600 limit 50000000"
    subprocess.run(["tc", "qdisc", *(held if on else "del dev s5v0 root").split()], check=True)


def _stuck_relay_script(release: threading.Event) -> Script:
    """Grant UDP ASSOCIATE with the held relay; close the control connection on ``release``."""

    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(0, ATYP_IPV4, socket.inet_aton(_STUCK_RELAY[0]), _STUCK_RELAY[1]))
        release.wait(10)
        conn.close()

    return script


async def _blocked_senders(endpoint: aio.UDPEndpoint, count: int) -> tuple[list[int], list[Any]]:
    """``count`` tasks sending until the full buffer stops them all."""
    sent = [0] * count

    async def flood(i: int) -> None:
        while True:
            await endpoint.sendto(b"x" * 1400, ("192.0.2.1", 9))
            sent[i] += 1
            await asyncio.sleep(0)  # the other senders' turn

    tasks = [asyncio.ensure_future(flood(i)) for i in range(count)]
    await asyncio.sleep(0.3)
    before = list(sent)
    await asyncio.sleep(0.2)
    assert sent == before and not any(t.done() for t in tasks), "the send buffer did not fill"
    return sent, tasks


async def _udp_sendto_waiters_case(case: str) -> str:
    release = threading.Event()
    with SocksServer(script=_stuck_relay_script(release)) as server:
        endpoint = await aio.open_udp(f"socks5h://127.0.0.1:{server.port}", timeout=5)
        _hold_sends(True)
        held = True
        try:
            sent, tasks = await _blocked_senders(endpoint, 2 if case == "two" else 1)
            if case == "two":
                before = list(sent)
                _hold_sends(False)  # the queue goes: writable again
                held = False
                await asyncio.sleep(0.3)
                woken = all(a > b for a, b in zip(sent, before))
                outcome = "woken" if woken else f"not all woken: {before} then {sent}"
            else:
                if case == "close":
                    endpoint.close()
                else:
                    release.set()  # the proxy closes the control connection
                done, _ = await asyncio.wait(tasks, timeout=2)
                outcome = repr(tasks[0].exception()) if done else "still waiting"
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return outcome
        finally:
            release.set()
            endpoint.close()
            if held:
                _hold_sends(False)


def _udp_sendto_waiters_child() -> None:
    """In the namespace: each case on each loop, one JSON line of outcomes."""
    outcomes = {}
    for name in ("asyncio", "uvloop"):
        for case in ("two", "close", "proxy-closed"):
            outcomes[f"{name} {case}"] = run_on(loop_factory(name), _udp_sendto_waiters_case(case))
    print(json.dumps(outcomes))


def test_udp_sendto_waiters_are_each_woken_and_end_with_the_association() -> None:
    # Two tasks blocked in sendto() both resume once the socket is writable
    # (a second add_writer used to replace the first's); close() and the
    # proxy closing the control connection end a blocked sendto() with
    # EBADF and UDPAssociationClosedError (it used to wait forever).
    from test_patch_clients import _namespace_report

    if shutil.which("tc") is None or shutil.which("ip") is None:
        why = "tc and ip (iproute2) are needed to fill a UDP send buffer"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; .ci/run installs them")  # never a silent skip in CI
        pytest.skip(why)
    loop_factory("uvloop")  # skips here, not in the child, without uvloop
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    outcomes = _namespace_report(
        ["sh", "-c", _NETNS_SETUP, "sh", sys.executable, __file__, "--udp-sendto-child"], env, root
    )
    closed = repr(OSError(errno.EBADF, "the UDP endpoint is closed"))
    for name in ("asyncio", "uvloop"):
        assert outcomes[f"{name} two"] == "woken"
        assert outcomes[f"{name} close"] == closed
        assert outcomes[f"{name} proxy-closed"].startswith("UDPAssociationClosedError(")


def test_udp_sendto_refuses_a_non_buffer_and_sends_nothing(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    import array

    async def attempt() -> None:
        url = f"socks5h://127.0.0.1:{socks_server.port}"
        async with await aio.open_udp(url, local_addr=("127.0.0.1", 0), timeout=5) as endpoint:
            target = ("127.0.0.1", 9)
            for bad in (5, [1, 2, 3], "text"):
                with pytest.raises(TypeError):
                    await endpoint.sendto(bad, target)  # type: ignore[arg-type]
            # Any buffer: its bytes, and their number returned.
            assert await endpoint.sendto(array.array("H", [1, 2]), target) == 4  # type: ignore[arg-type]
            assoc = socks_server.wait_for_association()
            assert assoc.wait_until(lambda a: len(a.received) >= 1)
            await asyncio.sleep(0.1)
            assert [d.data for d in assoc.received] == [array.array("H", [1, 2]).tobytes()]

    run(attempt())


def test_udp_associate_refused_is_the_reply_error(
    run: Runner[Any], scripted_server: ScriptedServer, fd_count: FdCounter
) -> None:
    before = fd_count()
    server = scripted_server(_no_auth(encode_reply(7), STALL))

    async def attempt() -> None:
        with pytest.raises(errors.SOCKS5CommandNotSupportedError):
            await aio.open_udp(_proxy_url(server, False), timeout=FAST_TIMEOUT)

    run(attempt())
    server.stop()
    assert fd_count.settle(before) == before


# --------------------------------------------------------------------------
# Pipelining, IPv6 proxies, and the 3.9 deadline under cancellation.
# --------------------------------------------------------------------------


def test_pipelined_handshake_sends_everything_in_one_write(
    run: Runner[Any], auth_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    async def attempt() -> None:
        url = f"socks5h://alice:s3cret@127.0.0.1:{auth_server.port}?pipeline=1"
        reader, writer = await aio.open_connection("localhost", echo_server[1], proxy=url)
        writer.write(b"p")
        assert await reader.readexactly(1) == b"p"
        writer.close()

    run(attempt())
    assert auth_server.records[0].pipelined


def test_ipv6_proxy_and_destination(
    run: Runner[Any], socks_server_v6: SocksServer, echo_server_v6: tuple[str, int]
) -> None:
    async def attempt() -> None:
        url = f"socks5h://[::1]:{socks_server_v6.port}"
        reader, writer = await aio.open_connection("::1", echo_server_v6[1], proxy=url)
        writer.write(b"six")
        assert await reader.readexactly(3) == b"six"
        writer.close()
        sock = socket.socket(socket.AF_INET6)
        await aio.connect(sock, ("::1", echo_server_v6[1], 0, 0), url, timeout=5)
        assert sock.getpeername()[:2] == (("::1", socks_server_v6.port))
        sock.close()

    run(attempt())
    assert [r.atyp for r in socks_server_v6.records] == [ATYP_IPV6, ATYP_IPV6]


def test_cancellation_under_the_wait_for_deadline_closes_the_socket(
    scripted_server: ScriptedServer, fd_count: FdCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aio, "_HAS_TIMEOUT", False)
    before = fd_count()
    reached = threading.Event()
    server = scripted_server(_no_auth(_signal(reached), STALL))

    async def attempt() -> None:
        sock = socket.socket()
        task = asyncio.ensure_future(
            aio.connect(sock, TARGET, _proxy_url(server, False), timeout=5)
        )
        await _until(reached)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sock.fileno() == -1

    run_on(asyncio.new_event_loop, attempt())
    server.stop()
    assert fd_count.settle(before) == before


def test_socks5h_makes_no_dns_query_at_all(
    run: Runner[Any], scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dns_recorder import install_recorder

    resolver = install_recorder(monkeypatch)
    resolver.forbidden = {"leak.test"}
    server = scripted_server(_no_auth(OK_REPLY, STALL))

    async def attempt() -> None:
        _reader, writer = await aio.open_connection(
            "leak.test", 80, proxy=_proxy_url(server, False), timeout=FAST_TIMEOUT
        )
        writer.close()
        sock = socket.socket()
        await aio.connect(sock, ("leak.test", 80), _proxy_url(server, False), timeout=2)
        sock.close()
        listener = await aio.bind(_proxy_url(server, False), ("leak.test", 0), timeout=2)
        listener.close()

    run(attempt())
    assert resolver.names() == []
    assert [r.dst_addr for r in server.records] == ["leak.test"] * 3


# --------------------------------------------------------------------------
# The socket's own proxy, and the next address on a descriptor that leaves
# as the first did.
# --------------------------------------------------------------------------


def test_connect_without_proxy_uses_the_socksockets_own(
    run: Runner[Any],
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dns_recorder import install_recorder

    resolver = install_recorder(monkeypatch)
    resolver.forbidden = {"echo.test"}
    socks_server.commands[1] = _connect_to(echo_server)
    url = f"socks5h://127.0.0.1:{socks_server.port}"

    async def attempt() -> None:
        loop = asyncio.get_running_loop()
        with socks5client.socksocket() as sock:
            sock.set_proxy(url)
            # As socksocket.connect() would: the socket's own proxy, the
            # name unresolved, and the setting left as it was.
            assert await aio.connect(sock, ("echo.test", 80), timeout=5) is not None
            assert sock.getpeername() == ("echo.test", 80)
            assert str(sock.proxy) == url
            await loop.sock_sendall(sock, b"own")
            assert await loop.sock_recv(sock, 3) == b"own"
        with socks5client.socksocket() as sock:
            # "No proxy" of its own wins over a default one.
            sock.set_proxy()
            assert await aio.connect(sock, echo_server, timeout=5) is None
            await loop.sock_sendall(sock, b"direct")
            assert await loop.sock_recv(sock, 6) == b"direct"

    socks5client.set_default_proxy(url)
    try:
        run(attempt())
    finally:
        socks5client.set_default_proxy()
    assert resolver.names() == []
    assert [(r.atyp, r.dst_addr) for r in socks_server.records] == [(ATYP_DOMAIN, "echo.test")]


def _fake_names(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """Make the library's resolver answer ``names`` with the addresses given, in order."""
    from socks5client import _resolve

    real = _resolve.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))
                for ip in names[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(_resolve, "getaddrinfo", getaddrinfo)


def test_connect_leaves_the_socket_open_on_argument_errors(
    run: Runner[Any], socks_server: SocksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the blocking connect() and docs/errors.md: raised before anything
    # is sent, the socket left as it was (it used to be closed).
    from socks5client import _resolve

    def unresolvable(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(_resolve, "getaddrinfo", unresolvable)
    cases: list[tuple[str, tuple[str, int], type[Exception]]] = [
        ("socks5h", ("127.0.0.1", 70000), ValueError),
        ("socks5h", ("", 80), ValueError),
        ("socks5h", ("a" * 256, 80), ValueError),
        ("socks5h", ("a\0b", 80), ValueError),
        ("socks5", ("dest.invalid", 80), socket.gaierror),
    ]
    for scheme, address, error in cases:
        sock = socket.socket()
        try:
            fd = sock.fileno()
            url = f"{scheme}://127.0.0.1:{socks_server.port}"
            with pytest.raises(error):
                run(aio.connect(sock, address, url, timeout=5))
            assert sock.fileno() == fd, address
        finally:
            sock.close()
    assert socks_server.connections == 0


@pytest.mark.parametrize("driver", ["open_connection", "connect-plain", "connect-socksocket"])
def test_next_destination_address_leaves_from_the_same_address_with_the_same_options(
    run: Runner[Any],
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
) -> None:
    """socks5:// and a name with two addresses: the proxy refuses the first.

    It keeps that connection open, so the port it came from stays taken
    once we close it: a port the kernel picked must give way.
    """
    _fake_names(monkeypatch, {"two.test": ["127.0.0.10", "127.0.0.11"]})
    seen: list[tuple[str, int]] = []

    def script(conn: socket.socket, server: SocksServer) -> None:
        seen.append(conn.getpeername())
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        _cmd, _atyp, addr, _port = read_request(conn)
        # A refusal whose first two bytes say it all: read whole, so that
        # closing our end sends a FIN (not a reset) and holds the port.
        conn.sendall(b"\x05\x05" if addr == "127.0.0.10" else encode_reply(0))
        server.wait()

    before = fd_count()
    server = scripted_server(script)
    url = f"socks5://127.0.0.1:{server.port}"
    local = "127.0.0.5"

    async def attempt() -> None:
        if driver == "open_connection":
            _reader, writer = await aio.open_connection(
                "two.test", 80, proxy=url, local_addr=(local, 0), timeout=FAST_TIMEOUT,
                socket_options=[(socket.IPPROTO_IP, socket.IP_TOS, 0x10)],
            )  # fmt: skip
            tunnel = writer.get_extra_info("socket")
            assert tunnel.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x10
            writer.close()
            return
        with socks5client.socksocket() if driver.endswith("socksocket") else socket.socket() as s:
            s.bind((local, 0))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
            await aio.connect(s, ("two.test", 80), url, timeout=FAST_TIMEOUT)
            assert s.getsockname()[0] == local
            assert s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x10

    run(attempt())
    server.stop()
    assert server.errors == []
    # The two connections to the proxy: both from the local address asked
    # for (the second from a new port); the option is checked above on the
    # second one's socket.
    assert [peer[0] for peer in seen] == [local, local]
    assert seen[0] != seen[1]
    assert fd_count.settle(before) == before


@pytest.mark.parametrize("driver", ["connect-plain", "connect-socksocket"])
def test_connect_falls_over_to_the_proxys_next_address(
    run: Runner[Any],
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    fd_count: FdCounter,
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
) -> None:
    # proxy.test: first an address where nothing listens, then the proxy.
    _fake_names(monkeypatch, {"proxy.test": ["127.0.0.9", "127.0.0.1"]})
    before = fd_count()

    async def attempt() -> None:
        loop = asyncio.get_running_loop()
        with socks5client.socksocket() if driver.endswith("socksocket") else socket.socket() as s:
            s.bind(("127.0.0.7", 0))
            await aio.connect(
                s, echo_server, f"socks5h://proxy.test:{socks_server.port}", timeout=5
            )
            await loop.sock_sendall(s, b"over")
            assert await loop.sock_recv(s, 4) == b"over"

    run(attempt())
    (record,) = socks_server.records
    # The fresh descriptor for the second address kept the local address.
    assert record.client_address[0] == "127.0.0.7"
    assert fd_count.settle(before) == before


@pytest.mark.parametrize("has_timeout", [True, False], ids=["asyncio.timeout", "wait_for"])
def test_tls_handshake_past_the_deadline_is_a_plain_timeout_error(
    run: Runner[Any],
    scripted_server: ScriptedServer,
    fd_count: FdCounter,
    monkeypatch: pytest.MonkeyPatch,
    has_timeout: bool,
) -> None:
    import ssl

    if has_timeout and not aio._HAS_TIMEOUT:
        pytest.skip("asyncio.timeout is Python 3.11+")
    monkeypatch.setattr(aio, "_HAS_TIMEOUT", has_timeout)
    # The proxy completes the handshake at once; the "destination" never
    # answers the ClientHello.
    before = fd_count()
    server = scripted_server(_no_auth(OK_REPLY, STALL))

    async def attempt() -> tuple[BaseException, float]:
        started = time.monotonic()
        try:
            await aio.open_connection(
                "tls.test", 443, proxy=_proxy_url(server, False),
                ssl=ssl.create_default_context(), timeout=STALL_TIMEOUT,
            )  # fmt: skip
        except TimeoutError as exc:
            return exc, time.monotonic() - started
        raise AssertionError("the TLS handshake succeeded")

    exc, elapsed = run(attempt())
    server.stop()
    assert type(exc) is TimeoutError, f"{type(exc).__name__}: {exc}"
    assert str(exc) == (
        f"the TLS handshake with tls.test:443 (through the tunnel via proxy"
        f" 127.0.0.1:{server.port}) did not complete within {STALL_TIMEOUT:g} s"
    )
    assert STALL_TIMEOUT * 0.9 <= elapsed < STALL_TIMEOUT + TIMEOUT_MARGIN, elapsed
    assert fd_count.settle(before) == before


# --------------------------------------------------------------------------
# What is refused before anything is sent, and what names the destination.
# --------------------------------------------------------------------------


def test_tls_names_a_non_ascii_host_as_the_proxy_was_asked_to(
    run: Runner[Any], socks_server: SocksServer
) -> None:
    """SNI and the certificate check name the IDNA 2008 form that went to the proxy.

    ssl would encode the text in IDNA 2003 ("faß.test" is "fass.test"),
    another domain, whose certificate would then be accepted for it.
    """
    server_ctx, client_ctx, names = sni_recording_contexts("xn--fa-hia.test")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                tls = server_ctx.wrap_socket(conn, server_side=True)
            except OSError:  # the client refused the certificate
                conn.close()
                continue
            # The second client closes at once: its EOF may come first.
            with tls, contextlib.suppress(OSError):
                tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    socks_server.commands[1] = _connect_to(listener.getsockname())
    url = f"socks5h://127.0.0.1:{socks_server.port}"

    async def attempt() -> None:
        reader, writer = await aio.open_connection(
            "faß.test", 443, proxy=url, ssl=client_ctx, timeout=5
        )
        assert await reader.readexactly(2) == b"ok"
        writer.close()
        transport, _ = await aio.create_connection(
            asyncio.Protocol, "faß.test", 443, proxy=url, ssl=client_ctx, timeout=5
        )
        transport.close()

    try:
        run(attempt())
    finally:
        thread.join(5)
        listener.close()
    assert names == ["xn--fa-hia.test"] * 2
    assert [r.dst_addr for r in socks_server.records] == ["xn--fa-hia.test"] * 2
    # IP literals and ASCII names are left as given.
    assert [aio._tls_name(h) for h in ("127.0.0.1", "::1", "Tls.Test")] == [
        "127.0.0.1", "::1", "Tls.Test"
    ]  # fmt: skip


def test_connect_refuses_a_socket_that_is_not_tcp_before_sending(run: Runner[Any]) -> None:
    """The TCP handshake (the password with it) never goes out as datagrams."""
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    # Another service on the proxy's port number, over UDP.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    url = f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{port}"

    async def attempt() -> None:
        for sock in (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM),
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
        ):
            with pytest.raises(OSError) as info:
                await aio.connect(sock, ("127.0.0.1", 9), url, timeout=2)
            assert info.value.errno == errno.EOPNOTSUPP
            assert sock.fileno() == -1  # closed, as on any failure

    try:
        run(attempt())
        udp.settimeout(0.2)
        with pytest.raises(socket.timeout):
            udp.recvfrom(1000)
        tcp.settimeout(0.1)
        with pytest.raises(socket.timeout):
            tcp.accept()
    finally:
        udp.close()
        tcp.close()


def test_bind_close_ends_a_pending_accept(
    run: Runner[Any],
    socks_server: SocksServer,
    fd_count: FdCounter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = fd_count()

    async def attempt() -> None:
        listener = await aio.bind(f"socks5h://127.0.0.1:{socks_server.port}", timeout=5)
        waiting = asyncio.ensure_future(listener.accept())
        await asyncio.sleep(0.1)
        with pytest.raises(OSError) as info:
            await listener.accept()  # one wait at a time
        assert info.value.errno == errno.EINVAL
        listener.close()
        # asyncio.wait, not wait_for: a wait still pending must stay so.
        await asyncio.wait({waiting}, timeout=2)
        assert waiting.done() and not waiting.cancelled()
        exc = waiting.exception()
        assert isinstance(exc, OSError) and exc.errno == errno.EBADF
        # The BIND is given up: the proxy no longer takes a peer there.
        deadline = time.monotonic() + 2
        while True:
            try:
                socket.create_connection(listener.address[:2], timeout=1).close()
            except (ConnectionRefusedError, ConnectionResetError):  # reset: closing as we came
                break
            assert time.monotonic() < deadline, "the proxy still listens for the peer"
            await asyncio.sleep(0.05)
        with pytest.raises(OSError):
            await listener.accept()
        # Cancelling the caller's task is still a cancellation, whichever
        # comes first, and close()'s error is not left unretrieved for
        # asyncio to log.
        for close_first in (False, True):
            listener = await aio.bind(f"socks5h://127.0.0.1:{socks_server.port}", timeout=5)
            waiting = asyncio.ensure_future(listener.accept())
            await asyncio.sleep(0.1)
            if close_first:
                listener.close()
            waiting.cancel()
            listener.close()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            del waiting, listener
            gc.collect()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run(attempt())
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert fd_count.settle(before) == before


def test_bad_arguments_with_a_proxy_are_refused_before_connecting(
    run: Runner[Any], socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    """As asyncio refuses them: before the destination is reached, not after."""
    url = f"socks5h://127.0.0.1:{socks_server.port}"

    async def attempt() -> None:
        with socket.socket() as spare:
            cases: list[tuple[dict[str, Any], type[Exception]]] = [
                ({"sock": spare}, ValueError),
                ({"server_hostname": "x.test"}, ValueError),
                ({"ssl_handshake_timeout": 5}, ValueError),
                ({"bogus": 1}, TypeError),
            ]
            for kwargs, error in cases:
                with pytest.raises(error):
                    await aio.open_connection(*echo_server, proxy=url, timeout=2, **kwargs)
                with pytest.raises(error):
                    await aio.create_connection(
                        asyncio.Protocol, *echo_server, proxy=url, timeout=2, **kwargs
                    )
        # What asyncio takes still goes through, sock=None included.
        reader, writer = await aio.open_connection(
            *echo_server, proxy=url, timeout=2, limit=10, sock=None, ssl_handshake_timeout=None
        )
        writer.write(b"e")
        assert await reader.readexactly(1) == b"e"
        writer.close()

    run(attempt())
    assert len(socks_server.records) == 1


def test_open_socket_takes_a_url_or_the_default_proxy(
    run: Runner[Any], socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    url = f"socks5h://127.0.0.1:{socks_server.port}"

    async def attempt() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(OSError) as info:
            await aio.open_socket(*echo_server, None, timeout=2)
        assert info.value.errno == errno.EOPNOTSUPP
        socks5client.set_default_proxy(url)
        try:
            for proxy in (url, None):
                sock = await aio.open_socket(*echo_server, proxy, timeout=2)
                with sock:
                    await loop.sock_sendall(sock, b"o")
                    assert await loop.sock_recv(sock, 1) == b"o"
        finally:
            socks5client.set_default_proxy()

    run(attempt())
    assert len(socks_server.records) == 2


@pytest.mark.parametrize("timeout", [float("nan"), -1.0], ids=["nan", "negative"])
def test_a_timeout_socket_settimeout_refuses_is_refused_before_anything_is_sent(
    run: Runner[Any], socks_server: SocksServer, timeout: float
) -> None:
    """Both loops alike: uvloop raised inside asyncio.timeout, the default loop ignored NaN."""
    url = f"socks5h://127.0.0.1:{socks_server.port}"
    # socket.settimeout's own errors (uvloop's was "cannot convert float NaN").
    refused = r"^(Invalid value NaN \(not a number\)|Timeout value out of range)$"

    spare = socket.socket()

    async def attempt() -> None:
        calls: list[Callable[[], Coroutine[Any, Any, Any]]] = [
            lambda: aio.open_connection("127.0.0.1", 9, proxy=url, timeout=timeout),
            lambda: aio.create_connection(
                asyncio.Protocol, "127.0.0.1", 9, proxy=url, timeout=timeout
            ),
            lambda: aio.open_connection("127.0.0.1", 9, proxy=None, timeout=timeout),
            lambda: aio.connect(spare, ("127.0.0.1", 9), url, timeout=timeout),
            lambda: aio.open_socket("127.0.0.1", 9, url, timeout=timeout),
            lambda: aio.bind(url, timeout=timeout),
            lambda: aio.open_udp(url, timeout=timeout),
        ]
        for call in calls:
            with pytest.raises(ValueError, match=refused):
                await call()
        listener = await aio.bind(url, timeout=5)
        with pytest.raises(ValueError, match=refused):
            await listener.accept(timeout=timeout)
        listener.close()
        async with await aio.open_udp(url, local_addr=("127.0.0.1", 0), timeout=5) as udp:
            with pytest.raises(ValueError, match=refused):
                await udp.recvfrom(timeout=timeout)

    with spare:
        run(attempt())
        assert spare.fileno() != -1  # an argument error: left as it was
    # Only the BIND and the association made for the last two checks.
    assert len(socks_server.records) == 2


if __name__ == "__main__" and sys.argv[1:] == ["--udp-sendto-child"]:
    _udp_sendto_waiters_child()
