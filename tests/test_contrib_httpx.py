"""``socks5client.contrib.httpx.SOCKSTransport`` against the reference server.

The destinations are an HTTP and an HTTPS site (``http.server`` in threads
of this process, the HTTPS one with a certificate from a ``trustme`` CA) on
127.0.0.1, reached by the name ``site.test``.  The ``names`` fixture
teaches ``socket.getaddrinfo`` that name (and ``other.test``), so that the
reference server -- which resolves through ``socket.getaddrinfo`` at each
call -- can resolve it for ``socks5h://``, this process can resolve it for
``socks5://``, and the fixture can record who asked: a lookup of the name
from a non-daemon thread (the client's) is a local DNS query.

Each test checks what the proxy saw (``server.records``: command, ATYP,
DST.ADDR; ``server.connections``: how many handshakes) as well as what
httpx returned.  The tests whose names start with ``test_builtin_`` run the
same situation through httpx's own SOCKS support (``httpx.Client(proxy=
"socks5://...")``, which needs ``socksio``) to show what the transport does
differently; they are skipped when socksio is not installed.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import httpcore
import httpx
import pytest
from secret_places import password_places

import socks5client
from socks5client import errors
from socks5client.contrib.httpx import SOCKSNetworkBackend, SOCKSTransport

from conftest import AUTH_PASSWORD, AUTH_USER
from server import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    CMD_CONNECT,
    SocksServer,
    encode_reply,
    read_greeting,
    read_request,
)

#: Every wait in these tests is bounded by this.
TIMEOUT = 5.0

#: The connect timeout of the tests about it, and how late a timeout may be.
CONNECT_TIMEOUT = 0.5
SLACK = 1.0

SITE_NAME = "site.test"
OTHER_NAME = "other.test"
_FAKE_NAMES = {SITE_NAME: "127.0.0.1", OTHER_NAME: "127.0.0.1"}

_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "socks_proxy", "no_proxy")


# ---------------------------------------------------------------------------
# Names: site.test resolves to 127.0.0.1, and lookups of it are recorded


class Names:
    """The lookups of the fake names made from non-daemon threads (the client's)."""

    def __init__(self) -> None:
        self.local_lookups: list[str] = []


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Names:
    recorder = Names()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, *args: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else host
        if isinstance(text, str) and text.lower() in _FAKE_NAMES:
            if not threading.current_thread().daemon:
                recorder.local_lookups.append(text)
            if family not in (0, socket.AF_INET):
                raise socket.gaierror(socket.EAI_NONAME, f"{text} has no such address")
            address = _FAKE_NAMES[text.lower()]
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))
            ]
        return real(host, port, family, type, *args)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return recorder


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables of the machine must not decide anything here."""
    for name in _PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# ---------------------------------------------------------------------------
# The sites


class _SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up this machine's FQDN: not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Refused TLS handshakes are what some tests provoke: keep, don't print.
        self.site.errors.append(sys.exc_info()[1])


class _SiteHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT
    server: _SiteServer

    def setup(self) -> None:
        tls = self.server.site.tls
        if tls is not None:
            self.request = tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def do_GET(self) -> None:
        site = self.server.site
        with site.lock:
            site.requests.append((self.client_address, self.headers.get("Host"), self.path))
        if self.path == "/stall":
            # Answer only once the test is over: the client's read times out.
            site.release.wait(TIMEOUT * 2)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(site.body)))
        self.end_headers()
        self.wfile.write(site.body)
        if self.path == "/then-close":
            # Keep-alive as far as the client can tell, then gone: a pooled
            # connection the server has closed.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """A threaded HTTP(S) site on 127.0.0.1 serving one random body.

    ``requests`` lists ``(peer, Host header, path)`` per request (the peer
    is the proxy's end of its connection to the site); ``sni`` the server
    name of every TLS handshake.  ``GET /stall`` answers only at
    :meth:`close`; ``GET /then-close`` closes the connection after the
    response without saying so.
    """

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.body = os.urandom(16 * 1024)
        self.lock = threading.Lock()
        self.requests: list[tuple[Any, str | None, str]] = []
        self.sni: list[str | None] = []
        self.errors: list[BaseException | None] = []
        self.release = threading.Event()
        self.tls = tls
        if tls is not None:
            tls.sni_callback = self._note_sni
        self._server = _SiteServer((host, 0), _SiteHandler)
        self._server.site = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _note_sni(self, _sock: Any, name: str | None, _ctx: Any) -> None:
        self.sni.append(name)

    def url(self, path: str = "/", host: str = SITE_NAME) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def peers(self) -> set[Any]:
        """The distinct connections the requests came in on."""
        with self.lock:
            return {peer for peer, _, _ in self.requests}

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


def tls_pair(ca: Any, *names: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``names``; a client context trusting the CA."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.fixture
def sites() -> Iterator[Callable[..., Site]]:
    """Factory: ``sites(tls=None)`` starts a :class:`Site`; all close at teardown."""
    started: list[Site] = []

    def make(tls: ssl.SSLContext | None = None) -> Site:
        site = Site(tls)
        started.append(site)
        return site

    yield make
    for site in started:
        site.close()


@pytest.fixture
def site(sites: Callable[..., Site]) -> Site:
    return sites()


def url_of(server: SocksServer, scheme: str = "socks5h", userinfo: str = "") -> str:
    return f"{scheme}://{userinfo}{server.host}:{server.port}"


def connects(server: SocksServer) -> list[tuple[Any, ...]]:
    """(command, ATYP, DST.ADDR, DST.PORT) of every request the proxy received."""
    return [(r.command, r.atyp, r.dst_addr, r.dst_port) for r in server.records]


def client_for(proxy: Any, timeout: Any = TIMEOUT, **kwargs: Any) -> httpx.Client:
    return httpx.Client(transport=SOCKSTransport(proxy, **kwargs), timeout=timeout)


# ---------------------------------------------------------------------------
# Scripted proxies


def stall_after_greeting(conn: socket.socket, server: SocksServer) -> None:
    """Read the greeting, then say nothing until the server stops."""
    read_greeting(conn, server.record_for(conn))
    server.wait()


def dribble(conn: socket.socket, server: SocksServer, data: bytes, delay: float) -> None:
    """Send ``data`` one byte per TCP segment, ``delay`` seconds apart."""
    for i in range(len(data)):
        if server.wait(delay):
            return
        conn.sendall(data[i : i + 1])


def make_dribbling_proxy(delay: float) -> Callable[[socket.socket, SocksServer], None]:
    """A proxy that sends its replies one byte at a time, then plays the site itself.

    After the CONNECT reply it reads one HTTP request and answers ``ok``:
    the point is the handshake, not the relay.
    """

    def script(conn: socket.socket, server: SocksServer) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        record = server.record_for(conn)
        read_greeting(conn, record)
        dribble(conn, server, b"\x05\x00", delay)
        read_request(conn, record)
        dribble(conn, server, encode_reply(0, ATYP_IPV4, "127.0.0.1", 4321), delay)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        server.wait()

    return script


def canned_reply(rep: int) -> bytes:
    """Method "no auth" and a CONNECT reply with ``rep``, answered to the greeting at once."""
    return b"\x05\x00" + encode_reply(rep)


# ---------------------------------------------------------------------------
# GET through the proxy: remote and local DNS


def test_http_get_with_socks5h_sends_the_name(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    with client_for(url_of(socks_server)) as client:
        response = client.get(site.url())
    assert response.status_code == 200
    assert response.content == site.body
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port)]
    assert [host for _, host, _ in site.requests] == [f"{SITE_NAME}:{site.port}"]
    # The proxy resolved the name: this process never looked it up.
    assert names.local_lookups == []
    # The stream reports the destination as requested, name kept.
    stream = response.extensions["network_stream"]
    assert stream.get_extra_info("server_addr")[:2] == (SITE_NAME, site.port)


def test_http_get_with_socks5_resolves_here_and_sends_the_address(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    with client_for(url_of(socks_server, "socks5")) as client:
        response = client.get(site.url())
    assert response.status_code == 200
    assert response.content == site.body
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_IPV4, "127.0.0.1", site.port)]
    assert names.local_lookups == [SITE_NAME]
    # The Host header still names the site.
    assert [host for _, host, _ in site.requests] == [f"{SITE_NAME}:{site.port}"]


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [("socks5h", (ATYP_DOMAIN, SITE_NAME)), ("socks5", (ATYP_IPV4, "127.0.0.1"))],
)
def test_https_get_checks_the_certificate_against_the_name(
    scheme: str,
    expected: tuple[int, str],
    socks_server: SocksServer,
    sites: Callable[..., Site],
    ca: Any,
    names: Names,
) -> None:
    server_tls, client_tls = tls_pair(ca, SITE_NAME)
    site = sites(server_tls)
    with client_for(url_of(socks_server, scheme), verify=client_tls) as client:
        response = client.get(site.url())
        stream = response.extensions["network_stream"]
        tls = stream.get_extra_info("ssl_object")
        assert tls.version().startswith("TLS")
        assert tls.getpeercert()["subjectAltName"] == (("DNS", SITE_NAME),)
        assert stream.get_extra_info("server_addr")[:2] == (SITE_NAME, site.port)
    assert response.status_code == 200
    assert response.content == site.body
    # SNI is the site's name even when the proxy was given an address.
    assert site.sni == [SITE_NAME]
    assert connects(socks_server) == [(CMD_CONNECT, *expected, site.port)]


def test_https_certificate_for_another_name_is_refused(
    socks_server: SocksServer, sites: Callable[..., Site], ca: Any, names: Names
) -> None:
    server_tls, client_tls = tls_pair(ca, OTHER_NAME)
    site = sites(server_tls)
    with (
        client_for(url_of(socks_server), verify=client_tls) as client,
        pytest.raises(httpx.ConnectError) as info,
    ):
        client.get(site.url())
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert SITE_NAME in str(info.value)
    assert site.requests == []
    assert site.sni == [SITE_NAME]


def test_https_untrusted_ca_is_refused_and_verify_false_accepts_it(
    socks_server: SocksServer, sites: Callable[..., Site], ca: Any, names: Names
) -> None:
    server_tls, _ = tls_pair(ca, SITE_NAME)
    site = sites(server_tls)
    # The default verify=True trusts certifi's CAs, not the test CA.
    with client_for(url_of(socks_server)) as client, pytest.raises(httpx.ConnectError):
        client.get(site.url())
    with client_for(url_of(socks_server), verify=False) as client:
        assert client.get(site.url()).content == site.body


def test_credentials_reach_the_proxy(auth_server: SocksServer, site: Site, names: Names) -> None:
    proxy = url_of(auth_server, userinfo=f"{AUTH_USER}:{AUTH_PASSWORD}@")
    with client_for(proxy) as client:
        assert client.get(site.url()).content == site.body
    (record,) = auth_server.records
    assert (record.username, record.password) == (AUTH_USER, AUTH_PASSWORD)


def test_a_proxy_object_is_accepted(socks_server: SocksServer, site: Site, names: Names) -> None:
    proxy = socks5client.Proxy(socks_server.host, socks_server.port)
    with client_for(proxy) as client:
        assert client.get(site.url()).content == site.body
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port)]


# ---------------------------------------------------------------------------
# Pooling: one handshake per pooled connection


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_five_requests_make_one_handshake(
    tls: bool, socks_server: SocksServer, sites: Callable[..., Site], ca: Any, names: Names
) -> None:
    verify: Any = True
    server_tls = None
    if tls:
        server_tls, verify = tls_pair(ca, SITE_NAME)
    site = sites(server_tls)
    with client_for(url_of(socks_server), verify=verify) as client:
        for _ in range(5):
            assert client.get(site.url()).content == site.body
    assert socks_server.connections == 1
    assert len(socks_server.records) == 1
    assert len(site.requests) == 5
    assert len(site.peers()) == 1


def test_each_origin_has_its_own_pooled_connection(
    socks_server: SocksServer, sites: Callable[..., Site], names: Names
) -> None:
    first, second = sites(), sites()
    with client_for(url_of(socks_server)) as client:
        for _ in range(3):
            client.get(first.url())
            client.get(second.url())
    ports = [r.dst_port for r in socks_server.records]
    assert len(ports) == 2
    assert set(ports) == {first.port, second.port}


def test_a_pooled_connection_the_server_closed_is_not_reused(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    with client_for(url_of(socks_server)) as client:
        first = client.get(site.url("/then-close"))
        sock = first.extensions["network_stream"].get_extra_info("socket")
        # Wait for the site's close to come through the proxy's relay.
        deadline = time.monotonic() + TIMEOUT
        while not first.extensions["network_stream"].get_extra_info("is_readable"):
            assert time.monotonic() < deadline, "the close never came through the proxy"
            time.sleep(0.01)
        second = client.get(site.url())
    assert second.content == site.body
    assert sock.fileno() == -1  # the pool closed the dead connection
    assert socks_server.connections == 2


def test_close_releases_every_descriptor(
    socks_server: SocksServer, site: Site, names: Names, fd_count: Any
) -> None:
    client_for(url_of(socks_server)).close()  # imports and first-use costs out of the count
    before = fd_count()
    with client_for(url_of(socks_server)) as client:
        # No request right after /then-close: whether the pool has seen the
        # server's FIN by then is a race (plain httpx has it too).
        for path in ("/", "/", "/then-close"):
            client.get(site.url(path))
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://{SITE_NAME}:{closed_port()}/")
    assert fd_count.settle(before) == before


# ---------------------------------------------------------------------------
# The handshake: split replies, one deadline


def test_a_reply_split_into_single_bytes_is_read_whole(
    scripted_server: Callable[..., SocksServer], names: Names
) -> None:
    proxy = scripted_server(make_dribbling_proxy(0.02))
    with client_for(url_of(proxy)) as client:
        response = client.get(f"http://{SITE_NAME}:4321/")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert connects(proxy) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, 4321)]


def test_a_silent_proxy_raises_connect_timeout_within_the_timeout(
    scripted_server: Callable[..., SocksServer], names: Names
) -> None:
    proxy = scripted_server(stall_after_greeting)
    # The read timeout is long: the handshake is bounded by the connect timeout.
    timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
    with client_for(url_of(proxy), timeout=timeout) as client:
        start = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout) as info:
            client.get(f"http://{SITE_NAME}:4321/")
        elapsed = time.monotonic() - start
    assert CONNECT_TIMEOUT * 0.9 <= elapsed < CONNECT_TIMEOUT + SLACK
    assert isinstance(info.value.__cause__, errors.ProxyTimeoutError)


def test_a_slow_handshake_is_bounded_as_a_whole(
    scripted_server: Callable[..., SocksServer], names: Names
) -> None:
    # Every byte comes sooner than the timeout, the whole reply much later:
    # a timeout per read would never expire.
    proxy = scripted_server(make_dribbling_proxy(CONNECT_TIMEOUT * 0.4))
    timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
    with client_for(url_of(proxy), timeout=timeout) as client:
        start = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            client.get(f"http://{SITE_NAME}:4321/")
        elapsed = time.monotonic() - start
    assert elapsed < CONNECT_TIMEOUT + SLACK


# ---------------------------------------------------------------------------
# Errors


def closed_port() -> int:
    """A port on 127.0.0.1 that was bound, then closed: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_proxy_down_raises_proxy_error(site: Site, names: Names) -> None:
    with (
        client_for(f"socks5h://127.0.0.1:{closed_port()}") as client,
        pytest.raises(httpx.ProxyError) as info,
    ):
        client.get(site.url())
    assert isinstance(info.value.__cause__, errors.ProxyConnectionError)
    assert info.value.request.url == site.url()
    assert site.requests == []


def test_refused_credentials_raise_proxy_error_without_the_password(
    auth_server: SocksServer, site: Site, names: Names
) -> None:
    proxy = url_of(auth_server, userinfo=f"{AUTH_USER}:wrong-pw-123@")
    with client_for(proxy) as client, pytest.raises(httpx.ProxyError) as info:
        client.get(site.url())
    assert isinstance(info.value.__cause__, errors.SOCKS5AuthError)
    for text in (str(info.value), repr(info.value.__cause__)):
        assert "wrong-pw-123" not in text


def test_missing_credentials_raise_proxy_error(
    auth_server: SocksServer, site: Site, names: Names
) -> None:
    with client_for(url_of(auth_server)) as client, pytest.raises(httpx.ProxyError) as info:
        client.get(site.url())
    assert isinstance(info.value.__cause__, errors.SOCKS5AuthError)


#: A host name SOCKS5 cannot carry: 304 bytes, over its 255.
TOO_LONG_NAME = ".".join(["a" * 60] * 5)


def test_host_too_long_for_socks5_is_a_connect_error_before_any_lookup(
    socks_server: SocksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Such a host can come from a hostile site's redirect; without a proxy
    # httpx reports it as ConnectError, which ``except httpx.HTTPError`` catches.
    from dns_recorder import install_recorder

    resolver = install_recorder(monkeypatch)
    resolver.forbidden.add(TOO_LONG_NAME)
    with client_for(url_of(socks_server)) as client, pytest.raises(httpx.ConnectError) as info:
        client.get(f"http://{TOO_LONG_NAME}/")
    assert type(info.value.__cause__) is ValueError
    assert "255" in str(info.value)
    assert TOO_LONG_NAME not in resolver.hosts()
    assert connects(socks_server) == []


def test_destination_refused_raises_connect_error(socks_server: SocksServer, names: Names) -> None:
    port = closed_port()
    with client_for(url_of(socks_server)) as client, pytest.raises(httpx.ConnectError) as info:
        client.get(f"http://{SITE_NAME}:{port}/")
    cause = info.value.__cause__
    assert isinstance(cause, errors.SOCKS5ConnectionRefusedError)
    assert cause.reply_code == 5
    assert "reply code 5" in str(info.value)
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, port)]


@pytest.mark.parametrize(
    ("rep", "expected"),
    [
        (1, httpx.ProxyError),
        (2, httpx.ProxyError),
        (3, httpx.ConnectError),
        (4, httpx.ConnectError),
        (5, httpx.ConnectError),
        (6, httpx.ConnectError),
        (7, httpx.ProxyError),
        (8, httpx.ProxyError),
        (9, httpx.ProxyError),
    ],
)
def test_reply_codes_map_to_httpx_errors(
    rep: int,
    expected: type[httpx.HTTPError],
    scripted_server: Callable[..., SocksServer],
    names: Names,
) -> None:
    proxy = scripted_server(canned_reply(rep))
    with client_for(url_of(proxy)) as client, pytest.raises(expected) as info:
        client.get(f"http://{SITE_NAME}:4321/")
    assert type(info.value) is expected
    cause = info.value.__cause__
    assert isinstance(cause, errors.SOCKS5Error)
    assert cause.reply_code == rep


def test_a_proxy_breaking_the_protocol_raises_proxy_error(
    scripted_server: Callable[..., SocksServer], names: Names
) -> None:
    # An HTTP proxy's answer to a SOCKS5 greeting.
    proxy = scripted_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with client_for(url_of(proxy)) as client, pytest.raises(httpx.ProxyError) as info:
        client.get(f"http://{SITE_NAME}:4321/")
    assert isinstance(info.value.__cause__, errors.ProxyProtocolError)


def test_socks5_name_that_does_not_resolve_here_raises_connect_error(
    socks_server: SocksServer,
) -> None:
    with (
        client_for(url_of(socks_server, "socks5")) as client,
        pytest.raises(httpx.ConnectError) as info,
    ):
        client.get("http://no-such-host.invalid/")
    assert isinstance(info.value.__cause__, socket.gaierror)
    assert socks_server.connections == 0


def test_read_timeout_after_the_handshake(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    timeout = httpx.Timeout(TIMEOUT, read=CONNECT_TIMEOUT)
    with client_for(url_of(socks_server), timeout=timeout) as client:
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as info:
            client.get(site.url("/stall"))
        elapsed = time.monotonic() - start
    assert elapsed < CONNECT_TIMEOUT + SLACK
    assert isinstance(info.value.__cause__, socket.timeout)


def test_tls_handshake_past_the_connect_timeout_raises_connect_timeout(
    socks_server: SocksServer, names: Names
) -> None:
    # A destination that accepts TCP (the kernel does, from the backlog) and
    # never answers the ClientHello.
    with socket.create_server(("127.0.0.1", 0)) as mute:
        port = mute.getsockname()[1]
        timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
        with client_for(url_of(socks_server), timeout=timeout) as client:
            start = time.monotonic()
            with pytest.raises(httpx.ConnectTimeout) as info:
                client.get(f"https://{SITE_NAME}:{port}/")
            elapsed = time.monotonic() - start
    assert elapsed < CONNECT_TIMEOUT + SLACK
    assert isinstance(info.value.__cause__, socket.timeout)
    assert not isinstance(info.value.__cause__, errors.ProxyError)  # the handshake was done
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, port)]


def test_retries_try_a_refused_connect_again(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    real_connect = socks_server.commands[CMD_CONNECT]
    calls: list[int] = []

    def refuse_first(conn: socket.socket, record: Any, atyp: int, addr: str, port: int) -> None:
        calls.append(port)
        if len(calls) == 1:
            record.reply_code = 5
            conn.sendall(encode_reply(5))
            return
        real_connect(conn, record, atyp, addr, port)

    socks_server.commands[CMD_CONNECT] = refuse_first
    with client_for(url_of(socks_server), retries=1) as client:
        assert client.get(site.url()).content == site.body
    assert socks_server.connections == 2


# ---------------------------------------------------------------------------
# Options passed through to the pool


def test_socket_options_and_local_address_apply_to_the_connection_to_the_proxy(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    with client_for(
        url_of(socks_server), socket_options=options, local_address="127.0.0.1"
    ) as client:
        response = client.get(site.url())
        sock = response.extensions["network_stream"].get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        client_addr = response.extensions["network_stream"].get_extra_info("client_addr")
    (record,) = socks_server.records
    assert record.client_address == (client_addr[0], client_addr[1])


def test_the_network_backend_serves_httpcore_alone(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    backend = SOCKSNetworkBackend(url_of(socks_server))
    extensions = {"timeout": {"connect": TIMEOUT, "read": TIMEOUT}}
    with httpcore.ConnectionPool(network_backend=backend) as pool:
        for _ in range(2):
            response = pool.request("GET", site.url(), extensions=extensions)
            assert response.content == site.body
        port = closed_port()
        with pytest.raises(httpcore.ConnectError, match="reply code 5"):
            pool.request("GET", f"http://{SITE_NAME}:{port}/", extensions=extensions)
    assert connects(socks_server) == [
        (CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port),
        (CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, port),
    ]


def test_http2_without_h2_is_refused_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h2", None)  # as if not installed
    with pytest.raises(ImportError, match="h2"):
        SOCKSTransport("socks5h://127.0.0.1:1080", http2=True)


def test_repr_never_shows_the_password() -> None:
    transport = SOCKSTransport("socks5h://alice:hunter2@127.0.0.1:1080")
    assert "hunter2" not in repr(transport)
    assert "alice" in repr(transport)
    assert transport.proxy == socks5client.Proxy(
        "127.0.0.1", 1080, username="alice", password="hunter2"
    )
    assert transport.proxy is not None
    assert "hunter2" not in repr(SOCKSNetworkBackend(transport.proxy))


def test_a_bad_proxy_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as info:
        SOCKSTransport("socks4://alice:hunter2@127.0.0.1:1080")
    assert "hunter2" not in str(info.value)


# ---------------------------------------------------------------------------
# proxy=None: the proxy of each request from the environment


def test_environment_proxy_is_used_per_scheme(
    monkeypatch: pytest.MonkeyPatch,
    sites: Callable[..., Site],
    ca: Any,
    names: Names,
) -> None:
    server_tls, client_tls = tls_pair(ca, SITE_NAME)
    plain, secure = sites(), sites(server_tls)
    with SocksServer() as for_http, SocksServer() as for_all:
        monkeypatch.setenv("HTTP_PROXY", url_of(for_http))
        monkeypatch.setenv("ALL_PROXY", url_of(for_all))
        with client_for(None, verify=client_tls) as client:
            for _ in range(2):
                assert client.get(plain.url()).content == plain.body
                assert client.get(secure.url()).content == secure.body
        assert connects(for_http) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, plain.port)]
        assert connects(for_all) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, secure.port)]


def test_environment_is_read_at_each_request(
    monkeypatch: pytest.MonkeyPatch, site: Site, names: Names
) -> None:
    with SocksServer() as first, SocksServer() as second:
        with client_for(None) as client:
            monkeypatch.setenv("all_proxy", url_of(first))
            client.get(site.url())
            monkeypatch.setenv("all_proxy", url_of(second, "socks5"))
            client.get(site.url())
        assert connects(first) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port)]
        assert connects(second) == [(CMD_CONNECT, ATYP_IPV4, "127.0.0.1", site.port)]


def test_no_proxy_goes_direct(
    monkeypatch: pytest.MonkeyPatch, socks_server: SocksServer, site: Site, names: Names
) -> None:
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    monkeypatch.setenv("NO_PROXY", f"{OTHER_NAME},.test")
    with client_for(None) as client:
        assert client.get(site.url()).content == site.body
    assert socks_server.connections == 0
    assert len(site.requests) == 1


def test_loopback_goes_direct_and_other_names_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, socks_server: SocksServer, site: Site, names: Names
) -> None:
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    with client_for(None) as client:
        client.get(site.url(host="127.0.0.1"))
        client.get(site.url(host=SITE_NAME))
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port)]
    assert len(site.requests) == 2


def test_no_proxy_variable_set_goes_direct(
    socks_server: SocksServer, site: Site, names: Names
) -> None:
    with client_for(None) as client:
        assert client.get(site.url()).content == site.body
    assert socks_server.connections == 0


def test_an_http_proxy_in_the_environment_means_no_socks_proxy_for_that_scheme(
    monkeypatch: pytest.MonkeyPatch,
    socks_server: SocksServer,
    sites: Callable[..., Site],
    ca: Any,
    names: Names,
) -> None:
    # The shared rule: HTTP_PROXY applies to http:// URLs and names no SOCKS5
    # proxy, so they go direct (ALL_PROXY is not tried instead); https://
    # URLs have no HTTPS_PROXY and take ALL_PROXY.
    server_tls, client_tls = tls_pair(ca, SITE_NAME)
    plain, secure = sites(), sites(server_tls)
    monkeypatch.setenv("HTTP_PROXY", "http://user:hunter2@127.0.0.1:3128")
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    with client_for(None, verify=client_tls) as client:
        assert client.get(plain.url()).content == plain.body
        assert client.get(secure.url()).content == secure.body
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, secure.port)]
    assert len(plain.requests) == 1


@pytest.mark.parametrize(
    "url", ["socks4://alice:hunter2@127.0.0.1:1080", "socks5h://alice:hunter2@127.0.0.1:0"]
)
def test_a_socks4_or_malformed_proxy_in_the_environment_raises_proxy_error(
    url: str, monkeypatch: pytest.MonkeyPatch, site: Site, names: Names
) -> None:
    monkeypatch.setenv("ALL_PROXY", url)
    with client_for(None) as client, pytest.raises(httpx.ProxyError) as info:
        client.get(site.url())
    assert "ALL_PROXY" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert site.requests == []


#: Nothing else in this suite contains this text.
ENV_PASSWORD = "Pw-httpx-61c4-never-LEAK"

#: Malformed proxy URLs a user may set, by kind.
MALFORMED_ENV_URLS = {
    # A '#' in the password that was not percent-encoded: a fragment.
    "unencoded-hash": f"socks5h://user:{ENV_PASSWORD}#1@127.0.0.1:1080",
    "socks4": f"socks4://user:{ENV_PASSWORD}@127.0.0.1:1080",
    "bad-port": f"socks5h://user:{ENV_PASSWORD}@127.0.0.1:99999",
}


@pytest.mark.parametrize("url", MALFORMED_ENV_URLS.values(), ids=MALFORMED_ENV_URLS.keys())
def test_a_malformed_proxy_in_the_environment_leaves_no_password_in_the_traceback(
    url: str, monkeypatch: pytest.MonkeyPatch, names: Names
) -> None:
    monkeypatch.setenv("ALL_PROXY", url)
    # Refused before anything is resolved or connected: no site needed.
    with client_for(None) as client, pytest.raises(httpx.ProxyError) as info:
        client.get(f"http://{SITE_NAME}/")
    assert password_places(info.value, ENV_PASSWORD) == []
    assert "ALL_PROXY" in str(info.value)


def test_proxy_none_without_trust_env_is_refused() -> None:
    with pytest.raises(ValueError, match="trust_env"):
        SOCKSTransport(trust_env=False)


# ---------------------------------------------------------------------------
# Synchronous only


def test_async_client_gets_a_clear_error() -> None:
    transport = SOCKSTransport("socks5h://127.0.0.1:1080")

    async def with_block() -> None:
        async with httpx.AsyncClient(transport=transport):  # type: ignore[arg-type]
            pass

    async def without_block() -> None:
        client = httpx.AsyncClient(transport=transport)  # type: ignore[arg-type]
        try:
            await client.get("http://site.test/")
        finally:
            await client.aclose()

    for run in (with_block, without_block):
        with pytest.raises(TypeError, match=r"synchronous: use it with httpx\.Client"):
            asyncio.run(run())


# ---------------------------------------------------------------------------
# What httpx's own SOCKS support does in the same situations


@pytest.fixture
def socksio() -> Any:
    return pytest.importorskip("socksio", reason="httpx's own SOCKS support needs socksio")


def test_builtin_fails_on_a_split_reply_where_the_transport_succeeds(
    socksio: Any, scripted_server: Callable[..., SocksServer], names: Names
) -> None:
    proxy = scripted_server(make_dribbling_proxy(0.02))
    with client_for(url_of(proxy)) as client:
        assert client.get(f"http://{SITE_NAME}:4321/").content == b"ok"
    with (
        httpx.Client(proxy=url_of(proxy), timeout=TIMEOUT) as builtin,
        pytest.raises(socksio.exceptions.ProtocolError, match="Malformed reply") as info,
    ):
        builtin.get(f"http://{SITE_NAME}:4321/")
    # Not even an httpx exception (httpx 0.28.1, httpcore 1.0.9).
    assert not isinstance(info.value, httpx.HTTPError)


def test_builtin_ignores_the_connect_timeout_during_the_handshake(
    socksio: Any, scripted_server: Callable[..., SocksServer], names: Names
) -> None:
    proxy = scripted_server(stall_after_greeting)
    timeout = httpx.Timeout(CONNECT_TIMEOUT)  # every timeout, read included
    with client_for(url_of(proxy), timeout=timeout) as client, pytest.raises(httpx.ConnectTimeout):
        client.get(f"http://{SITE_NAME}:4321/")
    outcome: list[BaseException] = []

    def run_builtin() -> None:
        try:
            with httpx.Client(proxy=url_of(proxy), timeout=timeout) as builtin:
                builtin.get(f"http://{SITE_NAME}:4321/")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run_builtin, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT * 6)
    still_waiting = thread.is_alive()
    proxy.stop()  # ends the stalled handshake
    thread.join(TIMEOUT)
    assert still_waiting, f"httpx's SOCKS support gave up in time: {outcome}"
    # Only the end of the connection ended the request.
    assert not thread.is_alive()
    assert outcome


def test_builtin_sends_the_name_even_for_socks5(
    socksio: Any, socks_server: SocksServer, site: Site, names: Names
) -> None:
    with client_for(url_of(socks_server, "socks5")) as client:
        client.get(site.url())
    with httpx.Client(proxy=url_of(socks_server, "socks5"), timeout=TIMEOUT) as builtin:
        builtin.get(site.url())
    assert connects(socks_server) == [
        (CMD_CONNECT, ATYP_IPV4, "127.0.0.1", site.port),  # the transport resolved it
        (CMD_CONNECT, ATYP_DOMAIN, SITE_NAME, site.port),  # httpx did not
    ]


def test_builtin_logs_the_proxy_password_at_debug_level(
    socksio: Any,
    auth_server: SocksServer,
    site: Site,
    names: Names,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = url_of(auth_server, userinfo=f"{AUTH_USER}:{AUTH_PASSWORD}@")
    with caplog.at_level(logging.DEBUG):
        with client_for(proxy) as client:
            client.get(site.url())
        ours = caplog.text
        caplog.clear()
        with httpx.Client(proxy=proxy, timeout=TIMEOUT) as builtin:
            builtin.get(site.url())
        theirs = caplog.text
    assert "connect_tcp" in ours  # httpcore's debug lines were captured
    assert AUTH_PASSWORD not in ours
    assert AUTH_USER in theirs
    assert AUTH_PASSWORD in theirs
