"""Unmodified clients under ``socks5client.patch()``: through the proxy, with no DNS leak.

Each test starts its destination (an HTTP or HTTPS site, an SMTP sink, an
FTP server) on a loopback address *before* patching, then patches the
process with ``no_proxy=""`` so that the name ``localhost`` -- which the
proxy can resolve from /etc/hosts -- is a proxied name, runs a stock client
against ``localhost`` and checks three things:

1. the exchange worked end to end (the body, the file or the message arrived
   intact, and the destination saw the name where the protocol carries it:
   the HTTP ``Host`` header, the TLS SNI);
2. the reference SOCKS server received the *name*: one CONNECT per
   connection with ATYP domain and ``localhost``;
3. no name reached the real resolver from the client's thread.

For (3) the ``resolver`` fixture puts recorders under the socket module
(``_socket.getaddrinfo`` and the C functions ``socket.gethostbyname`` and
friends) before ``patch()`` saves them -- a copy of the approach of
``test_patch.py``.  A lookup of the forbidden name raises ``gaierror``, so a
leak breaks the request as well as being recorded; the check afterwards is
stricter still: every lookup the client's thread made after ``patch()`` must
be of an IP literal (the library resolving the proxy's own address).  The
reference server resolves the name on its daemon threads, which the
recorder ignores.

Why each client would fail without the patch's leak protection:
``http.client``, ``urllib``, ``ftplib``, ``smtplib`` and ``httpx`` call
``socket.create_connection``, which the patch replaces; a version that
resolved first would ask the resolver for ``localhost`` (refused here) and
send an IPv4 address to the proxy.  ``requests`` (urllib3) calls
``socket.getaddrinfo`` itself and connects to what it got: only the
synthetic address, mapped back to the name at ``connect()``, keeps the name
from the resolver.  ``smtplib`` also looks up the machine's own name
(``getfqdn``, ``gethostbyname(gethostname())``), which is a proxied name
with ``no_proxy=""``, so it must be answered without a lookup too.

The last test runs a client in a network namespace of its own (``unshare``)
where only loopback exists and the only name server is a trap on
127.0.0.1:53 that records every query: with the patch, a name only the proxy
can resolve works and the trap hears nothing.  This module is also the child
program of that test (``python test_patch_clients.py --netns-child``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ftplib
import http.client
import http.server
import json
import os
import shutil
import smtplib
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable

import pytest
from dns_recorder import Resolver, install_recorder

import socks5client

from server import ATYP_DOMAIN, CMD_BIND, CMD_CONNECT, SocksServer

#: Every wait in these tests is bounded by this.
TIMEOUT = 5.0

#: The name the clients use: the one name both the reference server and
#: Dante can resolve here (from /etc/hosts).
NAME = "localhost"

#: A second name, tried only where /etc/hosts has it (resolving to ::1).
IPV6_NAME = "ip6-localhost"

_TESTS = Path(__file__).resolve().parent
FTP_SCRIPT = _TESTS / "interop" / "ftp_server.py"
FTP_USER = "patchuser"
FTP_PASSWORD = "patch-pw"
FTP_FILE = "payload.bin"

_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


# ---------------------------------------------------------------------------
# The resolver recorder (tests/dns_recorder.py)


def patch_for(resolver: Resolver, proxy_url: str, *names: str, **options: Any) -> None:
    """Forbid ``names`` (default: :data:`NAME`), forget earlier lookups, then patch."""
    resolver.forbidden = {n.lower() for n in names or (NAME,)}
    resolver.calls.clear()
    socks5client.patch(proxy_url, no_proxy="", **options)


def assert_no_lookup(resolver: Resolver) -> None:
    assert socks5client.is_patched()
    assert resolver.names() == [], "names reached the real resolver"


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients must not pick an HTTP proxy (or a bypass list) from the environment."""
    for name in _PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    yield install_recorder(monkeypatch)
    socks5client.unpatch()


# ---------------------------------------------------------------------------
# Destinations: an HTTP(S) site and an SMTP sink, in threads of this process


class _SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN: not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.site.errors.append(sys.exc_info()[1])


class _SiteServer6(_SiteServer):
    address_family = socket.AF_INET6


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
        site.hosts.append(self.headers.get("Host"))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(site.body)))
        self.end_headers()
        self.wfile.write(site.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """A threaded HTTP site on ``host`` (HTTPS with ``tls``) serving one random body.

    ``hosts`` lists the Host header of every request; ``sni`` the server name
    of every TLS handshake.
    """

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.body = os.urandom(32 * 1024)
        self.hosts: list[str | None] = []
        self.sni: list[str | None] = []
        self.errors: list[BaseException | None] = []
        self.tls = tls
        if tls is not None:
            tls.sni_callback = self._note_sni
        server_class = _SiteServer6 if ":" in host else _SiteServer
        self._server = server_class((host, 0), _SiteHandler)
        self._server.site = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _note_sni(self, _sock: Any, name: str | None, _ctx: Any) -> None:
        self.sni.append(name)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)


class _SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    sink: SMTPSink


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message: greeting, EHLO/HELO, MAIL, RCPT, DATA, QUIT."""

    timeout = TIMEOUT
    server: _SMTPServer

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        sink = self.server.sink
        self._reply("220 sink.test ESMTP ready")
        helo = sender = None
        recipients: list[str] = []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            verb, _, argument = line.decode("ascii", "replace").rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                helo = argument
                self._reply("250 sink.test")
            elif verb == "MAIL":
                sender = argument
                self._reply("250 OK")
            elif verb == "RCPT":
                recipients.append(argument)
                self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                data = bytearray()
                while True:
                    chunk = self.rfile.readline(65536)
                    if not chunk or chunk == b".\r\n":
                        break
                    data += chunk[1:] if chunk.startswith(b".") else chunk
                sink.messages.append(SMTPMessage(helo, sender, list(recipients), bytes(data)))
                self._reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self._reply("250 OK")
            elif verb == "QUIT":
                self._reply("221 Bye")
                return
            else:
                self._reply("502 Command not implemented")


@dataclasses.dataclass
class SMTPMessage:
    helo: str | None
    sender: str | None
    recipients: list[str]
    data: bytes


class SMTPSink:
    """A line-based SMTP responder on 127.0.0.1 that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[SMTPMessage] = []
        self._server = _SMTPServer(("127.0.0.1", 0), _SMTPHandler)
        self._server.sink = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)


# ---------------------------------------------------------------------------
# The clients, as an application would use them


@dataclasses.dataclass
class Target:
    """Where a client goes: ``host`` is a name, ``tls`` a context trusting the test CA."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None
    cafile: str | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/"


def get_http_client(target: Target) -> bytes:
    conn: http.client.HTTPConnection
    if target.tls is not None:
        conn = http.client.HTTPSConnection(
            target.host, target.port, timeout=TIMEOUT, context=target.tls
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def get_urllib(target: Target) -> bytes:
    with urllib.request.urlopen(target.url, timeout=TIMEOUT, context=target.tls) as response:
        assert response.status == 200
        body: bytes = response.read()
        return body


def get_requests(target: Target) -> bytes:
    import requests

    response = requests.get(target.url, timeout=TIMEOUT, verify=target.cafile or True)
    assert response.status_code == 200
    return response.content


def get_httpx(target: Target) -> bytes:
    import httpx

    response = httpx.get(target.url, timeout=TIMEOUT, verify=target.tls or True)
    assert response.status_code == 200
    return response.content


def get_httpx_client(target: Target) -> bytes:
    import httpx

    with httpx.Client(timeout=TIMEOUT, verify=target.tls or True) as client:
        response = client.get(target.url)
        assert response.status_code == 200
        return response.content


#: Every HTTP client, by name: each GETs ``/`` from a target and returns the body.
HTTP_CLIENTS: dict[str, Callable[[Target], bytes]] = {
    "http.client": get_http_client,
    "urllib": get_urllib,
    "requests": get_requests,
    "httpx.get": get_httpx,
    "httpx.Client": get_httpx_client,
}


def ftp_retr(
    host: str, port: int, user: str, password: str, filename: str, *, passive: bool
) -> bytes:
    """RETR ``filename`` with ftplib, in passive or active mode."""
    received = bytearray()
    with ftplib.FTP(timeout=TIMEOUT) as ftp:
        ftp.connect(host, port)
        ftp.login(user, password)
        ftp.set_pasv(passive)
        ftp.retrbinary(f"RETR {filename}", received.extend)
        ftp.quit()
    return bytes(received)


def send_mail(host: str, port: int) -> EmailMessage:
    """Send one message with smtplib; return it."""
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = "rcpt@example.test"
    message["Subject"] = "through the proxy"
    message.set_content("Hello through SOCKS5.\n.leading dot line\n")
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
        smtp.send_message(message)
    return message


def assert_delivered(sink: SMTPSink, sent: EmailMessage) -> None:
    (got,) = sink.messages
    # The keywords' case varies between Python versions (3.13 sends
    # "mail from:"); SMTP keywords are case-insensitive.
    assert got.sender.upper() == f"FROM:<{sent['From']}>".upper()
    assert [r.upper() for r in got.recipients] == [f"TO:<{sent['To']}>".upper()]
    assert f"Subject: {sent['Subject']}".encode() in got.data
    # The dot-stuffed line came through intact.
    assert got.data.endswith(b"Hello through SOCKS5.\r\n.leading dot line\r\n")


def etc_hosts_has(name: str) -> bool:
    try:
        text = Path("/etc/hosts").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and name in fields[1:]:
            return True
    return False


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def sites() -> Iterator[Callable[..., Site]]:
    """Factory: ``sites(host="127.0.0.1", tls=None)`` starts a :class:`Site`."""
    started: list[Site] = []

    def make(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Site:
        site = Site(host, tls)
        started.append(site)
        return site

    yield make
    socks5client.unpatch()
    for site in started:
        site.close()


def tls_contexts(ca: Any, tmp_path: Path, *names: str) -> tuple[ssl.SSLContext, Target]:
    """A server context with a certificate for ``names``; a client target template."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return server, Target(names[0], 0, client, str(cafile))


def connects(server: SocksServer) -> list[tuple[Any, ...]]:
    """(command, ATYP, DST.ADDR, DST.PORT) of every request the reference server got."""
    return [(r.command, r.atyp, r.dst_addr, r.dst_port) for r in server.records]


def proxy_url(server: SocksServer) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"socks5h://{host}:{server.port}"


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    sink = SMTPSink()
    yield sink
    socks5client.unpatch()
    sink.close()


@dataclasses.dataclass
class FTPSite:
    host: str
    port: int
    user: str
    password: str
    payload: bytes


def start_ftp_server(tmp: Path) -> tuple[subprocess.Popen[bytes], FTPSite, Path]:
    """tests/interop/ftp_server.py (pyftpdlib) in a process of its own on 127.0.0.1."""
    root = tmp / "home"
    root.mkdir()
    payload = os.urandom(200 * 1024 + 3)
    (root / FTP_FILE).write_bytes(payload)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    log = tmp / "ftpd.log"
    argv = [
        sys.executable,
        str(FTP_SCRIPT),
        "--host=127.0.0.1",
        f"--port={port}",
        f"--root={root}",
        f"--user={FTP_USER}",
        f"--password={FTP_PASSWORD}",
        f"--record={tmp / 'ports.txt'}",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc, FTPSite("127.0.0.1", port, FTP_USER, FTP_PASSWORD, payload), log
        time.sleep(0.05)
    stop_process(proc)
    pytest.fail(f"pyftpdlib did not start on port {port}:\n{log.read_text(errors='replace')}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(TIMEOUT)


@pytest.fixture(scope="module")
def ftp_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FTPSite]:
    proc, site, _log = start_ftp_server(tmp_path_factory.mktemp("patch-ftp"))
    yield site
    stop_process(proc)


# ---------------------------------------------------------------------------
# HTTP and HTTPS through the reference server


@pytest.mark.parametrize("client", list(HTTP_CLIENTS))
def test_http_client_sends_the_name_to_the_proxy(
    client: str,
    socks_server: SocksServer,
    sites: Callable[..., Site],
    resolver: Resolver,
) -> None:
    site = sites()
    patch_for(resolver, proxy_url(socks_server))
    body = HTTP_CLIENTS[client](Target(NAME, site.port))
    assert body == site.body
    assert site.hosts == [f"{NAME}:{site.port}"]
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, site.port)]
    assert_no_lookup(resolver)


@pytest.mark.parametrize("client", list(HTTP_CLIENTS))
def test_https_client_checks_the_certificate_of_the_name(
    client: str,
    socks_server: SocksServer,
    sites: Callable[..., Site],
    resolver: Resolver,
    ca: Any,
    tmp_path: Path,
) -> None:
    # The certificate is for "localhost" only: a client that verified it
    # against the synthetic address it connected to would refuse it.
    server_tls, template = tls_contexts(ca, tmp_path, NAME)
    site = sites(tls=server_tls)
    patch_for(resolver, proxy_url(socks_server))
    body = HTTP_CLIENTS[client](dataclasses.replace(template, port=site.port))
    assert body == site.body
    assert site.sni == [NAME]
    assert site.hosts == [f"{NAME}:{site.port}"]
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, site.port)]
    assert_no_lookup(resolver)


@pytest.mark.parametrize("client", ["requests", "http.client"])
def test_through_an_ipv6_proxy_the_synthetic_address_is_ipv6(
    client: str,
    socks_server_v6: SocksServer,
    sites: Callable[..., Site],
    resolver: Resolver,
) -> None:
    # The proxy is an IPv6 literal: getaddrinfo(AF_UNSPEC) answers with an
    # fd53:6f63:6b35:: address, and urllib3 makes an AF_INET6 socket for it.
    site = sites()
    patch_for(resolver, proxy_url(socks_server_v6))
    assert str(socket.getaddrinfo(NAME, site.port)[0][4][0]).startswith("fd53:6f63:6b35:")
    assert HTTP_CLIENTS[client](Target(NAME, site.port)) == site.body
    assert connects(socks_server_v6) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, site.port)]
    assert_no_lookup(resolver)


@pytest.mark.skipif(not etc_hosts_has(IPV6_NAME), reason=f"/etc/hosts has no {IPV6_NAME}")
@pytest.mark.parametrize("client", ["urllib", "requests"])
def test_ip6_localhost_reaches_an_ipv6_only_site(
    client: str,
    socks_server: SocksServer,
    sites: Callable[..., Site],
    resolver: Resolver,
) -> None:
    site = sites("::1")
    patch_for(resolver, proxy_url(socks_server), IPV6_NAME)
    assert HTTP_CLIENTS[client](Target(IPV6_NAME, site.port)) == site.body
    assert site.hosts == [f"{IPV6_NAME}:{site.port}"]
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, IPV6_NAME, site.port)]
    assert_no_lookup(resolver)


# ---------------------------------------------------------------------------
# SMTP and FTP through the reference server


def test_smtplib_delivers_through_the_proxy(
    socks_server: SocksServer, smtp_sink: SMTPSink, resolver: Resolver
) -> None:
    patch_for(resolver, proxy_url(socks_server))
    sent = send_mail(NAME, smtp_sink.port)
    assert_delivered(smtp_sink, sent)
    assert connects(socks_server) == [(CMD_CONNECT, ATYP_DOMAIN, NAME, smtp_sink.port)]
    # smtplib looked up this machine's own name too (getfqdn): answered
    # without the resolver, as every name is proxied here.
    assert_no_lookup(resolver)


def test_ftplib_passive_retr_through_the_proxy(
    socks_server: SocksServer, ftp_site: FTPSite, resolver: Resolver
) -> None:
    patch_for(resolver, proxy_url(socks_server))
    data = ftp_retr(NAME, ftp_site.port, ftp_site.user, ftp_site.password, FTP_FILE, passive=True)
    assert data == ftp_site.payload
    # ftplib connects the data channel to the control connection's peer
    # name (not the address in the 227 reply): "localhost" again.
    requests = connects(socks_server)
    assert requests[0] == (CMD_CONNECT, ATYP_DOMAIN, NAME, ftp_site.port)
    assert [r[:3] for r in requests[1:]] == [(CMD_CONNECT, ATYP_DOMAIN, NAME)]
    assert_no_lookup(resolver)


def test_ftplib_active_retr_through_a_proxy_bind(
    socks_server: SocksServer, ftp_site: FTPSite, resolver: Resolver
) -> None:
    patch_for(resolver, proxy_url(socks_server), bind=True)
    data = ftp_retr(NAME, ftp_site.port, ftp_site.user, ftp_site.password, FTP_FILE, passive=False)
    assert data == ftp_site.payload
    requests = connects(socks_server)
    assert requests[0] == (CMD_CONNECT, ATYP_DOMAIN, NAME, ftp_site.port)
    assert [r[0] for r in requests[1:]] == [CMD_BIND]
    assert_no_lookup(resolver)


# ---------------------------------------------------------------------------
# TLS on sockets that the patch made but does not proxy: a listener, and a
# connection to a no_proxy host.  Wrapping detaches the descriptor, which
# socksocket refuses only where the new owner could connect around the proxy.


def test_tls_server_listening_socket_made_under_the_patch(
    socks_server: SocksServer, ca: Any, tmp_path: Path
) -> None:
    server_tls, _ = tls_contexts(ca, tmp_path, NAME)
    socks5client.patch(proxy_url(socks_server))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        # The usual way to make an HTTPS server out of http.server.
        server_tls.wrap_socket(listener, server_side=True).close()
    assert socks_server.connections == 0


def test_requests_https_to_a_no_proxy_host_goes_direct(
    socks_server: SocksServer, sites: Callable[..., Site], ca: Any, tmp_path: Path
) -> None:
    # Default no_proxy: localhost goes direct.  urllib3 makes socket.socket()
    # and connect()s it (directly), then wraps it with ssl.
    server_tls, template = tls_contexts(ca, tmp_path, NAME)
    site = sites(tls=server_tls)
    socks5client.patch(proxy_url(socks_server))
    target = dataclasses.replace(template, port=site.port)
    get_requests(target)
    assert site.sni == [NAME]
    assert socks_server.connections == 0


# ---------------------------------------------------------------------------
# No DNS at all: a network namespace with loopback only and a DNS trap

#: A name that only the proxy in the namespace can resolve (not in /etc/hosts).
PROXY_ONLY_NAME = "proxy-only.test"


def _unshare_argv() -> list[str]:
    """The ``unshare`` command for a new network and mount namespace, or skip/fail."""
    binary = shutil.which("unshare")
    if binary is None:
        pytest.skip("unshare (util-linux) is not installed")
    argv = [binary, "-n", "-m"] if os.geteuid() == 0 else [binary, "-r", "-n", "-m"]
    try:
        probe = subprocess.run([*argv, "true"], capture_output=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{exc}"
    else:
        if probe.returncode == 0:
            return argv
        reason = probe.stderr.decode(errors="replace").strip()
    message = f"cannot make a network namespace with {' '.join(argv)}: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _namespace_report(command: list[str], env: dict[str, str], cwd: str) -> Any:
    """Run ``command`` in a network and mount namespace of its own; its report.

    The report is the JSON on the last line the command prints; the
    command must exit 0 (its output is the assertion's message otherwise).
    """
    result = subprocess.run(
        [*_unshare_argv(), *command],
        capture_output=True,
        timeout=30,
        env=env,
        cwd=cwd,
        check=False,
    )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output + result.stderr.decode(errors="replace")
    return json.loads(output.strip().splitlines()[-1])


def test_no_dns_at_all_in_a_network_namespace(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" "$3" --netns-child'
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_ENV}
    root = str(_TESTS.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    report = _namespace_report(
        ["sh", "-c", script, "sh", str(resolv), sys.executable, __file__], env, root
    )
    # The namespace: loopback only, and its name server is the trap, which
    # does hear a lookup made without the patch (the control).
    assert report["interfaces"] == ["lo"]
    assert report["control_error"] is not None
    assert PROXY_ONLY_NAME in report["control_queries"]
    # With the patch: the request worked, the proxy got the name, and no
    # query reached the trap.
    assert report["body_ok"] is True
    assert report["requests"] == [[CMD_CONNECT, ATYP_DOMAIN, PROXY_ONLY_NAME]]
    assert report["addrconfig"] == {str(f): 1 for f in (0, socket.AF_INET, socket.AF_INET6)}
    assert report["queries"] == []


class _DNSTrap:
    """Records the names asked of 127.0.0.1:53 (UDP and TCP); answers REFUSED."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 53))
        self._tcp = socket.create_server(("127.0.0.1", 53))
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    @staticmethod
    def _qname(packet: bytes) -> str:
        labels, i = [], 12
        while i < len(packet) and packet[i]:
            labels.append(packet[i + 1 : i + 1 + packet[i]].decode("ascii", "replace"))
            i += 1 + packet[i]
        return ".".join(labels)

    @staticmethod
    def _refused(packet: bytes) -> bytes:
        # QR=1, same opcode and RD, RCODE=5 (REFUSED), the question echoed.
        flags = bytes([0x80 | (packet[2] & 0x79), 0x05])
        return packet[:2] + flags + packet[4:]

    def _serve_udp(self) -> None:
        while True:
            packet, source = self._udp.recvfrom(4096)
            self.names.append(self._qname(packet))
            with contextlib.suppress(OSError):
                self._udp.sendto(self._refused(packet), source)

    def _serve_tcp(self) -> None:
        while True:
            conn, _ = self._tcp.accept()
            with conn, contextlib.suppress(OSError):
                conn.settimeout(1)
                packet = conn.recv(4096)[2:]
                self.names.append(self._qname(packet))
                reply = self._refused(packet)
                conn.sendall(len(reply).to_bytes(2, "big") + reply)


def _loopback_up() -> None:
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, request)[:18])[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def _netns_child() -> None:
    """Runs inside the namespace: trap, control lookup, proxy, site, patched urllib."""
    import server as reference

    _loopback_up()
    trap = _DNSTrap()
    interfaces = [name for _index, name in socket.if_nameindex()]
    control_error = None
    try:
        socket.getaddrinfo(PROXY_ONLY_NAME, 80, 0, socket.SOCK_STREAM)
    except OSError as exc:
        control_error = repr(exc)
    time.sleep(0.1)  # the trap thread records after answering
    control_queries = list(trap.names)
    trap.names.clear()

    real_getaddrinfo = reference._getaddrinfo

    def proxy_resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        # The proxy alone knows the name; it resolves it without DNS.
        return real_getaddrinfo("127.0.0.1" if host == PROXY_ONLY_NAME else host, *args, **kwargs)

    reference._getaddrinfo = proxy_resolver
    site = Site()
    with SocksServer("127.0.0.1") as proxy:
        with socks5client.patched(f"socks5h://127.0.0.1:{proxy.port}", no_proxy=""):
            body = get_urllib(Target(PROXY_ONLY_NAME, site.port))
            # AI_ADDRCONFIG ignores loopback, the only interface here: a
            # proxied name must still get its synthetic answer, in any
            # family (aiohttp asks so, with family=AF_INET).
            addrconfig = {}
            for family in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
                try:
                    infos = socket.getaddrinfo(
                        PROXY_ONLY_NAME, 80, family, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG
                    )
                    addrconfig[int(family)] = len(infos)
                except OSError as exc:
                    addrconfig[int(family)] = repr(exc)
        requests = [[r.command, r.atyp, r.dst_addr] for r in proxy.records]
    site.close()
    time.sleep(0.1)
    report = {
        "interfaces": interfaces,
        "control_error": control_error,
        "control_queries": control_queries,
        "body_ok": body == site.body,
        "requests": requests,
        "addrconfig": addrconfig,
        "queries": trap.names,
    }
    print(json.dumps(report))


if __name__ == "__main__" and sys.argv[1:] == ["--netns-child"]:
    _netns_child()
