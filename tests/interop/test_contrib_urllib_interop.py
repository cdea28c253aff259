"""``socks5client.contrib.urllib`` through real SOCKS5 servers: microsocks and Dante.

The happy paths of ``tests/test_contrib_urllib.py`` (whose site and
fixtures' helpers this module uses), with and without authentication:
http and https GET with the name sent to the proxy (``socks5h``) or
resolved here (``socks5``), a redirect to another host, PySocks'
``SocksiPyHandler`` form, and the errors a real server gives for a wrong
password and a refused port.

Each success also checks that the request really went through the proxy:
the connection the handler made ends at the proxy's address, and the site
saw its request come from another socket than that one (the proxy's).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

import pytest

import socks5client
from socks5client import errors
from socks5client.contrib.urllib import SocksiPyHandler, build_opener

import test_contrib_urllib as unit  # isort: skip  (tests/ is on sys.path)

if TYPE_CHECKING:
    from .conftest import ProxyServer

pytestmark = pytest.mark.interop

TIMEOUT = 10.0

ALL_SERVERS = ["microsocks", "microsocks_auth", "dante", "dante_auth"]
AUTH_SERVERS = ["microsocks_auth", "dante_auth"]


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in unit._PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def client_tls(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def sites(ca: Any) -> Iterator[Callable[..., unit.Site]]:
    started: list[unit.Site] = []

    def make(tls_for: tuple[str, ...] | None = None) -> unit.Site:
        tls = None
        if tls_for is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*tls_for).configure_cert(tls)
        site = unit.Site(tls)
        started.append(site)
        return site

    yield make
    for site in started:
        site.close()


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[unit.Made]:
    return unit.record_connections(monkeypatch)


def fetch(opener: urllib.request.OpenerDirector, url: str) -> bytes:
    with opener.open(url, timeout=TIMEOUT) as response:
        body: bytes = response.read()
        return body


def assert_through(server: ProxyServer, site: unit.Site, made: list[unit.Made]) -> None:
    """Every request of ``site`` came over a connection made to ``server``."""
    assert made, "no connection went through socks5client"
    assert {m.proxy_peer[:2] for m in made} == {(server.host, server.port)}
    ours = {m.local[:2] for m in made}
    assert all(peer[:2] not in ours for _, _, peer in site.requests), site.requests


@pytest.mark.parametrize("remote_dns", [True, False], ids=["socks5h", "socks5"])
@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_http_get(
    server: ProxyServer,
    sites: Callable[..., unit.Site],
    made: list[unit.Made],
    remote_dns: bool,
) -> None:
    site = sites()
    assert fetch(build_opener(server.url(remote_dns=remote_dns)), site.url()) == site.body
    assert [host for _, host, _ in site.requests] == [f"localhost:{site.port}"]
    assert_through(server, site, made)
    assert all(m.proxy is not None and m.proxy.remote_dns is remote_dns for m in made)


@pytest.mark.parametrize("remote_dns", [True, False], ids=["socks5h", "socks5"])
@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_https_get_checks_the_site_name(
    server: ProxyServer,
    sites: Callable[..., unit.Site],
    client_tls: ssl.SSLContext,
    made: list[unit.Made],
    remote_dns: bool,
) -> None:
    site = sites(tls_for=("localhost",))
    opener = build_opener(server.url(remote_dns=remote_dns), context=client_tls)
    assert fetch(opener, site.url()) == site.body
    assert site.sni == ["localhost"]
    assert_through(server, site, made)


@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_https_certificate_for_another_name_fails(
    server: ProxyServer, sites: Callable[..., unit.Site], client_tls: ssl.SSLContext
) -> None:
    site = sites(tls_for=("other.test",))
    opener = build_opener(server.url(), context=client_tls)
    with pytest.raises(urllib.error.URLError) as info:
        opener.open(site.url(), timeout=TIMEOUT)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_redirect_to_another_host(
    server: ProxyServer, sites: Callable[..., unit.Site], made: list[unit.Made]
) -> None:
    first, second = sites(), sites()
    target = second.url(host="127.0.0.1", path="/final")
    opener = build_opener(server.url())
    with opener.open(first.url(path=f"/redirect?to={target}"), timeout=TIMEOUT) as response:
        assert response.read() == second.body
        assert response.geturl() == target
    assert len(made) == 2
    assert_through(server, first, made)
    assert_through(server, second, made)


@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_socksipy_handler(
    server: ProxyServer, sites: Callable[..., unit.Site], made: list[unit.Made]
) -> None:
    site = sites()
    handler = SocksiPyHandler(
        socks5client.PROXY_TYPE_SOCKS5,
        server.host,
        server.port,
        True,
        server.username,
        server.password,
    )
    assert fetch(urllib.request.build_opener(handler), site.url()) == site.body
    assert_through(server, site, made)


@pytest.mark.parametrize("server", AUTH_SERVERS, indirect=True)
def test_wrong_password(server: ProxyServer, sites: Callable[..., unit.Site]) -> None:
    site = sites()
    opener = build_opener(server.url(password="not-the-password"))
    with pytest.raises(urllib.error.URLError) as info:
        opener.open(site.url(), timeout=TIMEOUT)
    assert isinstance(info.value.reason, errors.SOCKS5AuthError)
    assert "not-the-password" not in str(info.value)
    assert site.requests == []


@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_refused_port(server: ProxyServer) -> None:
    opener = build_opener(server.url())
    with pytest.raises(urllib.error.URLError) as info:
        opener.open(f"http://127.0.0.1:{unit.closed_port()}/", timeout=TIMEOUT)
    assert isinstance(info.value.reason, errors.SOCKS5ConnectionRefusedError)
    assert isinstance(info.value.reason, ConnectionRefusedError)
