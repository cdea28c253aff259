"""``socks5client.contrib.httpx.AsyncSOCKSTransport`` with ``httpx.AsyncClient``.

The sites, the fake names and the scripted proxies are those of
``test_contrib_httpx.py`` (the synchronous transport); here the same
situations go through ``httpx.AsyncClient`` on the default loop and on
uvloop, and must end the same way: the name sent to the proxy (or resolved
here for ``socks5://``), one handshake per pooled connection, and each
failure as the same httpx exception with socks5client's error as its cause.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import threading
import time
import warnings
from collections.abc import Coroutine
from typing import Any, Callable, TypeVar

import httpcore
import httpx
import pytest
import test_contrib_httpx as sync_suite
from secret_places import password_places
from test_asyncio import loop_factory, run_on
from test_contrib_httpx import (
    CONNECT_TIMEOUT,
    ENV_PASSWORD,
    MALFORMED_ENV_URLS,
    SITE_NAME,
    SLACK,
    TIMEOUT,
    Names,
    Site,
    canned_reply,
    connects,
    stall_after_greeting,
    tls_pair,
    url_of,
)

from socks5client import errors
from socks5client.contrib.httpx import (
    AsyncSOCKSNetworkBackend,
    AsyncSOCKSTransport,
    SOCKSTransport,
)

from conftest import AUTH_PASSWORD, AUTH_USER, FdCounter
from server import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    CMD_CONNECT,
    SocksServer,
    encode_reply,
    read_greeting,
    read_request,
)

# The synchronous suite's fixtures, shared (the autouse one clears proxy variables).
_no_proxy_environment = sync_suite._no_proxy_environment
ca = sync_suite.ca
names = sync_suite.names
site = sync_suite.site
sites = sync_suite.sites

_T = TypeVar("_T")
Runner = Callable[[Coroutine[Any, Any, _T]], _T]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    factory = loop_factory(request.param)
    return lambda coro: run_on(factory, coro)


async def get(proxy: Any, url: str, timeout: Any = TIMEOUT, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=AsyncSOCKSTransport(proxy, **kwargs), timeout=timeout
    ) as client:
        response = await client.get(url)
        await response.aread()
        return response


def test_http_get_with_socks5h_sends_the_name(
    run: Runner[Any], socks_server: SocksServer, site: Site, names: Names
) -> None:
    response = run(get(url_of(socks_server), site.url()))
    assert response.status_code == 200
    assert response.content == site.body
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port)]
    assert site.requests[0][1] == f"{SITE_NAME}:{site.port}"
    assert names.local_lookups == []


def test_http_get_with_socks5_resolves_here(
    run: Runner[Any], socks_server: SocksServer, site: Site, names: Names
) -> None:
    response = run(get(url_of(socks_server, "socks5"), site.url()))
    assert response.content == site.body
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_IPV4, "127.0.0.1", site.port)]
    assert names.local_lookups == [SITE_NAME]


def test_https_checks_the_certificate_of_the_name(
    run: Runner[Any],
    socks_server: SocksServer,
    sites: Callable[..., Site],
    names: Names,
    ca: Any,
) -> None:
    server_ctx, client_ctx = tls_pair(ca, SITE_NAME)
    site = sites(server_ctx)
    response = run(get(url_of(socks_server), site.url(), verify=client_ctx))
    assert response.content == site.body
    assert site.sni == [SITE_NAME]
    other_ctx, _ = tls_pair(ca, "other.test")
    wrong = sites(other_ctx)

    async def refused() -> None:
        with pytest.raises(httpx.ConnectError):
            await get(url_of(socks_server), wrong.url(), verify=client_ctx)

    run(refused())


def test_credentials_and_pooling_one_handshake_for_five_requests(
    run: Runner[Any], auth_server: SocksServer, site: Site, names: Names
) -> None:
    async def five() -> None:
        transport = AsyncSOCKSTransport(
            url_of(auth_server, userinfo=f"{AUTH_USER}:{AUTH_PASSWORD}@")
        )
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            for _ in range(5):
                assert (await client.get(site.url())).content == site.body

    run(five())
    assert auth_server.connections == 1
    assert auth_server.records[0].username == AUTH_USER


@pytest.mark.parametrize(
    ("rep", "expected"),
    [
        (1, httpx.ProxyError),
        (2, httpx.ProxyError),
        (5, httpx.ConnectError),
        (4, httpx.ConnectError),
    ],
)
def test_reply_codes_map_to_httpx_errors(
    run: Runner[Any],
    scripted_server: Callable[..., SocksServer],
    names: Names,
    rep: int,
    expected: type[Exception],
) -> None:
    server = scripted_server(canned_reply(rep))

    async def attempt() -> None:
        with pytest.raises(expected) as info:
            await get(url_of(server), f"http://{SITE_NAME}:80/")
        assert isinstance(info.value.__cause__, errors.SOCKS5Error)
        assert info.value.__cause__.reply_code == rep

    run(attempt())


def test_host_too_long_for_socks5_is_a_connect_error_before_any_lookup(
    run: Runner[Any], socks_server: SocksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dns_recorder import install_recorder

    resolver = install_recorder(monkeypatch)
    resolver.forbidden.add(sync_suite.TOO_LONG_NAME)

    async def attempt() -> None:
        with pytest.raises(httpx.ConnectError) as info:
            await get(url_of(socks_server), f"http://{sync_suite.TOO_LONG_NAME}/")
        assert type(info.value.__cause__) is ValueError

    run(attempt())
    assert sync_suite.TOO_LONG_NAME not in resolver.hosts()
    assert connects(socks_server) == []


def test_proxy_down_and_refused_credentials_are_proxy_errors(
    run: Runner[Any], auth_server: SocksServer, names: Names
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]

    async def attempt() -> None:
        with pytest.raises(httpx.ProxyError) as info:
            await get(f"socks5h://127.0.0.1:{dead}", f"http://{SITE_NAME}:80/")
        assert isinstance(info.value.__cause__, errors.ProxyConnectionError)
        with pytest.raises(httpx.ProxyError) as refused:
            await get(url_of(auth_server, userinfo="alice:wrong-pw-123@"), f"http://{SITE_NAME}/")
        assert isinstance(refused.value.__cause__, errors.SOCKS5AuthError)
        assert "wrong-pw-123" not in str(refused.value)

    run(attempt())


def test_a_silent_proxy_raises_connect_timeout_within_the_timeout(
    run: Runner[Any], scripted_server: Callable[..., SocksServer], fd_count: FdCounter
) -> None:
    before = fd_count()
    server = scripted_server(stall_after_greeting)

    async def attempt() -> float:
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout) as info:
            await get(url_of(server), f"http://{SITE_NAME}/", timeout=CONNECT_TIMEOUT)
        assert isinstance(info.value.__cause__, errors.ProxyTimeoutError)
        return time.monotonic() - started

    elapsed = run(attempt())
    assert CONNECT_TIMEOUT * 0.9 <= elapsed < CONNECT_TIMEOUT + SLACK
    server.stop()
    assert fd_count.settle(before) == before


def test_a_request_cancelled_during_the_handshake_leaves_nothing_open(
    run: Runner[Any], scripted_server: Callable[..., SocksServer], fd_count: FdCounter
) -> None:
    before = fd_count()
    server = scripted_server(stall_after_greeting)

    async def attempt() -> None:
        task = asyncio.ensure_future(get(url_of(server), f"http://{SITE_NAME}/", timeout=None))
        for _ in range(200):
            if server.connections:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(attempt())
    server.stop()
    assert fd_count.settle(before) == before


def test_environment_proxy_and_no_proxy(
    run: Runner[Any],
    socks_server: SocksServer,
    site: Site,
    names: Names,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    assert run(get(None, site.url())).content == site.body
    assert len(socks_server.records) == 1
    if request.node.callspec.params["run"] == "uvloop":
        return  # direct, libuv would resolve site.test itself, past the fake names
    monkeypatch.setenv("NO_PROXY", SITE_NAME)
    assert run(get(None, site.url())).content == site.body
    assert len(socks_server.records) == 1


@pytest.mark.parametrize("url", MALFORMED_ENV_URLS.values(), ids=MALFORMED_ENV_URLS.keys())
def test_a_malformed_proxy_in_the_environment_leaves_no_password_in_the_traceback(
    run: Runner[Any], url: str, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", url)

    async def refused() -> httpx.ProxyError:
        # Refused before anything is resolved or connected: no site needed.
        with pytest.raises(httpx.ProxyError) as info:
            await get(None, f"http://{SITE_NAME}/")
        return info.value

    error = run(refused())
    assert password_places(error, ENV_PASSWORD) == []
    assert "ALL_PROXY" in str(error)


def test_each_transport_refuses_the_other_kind_of_client() -> None:
    transport = AsyncSOCKSTransport("socks5h://127.0.0.1:1080")
    client = httpx.Client(transport=transport)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"asynchronous: use it with httpx\.AsyncClient"):
        client.get("http://site.test/")
    client.close()
    with pytest.raises(TypeError, match="AsyncSOCKSTransport"):
        asyncio.run(SOCKSTransport("socks5h://127.0.0.1:1080").handle_async_request(None))  # type: ignore[arg-type]


def test_repr_never_shows_the_password() -> None:
    transport = AsyncSOCKSTransport("socks5h://user:pw-secret-9@127.0.0.1:1080")
    assert "pw-secret-9" not in repr(transport)


def test_under_trio_the_handshake_runs_in_a_worker_thread(
    auth_server: SocksServer, site: Site, names: Names
) -> None:
    trio = pytest.importorskip("trio")  # in the test extra
    url = url_of(auth_server, userinfo=f"{AUTH_USER}:{AUTH_PASSWORD}@")

    async def main() -> bytes:
        response = await get(url, site.url())
        return response.content

    assert trio.run(main) == site.body
    assert connects(auth_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port)]
    assert names.local_lookups == []


# ---------------------------------------------------------------------------
# trio: the handshake in a worker thread, under one deadline and cancellable

#: How late a cancelled trio request may return: well under the 5 s its
#: worker's socket timeout would take.
CANCEL_SLACK = 0.5

#: How late past the connect timeout a request queued for a worker thread
#: may fail.  Without one deadline from the start, the requests that wait
#: for a thread get a full timeout of their own after the wait: at least
#: 2 * CONNECT_TIMEOUT in all.
QUEUE_SLACK = 0.45


def test_under_trio_a_cancel_scope_stops_a_stalled_handshake_at_once(
    scripted_server: Callable[..., SocksServer], fd_count: FdCounter
) -> None:
    trio = pytest.importorskip("trio")
    before = fd_count()
    server = scripted_server(stall_after_greeting)

    async def main() -> float:
        started = time.monotonic()
        with trio.move_on_after(0.2):
            await get(url_of(server), f"http://{SITE_NAME}/", timeout=TIMEOUT)
        return time.monotonic() - started

    elapsed = trio.run(main)
    assert elapsed < 0.2 + CANCEL_SLACK
    assert server.connections == 1
    # The abandoned worker is still waiting for the proxy; once the proxy
    # goes, it must close its socket.
    server.stop()
    assert fd_count.settle(before) == before


def answer_when_released(
    release: threading.Event, closed: threading.Event
) -> Callable[[socket.socket, SocksServer], None]:
    """A proxy that completes the handshake only once ``release`` is set,
    then sets ``closed`` when the client closes the tunnel."""

    def script(conn: socket.socket, server: SocksServer) -> None:
        record = server.record_for(conn)
        read_greeting(conn, record)
        while not release.wait(0.01):
            if server.stopping:
                return
        conn.sendall(b"\x05\x00")
        read_request(conn, record)
        conn.sendall(encode_reply(0, ATYP_IPV4, "127.0.0.1", 4321))
        conn.settimeout(TIMEOUT)
        if conn.recv(1) == b"":
            closed.set()

    return script


def test_under_trio_a_handshake_completed_after_the_cancel_is_closed(
    scripted_server: Callable[..., SocksServer], fd_count: FdCounter
) -> None:
    trio = pytest.importorskip("trio")
    before = fd_count()
    release, closed = threading.Event(), threading.Event()
    server = scripted_server(answer_when_released(release, closed))

    async def main() -> None:
        with trio.move_on_after(0.2):
            await get(url_of(server), f"http://{SITE_NAME}/", timeout=TIMEOUT)
        release.set()
        # Still inside the run: the worker hands its socket back to a task
        # that has left, while trio is there to receive it.
        for _ in range(int(TIMEOUT / 0.01)):
            if closed.is_set():
                break
            await trio.sleep(0.01)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        trio.run(main)
        gc.collect()
    assert closed.is_set()
    # Closed on purpose, not left to the collector.
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    server.stop()
    assert fd_count.settle(before) == before


def test_under_trio_the_connect_timeout_counts_the_wait_for_a_worker_thread(
    scripted_server: Callable[..., SocksServer], fd_count: FdCounter
) -> None:
    trio = pytest.importorskip("trio")
    before = fd_count()
    server = scripted_server(stall_after_greeting)
    # More than the 40 threads of anyio's default limiter: some wait for one.
    count = 90

    async def main() -> list[tuple[float, httpx.ConnectTimeout]]:
        failures: list[tuple[float, httpx.ConnectTimeout]] = []
        transport = AsyncSOCKSTransport(url_of(server))
        timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:

            async def one() -> None:
                started = time.monotonic()
                try:
                    await client.get(f"http://{SITE_NAME}/")
                except httpx.ConnectTimeout as exc:
                    failures.append((time.monotonic() - started, exc))

            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(one)
        return failures

    failures = trio.run(main)
    assert len(failures) == count
    assert max(elapsed for elapsed, _ in failures) < CONNECT_TIMEOUT + QUEUE_SLACK
    for _, exc in failures:
        assert isinstance(exc.__cause__, TimeoutError)
        assert isinstance(exc.__cause__, errors.ProxyError)
    server.stop()
    assert fd_count.settle(before) == before


# ---------------------------------------------------------------------------
# A connection broken after the handshake: the OSError is the cause


@pytest.fixture(params=["asyncio", "uvloop", "trio"])
def run_any(request: pytest.FixtureRequest) -> Runner[Any]:
    """Run a coroutine on each of anyio's backends (asyncio on both loops)."""
    if request.param == "trio":
        trio = pytest.importorskip("trio")

        async def main(coro: Coroutine[Any, Any, Any]) -> Any:
            return await coro

        return lambda coro: trio.run(main, coro)
    factory = loop_factory(request.param)
    return lambda coro: run_on(factory, coro)


def _anyio_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version("anyio").split(".")[:2] if part.isdigit())


_ANYIO_KEEPS_READ_ERRORS = _anyio_version() >= (4, 13)


def reset_after_the_first_bytes(conn: socket.socket, server: SocksServer) -> None:
    """A proxy that completes the handshake, then resets the connection as
    soon as the client sends something through the tunnel (an HTTP request
    head: one segment)."""
    record = server.record_for(conn)
    read_greeting(conn, record)
    conn.sendall(b"\x05\x00")
    read_request(conn, record)
    conn.sendall(encode_reply(0, ATYP_IPV4, "127.0.0.1", 4321))
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_a_connection_reset_while_reading_is_read_error_caused_by_the_os_error(
    run_any: Runner[Any], scripted_server: Callable[..., SocksServer]
) -> None:
    server = scripted_server(reset_after_the_first_bytes)

    async def attempt() -> None:
        with pytest.raises(httpx.ReadError) as info:
            await get(url_of(server), f"http://{SITE_NAME}/")
        # anyio before 4.13 (the newest for Python 3.9) drops the OSError
        # behind its BrokenResourceError on asyncio's reads: all that is left
        # to say there is that the connection broke (ECONNABORTED).
        expected: tuple[type[OSError], ...] = (ConnectionResetError,)
        if not _ANYIO_KEEPS_READ_ERRORS:
            expected += (ConnectionAbortedError,)
        assert isinstance(info.value.__cause__, expected)

    run_any(attempt())


def test_a_connection_reset_while_writing_is_write_error_caused_by_the_os_error(
    run_any: Runner[Any], scripted_server: Callable[..., SocksServer]
) -> None:
    server = scripted_server(reset_after_the_first_bytes)

    async def attempt() -> None:
        backend = AsyncSOCKSNetworkBackend(url_of(server))
        stream = await backend.connect_tcp(SITE_NAME, 80, timeout=TIMEOUT)
        try:
            with pytest.raises(httpcore.WriteError) as info:
                # The writes before the RST is back succeed.
                for _ in range(int(TIMEOUT / 0.01)):
                    await stream.write(b"x" * 1024, timeout=TIMEOUT)
                    await backend.sleep(0.01)
        finally:
            await stream.aclose()
        assert isinstance(info.value.__cause__, (ConnectionResetError, BrokenPipeError))

    run_any(attempt())
