"""socks5client standing in for PySocks: empty credentials, names, positional calls.

``requests`` and ``urllib3.contrib.socks`` are written against PySocks; with
``sys.modules["socks"]`` pointing at socks5client they must work unchanged,
which includes how they pass "no credentials" (``""``, not ``None``).
"""

from __future__ import annotations

import contextlib
import http.server
import importlib
import socket
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import socks5client
from socks5client import SOCKS5, Proxy, errors
from socks5client.auth import NoAuth, UsernamePasswordAuth, methods_for
from socks5client.proxy import proxy_from_args

from conftest import AUTH_PASSWORD, AUTH_USER
from server import SocksServer

METHOD_NO_AUTH = b"\x00"
METHODS_BOTH = b"\x00\x02"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------
# Empty credentials: the rule.
# --------------------------------------------------------------------------

BLANK = [None, "", b""]
BLANK_IDS = ["None", "empty-str", "empty-bytes"]


@pytest.mark.parametrize("username", BLANK, ids=BLANK_IDS)
@pytest.mark.parametrize("password", BLANK, ids=BLANK_IDS)
def test_empty_username_and_password_mean_no_authentication(
    username: str | bytes | None, password: str | bytes | None
) -> None:
    p = Proxy("h", username=username, password=password)
    assert (p.username, p.password) == (None, None)
    assert p == Proxy("h")
    assert "@" not in p.url
    assert proxy_from_args(SOCKS5, "h", 1080, True, username, password) == Proxy("h")


@pytest.mark.parametrize("username", BLANK, ids=BLANK_IDS)
def test_password_with_empty_username_is_refused(username: str | bytes | None) -> None:
    with pytest.raises(ValueError, match="without a username"):
        Proxy("h", username=username, password="pw")
    with pytest.raises(ValueError, match="without a username"):
        proxy_from_args(SOCKS5, "h", 1080, True, username, "pw")


@pytest.mark.parametrize("password", BLANK, ids=BLANK_IDS)
def test_username_with_empty_password_is_rfc1929(password: str | bytes | None) -> None:
    p = Proxy("h", username="alice", password=password)
    assert (p.username, p.password) == ("alice", password)
    # Both methods offered, so a proxy that needs no authentication works too.
    offered = methods_for(p.username, p.password)
    assert [type(m) for m in offered] == [NoAuth, UsernamePasswordAuth]


@pytest.mark.parametrize(
    ("url", "username", "password"),
    [
        ("socks5h://@h", None, None),
        ("socks5h://:@h", None, None),
        ("socks5h://alice@h", "alice", None),
        ("socks5h://alice:@h", "alice", ""),
    ],
)
def test_url_user_info(url: str, username: str | None, password: str | None) -> None:
    p = Proxy.from_url(url)
    assert (p.username, p.password) == (username, password)


def test_url_with_password_and_empty_username_is_refused() -> None:
    with pytest.raises(ValueError, match="without a username"):
        Proxy.from_url("socks5h://:pw@h")


def test_empty_credentials_are_not_separate_arguments_next_to_a_url() -> None:
    assert proxy_from_args("socks5h://h:1", None, None, True, "", "") == Proxy("h", 1)
    with pytest.raises(ValueError, match="not both"):
        proxy_from_args("socks5h://h:1", None, None, True, "", "pw")


def test_set_proxy_and_default_proxy_take_empty_credentials() -> None:
    with socks5client.socksocket() as sock:
        sock.set_proxy(SOCKS5, "h", 1081, True, "", "")
        assert sock.proxy == Proxy("h", 1081)
    try:
        socks5client.set_default_proxy(SOCKS5, "h", 1082, True, "", "")
        assert socks5client.get_default_proxy() == Proxy("h", 1082)
    finally:
        socks5client.set_default_proxy()


def test_create_connection_with_empty_credentials_offers_no_auth_only(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    host, port = socks_server.address
    with socks5client.create_connection(
        echo_server,
        timeout=5,
        proxy_type=SOCKS5,
        proxy_addr=host,
        proxy_port=port,
        proxy_username="",
        proxy_password="",
    ) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
    (record,) = socks_server.records
    assert record.methods == METHOD_NO_AUTH
    assert record.username is None


def test_blank_credentials_alone_keep_the_default_proxy(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    # Blank credentials are "not given": they must not turn create_connection
    # into a direct connection that skips the default proxy.
    socks5client.set_default_proxy(f"socks5h://127.0.0.1:{socks_server.port}")
    try:
        with socks5client.create_connection(
            echo_server, 5, None, proxy_username="", proxy_password=""
        ) as sock:
            assert isinstance(sock, socks5client.socksocket)
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
    finally:
        socks5client.set_default_proxy()
    assert socks_server.connections == 1


# --------------------------------------------------------------------------
# requests through urllib3.contrib.socks, with socks5client as "socks".
# --------------------------------------------------------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    body = b"hello through socks5client"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def http_server() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of an HTTP server on 127.0.0.1 answering every GET."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


_MISSING = object()


@contextlib.contextmanager
def _socks_is_socks5client() -> Iterator[ModuleType]:
    """A fresh ``urllib3.contrib.socks`` that imported socks5client as ``socks``.

    urllib3 binds ``socks`` when ``urllib3.contrib.socks`` is first imported,
    so that module is imported anew here and everything it changed
    (``sys.modules`` entries and the ``urllib3.contrib.socks`` attribute) is
    put back afterwards.
    """
    import urllib3.contrib

    names = ("socks", "urllib3.contrib.socks")
    saved = {name: sys.modules.get(name, _MISSING) for name in names}
    saved_attr = urllib3.contrib.__dict__.get("socks", _MISSING)
    sys.modules["socks"] = socks5client
    sys.modules.pop("urllib3.contrib.socks", None)
    try:
        fresh = importlib.import_module("urllib3.contrib.socks")
        assert fresh.socks is socks5client
        yield fresh
    finally:
        for name, module in saved.items():
            if module is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module  # type: ignore[assignment]
        if saved_attr is _MISSING:
            urllib3.contrib.__dict__.pop("socks", None)
        else:
            urllib3.contrib.socks = saved_attr  # type: ignore[attr-defined]


@pytest.fixture
def requests_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A ``requests.Session`` whose SOCKS support runs on socks5client."""
    requests = pytest.importorskip("requests")
    adapters = importlib.import_module("requests.adapters")
    with _socks_is_socks5client() as urllib3_socks:
        # requests took SOCKSProxyManager from urllib3 at its own import.
        monkeypatch.setattr(adapters, "SOCKSProxyManager", urllib3_socks.SOCKSProxyManager)
        with requests.Session() as session:
            session.trust_env = False  # no proxy settings from the environment
            yield session


def test_requests_through_a_proxy_url_without_credentials(
    requests_session: Any, socks_server: SocksServer, http_server: tuple[str, int]
) -> None:
    # requests passes proxy_username="" and proxy_password="" here.
    proxy = "socks5h://{}:{}".format(*socks_server.address)
    response = requests_session.get(
        "http://{}:{}/".format(*http_server), proxies={"http": proxy}, timeout=5
    )
    assert response.status_code == 200
    assert response.content == _Hello.body
    record = socks_server.records[0]
    assert record.methods == METHOD_NO_AUTH
    assert (record.dst_addr, record.dst_port) == http_server


def test_requests_through_a_proxy_url_with_credentials(
    requests_session: Any, auth_server: SocksServer, http_server: tuple[str, int]
) -> None:
    proxy = "socks5h://{}:{}@{}:{}".format(AUTH_USER, AUTH_PASSWORD, *auth_server.address)
    response = requests_session.get(
        "http://{}:{}/".format(*http_server), proxies={"http": proxy}, timeout=5
    )
    assert response.status_code == 200
    assert response.content == _Hello.body
    record = auth_server.records[0]
    assert record.methods == METHODS_BOTH
    assert (record.username, record.password) == (AUTH_USER, AUTH_PASSWORD)


def test_stand_in_is_undone_after_the_test() -> None:
    # Runs after the requests tests in file order: nothing of the patched
    # import is left behind for other tests.
    assert sys.modules.get("socks") is not socks5client
    module = sys.modules.get("urllib3.contrib.socks")
    assert module is None or module.socks is not socks5client


# --------------------------------------------------------------------------
# create_connection in PySocks' positional order.
# --------------------------------------------------------------------------


def test_create_connection_positional_without_auth(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    host, port = socks_server.address
    # dest_pair, timeout, source_address, proxy_type, proxy_addr, proxy_port,
    # proxy_rdns, proxy_username, proxy_password, socket_options
    sock = socks5client.create_connection(
        echo_server, 5, None, SOCKS5, host, port, True, None, None, None
    )
    with sock:
        sock.sendall(b"positional")
        assert sock.recv(10) == b"positional"
        assert sock.gettimeout() == 5
    (record,) = socks_server.records
    assert record.methods == METHOD_NO_AUTH


def test_create_connection_positional_with_auth_and_socket_options(
    auth_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    host, port = auth_server.address
    options: list[tuple[int, int, int | bytes]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    sock = socks5client.create_connection(
        echo_server,
        5,
        ("127.0.0.1", 0),
        socks5client.PROXY_TYPE_SOCKS5,
        host,
        port,
        False,
        AUTH_USER,
        AUTH_PASSWORD,
        options,
    )
    with sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        sock.sendall(b"with auth")
        assert sock.recv(9) == b"with auth"
    (record,) = auth_server.records
    assert (record.username, record.password) == (AUTH_USER, AUTH_PASSWORD)
    # proxy_rdns=False: the destination went as an address, not a name.
    assert record.dst_addr == echo_server[0]


# --------------------------------------------------------------------------
# PySocks' exception names.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SOCKS4Error", "HTTPError"])
def test_pysocks_only_error_names_exist_under_proxy_error(name: str) -> None:
    cls = getattr(socks5client, name)
    assert cls is getattr(errors, name)
    assert name in socks5client.__all__
    assert name in errors.__all__
    assert issubclass(cls, socks5client.ProxyError)
    assert issubclass(cls, OSError)
    # Disjoint from what socks5client raises for SOCKS5.
    for other in (socks5client.SOCKS5Error, socks5client.SOCKS5AuthError):
        assert not issubclass(cls, other)
        assert not issubclass(other, cls)
    assert cls.__doc__


def test_socks5_errors_pass_socks4_and_http_clauses(
    socks_server: SocksServer, auth_server: SocksServer
) -> None:
    host, port = socks_server.address
    caught = []
    # PySocks-era handlers list every proxy kind; a SOCKS5 failure must skip
    # the SOCKS4 and HTTP clauses and land in its own.
    try:
        socks5client.create_connection(("127.0.0.1", _closed_port()), 5, None, SOCKS5, host, port)
    except socks5client.SOCKS4Error:
        caught.append("SOCKS4Error")
    except socks5client.HTTPError:
        caught.append("HTTPError")
    except socks5client.SOCKS5Error as exc:
        caught.append("SOCKS5Error")
        assert exc.reply_code == 5
    host, port = auth_server.address
    try:
        socks5client.create_connection(
            ("127.0.0.1", 9), 5, None, SOCKS5, host, port, True, AUTH_USER, "wrong"
        )
    except socks5client.SOCKS4Error:
        caught.append("SOCKS4Error")
    except socks5client.HTTPError:
        caught.append("HTTPError")
    except socks5client.SOCKS5Error:
        caught.append("SOCKS5Error")
    except socks5client.SOCKS5AuthError:
        caught.append("SOCKS5AuthError")
    assert caught == ["SOCKS5Error", "SOCKS5AuthError"]
