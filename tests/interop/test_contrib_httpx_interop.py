"""``SOCKSTransport`` through real SOCKS5 servers: microsocks and Dante, with and without auth.

The sites are those of ``tests/test_contrib_httpx.py`` (an HTTP and an
HTTPS site in threads of this process, on 127.0.0.1), reached by the name
``localhost``, which both proxies resolve from /etc/hosts.  Pooling is
counted where each proxy shows it: at the site (one TCP connection from
the proxy per SOCKS5 CONNECT) for both, and in Dante's log (one
``tcp/connect`` line per CONNECT) for Dante.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

import httpx
import pytest

from socks5client import errors
from socks5client.contrib.httpx import SOCKSTransport

import test_contrib_httpx as base  # isort: skip  (tests/ is on sys.path)

if TYPE_CHECKING:
    from .conftest import ProxyServer

pytestmark = pytest.mark.interop

#: The name the proxies resolve (from /etc/hosts).
NAME = "localhost"
TIMEOUT = base.TIMEOUT

SERVERS = ["microsocks", "dante", "microsocks_auth", "dante_auth"]


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in base._PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def sites() -> Iterator[Callable[..., base.Site]]:
    started: list[base.Site] = []

    def make(tls: Any = None) -> base.Site:
        site = base.Site(tls)
        started.append(site)
        return site

    yield make
    for site in started:
        site.close()


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


def dante_connects_to(server: ProxyServer, mark: int, port: int, count: int) -> int:
    """How many CONNECTs to 127.0.0.1:``port`` Dante logged after ``mark`` (waits for ``count``)."""
    pattern = rf"tcp/connect \[: .* 127\.0\.0\.1\.{port}\b"
    log = server.wait_for_log(lambda text: len(re.findall(pattern, text)) >= count, mark)
    return len(re.findall(pattern, log))


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_http_get_through_each_server(server: ProxyServer, sites: Callable[..., base.Site]) -> None:
    site = sites()
    with httpx.Client(transport=SOCKSTransport(server.url()), timeout=TIMEOUT) as client:
        response = client.get(site.url(host=NAME))
    assert response.status_code == 200
    assert response.content == site.body
    assert [host for _, host, _ in site.requests] == [f"{NAME}:{site.port}"]


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_https_get_through_each_server_checks_the_name(
    server: ProxyServer, sites: Callable[..., base.Site], ca: Any
) -> None:
    server_tls, client_tls = base.tls_pair(ca, NAME)
    site = sites(server_tls)
    transport = SOCKSTransport(server.url(), verify=client_tls)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        response = client.get(site.url(host=NAME))
    assert response.content == site.body
    assert site.sni == [NAME]


@pytest.mark.parametrize("server", ["microsocks", "dante"], indirect=True)
def test_socks5_resolves_here_through_each_server(
    server: ProxyServer, sites: Callable[..., base.Site]
) -> None:
    site = sites()
    transport = SOCKSTransport(server.url(remote_dns=False))
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        response = client.get(site.url(host=NAME))
    assert response.content == site.body
    assert [host for _, host, _ in site.requests] == [f"{NAME}:{site.port}"]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_five_requests_make_one_connection_through_each_server(
    server: ProxyServer, tls: bool, sites: Callable[..., base.Site], ca: Any
) -> None:
    verify: Any = True
    server_tls = None
    if tls:
        server_tls, verify = base.tls_pair(ca, NAME)
    site = sites(server_tls)
    mark = server.log_size()
    transport = SOCKSTransport(server.url(), verify=verify)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        for _ in range(5):
            assert client.get(site.url(host=NAME)).content == site.body
    assert len(site.requests) == 5
    assert len(site.peers()) == 1
    if server.name.startswith("dante"):
        assert dante_connects_to(server, mark, site.port, 1) == 1


@pytest.mark.parametrize("server", ["microsocks_auth", "dante_auth"], indirect=True)
def test_wrong_password_raises_proxy_error(
    server: ProxyServer, sites: Callable[..., base.Site]
) -> None:
    site = sites()
    transport = SOCKSTransport(server.url(password="not-the-password"))
    client = httpx.Client(transport=transport, timeout=TIMEOUT)
    with client, pytest.raises(httpx.ProxyError) as info:
        client.get(site.url(host=NAME))
    assert isinstance(info.value.__cause__, errors.SOCKS5AuthError)
    assert "not-the-password" not in str(info.value)
    assert site.requests == []


@pytest.mark.parametrize("server", ["microsocks", "dante"], indirect=True)
def test_refused_destination_raises_connect_error(server: ProxyServer, refused_port: int) -> None:
    client = httpx.Client(transport=SOCKSTransport(server.url()), timeout=TIMEOUT)
    with client, pytest.raises(httpx.ConnectError) as info:
        client.get(f"http://127.0.0.1:{refused_port}/")
    cause = info.value.__cause__
    assert isinstance(cause, errors.SOCKS5ConnectionRefusedError)
    assert cause.reply_code == 5
