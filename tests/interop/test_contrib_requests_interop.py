"""``SOCKSAdapter`` through real SOCKS5 servers: microsocks and Dante.

The destination is the HTTP(S) site of ``tests/test_contrib_requests.py``
on 127.0.0.1, asked for by the name ``localhost``, which each proxy
resolves itself.  For each server, with and without username/password:

* GET over HTTP and HTTPS (SNI and the certificate checked against
  ``localhost``), five times on one session: the site accepts exactly one
  connection, so the proxy made one tunnel, i.e. one SOCKS5 handshake;
* Dante, started with ``debug: 1`` here, logs every request it parses
  (see ``test_patch_interop.py``): five GETs show one CONNECT, for the name;
* the wrong password is ``requests.exceptions.ProxyError`` (caused by
  ``SOCKS5AuthError``), a refused destination ``ConnectionError`` (caused
  by the proxy's reply code 5).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import requests
import trustme

import socks5client
from socks5client.contrib.requests import SOCKSAdapter

from .conftest import _start_dante
from .test_patch_interop import ATYP_DOMAIN, CMD_CONNECT, dante_requests, requests_since

import test_contrib_requests as base  # isort: skip  (tests/ is on sys.path)

if TYPE_CHECKING:
    from .conftest import ProxyServer

pytestmark = pytest.mark.interop

NAME = "localhost"
TIMEOUT = 10.0
ALL_SERVERS = ["microsocks", "microsocks_auth", "dante", "dante_auth"]
AUTH_SERVERS = ["microsocks_auth", "dante_auth"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "socks_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def dante_logging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    """Dante (method none) that logs each request it receives: ``debug: 1``."""
    server = _start_dante(tmp_path_factory.mktemp("dante_req"), "dante_req", None, "debug: 1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def cafile(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def site_factory(ca: Any) -> Iterator[Callable[[bool], base.Site]]:
    started: list[base.Site] = []

    def make(tls: bool) -> base.Site:
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(NAME).configure_cert(context)
        site = base.Site(NAME, context)
        started.append(site)
        return site

    yield make
    for site in started:
        site.close()


@pytest.fixture
def session_for() -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(proxy_url: str, **kwargs: Any) -> Any:
        session = requests.Session()
        adapter = SOCKSAdapter(proxy_url, **kwargs)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_get_five_times_over_one_tunnel(
    server: ProxyServer,
    tls: bool,
    site_factory: Callable[[bool], base.Site],
    session_for: Callable[..., Any],
    cafile: str,
) -> None:
    site = site_factory(tls)
    session = session_for(server.url())
    for _ in range(5):
        response = session.get(site.url(), timeout=TIMEOUT, verify=cafile)
        assert response.status_code == 200
        assert response.text == f"hello from {NAME}"
    assert [headers["Host"] for _path, headers in site.requests] == [f"{NAME}:{site.port}"] * 5
    if tls:
        assert site.sni == [NAME]
    # One TCP connection reached the site: one tunnel, one handshake.
    assert site.connections == 1, server.logs()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_dante_logs_one_connect_for_five_requests(
    dante_logging: ProxyServer,
    tls: bool,
    site_factory: Callable[[bool], base.Site],
    session_for: Callable[..., Any],
    cafile: str,
) -> None:
    site = site_factory(tls)
    mark = dante_logging.log_size()
    session = session_for(dante_logging.url())
    for _ in range(5):
        assert session.get(site.url(), timeout=TIMEOUT, verify=cafile).status_code == 200
    session.close()
    # The first request's log line, then a moment for any later one to show.
    requests_since(dante_logging, mark, 1)
    log = dante_logging.wait_for_log(lambda text: len(dante_requests(text)) > 1, mark, 1.0)
    assert dante_requests(log) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, site.port)]
    assert site.connections == 1


@pytest.mark.parametrize("server", AUTH_SERVERS, indirect=True)
def test_wrong_password_is_proxy_error(
    server: ProxyServer,
    site_factory: Callable[[bool], base.Site],
    session_for: Callable[..., Any],
) -> None:
    site = site_factory(False)
    session = session_for(server.url(password="not-the-password"))
    with pytest.raises(requests.exceptions.ProxyError) as info:
        session.get(site.url(), timeout=TIMEOUT)
    assert isinstance(info.value.__cause__, socks5client.SOCKS5AuthError)
    assert "not-the-password" not in str(info.value)
    assert not site.requests


@pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)
def test_refused_destination_is_connection_error(
    server: ProxyServer, session_for: Callable[..., Any]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    session = session_for(server.url())
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get(f"http://{NAME}:{port}/", timeout=TIMEOUT)
    assert not isinstance(info.value, requests.exceptions.ProxyError)
    cause = info.value.__cause__
    assert isinstance(cause, socks5client.SOCKS5ConnectionRefusedError), cause
