"""Fixtures shared by the test suite: reference servers and an fd counter.

Every server fixture starts a real server from ``tests/server.py`` on a free
loopback port and stops it (closing its sockets and joining its threads)
at teardown.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

# tests/ is not a package; make ``import server`` work under any pytest
# import mode, not only the default "prepend".
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from server import EchoServer, Script, SocksServer, UDPEchoServer  # noqa: E402

#: Credentials that the ``auth_server`` fixture accepts.
AUTH_USER = "alice"
AUTH_PASSWORD = "s3cret"


def count_fds() -> int:
    """Number of file descriptors this process has open (Linux /proc)."""
    return len(os.listdir("/proc/self/fd"))


class FdCounter:
    """Counts this process's descriptors; ``settle`` waits for a count.

    The reference server closes its side of a connection on its own thread,
    so a test that closed its socket may have to wait a moment before the
    count is back where it started.
    """

    def __call__(self) -> int:
        return count_fds()

    def settle(self, expected: int, timeout: float = 2.0) -> int:
        """The count once it equals ``expected``, or whatever it is after ``timeout``."""
        deadline = time.monotonic() + timeout
        while count_fds() != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return count_fds()


@pytest.fixture
def fd_count() -> FdCounter:
    """The fd counter, for asserting that nothing leaks a descriptor."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    # Sockets an earlier test left in reference cycles must not be closed by
    # the collector in the middle of this test's count.
    gc.collect()
    return FdCounter()


@pytest.fixture
def socks_server() -> Iterator[SocksServer]:
    """A no-auth SOCKS5 server on 127.0.0.1."""
    with SocksServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def socks_server_v6() -> Iterator[SocksServer]:
    """A no-auth SOCKS5 server on ::1."""
    with SocksServer("::1") as server:
        yield server


@pytest.fixture
def auth_server() -> Iterator[SocksServer]:
    """A SOCKS5 server on 127.0.0.1 requiring ``alice``/``s3cret``."""
    with SocksServer("127.0.0.1", users={AUTH_USER: AUTH_PASSWORD}) as server:
        yield server


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a TCP echo server on 127.0.0.1."""
    with EchoServer("127.0.0.1") as server:
        yield server.address


@pytest.fixture
def echo_server_v6() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a TCP echo server on ::1."""
    with EchoServer("::1") as server:
        yield server.address


@pytest.fixture
def udp_echo_server() -> Iterator[UDPEchoServer]:
    """A UDP echo server on 127.0.0.1 (``.address``; ``.received`` lists what came)."""
    with UDPEchoServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def udp_echo_server_v6() -> Iterator[UDPEchoServer]:
    """A UDP echo server on ::1."""
    with UDPEchoServer("::1") as server:
        yield server


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., SocksServer]]:
    """Factory: ``scripted_server(script, host="127.0.0.1", users=None,
    **settings)`` returns a started :class:`SocksServer` (``settings`` are
    its keyword settings, e.g. ``bind_timeout``); all are stopped at
    teardown (stopping one earlier in the test is fine)."""
    started: list[SocksServer] = []

    def make(
        script: Script | None,
        host: str = "127.0.0.1",
        users: dict[str, str] | None = None,
        **settings: Any,
    ) -> SocksServer:
        server = SocksServer(host, users=users, script=script, **settings).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def _never_leave_the_process_patched() -> Iterator[None]:
    """A test that forgot to unpatch (or failed before it could) must not
    turn every later test's sockets into proxied ones."""
    yield
    import socks5client

    if socks5client.is_patched():
        socks5client.unpatch()


def sni_recording_contexts(name: str) -> tuple[Any, Any, list[str | None]]:
    """TLS contexts for a test server holding a certificate for ``name``.

    Returns ``(server_context, client_context, names)``: the client trusts
    the test authority, and ``names`` collects the SNI each handshake the
    server runs was given (``None`` for none).
    """
    import ssl

    import trustme

    authority = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    authority.configure_trust(client_ctx)
    names: list[str | None] = []

    def record(_sock: Any, server_name: str | None, _ctx: Any) -> None:
        names.append(server_name)

    server_ctx.sni_callback = record
    return server_ctx, client_ctx, names
