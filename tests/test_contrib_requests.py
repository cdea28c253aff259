"""``socks5client.contrib.requests.SOCKSAdapter`` against the reference server.

The destinations are HTTP and HTTPS sites (``http.server`` in threads of
this process, HTTPS with a ``trustme`` CA) under the names ``site-a.test``
and ``site-b.test``.  The ``names`` fixture teaches ``socket.getaddrinfo``
those names (they map to 127.0.0.1), so that the reference server, which
resolves on its own daemon threads, can reach them; and it records every
lookup made on any other thread, the client's, so a test can tell whether
the client resolved a name itself (a direct connection, or a leak) or left
it to the proxy.  ``.test`` names are not ``localhost``, which the
environment-driven proxy selection always sends direct.

What is checked: requests through the proxy over HTTP and HTTPS (the proxy
gets the name, TLS checks it), one SOCKS5 handshake per pooled connection,
redirects across hosts, the proxy chosen from the environment, requests'
own ``proxies`` kept out of the way, and the mapping of every kind of
failure to requests' exceptions.
"""

from __future__ import annotations

import http.server
import pickle
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import trustme
from secret_places import password_places

import socks5client
from socks5client.contrib.requests import SOCKSAdapter, SOCKSPoolManager

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

NAME_A = "site-a.test"
NAME_B = "site-b.test"
NAMES = (NAME_A, NAME_B)
TIMEOUT = 10.0

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "socks_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable of the machine running the tests may take part."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# ---------------------------------------------------------------------------
# Names


class Names:
    """The client-side lookups of the test names (server threads are daemons)."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def looked_up(self, name: str) -> bool:
        return name in self.lookups


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Names:
    recorder = Names()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else host
        if isinstance(text, str) and text.rstrip(".").lower() in NAMES:
            if not threading.current_thread().daemon:
                recorder.lookups.append(text.rstrip(".").lower())
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return recorder


# ---------------------------------------------------------------------------
# Sites


class _SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up this machine's FQDN.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refused our certificate, on purpose


class _SiteHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pooled connections last
    timeout = TIMEOUT
    server: _SiteServer

    def setup(self) -> None:
        site = self.server.site
        with site.lock:
            site.connections += 1
        if site.tls is not None:
            self.request = site.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def do_GET(self) -> None:
        site = self.server.site
        with site.lock:
            site.requests.append((self.path, dict(self.headers.items())))
        url = urlsplit(self.path)
        if url.path == "/redirect":
            self._answer(302, b"", (("Location", parse_qs(url.query)["to"][0]),))
        elif url.path == "/slow":
            site.release.wait(TIMEOUT)
            self._answer(200, b"late")
        else:
            self._answer(200, f"hello from {site.name}".encode())

    def _answer(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """An HTTP(S) site on 127.0.0.1, known to clients as ``name``.

    ``connections`` counts the TCP connections it accepted; ``requests``
    lists ``(path, headers)`` of every request; ``sni`` the server name of
    every TLS handshake.  ``/redirect?to=URL`` answers 302, ``/slow`` waits
    until :attr:`release` is set (or 10 s).
    """

    def __init__(self, name: str, tls: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.tls = tls
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sni: list[str | None] = []
        self.release = threading.Event()
        if tls is not None:
            tls.sni_callback = self._note_sni
        self._server = _SiteServer(("127.0.0.1", 0), _SiteHandler)
        self._server.site = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _note_sni(self, _sock: Any, name: str | None, _ctx: Any) -> None:
        self.sni.append(name)

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.name}:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def cafile(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def sites(ca: Any, names: Names) -> Iterator[Callable[..., Site]]:
    """Factory: ``sites(name, tls=False, cert_names=(name,))`` starts a :class:`Site`."""
    started: list[Site] = []

    def make(name: str = NAME_A, tls: bool = False, cert_names: tuple[str, ...] = ()) -> Site:
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*(cert_names or (name,))).configure_cert(context)
        site = Site(name, context)
        started.append(site)
        return site

    yield make
    for site in started:
        site.close()


@pytest.fixture
def sessions() -> Iterator[Callable[..., Any]]:
    """Factory: ``sessions(adapter)`` is a Session with ``adapter`` on http and https."""
    made: list[Any] = []

    def make(adapter: SOCKSAdapter) -> Any:
        session = requests.Session()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


def url_of(server: SocksServer, user: str | None = None, password: str | None = None) -> str:
    auth = f"{user}:{password}@" if user is not None else ""
    return f"socks5h://{auth}127.0.0.1:{server.port}"


def connects(server: SocksServer) -> list[tuple[Any, ...]]:
    """(CMD, ATYP, DST.ADDR, DST.PORT) of every request the proxy received."""
    return [(r.command, r.atyp, r.dst_addr, r.dst_port) for r in server.records]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (it was bound a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# Through the proxy


def test_http_get_sends_the_name_to_the_proxy(
    socks_server: SocksServer, sites: Callable[..., Site], sessions: Any, names: Names
) -> None:
    site = sites(NAME_A)
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    response = session.get(site.url(), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == f"hello from {NAME_A}"
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_A, site.port)]
    # The request line is the origin form and the Host header the name.
    assert site.requests[0][0] == "/"
    assert site.requests[0][1]["Host"] == f"{NAME_A}:{site.port}"
    assert not names.lookups, "socks5h: the client must not resolve the name"


def test_socks5_scheme_resolves_here(
    socks_server: SocksServer, sites: Callable[..., Site], sessions: Any, names: Names
) -> None:
    site = sites(NAME_A)
    proxy = socks5client.Proxy("127.0.0.1", socks_server.port, remote_dns=False)
    session = sessions(SOCKSAdapter(proxy))
    assert session.get(site.url(), timeout=TIMEOUT).status_code == 200
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_IPV4, "127.0.0.1", site.port)]
    assert names.lookups == [NAME_A]


def test_https_get_checks_the_certificate_of_the_name(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    cafile: str,
    names: Names,
) -> None:
    site = sites(NAME_A, tls=True)
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    response = session.get(site.url(), timeout=TIMEOUT, verify=cafile)
    assert response.text == f"hello from {NAME_A}"
    assert site.sni == [NAME_A]
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_A, site.port)]
    assert not names.lookups


def test_https_certificate_for_another_name_is_refused(
    socks_server: SocksServer, sites: Callable[..., Site], sessions: Any, cafile: str
) -> None:
    site = sites(NAME_A, tls=True, cert_names=("other.test",))
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    with pytest.raises(requests.exceptions.SSLError):
        session.get(site.url(), timeout=TIMEOUT, verify=cafile)
    # The tunnel was made; TLS refused the certificate over it.
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_A, site.port)]
    assert not site.requests


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_one_handshake_for_sequential_requests(
    tls: bool,
    socks_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    cafile: str,
) -> None:
    site = sites(NAME_A, tls=tls)
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    for _ in range(5):
        response = session.get(site.url(), timeout=TIMEOUT, verify=cafile)
        assert response.text == f"hello from {NAME_A}"
    assert len(site.requests) == 5
    assert socks_server.connections == 1
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_A, site.port)]
    assert site.connections == 1


def test_redirect_across_hosts_pools_each_host(
    socks_server: SocksServer, sites: Callable[..., Site], sessions: Any, names: Names
) -> None:
    a, b = sites(NAME_A), sites(NAME_B)
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    response = session.get(a.url(f"/redirect?to={b.url('/landed')}"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.url == b.url("/landed")
    assert [r.status_code for r in response.history] == [302]
    # Back and forth again: the pooled connections carry these.
    for site in (a, b, a, b):
        assert session.get(site.url(), timeout=TIMEOUT).text == f"hello from {site.name}"
    assert connects(socks_server) == [
        (CMD_CONNECT, ATYP_DOMAIN, NAME_A, a.port),
        (CMD_CONNECT, ATYP_DOMAIN, NAME_B, b.port),
    ]
    assert (a.connections, b.connections) == (1, 1)
    assert not names.lookups


def test_requests_proxies_are_not_used(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    cafile: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An HTTP proxy that does not exist, in the environment and in
    # proxies=: requests computes proxies from both, the adapter uses neither.
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("HTTPS_PROXY", dead)
    monkeypatch.setenv("ALL_PROXY", dead)
    http_site, https_site = sites(NAME_A), sites(NAME_B, tls=True)
    adapter = SOCKSAdapter(url_of(socks_server))
    session = sessions(adapter)
    for site in (http_site, https_site):
        response = session.get(
            site.url(), timeout=TIMEOUT, verify=cafile, proxies={"http": dead, "https": dead}
        )
        assert response.text == f"hello from {site.name}"
    # Not the absolute form an HTTP proxy takes: the site got the path.
    assert http_site.requests[0][0] == "/"
    assert adapter.proxy_manager == {}
    assert [r.dst_addr for r in socks_server.records] == [NAME_A, NAME_B]


# ---------------------------------------------------------------------------
# The proxy from the environment (proxy=None)


def test_environment_proxy_is_used(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    names: Names,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    site = sites(NAME_A)
    adapter = SOCKSAdapter()
    session = sessions(adapter)
    for _ in range(3):
        assert session.get(site.url(), timeout=TIMEOUT).text == f"hello from {NAME_A}"
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_A, site.port)]
    assert not names.lookups
    # requests saw ALL_PROXY too; its SOCKS support (PySocks) was not used.
    assert adapter.proxy_manager == {}


def test_environment_proxy_per_scheme(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    cafile: str,
    names: Names,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", url_of(socks_server))
    http_site, https_site = sites(NAME_A), sites(NAME_B, tls=True)
    session = sessions(SOCKSAdapter())
    assert session.get(https_site.url(), timeout=TIMEOUT, verify=cafile).status_code == 200
    assert session.get(http_site.url(), timeout=TIMEOUT).status_code == 200
    # https through the proxy; http has no proxy variable: direct.
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_B, https_site.port)]
    assert names.lookups == [NAME_A]


def test_no_proxy_goes_direct(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    names: Names,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", url_of(socks_server))
    monkeypatch.setenv("NO_PROXY", NAME_B)
    a, b = sites(NAME_A), sites(NAME_B)
    session = sessions(SOCKSAdapter())
    assert session.get(a.url(), timeout=TIMEOUT).text == f"hello from {NAME_A}"
    assert session.get(b.url(), timeout=TIMEOUT).text == f"hello from {NAME_B}"
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_A, a.port)]
    assert names.lookups == [NAME_B]  # resolved here for the direct connection


def test_no_socks_proxy_in_the_environment_goes_direct(
    socks_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    names: Names,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An HTTP proxy is not SOCKS5: the adapter goes direct, and requests'
    # own use of it (through urllib3's ProxyManager) is switched off.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    site = sites(NAME_A)
    adapter = SOCKSAdapter()
    session = sessions(adapter)
    assert session.get(site.url(), timeout=TIMEOUT).text == f"hello from {NAME_A}"
    assert socks_server.connections == 0
    assert names.lookups == [NAME_A]
    assert adapter.proxy_manager == {}


def test_socks4_in_the_environment_is_an_invalid_proxy_url(
    sites: Callable[..., Site], sessions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks4://127.0.0.1:1080")
    site = sites(NAME_A)
    session = sessions(SOCKSAdapter())
    with pytest.raises(requests.exceptions.InvalidProxyURL, match="SOCKS5"):
        session.get(site.url(), timeout=TIMEOUT)
    assert not site.requests


#: Nothing else in this file contains this text.
ENV_PASSWORD = "Pw-requests-5d0f-never-LEAK"

#: Malformed proxy URLs a user may give, by kind.
MALFORMED_URLS = {
    # A '#' in the password that was not percent-encoded: a fragment.
    "unencoded-hash": f"socks5h://user:{ENV_PASSWORD}#1@127.0.0.1:1080",
    "socks4": f"socks4://user:{ENV_PASSWORD}@127.0.0.1:1080",
    "bad-port": f"socks5h://user:{ENV_PASSWORD}@127.0.0.1:99999",
}


@pytest.mark.parametrize("url", MALFORMED_URLS.values(), ids=MALFORMED_URLS.keys())
@pytest.mark.parametrize("trust_env", [True, False], ids=["trust_env", "no-trust_env"])
def test_a_malformed_proxy_in_the_environment_leaves_no_password_in_the_traceback(
    url: str, trust_env: bool, names: Names, sessions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", url)
    session = sessions(SOCKSAdapter())
    session.trust_env = trust_env
    # Refused before anything is resolved or connected: no site needed.
    with pytest.raises(requests.exceptions.InvalidProxyURL) as info:
        session.get(f"http://{NAME_A}/", timeout=TIMEOUT)
    assert password_places(info.value, ENV_PASSWORD) == []
    assert "ALL_PROXY" in str(info.value)


@pytest.mark.parametrize("url", MALFORMED_URLS.values(), ids=MALFORMED_URLS.keys())
@pytest.mark.parametrize("make", [SOCKSAdapter, SOCKSPoolManager])
def test_a_malformed_proxy_url_given_leaves_no_password_in_the_traceback(
    make: Callable[[str], object], url: str
) -> None:
    with pytest.raises(ValueError) as info:
        make(url)
    assert password_places(info.value, ENV_PASSWORD) == []


def test_proxy_urls_requests_read_from_the_environment_stay_out_of_the_traceback(
    names: Names, sessions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests passes the URLs it read (trust_env) to SOCKSAdapter.send as
    # ``proxies``; that frame is in the traceback of every failure.
    monkeypatch.setenv("ALL_PROXY", f"socks5h://user:{ENV_PASSWORD}@127.0.0.1:{closed_port()}")
    session = sessions(SOCKSAdapter())
    with pytest.raises(requests.exceptions.ProxyError) as info:
        session.get(f"http://{NAME_A}/", timeout=TIMEOUT)
    assert password_places(info.value, ENV_PASSWORD) == []


def test_proxy_credentials_never_reach_the_site_on_redirect(
    auth_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # requests adds Proxy-Authorization, made from the proxy URL's
    # credentials, to a redirected http request; with no HTTP proxy on the
    # way it would go to the site.
    monkeypatch.setenv("ALL_PROXY", url_of(auth_server, AUTH_USER, AUTH_PASSWORD))
    a, b = sites(NAME_A), sites(NAME_B)
    session = sessions(SOCKSAdapter())
    response = session.get(a.url(f"/redirect?to={b.url()}"), timeout=TIMEOUT)
    assert response.text == f"hello from {NAME_B}"
    seen = [headers for site in (a, b) for _path, headers in site.requests]
    assert len(seen) == 2
    assert all("proxy-authorization" not in {k.lower() for k in h} for h in seen), seen
    assert [r.username for r in auth_server.records] == [AUTH_USER, AUTH_USER]


# ---------------------------------------------------------------------------
# Failures, as requests' exceptions


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__


def test_proxy_down_is_proxy_error(sites: Callable[..., Site], sessions: Any) -> None:
    site = sites(NAME_A)
    session = sessions(SOCKSAdapter(f"socks5h://127.0.0.1:{closed_port()}"))
    with pytest.raises(requests.exceptions.ProxyError) as info:
        session.get(site.url(), timeout=TIMEOUT)
    cause = _cause(info.value)
    assert isinstance(cause, socks5client.ProxyConnectionError)
    assert not isinstance(info.value, requests.exceptions.Timeout)
    # Also where requests keeps urllib3's errors: MaxRetryError, its reason.
    assert info.value.args[0].reason.__cause__ is cause


def test_auth_refused_is_proxy_error_without_the_password(
    auth_server: SocksServer, sites: Callable[..., Site], sessions: Any
) -> None:
    site = sites(NAME_A)
    password = "not-the-password"
    session = sessions(SOCKSAdapter(url_of(auth_server, AUTH_USER, password)))
    with pytest.raises(requests.exceptions.ProxyError) as info:
        session.get(site.url(), timeout=TIMEOUT)
    assert isinstance(_cause(info.value), socks5client.SOCKS5AuthError)
    # No message or repr along the chain shows the password.
    chain: list[BaseException] = []
    current: BaseException | None = info.value
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for exc in chain:
        assert password not in str(exc) and password not in repr(exc)
    assert not site.requests


@pytest.mark.parametrize(
    "answer",
    [b"\x04\x5a", b"HTTP/1.1 400 Bad Request\r\n\r\n"],
    ids=["socks4-reply", "http-proxy"],
)
def test_protocol_violation_is_proxy_error(
    answer: bytes,
    scripted_server: Callable[..., SocksServer],
    sites: Callable[..., Site],
    sessions: Any,
) -> None:
    server = scripted_server(answer)
    site = sites(NAME_A)
    session = sessions(SOCKSAdapter(url_of(server)))
    with pytest.raises(requests.exceptions.ProxyError) as info:
        session.get(site.url(), timeout=TIMEOUT)
    assert isinstance(_cause(info.value), socks5client.ProxyProtocolError)


def _replying(rep: int) -> Callable[[socket.socket, SocksServer], None]:
    """A script: method "none", then reply code ``rep`` to the request."""

    def script(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        conn.sendall(encode_reply(rep))

    return script


@pytest.mark.parametrize("rep", [1, 2, 7, 8, 9])
def test_proxy_refusing_the_request_is_proxy_error(
    rep: int,
    scripted_server: Callable[..., SocksServer],
    sites: Callable[..., Site],
    sessions: Any,
) -> None:
    server = scripted_server(_replying(rep))
    session = sessions(SOCKSAdapter(url_of(server)))
    with pytest.raises(requests.exceptions.ProxyError) as info:
        session.get(sites(NAME_A).url(), timeout=TIMEOUT)
    cause = _cause(info.value)
    assert isinstance(cause, socks5client.SOCKS5Error) and cause.reply_code == rep


@pytest.mark.parametrize("rep", [3, 4, 5, 6])
def test_destination_failure_is_connection_error(
    rep: int,
    scripted_server: Callable[..., SocksServer],
    sites: Callable[..., Site],
    sessions: Any,
) -> None:
    server = scripted_server(_replying(rep))
    session = sessions(SOCKSAdapter(url_of(server)))
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get(sites(NAME_A).url(), timeout=TIMEOUT)
    assert not isinstance(info.value, (requests.exceptions.ProxyError, requests.exceptions.Timeout))
    cause = _cause(info.value)
    assert isinstance(cause, socks5client.SOCKS5Error) and cause.reply_code == rep
    assert info.value.args[0].reason.__cause__ is cause


def test_target_refused_by_the_real_proxy_is_connection_error(
    socks_server: SocksServer, sessions: Any, names: Names
) -> None:
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    port = closed_port()
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get(f"http://{NAME_A}:{port}/", timeout=TIMEOUT)
    assert not isinstance(info.value, requests.exceptions.ProxyError)
    assert isinstance(_cause(info.value), socks5client.SOCKS5ConnectionRefusedError)
    assert [(r.dst_addr, r.reply_code) for r in socks_server.records] == [(NAME_A, 5)]


def test_name_too_long_for_socks5_is_invalid_url(socks_server: SocksServer, sessions: Any) -> None:
    # Five 60-byte labels: a valid URL, but over SOCKS5's 255-byte limit.
    host = ".".join(["a" * 60] * 5)
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    with pytest.raises(requests.exceptions.InvalidURL, match="255"):
        session.get(f"http://{host}/", timeout=TIMEOUT)
    assert socks_server.connections == 0


def test_stalled_handshake_is_connect_timeout(
    scripted_server: Callable[..., SocksServer], sites: Callable[..., Site], sessions: Any
) -> None:
    def stall(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        server.wait()

    server = scripted_server(stall)
    site = sites(NAME_A)
    session = sessions(SOCKSAdapter(url_of(server)))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectTimeout) as info:
        session.get(site.url(), timeout=(0.5, TIMEOUT))
    assert time.monotonic() - started < 3.0
    cause = _cause(info.value)
    assert isinstance(cause, socks5client.ProxyTimeoutError)
    assert info.value.args[0].reason.__cause__ is cause


def test_connect_timeout_is_one_deadline_for_the_whole_handshake(
    scripted_server: Callable[..., SocksServer], sites: Callable[..., Site], sessions: Any
) -> None:
    # Each answer comes 0.4 s after the question: every single wait is
    # shorter than the 0.6 s connect timeout, the handshake as a whole is not.
    def slow(conn: socket.socket, server: SocksServer) -> None:
        read_greeting(conn)
        server.wait(0.4)
        conn.sendall(b"\x05\x00")
        read_request(conn)
        server.wait(0.4)
        conn.sendall(encode_reply(0))
        server.wait()

    server = scripted_server(slow)
    session = sessions(SOCKSAdapter(url_of(server)))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectTimeout):
        session.get(sites(NAME_A).url(), timeout=(0.6, TIMEOUT))
    # Well before the handshake would have ended (0.8 s) plus a margin.
    assert time.monotonic() - started < 1.5


def test_slow_response_is_read_timeout(
    socks_server: SocksServer, sites: Callable[..., Site], sessions: Any
) -> None:
    site = sites(NAME_A)
    session = sessions(SOCKSAdapter(url_of(socks_server)))
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(site.url("/slow"), timeout=(TIMEOUT, 0.3))
    site.release.set()
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME_A, site.port)]


@pytest.mark.parametrize(("max_retries", "attempts"), [(None, 1), (0, 1), (2, 3)])
def test_max_retries_applies_to_proxy_failures(
    max_retries: int | None,
    attempts: int,
    auth_server: SocksServer,
    sites: Callable[..., Site],
    sessions: Any,
) -> None:
    kwargs = {} if max_retries is None else {"max_retries": max_retries}
    adapter = SOCKSAdapter(url_of(auth_server, AUTH_USER, "wrong"), **kwargs)
    session = sessions(adapter)
    with pytest.raises(requests.exceptions.ProxyError):
        session.get(sites(NAME_A).url(), timeout=TIMEOUT)
    assert auth_server.connections == attempts


# ---------------------------------------------------------------------------
# The adapter itself


def test_adapter_arguments(socks_server: SocksServer) -> None:
    adapter = SOCKSAdapter(
        url_of(socks_server), max_retries=3, pool_maxsize=4, source_address=("127.0.0.1", 0)
    )
    assert adapter.proxy == socks5client.Proxy("127.0.0.1", socks_server.port)
    assert adapter.max_retries.total == 3
    assert adapter._pool_maxsize == 4
    # Keywords HTTPAdapter does not take go to the pool manager.
    assert adapter.poolmanager.connection_pool_kw["source_address"] == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="scheme"):
        SOCKSAdapter("http://127.0.0.1:3128")
    with pytest.raises(TypeError):
        SOCKSAdapter(1080)  # type: ignore[arg-type]


def test_adapter_survives_pickling(
    auth_server: SocksServer, sites: Callable[..., Site], sessions: Any
) -> None:
    adapter = SOCKSAdapter(url_of(auth_server, AUTH_USER, AUTH_PASSWORD), max_retries=1)
    copy = pickle.loads(pickle.dumps(adapter))
    assert copy.proxy == adapter.proxy
    assert copy.max_retries.total == 1
    site = sites(NAME_A)
    assert sessions(copy).get(site.url(), timeout=TIMEOUT).text == f"hello from {NAME_A}"
    assert [r.dst_addr for r in auth_server.records] == [NAME_A]


def test_closing_the_session_closes_the_tunnels(
    socks_server: SocksServer, sites: Callable[..., Site], fd_count: Any
) -> None:
    site = sites(NAME_A)
    before = fd_count()
    with requests.Session() as session:
        session.mount("http://", SOCKSAdapter(url_of(socks_server)))
        assert session.get(site.url(), timeout=TIMEOUT).status_code == 200
    assert fd_count.settle(before) == before
