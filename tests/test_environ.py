"""Proxy selection from the environment (socks5client._environ).

Pure logic, then the adapters in environment mode (``proxy=None``) against
a loopback site and the reference server: a variable they cannot use must
fail the request, never send it direct.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from secret_places import password_places

from socks5client import Proxy
from socks5client._environ import proxy_from_environment, proxy_url_from_environment

from server import SocksServer

S5H = "socks5h://127.0.0.1:1080"
S5 = "socks5://user:pw@[::1]:9050"


@pytest.mark.parametrize(
    ("environ", "scheme", "expected"),
    [
        ({}, "https", None),
        ({"ALL_PROXY": S5H}, "https", S5H),
        ({"all_proxy": S5H, "ALL_PROXY": "socks5h://other:1"}, "https", S5H),  # lowercase wins
        ({"all_proxy": "", "ALL_PROXY": S5H}, "https", S5H),  # empty counts as unset
        ({"all_proxy": " \t", "ALL_PROXY": S5H}, "https", S5H),  # and so do spaces
        ({"https_proxy": "  ", "ALL_PROXY": S5H}, "https", S5H),
        ({"https_proxy": "\n", "socks_proxy": S5H}, "https", S5H),
        ({"ALL_PROXY": f"  {S5H}\n"}, "https", S5H),  # surrounding spaces go
        ({"https_proxy": S5, "ALL_PROXY": S5H}, "https", S5),  # the scheme's own first
        ({"HTTPS_PROXY": S5, "ALL_PROXY": S5H}, "https", S5),
        ({"http_proxy": S5, "ALL_PROXY": S5H}, "https", S5H),  # another scheme's
        ({"socks_proxy": S5H}, "http", S5H),
        ({"SOCKS_PROXY": S5H, "all_proxy": S5}, "http", S5),  # ALL_PROXY before socks_proxy
        # The first variable that applies decides: an HTTP proxy there means
        # no SOCKS5 proxy for this URL, not a fall-back to ALL_PROXY.
        ({"https_proxy": "http://corp:3128", "ALL_PROXY": S5H}, "https", None),
        # Under CGI, HTTP_PROXY is the request's "Proxy:" header (httpoxy):
        # ignored, whatever it names, while the lowercase name still counts.
        (
            {"REQUEST_METHOD": "GET", "HTTP_PROXY": "socks5h://evil:1", "ALL_PROXY": S5H},
            "http",
            S5H,
        ),
        ({"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://evil:1", "ALL_PROXY": S5H}, "http", S5H),
        ({"REQUEST_METHOD": "GET", "http_proxy": S5, "ALL_PROXY": S5H}, "http", S5),
        ({"REQUEST_METHOD": "GET", "HTTPS_PROXY": S5, "ALL_PROXY": S5H}, "https", S5),
    ],
)
def test_which_variable_applies(environ: dict[str, str], scheme: str, expected: str | None) -> None:
    proxy = proxy_from_environment(scheme, "example.com", environ)
    assert proxy == (None if expected is None else Proxy.from_url(expected))


def test_the_url_and_its_variable_are_reported() -> None:
    env = {"https_proxy": "http://corp:3128"}
    assert proxy_url_from_environment("https", env) == ("HTTPS_PROXY", "http://corp:3128")
    assert proxy_url_from_environment(None, {"ALL_PROXY": S5H}) == ("ALL_PROXY", S5H)
    assert proxy_url_from_environment("http", {}) is None
    assert proxy_url_from_environment("http", {"http_proxy": " ", "ALL_PROXY": "  "}) is None


# The first variable that applies, when it names an HTTP proxy: meant for
# another program (curl, requests), so direct for us, as documented.  A value
# with no scheme is an HTTP proxy to curl and requests.
@pytest.mark.parametrize(
    "url",
    [
        "http://corp:3128",
        "HTTPS://corp:3128",
        "corp:3128",
        "127.0.0.1:3128",
        "[::1]:3128",
        "user:pw@corp:3128",
        "http:/corp:3128",
        # A user name with "sock" in it: the host is what names the proxy.
        "sockuser:pw@corp:3128",
        "sockuser@corp:3128",
    ],
)
def test_an_http_proxy_means_direct_without_falling_back(url: str) -> None:
    env = {"https_proxy": url, "ALL_PROXY": S5H}
    assert proxy_from_environment("https", "example.com", env) is None


# A SOCKS5 scheme with a malformation after it: Proxy.from_url judges it (as
# for the command line's --proxy) and the error names the variable.
@pytest.mark.parametrize(
    "url",
    [
        "socks5h:/127.0.0.1:1080",
        "socks5h:127.0.0.1:1080",
        "SOCKS5H:/127.0.0.1:1080",
        "socks5:127.0.0.1:1080",
        "socks5h:///127.0.0.1:1080",
        "socks5h//127.0.0.1:1080",
        "socks5h:",
    ],
)
def test_a_socks5_url_with_bad_slashes_is_an_error_not_a_direct_connection(url: str) -> None:
    with pytest.raises(ValueError, match=r"^ALL_PROXY: ") as info:
        proxy_from_environment("http", "example.com", {"ALL_PROXY": url})
    with pytest.raises(ValueError) as given:
        Proxy.from_url(url)
    assert str(info.value) == f"ALL_PROXY: {given.value}"


# A scheme typo, or a scheme no SOCKS5 client handles: an error in the
# variable that applies, and no fall-back to the next one.
@pytest.mark.parametrize(
    "url",
    [
        "sock5h://127.0.0.1:1080",
        "socks5hh://127.0.0.1:1080",
        "socks4h://127.0.0.1:1080",
        "Socks6://127.0.0.1:1080",
        "sock5h:/127.0.0.1:1080",
        "socks4:127.0.0.1:1080",
        "socks.corp:1080",  # a SOCKS proxy without its scheme
        "user:pw@socks.corp:1080",
        "socks5h:/user:pw@127.0.0.1:1080",
        "ftp://127.0.0.1:1080",
        "htp://127.0.0.1:3128",
    ],
)
def test_an_unknown_proxy_scheme_is_an_error_not_a_direct_connection(url: str) -> None:
    env = {"https_proxy": url, "ALL_PROXY": S5H}
    with pytest.raises(ValueError, match=r"^HTTPS_PROXY: "):
        proxy_from_environment("https", "example.com", env)


@pytest.mark.parametrize(
    ("host", "direct"),
    [
        ("example.com", True),
        ("www.example.com", True),
        ("badexample.com", False),
        ("10.1.2.3", True),
        ("localhost", True),  # always local
        ("127.0.0.1", True),
        ("other.org", False),
    ],
)
def test_no_proxy_sends_matching_hosts_direct(host: str, direct: bool) -> None:
    env = {"ALL_PROXY": S5H, "no_proxy": "example.com, 10.0.0.0/8"}
    proxy = proxy_from_environment("http", host, env)
    assert (proxy is None) is direct


@pytest.mark.parametrize("url", ["socks4://h:1080", "socks://h:1080", "SOCKS4A://h:1"])
def test_a_socks4_proxy_is_an_error_not_a_direct_connection(url: str) -> None:
    with pytest.raises(ValueError, match="SOCKS5 only"):
        proxy_from_environment("http", "example.com", {"ALL_PROXY": url})


def test_a_malformed_url_does_not_show_its_password() -> None:
    with pytest.raises(ValueError) as info:
        proxy_from_environment("http", "h", {"ALL_PROXY": "socks5h://u:Sekr1t@h:99999"})
    assert "Sekr1t" not in str(info.value)


def test_no_proxy_entries_with_a_port_apply_to_that_port() -> None:
    env = {"ALL_PROXY": S5H, "NO_PROXY": "example.com:8080"}
    assert proxy_from_environment("http", "example.com", env, port=8080) is None
    assert proxy_from_environment("http", "example.com", env, port=80) is not None
    assert proxy_from_environment("http", "example.com", env) is not None


# --------------------------------------------------------------------------
# No password reachable from the error (docs/errors.md): not in the message,
# nor in repr() of a local of any socks5client frame in the traceback of the
# error or of an exception chained to it.  Error reporters record those.

#: Nothing else in this file contains this text.
PASSWORD = "Pw-environ-7a2c-never-LEAK"

#: The malformed URLs a user may put in a proxy variable, by kind.
MALFORMED = {
    # A '#' in the password that was not percent-encoded: a fragment.
    "unencoded-hash": f"socks5h://user:{PASSWORD}#1@127.0.0.1:1080",
    "socks4": f"socks4://user:{PASSWORD}@127.0.0.1:1080",
    "bad-port": f"socks5h://user:{PASSWORD}@127.0.0.1:99999",
    "missing-slash": f"socks5h:/user:{PASSWORD}@127.0.0.1:1080",
    "no-slashes": f"socks5h:user:{PASSWORD}@127.0.0.1:1080",
    "scheme-typo": f"sock5h://user:{PASSWORD}@127.0.0.1:1080",
}


@pytest.mark.parametrize("url", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_url_leaves_its_password_in_no_traceback_local(url: str) -> None:
    with pytest.raises(ValueError) as info:
        proxy_from_environment("http", "example.com", {"ALL_PROXY": url})
    assert password_places(info.value, PASSWORD) == []
    # Chained to nothing, and still saying where the URL came from.
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert str(info.value).startswith("ALL_PROXY")


# --------------------------------------------------------------------------
# The adapters in environment mode.  The site is on 127.0.0.1 under a .test
# name that a fake socket.getaddrinfo maps there, recording the lookups made
# on the client's thread: a direct connection (and its local DNS) would
# reach the site, so "raises" proves nothing went around the proxy.  The
# reference server resolves on daemon threads, which are not recorded.

#: The site's name; never given to the real resolver.
SITE_NAME = "env-site.test"

#: Every wait in these tests is bounded by this.
TIMEOUT = 5.0

_PROXY_VARIABLES = [
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "socks_proxy", "no_proxy")
    for name in (base, base.upper())
]


class _Site(http.server.ThreadingHTTPServer):
    daemon_threads = True
    paths: list[str]

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up this machine's FQDN.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Site

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body = b"site"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[_Site]:
    """A plain HTTP site on 127.0.0.1 that records the paths it served."""
    server = _Site(("127.0.0.1", 0), _Handler)
    server.paths = []
    # A short poll: shutdown() waits for the next one.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Teach getaddrinfo :data:`SITE_NAME`; the client-side lookups of it."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    seen: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == SITE_NAME:
            if not threading.current_thread().daemon:
                seen.append(host)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def _get_with_urllib(url: str) -> bytes:
    from socks5client.contrib.urllib import build_opener

    with build_opener().open(url, timeout=TIMEOUT) as response:
        return bytes(response.read())


def _get_with_requests(url: str) -> bytes:
    requests = pytest.importorskip("requests")
    from socks5client.contrib.requests import SOCKSAdapter

    with requests.Session() as session:  # trust_env as by default
        session.mount("http://", SOCKSAdapter())
        return bytes(session.get(url, timeout=TIMEOUT).content)


def _get_with_httpx(url: str) -> bytes:
    httpx = pytest.importorskip("httpx")
    from socks5client.contrib.httpx import SOCKSTransport

    with httpx.Client(transport=SOCKSTransport(), timeout=TIMEOUT) as client:
        return bytes(client.get(url).content)


def _adapter_error(name: str) -> type[BaseException]:
    """What the adapter raises for a proxy variable it cannot use (docs/recipes.md)."""
    if name == "requests":
        return pytest.importorskip("requests").exceptions.InvalidProxyURL  # type: ignore[no-any-return]
    if name == "httpx":
        return pytest.importorskip("httpx").ProxyError  # type: ignore[no-any-return]
    return ValueError


ADAPTERS: dict[str, Callable[[str], bytes]] = {
    "urllib": _get_with_urllib,
    "requests": _get_with_requests,
    "httpx": _get_with_httpx,
}


@pytest.mark.parametrize(
    "template",
    ["socks5h:/127.0.0.1:{port}", "socks5h:127.0.0.1:{port}", "sock5h://127.0.0.1:{port}"],
    ids=["missing-slash", "no-slashes", "scheme-typo"],
)
@pytest.mark.parametrize("adapter", ADAPTERS.keys())
def test_a_malformed_proxy_variable_fails_the_request_instead_of_going_direct(
    adapter: str,
    template: str,
    site: _Site,
    lookups: list[str],
    socks_server: SocksServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", template.format(port=socks_server.port))
    with pytest.raises(_adapter_error(adapter)) as info:
        ADAPTERS[adapter](f"http://{SITE_NAME}:{site.server_port}/")
    assert "ALL_PROXY" in str(info.value)
    assert site.paths == []
    assert lookups == []
    assert socks_server.connections == 0


@pytest.mark.parametrize("adapter", ADAPTERS.keys())
def test_a_proxy_variable_of_spaces_lets_all_proxy_apply(
    adapter: str,
    site: _Site,
    lookups: list[str],
    socks_server: SocksServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("http_proxy", "  ")
    monkeypatch.setenv("ALL_PROXY", f"socks5h://127.0.0.1:{socks_server.port}")
    assert ADAPTERS[adapter](f"http://{SITE_NAME}:{site.server_port}/") == b"site"
    assert [(r.dst_addr, r.dst_port) for r in socks_server.records] == [
        (SITE_NAME, site.server_port)
    ]
    assert lookups == []
