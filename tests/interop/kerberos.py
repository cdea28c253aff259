"""A throwaway Kerberos realm and a GSSAPI-enabled Dante, for RFC 1961 tests.

:class:`KerberosRealm` builds a complete MIT Kerberos realm in a temporary
directory and runs its KDC on a free loopback port.  Nothing is written to
/etc, and the system's /etc/krb5.conf is never read: every tool and every
process that should see the realm gets the variables in
:attr:`KerberosRealm.env` (``KRB5_CONFIG``, ``KRB5_KDC_PROFILE``,
``KRB5CCNAME``, ``KRB5_KTNAME``, ``KRB5RCACHEDIR``), or runs inside
:meth:`KerberosRealm.applied`, which sets them in ``os.environ`` for the
current process (what the ``gssapi`` package reads).

:class:`DanteGSSAPI` runs Dante's ``danted`` built with GSSAPI (Debian's
binary is built without it; ``.ci/build-dante-gssapi`` builds one from
Debian's source package) as an RFC 1961 server that accepts the realm's
``rcmd/localhost`` service key, at a chosen protection level.
:func:`dsocks_env` prepares Dante's own client library (``libdsocks.so``,
loaded with ``LD_PRELOAD``) as an independent GSSAPI client.

Missing tools raise :class:`KerberosUnavailable`; the test fixtures turn
that into a skip locally and a failure in CI (``server_unavailable``).
Processes are started in their own session and stopped by PID, never by
name.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .conftest import ServerProcess, free_port, server_unavailable

#: The realm's name.  ".TEST" is reserved (RFC 2606), so it can never be a
#: real realm that DNS or a site krb5.conf knows about.
DEFAULT_REALM = "SOCKS5CLIENT.TEST"

#: The user principal every realm has, and its password.
DEFAULT_USER = "alice"
DEFAULT_PASSWORD = "alice-Kerberos-pw"

#: The service name Dante uses by default (``gssapi.servicename``), and the
#: host part that matches a client's ``rcmd@localhost`` host-based name.
DEFAULT_SERVICE = "rcmd"
SERVICE_HOST = "localhost"

#: Where ``.ci/build-dante-gssapi`` leaves its results by default.
DANTE_GSSAPI_ENV = "SOCKS5CLIENT_DANTE_GSSAPI"
DEFAULT_DANTE_GSSAPI = Path("/var/cache/socks5client/dante-gssapi/bin/danted")

#: How long the KDC or Dante may take to answer.
STARTUP_TIMEOUT = 15.0

#: Directories searched for the Kerberos admin tools besides ``PATH``
#: (kdb5_util, kadmin.local and krb5kdc live in /usr/sbin, which a non-root
#: ``PATH`` often lacks).
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class KerberosUnavailable(RuntimeError):
    """A Kerberos tool or the GSSAPI Dante is missing, or a realm failed to start."""


def find_tool(name: str) -> str:
    """The absolute path of the program ``name``, looked for in sbin directories too."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN_DIRS])
    path = shutil.which(name, path=search)
    if path is None:
        raise KerberosUnavailable(
            f"{name} is not installed (apt-get install krb5-kdc krb5-admin-server krb5-user)"
        )
    return os.path.abspath(path)


def _free_kdc_port() -> int:
    """A loopback port free for both TCP and UDP: the KDC listens on both."""
    for _ in range(50):
        port = free_port("127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise KerberosUnavailable("no loopback port free for both TCP and UDP")


def _start(
    name: str, argv: Sequence[str], log: Path, extra_logs: Sequence[Path], env: Mapping[str, str]
) -> ServerProcess:
    """Start ``argv`` in its own session with ``env``, output to ``log``.

    Like conftest's ``start_process``, plus an environment: the KDC and
    Dante must see the realm's variables, and the test process must not.
    """
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env),
        )
    return ServerProcess(name, popen, [log, *extra_logs])


def _wait_for_tcp(proc: ServerProcess, port: int, what: str) -> None:
    """Return once 127.0.0.1:``port`` accepts; otherwise stop ``proc`` and raise."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    message = proc.describe_failure(f"{what} did not accept on 127.0.0.1:{port} ({last_error})")
    proc.stop()
    raise KerberosUnavailable(message)


_KRB5_CONF = """\
[libdefaults]
    default_realm = {realm}
    # Only this file decides where the KDC is: no DNS SRV or TXT lookups,
    # and "localhost" is never canonicalised through DNS or reverse DNS.
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    # An acceptor asked for "rcmd" (danted's gssapi.servicename) would
    # otherwise look for rcmd/<this machine's hostname> in the keytab; with
    # this it accepts a ticket for any rcmd/* key it holds, e.g.
    # rcmd/localhost.
    ignore_acceptor_hostname = true
    # Tickets must work for several test modules; keep them short anyway.
    ticket_lifetime = 2h
    forwardable = false

[realms]
    {realm} = {{
        kdc = 127.0.0.1:{port}
    }}

[domain_realm]
    localhost = {realm}
    .localhost = {realm}
"""

_KDC_CONF = """\
[kdcdefaults]
    kdc_listen = 127.0.0.1:{port}
    kdc_tcp_listen = 127.0.0.1:{port}

[realms]
    {realm} = {{
        database_name = {dir}/principal
        key_stash_file = {dir}/stash
        acl_file = {dir}/kadm5.acl
        max_life = 4h
        max_renewable_life = 0
    }}

[logging]
    kdc = FILE:{dir}/kdc.log
    admin_server = FILE:{dir}/kadmind.log
"""


class KerberosRealm:
    """A throwaway MIT Kerberos realm with its KDC on a free loopback port.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with KerberosRealm() as realm:
            realm.kinit()
            subprocess.run(["klist"], env=realm.subprocess_env())

    After :meth:`start` the realm has the user :attr:`user` (password
    :attr:`password`) and the service ``rcmd/localhost``, whose key is in
    :attr:`keytab`.  :meth:`kinit` puts a ticket for the user in
    :attr:`ccache`.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        realm: str = DEFAULT_REALM,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        services: Sequence[str] = (DEFAULT_SERVICE,),
    ) -> None:
        """Describe a realm; nothing happens until :meth:`start`.

        ``directory`` holds everything (created if needed; a temporary
        directory, removed at :meth:`stop`, when None).  ``services`` are the
        service names whose ``NAME/localhost`` keys go into the keytab.
        """
        self._own_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="krb5-")) if directory is None else directory
        self.realm = realm
        self.user = user
        self.password = password
        self._initial_services = tuple(services)
        #: Every principal added so far, without the realm.
        self.principals: list[str] = []
        self.port = 0
        self._kdc: ServerProcess | None = None

        self.krb5_conf = self.directory / "krb5.conf"
        self.kdc_conf = self.directory / "kdc.conf"
        self.keytab = self.directory / "service.keytab"
        self.ccache = self.directory / "ccache"
        self.kdc_log = self.directory / "kdc.log"
        # The acceptor's replay cache; by default it goes to /var/tmp.
        self.rcache_dir = self.directory / "rcache"

    # -- what other processes need -------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The variables that point Kerberos at this realm, and only at it."""
        return {
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KDC_PROFILE": str(self.kdc_conf),
            "KRB5CCNAME": f"FILE:{self.ccache}",
            "KRB5_KTNAME": f"FILE:{self.keytab}",
            "KRB5RCACHEDIR": str(self.rcache_dir),
        }

    def subprocess_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """``os.environ`` with :attr:`env` (and ``extra``) on top, for ``subprocess``."""
        env = dict(os.environ)
        env.update(self.env)
        if extra:
            env.update(extra)
        return env

    @contextlib.contextmanager
    def applied(self) -> Iterator[KerberosRealm]:
        """Set :attr:`env` in ``os.environ`` for the block, then restore it.

        The ``gssapi`` package reads these variables in this process.  MIT
        Kerberos reads them whenever it creates a context, so a change takes
        effect for the next ``gssapi`` call; it is process-wide, though, so
        no other thread should use Kerberos meanwhile.
        """
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        try:
            yield self
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def principal(self, name: str) -> str:
        """``name`` qualified with the realm: ``alice`` -> ``alice@SOCKS5CLIENT.TEST``."""
        return f"{name}@{self.realm}"

    @property
    def user_principal(self) -> str:
        return self.principal(self.user)

    @staticmethod
    def service_principal_name(service: str = DEFAULT_SERVICE, host: str = SERVICE_HOST) -> str:
        """The Kerberos principal a host-based name ``service@host`` maps to."""
        return f"{service}/{host}"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> KerberosRealm:
        """Create the database and principals, start the KDC, wait until it answers."""
        # Look for every tool first, so a missing one fails before any setup.
        kdb5_util = find_tool("kdb5_util")
        find_tool("kadmin.local")
        krb5kdc = find_tool("krb5kdc")
        find_tool("kinit")

        self.directory.mkdir(parents=True, exist_ok=True)
        self.rcache_dir.mkdir(exist_ok=True)
        self.port = _free_kdc_port()
        fmt = {"realm": self.realm, "port": self.port, "dir": self.directory}
        self.krb5_conf.write_text(_KRB5_CONF.format(**fmt))
        self.kdc_conf.write_text(_KDC_CONF.format(**fmt))
        # kadmind is never started; an empty ACL keeps kadm5 from complaining.
        (self.directory / "kadm5.acl").write_text("")

        # -s: stash the master key, so krb5kdc starts without a prompt.  The
        # master password protects nothing that outlives the test.
        self._run([kdb5_util, "create", "-s", "-r", self.realm, "-P", "master-pw-not-secret"])
        self.add_user(self.user, self.password)
        for service in self._initial_services:
            self.add_service(service)

        # -n: stay in the foreground, so the PID we hold is the KDC's own.
        self._kdc = _start(
            "krb5kdc",
            [krb5kdc, "-n", "-r", self.realm],
            self.directory / "krb5kdc.out",
            extra_logs=[self.kdc_log],
            env=self.subprocess_env(),
        )
        _wait_for_tcp(self._kdc, self.port, "krb5kdc")
        return self

    def stop(self) -> None:
        """Stop the KDC (by PID) and remove a directory this realm created."""
        if self._kdc is not None:
            self._kdc.stop()
            self._kdc = None
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> KerberosRealm:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def kdc_running(self) -> bool:
        return self._kdc is not None and self._kdc.popen.poll() is None

    # -- principals and tickets -----------------------------------------------

    def kadmin(self, query: str) -> str:
        """Run one ``kadmin.local`` query against the realm's database; return its output."""
        return self._run([find_tool("kadmin.local"), "-r", self.realm, "-q", query])

    def add_user(self, name: str, password: str) -> str:
        """Add a user principal with ``password``; return it with the realm.

        kadmin.local splits its query at spaces: no spaces or quotes in
        ``name`` or ``password``.
        """
        self.kadmin(f"addprinc -pw {password} {name}")
        self.principals.append(name)
        return self.principal(name)

    def add_service(self, service: str, host: str = SERVICE_HOST) -> str:
        """Add ``service/host`` with a random key and put the key in :attr:`keytab`.

        A client names it with the host-based name ``service@host``.
        """
        name = self.service_principal_name(service, host)
        self.kadmin(f"addprinc -randkey {name}")
        # -norandkey is not needed: the key was just made and nothing holds it.
        self.kadmin(f"ktadd -k {self.keytab} {name}")
        self.principals.append(name)
        return self.principal(name)

    def kinit(self, name: str | None = None, password: str | None = None) -> None:
        """Get a ticket-granting ticket for ``name`` (default: :attr:`user`) into :attr:`ccache`.

        kinit reads the password from stdin when stdin is not a terminal.
        """
        principal = self.principal(name or self.user)
        secret = self.password if password is None else password
        self._run([find_tool("kinit"), principal], stdin=f"{secret}\n")

    def has_ticket(self) -> bool:
        """Whether :attr:`ccache` holds a valid ticket (``klist -s``)."""
        result = subprocess.run(
            [find_tool("klist"), "-s"],
            env=self.subprocess_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def destroy_ccache(self) -> None:
        """Throw the user's tickets away, for "no credentials" tests."""
        # kdestroy fails when there is no cache; both end in the same state.
        subprocess.run(
            [find_tool("kdestroy"), "-q"],
            env=self.subprocess_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        self.ccache.unlink(missing_ok=True)

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        result = subprocess.run(
            list(argv),
            env=self.subprocess_env(),
            input=(stdin or "").encode(),
            capture_output=True,
            check=False,
            timeout=60,
        )
        out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
        if result.returncode != 0:
            raise KerberosUnavailable(
                f"{' '.join(argv)} failed with exit status {result.returncode}:\n{out}"
            )
        return out


# ---------------------------------------------------------------------------
# Dante built with GSSAPI


class Protection(str, enum.Enum):
    """Values of Dante's ``gssapi.enctype``: which RFC 1961 levels it grants.

    CLEAR is level 0 (authenticated, then no per-message protection; Dante
    only grants it when allowed explicitly), INTEGRITY level 1,
    CONFIDENTIALITY level 2, ANY all three.
    """

    CLEAR = "clear"
    INTEGRITY = "integrity"
    CONFIDENTIALITY = "confidentiality"
    ANY = "any"


def find_dante_gssapi() -> Path:
    """The GSSAPI-enabled ``danted``: ``$SOCKS5CLIENT_DANTE_GSSAPI``, else the build cache."""
    configured = os.environ.get(DANTE_GSSAPI_ENV)
    path = Path(configured) if configured else DEFAULT_DANTE_GSSAPI
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"${DANTE_GSSAPI_ENV}={configured}" if configured else str(path)
        raise KerberosUnavailable(
            f"no Dante built with GSSAPI at {where} (run .ci/build-dante-gssapi)"
        )
    return path


def find_libdsocks(danted: Path | None = None) -> Path:
    """Dante's client library built with the server: ``../lib/libdsocks.so`` beside ``bin/``."""
    danted = find_dante_gssapi() if danted is None else danted
    lib = danted.parent.parent / "lib" / "libdsocks.so"
    if not lib.is_file():
        raise KerberosUnavailable(f"no libdsocks.so at {lib} (run .ci/build-dante-gssapi)")
    return lib


def dante_gssapi_config(
    *,
    port: int,
    keytab: Path,
    log: Path,
    protection: Protection = Protection.ANY,
    service: str = DEFAULT_SERVICE,
    debug: bool = False,
) -> str:
    """A danted.conf whose only method is GSSAPI, granting ``protection``.

    The ``gssapi.*`` settings must be in the ``client`` rule: in the
    ``socks`` rule Dante ignores them.  Each keyword goes on its own line,
    as Dante's parser rejects ``to: 0/0 gssapi.enctype: any`` on one line.
    With ``log: connect`` every session's log line names the method, the
    level and the user: ``gssapi/integrity%alice@SOCKS5CLIENT.TEST@...``.
    ``debug`` logs every token Dante wraps and unwraps (a lot of text).
    """
    return f"""\
logoutput: {log}
debug: {int(debug)}
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: gssapi
user.privileged: root
user.unprivileged: root
client pass {{
    from: 127.0.0.0/8 to: 0/0
    gssapi.keytab: FILE:{keytab}
    gssapi.servicename: {service}
    gssapi.enctype: {Protection(protection).value}
    log: error connect disconnect
}}
socks pass {{
    from: 127.0.0.0/8 to: 0/0
    command: connect bind udpassociate bindreply udpreply
    log: error connect disconnect
}}
"""


class DanteGSSAPI:
    """A GSSAPI-only ``danted`` on a free loopback port, stopped by PID.

    It must run as root (``user.privileged: root`` reads the keytab).  The
    unprivileged user is root too: the temporary directories holding the
    keytab, the replay cache and the log are private to root.
    """

    def __init__(
        self,
        realm: KerberosRealm,
        directory: Path,
        *,
        protection: Protection = Protection.ANY,
        service: str = DEFAULT_SERVICE,
        name: str | None = None,
        debug: bool = False,
    ) -> None:
        self.realm = realm
        self.debug = debug
        self.directory = directory
        self.protection = Protection(protection)
        self.service = service
        self.name = name or f"danted-gssapi-{self.protection.value}"
        self.host = "127.0.0.1"
        self.port = 0
        self.log_file = directory / f"{self.name}.log"
        self.config_file = directory / f"{self.name}.conf"
        self._process: ServerProcess | None = None

    def start(self) -> DanteGSSAPI:
        binary = find_dante_gssapi()
        if os.geteuid() != 0:
            raise KerberosUnavailable("danted must run as root here (user.privileged: root)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.host)
        self.config_file.write_text(
            dante_gssapi_config(
                port=self.port,
                keytab=self.realm.keytab,
                log=self.log_file,
                protection=self.protection,
                service=self.service,
                debug=self.debug,
            )
        )
        # -N 1: one worker; no -D: the foreground process is the one we stop.
        # The realm's variables give the acceptor its krb5.conf (for
        # ignore_acceptor_hostname) and a private replay cache.
        self._process = _start(
            self.name,
            [
                str(binary),
                "-f",
                str(self.config_file),
                "-N",
                "1",
                "-p",
                str(self.directory / f"{self.name}.pid"),
            ],
            self.directory / f"{self.name}.out",
            extra_logs=[self.log_file, self.config_file],
            env=self.realm.subprocess_env(),
        )
        _wait_for_tcp(self._process, self.port, self.name)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def log_text(self) -> str:
        """What Dante has logged so far (its ``logoutput`` file)."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> str:
        """Wait until Dante's log contains ``needle``; return the log.

        Dante writes a session's log line when the session ends, a moment
        after the client sees its connection close.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def logs(self) -> str:
        """The server's output and log, for failure messages."""
        if self._process is None:
            return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return self._process.describe_failure("logs")

    def __enter__(self) -> DanteGSSAPI:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def dsocks_config(
    *,
    proxy_port: int,
    log: Path,
    protection: Protection = Protection.CLEAR,
    service: str = DEFAULT_SERVICE,
    proxy_host: str = "127.0.0.1",
    debug: bool = False,
) -> str:
    """A socks.conf (for ``SOCKS_CONF``) routing every TCP connection through Dante.

    The route's ``method`` (not ``socksmethod``, which a route rejects) is
    GSSAPI only.  ``protection`` is the level the client asks for.
    """
    return f"""\
logoutput: {log}
debug: {int(debug)}
route {{
    from: 0.0.0.0/0 to: 0.0.0.0/0 via: {proxy_host} port = {proxy_port}
    proxyprotocol: socks_v5
    method: gssapi
    gssapi.servicename: {service}
    gssapi.enctype: {Protection(protection).value}
}}
"""


def dsocks_env(realm: KerberosRealm, config: Path, danted: Path | None = None) -> dict[str, str]:
    """The environment that runs a program through ``libdsocks.so`` with ``config``.

    ``SOCKS_AUTOADD_LANROUTES=no``: otherwise the library adds "direct"
    routes for the addresses of the local interfaces, loopback included,
    and a loopback destination would bypass the proxy.
    """
    return realm.subprocess_env(
        {
            "LD_PRELOAD": str(find_libdsocks(danted)),
            "SOCKS_CONF": str(config),
            "SOCKS_AUTOADD_LANROUTES": "no",
        }
    )


# ---------------------------------------------------------------------------
# Fixture bodies: what a test module's fixtures yield from


def running_realm(directory: Path) -> Iterator[KerberosRealm]:
    """A started realm with a ticket, stopped afterwards; unavailable tools skip (fail in CI)."""
    kdc = KerberosRealm(directory)
    try:
        kdc.start()
        kdc.kinit()
    except KerberosUnavailable as exc:
        kdc.stop()
        server_unavailable(str(exc))
    try:
        yield kdc
    finally:
        kdc.stop()


def applied_realm(directory: Path) -> Iterator[KerberosRealm]:
    """:func:`running_realm` with the ``gssapi`` package checked and the realm applied.

    What a test of the client needs: the process's Kerberos environment
    points at the realm while the fixture lasts.  A missing ``gssapi``
    skips (fails in CI).
    """
    try:
        import gssapi  # noqa: F401
    except ImportError as exc:
        server_unavailable(f"the gssapi package is not installed ({exc}): pip install gssapi")
    # running_realm yields once; the loop resumes it (to stop the KDC) at teardown.
    for kdc in running_realm(directory):
        with kdc.applied():
            yield kdc


def running_dante(
    realm: KerberosRealm, directory: Path, protection: Protection
) -> Iterator[DanteGSSAPI]:
    """A started GSSAPI Dante granting ``protection``, stopped afterwards."""
    server = DanteGSSAPI(realm, directory, protection=protection)
    try:
        server.start()
    except KerberosUnavailable as exc:
        server_unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()
