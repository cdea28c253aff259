"""install_as_pysocks(): socks5client as the ``socks`` and ``sockshandler`` modules.

PySocks is installed in the test environment, so a test of the stand-in
could pass on PySocks by mistake.  The ``stand_in`` fixture hides it
(``sys.modules["socks"] = None`` makes ``import socks`` fail), drops any
``urllib3.contrib.socks`` imported with it, and installs the stand-in; the
tests then check that the modules in use are the stand-in and that the
connections are socks5client sockets.  Everything is put back after each
test: ``sys.modules``, ``urllib3.contrib.socks`` and requests' reference to
its ``SOCKSProxyManager``.
"""

from __future__ import annotations

import http.server
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, ClassVar
from urllib.parse import quote

import pytest

import socks5client
from socks5client import compat, errors

from conftest import AUTH_PASSWORD, AUTH_USER
from server import SocksServer

requests = pytest.importorskip("requests")
requests_adapters: Any = importlib.import_module("requests.adapters")
urllib3_contrib = importlib.import_module("urllib3.contrib")
urllib3_exceptions = importlib.import_module("urllib3.exceptions")

ScriptedServer = Callable[..., SocksServer]

METHOD_NO_AUTH = b"\x00"
METHODS_BOTH = b"\x00\x02"
ATYP_DOMAIN = 3
TIMEOUT = 5
REPO = Path(__file__).resolve().parent.parent

_MISSING: Any = object()
_NAMES = ("socks", "sockshandler", "urllib3.contrib.socks")
_PROXY_VARIABLES = ("all_proxy", "http_proxy", "https_proxy", "no_proxy", "socks_proxy")


# --------------------------------------------------------------------------
# Fixtures: an HTTP site, and the import state saved and put back.
# --------------------------------------------------------------------------


class _Site(http.server.BaseHTTPRequestHandler):
    # Keep-alive, so that a streamed response still holds its socket.
    protocol_version = "HTTP/1.1"
    body = b"served to the stand-in"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def site() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of an HTTP server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def import_state() -> Iterator[None]:
    """Whatever a test does to the modules involved is undone afterwards."""
    saved = {name: sys.modules.get(name, _MISSING) for name in _NAMES}
    saved_attr = urllib3_contrib.__dict__.get("socks", _MISSING)
    saved_manager = requests_adapters.SOCKSProxyManager
    urllib3_socks = saved["urllib3.contrib.socks"]
    saved_binding = urllib3_socks.__dict__.get("socks") if urllib3_socks is not _MISSING else None
    try:
        yield
    finally:
        compat.uninstall_as_pysocks()
        socks5client.set_default_proxy()
        for name, module in saved.items():
            if module is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if saved_attr is _MISSING:
            urllib3_contrib.__dict__.pop("socks", None)
        else:
            urllib3_contrib.__dict__["socks"] = saved_attr
        if urllib3_socks is not _MISSING:
            urllib3_socks.socks = saved_binding
        requests_adapters.SOCKSProxyManager = saved_manager


def _shim() -> ModuleType:
    shim: ModuleType = compat._SOCKS
    return shim


def _hide_pysocks() -> None:
    for name in ("socks", "sockshandler"):
        sys.modules[name] = None  # type: ignore[assignment]  # import fails
    sys.modules.pop("urllib3.contrib.socks", None)
    urllib3_contrib.__dict__.pop("socks", None)


@pytest.fixture
def stand_in(import_state: None) -> ModuleType:
    """PySocks hidden and the stand-in installed: the ``socks`` module everyone imports."""
    _hide_pysocks()
    with pytest.raises(ImportError):
        importlib.import_module("socks")
    shim = compat.install_as_pysocks()
    assert sys.modules["socks"] is shim
    assert shim.__name__ == "socks"
    urllib3_socks = sys.modules["urllib3.contrib.socks"]
    assert urllib3_socks.socks is shim
    assert requests_adapters.SOCKSProxyManager is urllib3_socks.SOCKSProxyManager
    return shim  # type: ignore[no-any-return]


@pytest.fixture
def pysocks(import_state: None) -> ModuleType:
    """The real PySocks module (the test is skipped without it)."""
    if not isinstance(sys.modules.get("socks"), ModuleType) or sys.modules["socks"] is _shim():
        sys.modules.pop("socks", None)
    module = pytest.importorskip("socks")
    assert module is not _shim()
    assert hasattr(module, "socksocket")
    return module  # type: ignore[no-any-return]


#: A loopback address of its own, so that a proxy can listen on PySocks'
#: default port 1080 without clashing with one on 127.0.0.1.
DEFAULT_PORT_HOST = "127.0.0.3"


@pytest.fixture
def server_on_1080() -> Iterator[SocksServer]:
    """A no-auth SOCKS5 server on 127.0.0.3:1080 (skipped if that port is taken)."""
    server = SocksServer(DEFAULT_PORT_HOST, 1080)
    try:
        server.start()
    except OSError as exc:
        server.stop()
        pytest.skip(f"cannot listen on {DEFAULT_PORT_HOST}:1080: {exc}")
    try:
        yield server
    finally:
        server.stop()


def _resolving(name: str, address: str, asked: list[tuple[Any, Any]]) -> Callable[..., Any]:
    """A getaddrinfo that answers ``name`` with ``address`` and records the query."""
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            asked.append((host, port))
            host = address
        return real(host, port, *args, **kwargs)

    return fake


@pytest.fixture
def session() -> Iterator[Any]:
    """A requests session that takes no proxy from the environment."""
    with requests.Session() as s:
        s.trust_env = False
        yield s


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables in the environment (either case)."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    return monkeypatch


def _get(session: Any, site: tuple[str, int], proxy: str, host: str | None = None) -> Any:
    """GET the site through ``proxy``; check the body and that socks5client carried it."""
    url = f"http://{host or site[0]}:{site[1]}/"
    response = session.get(url, proxies={"http": proxy}, timeout=TIMEOUT, stream=True)
    with response:
        assert isinstance(response.raw.connection.sock, socks5client.socksocket)
        assert response.status_code == 200
        assert response.content == _Site.body
    return response


def _proxy_url(server: SocksServer, userinfo: str = "") -> str:
    host, port = server.address
    return f"socks5h://{userinfo}{host}:{port}"


# --------------------------------------------------------------------------
# The modules.
# --------------------------------------------------------------------------


def test_pysocks_is_hidden_until_the_stand_in_is_installed(import_state: None) -> None:
    _hide_pysocks()
    with pytest.raises(ImportError):
        importlib.import_module("socks")
    with pytest.raises(ImportError), pytest.warns(urllib3_exceptions.DependencyWarning):
        importlib.import_module("urllib3.contrib.socks")
    shim = compat.install_as_pysocks()
    assert importlib.import_module("socks") is shim
    assert importlib.import_module("urllib3.contrib.socks").socks is shim


def test_socks_is_a_thin_module_over_socks5client(stand_in: ModuleType) -> None:
    assert importlib.import_module("socks") is stand_in
    assert stand_in is not socks5client
    spec = importlib.util.find_spec("socks")
    assert spec is not None and spec.name == "socks"
    assert "socks5client" in repr(stand_in)
    # socks5client's own objects wherever PySocks behaves the same.
    # Its socksocket is socks5client's with PySocks' default_proxy attribute.
    assert issubclass(stand_in.socksocket, socks5client.socksocket)
    assert stand_in.get_default_proxy is socks5client.get_default_proxy
    for name in (
        "ProxyError",
        "GeneralProxyError",
        "ProxyConnectionError",
        "SOCKS5AuthError",
        "SOCKS5Error",
        "SOCKS4Error",
        "HTTPError",
    ):
        assert getattr(stand_in, name) is getattr(errors, name)
    # PySocks' socks.socket is the socket module.
    assert stand_in.socket is socket


PYSOCKS_NAMES = [
    "PROXY_TYPE_SOCKS4",
    "PROXY_TYPE_SOCKS5",
    "PROXY_TYPE_HTTP",
    "SOCKS4",
    "SOCKS5",
    "HTTP",
    "PROXY_TYPES",
    "PRINTABLE_PROXY_TYPES",
    "socksocket",
    "create_connection",
    "set_default_proxy",
    "setdefaultproxy",
    "get_default_proxy",
    "getdefaultproxy",
    "wrap_module",
    "wrapmodule",
    "ProxyError",
    "GeneralProxyError",
    "ProxyConnectionError",
    "SOCKS5AuthError",
    "SOCKS5Error",
    "SOCKS4Error",
    "HTTPError",
    "socket",
    "__version__",
]


def test_socks_has_the_names_pysocks_users_touch(pysocks: ModuleType) -> None:
    shim = compat.install_as_pysocks()
    for name in PYSOCKS_NAMES:
        assert hasattr(pysocks, name), name  # the list is PySocks' own
        assert hasattr(shim, name), name
    for name in PYSOCKS_NAMES[:8]:
        assert getattr(shim, name) == getattr(pysocks, name), name
    for name in PYSOCKS_NAMES[16:23]:
        assert issubclass(getattr(shim, name), OSError)
        assert issubclass(getattr(shim, name), shim.ProxyError)
    # Same shape: the attribute is the socket module itself.
    assert shim.socket is pysocks.socket


def test_unknown_names_say_who_is_answering(stand_in: ModuleType) -> None:
    with pytest.raises(AttributeError, match="socks5client standing in for PySocks"):
        stand_in.SOCKS6  # noqa: B018
    with pytest.raises(ImportError):
        exec("from socks import no_such_name", {})
    handler_module = sys.modules["sockshandler"]
    with pytest.raises(AttributeError, match="'sockshandler'"):
        handler_module.SocksiPyConnection  # noqa: B018


def test_install_is_idempotent_and_uninstall_puts_pysocks_back(pysocks: ModuleType) -> None:
    sys.modules.pop("urllib3.contrib.socks", None)
    before = importlib.import_module("urllib3.contrib.socks")
    assert before.socks is pysocks
    first = compat.install_as_pysocks()
    second = compat.install_as_pysocks()
    assert first is second is sys.modules["socks"]
    assert sys.modules["sockshandler"].socks is first
    assert before.socks is first  # the imported urllib3 now calls the stand-in
    compat.uninstall_as_pysocks()
    assert sys.modules["socks"] is pysocks
    assert "sockshandler" not in sys.modules or sys.modules["sockshandler"].socks is pysocks
    assert before.socks is pysocks
    compat.uninstall_as_pysocks()  # not installed: nothing to do
    assert sys.modules["socks"] is pysocks


def test_uninstall_removes_what_was_not_there(import_state: None) -> None:
    for name in ("socks", "sockshandler"):
        sys.modules.pop(name, None)
    compat.install_as_pysocks()
    compat.uninstall_as_pysocks()
    assert "socks" not in sys.modules
    assert "sockshandler" not in sys.modules


def test_uninstall_switches_urllib3_imported_meanwhile_to_pysocks(pysocks: ModuleType) -> None:
    sys.modules.pop("urllib3.contrib.socks", None)
    shim = compat.install_as_pysocks()
    fresh = importlib.import_module("urllib3.contrib.socks")
    assert fresh.socks is shim
    compat.uninstall_as_pysocks()
    assert fresh.socks is pysocks


def test_uninstall_leaves_another_socks_module_alone(import_state: None) -> None:
    _hide_pysocks()
    compat.install_as_pysocks()
    other = ModuleType("socks")
    sys.modules["socks"] = other
    compat.uninstall_as_pysocks()
    assert sys.modules["socks"] is other


# --------------------------------------------------------------------------
# requests, through urllib3.contrib.socks.
# --------------------------------------------------------------------------


def test_requests_proxies_without_credentials(
    stand_in: ModuleType, session: Any, socks_server: SocksServer, site: tuple[str, int]
) -> None:
    _get(session, site, _proxy_url(socks_server), host="localhost")
    (record,) = socks_server.records
    assert record.methods == METHOD_NO_AUTH
    # socks5h: the name went to the proxy.
    assert (record.atyp, record.dst_addr, record.dst_port) == (ATYP_DOMAIN, "localhost", site[1])


def test_requests_socks5_scheme_resolves_locally(
    stand_in: ModuleType, session: Any, socks_server: SocksServer, site: tuple[str, int]
) -> None:
    host, port = socks_server.address
    _get(session, site, f"socks5://{host}:{port}", host="localhost")
    (record,) = socks_server.records
    assert record.atyp != ATYP_DOMAIN
    assert record.dst_addr in ("127.0.0.1", "::1")


def test_requests_proxies_with_credentials(
    stand_in: ModuleType, session: Any, auth_server: SocksServer, site: tuple[str, int]
) -> None:
    _get(session, site, _proxy_url(auth_server, f"{AUTH_USER}:{AUTH_PASSWORD}@"))
    (record,) = auth_server.records
    assert record.methods == METHODS_BOTH
    assert (record.username, record.password) == (AUTH_USER, AUTH_PASSWORD)


def test_requests_percent_encoded_credentials_are_decoded_once(
    stand_in: ModuleType,
    session: Any,
    scripted_server: ScriptedServer,
    site: tuple[str, int],
) -> None:
    # "%41" must arrive as the three characters, not as "A".
    user, password = "b@b:x", "p%41ss/w:rd@é"
    server = scripted_server(None, users={user: password})
    userinfo = "{}:{}@".format(quote(user, safe=""), quote(password, safe=""))
    _get(session, site, _proxy_url(server, userinfo))
    (record,) = server.records
    assert (record.username, record.password) == (user, password)


@pytest.mark.parametrize("with_credentials", [False, True], ids=["no-auth", "auth"])
def test_requests_with_all_proxy(
    stand_in: ModuleType,
    clean_environment: pytest.MonkeyPatch,
    socks_server: SocksServer,
    auth_server: SocksServer,
    site: tuple[str, int],
    with_credentials: bool,
) -> None:
    server = auth_server if with_credentials else socks_server
    userinfo = f"{AUTH_USER}:{AUTH_PASSWORD}@" if with_credentials else ""
    clean_environment.setenv("ALL_PROXY", _proxy_url(server, userinfo))
    response = requests.get("http://{}:{}/".format(*site), timeout=TIMEOUT, stream=True)
    with response:
        assert isinstance(response.raw.connection.sock, socks5client.socksocket)
        assert response.content == _Site.body
    (record,) = server.records
    assert (record.dst_addr, record.dst_port) == site
    expected = (AUTH_USER, AUTH_PASSWORD) if with_credentials else (None, None)
    assert (record.username, record.password) == expected


class _RedirectingSite(http.server.BaseHTTPRequestHandler):
    """Redirects ``/a`` to ``/b`` once and records the headers of every request."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[Any]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers)
        if self.path == "/a":
            self.send_response(302)
            self.send_header("Location", "/b")
            self.send_header("Content-Length", "0")
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
        self.end_headers()
        if self.path != "/a":
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def redirecting_site() -> Iterator[tuple[str, int, list[Any]]]:
    """``(host, port, headers seen)`` of a site whose ``/a`` redirects to ``/b``."""
    handler = type("Handler", (_RedirectingSite,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1]), handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("source", ["proxies", "ALL_PROXY"])
def test_requests_redirect_does_not_send_proxy_credentials_to_the_site(
    stand_in: ModuleType,
    clean_environment: pytest.MonkeyPatch,
    auth_server: SocksServer,
    redirecting_site: tuple[str, int, list[Any]],
    source: str,
) -> None:
    # After a redirect requests adds Proxy-Authorization made from the proxy
    # URL's credentials; through SOCKS that header would go to the site.
    host, port, seen = redirecting_site
    proxy = _proxy_url(auth_server, f"{AUTH_USER}:{AUTH_PASSWORD}@")
    url = f"http://{host}:{port}/a"
    if source == "proxies":
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(url, proxies={"http": proxy}, timeout=TIMEOUT)
    else:
        clean_environment.setenv("ALL_PROXY", proxy)
        response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200
    assert [r.url for r in response.history] == [url]
    assert len(seen) == 2
    assert all(headers.get("Proxy-Authorization") is None for headers in seen)
    # The credentials went where they belong (one kept-alive connection).
    assert auth_server.records
    assert all(r.password == AUTH_PASSWORD for r in auth_server.records)


def test_requests_redirect_keeps_a_proxy_authorization_header_of_the_callers(
    stand_in: ModuleType,
    session: Any,
    auth_server: SocksServer,
    redirecting_site: tuple[str, int, list[Any]],
) -> None:
    # Only the value derived from the SOCKS credentials is dropped.
    host, port, seen = redirecting_site
    proxy = _proxy_url(auth_server, f"{AUTH_USER}:{AUTH_PASSWORD}@")
    response = session.get(
        f"http://{host}:{port}/b",
        proxies={"http": proxy},
        headers={"Proxy-Authorization": "Bearer for-the-site"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    (headers,) = seen
    assert headers.get("Proxy-Authorization") == "Bearer for-the-site"


def test_uninstall_gives_requests_urllib3s_manager_back(import_state: None) -> None:
    _hide_pysocks()
    compat.install_as_pysocks()
    guarded = sys.modules["urllib3.contrib.socks"].SOCKSProxyManager
    assert requests_adapters.SOCKSProxyManager is guarded
    compat.uninstall_as_pysocks()
    original = sys.modules["urllib3.contrib.socks"].SOCKSProxyManager
    assert original is not guarded
    assert issubclass(guarded, original)
    assert not getattr(requests_adapters.SOCKSProxyManager, "_socks5client_guarded", False)


def _connection_error(session: Any, site: tuple[str, int], proxy: str) -> Any:
    """The requests error for a GET through ``proxy``, checked to be urllib3's wrapping."""
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get("http://{}:{}/".format(*site), proxies={"http": proxy}, timeout=TIMEOUT)
    # A connection failure, not requests' ProxyError (that is for HTTP proxies).
    assert type(info.value) is requests.exceptions.ConnectionError
    reason = info.value.args[0].reason
    assert isinstance(reason, urllib3_exceptions.NewConnectionError)
    return info.value


def test_requests_wrong_password_says_socks5_authentication_failed(
    stand_in: ModuleType, session: Any, auth_server: SocksServer, site: tuple[str, int]
) -> None:
    password = "not-the-Pw-7c1"
    exc = _connection_error(session, site, _proxy_url(auth_server, f"{AUTH_USER}:{password}@"))
    assert "SOCKS5 authentication failed" in str(exc)
    assert password not in str(exc)
    assert isinstance(exc.args[0].reason.__cause__, errors.SOCKS5AuthError)


def test_requests_missing_credentials_say_socks5_authentication_failed(
    stand_in: ModuleType, session: Any, auth_server: SocksServer, site: tuple[str, int]
) -> None:
    exc = _connection_error(session, site, _proxy_url(auth_server))
    assert "SOCKS5 authentication failed" in str(exc)
    assert "none of the authentication methods" in str(exc)


def test_requests_silent_proxy_is_a_connect_timeout(
    stand_in: ModuleType,
    session: Any,
    scripted_server: ScriptedServer,
    site: tuple[str, int],
) -> None:
    def silent(conn: socket.socket, server: SocksServer) -> None:
        server.wait()  # reads nothing, answers nothing

    server = scripted_server(silent)
    with pytest.raises(requests.exceptions.ConnectTimeout) as info:
        session.get(
            f"http://{site[0]}:{site[1]}/", proxies={"http": _proxy_url(server)}, timeout=0.5
        )
    reason = info.value.args[0].reason
    assert isinstance(reason, urllib3_exceptions.ConnectTimeoutError)
    assert isinstance(reason.__cause__, errors.ProxyTimeoutError)


@pytest.mark.parametrize("scheme", ["socks4", "socks4a"])
def test_requests_socks4_url_is_a_clear_connection_error(
    stand_in: ModuleType,
    session: Any,
    socks_server: SocksServer,
    site: tuple[str, int],
    scheme: str,
) -> None:
    host, port = socks_server.address
    exc = _connection_error(session, site, f"{scheme}://{host}:{port}")
    cause = exc.args[0].reason.__cause__
    assert isinstance(cause, compat.ProxyConfigurationError)
    assert isinstance(cause, stand_in.GeneralProxyError)
    assert "SOCKS4 proxies are not supported" in str(exc)
    assert "socks5h://" in str(exc)
    assert socks_server.connections == 0


def test_monkeypatched_socks_socket_getaddrinfo_resolves_the_proxy(
    stand_in: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    session: Any,
    server_on_1080: SocksServer,
    site: tuple[str, int],
) -> None:
    asked: list[tuple[Any, Any]] = []
    fake = _resolving("socks-proxy.test", DEFAULT_PORT_HOST, asked)
    monkeypatch.setattr(stand_in.socket, "getaddrinfo", fake)
    # No port in the URL: urllib3 passes proxy_port=None, which is 1080.
    _get(session, site, "socks5h://socks-proxy.test")
    assert asked == [("socks-proxy.test", 1080)]
    assert server_on_1080.connections == 1


def test_urllib3_imported_with_pysocks_is_switched_by_a_late_install(
    pysocks: ModuleType, session: Any, socks_server: SocksServer, site: tuple[str, int]
) -> None:
    sys.modules.pop("urllib3.contrib.socks", None)
    urllib3_socks = importlib.import_module("urllib3.contrib.socks")
    requests_adapters.SOCKSProxyManager = urllib3_socks.SOCKSProxyManager
    assert urllib3_socks.socks is pysocks
    shim = compat.install_as_pysocks()
    assert urllib3_socks.socks is shim
    assert requests_adapters.SOCKSProxyManager is urllib3_socks.SOCKSProxyManager
    _get(session, site, _proxy_url(socks_server))
    compat.uninstall_as_pysocks()
    assert urllib3_socks.socks is pysocks


# --------------------------------------------------------------------------
# socks.create_connection and the default proxy, PySocks' way.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("proxy_type", ["PROXY_TYPE_SOCKS4", "PROXY_TYPE_HTTP"])
def test_create_connection_with_socks4_or_http_raises_a_proxy_error(
    stand_in: ModuleType,
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    proxy_type: str,
) -> None:
    host, port = socks_server.address
    with pytest.raises(stand_in.ProxyError) as info:
        stand_in.create_connection(
            echo_server,
            proxy_type=getattr(stand_in, proxy_type),
            proxy_addr=host,
            proxy_port=port,
            proxy_username=AUTH_USER,
            proxy_password="Pw-never-shown-9",
        )
    exc: Any = info.value
    assert type(exc) is compat.ProxyConfigurationError
    assert exc.socket_err is None  # urllib3 then reports the message itself
    assert isinstance(exc, stand_in.GeneralProxyError)
    assert isinstance(exc, OSError)
    assert isinstance(exc, ValueError)  # as socks5client refuses a setting
    assert not isinstance(exc, stand_in.SOCKS4Error)
    assert "not supported" in str(exc)
    assert exc.__context__ is None and exc.__cause__ is None
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # below this test
    while tb is not None:
        assert "Pw-never-shown-9" not in repr(tb.tb_frame.f_locals)
        tb = tb.tb_next
    assert socks_server.connections == 0


def test_create_connection_other_refusals_are_proxy_errors_too(stand_in: ModuleType) -> None:
    with pytest.raises(compat.ProxyConfigurationError, match="without a username"):
        stand_in.create_connection(
            ("127.0.0.1", 9), 1, None, stand_in.SOCKS5, "127.0.0.1", 1080, True, "", "pw"
        )


def test_default_proxy_refuses_socks4_the_same_way(stand_in: ModuleType) -> None:
    with pytest.raises(compat.ProxyConfigurationError, match="SOCKS4"):
        stand_in.set_default_proxy(stand_in.SOCKS4, "127.0.0.1")
    with pytest.raises(compat.ProxyConfigurationError, match="HTTP"):
        stand_in.setdefaultproxy(proxytype=stand_in.HTTP, addr="127.0.0.1")
    assert stand_in.get_default_proxy() is None


def test_create_connection_pysocks_defaults(
    stand_in: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    server_on_1080: SocksServer,
    echo_server_v6: tuple[str, int],
) -> None:
    asked: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        stand_in.socket, "getaddrinfo", _resolving("socks-proxy.test", DEFAULT_PORT_HOST, asked)
    )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(7.5)
    try:
        # timeout=None: the default timeout, as PySocks leaves it;
        # proxy_port=None: 1080.
        sock = stand_in.create_connection(
            ("[::1]", echo_server_v6[1]),
            None,
            proxy_type=stand_in.SOCKS5,
            proxy_addr="socks-proxy.test",
        )
    finally:
        socket.setdefaulttimeout(previous)
    with sock:
        assert isinstance(sock, socks5client.socksocket)
        assert sock.gettimeout() == 7.5
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
    assert asked == [("socks-proxy.test", 1080)]
    (record,) = server_on_1080.records
    assert (record.dst_addr, record.dst_port) == echo_server_v6  # brackets dropped


def test_create_connection_without_proxy_type_uses_the_default_proxy(
    stand_in: ModuleType, socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    host, port = socks_server.address
    stand_in.setdefaultproxy(proxytype=stand_in.SOCKS5, addr=host, port=port)
    default = stand_in.get_default_proxy()
    assert isinstance(default, socks5client.Proxy)
    assert default == socks5client.Proxy(host, port)
    # proxy_rdns without a proxy_type is ignored, as in PySocks: the default
    # proxy resolves names.
    with stand_in.create_connection(
        ("localhost", echo_server[1]), TIMEOUT, proxy_rdns=False
    ) as sock:
        sock.sendall(b"via default")
        assert sock.recv(11) == b"via default"
    (record,) = socks_server.records
    assert (record.atyp, record.dst_addr) == (ATYP_DOMAIN, "localhost")
    stand_in.set_default_proxy()
    with stand_in.create_connection(echo_server, TIMEOUT) as sock:
        sock.sendall(b"direct")
        assert sock.recv(6) == b"direct"
    assert socks_server.connections == 1


def test_wrap_module_without_default_proxy_is_a_general_proxy_error(
    stand_in: ModuleType,
) -> None:
    target = ModuleType("uses_socket")
    target.socket = socket  # type: ignore[attr-defined]
    with pytest.raises(stand_in.GeneralProxyError, match="no default proxy"):
        stand_in.wrap_module(target)
    assert not socks5client.is_patched()


# --------------------------------------------------------------------------
# sockshandler with urllib.request.
# --------------------------------------------------------------------------


def test_sockshandler_socksipyhandler_with_urllib(
    stand_in: ModuleType, auth_server: SocksServer, site: tuple[str, int]
) -> None:
    sockshandler = importlib.import_module("sockshandler")
    contrib = importlib.import_module("socks5client.contrib.urllib")
    assert sockshandler.SocksiPyHandler is contrib.SocksiPyHandler
    assert sockshandler.socks is stand_in
    host, port = auth_server.address
    handler = sockshandler.SocksiPyHandler(
        stand_in.PROXY_TYPE_SOCKS5, host, port, True, AUTH_USER, AUTH_PASSWORD
    )
    opener = urllib.request.build_opener(handler)
    with opener.open(f"http://localhost:{site[1]}/", timeout=TIMEOUT) as response:
        assert response.read() == _Site.body
    (record,) = auth_server.records
    assert (record.username, record.dst_addr) == (AUTH_USER, "localhost")


# --------------------------------------------------------------------------
# socks5client's own message keeps PySocks' words.
# --------------------------------------------------------------------------


def test_auth_error_messages_start_with_pysocks_words(auth_server: SocksServer) -> None:
    for username, password in ((AUTH_USER, "wrong"), (None, None)):
        with socks5client.socksocket() as sock:
            sock.set_proxy(socks5client.SOCKS5, *auth_server.address, True, username, password)
            sock.settimeout(TIMEOUT)
            with pytest.raises(errors.SOCKS5AuthError) as info:
                sock.connect(("127.0.0.1", 9))
        assert str(info.value).startswith("SOCKS5 authentication failed: ")
    again = errors.SOCKS5AuthError("SOCKS5 authentication failed: already said")
    assert str(again) == "SOCKS5 authentication failed: already said"


# --------------------------------------------------------------------------
# Import order, in fresh interpreters (this one has requests imported).
# --------------------------------------------------------------------------

_CHILD_PRELUDE = """
import json, sys
sys.modules["socks"] = None  # PySocks hidden
sys.modules["sockshandler"] = None
"""

_CHILD_REQUEST = """
import socks5client
response = requests.get(URL, proxies={"http": PROXY}, timeout=5, stream=True)
report["socket"] = isinstance(response.raw.connection.sock, socks5client.socksocket)
report["body"] = response.content.decode()
report["bound"] = sys.modules["urllib3.contrib.socks"].socks.__name__
report["stand_in"] = sys.modules["urllib3.contrib.socks"].socks is sys.modules["socks"]
print(json.dumps(report))
"""


def _run_child(code: str, proxy: str, url: str) -> dict[str, Any]:
    program = f"URL = {url!r}\nPROXY = {proxy!r}\n" + textwrap.dedent(code)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _CHILD_PRELUDE + program + _CHILD_REQUEST],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_install_before_importing_requests(
    socks_server: SocksServer, site: tuple[str, int]
) -> None:
    report = _run_child(
        """
        import socks5client.compat
        socks5client.compat.install_as_pysocks()
        import requests
        report = {}
        """,
        _proxy_url(socks_server),
        "http://{}:{}/".format(*site),
    )
    assert report == {
        "socket": True,
        "body": _Site.body.decode(),
        "bound": "socks",
        "stand_in": True,
    }
    assert socks_server.connections == 1


def test_install_after_importing_requests_without_pysocks(
    socks_server: SocksServer, site: tuple[str, int]
) -> None:
    # requests imports urllib3.contrib.socks with itself (not lazily); without
    # PySocks that import fails and requests keeps a placeholder that raises
    # InvalidSchema.  install_as_pysocks() then gives it urllib3's manager.
    report = _run_child(
        """
        import requests, requests.adapters
        report = {
            "eager": "urllib3.contrib.socks" in sys.modules,
            "placeholder": requests.adapters.SOCKSProxyManager.__module__,
        }
        try:
            requests.get(URL, proxies={"http": PROXY}, timeout=5)
        except requests.exceptions.InvalidSchema as exc:
            report["before"] = str(exc)
        import socks5client.compat
        socks5client.compat.install_as_pysocks()
        """,
        _proxy_url(socks_server),
        "http://{}:{}/".format(*site),
    )
    assert report.pop("eager") is False
    assert report.pop("placeholder") == "requests.adapters"
    assert "Missing dependencies for SOCKS support" in report.pop("before")
    assert report == {
        "socket": True,
        "body": _Site.body.decode(),
        "bound": "socks",
        "stand_in": True,
    }


def test_requests_imports_urllib3_socks_with_itself(pysocks: ModuleType) -> None:
    # With PySocks there, importing requests imports urllib3.contrib.socks,
    # which binds "socks" then: hence "install before importing requests".
    program = (
        "import sys, requests; "
        "print('urllib3.contrib.socks' in sys.modules, sys.modules['socks'].__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded, origin = result.stdout.split()
    assert loaded == "True"
    assert origin == pysocks.__file__
