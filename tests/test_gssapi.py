"""GSS-API (RFC 1961) pieces that need no Kerberos realm.

The proxy options and their URL form, what a GSS-API proxy offers, the
framing codec, the errors, and the wrapping socket driven by a stand-in
protection over a real TCP connection (the peer writes frames by hand).
The realm-backed tests are in ``tests/interop/test_gssapi.py``.
"""

from __future__ import annotations

import errno
import pickle
import socket
import struct
import sys
import threading
from collections.abc import Iterator

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
