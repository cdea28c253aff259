"""Fixtures that run real SOCKS5 servers for the interop tests.

Each server fixture starts its own process on a free loopback port, waits
until the port accepts connections, and stops the process by PID at
teardown.  Logs go to a temporary directory and are shown when a server
fails to start.  The servers are:

* ``microsocks`` / ``microsocks_auth`` -- microsocks, without and with
  RFC 1929 username/password (``-u`` / ``-P``);
* ``dante`` / ``dante_auth`` -- Dante's ``danted``, listening on 127.0.0.1
  and ::1, with method "none" or "username" (the latter checks a system
  account, created by ``.ci/run``);
* ``dante_udp_idle`` -- Dante that ends a UDP association after
  :data:`DANTE_UDP_IDLE_TIMEOUT` seconds of silence;
* ``ssh_socks`` -- OpenSSH's ``ssh -D`` dynamic forward, through an
  ``sshd`` started here with throwaway keys.

Dante logs connects and disconnects (``ProxyServer.wait_for_log``), so a
test can see what happened on the proxy.  The destinations are a TCP echo
server, a UDP echo server (``udp_echo_server``), and two real applications:
``dnsmasq`` (DNS on a free loopback port, nothing forwarded, nothing from
/etc) and a pyftpdlib FTP server in its own process (``ftp_server``, see
``ftp_server.py``).

They share no code with socks5client, so a bug on our side cannot hide
behind the same bug in the peer.  A missing binary or a server that does
not come up skips the tests locally and fails them in CI (``CI=true``):
see :func:`server_unavailable`.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import pytest

#: The system account that Dante's "username" method checks.  ``.ci/run``
#: creates it with this password; both read the same variables.
DANTE_USER = os.environ.get("SOCKS5CLIENT_DANTE_USER", "socks5test")
DANTE_PASSWORD = os.environ.get("SOCKS5CLIENT_DANTE_PASSWORD", "s5c-interop-pw")

#: microsocks takes its single account on the command line.
MICROSOCKS_USER = "microuser"
MICROSOCKS_PASSWORD = "micro-pw:with@odd/chars"

#: Seconds of silence after which ``dante_udp_idle`` ends a UDP association.
DANTE_UDP_IDLE_TIMEOUT = 1

#: How long a server may take to accept connections.
STARTUP_TIMEOUT = 15.0

_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


# ---------------------------------------------------------------------------
# Policy for servers that are not there


def server_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it in CI, where every server must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"interop server unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"interop server unavailable: {reason}")


def _find_binary(name: str) -> str:
    """The absolute path of ``name`` (also looked for in sbin directories)."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN_DIRS])
    path = shutil.which(name, path=search)
    if path is None:
        server_unavailable(f"{name} is not installed")
    return os.path.abspath(path)


# ---------------------------------------------------------------------------
# Ports and processes


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_on_both() -> int:
    """A port free on both 127.0.0.1 and ::1."""
    for _ in range(50):
        port = free_port("::1")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text[-limit:] if text else "<empty>"


@dataclass
class ServerProcess:
    """A process we started, with the log files that explain its failures."""

    name: str
    popen: subprocess.Popen[bytes]
    logs: list[Path]

    def describe_failure(self, what: str) -> str:
        parts = [f"{self.name}: {what}"]
        rc = self.popen.poll()
        if rc is not None:
            parts.append(f"exit status {rc}")
        parts.append(f"command: {' '.join(map(str, self.popen.args))}")  # type: ignore[arg-type]
        for log in self.logs:
            parts.append(f"--- {log} ---\n{_tail(log)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Terminate the process, then whatever is left in its process group.

        Each process starts in its own session, so its group id is its PID:
        this ends the forked workers of danted and sshd and nothing else.
        """
        pid = self.popen.pid
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def start_process(
    name: str, argv: Sequence[str], log: Path, extra_logs: Sequence[Path] = ()
) -> ServerProcess:
    """Start ``argv`` with stdout and stderr going to ``log``."""
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(name, popen, [log, *extra_logs])


def wait_until_accepting(proc: ServerProcess, host: str, port: int) -> None:
    """Return once ``host:port`` accepts; otherwise stop ``proc`` and give up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect((host, port))
            return
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    message = proc.describe_failure(f"did not accept on [{host}]:{port} (last error: {last_error})")
    proc.stop()
    server_unavailable(message)


# ---------------------------------------------------------------------------
# What the tests get


@dataclass
class ProxyServer:
    """A running SOCKS5 server, as the tests see it."""

    name: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    #: The server's IPv6 listening address, if it has one.
    host6: str | None = None
    processes: list[ServerProcess] = field(default_factory=list, repr=False)
    #: The server's own log (Dante's ``logoutput``), if it writes one.
    log_file: Path | None = None

    @property
    def needs_auth(self) -> bool:
        return self.username is not None

    def url(
        self, *, remote_dns: bool = True, ipv6: bool = False, password: str | None = None
    ) -> str:
        """The proxy as a URL; ``password`` overrides the right one."""
        scheme = "socks5h" if remote_dns else "socks5"
        host = f"[{self.host6}]" if ipv6 and self.host6 else self.host
        userinfo = ""
        if self.username is not None:
            pw = self.password if password is None else password
            userinfo = f"{quote(self.username, safe='')}:{quote(pw or '', safe='')}@"
        return f"{scheme}://{userinfo}{host}:{self.port}"

    def logs(self) -> str:
        """All log text of the server's processes, for failure messages."""
        return "\n".join(
            f"--- {log} ---\n{_tail(log)}" for proc in self.processes for log in proc.logs
        )

    def log_size(self) -> int:
        """The length of :attr:`log_file` now: a mark for :meth:`wait_for_log`."""
        if self.log_file is None:
            return 0
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int) -> str:
        """What :attr:`log_file` gained after ``mark``."""
        assert self.log_file is not None, f"{self.name} has no log file"
        with open(self.log_file, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def wait_for_log(
        self, predicate: Callable[[str], bool], mark: int = 0, timeout: float = 5.0
    ) -> str:
        """Wait until the log text after ``mark`` satisfies ``predicate``; return it.

        The server's processes write their lines a moment after the event, so
        a test polls instead of reading once.  Returns the last text read, so
        that a failing assertion on it shows what was there.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(mark)
            if predicate(text) or time.monotonic() >= deadline:
                return text
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


# ---------------------------------------------------------------------------
# microsocks


def _start_microsocks(tmp: Path, name: str, auth: tuple[str, str] | None) -> ProxyServer:
    binary = _find_binary("microsocks")
    port = free_port()
    argv = [binary, "-i", "127.0.0.1", "-p", str(port)]
    if auth is not None:
        argv += ["-u", auth[0], "-P", auth[1]]
    proc = start_process(name, argv, tmp / f"{name}.log")
    wait_until_accepting(proc, "127.0.0.1", port)
    user, password = auth if auth is not None else (None, None)
    return ProxyServer(name, "127.0.0.1", port, user, password, processes=[proc])


@pytest.fixture
def server(request: pytest.FixtureRequest) -> ProxyServer:
    """The server fixture named by the parameter (``indirect=True``)."""
    result: ProxyServer = request.getfixturevalue(request.param)
    return result


@pytest.fixture(scope="session")
def microsocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    server = _start_microsocks(tmp_path_factory.mktemp("microsocks"), "microsocks", None)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def microsocks_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    server = _start_microsocks(
        tmp_path_factory.mktemp("microsocks_auth"),
        "microsocks_auth",
        (MICROSOCKS_USER, MICROSOCKS_PASSWORD),
    )
    yield server
    server.stop()


# ---------------------------------------------------------------------------
# Dante

_DANTE_CONFIG = """\
logoutput: {log}
{extra}
internal: 127.0.0.1 port = {port}
internal: ::1 port = {port}
external: 127.0.0.1
external: ::1
socksmethod: {method}
clientmethod: none
user.privileged: root
user.unprivileged: nobody

client pass {{ from: 127.0.0.0/8 to: 0/0 log: error }}
client pass {{ from: ::1/128 to: 0/0 log: error }}
socks pass {{
    from: 127.0.0.0/8 to: 0/0
    command: connect bind udpassociate bindreply udpreply
    log: error connect disconnect
}}
socks pass {{
    from: ::1/128 to: 0/0
    command: connect bind udpassociate bindreply udpreply
    log: error connect disconnect
}}
"""


def _start_dante(
    tmp: Path, name: str, auth: tuple[str, str] | None, extra: str = ""
) -> ProxyServer:
    binary = _find_binary("danted")
    if os.geteuid() != 0:
        server_unavailable("danted must run as root here (user.privileged: root)")
    port = free_port_on_both()
    log = tmp / f"{name}.log"
    conf = tmp / f"{name}.conf"
    conf.write_text(
        _DANTE_CONFIG.format(
            log=log, port=port, method="username" if auth is not None else "none", extra=extra
        )
    )
    # -N 1: a single worker; no -D: stay in the foreground, so the PID is ours.
    proc = start_process(
        name,
        [binary, "-f", str(conf), "-N", "1", "-p", str(tmp / f"{name}.pid")],
        tmp / f"{name}.out",
        extra_logs=[log, conf],
    )
    wait_until_accepting(proc, "127.0.0.1", port)
    wait_until_accepting(proc, "::1", port)
    user, password = auth if auth is not None else (None, None)
    return ProxyServer(
        name, "127.0.0.1", port, user, password, host6="::1", processes=[proc], log_file=log
    )


@pytest.fixture(scope="session")
def dante(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    server = _start_dante(tmp_path_factory.mktemp("dante"), "dante", None)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dante_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    try:
        pwd.getpwnam(DANTE_USER)
    except KeyError:
        server_unavailable(
            f"system user {DANTE_USER!r} for Dante's username method does not exist "
            "(.ci/run creates it)"
        )
    server = _start_dante(
        tmp_path_factory.mktemp("dante_auth"), "dante_auth", (DANTE_USER, DANTE_PASSWORD)
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dante_udp_idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    """Dante that ends a UDP association after 1 s without datagrams.

    It then closes the association's control connection: the way to see
    what the client does when the proxy ends an association.
    """
    server = _start_dante(
        tmp_path_factory.mktemp("dante_udp_idle"),
        "dante_udp_idle",
        None,
        extra=f"timeout.io.udp: {DANTE_UDP_IDLE_TIMEOUT}",
    )
    yield server
    server.stop()


# ---------------------------------------------------------------------------
# OpenSSH ssh -D

_SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
PermitOpen any
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
"""


def _keygen(keygen: str, path: Path) -> None:
    result = subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "socks5client-interop", "-f", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        server_unavailable(f"ssh-keygen failed: {result.stderr.decode(errors='replace')}")


@pytest.fixture(scope="session")
def ssh_socks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    sshd = _find_binary("sshd")  # sshd refuses to start from a relative path
    ssh = _find_binary("ssh")
    keygen = _find_binary("ssh-keygen")
    tmp = tmp_path_factory.mktemp("ssh")
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.geteuid() == 0:
        # The privilege separation directory; a fresh machine may lack it.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    host_key = tmp / "host_ed25519"
    client_key = tmp / "client_ed25519"
    _keygen(keygen, host_key)
    _keygen(keygen, client_key)
    authorized_keys = tmp / "authorized_keys"
    shutil.copyfile(client_key.with_suffix(".pub"), authorized_keys)

    sshd_port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        _SSHD_CONFIG.format(
            port=sshd_port,
            host_key=host_key,
            pid_file=tmp / "sshd.pid",
            authorized_keys=authorized_keys,
        )
    )
    sshd_log = tmp / "sshd.log"
    # -D: foreground; -e: log to stderr, i.e. to our log file.
    sshd_proc = start_process(
        "sshd",
        [sshd, "-D", "-e", "-f", str(config), "-p", str(sshd_port)],
        sshd_log,
        extra_logs=[config],
    )
    wait_until_accepting(sshd_proc, "127.0.0.1", sshd_port)

    socks_port = free_port()
    client_proc = start_process(
        "ssh -D",
        [
            ssh,
            "-F",
            "/dev/null",
            "-N",
            "-D",
            f"127.0.0.1:{socks_port}",
            "-p",
            str(sshd_port),
            "-i",
            str(client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "LogLevel=ERROR",
            f"{user}@127.0.0.1",
        ],
        tmp / "ssh.log",
        extra_logs=[sshd_log],
    )
    try:
        wait_until_accepting(client_proc, "127.0.0.1", socks_port)
    except BaseException:
        sshd_proc.stop()
        raise
    server = ProxyServer("ssh_socks", "127.0.0.1", socks_port, processes=[sshd_proc, client_proc])
    yield server
    server.stop()


# ---------------------------------------------------------------------------
# Destinations


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _EchoTCPServer = self.server  # type: ignore[assignment]
        with server.owner.lock:
            server.owner.peers.append(self.client_address)
        conn: socket.socket = self.request
        conn.settimeout(30)
        with contextlib.suppress(OSError):
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)


class _EchoTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False
    owner: EchoServer

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


class _EchoTCPServer6(_EchoTCPServer):
    address_family = socket.AF_INET6


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1 and ::1, same port on both.

    ``peers`` lists the client address of every connection accepted, so a
    test can tell that its connection did arrive, and over which family.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.peers: list[tuple[object, ...]] = []
        self._servers: list[_EchoTCPServer] = []
        self._threads: list[threading.Thread] = []
        last: OSError | None = None
        for _ in range(20):
            port = free_port_on_both()
            try:
                v4 = _EchoTCPServer(("127.0.0.1", port), _EchoHandler)
            except OSError as exc:
                last = exc
                continue
            try:
                v6 = _EchoTCPServer6(("::1", port), _EchoHandler)
            except OSError as exc:
                v4.server_close()
                last = exc
                continue
            self.port = port
            self._servers = [v4, v6]
            break
        else:
            raise RuntimeError(f"cannot bind the echo server: {last}")
        for srv in self._servers:
            srv.owner = self
            thread = threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def peer_count(self) -> int:
        with self.lock:
            return len(self.peers)

    def peers_since(self, count: int) -> list[tuple[object, ...]]:
        """Peers accepted after ``peer_count()`` returned ``count``."""
        with self.lock:
            return list(self.peers[count:])

    def close(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture(scope="session")
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def refused_port() -> int:
    """A port on 127.0.0.1 that was bound, then closed: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip("the closed port was taken again by another process")
    return port


# ---------------------------------------------------------------------------
# UDP destinations

#: A datagram starting with this is echoed after UDP_DELAY seconds.
UDP_DELAY_PREFIX = b"DELAY:"
UDP_DELAY = 0.3


def _bind_udp_pair() -> tuple[socket.socket, socket.socket]:
    """UDP sockets on 127.0.0.1 and ::1 with the same port."""
    last: OSError | None = None
    for _ in range(50):
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::1", 0))
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            v4.bind(("127.0.0.1", v6.getsockname()[1]))
        except OSError as exc:
            last = exc
            v4.close()
            v6.close()
            continue
        return v4, v6
    raise RuntimeError(f"no UDP port free on both 127.0.0.1 and ::1: {last}")


class UDPEchoServer:
    """A UDP echo server on 127.0.0.1 and ::1, on two ports: ``port`` and ``other_port``.

    Each port is the same on both addresses.  Every datagram goes back to
    its sender from the socket that received it; one that starts with
    :data:`UDP_DELAY_PREFIX` goes back :data:`UDP_DELAY` seconds later.
    ``sources`` lists the sender of every datagram received, in order.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sources: list[tuple[object, ...]] = []
        main = _bind_udp_pair()
        other = _bind_udp_pair()
        self.port = int(main[0].getsockname()[1])
        self.other_port = int(other[0].getsockname()[1])
        self._sockets = [*main, *other]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve, args=(sock,), daemon=True)
            for sock in self._sockets
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data, source = sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.sources.append(source)
            if data.startswith(UDP_DELAY_PREFIX):
                timer = threading.Timer(UDP_DELAY, self._reply, (sock, data, source))
                timer.daemon = True
                timer.start()
            else:
                self._reply(sock, data, source)

    @staticmethod
    def _reply(sock: socket.socket, data: bytes, source: tuple[object, ...]) -> None:
        with contextlib.suppress(OSError):
            sock.sendto(data, source)

    def count(self) -> int:
        with self.lock:
            return len(self.sources)

    def sources_since(self, count: int) -> list[tuple[object, ...]]:
        with self.lock:
            return list(self.sources[count:])

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()


@pytest.fixture(scope="session")
def udp_echo_server() -> Iterator[UDPEchoServer]:
    server = UDPEchoServer()
    yield server
    server.close()


# ---------------------------------------------------------------------------
# dnsmasq: a real DNS server, for DNS over the UDP relay

#: The names dnsmasq knows.  Everything else under "test" is NXDOMAIN, and
#: nothing is ever forwarded: it has no upstream server at all.
DNS_NAME = "example.test"
DNS_A = "192.0.2.7"
DNS_AAAA = "2001:db8::7"
DNS_MISSING = "missing.test"


@dataclass
class DNSServer:
    host: str
    port: int
    host6: str
    log_file: Path
    process: ServerProcess = field(repr=False)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def _free_dns_port() -> int:
    """A port free for UDP and TCP on both 127.0.0.1 and ::1 (dnsmasq binds all four)."""
    for _ in range(50):
        port = free_port_on_both()
        try:
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                with socket.socket(family, socket.SOCK_DGRAM) as u:
                    u.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free for UDP and TCP on 127.0.0.1 and ::1")


@pytest.fixture(scope="session")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DNSServer]:
    binary = _find_binary("dnsmasq")
    import dns.exception
    import dns.message
    import dns.query

    tmp = tmp_path_factory.mktemp("dnsmasq")
    port = _free_dns_port()
    log = tmp / "dnsmasq.log"
    argv = [
        binary,
        "--keep-in-foreground",
        "--conf-file=/dev/null",  # not /etc/dnsmasq.conf
        "--no-resolv",  # no upstream servers from /etc/resolv.conf...
        "--no-poll",
        "--no-hosts",  # ...nor names from /etc/hosts
        "--listen-address=127.0.0.1",
        "--listen-address=::1",
        "--bind-interfaces",  # these addresses only, not the wildcard
        f"--port={port}",
        "--local=/test/",  # answered here or NXDOMAIN, never forwarded
        f"--address=/{DNS_NAME}/{DNS_A}",
        f"--address=/{DNS_NAME}/{DNS_AAAA}",
        f"--pid-file={tmp / 'dnsmasq.pid'}",
        # Stay who we are (by default it switches to "nobody" or "dnsmasq").
        f"--user={pwd.getpwuid(os.geteuid()).pw_name}",
        f"--group={grp.getgrgid(os.getegid()).gr_name}",
        "--log-queries=extra",  # logs the source address and port of each query
        f"--log-facility={log}",
    ]
    proc = start_process("dnsmasq", argv, tmp / "dnsmasq.out", extra_logs=[log])
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            message = proc.describe_failure("did not answer DNS queries")
            proc.stop()
            server_unavailable(message)
        try:
            dns.query.udp(
                dns.message.make_query(DNS_NAME, "A"), "127.0.0.1", port=port, timeout=0.5
            )
            break
        except (OSError, dns.exception.DNSException):
            time.sleep(0.05)
    server = DNSServer("127.0.0.1", port, "::1", log, proc)
    yield server
    proc.stop()


# ---------------------------------------------------------------------------
# pyftpdlib: a real FTP server, for FTP active mode over BIND

FTP_USER = "ftpuser"
FTP_PASSWORD = "ftp-pw"


@dataclass
class FTPServerProcess:
    host: str
    port: int
    user: str
    password: str
    root: Path
    #: One "PORT host port" line per PORT/EPRT command the server received.
    record: Path
    process: ServerProcess = field(repr=False)

    def announced(self) -> list[tuple[str, str, int]]:
        """The (command, host, port) of every PORT/EPRT received so far."""
        if not self.record.exists():
            return []
        result = []
        for line in self.record.read_text().splitlines():
            kind, host, port = line.split()
            result.append((kind, host, int(port)))
        return result


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FTPServerProcess]:
    tmp = tmp_path_factory.mktemp("ftp")
    root = tmp / "home"
    root.mkdir()
    record = tmp / "ports.txt"
    port = free_port()
    script = Path(__file__).with_name("ftp_server.py")
    argv = [
        sys.executable,
        str(script),
        "--host=127.0.0.1",
        f"--port={port}",
        f"--root={root}",
        f"--user={FTP_USER}",
        f"--password={FTP_PASSWORD}",
        f"--record={record}",
    ]
    proc = start_process("pyftpdlib", argv, tmp / "ftpd.log")
    wait_until_accepting(proc, "127.0.0.1", port)
    yield FTPServerProcess("127.0.0.1", port, FTP_USER, FTP_PASSWORD, root, record, proc)
    proc.stop()
