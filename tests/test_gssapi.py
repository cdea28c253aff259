"""GSS-API (RFC 1961) pieces that need no Kerberos realm.

The proxy options and their URL form, what a GSS-API proxy offers, the
framing codec, the errors, and the wrapping socket driven by a stand-in
protection over a real TCP connection (the peer writes frames by hand).
The realm-backed tests are in ``tests/interop/test_gssapi.py``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import socks5client
from socks5client import (
    GSSAPIError,
    GSSAPIFramingError,
    Proxy,
    ProxyProtocolError,
    SOCKS5AuthError,
)
from socks5client._codec import (
    GSSAPIFrame,
    NeedData,
    Parsed,
    encode_gssapi_frame,
    parse_gssapi_frame,
)
from socks5client.auth import plan_for
from socks5client.auth.gssapi import target_name
from socks5client.sock import _protected_class_for, _with_host

# ---------------------------------------------------------------------------
# Proxy options


def test_defaults_and_equality() -> None:
    plain = Proxy("proxy.example", 1080)
    assert (plain.gssapi, plain.gssapi_service, plain.gssapi_protection) == (False, "rcmd", None)
    on = Proxy("proxy.example", 1080, gssapi=True)
    assert on != plain
    assert on == Proxy("proxy.example", 1080, gssapi=True, gssapi_service="rcmd")
    assert hash(on) == hash(Proxy("proxy.example", 1080, gssapi=True))
    assert on != Proxy("proxy.example", 1080, gssapi=True, gssapi_protection="integrity")


@pytest.mark.parametrize(
    "proxy",
    [
        Proxy("proxy.example", 1080, gssapi=True),
        Proxy("proxy.example", 1080, gssapi=True, gssapi_protection="none"),
        Proxy("h", 1, gssapi=True, gssapi_service="socks/h.example@EX.COM", pipeline=True),
        Proxy("::1", 1080, username="u", password="secret-pw", gssapi=True, gssapi_service="x@y"),
    ],
)
def test_pickle_repr_and_url_round_trip(proxy: Proxy) -> None:
    assert pickle.loads(pickle.dumps(proxy)) == proxy
    assert "gssapi=True" in repr(proxy)
    if proxy.password is None:
        assert Proxy.from_url(proxy.url) == proxy
    assert "secret-pw" not in repr(proxy) + proxy.url


def test_url_form() -> None:
    proxy = Proxy.from_url(
        "socks5h://proxy.example:1080?gssapi=1&gssapi_service=rcmd%2Fproxy.example"
        "&gssapi_protection=integrity"
    )
    assert proxy.gssapi and proxy.gssapi_service == "rcmd/proxy.example"
    assert proxy.gssapi_protection == "integrity"
    assert proxy.url == (
        "socks5h://proxy.example:1080?gssapi=1&gssapi_service=rcmd/proxy.example"
        "&gssapi_protection=integrity"
    )
    assert Proxy.from_url("socks5h://h?gssapi").gssapi


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gssapi_service": "socks"}, "need gssapi=True"),
        ({"gssapi_protection": "integrity"}, "need gssapi=True"),
        ({"gssapi": True, "gssapi_protection": "strong"}, "gssapi_protection must be"),
        ({"gssapi": True, "gssapi_service": ""}, "non-empty"),
        ({"gssapi": True, "gssapi_service": " rcmd"}, "non-empty"),
    ],
)
def test_bad_options_are_refused_early(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Proxy("h", 1080, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "socks5h://h?gssapi=maybe",
        "socks5h://h?gssapi_service=x",
        "socks5h://h?gssapi=1&gssapi_protection=full",
        "socks5h://h?gssapi=1&other=1",
    ],
)
def test_bad_url_options_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        Proxy.from_url(url)


# ---------------------------------------------------------------------------
# What is offered


@pytest.fixture
def fake_gssapi(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in ``gssapi`` module: plans import it, these tests never call it."""
    monkeypatch.setitem(sys.modules, "gssapi", type(sys)("gssapi"))


def test_gssapi_alone_is_offered_without_credentials(fake_gssapi: None) -> None:
    plan = plan_for(Proxy("h", 1080, gssapi=True, pipeline=True))
    assert plan.greeting == b"\x05\x01\x01"
    # Never pipelined: the proxy's tokens decide what we send next.
    assert plan.pipelined is None


def test_username_is_offered_after_gssapi_never_no_auth(fake_gssapi: None) -> None:
    plan = plan_for(Proxy("h", 1080, username="u", password="p", gssapi=True, pipeline=True))
    assert plan.greeting == b"\x05\x02\x01\x02"
    assert plan.pipelined is None


@pytest.mark.parametrize(
    ("host", "service", "expected"),
    [
        ("proxy.example", "rcmd", ("rcmd@proxy.example", True)),
        ("10.0.0.1", "rcmd", ("rcmd@10.0.0.1", True)),
        ("10.0.0.1", "rcmd@proxy.example", ("rcmd@proxy.example", True)),
        ("10.0.0.1", "rcmd/proxy.example@EX.COM", ("rcmd/proxy.example@EX.COM", False)),
    ],
)
def test_service_names(host: str, service: str, expected: tuple[str, bool]) -> None:
    assert target_name(host, service) == expected


def test_a_resolved_address_keeps_the_named_host_for_the_service(fake_gssapi: None) -> None:
    per_address = _with_host(Proxy("proxy.example", 1080, gssapi=True), "192.0.2.7")
    assert per_address.host == "192.0.2.7"
    method = plan_for(per_address).offered[1]
    assert "rcmd@proxy.example" in repr(method)


def test_missing_gssapi_package_is_reported_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gssapi", None)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        proxy = Proxy("127.0.0.1", listener.getsockname()[1], gssapi=True)
        with pytest.raises(GSSAPIError, match=r"pip install 'socks5client\[gssapi\]'"):
            socks5client.create_connection(("example.com", 80), timeout=5, proxy=proxy)
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing connected


# ---------------------------------------------------------------------------
# Framing codec and errors


def test_frame_codec() -> None:
    frame = encode_gssapi_frame(3, b"token")
    assert frame == b"\x01\x03\x00\x05token"
    assert parse_gssapi_frame(frame[:1]) == NeedData(1)
    assert parse_gssapi_frame(frame[:3]) == NeedData(1)
    assert parse_gssapi_frame(frame[:6]) == NeedData(3)
    assert parse_gssapi_frame(frame + b"next") == Parsed(GSSAPIFrame(3, b"token"), 9)
    assert parse_gssapi_frame(b"\x01\xff") == Parsed(GSSAPIFrame(0xFF, b""), 2)
    with pytest.raises(GSSAPIFramingError, match="version 0x05"):
        parse_gssapi_frame(b"\x05")
    with pytest.raises(GSSAPIFramingError, match="unknown type 0x09"):
        parse_gssapi_frame(b"\x01\x09")
    with pytest.raises(ValueError):
        encode_gssapi_frame(3, bytes(65536))


def test_error_tree() -> None:
    err = GSSAPIFramingError("bad frame")
    assert isinstance(err, SOCKS5AuthError) and isinstance(err, ProxyProtocolError)
    assert str(err).startswith("SOCKS5 authentication failed")
    assert err.errno == errno.EPROTO
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is GSSAPIFramingError and str(again) == str(err)


# ---------------------------------------------------------------------------
# The wrapping socket, with a stand-in protection


class FakeProtection:
    """Wraps by prefixing a marker and reversing: visible, checkable, no Kerberos."""

    level = 1
    max_payload = 1000

    def wrap(self, data: bytes) -> bytes:
        return b"W" + bytes(reversed(data))

    def unwrap(self, token: bytes) -> bytes:
        if token[:1] != b"W":
            raise ProxyProtocolError("token failed verification")
        return bytes(reversed(token[1:]))


def _frame(data: bytes) -> bytes:
    return encode_gssapi_frame(3, FakeProtection().wrap(data))


@pytest.fixture
def pair() -> Iterator[tuple[socks5client.socksocket, socket.socket]]:
    """A wrapping socksocket and the raw peer socket it talks to."""
    with _wrapping_pair() as made:
        yield made


@contextlib.contextmanager
def _wrapping_pair() -> Iterator[tuple[socks5client.socksocket, socket.socket]]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sock = socks5client.socksocket()
        sock.set_proxy()  # direct: the class switch is what is under test
        sock.connect(listener.getsockname())
        peer, _ = listener.accept()
    sock.__class__ = _protected_class_for(type(sock))
    sock._start_protection(FakeProtection(), b"pending")  # type: ignore[attr-defined]
    sock.settimeout(5)
    peer.settimeout(5)
    with sock, peer:
        yield sock, peer


def _read_frames(peer: socket.socket, total: int) -> list[bytes]:
    tokens = []
    got = 0
    while got < total:
        ver, mtyp, length = struct.unpack("!BBH", _exact(peer, 4))
        assert (ver, mtyp) == (1, 3)
        token = _exact(peer, length)
        tokens.append(token)
        got += len(token) - 1
    return tokens


def _exact(peer: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = peer.recv(n - len(buf))
        assert chunk
        buf += chunk
    return buf


def test_bytes_unwrapped_with_the_reply_come_first(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    peer.sendall(_frame(b" and more"))
    assert sock.recv(7) == b"pending"
    assert sock.recv(100) == b" and more"


def test_sendall_cuts_large_writes_into_tokens(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    data = bytes(range(256)) * 20
    sock.sendall(data)
    tokens = _read_frames(peer, len(data))
    assert all(len(t) <= 1001 for t in tokens)
    assert b"".join(FakeProtection().unwrap(t) for t in tokens) == data
    assert sock.send(data) == 1000  # one token's worth


def test_frames_dribbled_one_byte_at_a_time(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    sock.recv(7)
    wire = _frame(b"first") + _frame(b"") + _frame(b"second")

    def dribble() -> None:
        for i in range(len(wire)):
            peer.send(wire[i : i + 1])

    thread = threading.Thread(target=dribble)
    thread.start()
    got = b""
    while len(got) < 11:
        got += sock.recv(100)
    thread.join()
    assert got == b"firstsecond"


def test_bad_frame_and_failed_verification_raise(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    sock.recv(7)
    peer.sendall(b"\x01\x01\x00\x01x")
    with pytest.raises(ProxyProtocolError, match="framing"):
        sock.recv(1)


def test_tampered_token_raises(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    sock.recv(7)
    peer.sendall(encode_gssapi_frame(3, b"Xforged"))
    with pytest.raises(ProxyProtocolError, match="verification"):
        sock.recv(1)


def test_eof_between_and_inside_frames(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    sock.recv(7)
    peer.sendall(_frame(b"last"))
    peer.shutdown(socket.SHUT_WR)
    assert sock.recv(10) == b"last"
    assert sock.recv(10) == b""


def test_eof_inside_a_frame_is_an_error(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    sock.recv(7)
    peer.sendall(_frame(b"cut short")[:6])
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(ProxyProtocolError, match="middle of a frame"):
        sock.recv(10)


def test_unsupported_flags_are_refused(pair: tuple[socket.socket, ...]) -> None:
    sock, _ = pair
    with pytest.raises(OSError) as info:
        sock.send(b"x", socket.MSG_OOB)
    assert info.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError):
        sock.recv(1, socket.MSG_OOB)
    with pytest.raises(OSError):
        sock.recvmsg(10, 64)


def test_a_user_subclass_keeps_its_overrides() -> None:
    class Mine(socks5client.socksocket):
        def hello(self) -> str:
            return "mine"

    made = _protected_class_for(Mine)
    assert issubclass(made, Mine) and made.__name__ == "Mine"
    assert made is _protected_class_for(Mine)
    assert made.hello is Mine.hello


def test_a_frame_cut_by_a_timeout_is_finished_before_anything_else(
    pair: tuple[socket.socket, ...],
) -> None:
    sock, peer = pair
    sock.settimeout(0.2)
    # The peer reads nothing, so the kernel buffers fill and sendall times
    # out in the middle of a frame.
    with pytest.raises(socket.timeout):
        sock.sendall(bytes(1000) * 20_000)
    sock.settimeout(10)
    received = bytearray()
    done = threading.Event()

    def drain() -> None:
        while not done.is_set() or received[-3:] != b"dne":
            try:
                chunk = peer.recv(1 << 16)
            except socket.timeout:
                return  # nothing more came: the assertions below judge what did
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    assert sock.send(b"end") == 3
    done.set()
    reader.join(20)
    # Every frame on the wire is whole and verifies, and "end" is the last.
    plain = bytearray()
    offset = 0
    while offset < len(received):
        ver, mtyp, length = struct.unpack_from("!BBH", received, offset)
        assert (ver, mtyp) == (1, 3)
        token = bytes(received[offset + 4 : offset + 4 + length])
        assert len(token) == length
        plain += FakeProtection().unwrap(token)
        offset += 4 + length
    assert plain.endswith(b"end")
    assert set(plain[:-3]) == {0}


@pytest.mark.parametrize("end", [0, 1])
def test_detach_after_the_descriptor_was_closed_under_it_is_still_the_refusal(end: int) -> None:
    # uvloop closes a transport's descriptor (libuv), then detaches the
    # socket object given to it.  Refusing that, the socket defuses the now
    # free number with a socketpair, whose end `end` (0: the first) gets it
    # here, as the kernel hands out the lowest free numbers.  That was
    # EINVAL from dup2 (first end), or EBADF from the close after (second).
    reserved = os.dup(2)  # a number below the socket's, freed below
    with _wrapping_pair() as (sock, peer):
        os.close(reserved)
        fd = sock.fileno()
        os.close(fd)
        taken = []
        try:
            while (number := os.dup(peer.fileno())) != fd:
                taken.append(number)  # every free number below fd, reserved's too
            os.close(fd)
            if end:
                os.close(taken.pop())  # one below fd free: the first end takes it
            with pytest.raises(OSError) as info:
                sock.detach()
            assert info.value.errno == errno.EOPNOTSUPP, info.value
            with pytest.raises(OSError):
                os.fstat(fd)  # free again: nothing leaked
        finally:
            for number in taken:
                os.close(number)


def test_recv_after_close_is_ebadf_and_drops_the_buffers(pair: tuple[socket.socket, ...]) -> None:
    sock, _ = pair
    assert sock.recv(3) == b"pen"  # "ding" stays buffered
    sock.close()
    for read in (lambda: sock.recv(10), lambda: sock.recv_into(bytearray(10))):
        with pytest.raises(OSError) as info:
            read()
        assert info.value.errno == errno.EBADF
    # No plaintext of the closed connection stays behind in the object.
    assert not sock._rbuf and not sock._inbuf and not sock._out  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.recv_into(b"xxxx"), "recv_into() argument 1 must be read-write"),
        (lambda s: s.recvfrom_into(b"xxxx"), "recvfrom_into() argument 1 must be read-write"),
        (lambda s: s.recv_into("text"), "recv_into() argument 1 must be read-write"),
        (lambda s: s.recvmsg_into([bytearray(2), b"xx"]), "read-write buffers"),
    ],
    ids=["recv_into", "recvfrom_into", "not-a-buffer", "recvmsg_into"],
)
def test_a_read_only_buffer_is_refused_before_anything_is_read(
    pair: tuple[socket.socket, ...], call: Any, message: str
) -> None:
    sock, _ = pair
    with pytest.raises(TypeError) as info:
        call(sock)
    assert message in str(info.value)
    assert sock.recv(100) == b"pending"  # nothing was taken for the refused buffer


@pytest.mark.parametrize(
    ("wire", "what"), [(b"\x01\xff", "an abort"), (b"\x05", "05 where"), (b"\x01\x01", "01 01")]
)
def test_an_abort_or_bad_header_after_the_handshake_is_reported_at_once(
    pair: tuple[socket.socket, ...], wire: bytes, what: str
) -> None:
    sock, peer = pair
    sock.recv(7)
    peer.sendall(wire)  # nothing more comes, and the connection stays open
    start = time.monotonic()
    with pytest.raises(ProxyProtocolError, match=what):
        sock.recv(10)
    assert time.monotonic() - start < 2  # not the socket's 5 s timeout


def _in_background(work: Any) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("mode", ["empty-frames", "trickle"])
def test_recv_keeps_one_deadline_while_the_proxy_makes_slow_progress(
    pair: tuple[socket.socket, ...], mode: str
) -> None:
    sock, peer = pair
    sock.recv(7)
    stop = threading.Event()

    def feed() -> None:
        # Progress every 50 ms, but never a whole frame with data, for 3 s.
        wire = _frame(b"x" * 100)
        for i in range(60):
            if stop.wait(0.05):
                return
            peer.sendall(encode_gssapi_frame(3, b"") if mode == "empty-frames" else wire[i : i + 1])

    thread = _in_background(feed)
    sock.settimeout(0.5)
    start = time.monotonic()
    try:
        with pytest.raises(socket.timeout):
            sock.recv(10)
        assert time.monotonic() - start < 1.5
    finally:
        stop.set()
        thread.join(10)


def test_sendall_keeps_one_deadline_while_the_proxy_reads_slowly(
    pair: tuple[socket.socket, ...],
) -> None:
    sock, peer = pair
    stop = threading.Event()

    def read_slowly() -> None:
        # Some every 50 ms, for 3 s: the kernel buffers keep taking a bit
        # more, so no single write waits long.  Then a reset, so that a
        # sendall that never times out ends anyway.
        end = time.monotonic() + 3
        while not stop.wait(0.05) and time.monotonic() < end:
            try:
                if not peer.recv(16384):
                    return
            except OSError:
                return
        peer.close()

    thread = _in_background(read_slowly)
    sock.settimeout(0.5)
    start = time.monotonic()
    try:
        with pytest.raises(socket.timeout):
            sock.sendall(bytes(64 << 20))
        assert time.monotonic() - start < 1.5
    finally:
        stop.set()
        thread.join(10)


def test_the_timeout_is_the_users_and_the_descriptor_stays_non_blocking(
    pair: tuple[socket.socket, ...],
) -> None:
    sock, _ = pair
    assert (sock.gettimeout(), sock.timeout, sock.getblocking()) == (5.0, 5.0, True)
    assert socket.socket.gettimeout(sock) == 0.0  # only _wait waits
    sock.setblocking(False)
    assert (sock.gettimeout(), sock.getblocking()) == (0.0, False)
    sock.recv(7)
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    sock.settimeout(None)
    assert (sock.gettimeout(), sock.getblocking()) == (None, True)
    sock.settimeout(2)
    assert sock.gettimeout() == 2.0
    with pytest.raises(ValueError, match="out of range"):
        sock.settimeout(-1)
    with pytest.raises(TypeError):
        sock.settimeout("1")  # type: ignore[arg-type]
    assert socket.socket.gettimeout(sock) == 0.0


def test_a_token_that_fails_verification_fails_every_later_recv(
    pair: tuple[socket.socket, ...],
) -> None:
    sock, peer = pair
    sock.recv(7)
    peer.sendall(_frame(b"before") + encode_gssapi_frame(3, b"Xforged") + _frame(b"after"))
    got = b""
    for _ in range(3):
        # Reading on after the error gives what came before it, never what follows.
        with contextlib.suppress(ProxyProtocolError):
            got += sock.recv(100)
    assert got in (b"", b"before")
    with pytest.raises(ProxyProtocolError, match="verification"):
        sock.recv(100)


def _send_until_a_frame_is_cut(sock: socket.socket) -> int:
    """``send`` until one returns with part of its frame still queued; the bytes taken.

    The peer reads nothing meanwhile, so the kernel buffers fill up.
    """
    sock.recv(7)  # "pending": later reads wait for the peer
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.settimeout(0.1)
    taken = 0
    while not sock._out:  # type: ignore[attr-defined]
        taken += sock.send(bytes(1000))
        assert taken % 1000 == 0  # each send took its whole piece
    return taken


def test_recv_writes_out_the_frame_a_send_left_queued(pair: tuple[socket.socket, ...]) -> None:
    # send() said the bytes were taken; the proxy answers only once it has
    # them all, so the recv waiting for that answer must deliver the rest.
    sock, peer = pair
    taken = _send_until_a_frame_is_cut(sock)
    received: list[int] = []

    def proxy() -> None:
        time.sleep(0.5)  # reads only once the recv below is waiting
        tokens = _read_frames(peer, taken)
        received.append(len(b"".join(FakeProtection().unwrap(t) for t in tokens)))
        peer.sendall(_frame(b"got it"))

    thread = _in_background(proxy)
    sock.settimeout(3)
    try:
        assert sock.recv(100) == b"got it"
    finally:
        thread.join(10)
    assert received == [taken]


def test_close_writes_out_the_frame_a_send_left_queued(pair: tuple[socket.socket, ...]) -> None:
    sock, peer = pair
    taken = _send_until_a_frame_is_cut(sock)
    received = bytearray()

    def proxy() -> None:
        time.sleep(0.5)  # reads only once close() has begun
        with contextlib.suppress(OSError):
            while chunk := peer.recv(1 << 16):
                received.extend(chunk)

    thread = _in_background(proxy)
    sock.settimeout(3)
    sock.close()
    thread.join(10)
    plain = bytearray()
    offset = 0
    while offset < len(received):  # whole frames, up to the end
        ver, mtyp, length = struct.unpack_from("!BBH", received, offset)
        assert (ver, mtyp) == (1, 3)
        assert offset + 4 + length <= len(received), "the last frame was cut"
        plain += FakeProtection().unwrap(bytes(received[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    assert plain == bytes(taken)


# ---------------------------------------------------------------------------
# BIND through a protected tunnel, with a stand-in protection


@pytest.fixture
def fake_negotiation(fake_gssapi: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """GSS-API "agrees" on :class:`FakeProtection` at once: no token is exchanged."""
    from socks5client.auth.gssapi import GSSAPIAuth

    def negotiate(self: Any, command: int | None = None) -> Any:
        return FakeProtection()
        yield  # a generator, as the real one

    monkeypatch.setattr(GSSAPIAuth, "negotiate", negotiate)


BIND_FIRST = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x30\x39"  # the proxy listens on 127.0.0.1:12345
BIND_SECOND = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\xd2"  # the peer came from 127.0.0.1:1234


@pytest.mark.parametrize("timeout", [2.0, 0.0], ids=["timeout", "non-blocking"])
def test_accept_finds_the_second_bind_reply_in_the_first_replys_token(
    fake_negotiation: None, timeout: float
) -> None:
    # Frames need not match SOCKS messages: the second reply may be
    # unwrapped already, and then nothing more comes to wake a wait.
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def proxy() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                assert _exact(conn, 3) == b"\x05\x01\x01"
                conn.sendall(b"\x05\x01")
                _, _, length = struct.unpack("!BBH", _exact(conn, 4))
                _exact(conn, length)  # the wrapped request
                conn.sendall(_frame(BIND_FIRST + BIND_SECOND + b"data"))
                done.wait(10)

        thread = _in_background(proxy)
        port = listener.getsockname()[1]
        try:
            with socks5client.socksocket() as sock:
                sock.set_proxy(Proxy("127.0.0.1", port, gssapi=True, gssapi_service="x@y"))
                sock.settimeout(timeout)
                assert sock.proxy_bind(("127.0.0.1", 0)) == ("127.0.0.1", 12345)
                start = time.monotonic()
                conn, peer = sock.accept()  # not BlockingIOError, nor a timeout
                with conn:
                    assert time.monotonic() - start < 1
                    assert peer == ("127.0.0.1", 1234)
                    conn.settimeout(5)
                    assert conn.recv(100) == b"data"
        finally:
            done.set()
            thread.join(10)
