"""socks5client against proxies that misbehave on purpose.

Each test scripts the reference server (``tests/server.py``) to break
RFC 1928/1929 in one way -- wrong versions, methods never offered, unknown
address types, truncated or dribbled replies, floods, stalls -- and checks
that ``socksocket.connect`` fails with the one right exception, within the
socket's timeout, without leaking the password into the message, and
without leaking the socket or any other file descriptor.  A few scripts are
odd but legal, and there the handshake must succeed.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from typing import Callable, Union

import pytest

import socks5client
from socks5client import errors

from server import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    CMD_CONNECT,
    Record,
    Script,
    SocksServer,
    encode_reply,
    read_greeting,
    read_request,
    read_userpass,
)

USER = "hostile-user"
PASSWORD = "Pw-never-shown-7Qz"
TARGET = ("example.test", 80)

#: Socket timeout for cases that must fail fast; they must fail in well
#: under half of it, so a client that waits for the proxy to close (or for
#: the timeout) instead of reading the reply is caught.
FAST_TIMEOUT = 2.0
FAST_LIMIT = 1.0
#: Socket timeout for cases that must time out.
STALL_TIMEOUT = 0.8
#: How late after its timeout a handshake may give up.
TIMEOUT_MARGIN = 1.0

OK_REPLY = encode_reply(0, ATYP_IPV4, "10.0.0.1", 4321)

ScriptedServer = Callable[..., SocksServer]
FdCount = Callable[[], int]
ExpectFailure = Callable[..., errors.ProxyError]
Address = tuple[str, int]


# --------------------------------------------------------------------------
# Scripts: a proxy's side of the conversation as a list of steps.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dribble:
    """Send ``data`` one byte at a time, ``delay`` seconds apart."""

    data: bytes
    delay: float


class _Stall:
    """Stay silent, with the connection open, until the server stops."""


STALL = _Stall()

#: A reader from tests/server.py: ``step(conn, record)``.
Reader = Callable[[socket.socket, Record], object]
Step = Union[bytes, Dribble, _Stall, Reader]


def proxy_says(*steps: Step) -> Script:
    """A script running ``steps`` in order: bytes are sent, readers read
    (recording into the connection's record), then the connection closes."""

    def script(conn: socket.socket, server: SocksServer) -> None:
        record = server.record_for(conn)
        for step in steps:
            if isinstance(step, bytes):
                conn.sendall(step)
            elif isinstance(step, Dribble):
                for byte in step.data:
                    conn.sendall(bytes([byte]))
                    if server.wait(step.delay):
                        return
            elif isinstance(step, _Stall):
                server.wait()
            else:
                step(conn, record)

    return script


def expect_methods(*required: int) -> Reader:
    """A reader of the greeting that insists on the methods offered."""

    def step(conn: socket.socket, record: Record) -> None:
        methods = read_greeting(conn, record)
        assert set(required) <= set(methods), f"client offered {methods!r}"

    return step


def reset(conn: socket.socket, record: Record) -> None:
    """Abort the connection: with SO_LINGER 0, close() sends a RST."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()


def _no_auth(*after_request: Step) -> Script:
    """Greeting answered with "no authentication", request read, then ``after_request``."""
    return proxy_says(read_greeting, b"\x05\x00", read_request, *after_request)


# --------------------------------------------------------------------------
# Harness.
# --------------------------------------------------------------------------


def _new_client(address: tuple[str, int], timeout: float, auth: bool) -> socks5client.socksocket:
    sock = socks5client.socksocket()
    try:
        sock.set_proxy(
            socks5client.SOCKS5,
            address[0],
            address[1],
            username=USER if auth else None,
            password=PASSWORD if auth else None,
        )
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def _assert_clean_error(exc: BaseException) -> None:
    assert isinstance(exc.errno, int), f"errno is {exc.errno!r}"  # type: ignore[attr-defined]
    for text in (str(exc), repr(exc), repr(exc.args)):
        assert PASSWORD not in text


@pytest.fixture
def expect_failure(
    scripted_server: Callable[..., SocksServer], fd_count: Callable[[], int]
) -> Callable[..., errors.ProxyError]:
    """``expect_failure(script, ErrorClass, auth=False, timeout=...)``:
    run a CONNECT against the scripted proxy, check everything a failure must
    satisfy, and return the exception.  ``ErrorClass`` is matched exactly (a
    tuple lists the exact classes allowed)."""

    def run(
        script: Script,
        expected: type[errors.ProxyError] | tuple[type[errors.ProxyError], ...],
        *,
        auth: bool = False,
        timeout: float | None = None,
        target: tuple[str, int] = TARGET,
    ) -> errors.ProxyError:
        allowed = expected if isinstance(expected, tuple) else (expected,)
        is_timeout = any(issubclass(cls, TimeoutError) for cls in allowed)
        if timeout is None:
            timeout = STALL_TIMEOUT if is_timeout else FAST_TIMEOUT
        before = fd_count()
        server = scripted_server(script)
        sock = _new_client(server.address, timeout, auth)
        try:
            started = time.monotonic()
            with pytest.raises(errors.ProxyError) as info:
                sock.connect(target)
            elapsed = time.monotonic() - started
            fileno_after = sock.fileno()
        finally:
            sock.close()
        server.stop()
        exc = info.value
        del info  # its traceback would keep the library's frames alive
        assert type(exc) in allowed, f"{type(exc).__name__}: {exc}"
        _assert_clean_error(exc)
        assert fileno_after == -1, "the socket must be closed after a failed handshake"
        if is_timeout:
            assert timeout * 0.9 <= elapsed < timeout + TIMEOUT_MARGIN, elapsed
        else:
            assert elapsed < FAST_LIMIT, f"took {elapsed:.2f}s to notice"
        assert server.errors == []
        assert fd_count() == before
        return exc

    return run


@dataclasses.dataclass
class Connected:
    """A handshake that succeeded: the socket and the server's record."""

    sock: socks5client.socksocket
    server: SocksServer

    @property
    def record(self) -> Record:
        (record,) = self.server.records
        return record


ExpectSuccess = Callable[..., Connected]


@pytest.fixture
def expect_success(
    scripted_server: Callable[..., SocksServer], fd_count: Callable[[], int]
) -> Iterator[Callable[..., Connected]]:
    """``expect_success(script, auth=False)``: CONNECT through the scripted
    proxy must succeed; at teardown, the socket and server are closed and no
    fd may remain."""
    before = fd_count()
    made: list[Connected] = []

    def run(
        script: Script,
        *,
        auth: bool = False,
        timeout: float = FAST_TIMEOUT,
        target: tuple[str, int] = TARGET,
    ) -> Connected:
        server = scripted_server(script)
        sock = _new_client(server.address, timeout, auth)
        made.append(Connected(sock, server))
        sock.connect(target)
        assert sock.gettimeout() == timeout, "the handshake must restore the timeout"
        return made[-1]

    yield run
    for connected in made:
        connected.sock.close()
        connected.server.stop()
        assert connected.server.errors == []
    assert fd_count() == before


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------
# Method selection.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [b"\x04\x00", b"\x00\x00", b"\x01\x00", b"\x00\x5a"],
    ids=["socks4-version", "version-0", "version-1", "socks4-granted"],
)
def test_method_reply_with_wrong_version_is_protocol_error(
    expect_failure: ExpectFailure, answer: bytes
) -> None:
    expect_failure(proxy_says(read_greeting, answer, STALL), errors.ProxyProtocolError)


@pytest.mark.parametrize(
    ("auth", "method"),
    [(False, 0x02), (False, 0x01), (False, 0x80), (True, 0x01), (True, 0x03), (True, 0xFE)],
    ids=["userpass-unoffered", "gssapi", "private", "gssapi-with-creds", "chap", "private-fe"],
)
def test_method_the_client_did_not_offer_is_protocol_error(
    expect_failure: ExpectFailure, auth: bool, method: int
) -> None:
    script = proxy_says(read_greeting, bytes([5, method]), STALL)
    expect_failure(script, errors.ProxyProtocolError, auth=auth)


@pytest.mark.parametrize("auth", [False, True], ids=["no-creds", "with-creds"])
def test_no_acceptable_method_is_auth_error(expect_failure: ExpectFailure, auth: bool) -> None:
    expect_failure(proxy_says(read_greeting, b"\x05\xff"), errors.SOCKS5AuthError, auth=auth)


def test_method_reply_truncated_then_close_is_protocol_error(expect_failure: ExpectFailure) -> None:
    expect_failure(proxy_says(read_greeting, b"\x05"), errors.ProxyProtocolError)


def test_close_before_any_byte_is_protocol_error(expect_failure: ExpectFailure) -> None:
    expect_failure(proxy_says(read_greeting), errors.ProxyProtocolError)


def test_close_without_reading_greeting_is_a_proxy_error(expect_failure: ExpectFailure) -> None:
    # The close races with our greeting: the client sees EOF (a protocol
    # error) or, usually, a reset (a lost connection).
    expect_failure(proxy_says(), (errors.ProxyProtocolError, errors.GeneralProxyError))


def test_reset_mid_handshake_is_a_proxy_error(expect_failure: ExpectFailure) -> None:
    expect_failure(proxy_says(read_greeting, reset), errors.GeneralProxyError)


def test_http_answer_is_protocol_error(expect_failure: ExpectFailure) -> None:
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    expect_failure(answer, errors.ProxyProtocolError)


def test_garbage_flood_instead_of_method_reply_is_protocol_error(
    expect_failure: ExpectFailure,
) -> None:
    expect_failure(proxy_says(read_greeting, b"\xaa" * 65536), errors.ProxyProtocolError)


# --------------------------------------------------------------------------
# Username/password sub-negotiation (RFC 1929).
# --------------------------------------------------------------------------


def _userpass_chosen(*after_auth_request: Step) -> Script:
    return proxy_says(expect_methods(0x02), b"\x05\x02", read_userpass, *after_auth_request)


@pytest.mark.parametrize(
    "answer", [b"\x05\x00", b"\x00\x00", b"\x02\x00"], ids=["socks-version", "zero", "two"]
)
def test_auth_reply_with_wrong_version_is_protocol_error(
    expect_failure: ExpectFailure, answer: bytes
) -> None:
    expect_failure(_userpass_chosen(answer, STALL), errors.ProxyProtocolError, auth=True)


@pytest.mark.parametrize("status", [0x01, 0x02, 0xFF])
def test_auth_rejected_is_auth_error_without_password(
    expect_failure: ExpectFailure, status: int
) -> None:
    script = _userpass_chosen(bytes([1, status]))
    expect_failure(script, errors.SOCKS5AuthError, auth=True)


def test_auth_rejected_with_connection_left_open_fails_at_once(
    expect_failure: ExpectFailure,
) -> None:
    expect_failure(_userpass_chosen(b"\x01\x01", STALL), errors.SOCKS5AuthError, auth=True)


def test_auth_reply_truncated_then_close_is_protocol_error(expect_failure: ExpectFailure) -> None:
    expect_failure(_userpass_chosen(b"\x01"), errors.ProxyProtocolError, auth=True)


def test_close_instead_of_auth_reply_is_protocol_error(expect_failure: ExpectFailure) -> None:
    expect_failure(_userpass_chosen(), errors.ProxyProtocolError, auth=True)


def test_close_after_choosing_userpass_is_a_proxy_error(expect_failure: ExpectFailure) -> None:
    # Our credentials race with the close: EOF (a protocol error) or a reset.
    script = proxy_says(read_greeting, b"\x05\x02")
    allowed = (errors.ProxyProtocolError, errors.GeneralProxyError)
    expect_failure(script, allowed, auth=True)


def test_credentials_are_sent_as_given(expect_success: ExpectSuccess) -> None:
    conn = expect_success(_userpass_chosen(b"\x01\x00", read_request, OK_REPLY), auth=True)
    assert (conn.record.username, conn.record.password) == (USER, PASSWORD)


def test_no_auth_chosen_although_credentials_offered_succeeds(
    expect_success: ExpectSuccess,
) -> None:
    # The client offers 0x00 and 0x02; the proxy may pick 0x00, and then the
    # next thing it reads must be the request, not credentials.
    script = proxy_says(expect_methods(0x00, 0x02), b"\x05\x00", read_request, OK_REPLY)
    conn = expect_success(script, auth=True)
    assert conn.record.username is None
    assert conn.record.command == CMD_CONNECT


def test_longest_credentials_are_accepted(scripted_server: ScriptedServer) -> None:
    user, password = "u" * 255, "p" * 255
    server = scripted_server(_userpass_chosen(b"\x01\x00", read_request, OK_REPLY))
    with socks5client.socksocket() as sock:
        host, port = server.address
        sock.set_proxy(socks5client.SOCKS5, host, port, username=user, password=password)
        sock.settimeout(FAST_TIMEOUT)
        sock.connect(TARGET)
    server.stop()
    assert server.errors == []
    (record,) = server.records
    assert (record.username, record.password) == (user, password)


# --------------------------------------------------------------------------
# The reply to CONNECT: framing.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [encode_reply(0, ver=4), encode_reply(0, ver=0), b"\x00\x5a\x00\x50\x7f\x00\x00\x01"],
    ids=["version-4", "version-0", "socks4-reply"],
)
def test_reply_with_wrong_version_is_protocol_error(
    expect_failure: ExpectFailure, reply: bytes
) -> None:
    expect_failure(_no_auth(reply, STALL), errors.ProxyProtocolError)


@pytest.mark.parametrize("atyp", [0x00, 0x02, 0x05, 0xFF])
def test_reply_with_unknown_address_type_is_protocol_error(
    expect_failure: ExpectFailure, atyp: int
) -> None:
    reply = encode_reply(0, atyp, b"\x7f\x00\x00\x01", 80)
    expect_failure(_no_auth(reply, STALL), errors.ProxyProtocolError)


def test_reply_with_empty_domain_is_protocol_error(expect_failure: ExpectFailure) -> None:
    expect_failure(
        _no_auth(encode_reply(0, ATYP_DOMAIN, b"", 80), STALL), errors.ProxyProtocolError
    )


_IPV6_REPLY = encode_reply(0, ATYP_IPV6, "2001:db8::1", 80)
_DOMAIN_REPLY = encode_reply(0, ATYP_DOMAIN, "bnd.example", 80)


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        OK_REPLY[:1],
        OK_REPLY[:3],
        OK_REPLY[:4],
        OK_REPLY[:7],
        OK_REPLY[:9],
        _IPV6_REPLY[:12],
        _IPV6_REPLY[:-1],
        _DOMAIN_REPLY[:4],
        _DOMAIN_REPLY[:8],
        _DOMAIN_REPLY[:-1],
    ],
    ids=[
        "nothing",
        "ver",
        "ver-rep-rsv",
        "header",
        "half-ipv4",
        "ipv4-half-port",
        "half-ipv6",
        "ipv6-half-port",
        "domain-no-length",
        "half-domain",
        "domain-half-port",
    ],
)
def test_reply_truncated_then_close_is_protocol_error(
    expect_failure: ExpectFailure, partial: bytes
) -> None:
    expect_failure(_no_auth(partial), errors.ProxyProtocolError)


def test_garbage_flood_instead_of_reply_is_protocol_error(expect_failure: ExpectFailure) -> None:
    expect_failure(_no_auth(bytes(range(6, 256)) * 263), errors.ProxyProtocolError)


def test_socks5_looking_flood_is_protocol_error(expect_failure: ExpectFailure) -> None:
    # Starts like a reply (VER 5, REP 0, RSV 0) then an unknown ATYP, then
    # 64 KiB more: the client must stop at the bad byte, not read it all.
    expect_failure(_no_auth(b"\x05\x00\x00\x09" + b"\x05" * 65536), errors.ProxyProtocolError)


# --------------------------------------------------------------------------
# The reply to CONNECT: reply codes.
# --------------------------------------------------------------------------

_REPLY_ERRORS = {
    1: errors.SOCKS5GeneralFailureError,
    2: errors.SOCKS5ConnectionNotAllowedError,
    3: errors.SOCKS5NetworkUnreachableError,
    4: errors.SOCKS5HostUnreachableError,
    5: errors.SOCKS5ConnectionRefusedError,
    6: errors.SOCKS5TTLExpiredError,
    7: errors.SOCKS5CommandNotSupportedError,
    8: errors.SOCKS5AddressTypeNotSupportedError,
}


@pytest.mark.parametrize(("code", "expected"), sorted(_REPLY_ERRORS.items()))
def test_failure_reply_raises_matching_error_without_waiting_for_close(
    expect_failure: ExpectFailure, code: int, expected: type[errors.SOCKS5Error]
) -> None:
    exc = expect_failure(_no_auth(encode_reply(code), STALL), expected)
    assert isinstance(exc, errors.SOCKS5Error)
    assert exc.reply_code == code


@pytest.mark.parametrize(
    ("partial", "expected"),
    [
        (b"\x05\x01", errors.SOCKS5GeneralFailureError),
        (b"\x05\x01\x00", errors.SOCKS5GeneralFailureError),
        (b"\x05\x05\x00\x01\x7f", errors.SOCKS5ConnectionRefusedError),
        (b"\x05\x04\x00\x03", errors.SOCKS5HostUnreachableError),
    ],
    ids=["ver-rep", "ver-rep-rsv", "half-ipv4", "domain-no-length"],
)
def test_failure_reply_cut_short_with_connection_open_fails_at_once(
    expect_failure: ExpectFailure, partial: bytes, expected: type[errors.SOCKS5Error]
) -> None:
    # Once REP is known to be a failure the outcome is known: the client
    # must not wait (up to the timeout, or forever) for the address part.
    exc = expect_failure(_no_auth(partial, STALL), expected)
    assert isinstance(exc, errors.SOCKS5Error)


def test_failure_reply_cut_short_without_timeout_does_not_hang(
    scripted_server: ScriptedServer,
) -> None:
    server = scripted_server(_no_auth(b"\x05\x01\x00", STALL))
    sock = _new_client(server.address, 5.0, auth=False)
    sock.settimeout(None)  # urllib3's default: no timeout at all
    started = time.monotonic()
    with sock, pytest.raises(errors.SOCKS5GeneralFailureError):
        sock.connect(TARGET)
    assert time.monotonic() - started < FAST_LIMIT


@pytest.mark.parametrize("code", [0x09, 0x7F, 0xFF])
def test_unassigned_reply_code_is_unassigned_error(
    expect_failure: ExpectFailure, code: int
) -> None:
    exc = expect_failure(_no_auth(encode_reply(code), STALL), errors.SOCKS5UnassignedReplyError)
    assert isinstance(exc, errors.SOCKS5Error)
    assert exc.reply_code == code


def test_failure_reply_with_ipv6_address_then_close(expect_failure: ExpectFailure) -> None:
    reply = encode_reply(4, ATYP_IPV6, "2001:db8::1", 0)
    exc = expect_failure(_no_auth(reply), errors.SOCKS5HostUnreachableError)
    assert isinstance(exc, errors.SOCKS5Error)
    assert exc.reply_code == 4


@pytest.mark.parametrize(
    "partial",
    [b"\x05\x05", b"\x05\x05\x00", b"\x05\x05\x00\x01", b"\x05\x05\x00\x01\x7f\x00"],
    ids=["ver-rep", "no-atyp", "no-address", "half-address"],
)
def test_refused_reply_cut_short_is_still_connection_refused(
    expect_failure: ExpectFailure, partial: bytes
) -> None:
    exc = expect_failure(_no_auth(partial), errors.SOCKS5ConnectionRefusedError)
    assert isinstance(exc, errors.SOCKS5Error)
    assert exc.reply_code == 5
    assert isinstance(exc, ConnectionRefusedError)


def test_auth_then_failure_reply_does_not_leak_password(expect_failure: ExpectFailure) -> None:
    script = _userpass_chosen(b"\x01\x00", read_request, encode_reply(2))
    exc = expect_failure(script, errors.SOCKS5ConnectionNotAllowedError, auth=True)
    assert isinstance(exc, errors.SOCKS5Error)
    assert exc.reply_code == 2


# --------------------------------------------------------------------------
# Stalls and slow proxies: the timeout bounds the whole handshake.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "auth"),
    [
        (proxy_says(STALL), False),
        (proxy_says(read_greeting, STALL), False),
        (proxy_says(read_greeting, b"\x05", STALL), False),
        (proxy_says(read_greeting, b"\x05\x02", read_userpass, STALL), True),
        (_no_auth(STALL), False),
        (_no_auth(OK_REPLY[:5], STALL), False),
    ],
    ids=[
        "accepts-never-reads",
        "reads-greeting-never-answers",
        "half-method-reply",
        "never-answers-credentials",
        "never-answers-request",
        "half-reply",
    ],
)
def test_stalled_proxy_times_out(expect_failure: ExpectFailure, script: Script, auth: bool) -> None:
    exc = expect_failure(script, errors.ProxyTimeoutError, auth=auth)
    assert isinstance(exc, TimeoutError)
    assert isinstance(exc, socket.timeout)


def test_proxy_dribbling_too_slowly_times_out(expect_failure: ExpectFailure) -> None:
    # Each byte comes well within the timeout, the whole reply does not: a
    # client that re-arms the timeout per recv() would wait ~3 s here.
    script = proxy_says(
        read_greeting, Dribble(b"\x05\x00", 0.25), read_request, Dribble(OK_REPLY, 0.25)
    )
    expect_failure(script, errors.ProxyTimeoutError)


def test_nothing_listening_is_proxy_connection_error(fd_count: FdCount) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    before = fd_count()
    sock = _new_client(("127.0.0.1", dead_port), FAST_TIMEOUT, auth=True)
    try:
        with pytest.raises(errors.ProxyError) as info:
            sock.connect(TARGET)
        assert sock.fileno() == -1
    finally:
        sock.close()
    exc = info.value
    del info
    assert type(exc) is errors.ProxyConnectionError, f"{type(exc).__name__}: {exc}"
    _assert_clean_error(exc)
    assert isinstance(exc.socket_err, ConnectionRefusedError)
    assert fd_count() == before


# --------------------------------------------------------------------------
# Odd but legal: these must succeed.
# --------------------------------------------------------------------------


def test_reply_dribbled_one_byte_at_a_time_succeeds(expect_success: ExpectSuccess) -> None:
    script = proxy_says(
        read_greeting,
        Dribble(b"\x05\x02", 0.02),
        read_userpass,
        Dribble(b"\x01\x00", 0.02),
        read_request,
        Dribble(OK_REPLY, 0.02),
        b"tunnel",
    )
    conn = expect_success(script, auth=True)
    assert conn.sock.get_proxy_sockname() == ("10.0.0.1", 4321)
    assert _read_to_eof(conn.sock) == b"tunnel"


def test_application_bytes_in_the_reply_segment_reach_the_application(
    expect_success: ExpectSuccess,
) -> None:
    conn = expect_success(_no_auth(OK_REPLY + b"first bytes of the stream"))
    assert _read_to_eof(conn.sock) == b"first bytes of the stream"


def test_method_and_reply_in_one_segment_succeed(expect_success: ExpectSuccess) -> None:
    # A proxy that answers ahead of the request: the client must read the
    # two-byte method reply only, and find the CONNECT reply afterwards.
    conn = expect_success(proxy_says(read_greeting, b"\x05\x00" + OK_REPLY, read_request, b"data"))
    assert _read_to_eof(conn.sock) == b"data"
    assert conn.record.dst_addr == TARGET[0]


def test_auth_reply_and_connect_reply_in_one_segment_succeed(expect_success: ExpectSuccess) -> None:
    script = _userpass_chosen(b"\x01\x00" + OK_REPLY, read_request, b"data")
    conn = expect_success(script, auth=True)
    assert _read_to_eof(conn.sock) == b"data"


@pytest.mark.parametrize(
    ("reply", "sockname"),
    [
        (encode_reply(0, ATYP_DOMAIN, "bnd.proxy.example", 4321), ("bnd.proxy.example", 4321)),
        (encode_reply(0, ATYP_DOMAIN, "b" * 255, 65535), ("b" * 255, 65535)),
        (encode_reply(0, ATYP_IPV6, "2001:db8::7", 4321), ("2001:db8::7", 4321)),
        (encode_reply(0, ATYP_IPV4, "0.0.0.0", 0), ("0.0.0.0", 0)),
    ],
    ids=["domain", "longest-domain", "ipv6", "zero-ipv4"],
)
def test_bound_address_of_any_type_is_reported(
    expect_success: ExpectSuccess, reply: bytes, sockname: tuple[str, int]
) -> None:
    conn = expect_success(_no_auth(reply, b"after"))
    assert conn.sock.get_proxy_sockname() == sockname
    assert _read_to_eof(conn.sock) == b"after"


# --------------------------------------------------------------------------
# What reaches the proxy.
# --------------------------------------------------------------------------


def test_hostname_goes_to_proxy_unresolved_and_idna_encoded(expect_failure: ExpectFailure) -> None:
    seen: list[Record] = []

    def script(conn: socket.socket, server: SocksServer) -> None:
        record = server.record_for(conn)
        seen.append(record)
        read_greeting(conn, record)
        conn.sendall(b"\x05\x00")
        read_request(conn, record)
        conn.sendall(encode_reply(4))

    expect_failure(script, errors.SOCKS5HostUnreachableError, target=("faß.de", 443))
    (record,) = seen
    assert (record.atyp, record.dst_addr, record.dst_port) == (ATYP_DOMAIN, "xn--fa-hia.de", 443)
    assert record.methods == b"\x00"


def test_longest_hostname_is_sent_whole(scripted_server: ScriptedServer) -> None:
    host = ".".join(["a" * 63] * 3 + ["b" * 63])  # 255 bytes
    server = scripted_server(_no_auth(OK_REPLY))
    with socks5client.socksocket() as sock:
        sock.set_proxy(socks5client.SOCKS5, *server.address)
        sock.settimeout(FAST_TIMEOUT)
        sock.connect((host, 80))
    server.stop()
    assert server.errors == []
    assert server.records[0].dst_addr == host


def test_through_reference_server_to_echo(auth_server: SocksServer, echo_server: Address) -> None:
    with socks5client.socksocket() as sock:
        sock.set_proxy(f"socks5h://alice:s3cret@127.0.0.1:{auth_server.port}")
        sock.settimeout(FAST_TIMEOUT)
        sock.connect(("localhost", echo_server[1]))
        sock.sendall(b"ping")
        sock.shutdown(socket.SHUT_WR)
        assert _read_to_eof(sock) == b"ping"
    record = auth_server.records[0]
    assert (record.atyp, record.dst_addr) == (ATYP_DOMAIN, "localhost")


# --------------------------------------------------------------------------
# Bad arguments: refused before anything reaches the proxy.
# --------------------------------------------------------------------------

_HOST_256 = ".".join(["a" * 50] * 5) + ".b"
assert len(_HOST_256) == 256


@pytest.mark.parametrize(
    ("target", "username", "password"),
    [
        ((_HOST_256, 80), None, None),
        (("", 80), None, None),
        (("example.test", 65536), None, None),
        (("example.test", -1), None, None),
        (TARGET, "u" * 256, "long-user-pw"),
        (TARGET, "u", ("secret-" * 37)[:256]),
        (TARGET, "", "empty-user-pw"),
    ],
    ids=[
        "hostname-256-bytes",
        "empty-hostname",
        "port-65536",
        "port-minus-1",
        "username-256-bytes",
        "password-256-bytes",
        "empty-username",
    ],
)
def test_bad_argument_is_value_error_before_contacting_proxy(
    target: tuple[str, int], username: str | None, password: str | None
) -> None:
    # A plain listening socket: if the client had connected, accept() would
    # find the connection already queued by the kernel.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socks5client.socksocket() as sock:
            sock.settimeout(FAST_TIMEOUT)
            with pytest.raises(ValueError) as info:
                sock.set_proxy(
                    socks5client.SOCKS5, "127.0.0.1", port, username=username, password=password
                )
                sock.connect(target)
        listener.settimeout(0.1)
        with pytest.raises(socket.timeout):
            listener.accept()
    if password is not None:
        assert password not in str(info.value)
        assert password not in repr(info.value)
