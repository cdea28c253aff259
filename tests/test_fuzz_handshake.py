"""Whatever a proxy answers, connect() ends in success or a ProxyError, in time.

Hypothesis plays the proxy: after reading the greeting (and the request, when
it has answered the greeting), the scripted server sends arbitrary bytes and
then either closes or stalls.  The client must never raise anything but a
ProxyError (IndexError, struct.error, UnicodeDecodeError... would be bugs),
never outlive its timeout, and never leak a descriptor.
"""

from __future__ import annotations

import socket
import time
from typing import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import socks5client
from socks5client import errors

from server import SocksServer, read_greeting

TIMEOUT = 0.3


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method_reply=st.one_of(st.just(b"\x05\x00"), st.binary(max_size=4)),
    reply=st.one_of(
        st.binary(max_size=40),
        st.builds(lambda tail: b"\x05\x00\x00" + tail, st.binary(max_size=30)),
        st.builds(
            lambda rep, tail: b"\x05" + bytes([rep]) + b"\x00" + tail,
            st.integers(0, 255),
            st.binary(max_size=30),
        ),
    ),
    then_close=st.booleans(),
)
def test_any_answer_ends_in_success_or_a_proxy_error(
    scripted_server: Callable[..., SocksServer],
    fd_count: Callable[[], int],
    method_reply: bytes,
    reply: bytes,
    then_close: bool,
) -> None:
    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(method_reply)
        if method_reply == b"\x05\x00":
            conn.recv(300)  # the request
            conn.sendall(reply)
        if not then_close:
            server.wait(TIMEOUT * 3)

    before = fd_count()
    server = scripted_server(script)
    sock = socks5client.socksocket()
    sock.set_proxy(socks5client.SOCKS5, "127.0.0.1", server.port)
    sock.settimeout(TIMEOUT)
    started = time.monotonic()
    try:
        sock.connect(("example.test", 80))
    except errors.ProxyError:
        assert sock.fileno() == -1
    else:
        sock.close()
    assert time.monotonic() - started < TIMEOUT + 1.0
    server.stop()
    assert fd_count() == before
