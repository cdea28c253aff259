"""Pipelined handshakes (``?pipeline=1``) against real servers: which accept them.

Dante and ``ssh -D`` read one message at a time and accept a greeting,
credentials and request sent in one write; microsocks parses the greeting
out of its first read and drops the rest, so the request it waits for never
comes.  These tests pin that table (docs/performance.md shows it) and check
that against microsocks the error says pipelining is on and how to turn it
off, within the socket's timeout.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

import pytest

import socks5client
from socks5client import errors

if TYPE_CHECKING:
    from .conftest import EchoServer, ProxyServer

pytestmark = pytest.mark.interop

TIMEOUT = 10.0
PAYLOAD = os.urandom(256 * 1024)


def _pipelined_url(server: ProxyServer) -> str:
    return server.url() + "?pipeline=1"


def _round_trip(sock: socket.socket) -> None:
    sock.sendall(PAYLOAD)
    got = bytearray()
    while len(got) < len(PAYLOAD):
        chunk = sock.recv(65536)
        assert chunk, "the tunnel closed early"
        got += chunk
    assert bytes(got) == PAYLOAD


@pytest.mark.parametrize("server", ["dante", "dante_auth", "ssh_socks"], indirect=True)
def test_servers_that_accept_a_pipelined_handshake(
    server: ProxyServer, echo_server: EchoServer
) -> None:
    for dest in ("127.0.0.1", "localhost"):
        with socks5client.socksocket() as sock:
            sock.settimeout(TIMEOUT)
            sock.set_proxy(_pipelined_url(server))
            sock.connect((dest, echo_server.port))
            _round_trip(sock)


@pytest.mark.parametrize("server", ["dante_auth"], indirect=True)
def test_pipelined_wrong_password_is_refused(server: ProxyServer, echo_server: EchoServer) -> None:
    with socks5client.socksocket() as sock:
        sock.settimeout(TIMEOUT)
        sock.set_proxy(server.url(password="not-the-password") + "?pipeline=1")
        with pytest.raises(errors.SOCKS5AuthError):
            sock.connect(("127.0.0.1", echo_server.port))


@pytest.mark.parametrize("server", ["microsocks", "microsocks_auth"], indirect=True)
def test_microsocks_drops_a_pipelined_request_and_the_error_says_so(
    server: ProxyServer, echo_server: EchoServer
) -> None:
    timeout = 1.5
    started = time.monotonic()
    with socks5client.socksocket() as sock:
        sock.settimeout(timeout)
        sock.set_proxy(_pipelined_url(server))
        with pytest.raises(errors.ProxyError) as info:
            sock.connect(("127.0.0.1", echo_server.port))
    assert time.monotonic() - started < timeout + 1.0
    assert "pipelining is on" in str(info.value)
    assert "?pipeline=1" in str(info.value)
    # The same server, the same destination, without pipelining: fine.
    with socks5client.socksocket() as sock:
        sock.settimeout(TIMEOUT)
        sock.set_proxy(server.url())
        sock.connect(("127.0.0.1", echo_server.port))
        _round_trip(sock)
