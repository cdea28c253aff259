"""Unmodified clients under ``socks5client.patch()`` through Dante: the name, never a lookup.

The same clients and checks as ``tests/test_patch_clients.py`` (whose
helpers this module uses), with Dante as the proxy:

1. the exchange works end to end through Dante;
2. Dante received the *name*: with ``debug: 1`` it logs every request as
   it parsed it (``dorequest(): ... Packet: VER: 5 CMD: 1 FLAG: 0 ATYP: 3
   address: localhost.PORT``), which :func:`dante_requests` reads -- its
   ordinary connect lines only show the address it resolved the name to;
3. no name reached this process's real resolver (the recorder of
   ``test_patch_clients``; Dante resolves in its own process).

The Dante here is its own instance (``dante_debug``), started with the
fixtures' machinery plus ``debug: 1``; like every interop server it skips
when missing locally and fails under ``CI=true``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

import socks5client

from .conftest import _start_dante

import test_patch_clients as clients  # isort: skip  (tests/ is on sys.path)

if TYPE_CHECKING:
    from .conftest import FTPServerProcess, ProxyServer

pytestmark = pytest.mark.interop

NAME = clients.NAME
CMD_CONNECT, CMD_BIND = 1, 2
ATYP_IPV4, ATYP_DOMAIN = 1, 3

_REQUEST = re.compile(
    r"dorequest\(\): command \d+ request received .*?"
    r"Packet: VER: 5 CMD: (\d+) FLAG: \d+ ATYP: (\d+) address: (\S+)\.(\d+)"
)


def dante_requests(log: str) -> list[tuple[int, int, str, int]]:
    """(CMD, ATYP, address, port) of every request in Dante's debug log, in order."""
    return [(int(c), int(a), host, int(p)) for c, a, host, p in _REQUEST.findall(log)]


def requests_since(dante: ProxyServer, mark: int, count: int) -> list[tuple[int, int, str, int]]:
    """The requests Dante logged after ``mark``, once there are ``count`` of them."""
    log = dante.wait_for_log(lambda text: len(dante_requests(text)) >= count, mark)
    return dante_requests(log)


@pytest.fixture(scope="module")
def dante_debug(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    """Dante (method none) that logs each request as received: ``debug: 1``."""
    server = _start_dante(tmp_path_factory.mktemp("dante_debug"), "dante_debug", None, "debug: 1")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clients.clear_proxy_environment(monkeypatch)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[clients.Resolver]:
    yield clients.install_recorder(monkeypatch)
    socks5client.unpatch()


@pytest.fixture
def sites() -> Iterator[Callable[..., clients.Site]]:
    started: list[clients.Site] = []

    def make(host: str = "127.0.0.1", tls: Any = None) -> clients.Site:
        site = clients.Site(host, tls)
        started.append(site)
        return site

    yield make
    socks5client.unpatch()
    for site in started:
        site.close()


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


# ---------------------------------------------------------------------------
# HTTP and HTTPS


@pytest.mark.parametrize("client", list(clients.HTTP_CLIENTS))
def test_http_client_through_dante_sends_the_name(
    client: str,
    dante_debug: ProxyServer,
    sites: Callable[..., clients.Site],
    resolver: clients.Resolver,
) -> None:
    site = sites()
    mark = dante_debug.log_size()
    clients.patch_for(resolver, dante_debug.url())
    body = clients.HTTP_CLIENTS[client](clients.Target(NAME, site.port))
    assert body == site.body
    assert site.hosts == [f"{NAME}:{site.port}"]
    assert requests_since(dante_debug, mark, 1) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, site.port)]
    clients.assert_no_lookup(resolver)


@pytest.mark.parametrize("client", list(clients.HTTP_CLIENTS))
def test_https_client_through_dante_checks_the_name(
    client: str,
    dante_debug: ProxyServer,
    sites: Callable[..., clients.Site],
    resolver: clients.Resolver,
    ca: Any,
    tmp_path: Path,
) -> None:
    server_tls, template = clients.tls_contexts(ca, tmp_path, NAME)
    site = sites(tls=server_tls)
    mark = dante_debug.log_size()
    clients.patch_for(resolver, dante_debug.url())
    body = clients.HTTP_CLIENTS[client](dataclasses.replace(template, port=site.port))
    assert body == site.body
    assert site.sni == [NAME]
    assert requests_since(dante_debug, mark, 1) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, site.port)]
    clients.assert_no_lookup(resolver)


@pytest.mark.parametrize("client", ["requests", "http.client"])
def test_ipv6_proxy_address_through_dante(
    client: str,
    dante_debug: ProxyServer,
    sites: Callable[..., clients.Site],
    resolver: clients.Resolver,
) -> None:
    # Dante's [::1] listener: synthetic addresses come from fd53:6f63:6b35::/48.
    site = sites()
    mark = dante_debug.log_size()
    clients.patch_for(resolver, dante_debug.url(ipv6=True))
    assert clients.HTTP_CLIENTS[client](clients.Target(NAME, site.port)) == site.body
    assert requests_since(dante_debug, mark, 1) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, site.port)]
    clients.assert_no_lookup(resolver)


@pytest.mark.skipif(
    not clients.etc_hosts_has(clients.IPV6_NAME), reason=f"/etc/hosts has no {clients.IPV6_NAME}"
)
def test_ip6_localhost_through_dante(
    dante_debug: ProxyServer, sites: Callable[..., clients.Site], resolver: clients.Resolver
) -> None:
    site = sites("::1")
    mark = dante_debug.log_size()
    clients.patch_for(resolver, dante_debug.url(), clients.IPV6_NAME)
    assert clients.get_urllib(clients.Target(clients.IPV6_NAME, site.port)) == site.body
    assert requests_since(dante_debug, mark, 1) == [
        (CMD_CONNECT, ATYP_DOMAIN, clients.IPV6_NAME, site.port)
    ]
    clients.assert_no_lookup(resolver)


# ---------------------------------------------------------------------------
# SMTP and FTP


def test_smtplib_through_dante(dante_debug: ProxyServer, resolver: clients.Resolver) -> None:
    sink = clients.SMTPSink()
    try:
        mark = dante_debug.log_size()
        clients.patch_for(resolver, dante_debug.url())
        sent = clients.send_mail(NAME, sink.port)
        clients.assert_delivered(sink, sent)
        assert requests_since(dante_debug, mark, 1) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, sink.port)]
        clients.assert_no_lookup(resolver)
    finally:
        socks5client.unpatch()
        sink.close()


@pytest.fixture
def ftp_payload(ftp_server: FTPServerProcess) -> Iterator[tuple[str, bytes]]:
    name = "patch-payload.bin"
    payload = os.urandom(150 * 1024 + 11)
    path = ftp_server.root / name
    path.write_bytes(payload)
    yield name, payload
    path.unlink()


def test_ftplib_passive_through_dante(
    dante_debug: ProxyServer,
    ftp_server: FTPServerProcess,
    ftp_payload: tuple[str, bytes],
    resolver: clients.Resolver,
) -> None:
    name, payload = ftp_payload
    mark = dante_debug.log_size()
    clients.patch_for(resolver, dante_debug.url())
    data = clients.ftp_retr(
        NAME, ftp_server.port, ftp_server.user, ftp_server.password, name, passive=True
    )
    assert data == payload
    control, data_channel = requests_since(dante_debug, mark, 2)
    assert control == (CMD_CONNECT, ATYP_DOMAIN, NAME, ftp_server.port)
    assert data_channel[:3] == (CMD_CONNECT, ATYP_DOMAIN, NAME)
    clients.assert_no_lookup(resolver)


def test_ftplib_active_through_dante_bind(
    dante_debug: ProxyServer,
    ftp_server: FTPServerProcess,
    ftp_payload: tuple[str, bytes],
    resolver: clients.Resolver,
) -> None:
    name, payload = ftp_payload
    announced_before = len(ftp_server.announced())
    mark = dante_debug.log_size()
    clients.patch_for(resolver, dante_debug.url(), bind=True)
    data = clients.ftp_retr(
        NAME, ftp_server.port, ftp_server.user, ftp_server.password, name, passive=False
    )
    assert data == payload
    control, bind = requests_since(dante_debug, mark, 2)
    assert control == (CMD_CONNECT, ATYP_DOMAIN, NAME, ftp_server.port)
    # ftplib's create_server(("", 0)) became a BIND for any peer, and the
    # PORT command named the port Dante listens on for it.
    assert bind[:2] == (CMD_BIND, ATYP_IPV4)
    ((kind, host, port),) = ftp_server.announced()[announced_before:]
    assert (kind, host) == ("PORT", "127.0.0.1")
    log = dante_debug.wait_for_log(lambda text: f"127.0.0.1.{port} " in text, mark)
    assert re.search(rf"tcp/bindreply \[: \S+ 127\.0\.0\.1\.{port} ", log), log[-4000:]
    clients.assert_no_lookup(resolver)


# ---------------------------------------------------------------------------
# A real program through the command line, with a Python child, via Dante


def test_program_and_its_python_child_through_dante_from_the_command_line(
    dante_debug: ProxyServer, tmp_path: Path
) -> None:
    import test_cli as cli  # isort: skip  (tests/ is on sys.path)

    site = cli.http.server.ThreadingHTTPServer(("127.0.0.1", 0), cli._Handler)
    site.daemon_threads = True
    thread = cli.threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        port = site.server_address[1]
        url = f"http://{NAME}:{port}/"
        cli.write(tmp_path / "child.py", cli.FETCH + "print('child', fetch(sys.argv[1]))\n")
        script = cli.write(
            tmp_path / "main.py",
            cli.FETCH
            + "import subprocess\n"
            + "print('parent', fetch(sys.argv[1]), flush=True)\n"
            + "subprocess.run([sys.executable, sys.argv[2], sys.argv[1] + 'child'], check=True)\n"
            + "sys.exit(4)\n",
        )
        mark = dante_debug.log_size()
        result = cli.run_cli(
            ["--proxy", dante_debug.url(), "--no-proxy", "", str(script), url, "child.py"],
            cwd=tmp_path,
        )
    finally:
        site.shutdown()
        site.server_close()
        thread.join(5)
    assert result.returncode == 4, result.stderr
    assert result.stdout.splitlines() == ["parent hello /", "child hello /child"]
    assert requests_since(dante_debug, mark, 2)[-2:] == [(CMD_CONNECT, ATYP_DOMAIN, NAME, port)] * 2
