"""The blocking client's quick path agrees with the conversation it shortcuts.

``SocketChannel.quick`` plays the usual handshake (greeting, the chosen
method's one message, request, IPv4 success reply) in straight-line code and
hands everything it sent and read to ``_conversation.handshake`` at the first
other answer.  The conversation runs on its own when the ``socks5client``
logger logs debug lines (the quick path does not log), which gives both paths
to compare on the same proxy answers: same bytes on the wire, same result,
same error class and message, same application bytes left in the socket.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import socks5client
from socks5client import _conversation, _negotiate, errors

from server import PeerClosed, SocksServer, read_greeting, recv_exact

TIMEOUT = 0.25
TARGET = ("192.0.2.10", 80)
USER, PASSWORD = "quick-user", "quick-pw-secret"

IPV4_OK = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90"


@pytest.fixture
def debug_logging() -> Iterator[Callable[[bool], None]]:
    """``debug_logging(on)``: turn debug lines of the ``socks5client`` logger on or off."""
    logger = logging.getLogger("socks5client")
    level = logger.level

    def switch(on: bool) -> None:
        logger.setLevel(logging.DEBUG if on else logging.WARNING)

    yield switch
    logger.setLevel(level)


class Answers:
    """What the scripted proxy answers at each step, and how it sends it."""

    def __init__(
        self,
        selection: bytes,
        auth_reply: bytes = b"\x01\x00",
        reply: bytes = IPV4_OK,
        app: bytes = b"",
        dribble: bool = False,
        then_close: bool = True,
        delay: float = 0.0,
    ) -> None:
        self.selection = selection
        self.auth_reply = auth_reply
        self.reply = reply
        self.app = app
        self.dribble = dribble
        self.then_close = then_close
        self.delay = delay  # before each answer

    def __repr__(self) -> str:
        return f"Answers({vars(self)!r})"


def _send(conn: socket.socket, data: bytes, dribble: bool, delay: float = 0.0) -> None:
    if delay:
        time.sleep(delay)
    if not dribble:
        conn.sendall(data)
        return
    for i in range(len(data)):
        conn.sendall(data[i : i + 1])
        time.sleep(0.002)


def _script(answers: Answers, heard: list[bytes]) -> Callable[[socket.socket, SocksServer], None]:
    """Play ``answers``; record in ``heard`` every message the client sent."""

    def script(conn: socket.socket, server: SocksServer) -> None:
        try:
            heard.append(read_greeting(conn))
            _send(conn, answers.selection, answers.dribble, answers.delay)
            if answers.selection == b"\x05\x02":
                ver, ulen = recv_exact(conn, 2)
                user = recv_exact(conn, ulen)
                (plen,) = recv_exact(conn, 1)
                heard.append(bytes([ver, ulen]) + user + bytes([plen]) + recv_exact(conn, plen))
                _send(conn, answers.auth_reply, answers.dribble, answers.delay)
            conn.settimeout(TIMEOUT * 2)
            request = conn.recv(300)
            if not request:
                return
            heard.append(request)
            _send(conn, answers.reply + answers.app, answers.dribble, answers.delay)
        except (PeerClosed, OSError):
            return
        if not answers.then_close:
            server.wait(TIMEOUT * 4)

    return script


def _outcome(
    scripted_server: Callable[..., SocksServer], answers: Answers, auth: bool
) -> tuple[Any, ...]:
    """Connect through a proxy playing ``answers``; what happened, port-free."""
    heard: list[bytes] = []
    server = scripted_server(_script(answers, heard))
    sock = socks5client.socksocket()
    sock.set_proxy(
        socks5client.SOCKS5,
        "127.0.0.1",
        server.port,
        username=USER if auth else None,
        password=PASSWORD if auth else None,
    )
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(TARGET)
    except errors.ProxyError as exc:
        assert sock.fileno() == -1
        result: tuple[Any, ...] = (type(exc), str(exc).replace(str(server.port), "PORT"))
    else:
        try:
            left = b""
            if answers.then_close:
                while chunk := sock.recv(100):
                    left += chunk
            # The timeout as the caller set it, whatever the steps did to keep the deadline.
            assert sock.gettimeout() == TIMEOUT
            with sock.dup() as twin:
                # (A dup made before the first look at it, which the quick
                # path leaves undecoded.)
                assert twin.get_proxy_sockname() == sock.get_proxy_sockname()
            assert type(sock.get_proxy_sockname()) is tuple
            result = ("connected", sock.get_proxy_sockname(), left)
        finally:
            sock.close()
    server.stop()
    return (*result, heard)


@pytest.fixture
def both_paths(
    scripted_server: Callable[..., SocksServer],
    debug_logging: Callable[[bool], None],
    mocker: Any,
) -> Callable[[Answers, bool], tuple[tuple[Any, ...], int]]:
    """``both_paths(answers, auth)``: the quick path's outcome, checked equal to the
    conversation's, and how many conversations the quick path started."""
    spy = mocker.spy(_conversation, "handshake")

    def run(answers: Answers, auth: bool) -> tuple[tuple[Any, ...], int]:
        debug_logging(True)
        spy.reset_mock()
        slow = _outcome(scripted_server, answers, auth)
        assert spy.call_count == 1, "with debug logging, the conversation runs on its own"
        debug_logging(False)
        spy.reset_mock()
        quick = _outcome(scripted_server, answers, auth)
        assert quick == slow
        return quick, spy.call_count

    return run


# -- the usual handshakes never start a conversation ------------------------------


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "userpass"])
def test_usual_handshake_stays_on_the_quick_path(
    both_paths: Callable[[Answers, bool], tuple[tuple[Any, ...], int]], auth: bool
) -> None:
    selection = b"\x05\x02" if auth else b"\x05\x00"
    outcome, conversations = both_paths(Answers(selection, app=b"banner"), auth)
    assert outcome[:3] == ("connected", ("127.0.0.1", 8080), b"banner")
    assert conversations == 0


def test_no_auth_chosen_although_credentials_were_offered_stays_quick(
    both_paths: Callable[[Answers, bool], tuple[tuple[Any, ...], int]],
) -> None:
    outcome, conversations = both_paths(Answers(b"\x05\x00"), True)
    assert outcome[0] == "connected"
    assert len(outcome[3]) == 2, "greeting and request: no credentials sent"
    assert conversations == 0


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "userpass"])
def test_proxy_slower_than_the_slack_stays_on_the_quick_path(
    both_paths: Callable[[Answers, bool], tuple[tuple[Any, ...], int]], auth: bool
) -> None:
    # Every answer comes 10 ms late, as over a network: each step bounds its
    # wait by the deadline itself instead of handing over.
    selection = b"\x05\x02" if auth else b"\x05\x00"
    outcome, conversations = both_paths(Answers(selection, app=b"hi", delay=0.01), auth)
    assert outcome[:3] == ("connected", ("127.0.0.1", 8080), b"hi")
    assert conversations == 0


def test_deadline_covers_all_steps_on_the_quick_path(
    scripted_server: Callable[..., SocksServer],
    debug_logging: Callable[[bool], None],
    mocker: Any,
) -> None:
    # Each answer comes within the socket's timeout, all three not within
    # the one deadline: the wait for the reply ends at the deadline, not a
    # whole timeout after the request (0.2 + 0.25 s).
    debug_logging(False)
    spy = mocker.spy(_conversation, "handshake")
    answers = Answers(b"\x05\x02", delay=TIMEOUT * 0.4, then_close=False)
    server = scripted_server(_script(answers, []))
    sock = socks5client.socksocket()
    sock.set_proxy(socks5client.SOCKS5, "127.0.0.1", server.port, username=USER, password=PASSWORD)
    sock.settimeout(TIMEOUT)
    started = time.monotonic()
    with pytest.raises(errors.ProxyTimeoutError, match=r"\(waiting for the reply\)"):
        sock.connect(TARGET)
    assert time.monotonic() - started < TIMEOUT + 0.1
    assert spy.call_count == 0


def test_non_blocking_mode_is_kept_when_the_deadline_passes_between_steps(
    scripted_server: Callable[..., SocksServer], debug_logging: Callable[[bool], None], mocker: Any
) -> None:
    # A non-blocking socket's handshake runs with a timeout the first step
    # sets.  Here the selection arrives, and by the next step the deadline
    # has passed (the clock is moved on, as if the read had taken that
    # long): the hand-over reports the timeout, and the socket must be
    # non-blocking again, as connect_ex leaves it for the next try.
    debug_logging(False)
    answers = Answers(b"\x05\x00", reply=b"", then_close=False)
    server = scripted_server(_script(answers, []))
    real_clock, real_recv = _negotiate._monotonic, _negotiate._recv
    late = [0.0]

    def recv(sock: socket.socket, size: int) -> bytes:
        data = real_recv(sock, size)
        late[0] = 3600.0
        return data

    mocker.patch.object(_negotiate, "_monotonic", lambda: real_clock() + late[0])
    mocker.patch.object(_negotiate, "_recv", recv)
    sock = socks5client.socksocket()
    sock.setblocking(False)
    sock.set_proxy(socks5client.SOCKS5, "127.0.0.1", server.port)
    with sock:
        assert sock.connect_ex(TARGET) == errno.ETIMEDOUT
        assert sock.gettimeout() == 0.0
        assert sock.fileno() != -1


# -- every surprise is handed over, and ends as the conversation says ----------------


@pytest.mark.parametrize(
    ("answers", "auth", "expected"),
    [
        # Split messages: handed over, and the handshake goes on.
        (Answers(b"\x05\x00", dribble=True, app=b"after"), False, "connected"),
        (Answers(b"\x05\x02", dribble=True, app=b"after"), True, "connected"),
        # A reply the quick path does not decode: IPv6 and domain BND.ADDR,
        # the short domain ones followed at once by application bytes that
        # must stay in the socket.
        (
            Answers(b"\x05\x00", reply=b"\x05\x00\x00\x04" + bytes(15) + b"\x01\x00\x50"),
            False,
            "connected",
        ),
        (
            Answers(b"\x05\x00", reply=b"\x05\x00\x00\x03\x01h\x00\x50", app=b"SSH-2.0"),
            False,
            "connected",
        ),
        (
            Answers(b"\x05\x00", reply=b"\x05\x00\x00\x03\x02hh\x00\x50", app=b"x"),
            False,
            "connected",
        ),
        # RSV filled by the proxy: ignored, as the conversation ignores it.
        (
            Answers(b"\x05\x00", reply=b"\x05\x00\x07\x01\x7f\x00\x00\x01\x1f\x90"),
            False,
            "connected",
        ),
        # Refusals and garbage at each step.
        (Answers(b"\x05\xff"), False, errors.SOCKS5AuthError),
        (Answers(b"\x05\x02"), False, errors.ProxyProtocolError),
        (Answers(b"HTTP/1.1 400"), False, errors.ProxyProtocolError),
        (Answers(b"\x05\x02", auth_reply=b"\x01\x01"), True, errors.SOCKS5AuthError),
        (Answers(b"\x05\x02", auth_reply=b"\x05\x00"), True, errors.ProxyProtocolError),
        (
            Answers(b"\x05\x00", reply=b"\x05\x05\x00\x01" + bytes(6)),
            False,
            errors.SOCKS5ConnectionRefusedError,
        ),
        (Answers(b"\x05\x00", reply=b"\x05\x00\x00\x01\x7f"), False, errors.ProxyProtocolError),
        (Answers(b"\x05\x00", reply=b""), False, errors.ProxyProtocolError),
    ],
    ids=[
        "split-selection",
        "split-auth",
        "ipv6-bnd",
        "one-letter-domain-bnd",
        "two-letter-domain-bnd",
        "rsv-set",
        "no-acceptable-method",
        "method-not-offered",
        "http-answer",
        "credentials-refused",
        "auth-reply-wrong-version",
        "connection-refused",
        "reply-cut-short",
        "no-reply",
    ],
)
def test_surprise_is_handed_to_the_conversation(
    both_paths: Callable[[Answers, bool], tuple[tuple[Any, ...], int]],
    answers: Answers,
    auth: bool,
    expected: Any,
) -> None:
    outcome, conversations = both_paths(answers, auth)
    if expected == "connected":
        assert outcome[0] == "connected"
        assert outcome[2] == answers.app, "application bytes after the reply must stay"
    else:
        assert issubclass(outcome[0], expected), outcome
        assert PASSWORD not in outcome[1]
    assert conversations == 1


# -- timeouts: each step is named as the conversation names it -----------------------


@pytest.mark.parametrize(
    ("answers", "auth", "waiting_for", "heard"),
    [
        (Answers(b"", then_close=False), False, "method selection", False),
        (Answers(b"\x05", then_close=False), False, "method selection", True),
        (
            Answers(b"\x05\x02", auth_reply=b"", then_close=False),
            True,
            "username/password reply",
            True,
        ),
        (Answers(b"\x05\x00", reply=b"", then_close=False), False, "reply", True),
        (
            Answers(b"\x05\x00", reply=b"\x05\x00\x00\x01\x7f\x00\x00\x01", then_close=False),
            False,
            "reply",
            True,
        ),
    ],
    ids=["silent", "half-selection", "no-auth-reply", "no-reply", "reply-short-by-2"],
)
def test_timeout_names_the_step(
    both_paths: Callable[[Answers, bool], tuple[tuple[Any, ...], int]],
    answers: Answers,
    auth: bool,
    waiting_for: str,
    heard: bool,
) -> None:
    outcome, _ = both_paths(answers, auth)
    assert outcome[0] is errors.ProxyTimeoutError, outcome
    assert f"(waiting for the {waiting_for})" in outcome[1]
    assert ("sent nothing at all" in outcome[1]) is not heard


# -- anything a proxy may answer ---------------------------------------------------


_replies = st.one_of(
    st.just(IPV4_OK),
    st.builds(lambda tail: b"\x05\x00\x00" + tail, st.binary(max_size=24)),
    st.builds(
        lambda rep, atyp, tail: b"\x05" + bytes([rep, 0, atyp]) + tail,
        st.integers(0, 9),
        st.sampled_from([1, 3, 4]),
        st.binary(max_size=20),
    ),
    st.binary(max_size=12),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    auth=st.booleans(),
    selection=st.one_of(st.sampled_from([b"\x05\x00", b"\x05\x02"]), st.binary(max_size=3)),
    auth_reply=st.one_of(st.just(b"\x01\x00"), st.binary(max_size=3)),
    reply=_replies,
    app=st.binary(max_size=6),
    dribble=st.booleans(),
)
def test_any_answers_end_alike_on_both_paths(
    both_paths: Callable[[Answers, bool], tuple[tuple[Any, ...], int]],
    auth: bool,
    selection: bytes,
    auth_reply: bytes,
    reply: bytes,
    app: bytes,
    dribble: bool,
) -> None:
    answers = Answers(selection, auth_reply, reply, app, dribble)
    both_paths(answers, auth)
