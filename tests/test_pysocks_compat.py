"""socks5client standing in for PySocks: empty credentials, names, positional calls.

``requests`` and ``urllib3.contrib.socks`` are written against PySocks; with
``sys.modules["socks"]`` pointing at socks5client they must work unchanged,
which includes how they pass "no credentials" (``""``, not ``None``).
"""

from __future__ import annotations

import contextlib
import http.server
import importlib
import importlib.util
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
from server import EchoServer, SocksServer

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


# --------------------------------------------------------------------------
# PySocks' plain attributes: socksocket.default_proxy and sock.proxy.
# --------------------------------------------------------------------------


class _PeerServer(EchoServer):
    """Tells each client the address it connected from, as this server saw it."""

    def handle(self, conn: socket.socket, client_address: tuple[str, int]) -> None:
        conn.sendall(f"{client_address[0]} {client_address[1]}".encode())
        conn.shutdown(socket.SHUT_WR)


@pytest.fixture
def peer_server() -> Iterator[tuple[str, int]]:
    with _PeerServer("127.0.0.1") as server:
        yield server.address


@pytest.fixture
def stand_in() -> Iterator[ModuleType]:
    """``socks`` as ``install_as_pysocks()`` makes it; uninstalled, and no default, after."""
    from socks5client import compat

    try:
        yield compat.install_as_pysocks()
    finally:
        compat.uninstall_as_pysocks()
        socks5client.set_default_proxy()


def _went_through_proxy(sock: socket.socket, destination: tuple[str, int]) -> bool:
    """Connect ``sock`` to ``destination`` (a _PeerServer); whether it went through the proxy.

    The destination names the address the connection came from: ours when
    it came directly, the proxy's own outgoing connection otherwise.
    """
    sock.settimeout(5)
    sock.connect(destination)
    seen = b""
    while chunk := sock.recv(64):
        seen += chunk
    host, port = seen.decode().split()
    return (host, int(port)) != sock.getsockname()[:2]


def _pysocks_tuple(server: SocksServer, proxy_type: int = SOCKS5) -> tuple[Any, ...]:
    return (proxy_type, *server.address, True, None, None)


def test_class_default_proxy_tuple_sends_sockets_through_the_proxy(
    stand_in: ModuleType, socks_server: SocksServer, peer_server: tuple[str, int]
) -> None:
    # PySocks' set_default_proxy() only assigns this class attribute, and
    # code sets and restores it directly.
    stand_in.socksocket.default_proxy = _pysocks_tuple(socks_server)
    with stand_in.socksocket() as sock:
        assert _went_through_proxy(sock, peer_server)
    (record,) = socks_server.records
    assert (record.dst_addr, record.dst_port) == peer_server
    assert stand_in.socksocket.default_proxy == _pysocks_tuple(socks_server)
    assert stand_in.get_default_proxy() == Proxy(*socks_server.address)


def test_class_default_proxy_none_turns_the_default_off(
    stand_in: ModuleType, socks_server: SocksServer, peer_server: tuple[str, int]
) -> None:
    stand_in.set_default_proxy(SOCKS5, *socks_server.address)
    stand_in.socksocket.default_proxy = None
    with stand_in.socksocket() as sock:
        assert not _went_through_proxy(sock, peer_server)  # direct, as in PySocks
    assert socks_server.connections == 0
    assert stand_in.get_default_proxy() is None


def test_class_default_proxy_reads_as_pysocks_tuple_and_restores_exactly(
    stand_in: ModuleType, auth_server: SocksServer, peer_server: tuple[str, int]
) -> None:
    proxy = Proxy(*auth_server.address, username=AUTH_USER, password=AUTH_PASSWORD, pipeline=True)
    stand_in.set_default_proxy(proxy)
    saved = stand_in.socksocket.default_proxy
    # PySocks' form: credentials as bytes; the password kept out of the repr.
    assert saved == (SOCKS5, *auth_server.address, True, AUTH_USER.encode(), b"s3cret")
    assert AUTH_PASSWORD not in repr(saved) and AUTH_PASSWORD not in str(saved)
    stand_in.socksocket.default_proxy = None
    stand_in.socksocket.default_proxy = saved
    assert stand_in.get_default_proxy() is proxy
    with stand_in.socksocket() as sock:
        assert _went_through_proxy(sock, peer_server)
    (record,) = auth_server.records
    assert (record.username, record.password) == (AUTH_USER, AUTH_PASSWORD)


def test_socks5client_sockets_are_instances_of_the_stand_in_class(
    stand_in: ModuleType,
) -> None:
    with socks5client.socksocket() as sock:
        assert isinstance(sock, stand_in.socksocket)
    assert issubclass(stand_in.socksocket, socks5client.socksocket)
    with stand_in.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert isinstance(udp, stand_in.socksocket)
        assert type(udp).__name__ == "socksocket"


@pytest.mark.parametrize("which", ["stand-in", "socks5client"])
def test_instance_proxy_tuple_is_set_proxy(
    which: str, stand_in: ModuleType, socks_server: SocksServer, peer_server: tuple[str, int]
) -> None:
    cls = stand_in.socksocket if which == "stand-in" else socks5client.socksocket
    with cls() as sock:
        sock.proxy = _pysocks_tuple(socks_server)  # PySocks' instance attribute
        assert _went_through_proxy(sock, peer_server)
        assert sock.proxy == Proxy(*socks_server.address)
    (record,) = socks_server.records
    assert (record.dst_addr, record.dst_port) == peer_server


def test_instance_proxy_none_connects_directly_despite_the_default(
    stand_in: ModuleType, socks_server: SocksServer, peer_server: tuple[str, int]
) -> None:
    stand_in.set_default_proxy(SOCKS5, *socks_server.address)
    with stand_in.socksocket() as sock:
        sock.proxy = (None,) * 6  # PySocks' "no proxy"
        assert not _went_through_proxy(sock, peer_server)
        assert sock.proxy is None
    assert socks_server.connections == 0


@pytest.mark.parametrize("kind", ["SOCKS4", "HTTP"])
def test_socks4_and_http_settings_are_refused_before_anything_is_sent(
    kind: str, stand_in: ModuleType, socks_server: SocksServer
) -> None:
    setting = _pysocks_tuple(socks_server, getattr(stand_in, kind))
    with pytest.raises(stand_in.GeneralProxyError, match=f"{kind} proxies are not supported"):
        stand_in.socksocket.default_proxy = setting
    assert stand_in.get_default_proxy() is None
    with stand_in.socksocket() as sock:
        with pytest.raises(ValueError, match=f"{kind} proxies are not supported"):
            sock.proxy = setting
        assert sock.proxy is None
    assert socks_server.connections == 0


def test_pysocks_under_patch_keeps_its_own_proxy_attribute(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    # Real PySocks, imported while patched, derives from the patched class
    # and assigns ``proxy`` itself; it speaks SOCKS over our connect(),
    # which must not take that proxy too (the proxy would see itself).
    spec = importlib.util.find_spec("socks")
    origin = spec.origin if spec is not None else None
    # PySocks is a test dependency: a missing one fails here, never skips.
    assert origin is not None and origin.endswith(".py"), f"PySocks not found: {origin!r}"
    socks5client.patch(f"socks5h://127.0.0.1:{socks_server.port}", no_proxy="")
    try:
        pysocks_spec = importlib.util.spec_from_file_location("_pysocks_under_patch", origin)
        assert pysocks_spec is not None and pysocks_spec.loader is not None
        pysocks = importlib.util.module_from_spec(pysocks_spec)
        pysocks_spec.loader.exec_module(pysocks)
        assert issubclass(pysocks.socksocket, socks5client.socksocket)
        with pysocks.socksocket() as sock:
            sock.set_proxy(pysocks.SOCKS5, *socks_server.address)
            assert sock.proxy[:3] == (pysocks.SOCKS5, *socks_server.address)
            sock.settimeout(5)
            sock.connect(echo_server)
            sock.sendall(b"once")
            assert sock.recv(4) == b"once"
    finally:
        socks5client.unpatch()
    (record,) = socks_server.records
    assert (record.dst_addr, record.dst_port) == echo_server


@pytest.fixture
def default_proxy_attribute() -> Iterator[None]:
    """No ``socksocket.default_proxy`` attribute and no default, before and after."""
    socks5client.set_default_proxy()
    try:
        yield
    finally:
        if "default_proxy" in vars(socks5client.socksocket):
            del socks5client.socksocket.default_proxy
        socks5client.set_default_proxy()


def test_pysocks_class_attribute_on_socks5client_itself_is_the_default(
    default_proxy_attribute: None, socks_server: SocksServer, peer_server: tuple[str, int]
) -> None:
    # ``import socks5client as socks`` and PySocks code that assigns the
    # class attribute itself: nothing runs at the assignment, but the next
    # connection takes it (it used to be ignored: direct, local lookups).
    socks = socks5client
    socks.socksocket.default_proxy = _pysocks_tuple(socks_server)  # type: ignore[attr-defined]
    with socks.socksocket() as sock:
        assert _went_through_proxy(sock, peer_server)
    assert socks.get_default_proxy() == Proxy(*socks_server.address)
    # None turns it off, as in PySocks.
    socks.socksocket.default_proxy = None  # type: ignore[attr-defined]
    with socks.socksocket() as sock:
        assert not _went_through_proxy(sock, peer_server)
    assert socks_server.connections == 1
    # Whichever came last wins: set_default_proxy() after the attribute.
    socks.set_default_proxy(SOCKS5, *socks_server.address)
    with socks.socksocket() as sock:
        assert _went_through_proxy(sock, peer_server)
    assert socks_server.connections == 2
    # ... and the attribute after set_default_proxy(), even assigned the
    # very object it held before (a module constant, a literal tuple).
    setting = _pysocks_tuple(socks_server)
    socks.socksocket.default_proxy = setting  # type: ignore[attr-defined]
    socks.set_default_proxy()
    socks.socksocket.default_proxy = setting  # type: ignore[attr-defined]
    with socks.socksocket() as sock:
        assert _went_through_proxy(sock, peer_server)
    assert socks_server.connections == 3


@pytest.mark.parametrize("kind", ["SOCKS4", "HTTP"])
def test_pysocks_class_attribute_of_another_kind_fails_every_connection(
    kind: str,
    default_proxy_attribute: None,
    socks_server: SocksServer,
    peer_server: tuple[str, int],
) -> None:
    socks5client.socksocket.default_proxy = _pysocks_tuple(  # type: ignore[attr-defined]
        socks_server, getattr(socks5client, kind)
    )
    for _ in range(2):  # not once, then direct
        with socks5client.socksocket() as sock, pytest.raises(ValueError, match=kind):
            sock.connect(peer_server)
    with pytest.raises(ValueError, match=f"{kind} proxies are not supported"):
        socks5client.create_connection(peer_server, timeout=5)
    assert socks_server.connections == 0
