"""No password in any error, chained error, traceback local or log line.

Error reporters (Sentry, ``pytest -l``, IDE debuggers) record ``repr()`` of
every local of every frame of a traceback, follow ``__cause__`` and
``__context__``, and some expand an object's attributes one level.  Each
test here makes socks5client fail while it holds a distinctive password and
searches everything such a tool could record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import types
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import socks5client
from socks5client import SOCKS5, Proxy, errors
from socks5client._negotiate import Budget, SocketChannel
from socks5client._secret import Secret
from socks5client.auth import UsernamePasswordAuth, methods_for
from socks5client.proxy import proxy_from_args

from server import SocksServer, read_greeting, read_userpass

#: Nothing else in the suite or the library contains this text.
PASSWORD = "Pw-4e1f-never-LEAK"
USER = "alice"
TARGET = ("example.test", 80)
STALL_TIMEOUT = 0.5

ScriptedServer = Callable[..., SocksServer]


# --------------------------------------------------------------------------
# The search.
# --------------------------------------------------------------------------


def _attributes(value: object) -> Iterator[tuple[str, object]]:
    """An object's instance attributes: its ``__dict__`` and its slots."""
    for name, attr in getattr(value, "__dict__", {}).items():
        yield name, attr
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            try:
                yield name, getattr(value, name)
            except AttributeError:
                continue


def _expand(value: object) -> Iterator[tuple[str, str]]:
    """``repr(value)``, and the repr of each attribute of our own objects.

    One level, as debuggers show it.  A :class:`Secret` is the wrapper whose
    job is to mask its content, so it is not opened.
    """
    yield "", repr(value)
    module = type(value).__module__ or ""
    if module.split(".")[0] == "socks5client" and not isinstance(value, Secret):
        for name, attr in _attributes(value):
            yield f".{name}", repr(attr)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception reachable from it: cause, context, socket_err."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "socket_err", None)]


def _recorded_texts(exc: BaseException) -> Iterator[tuple[str, str]]:
    """``(where, text)`` for everything an error reporter could record of ``exc``."""
    for err in _exception_chain(exc):
        name = type(err).__name__
        yield f"str({name})", str(err)
        yield f"repr({name})", repr(err)
        yield f"{name}.args", repr(err.args)
        for attr, value in _attributes(err):
            yield f"{name}.{attr}", repr(value)
        tb = err.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            code = frame.f_code
            # This file's frames hold the password on purpose: it is the input.
            if code.co_filename != __file__:
                for local, value in dict(frame.f_locals).items():
                    for suffix, text in _expand(value):
                        yield f"{name}: {code.co_name}() local {local}{suffix}", text
            tb = tb.tb_next


def assert_no_secret(exc: BaseException, secret: str = PASSWORD) -> None:
    """Fail, naming the place, if ``secret`` shows anywhere ``exc`` leads."""
    # The repr of bytes or of escaped text shows an ASCII secret unchanged.
    leaks = [where for where, text in _recorded_texts(exc) if secret in text]
    assert not leaks, f"the password shows in: {leaks}"


def _failure(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    pytest.fail("the call did not fail")


def test_the_search_finds_a_password_in_a_frame_local() -> None:
    # The helper itself must be able to fail, or every test below proves
    # nothing.  The leaky function is compiled under another file name, as
    # this file's own frames are not searched.
    namespace: dict[str, Any] = {}
    exec(
        compile("def leaky(password):\n    raise ValueError('bad')\n", "<leaky>", "exec"), namespace
    )
    exc = _failure(lambda: namespace["leaky"](PASSWORD))
    with pytest.raises(AssertionError, match=r"leaky\(\) local password"):
        assert_no_secret(exc)
    chained = _failure(lambda: _raise_from(exc))
    with pytest.raises(AssertionError):
        assert_no_secret(chained)


def _raise_from(cause: BaseException) -> None:
    raise RuntimeError("outer") from cause


# --------------------------------------------------------------------------
# Validation errors raised while the password is a parameter.
# --------------------------------------------------------------------------

LONG = PASSWORD * 20  # over RFC 1929's 255 bytes

VALIDATION_CASES: dict[str, Callable[[], object]] = {
    "Proxy-bad-port": lambda: Proxy("h", 70000, username=USER, password=PASSWORD),
    "Proxy-port-type": lambda: Proxy("h", "1080", username=USER, password=PASSWORD),  # type: ignore[arg-type]
    "Proxy-empty-host": lambda: Proxy("", username=USER, password=PASSWORD),
    "Proxy-long-username": lambda: Proxy("h", username="u" * 256, password=PASSWORD),
    "Proxy-long-password": lambda: Proxy("h", username=USER, password=LONG),
    "Proxy-password-without-username": lambda: Proxy("h", password=PASSWORD),
    "Proxy-password-with-empty-username": lambda: Proxy("h", username="", password=PASSWORD),
    "Proxy-username-type": lambda: Proxy("h", username=7, password=PASSWORD),  # type: ignore[arg-type]
    "Proxy-password-lone-surrogate": lambda: Proxy(
        "h", username=USER, password=PASSWORD + "\ud800"
    ),
    "from_url-bad-port": lambda: Proxy.from_url(f"socks5h://{USER}:{PASSWORD}@h:99999"),
    "from_url-port-not-a-number": lambda: Proxy.from_url(f"socks5h://{USER}:{PASSWORD}@h:x"),
    "from_url-port-0": lambda: Proxy.from_url(f"socks5h://{USER}:{PASSWORD}@h:0"),
    "from_url-path": lambda: Proxy.from_url(f"socks5h://{USER}:{PASSWORD}@h/path"),
    "from_url-scheme": lambda: Proxy.from_url(f"http://{USER}:{PASSWORD}@h"),
    "from_url-userinfo-before-scheme": lambda: Proxy.from_url(f"{USER}:{PASSWORD}@h://x"),
    "from_url-no-host": lambda: Proxy.from_url(f"socks5h://{USER}:{PASSWORD}@:1080"),
    "from_url-bad-brackets": lambda: Proxy.from_url(f"socks5h://{USER}:{PASSWORD}@[::1"),
    "from_url-long-password": lambda: Proxy.from_url(f"socks5h://{USER}:{LONG}@h"),
    "from_url-empty-username": lambda: Proxy.from_url(f"socks5h://:{PASSWORD}@h"),
    "proxy_from_args-bad-port": lambda: proxy_from_args(SOCKS5, "h", 70000, True, USER, PASSWORD),
    "proxy_from_args-socks4": lambda: proxy_from_args(
        socks5client.SOCKS4, "h", 1080, True, USER, PASSWORD
    ),
    "proxy_from_args-no-type": lambda: proxy_from_args(None, "h", None, True, USER, PASSWORD),
    "proxy_from_args-no-address": lambda: proxy_from_args(SOCKS5, None, None, True, USER, PASSWORD),
    "proxy_from_args-proxy-and-args": lambda: proxy_from_args(
        Proxy("h"), None, None, True, USER, PASSWORD
    ),
    "proxy_from_args-url": lambda: proxy_from_args(f"socks5h://{USER}:{PASSWORD}@h:0"),
    "set_default_proxy-bad-port": lambda: socks5client.set_default_proxy(
        SOCKS5, "h", 70000, True, USER, PASSWORD
    ),
    "set_default_proxy-url": lambda: socks5client.set_default_proxy(
        f"socks5h://{USER}:{PASSWORD}@h/p"
    ),
    "methods_for-long-password": lambda: methods_for(USER, LONG),
}


@pytest.mark.parametrize("call", VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
def test_validation_errors_keep_the_password_out(call: Callable[[], object]) -> None:
    exc = _failure(call)
    assert type(exc) in (ValueError, TypeError)
    assert_no_secret(exc)
    assert socks5client.get_default_proxy() is None


def _set_proxy(*args: Any) -> None:
    with socks5client.socksocket() as sock:
        sock.set_proxy(*args)


SOCK_CASES: dict[str, Callable[[], object]] = {
    "set_proxy-bad-port": lambda: _set_proxy(SOCKS5, "h", 70000, True, USER, PASSWORD),
    "set_proxy-long-password": lambda: _set_proxy(SOCKS5, "h", 1080, True, USER, LONG),
    "set_proxy-url-bad-port": lambda: _set_proxy(f"socks5h://{USER}:{PASSWORD}@h:99999"),
    "create_connection-bad-port": lambda: socks5client.create_connection(
        TARGET,
        proxy_type=SOCKS5,
        proxy_addr="h",
        proxy_port=70000,
        proxy_username=USER,
        proxy_password=PASSWORD,
    ),
    "create_connection-empty-username": lambda: socks5client.create_connection(
        TARGET, 1, None, SOCKS5, "h", 1080, True, "", PASSWORD
    ),
    "create_connection-url": lambda: socks5client.create_connection(
        TARGET, proxy=f"socks5h://{USER}:{PASSWORD}@h/path"
    ),
}


@pytest.mark.parametrize("call", SOCK_CASES.values(), ids=SOCK_CASES.keys())
def test_socket_level_validation_errors_keep_the_password_out(
    call: Callable[[], object],
) -> None:
    exc = _failure(call)
    assert type(exc) in (ValueError, TypeError)
    assert_no_secret(exc)


async def _async_connect(url: str) -> None:
    import socks5client.asyncio as aio

    with socket.socket() as sock:
        await aio.connect(sock, TARGET, url)


def _async_call(name: str, url: str) -> Callable[[], object]:
    """A call of the asyncio API ``name`` with proxy ``url``, run on a fresh loop."""
    import socks5client.asyncio as aio

    calls: dict[str, Callable[[], Any]] = {
        "open_connection": lambda: aio.open_connection(*TARGET, proxy=url),
        "create_connection": lambda: aio.create_connection(asyncio.Protocol, *TARGET, proxy=url),
        "connect": lambda: _async_connect(url),
        "bind": lambda: aio.bind(url),
        "open_udp": lambda: aio.open_udp(url),
    }
    return lambda: asyncio.run(calls[name]())


ASYNC_CASES: dict[str, Callable[[], object]] = {
    f"{name}-{problem}": _async_call(name, url)
    for name in ("open_connection", "create_connection", "connect", "bind", "open_udp")
    for problem, url in [
        ("url-bad-port", f"socks5h://{USER}:{PASSWORD}@h:99999"),
        ("url-path", f"socks5h://{USER}:{PASSWORD}@h/path"),
    ]
}


@pytest.mark.parametrize("call", ASYNC_CASES.values(), ids=ASYNC_CASES.keys())
def test_asyncio_validation_errors_keep_the_password_out(call: Callable[[], object]) -> None:
    # The URL is the proxy argument of a coroutine: its frame, and that of
    # the helper that parses it, are in the traceback.
    exc = _failure(call)
    assert type(exc) is ValueError
    assert_no_secret(exc)


def test_validation_error_has_no_chained_context() -> None:
    exc = _failure(lambda: Proxy.from_url(f"socks5h://{USER}:{PASSWORD}@h:port"))
    assert exc.__cause__ is None
    assert exc.__context__ is None
    assert "port" in str(exc)


# The fullwidth number sign and the small commercial at become "#" and "@"
# under NFKC; urllib then refuses the netloc and quotes it whole.
@pytest.mark.parametrize("char", ["\uff03", "\ufe6b", "\uff1a", "\uff0f", "\uff1f"])
def test_password_that_nfkc_normalises_to_a_delimiter(char: str) -> None:
    password = f"{PASSWORD}{char}x"
    exc = _failure(lambda: Proxy.from_url(f"socks5h://{USER}:{password}@h:1080"))
    assert type(exc) is ValueError
    assert "NFKC" in str(exc)
    assert "percent-encode" in str(exc)
    assert exc.__context__ is None
    assert_no_secret(exc)


# --------------------------------------------------------------------------
# Failures during a handshake with credentials.
# --------------------------------------------------------------------------


def _stall_after_credentials(conn: socket.socket, server: SocksServer) -> None:
    """Choose username/password, read the credentials, never answer."""
    record = server.record_for(conn)
    read_greeting(conn, record)
    conn.sendall(b"\x05\x02")
    read_userpass(conn, record)
    server.wait()


def _connect(address: tuple[str, int], user: str, password: str, target: Any) -> None:
    with socks5client.socksocket() as sock:
        sock.set_proxy(SOCKS5, address[0], address[1], True, user, password)
        sock.settimeout(STALL_TIMEOUT)
        sock.connect(target)


def test_timeout_while_proxy_ignores_the_credentials(scripted_server: ScriptedServer) -> None:
    server = scripted_server(_stall_after_credentials)
    exc = _failure(lambda: _connect(server.address, USER, PASSWORD, TARGET))
    assert isinstance(exc, errors.ProxyTimeoutError)
    assert "username/password reply" in str(exc)
    assert server.records[0].password == PASSWORD  # it was sent, so it was held
    assert_no_secret(exc)


def test_timeout_via_create_connection_with_a_url(scripted_server: ScriptedServer) -> None:
    server = scripted_server(_stall_after_credentials)
    host, port = server.address
    url = f"socks5h://{USER}:{PASSWORD}@{host}:{port}"
    exc = _failure(lambda: socks5client.create_connection(TARGET, STALL_TIMEOUT, proxy=url))
    assert isinstance(exc, errors.ProxyTimeoutError)
    assert_no_secret(exc)


def test_timeout_via_create_connection_with_pysocks_arguments(
    scripted_server: ScriptedServer,
) -> None:
    server = scripted_server(_stall_after_credentials)
    host, port = server.address
    exc = _failure(
        lambda: socks5client.create_connection(
            TARGET, STALL_TIMEOUT, None, SOCKS5, host, port, True, USER, PASSWORD
        )
    )
    assert isinstance(exc, errors.ProxyTimeoutError)
    assert_no_secret(exc)


def test_deadline_passed_before_sending_the_credentials(auth_server: SocksServer) -> None:
    # The request is sent from SocketChannel.send; when the deadline is
    # already over there, the timeout is raised from that frame.  A budget
    # of 0 s makes that happen on the first send, deterministically.
    proxy = Proxy(*auth_server.address, username=USER, password=PASSWORD)
    with socket.create_connection(auth_server.address, timeout=5) as sock:
        channel = SocketChannel(sock, proxy, Budget(0.0))
        method = UsernamePasswordAuth(USER, PASSWORD)
        exc = _failure(lambda: channel.run(method.negotiate()))
    assert isinstance(exc, errors.ProxyTimeoutError)
    assert any(tb.tb_frame.f_code.co_name == "send" for tb in _tracebacks(exc))
    assert_no_secret(exc)


def _tracebacks(exc: BaseException) -> Iterator[Any]:
    tb = exc.__traceback__
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_wrong_password(auth_server: SocksServer) -> None:
    exc = _failure(lambda: _connect(auth_server.address, USER, PASSWORD, TARGET))
    assert isinstance(exc, errors.SOCKS5AuthError)
    assert_no_secret(exc)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_failure_reply_after_authentication(scripted_server: ScriptedServer) -> None:
    server = scripted_server(None, users={USER: PASSWORD})
    target = ("127.0.0.1", _closed_port())
    exc = _failure(lambda: _connect(server.address, USER, PASSWORD, target))
    assert isinstance(exc, errors.SOCKS5ConnectionRefusedError)
    assert server.records[0].password == PASSWORD  # authenticated first
    assert_no_secret(exc)


def test_debug_log_of_failing_authenticated_handshakes(
    caplog: pytest.LogCaptureFixture, scripted_server: ScriptedServer, auth_server: SocksServer
) -> None:
    refusing = scripted_server(None, users={USER: PASSWORD})
    with caplog.at_level(logging.DEBUG, logger="socks5client"):
        _failure(lambda: _connect(auth_server.address, USER, PASSWORD, TARGET))
        _failure(lambda: _connect(refusing.address, USER, PASSWORD, ("127.0.0.1", _closed_port())))
    records = [r for r in caplog.records if r.name.startswith("socks5client")]
    assert any("failed" in r.getMessage() for r in records)
    for record in records:
        assert PASSWORD not in record.getMessage()
        assert PASSWORD not in repr(record.args)
        if record.exc_info is not None and record.exc_info[1] is not None:
            assert_no_secret(record.exc_info[1])


# --------------------------------------------------------------------------
# The masking wrapper and the objects that hold credentials.
# --------------------------------------------------------------------------


def test_objects_holding_credentials_mask_them_one_level_down() -> None:
    proxy = Proxy("h", username=USER, password=PASSWORD)
    method = UsernamePasswordAuth(USER, PASSWORD)
    for obj in (proxy, method, Secret(PASSWORD.encode())):
        for where, text in _expand(obj):
            assert PASSWORD not in text, where
    # The public attribute still gives the password to code that asks.
    assert proxy.password == PASSWORD


def test_secret_reveals_only_on_request() -> None:
    secret = Secret(PASSWORD)
    assert secret.reveal() == PASSWORD
    assert PASSWORD not in repr(secret)
    assert PASSWORD not in str(secret)
    assert PASSWORD not in f"{secret}"


# --------------------------------------------------------------------------
# patch() and proxy URLs with credentials that do not encode.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["patch", "patched"])
def test_patch_refusing_a_url_keeps_its_password_out(call: str) -> None:
    url = f"socks5h://{USER}:{PASSWORD}@127.0.0.1:99999"
    try:
        if call == "patch":
            exc = _failure(lambda: socks5client.patch(url))
        else:
            exc = _failure(lambda: socks5client.patched(url).__enter__())
    finally:
        socks5client.unpatch()
    assert isinstance(exc, ValueError)
    assert_no_secret(exc)


def test_a_url_password_with_a_byte_that_is_not_utf8_is_those_bytes() -> None:
    # What argv or the environment give for the bytes of such a password
    # (surrogateescape): the byte itself, as the proxy expects.
    secret = PASSWORD.encode() + b"\xff"
    proxy = socks5client.Proxy.from_url(f"socks5h://{USER}:{os.fsdecode(secret)}@127.0.0.1:1")
    assert proxy.password == secret


def test_a_url_password_that_cannot_be_encoded_stays_out_of_the_error() -> None:
    url = f"socks5h://{USER}:{PASSWORD}\ud800@127.0.0.1:1"
    for call in (
        lambda: socks5client.Proxy.from_url(url),
        lambda: socks5client.socksocket().set_proxy(url),
        lambda: socks5client.create_connection(("127.0.0.1", 9), proxy=url, timeout=1),
    ):
        exc = _failure(call)
        assert type(exc) is ValueError, exc
        assert_no_secret(exc)


# --------------------------------------------------------------------------
# GSS-API: our Kerberos token and the security context.
# --------------------------------------------------------------------------
# Our first context token is a Kerberos AP-REQ, a credential the proxy (or
# anyone who records it) could replay while its authenticator is fresh, and
# the security context wraps and unwraps as us: neither may stay reachable
# from a failure's traceback.


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from interop.kerberos import applied_realm

    yield from applied_realm(tmp_path_factory.mktemp("krb5"))


def _aborting_gssapi_proxy(stage: str, tokens: list[bytes]) -> tuple[socket.socket, Any]:
    """A proxy that records our context tokens, then aborts (01 ff) at ``stage``.

    ``"context"``: instead of answering our first token; ``"protection"``:
    instead of answering the protection level, the context complete.
    """
    import gssapi

    from server import encode_gss_frame, read_gss_frame

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(3)
            conn.sendall(b"\x05\x01")
            context = gssapi.SecurityContext(
                creds=gssapi.Credentials(usage="accept"), usage="accept"
            )
            token = read_gss_frame(conn)[1]
            tokens.append(token)
            if stage == "protection":
                conn.sendall(encode_gss_frame(1, context.step(token) or b""))
                read_gss_frame(conn)
            conn.sendall(b"\x01\xff")
            conn.recv(1)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def _gss_leaks(exc: BaseException, token: bytes | None = None) -> list[str]:
    """Where a socks5client frame of ``exc``'s tracebacks (chain included) holds
    ``token`` or a security context, directly, one attribute down, in a tuple
    or list (a conversation's step, a handshake's protection and bytes), or in
    a suspended conversation."""
    import gssapi

    def holds(value: object, depth: int = 0) -> bool:
        if isinstance(value, gssapi.SecurityContext):
            return True
        if isinstance(value, Secret):
            return False  # the wrapper whose job is to mask it (see _expand)
        if isinstance(value, types.GeneratorType):
            # A conversation left suspended: its frame, and those of the
            # conversations it delegates to, live as long as the traceback.
            while value is not None and value.gi_frame is not None:
                if any(holds(local, 2) for local in value.gi_frame.f_locals.values()):
                    return True
                value = value.gi_yieldfrom
            return False
        if isinstance(value, (bytes, bytearray, memoryview)):
            return token is not None and token in bytes(value)
        if depth < 2 and isinstance(value, (tuple, list)):
            return any(holds(item, depth + 1) for item in value)
        if token is not None and token.hex() in repr(value).replace("\\x", ""):
            return True
        return depth < 2 and any(holds(attr, 2) for _, attr in _attributes(value))

    leaks = []
    for err in _exception_chain(exc):
        for tb in _tracebacks(err):
            frame = tb.tb_frame
            if f"{os.sep}socks5client{os.sep}" not in frame.f_code.co_filename:
                continue
            for local, value in dict(frame.f_locals).items():
                if holds(value):
                    leaks.append(f"{frame.f_code.co_name}() local {local}")
    return leaks


@pytest.mark.interop
@pytest.mark.parametrize("stage", ["context", "protection"])
def test_gssapi_abort_keeps_no_token_and_no_context(realm: Any, stage: str) -> None:
    tokens: list[bytes] = []
    listener, thread = _aborting_gssapi_proxy(stage, tokens)
    with listener:
        proxy = Proxy("localhost", listener.getsockname()[1], gssapi=True)
        exc = _failure(lambda: socks5client.create_connection(TARGET, timeout=10, proxy=proxy))
        thread.join(10)
    assert isinstance(exc, errors.GSSAPIAbortError)
    assert tokens and len(tokens[0]) > 100  # the AP-REQ did go out
    assert _gss_leaks(exc, tokens[0]) == []


def test_the_gssapi_search_finds_a_token_in_a_step_and_a_context_in_a_protection() -> None:
    # As test_the_search_finds_a_password_in_a_frame_local: _gss_leaks must
    # be able to fail.  Only socks5client frames are searched, so the leaky
    # function is compiled under such a file name.
    gssapi = pytest.importorskip("gssapi")
    from socks5client.auth.gssapi import MessageProtection

    class Unestablished:  # all MessageProtection asks of a context when made
        def get_wrap_size_limit(self, size: int, encrypt: bool) -> int:
            return size

    protection = MessageProtection(Unestablished(), 2)
    # A context object that has not talked to any KDC yet will do.
    name = gssapi.Name("rcmd@localhost", gssapi.NameType.hostbased_service)
    protection._context = gssapi.SecurityContext(name=name, usage="initiate")
    token = bytes(range(256))
    namespace: dict[str, Any] = {}
    source = "def leaky(step, protected):\n    raise OSError('lost')\n"
    exec(compile(source, os.path.join(os.sep, "socks5client", "leaky.py"), "exec"), namespace)
    exc = _failure(lambda: namespace["leaky"]((0, b"\x01\x01" + token), (protection, b"")))
    assert _gss_leaks(exc, token) == ["leaky() local step", "leaky() local protected"]


def _resetting_gssapi_proxy(reset: threading.Event) -> socket.socket:
    """A proxy that chooses GSS-API, then resets the connection; ``reset`` is set after."""
    import struct

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(3)
            conn.sendall(b"\x05\x01")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.set()

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.fixture
def first_token_held_back(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``(tokens, hold)``: our context tokens as gssapi makes them; the first
    reaches the client only once the event ``hold`` is set."""
    import gssapi

    tokens: list[bytes] = []
    hold = threading.Event()
    step = gssapi.SecurityContext.step

    def recording_step(self: Any, token: bytes | None = None) -> Any:
        out = step(self, token)
        if out:
            tokens.append(out)
        if len(tokens) == 1:
            hold.wait(10)
            time.sleep(0.05)  # the reset's way through the loopback
        return out

    monkeypatch.setattr(gssapi.SecurityContext, "step", recording_step)
    yield tokens, hold


def _blocking_bind(proxy: Proxy) -> None:
    with socks5client.socksocket() as sock:
        sock.set_proxy(proxy)
        sock.settimeout(10)
        sock.bind(("0.0.0.0", 0))
        sock.listen()


def _blocking_udp(proxy: Proxy) -> None:
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.set_proxy(proxy)
        sock.settimeout(10)
        sock.sendto(b"x", ("192.0.2.1", 9))


def _on_a_loop(name: str) -> Callable[[Proxy], object]:
    """The asyncio API ``name``, through a proxy, run on a fresh loop."""
    import socks5client.asyncio as aio

    calls: dict[str, Callable[[Proxy], Any]] = {
        "open_connection": lambda proxy: aio.open_connection(
            "192.0.2.1", 80, proxy=proxy, timeout=10
        ),
        "bind": lambda proxy: aio.bind(proxy, timeout=10),
        "open_udp": lambda proxy: aio.open_udp(proxy, timeout=10),
    }
    return lambda proxy: asyncio.run(calls[name](proxy))


#: Each driver and command whose handshake writes our AP-REQ.
TOKEN_WRITERS: dict[str, Callable[[Proxy], object]] = {
    "connect": lambda proxy: socks5client.create_connection(("192.0.2.1", 80), 10, proxy=proxy),
    "bind": _blocking_bind,
    "udp": _blocking_udp,
    **{f"asyncio-{name}": _on_a_loop(name) for name in ("open_connection", "bind", "open_udp")},
}


@pytest.mark.interop
@pytest.mark.parametrize("call", TOKEN_WRITERS.values(), ids=TOKEN_WRITERS.keys())
def test_a_failed_write_of_our_ap_req_keeps_no_token_and_no_context(
    realm: Any, first_token_held_back: Any, call: Callable[[Proxy], object]
) -> None:
    # The drivers' frames (the step they run, the data they write) are in
    # the traceback of a write that fails.  The proxy resets before our
    # first token is handed over, so it is that write that fails.
    tokens, hold = first_token_held_back
    with _resetting_gssapi_proxy(hold) as listener:
        proxy = Proxy("localhost", listener.getsockname()[1], gssapi=True)
        exc = _failure(lambda: call(proxy))
    assert isinstance(exc, errors.GeneralProxyError), exc
    assert "waiting for the proxy to accept our request" in str(exc)
    assert tokens and len(tokens[0]) > 100  # the AP-REQ was being written
    assert _gss_leaks(exc, tokens[0]) == []


@pytest.mark.interop
def test_asyncio_refusing_a_protected_tunnel_keeps_no_context(realm: Any) -> None:
    # The asyncio client refuses GSS-API levels 1 and 2 (EOPNOTSUPP) once
    # the handshake agreed on one: the error must not keep the protection.
    import errno

    import socks5client.asyncio as aio

    with SocksServer(gssapi=True) as server, socket.create_server(("127.0.0.1", 0)) as target:
        proxy = Proxy("localhost", server.port, gssapi=True)
        host, port = target.getsockname()[:2]
        exc = _failure(lambda: asyncio.run(aio.open_connection(host, port, proxy=proxy)))
    assert isinstance(exc, OSError), exc
    assert exc.errno == errno.EOPNOTSUPP, exc
    assert _gss_leaks(exc) == []
