"""The asyncio client against real SOCKS5 servers: microsocks, Dante and ``ssh -D``.

The blocking client's matrix (``test_interop.py``) on the event loop: every
server crossed with every kind of destination, 64 KiB echoed through
``socks5client.asyncio.open_connection``, on the default loop and on
uvloop; then the errors each server gives, BIND through Dante, and an
unmodified asyncio program under ``socks5client.patch()``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import pytest
from test_asyncio import loop_factory, run_on  # tests/ is on sys.path (tests/conftest.py)

import socks5client
import socks5client.asyncio as aio
from socks5client import errors

from .test_interop import ALL_SERVERS, AUTH_SERVERS, DESTINATIONS, REPLYING_SERVERS, Destination

if TYPE_CHECKING:
    from .conftest import EchoServer, ProxyServer, UDPEchoServer

pytestmark = pytest.mark.interop

_T = TypeVar("_T")
Runner = Callable[[Coroutine[Any, Any, _T]], _T]
TIMEOUT = 10.0
PAYLOAD_SIZE = 64 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    factory = loop_factory(request.param)
    return lambda coro: run_on(factory, coro)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    payload = os.urandom(PAYLOAD_SIZE)

    async def send() -> None:
        writer.write(payload)
        await writer.drain()

    sender = asyncio.ensure_future(send())
    received = await asyncio.wait_for(reader.readexactly(PAYLOAD_SIZE), TIMEOUT)
    await sender
    assert received == payload


@pytest.mark.parametrize("dest", DESTINATIONS, ids=[d.id for d in DESTINATIONS])
@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_open_connection_moves_data(
    run: Runner[Any], server: ProxyServer, dest: Destination, echo_server: EchoServer
) -> None:
    before = echo_server.peer_count()

    async def main() -> None:
        reader, writer = await aio.open_connection(
            dest.host, echo_server.port, proxy=server.url(remote_dns=dest.remote_dns),
            timeout=TIMEOUT,
        )  # fmt: skip
        await _echo(reader, writer)
        writer.close()
        await writer.wait_closed()

    run(main())
    peers = echo_server.peers_since(before)
    assert len(peers) == 1, peers
    if dest.seen_from is not None:
        assert peers[0][0] == dest.seen_from


@pytest.mark.parametrize("server", AUTH_SERVERS, indirect=True)
def test_wrong_password_raises_auth_error(
    run: Runner[Any], server: ProxyServer, echo_server: EchoServer
) -> None:
    wrong = "definitely-not-the-password"

    async def main() -> None:
        sock = socket.socket()
        with pytest.raises(errors.SOCKS5AuthError) as info:
            await aio.connect(
                sock, ("127.0.0.1", echo_server.port), server.url(password=wrong), timeout=TIMEOUT
            )
        assert sock.fileno() == -1
        assert wrong not in str(info.value)

    run(main())


@pytest.mark.parametrize("server", REPLYING_SERVERS, indirect=True)
def test_refused_port_raises_connection_refused(
    run: Runner[Any], server: ProxyServer, refused_port: int
) -> None:
    async def main() -> None:
        with pytest.raises(errors.SOCKS5ConnectionRefusedError) as info:
            await aio.open_connection(
                "127.0.0.1", refused_port, proxy=server.url(), timeout=TIMEOUT
            )
        assert info.value.reply_code == 5

    run(main())


def test_ssh_closes_without_reply_on_refused_port(
    run: Runner[Any], ssh_socks: ProxyServer, refused_port: int
) -> None:
    async def main() -> None:
        with pytest.raises(errors.ProxyProtocolError) as info:
            await aio.open_connection(
                "127.0.0.1", refused_port, proxy=ssh_socks.url(), timeout=TIMEOUT
            )
        assert not isinstance(info.value, errors.SOCKS5Error)

    run(main())


def test_bind_through_dante(run: Runner[Any], dante: ProxyServer) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = await aio.bind(dante.url(), ("127.0.0.1", 0), timeout=TIMEOUT)
        host, port = listener.address[:2]
        assert host == "127.0.0.1"
        peer = socket.socket()
        peer.setblocking(False)
        accepting = asyncio.ensure_future(listener.accept(timeout=TIMEOUT))
        await loop.sock_connect(peer, (host, port))
        conn, address = await accepting
        assert address[0] == "127.0.0.1"
        await loop.sock_sendall(peer, b"through dante")
        assert await asyncio.wait_for(loop.sock_recv(conn, 100), TIMEOUT) == b"through dante"
        conn.close()
        peer.close()

    run(main())


def test_microsocks_refuses_bind(run: Runner[Any], microsocks: ProxyServer) -> None:
    async def main() -> None:
        with pytest.raises(errors.SOCKS5CommandNotSupportedError):
            await aio.bind(microsocks.url(), timeout=TIMEOUT)

    run(main())


@pytest.mark.parametrize("server", ["microsocks", "dante"], indirect=True)
def test_unmodified_asyncio_program_under_the_patch(
    run: Runner[Any], server: ProxyServer, echo_server: EchoServer
) -> None:
    socks5client.patch(server.url(), no_proxy="")

    async def main() -> None:
        reader, writer = await asyncio.open_connection("localhost", echo_server.port)
        await _echo(reader, writer)
        writer.close()

    try:
        run(main())
    finally:
        socks5client.unpatch()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("server", ["dante", "dante_auth"], indirect=True)
def test_udp_through_dante(
    run: Runner[Any], server: ProxyServer, udp_echo_server: UDPEchoServer, host: str
) -> None:
    async def main() -> None:
        async with await aio.open_udp(server.url(), timeout=TIMEOUT) as endpoint:
            for i in range(5):
                payload = os.urandom(1000 + i)
                await endpoint.sendto(payload, (host, udp_echo_server.port))
                data, source = await endpoint.recvfrom(timeout=TIMEOUT)
                assert data == payload
                assert source[1] == udp_echo_server.port

    run(main())


def test_microsocks_refuses_udp_associate(run: Runner[Any], microsocks: ProxyServer) -> None:
    async def main() -> None:
        with pytest.raises(errors.SOCKS5CommandNotSupportedError):
            await aio.open_udp(microsocks.url(), timeout=TIMEOUT)

    run(main())
