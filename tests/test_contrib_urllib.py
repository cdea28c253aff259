"""``socks5client.contrib.urllib`` against the reference server.

The destinations are real ``http.server`` sites on 127.0.0.1, plain and TLS
(a ``trustme`` CA).  The reference server records every request it gets, so
each test checks what the proxy saw (command, ATYP, DST.ADDR, DST.PORT) as
well as what the client got.  Where the brief is "behave as plain urllib
does", the test runs a plain opener on the same kind of failure and compares.

Tests of the proxy from the environment need a destination that is not
loopback (localhost and loopback always go direct): ``site.test``, which a
fake ``socket.getaddrinfo`` maps to 127.0.0.1 for the reference server (it
resolves with ``socket.getaddrinfo``, looked up at each call) and for a
direct connection.
"""

from __future__ import annotations

import errno
import http.client
import http.server
import inspect
import ipaddress
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from secret_places import password_places

import socks5client
from socks5client import errors
from socks5client.contrib import urllib as socks_urllib
from socks5client.contrib.urllib import (
    SOCKSHandler,
    SocksiPyHandler,
    build_opener,
)

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

#: A short timeout, for the tests of timeouts.
SHORT = 0.5

#: The name the environment tests use; see the module docstring.
FAKE_NAME = "site.test"

_PROXY_VARIABLES = [
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "socks_proxy", "no_proxy")
    for name in (base, base.upper())
]

ScriptedServer = Callable[..., SocksServer]


# ---------------------------------------------------------------------------
# The destination: a small HTTP(S) site in a thread of this process


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the FQDN of the host: not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (the timeout tests) breaks the pipe: expected.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT
    server: _Server

    def setup(self) -> None:
        tls = self.server.site.tls
        if tls is not None:
            self.request = tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        site = self.server.site
        site.requests.append((self.path, self.headers.get("Host"), self.client_address))
        url = urlsplit(self.path)
        if url.path == "/redirect":
            self._answer(302, b"", {"Location": parse_qs(url.query)["to"][0]})
        elif url.path == "/slow":
            site.stopping.wait(TIMEOUT)
            self._answer(200, b"late")
        else:
            self._answer(200, site.body)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.site.requests.append((self.path, self.headers.get("Host"), self.client_address))
        self._answer(200, b"got " + data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """An HTTP site on 127.0.0.1 (HTTPS with ``tls``).

    ``/`` answers ``body``; ``/redirect?to=URL`` answers 302 to URL; ``/slow``
    answers after :data:`TIMEOUT` seconds.  ``requests`` lists ``(path, Host
    header, client address)`` of every request, ``sni`` the server name of
    every TLS handshake.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.requests: list[tuple[str, str | None, tuple[str, int]]] = []
        self.sni: list[str | None] = []
        self.stopping = threading.Event()
        if tls is not None:
            tls.sni_callback = self._note_sni
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.site = self
        self.port = int(self._server.server_address[1])
        self.body = f"site on port {self.port}".encode()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _note_sni(self, _sock: Any, name: str | None, _ctx: Any) -> None:
        self.sni.append(name)

    def url(self, host: str = "localhost", path: str = "/") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def client_tls(ca: Any) -> ssl.SSLContext:
    """A client context that trusts the test CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def sites(ca: Any) -> Iterator[Callable[..., Site]]:
    """Factory: ``sites()`` an HTTP site, ``sites(tls_for=("localhost",))`` an
    HTTPS site whose certificate names those hosts."""
    started: list[Site] = []

    def make(tls_for: tuple[str, ...] | None = None) -> Site:
        tls = None
        if tls_for is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*tls_for).configure_cert(tls)
        site = Site(tls)
        started.append(site)
        return site

    yield make
    for site in started:
        site.close()


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the proxy variables they need and no others."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make :data:`FAKE_NAME` resolve to 127.0.0.1 (for the proxy and for direct)."""
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == FAKE_NAME:
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return FAKE_NAME


@dataclass
class Made:
    """One connection that the handler made through socks5client."""

    proxy: socks5client.Proxy | None
    local: tuple[Any, ...]
    proxy_peer: tuple[Any, ...]


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Made]:
    """Records every proxied connection the handler makes (direct ones never get here)."""
    return record_connections(monkeypatch)


def record_connections(monkeypatch: pytest.MonkeyPatch) -> list[Made]:
    """Make the adapter's ``create_connection`` record what it returns; the records."""
    real = socks5client.create_connection  # what the adapter calls
    result: list[Made] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        sock = real(*args, **kwargs)
        assert isinstance(sock, socks5client.socksocket)
        result.append(Made(kwargs.get("proxy"), sock.getsockname(), sock.get_proxy_peername()))
        return sock

    monkeypatch.setattr(socks_urllib, "create_connection", recording)
    return result


def url_of(server: SocksServer, *, remote_dns: bool = True, userinfo: str = "") -> str:
    scheme = "socks5h" if remote_dns else "socks5"
    return f"{scheme}://{userinfo}{server.host}:{server.port}"


def requests_of(server: SocksServer) -> list[tuple[Any, ...]]:
    """(CMD, ATYP, DST.ADDR, DST.PORT) of every request the proxy got."""
    return [(r.command, r.atyp, r.dst_addr, r.dst_port) for r in server.records]


def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def handlers_of(opener: urllib.request.OpenerDirector) -> list[Any]:
    """The handlers of an opener (an attribute typeshed does not declare)."""
    return list(opener.handlers)  # type: ignore[attr-defined]


def fetch(opener: urllib.request.OpenerDirector, url: str, **kwargs: Any) -> bytes:
    with opener.open(url, timeout=TIMEOUT, **kwargs) as response:
        body: bytes = response.read()
        return body


def failure(opener: urllib.request.OpenerDirector, url: str, timeout: float = TIMEOUT) -> Any:
    """The exception ``opener.open(url)`` raises."""
    with pytest.raises(Exception) as info:
        opener.open(url, timeout=timeout).close()
    return info.value


# ---------------------------------------------------------------------------
# GET over http and https


def test_http_get_sends_the_name_with_socks5h(
    socks_server: SocksServer, sites: Callable[..., Site], made: list[Made]
) -> None:
    site = sites()
    opener = build_opener(url_of(socks_server))
    assert fetch(opener, site.url()) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]
    assert [(path, host) for path, host, _ in site.requests] == [("/", f"localhost:{site.port}")]
    # The site was reached from the proxy, not from the handler's own socket.
    assert [m.proxy_peer for m in made] == [socks_server.address]
    assert site.requests[0][2] != made[0].local


def test_http_get_resolves_here_with_socks5(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    opener = build_opener(url_of(socks_server, remote_dns=False))
    assert fetch(opener, site.url()) == site.body
    records = socks_server.records
    # localhost may resolve to ::1 first (refused by the proxy, REP 5): the
    # request that worked is the IPv4 one, and no name went to the proxy.
    assert all(r.atyp != ATYP_DOMAIN for r in records)
    assert (records[-1].atyp, records[-1].dst_addr, records[-1].reply_code) == (
        ATYP_IPV4,
        "127.0.0.1",
        0,
    )
    # The Host header is still the name in the URL.
    assert site.requests[0][1] == f"localhost:{site.port}"


def test_https_get_through_the_proxy_checks_the_site_name(
    socks_server: SocksServer, sites: Callable[..., Site], client_tls: ssl.SSLContext
) -> None:
    site = sites(tls_for=("localhost",))
    opener = build_opener(url_of(socks_server), context=client_tls)
    assert fetch(opener, site.url()) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]
    assert site.sni == ["localhost"]


def test_https_with_local_dns_still_sends_the_name_as_sni(
    socks_server: SocksServer, sites: Callable[..., Site], client_tls: ssl.SSLContext
) -> None:
    # The proxy gets an address; TLS still names (and checks) the URL's host.
    site = sites(tls_for=("localhost",))
    opener = build_opener(url_of(socks_server, remote_dns=False), context=client_tls)
    assert fetch(opener, site.url()) == site.body
    assert socks_server.records[-1].dst_addr == "127.0.0.1"
    assert site.sni == ["localhost"]


def test_https_certificate_for_another_name_fails_verification(
    socks_server: SocksServer, sites: Callable[..., Site], client_tls: ssl.SSLContext
) -> None:
    site = sites(tls_for=("other.test",))
    exc = failure(build_opener(url_of(socks_server), context=client_tls), site.url())
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, ssl.SSLCertVerificationError)
    assert "localhost" in str(exc.reason)
    # It went through the proxy, and failed as a direct connection does.
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]
    plain = urllib.request.build_opener(urllib.request.HTTPSHandler(context=client_tls))
    direct = failure(plain, site.url())
    assert type(direct) is type(exc) and type(direct.reason) is type(exc.reason)


def test_https_default_context_does_not_trust_an_unknown_ca(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites(tls_for=("localhost",))
    exc = failure(build_opener(url_of(socks_server)), site.url())
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, ssl.SSLCertVerificationError)


def test_post_body_goes_through(socks_server: SocksServer, sites: Callable[..., Site]) -> None:
    site = sites()
    opener = build_opener(url_of(socks_server))
    assert fetch(opener, site.url(path="/post"), data=b"payload") == b"got payload"


def test_each_request_has_its_own_connection_as_with_plain_urllib(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    opener = build_opener(url_of(socks_server))
    for _ in range(2):
        assert fetch(opener, site.url()) == site.body
    assert len(requests_of(socks_server)) == 2
    assert socks_server.connections == 2


def test_username_and_password(auth_server: SocksServer, sites: Callable[..., Site]) -> None:
    site = sites()
    opener = build_opener(url_of(auth_server, userinfo=f"{AUTH_USER}:{AUTH_PASSWORD}@"))
    assert fetch(opener, site.url()) == site.body
    assert [r.username for r in auth_server.records] == [AUTH_USER]


def test_a_proxy_object(socks_server: SocksServer, sites: Callable[..., Site]) -> None:
    site = sites()
    proxy = socks5client.Proxy(socks_server.host, socks_server.port)
    opener = build_opener(proxy)
    assert fetch(opener, site.url(host="127.0.0.1")) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_IPV4, "127.0.0.1", site.port)]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_socks5h_makes_no_local_lookup_of_the_name(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    client_tls: ssl.SSLContext,
    fake_name: str,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    site = sites(tls_for=(fake_name,)) if scheme == "https" else sites()
    resolve = socket.getaddrinfo  # the fake_name resolver, which the proxy uses
    looked_up: list[Any] = []
    test_thread = threading.current_thread()

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is test_thread:
            looked_up.append(host)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    opener = build_opener(url_of(socks_server), context=client_tls)
    assert fetch(opener, site.url(host=fake_name)) == site.body
    assert fake_name not in looked_up
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, fake_name, site.port)]


# ---------------------------------------------------------------------------
# Redirects


def test_redirect_to_another_host_goes_through_the_proxy_again(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    first, second = sites(), sites()
    target = second.url(host="127.0.0.1", path="/final")
    opener = build_opener(url_of(socks_server))
    with opener.open(first.url(path=f"/redirect?to={target}"), timeout=TIMEOUT) as response:
        assert response.read() == second.body
        assert response.geturl() == target
    assert requests_of(socks_server) == [
        (CMD_CONNECT, ATYP_DOMAIN, "localhost", first.port),
        (CMD_CONNECT, ATYP_IPV4, "127.0.0.1", second.port),
    ]
    assert [path for path, _, _ in second.requests] == ["/final"]


def test_redirect_to_ftp_is_refused_not_fetched_around_the_proxy(
    socks_server: SocksServer, sites: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    # urllib's FTP handler would resolve the host and connect directly: a
    # page fetched through the proxy could send the client there.
    from dns_recorder import install_recorder

    resolver = install_recorder(monkeypatch)
    resolver.forbidden.add("ftp.leak.test")
    site = sites()
    opener = build_opener(url_of(socks_server))
    with pytest.raises(urllib.error.URLError, match="ftp:// URLs are not carried"):
        opener.open(site.url(path="/redirect?to=ftp://ftp.leak.test/file"), timeout=TIMEOUT)
    assert "ftp.leak.test" not in resolver.hosts()
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]


def test_redirect_to_a_host_too_long_for_socks5_is_a_url_error_before_any_lookup(
    socks_server: SocksServer, sites: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 304 bytes, over SOCKS5's 255: plain urllib raises URLError for such a
    # host, and ``except URLError`` must catch it through the proxy too.
    from dns_recorder import install_recorder

    long_name = ".".join(["a" * 60] * 5)
    resolver = install_recorder(monkeypatch)
    resolver.forbidden.add(long_name)
    site = sites()
    opener = build_opener(url_of(socks_server))
    with pytest.raises(urllib.error.URLError) as info:
        opener.open(site.url(path=f"/redirect?to=http://{long_name}/"), timeout=TIMEOUT)
    reason = info.value.reason
    assert isinstance(reason, socket.gaierror)
    assert reason.errno == socket.EAI_NONAME
    assert type(reason.__cause__) is ValueError
    assert long_name not in resolver.hosts()
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]


def test_redirect_from_https_to_http(
    socks_server: SocksServer, sites: Callable[..., Site], client_tls: ssl.SSLContext
) -> None:
    secure, plain = sites(tls_for=("localhost",)), sites()
    target = plain.url(host="127.0.0.1")
    opener = build_opener(url_of(socks_server), context=client_tls)
    assert fetch(opener, secure.url(path=f"/redirect?to={target}")) == plain.body
    assert [r[3] for r in requests_of(socks_server)] == [secure.port, plain.port]


# ---------------------------------------------------------------------------
# The proxy from the environment


@pytest.mark.parametrize(
    ("scheme", "variable"),
    [
        ("http", "http_proxy"),
        ("https", "HTTPS_PROXY"),
        ("http", "ALL_PROXY"),
        ("https", "socks_proxy"),
    ],
)
def test_proxy_from_the_environment(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    client_tls: ssl.SSLContext,
    fake_name: str,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    variable: str,
) -> None:
    site = sites(tls_for=(fake_name,)) if scheme == "https" else sites()
    opener = build_opener(context=client_tls)
    # Read at each request, not when the opener was built.
    monkeypatch.setenv(variable, url_of(socks_server))
    assert fetch(opener, site.url(host=fake_name)) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, fake_name, site.port)]


def test_no_proxy_host_goes_direct(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    fake_name: str,
    monkeypatch: pytest.MonkeyPatch,
    made: list[Made],
) -> None:
    site = sites()
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    monkeypatch.setenv("no_proxy", f"other.test,{fake_name}")
    opener = build_opener()
    assert fetch(opener, site.url(host=fake_name)) == site.body
    assert socks_server.connections == 0
    assert made == []
    assert [host for _, host, _ in site.requests] == [f"{fake_name}:{site.port}"]
    # Every request reads the environment again.
    monkeypatch.delenv("no_proxy")
    assert fetch(opener, site.url(host=fake_name)) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, fake_name, site.port)]


#: A non-ASCII name, its IDNA 2008 form (what no_proxy judges and the proxy
#: gets) and its IDNA 2003 form (what Python's socket and ssl modules would
#: make of the text): two different domains.
IDNA_HOST, IDNA_2008, IDNA_2003 = "fa\u00df.test", "xn--fa-hia.test", "fass.test"


@pytest.fixture
def idna_lookups(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make :data:`IDNA_2008` resolve to 127.0.0.1, and refuse every other name.

    The hosts the test's thread looks up are recorded, as given to
    ``socket.getaddrinfo`` (before its C code would encode non-ASCII text
    as IDNA 2003).  The reference server resolves through the same
    function on its own threads.  No name reaches a real resolver.
    """
    real = socket.getaddrinfo
    test_thread = threading.current_thread()
    looked_up: list[Any] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is test_thread:
            looked_up.append(host)
        if host == IDNA_2008:
            host = "127.0.0.1"
        else:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise socket.gaierror(
                    socket.EAI_NONAME, f"not in the test's table: {host!r}"
                ) from None
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return looked_up


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_non_ascii_no_proxy_host_goes_direct_to_the_form_no_proxy_judged(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    client_tls: ssl.SSLContext,
    idna_lookups: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    # no_proxy lists the IDNA 2008 form; http.client, given the text, would
    # look up and connect to the IDNA 2003 form directly, and ssl would
    # check the certificate for it: another domain.
    site = sites(tls_for=(IDNA_2008,)) if scheme == "https" else sites()
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    monkeypatch.setenv("no_proxy", IDNA_2008)
    assert fetch(build_opener(context=client_tls), site.url(host=IDNA_HOST)) == site.body
    assert idna_lookups == [IDNA_2008]
    assert socks_server.connections == 0
    assert site.sni == ([IDNA_2008] if scheme == "https" else [])


def test_https_through_the_proxy_checks_a_non_ascii_host_in_its_idna_2008_form(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    client_tls: ssl.SSLContext,
    idna_lookups: list[Any],
) -> None:
    # The proxy reaches the IDNA 2008 form: SNI and the certificate check
    # name that server, not the IDNA 2003 form ssl makes of the text.
    site = sites(tls_for=(IDNA_2008,))
    opener = build_opener(url_of(socks_server), context=client_tls)
    assert fetch(opener, site.url(host=IDNA_HOST)) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, IDNA_2008, site.port)]
    assert site.sni == [IDNA_2008]
    assert IDNA_2003 not in idna_lookups


def test_a_no_proxy_host_with_no_idna_2008_form_is_refused_not_looked_up(
    socks_server: SocksServer, idna_lookups: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "ß-" (a trailing hyphen) has no IDNA 2008 form; no_proxy judged the
    # name with that label as text, under xn--fa-hia.test.  Its IDNA 2003
    # form (x.ss-.fass.test) is another domain: refused, as a name that
    # does not exist, before any lookup.  (The label must be Latin-1: urllib
    # sends the Host header as the URL wrote it, and fails on other text
    # before connecting.)
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    monkeypatch.setenv("no_proxy", IDNA_2008)
    exc = failure(build_opener(), f"http://x.\u00df-.{IDNA_HOST}:{closed_port()}/")
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, socket.gaierror)
    assert exc.reason.errno == socket.EAI_NONAME
    assert idna_lookups == []
    assert socks_server.connections == 0


def test_localhost_goes_direct_with_a_proxy_from_the_environment(
    socks_server: SocksServer, sites: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    site = sites()
    monkeypatch.setenv("all_proxy", url_of(socks_server))
    opener = build_opener()
    assert fetch(opener, site.url()) == site.body
    assert fetch(opener, site.url(host="127.0.0.1")) == site.body
    assert socks_server.connections == 0


def test_no_proxy_variable_means_direct(sites: Callable[..., Site], made: list[Made]) -> None:
    site = sites()
    assert fetch(build_opener(), site.url()) == site.body
    assert made == []


def test_an_http_proxy_in_the_environment_is_not_used(
    sites: Callable[..., Site], fake_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain urllib would send this request to the HTTP proxy (here a closed
    # port: it would fail).  build_opener leaves urllib's ProxyHandler out,
    # and the shared rules say an HTTP proxy is no SOCKS5 proxy: direct.
    site = sites()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(urllib.error.URLError):
        urllib.request.build_opener().open(site.url(host=fake_name), timeout=TIMEOUT)
    assert fetch(build_opener(), site.url(host=fake_name)) == site.body


def test_a_socks4_proxy_in_the_environment_is_an_error(
    sites: Callable[..., Site], fake_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = sites()
    monkeypatch.setenv("ALL_PROXY", "socks4://127.0.0.1:1080")
    with pytest.raises(ValueError, match="SOCKS5"):
        build_opener().open(site.url(host=fake_name), timeout=TIMEOUT)
    assert site.requests == []


#: Nothing else in this file contains this text.
ENV_PASSWORD = "Pw-urllib-3b8e-never-LEAK"

#: Malformed proxy URLs a user may set, by kind.
MALFORMED_ENV_URLS = {
    # A '#' in the password that was not percent-encoded: a fragment.
    "unencoded-hash": f"socks5h://user:{ENV_PASSWORD}#1@127.0.0.1:1080",
    "socks4": f"socks4://user:{ENV_PASSWORD}@127.0.0.1:1080",
    "bad-port": f"socks5h://user:{ENV_PASSWORD}@127.0.0.1:99999",
}


@pytest.mark.parametrize("url", MALFORMED_ENV_URLS.values(), ids=MALFORMED_ENV_URLS.keys())
@pytest.mark.parametrize(
    "make_opener",
    [build_opener, lambda: urllib.request.build_opener(SOCKSHandler())],
    ids=["build_opener", "SOCKSHandler"],
)
def test_a_malformed_proxy_in_the_environment_leaves_no_password_in_the_traceback(
    make_opener: Callable[[], urllib.request.OpenerDirector],
    url: str,
    fake_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", url)
    # Refused before anything is resolved or connected: no site needed.
    with pytest.raises(ValueError) as info:
        make_opener().open(f"http://{fake_name}/", timeout=TIMEOUT)
    assert password_places(info.value, ENV_PASSWORD) == []
    assert "ALL_PROXY" in str(info.value)


# ---------------------------------------------------------------------------
# Errors: as plain urllib reports a failed connection


def test_proxy_down_is_a_url_error_with_a_proxy_connection_error(
    sites: Callable[..., Site],
) -> None:
    site = sites()
    exc = failure(build_opener(f"socks5h://127.0.0.1:{closed_port()}"), site.url())
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, errors.ProxyConnectionError)
    assert exc.reason.errno == errno.ECONNREFUSED
    assert site.requests == []
    # A refused direct connection has the same shape.
    direct = failure(urllib.request.build_opener(), f"http://127.0.0.1:{closed_port()}/")
    assert isinstance(direct, urllib.error.URLError)
    assert isinstance(direct.reason, OSError)
    assert direct.reason.errno == exc.reason.errno


def test_authentication_refused(auth_server: SocksServer, sites: Callable[..., Site]) -> None:
    site = sites()
    opener = build_opener(url_of(auth_server, userinfo=f"{AUTH_USER}:wrong-password@"))
    exc = failure(opener, site.url())
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, errors.SOCKS5AuthError)
    assert "wrong-password" not in str(exc) and "wrong-password" not in repr(exc)
    assert site.requests == []


def test_no_credentials_for_a_server_that_wants_them(
    auth_server: SocksServer, sites: Callable[..., Site]
) -> None:
    exc = failure(build_opener(url_of(auth_server)), sites().url())
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, errors.SOCKS5AuthError)


def test_target_refused_is_rep_5_and_a_connection_refused_error(
    socks_server: SocksServer,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    exc = failure(build_opener(url_of(socks_server)), url)
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, errors.SOCKS5ConnectionRefusedError)
    assert exc.reason.reply_code == 5
    assert [r.reply_code for r in socks_server.records] == [5]
    # The same class a refused direct connection gives.
    direct = failure(urllib.request.build_opener(), url)
    assert isinstance(direct.reason, ConnectionRefusedError)
    assert isinstance(exc.reason, ConnectionRefusedError)


def test_stalled_handshake_times_out_within_the_timeout(
    scripted_server: ScriptedServer, sites: Callable[..., Site]
) -> None:
    def stall(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        server.wait()

    server = scripted_server(stall)
    started = time.monotonic()
    exc = failure(build_opener(url_of(server)), sites().url(), timeout=SHORT)
    elapsed = time.monotonic() - started
    assert isinstance(exc, urllib.error.URLError)
    # What urllib wraps for a direct connect() that times out: a
    # TimeoutError (socket.timeout on 3.9).
    assert isinstance(exc.reason, errors.ProxyTimeoutError)
    assert isinstance(exc.reason, TimeoutError) and isinstance(exc.reason, socket.timeout)
    assert SHORT * 0.9 <= elapsed < SHORT + 1.0


def test_timeout_is_one_deadline_for_the_whole_handshake(
    scripted_server: ScriptedServer, sites: Callable[..., Site]
) -> None:
    # Each step answers within the timeout, the handshake as a whole not.
    def slow(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        if server.wait(SHORT * 0.6):
            return
        conn.sendall(b"\x05\x00")
        read_request(conn)
        if server.wait(SHORT * 0.6):
            return
        conn.sendall(encode_reply(0))
        server.wait()

    server = scripted_server(slow)
    started = time.monotonic()
    exc = failure(build_opener(url_of(server)), sites().url(), timeout=SHORT)
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, errors.ProxyTimeoutError)
    assert time.monotonic() - started < SHORT + 0.5


def test_after_the_handshake_the_timeout_bounds_each_read_as_with_plain_urllib(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    proxied = failure(build_opener(url_of(socks_server)), site.url(path="/slow"), SHORT)
    direct = failure(urllib.request.build_opener(), site.url(path="/slow"), SHORT)
    # urllib does not wrap a timeout while reading the response.
    assert type(proxied) is type(direct)
    assert isinstance(proxied, socket.timeout)
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]


def test_nothing_leaks_after_failures(
    auth_server: SocksServer, sites: Callable[..., Site], fd_count: Any
) -> None:
    site = sites()
    good = build_opener(url_of(auth_server, userinfo=f"{AUTH_USER}:{AUTH_PASSWORD}@"))
    bad = build_opener(url_of(auth_server, userinfo=f"{AUTH_USER}:nope@"))
    before = fd_count()
    for _ in range(3):
        failure(bad, site.url())
        fetch(good, site.url())
    assert fd_count.settle(before) == before


# ---------------------------------------------------------------------------
# SOCKSHandler in urllib's own openers, and build_opener's rules


def test_handler_takes_precedence_over_proxy_handler(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    dead = f"http://127.0.0.1:{closed_port()}"
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": dead, "https": dead}),
        SOCKSHandler(url_of(socks_server)),
    )
    assert fetch(opener, site.url()) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]


def test_handler_replaces_the_default_http_handlers() -> None:
    handler = SOCKSHandler("socks5h://127.0.0.1:1080")
    opener = urllib.request.build_opener(handler)
    http_handlers = [
        h
        for h in handlers_of(opener)
        if isinstance(h, (urllib.request.HTTPHandler, urllib.request.HTTPSHandler))
    ]
    assert http_handlers == [handler]
    assert handler.handler_order < urllib.request.ProxyHandler.handler_order


def test_build_opener_leaves_urllibs_proxy_handler_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")

    def proxy_handlers(opener: urllib.request.OpenerDirector) -> list[Any]:
        return [h for h in handlers_of(opener) if isinstance(h, urllib.request.ProxyHandler)]

    assert len(proxy_handlers(urllib.request.build_opener())) == 1
    assert proxy_handlers(build_opener("socks5h://127.0.0.1:1080")) == []
    assert proxy_handlers(build_opener()) == []


def test_build_opener_uses_a_socks_handler_given_to_it(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    handler = SOCKSHandler(url_of(socks_server))
    opener = build_opener(None, urllib.request.HTTPCookieProcessor(), handler)
    assert fetch(opener, site.url()) == site.body
    assert [h for h in handlers_of(opener) if isinstance(h, SOCKSHandler)] == [handler]
    with pytest.raises(ValueError, match="SOCKSHandler"):
        build_opener(url_of(socks_server), handler)


@pytest.mark.parametrize(
    "handler",
    [urllib.request.HTTPSHandler(), urllib.request.HTTPHandler(), urllib.request.HTTPSHandler],
)
def test_build_opener_refuses_handlers_it_would_ignore(handler: Any) -> None:
    with pytest.raises(ValueError, match="context"):
        build_opener("socks5h://127.0.0.1:1080", handler)


def test_bad_proxies_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="scheme"):
        SOCKSHandler("http://127.0.0.1:3128")
    with pytest.raises(TypeError):
        SOCKSHandler(1080)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_opener("socks5h://127.0.0.1:99999")


def test_repr_hides_the_password() -> None:
    handler = SOCKSHandler("socks5h://alice:hunter2@127.0.0.1:1080")
    assert "hunter2" not in repr(handler)
    assert "environment" in repr(SOCKSHandler())


def test_importing_the_package_does_not_import_the_adapter() -> None:
    code = (
        "import sys, socks5client; "
        "assert 'socks5client.contrib.urllib' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_connection_classes_work_with_http_client_directly(
    socks_server: SocksServer, sites: Callable[..., Site], client_tls: ssl.SSLContext
) -> None:
    plain, secure = sites(), sites(tls_for=("localhost",))
    proxy = socks5client.Proxy.from_url(url_of(socks_server))
    connections: list[http.client.HTTPConnection] = [
        socks_urllib.SOCKSHTTPConnection(
            "localhost", plain.port, timeout=TIMEOUT, socks_proxy=proxy
        ),
        socks_urllib.SOCKSHTTPSConnection(
            "localhost", secure.port, timeout=TIMEOUT, context=client_tls, socks_proxy=proxy
        ),
    ]
    for conn, site in zip(connections, (plain, secure)):
        try:
            conn.request("GET", "/")
            assert conn.getresponse().read() == site.body
        finally:
            conn.close()
    assert [r[3] for r in requests_of(socks_server)] == [plain.port, secure.port]
    assert secure.sni == ["localhost"]


# ---------------------------------------------------------------------------
# SocksiPyHandler: PySocks' sockshandler arguments


def test_socksipy_handler_positional_form(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    opener = urllib.request.build_opener(
        SocksiPyHandler(socks5client.PROXY_TYPE_SOCKS5, "127.0.0.1", socks_server.port)
    )
    assert fetch(opener, site.url()) == site.body
    assert requests_of(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, "localhost", site.port)]


def test_socksipy_handler_local_dns_and_credentials(
    auth_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    handler = SocksiPyHandler(
        socks5client.SOCKS5, "127.0.0.1", auth_server.port, False, AUTH_USER, AUTH_PASSWORD
    )
    assert fetch(urllib.request.build_opener(handler), site.url()) == site.body
    record = auth_server.records[-1]
    assert (record.username, record.atyp, record.dst_addr) == (AUTH_USER, ATYP_IPV4, "127.0.0.1")


def test_socksipy_handler_https_with_a_context_keyword(
    socks_server: SocksServer, sites: Callable[..., Site], client_tls: ssl.SSLContext
) -> None:
    site = sites(tls_for=("localhost",))
    handler = SocksiPyHandler(
        socks5client.SOCKS5, "127.0.0.1", socks_server.port, context=client_tls
    )
    assert fetch(urllib.request.build_opener(handler), site.url()) == site.body
    assert site.sni == ["localhost"]


def test_socksipy_handler_source_address(
    socks_server: SocksServer, sites: Callable[..., Site]
) -> None:
    site = sites()
    handler = SocksiPyHandler(
        socks5client.SOCKS5, "127.0.0.1", socks_server.port, source_address=("127.0.0.1", 0)
    )
    assert fetch(urllib.request.build_opener(handler), site.url()) == site.body


def test_socksipy_handler_defaults() -> None:
    handler = SocksiPyHandler(socks5client.SOCKS5, "proxy.test")
    assert handler.proxy == socks5client.Proxy("proxy.test", 1080, remote_dns=True)
    # PySocks' "no authentication": empty strings.
    handler = SocksiPyHandler(socks5client.SOCKS5, "proxy.test", 9050, True, "", "")
    assert handler.proxy is not None and handler.proxy.username is None


@pytest.mark.parametrize(
    ("proxy_type", "name"), [(socks5client.SOCKS4, "SOCKS4"), (socks5client.HTTP, "HTTP")]
)
def test_socksipy_handler_refuses_other_proxy_types(proxy_type: int, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} proxies are not supported.*SOCKS5 only"):
        SocksiPyHandler(proxy_type, "127.0.0.1", 1080)


def test_socksipy_handler_refuses_unknown_keywords() -> None:
    with pytest.raises(TypeError, match="timeout"):
        SocksiPyHandler(socks5client.SOCKS5, "127.0.0.1", 1080, timeout=3)


def test_socksipy_handler_has_pysocks_argument_names() -> None:
    sockshandler = pytest.importorskip("sockshandler")
    theirs = inspect.signature(sockshandler.SocksiPyConnection.__init__).parameters
    ours = inspect.signature(SocksiPyHandler.__init__).parameters
    names = ["proxytype", "proxyaddr", "proxyport", "rdns", "username", "password"]
    assert list(ours)[1:7] == list(theirs)[1:7] == names
    assert [ours[n].default for n in names] == [theirs[n].default for n in names]
