"""The Kerberos realm and the GSSAPI Dante that the RFC 1961 tests stand on.

These tests prove the fixtures of ``kerberos.py`` with peers that share no
code with socks5client:

* the realm's KDC issues a ticket to ``kinit`` (``klist -s``);
* the ``gssapi`` package, as initiator and as acceptor in this process,
  completes a context for ``rcmd@localhost`` with mutual authentication and
  wraps messages with and without confidentiality;
* Dante built with GSSAPI selects method 01, and Dante's own client library
  ``libdsocks.so`` (``LD_PRELOAD`` into a Python child process) reaches an
  echo server through it at each protection level, which Dante's log
  confirms; without a ticket, or asking for a level Dante refuses, it does
  not get through.

One realm per module keeps the cost to well under a second.  Missing tools
skip locally and fail in CI, like every interop server (``server_unavailable``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import server_unavailable
from .kerberos import (
    DanteGSSAPI,
    KerberosRealm,
    Protection,
    dsocks_config,
    dsocks_env,
    find_tool,
    running_dante,
    running_realm,
)

if TYPE_CHECKING:
    from .conftest import EchoServer

pytestmark = pytest.mark.interop

#: Enough bytes that Dante's wrapping shows in its byte counts.
PAYLOAD = b"socks5client-gssapi:" * 200


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KerberosRealm]:
    yield from running_realm(tmp_path_factory.mktemp("krb5"))


@pytest.fixture(scope="module")
def gssapi_module() -> Any:
    """The ``gssapi`` package (built against libkrb5-dev), or skip/fail."""
    try:
        import gssapi
    except ImportError as exc:
        server_unavailable(f"the gssapi package is not installed ({exc}): pip install gssapi")
    return gssapi


@pytest.fixture(scope="module")
def dante_any(
    realm: KerberosRealm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DanteGSSAPI]:
    """Dante granting whatever level the client asks for."""
    yield from running_dante(realm, tmp_path_factory.mktemp("dante_gssapi_any"), Protection.ANY)


@pytest.fixture(scope="module")
def dante_clear(
    realm: KerberosRealm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DanteGSSAPI]:
    """Dante granting level 0 only."""
    yield from running_dante(realm, tmp_path_factory.mktemp("dante_gssapi_clear"), Protection.CLEAR)


# ---------------------------------------------------------------------------
# The realm


def test_kinit_gets_a_ticket_that_klist_sees(realm: KerberosRealm) -> None:
    assert realm.kdc_running
    assert realm.has_ticket()
    listing = subprocess.run(
        [find_tool("klist")],
        env=realm.subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"Default principal: {realm.user_principal}" in listing
    assert f"krbtgt/{realm.realm}@{realm.realm}" in listing


def test_realm_lives_in_its_directory(realm: KerberosRealm) -> None:
    for name, value in realm.env.items():
        path = value.removeprefix("FILE:")
        assert Path(path).is_relative_to(realm.directory), name
    assert realm.keytab.exists()
    assert realm.ccache.exists()


def test_keytab_holds_the_service_keys(realm: KerberosRealm) -> None:
    added = realm.add_service("socks")
    keys = subprocess.run(
        [find_tool("klist"), "-k", str(realm.keytab)],
        env=realm.subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert realm.principal("rcmd/localhost") in keys
    assert added in keys


def test_destroyed_ccache_has_no_ticket_until_the_next_kinit(realm: KerberosRealm) -> None:
    realm.destroy_ccache()
    try:
        assert not realm.has_ticket()
    finally:
        realm.kinit()
    assert realm.has_ticket()


def test_wrong_password_is_refused_by_the_kdc(realm: KerberosRealm) -> None:
    other = realm.directory / "other.ccache"
    result = subprocess.run(
        [find_tool("kinit"), realm.user_principal],
        env=realm.subprocess_env({"KRB5CCNAME": f"FILE:{other}"}),
        input="not-the-password\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "Password incorrect" in result.stderr


# ---------------------------------------------------------------------------
# GSSAPI in this process, through the gssapi package


def _establish(gssapi: Any, realm: KerberosRealm, target: str) -> tuple[Any, Any]:
    """Run a context between an initiator for ``target`` and a keytab acceptor."""
    flags = gssapi.RequirementFlag
    initiator = gssapi.SecurityContext(
        name=gssapi.Name(target, gssapi.NameType.hostbased_service),
        usage="initiate",
        flags=flags.mutual_authentication | flags.integrity | flags.confidentiality,
    )
    acceptor = gssapi.SecurityContext(
        creds=gssapi.Credentials(usage="accept"),  # from KRB5_KTNAME
        usage="accept",
    )
    # Kerberos with mutual authentication takes one token each way; the
    # loop is bounded so that a misbehaving mechanism fails instead of hanging.
    token = initiator.step()
    for _ in range(5):
        if initiator.complete:
            break
        token = initiator.step(acceptor.step(token))
    if token is not None and not acceptor.complete:
        acceptor.step(token)
    return initiator, acceptor


def test_gssapi_context_completes_with_mutual_auth(
    realm: KerberosRealm, gssapi_module: Any
) -> None:
    gssapi = gssapi_module
    with realm.applied():
        initiator, acceptor = _establish(gssapi, realm, "rcmd@localhost")
    assert initiator.complete and acceptor.complete
    assert gssapi.RequirementFlag.mutual_authentication in initiator.actual_flags
    assert str(acceptor.initiator_name) == realm.user_principal
    assert str(initiator.target_name).startswith("rcmd/localhost@")


@pytest.mark.parametrize("confidential", [False, True], ids=["integrity", "confidentiality"])
def test_gssapi_wrap_unwrap_both_ways(
    realm: KerberosRealm, gssapi_module: Any, confidential: bool
) -> None:
    with realm.applied():
        initiator, acceptor = _establish(gssapi_module, realm, "rcmd@localhost")
        wrapped = initiator.wrap(PAYLOAD, confidential)
        assert wrapped.encrypted is confidential
        assert (PAYLOAD in wrapped.message) is not confidential
        unwrapped = acceptor.unwrap(wrapped.message)
        assert unwrapped.message == PAYLOAD
        assert unwrapped.encrypted is confidential
        back = acceptor.wrap(b"reply", confidential)
        assert initiator.unwrap(back.message).message == b"reply"


def test_gssapi_unknown_service_fails_at_the_kdc(realm: KerberosRealm, gssapi_module: Any) -> None:
    with realm.applied(), pytest.raises(gssapi_module.exceptions.GSSError) as info:
        _establish(gssapi_module, realm, "nosuchservice@localhost")
    assert "not found" in str(info.value).lower()


# ---------------------------------------------------------------------------
# Dante built with GSSAPI, and its own client library


def test_dante_selects_gssapi(dante_any: DanteGSSAPI) -> None:
    with socket.create_connection((dante_any.host, dante_any.port), timeout=5) as conn:
        conn.sendall(b"\x05\x02\x00\x01")  # offers "no auth" and GSSAPI
        assert conn.recv(2) == b"\x05\x01"


def test_dante_refuses_a_client_without_gssapi(dante_any: DanteGSSAPI) -> None:
    with socket.create_connection((dante_any.host, dante_any.port), timeout=5) as conn:
        conn.sendall(b"\x05\x01\x00")
        assert conn.recv(2) == b"\x05\xff"


_ECHO_CLIENT = textwrap.dedent(
    """\
    import socket, sys
    payload = bytes.fromhex(sys.argv[2])
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    sys.exit(0 if got == payload else 3)
    """
)


def _dsocks_echo(
    realm: KerberosRealm,
    server: DanteGSSAPI,
    echo_port: int,
    protection: Protection,
    tmp_path: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a Python echo client through libdsocks.so and Dante."""
    conf = tmp_path / "socks.conf"
    conf.write_text(
        dsocks_config(proxy_port=server.port, log=tmp_path / "dsocks.log", protection=protection)
    )
    child_env = dsocks_env(realm, conf)
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", _ECHO_CLIENT, str(echo_port), PAYLOAD.hex()],
        env=child_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _explain(result: subprocess.CompletedProcess[str], server: DanteGSSAPI, tmp: Path) -> str:
    dsocks_log = tmp / "dsocks.log"
    client_log = dsocks_log.read_text(errors="replace")[-3000:] if dsocks_log.exists() else ""
    return (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr[-3000:]}\n"
        f"--- dsocks log ---\n{client_log}\n{server.logs()}"
    )


@pytest.mark.parametrize(
    "protection", [Protection.CLEAR, Protection.INTEGRITY, Protection.CONFIDENTIALITY]
)
def test_libdsocks_client_reaches_echo_server_through_dante(
    realm: KerberosRealm,
    dante_any: DanteGSSAPI,
    echo_server: EchoServer,
    protection: Protection,
    tmp_path: Path,
) -> None:
    before = echo_server.peer_count()
    result = _dsocks_echo(realm, dante_any, echo_server.port, protection, tmp_path)
    assert result.returncode == 0, _explain(result, dante_any, tmp_path)
    # The connection came from Dante, on loopback.
    assert echo_server.peers_since(before)
    # Dante's session line names the method, the level and the Kerberos user.
    needle = f"gssapi/{protection.value}%{realm.user_principal}"
    assert needle in dante_any.wait_for_log(needle), dante_any.logs()


def test_libdsocks_at_level_0_against_a_clear_only_dante(
    realm: KerberosRealm, dante_clear: DanteGSSAPI, echo_server: EchoServer, tmp_path: Path
) -> None:
    result = _dsocks_echo(realm, dante_clear, echo_server.port, Protection.CLEAR, tmp_path)
    assert result.returncode == 0, _explain(result, dante_clear, tmp_path)


def test_libdsocks_asking_for_confidentiality_is_refused_by_a_clear_only_dante(
    realm: KerberosRealm, dante_clear: DanteGSSAPI, echo_server: EchoServer, tmp_path: Path
) -> None:
    before = echo_server.peer_count()
    result = _dsocks_echo(
        realm, dante_clear, echo_server.port, Protection.CONFIDENTIALITY, tmp_path
    )
    assert result.returncode != 0, _explain(result, dante_clear, tmp_path)
    assert echo_server.peers_since(before) == []
    # Dante closes the connection (no 01 FF abort frame) and says why.
    needle = "Client requests confidentiality (0x2), but we offer"
    assert needle in dante_clear.wait_for_log(needle), dante_clear.logs()


def test_libdsocks_without_a_ticket_does_not_get_through(
    realm: KerberosRealm, dante_any: DanteGSSAPI, echo_server: EchoServer, tmp_path: Path
) -> None:
    before = echo_server.peer_count()
    # An empty cache of its own: the module's ticket stays for the other tests.
    result = _dsocks_echo(
        realm,
        dante_any,
        echo_server.port,
        Protection.CLEAR,
        tmp_path,
        env={"KRB5CCNAME": f"FILE:{tmp_path / 'empty.ccache'}"},
    )
    assert result.returncode != 0, _explain(result, dante_any, tmp_path)
    assert echo_server.peers_since(before) == []
    client_log = (tmp_path / "dsocks.log").read_text(errors="replace")
    assert "No Kerberos credentials available" in client_log, client_log[-3000:]
