"""socks5client.patch(): the whole process through the proxy, no DNS leak, reversible.

The ``resolver`` fixture replaces the real resolver underneath the socket
module (``_socket.getaddrinfo`` and the C functions ``socket.gethostbyname``
and friends) with recorders *before* the patch saves them, so every lookup
that reaches the real resolver is seen.  A lookup of a name that must go to
the proxy unresolved fails loudly (``socket.gaierror``) as well as being
recorded, so a leak cannot go unnoticed even by code that catches errors.
The reference server resolves names on its own threads; only lookups made
by other threads count.
"""

from __future__ import annotations

import _socket
import errno
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dns_recorder import Resolver, install_recorder, is_ip_literal

import socks5client
from socks5client import _synthetic
from socks5client._negotiate import PlainSocket
from socks5client.patch import _PatchedSocket

from server import ATYP_DOMAIN, ATYP_IPV4, CMD_CONNECT, SocksServer

ORIGINAL_NAMES = (
    "socket",
    "create_connection",
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    yield install_recorder(monkeypatch)
    socks5client.unpatch()


@pytest.fixture
def unpatched() -> Iterator[None]:
    yield
    socks5client.unpatch()


def url(server: SocksServer) -> str:
    return f"socks5h://127.0.0.1:{server.port}"


def echo(sock: socket.socket) -> None:
    sock.sendall(b"ping")
    assert sock.recv(4) == b"ping"


# --------------------------------------------------------------------------
# patch / unpatch
# --------------------------------------------------------------------------


def test_unpatch_restores_the_exact_originals(socks_server: SocksServer, unpatched: None) -> None:
    before = {name: getattr(socket, name) for name in ORIGINAL_NAMES}
    socks5client.patch(url(socks_server))
    assert socks5client.is_patched()
    for name in ORIGINAL_NAMES:
        assert getattr(socket, name) is not before[name], name
    assert socket.socket is _PatchedSocket
    assert issubclass(socket.socket, socks5client.socksocket)
    socks5client.unpatch()
    assert not socks5client.is_patched()
    for name in ORIGINAL_NAMES:
        assert getattr(socket, name) is before[name], name
    socks5client.unpatch()  # a second unpatch does nothing


def test_patch_is_idempotent_and_refuses_other_settings(
    socks_server: SocksServer, unpatched: None
) -> None:
    socks5client.patch(url(socks_server))
    patched_socket = socket.socket
    socks5client.patch(url(socks_server))
    socks5client.patch(socks5client.Proxy.from_url(url(socks_server)))
    assert socket.socket is patched_socket
    with pytest.raises(RuntimeError):
        socks5client.patch(url(socks_server), udp=True)
    with pytest.raises(RuntimeError):
        socks5client.patch(url(socks_server), no_proxy="")


def test_patched_context_nests_and_restores(socks_server: SocksServer) -> None:
    original = socket.socket
    with socks5client.patched(url(socks_server), no_proxy=""):
        with socks5client.patched(url(socks_server), no_proxy=""):
            assert socket.socket is _PatchedSocket
        assert socket.socket is _PatchedSocket  # the inner block did not unpatch
        with pytest.raises(RuntimeError), socks5client.patched(url(socks_server)):
            pass
        assert socket.socket is _PatchedSocket
    assert socket.socket is original


def test_bad_proxy_is_refused_before_anything_changes() -> None:
    original = socket.getaddrinfo
    with pytest.raises(ValueError):
        socks5client.patch("http://127.0.0.1:3128")
    assert socket.getaddrinfo is original
    assert not socks5client.is_patched()


# --------------------------------------------------------------------------
# Synthetic addresses: remote DNS without a lookup
# --------------------------------------------------------------------------


def test_getaddrinfo_answers_proxied_names_with_synthetic_addresses(
    socks_server: SocksServer, resolver: Resolver
) -> None:
    resolver.forbidden = {"example.test"}
    socks5client.patch(url(socks_server), no_proxy="")
    infos = socket.getaddrinfo("example.test", 443, 0, socket.SOCK_STREAM)
    (family, kind, _proto, _canon, sockaddr) = infos[0]
    assert family == socket.AF_INET and kind == socket.SOCK_STREAM
    assert sockaddr[0].startswith("240.") and sockaddr[1] == 443
    assert socket.getaddrinfo("EXAMPLE.test.", "https")[0][4] == sockaddr
    six = socket.getaddrinfo("example.test", 443, socket.AF_INET6)[0][4]
    assert six[0].startswith("fd53:6f63:6b35:") and six[1:] == (443, 0, 0)
    assert socket.gethostbyname("example.test") == sockaddr[0]
    assert socket.gethostbyname_ex("example.test") == ("example.test", [], [sockaddr[0]])
    assert socket.gethostbyaddr(sockaddr[0])[0] == "example.test"
    assert socket.getnameinfo((sockaddr[0], 443), socket.NI_NUMERICSERV) == ("example.test", "443")
    kinds = {info[1] for info in socket.getaddrinfo("example.test", 80)}
    assert {socket.SOCK_STREAM, socket.SOCK_DGRAM} <= kinds
    # The real resolver judges port, type and flags on a loopback literal
    # (AI_NUMERICHOST, no query); no name reaches it.
    assert resolver.names() == []
    assert set(resolver.hosts()) <= {"127.0.0.1", "::1"}


def test_reverse_lookup_of_a_proxied_address_makes_no_query(
    socks_server: SocksServer, resolver: Resolver
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    with pytest.raises(socket.herror):
        socket.gethostbyaddr("192.0.2.7")
    assert socket.getnameinfo(("192.0.2.7", 80), socket.NI_NUMERICSERV) == ("192.0.2.7", "80")
    with pytest.raises(socket.gaierror):
        socket.getnameinfo(("192.0.2.7", 80), socket.NI_NAMEREQD)
    assert resolver.hosts() == []


def test_connecting_to_a_synthetic_address_sends_the_name(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    resolver.forbidden = {"localhost"}
    socks5client.patch(url(socks_server), no_proxy="")
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        "localhost", echo_server[1], 0, socket.SOCK_STREAM
    )[0]
    with socket.socket(family, kind, proto) as s:
        s.settimeout(5)
        s.connect(sockaddr)
        echo(s)
        assert s.getpeername() == sockaddr
    (record,) = socks_server.records
    assert (record.command, record.atyp, record.dst_addr) == (CMD_CONNECT, ATYP_DOMAIN, "localhost")
    assert "localhost" not in resolver.hosts()


def test_create_connection_sends_the_name(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    resolver.forbidden = {"localhost"}
    socks5client.patch(url(socks_server), no_proxy="")
    with socket.create_connection(("localhost", echo_server[1]), timeout=5) as s:
        echo(s)
    assert [r.dst_addr for r in socks_server.records] == ["localhost"]
    assert "localhost" not in resolver.hosts()


def test_ip_literals_go_to_the_proxy_as_they_are(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    with socket.create_connection(echo_server, timeout=5) as s:
        echo(s)
    with socket.socket() as s:
        s.settimeout(5)
        s.connect(echo_server)
        echo(s)
    assert [(r.atyp, r.dst_addr) for r in socks_server.records] == [(ATYP_IPV4, "127.0.0.1")] * 2


def test_unknown_synthetic_address_is_an_error_not_a_connection(
    socks_server: SocksServer, unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    never = str(_synthetic.IPV4_NETWORK.network_address + 12345678)
    with socket.socket() as s, pytest.raises(OSError) as info:
        s.connect((never, 80))
    assert info.value.errno == errno.EHOSTUNREACH
    assert s.connect_ex((never, 80)) == errno.EHOSTUNREACH
    with pytest.raises(OSError):
        socket.create_connection((never, 80), timeout=2)
    assert socks_server.connections == 0


def test_synthetic_address_after_unpatch_is_an_error(
    socks_server: SocksServer, unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    address = socket.gethostbyname("example.test")
    made_while_patched = socket.socket()
    socks5client.unpatch()
    with made_while_patched as s, pytest.raises(OSError) as info:
        s.connect((address, 80))
    assert "synthetic" in str(info.value)
    # Nor may a socksocket without a proxy connect to one directly.
    with socks5client.socksocket() as s, pytest.raises(OSError):
        s.set_proxy()
        s.connect((address, 80))
    assert socks_server.connections == 0


def test_synthetic_table_is_bounded(
    socks_server: SocksServer, unpatched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_synthetic, "MAX_NAMES", 3)
    socks5client.patch(url(socks_server), no_proxy="")
    first = socket.gethostbyname("n0.test")
    for i in range(1, 4):
        socket.gethostbyname(f"n{i}.test")
    assert _synthetic.name_for(first) is None  # the oldest was forgotten
    with socket.socket() as s, pytest.raises(OSError):
        s.connect((first, 80))
    assert socket.gethostbyname("n3.test") != first


def test_local_dns_mode_resolves_locally(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    socks5client.patch(f"socks5://127.0.0.1:{socks_server.port}", no_proxy="")
    assert socket.gethostbyname("localhost") == "127.0.0.1"
    with socket.create_connection(("localhost", echo_server[1]), timeout=5) as s:
        echo(s)
    assert "localhost" in resolver.hosts()
    assert socks_server.records[0].atyp != ATYP_DOMAIN


# --------------------------------------------------------------------------
# What goes direct
# --------------------------------------------------------------------------


def test_localhost_and_loopback_go_direct_by_default(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    socks5client.patch(url(socks_server))
    with socket.create_connection(("localhost", echo_server[1]), timeout=5) as s:
        echo(s)
    with socket.create_connection(echo_server, timeout=5) as s:
        echo(s)
    with socket.socket() as s:
        s.connect(echo_server)
        echo(s)
    assert socket.gethostbyname("localhost") == "127.0.0.1"
    assert socks_server.connections == 0


def test_no_proxy_names_go_direct_even_after_getaddrinfo(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    # The program resolves a direct name itself, then connects to the
    # address: the address is remembered as direct.
    socks5client.patch(url(socks_server), no_proxy="localhost")
    sockaddr = socket.getaddrinfo("localhost", echo_server[1], socket.AF_INET)[0][4]
    with socket.socket() as s:
        s.connect(sockaddr)
        echo(s)
    with socket.create_connection(("127.0.0.1", echo_server[1]), timeout=5) as s:
        echo(s)
    assert socks_server.connections == 0


def test_no_proxy_from_the_environment(
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
    unpatched: None,
) -> None:
    monkeypatch.setenv("NO_PROXY", "direct.test,10.0.0.0/8")
    socks5client.patch(url(socks_server))
    assert socket.getaddrinfo("proxied.test", 80)[0][4][0].startswith("240.")
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("direct.test", 80)  # resolved for real, and it does not exist


def test_af_unix_and_socketpair_stay_plain(
    socks_server: SocksServer, tmp_path: Any, unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(path)
        server.listen()
        client.connect(path)
    assert socks_server.connections == 0


def test_server_sockets_stay_local(socks_server: SocksServer, unpatched: None) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    with socket.create_server(("0.0.0.0", 0)) as server:
        port = server.getsockname()[1]
        with PlainClient(port):
            conn, _ = server.accept()
            conn.close()
    assert socks_server.connections == 0


class PlainClient:
    """A connection from a socket class saved before any patch."""

    _class = socket.socket

    def __init__(self, port: int) -> None:
        self.sock = self._class()
        self.sock.connect(("127.0.0.1", port))

    def __enter__(self) -> PlainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_bind_true_listens_through_the_proxy(socks_server: SocksServer, unpatched: None) -> None:
    socks5client.patch(url(socks_server), no_proxy="", bind=True)
    with socket.create_server(("0.0.0.0", 0)) as server, PlainClient(server.getsockname()[1]):
        conn, _ = server.accept()
        conn.close()
    assert [r.command for r in socks_server.records] == [2]


def test_explicit_set_proxy_wins_over_the_patch(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    with socket.socket() as s:
        s.set_proxy()  # this one socket goes direct
        s.connect(echo_server)
        echo(s)
    assert socks_server.connections == 0


@pytest.mark.parametrize(
    ("no_proxy", "host", "judged", "other"),
    [
        # Circled letters: UTS 46 maps them to ASCII, IDNA 2003 does not.
        (
            "example.com",
            "a.\U0001f134\U0001f147\U0001f130\U0001f13c\U0001f13f\U0001f13b\U0001f134.com",
            "a.example.com",
            "a.xn--617hhab1aes7c.com",
        ),
        # IDNA 2008 keeps ß; IDNA 2003 turns it into "ss", another domain.
        ("xn--fa-hia.de", "faß.de", "xn--fa-hia.de", "fass.de"),
    ],
    ids=["look-alike-letters", "eszett"],
)
def test_a_direct_non_ascii_name_is_looked_up_as_no_proxy_judged_it(
    socks_server: SocksServer, resolver: Resolver, no_proxy: str, host: str, judged: str, other: str
) -> None:
    # no_proxy judges the IDNA 2008 form; Python's own codec would look up
    # the IDNA 2003 form, a name no_proxy never covered.  Both are refused
    # by the recorder, so nothing reaches a real resolver.
    resolver.forbidden |= {judged, other}
    socks5client.patch(url(socks_server), no_proxy=no_proxy)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(host, 80)
    with pytest.raises(socket.gaierror):
        socket.gethostbyname(host)
    names = [name for _what, name in resolver.names()]
    assert judged in names
    assert other not in names
    assert socks_server.connections == 0


#: U+1F134 U+1F147 U+1F130 U+1F13C U+1F13F U+1F13B U+1F134: UTS 46 maps these
#: look-alike letters to "example", IDNA 2003 (Python's codec) does not.
LOOKALIKE_EXAMPLE = "\U0001f134\U0001f147\U0001f130\U0001f13c\U0001f13f\U0001f13b\U0001f134"


class CLookups:
    """What the C ``connect``/``connect_ex``/``sendto`` of plain sockets would look up.

    Those resolve a name inside C, out of the recorder's sight, so while the
    fixture is in use they are replaced by stand-ins that record the name
    as the C code would encode it (Python's IDNA 2003 codec for non-ASCII
    text) and answer from :attr:`table`; any other name fails with
    ``gaierror``, so no lookup reaches a resolver.  IP literals pass through.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.table: dict[str, str] = {}

    def resolve(self, address: Any) -> Any:
        if not isinstance(address, tuple) or len(address) < 2 or is_ip_literal(address[0]):
            return address
        host = address[0]
        name = bytes(host).decode() if isinstance(host, (bytes, bytearray)) else host
        if not name.isascii():
            name = name.encode("idna").decode("ascii")
        self.names.append(name)
        if name not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, f"not in the test's table: {name!r}")
        return (self.table[name], *address[1:])


@pytest.fixture
def c_lookups(monkeypatch: pytest.MonkeyPatch) -> CLookups:
    lookups = CLookups()
    for method in ("connect", "connect_ex"):
        real = getattr(_socket.socket, method)

        def stand_in(sock: Any, address: Any, _real: Any = real) -> Any:
            return _real(sock, lookups.resolve(address))

        monkeypatch.setattr(PlainSocket, method, stand_in)
    real_sendto = _socket.socket.sendto

    def sendto(sock: Any, data: Any, *args: Any) -> Any:
        return real_sendto(sock, data, *args[:-1], lookups.resolve(args[-1]))

    monkeypatch.setattr(PlainSocket, "sendto", sendto)
    return lookups


@pytest.mark.parametrize(
    ("no_proxy", "host", "judged", "other"),
    [
        (
            "example.test",
            f"x_y.{LOOKALIKE_EXAMPLE}.test",
            "x_y.example.test",
            "x_y.xn--617hhab1aes7c.test",
        ),
        ("xn--fa-hia.test", "-a.faß.test", "-a.xn--fa-hia.test", "-a.fass.test"),
        ("xn--fa-hia.test", "ab--c.faß.test", "ab--c.xn--fa-hia.test", "ab--c.fass.test"),
    ],
    ids=["underscore", "leading-hyphen", "double-hyphen"],
)
def test_a_direct_name_idna_refuses_in_part_is_looked_up_as_no_proxy_judged_it(
    socks_server: SocksServer, resolver: Resolver, no_proxy: str, host: str, judged: str, other: str
) -> None:
    # idna.encode() refuses the whole name for one ASCII label a resolver
    # takes; no_proxy judged it label by label, and that form is looked up,
    # not the text (which the C functions would encode as IDNA 2003: "other",
    # a name no entry covers).  All three are refused by the recorder.
    resolver.forbidden |= {judged, other, host.lower()}
    socks5client.patch(url(socks_server), no_proxy=no_proxy)
    for call in (
        lambda: socket.getaddrinfo(host, 80),
        lambda: socket.gethostbyname(host),
        lambda: socket.gethostbyname_ex(host),
        lambda: socket.create_connection((host, 80), timeout=5),
    ):
        with pytest.raises(socket.gaierror):
            call()
    assert [name for _what, name in resolver.names()] == [judged] * 4
    assert socks_server.connections == 0


@pytest.mark.parametrize(
    ("scheme", "udp"), [("socks5h", True), ("socks5h", False), ("socks5", False)]
)
def test_a_direct_socket_reaches_the_name_as_no_proxy_judged_it(
    socks_server: SocksServer,
    echo_server: tuple[str, int],
    udp_echo_server: Any,
    resolver: Resolver,
    c_lookups: CLookups,
    scheme: str,
    udp: bool,
) -> None:
    # connect(), connect_ex() and a direct UDP socket's sendto()/connect()
    # hand the name to C; it must be the judged form, with local DNS
    # (socks5://) as with remote DNS.
    host, judged = f"x_y.{LOOKALIKE_EXAMPLE}.test", "x_y.example.test"
    c_lookups.table[judged] = "127.0.0.1"
    socks5client.patch(
        f"{scheme}://127.0.0.1:{socks_server.port}", no_proxy="example.test", udp=udp
    )
    with socket.socket() as s:
        s.settimeout(5)
        s.connect((host, echo_server[1]))
        echo(s)
    with socket.socket() as s:
        s.settimeout(5)
        assert s.connect_ex((host, echo_server[1])) == 0
        echo(s)
    udp_port = udp_echo_server.address[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"to", (host, udp_port))
        assert s.recvfrom(16)[0] == b"to"
        s.connect((host, udp_port))
        s.send(b"connected")
        assert s.recv(16) == b"connected"
    assert c_lookups.names == [judged] * 4
    assert socks_server.connections == 0
    assert resolver.names() == []


@pytest.mark.parametrize("host", ["\u2603.example.test", "x.\u00df-.example.test"])
def test_a_direct_name_with_no_idna_2008_form_is_refused_never_looked_up(
    socks_server: SocksServer, resolver: Resolver, c_lookups: CLookups, host: str
) -> None:
    # A label IDNA 2008 cannot encode (a snowman; "ß-", a trailing hyphen)
    # stays non-ASCII in the form no_proxy judged, which matched
    # example.test.  No lookup takes that form, and the text would be looked
    # up as IDNA 2003 ("xn--n3h.example.test", "x.ss-.example.test"): the
    # name is refused as one that does not exist.
    resolver.forbidden |= {host.lower(), host.encode("idna").decode("ascii")}
    socks5client.patch(url(socks_server), no_proxy="example.test", udp=True)
    tcp, udp = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tcp, udp:
        for call in (
            lambda: socket.getaddrinfo(host, 80),
            lambda: socket.gethostbyname(host),
            lambda: socket.gethostbyname_ex(host),
            lambda: socket.create_connection((host, 80), timeout=5),
            lambda: tcp.connect((host, 80)),
            lambda: tcp.connect_ex((host, 80)),  # raises, as on a plain socket
            lambda: udp.sendto(b"x", (host, 53)),
            lambda: udp.connect((host, 53)),
        ):
            with pytest.raises(socket.gaierror) as info:
                call()
            assert info.value.errno == socket.EAI_NONAME
    assert resolver.names() == []
    assert c_lookups.names == []
    assert socks_server.connections == 0


def test_a_host_with_a_nul_is_refused_never_resolved_nor_direct(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    # The C resolver stops at the NUL, so "leak.test\0.localhost" would pass
    # no_proxy as a name under localhost and be resolved (and connected to,
    # directly) as "leak.test".  Refused as a plain socket's connect() does.
    nul_names = ["leak.test\x00.localhost", "localhost\x00.localhost", "leak.test\x00"]
    resolver.forbidden = set(nul_names)
    socks5client.patch(url(socks_server), no_proxy="localhost")
    message = "host name must not contain null character"
    with pytest.raises(TypeError, match=message):
        socket.getaddrinfo("leak.test\x00.localhost", 80)
    with pytest.raises(TypeError, match=message):
        socket.getaddrinfo(b"leak.test\x00.localhost", 80)
    with pytest.raises(TypeError, match=message):
        socket.create_connection(("localhost\x00.localhost", echo_server[1]), timeout=5)
    with pytest.raises(TypeError, match=message):
        socket.gethostbyname("leak.test\x00")
    with pytest.raises(TypeError, match=message):
        socket.gethostbyname_ex("leak.test\x00")
    with pytest.raises(TypeError, match=message):
        socket.gethostbyaddr("leak.test\x00")
    for method in ("connect", "connect_ex"):
        with socket.socket() as s, pytest.raises(TypeError, match=message):
            getattr(s, method)(("localhost\x00.localhost", echo_server[1]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(TypeError):
        s.sendto(b"x", ("localhost\x00.localhost", 53))
    assert socks_server.connections == 0
    assert resolver.hosts() == []


def test_patched_blocks_in_two_threads_keep_the_patch_until_the_last_exits(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    # Thread A applies the patch; thread B enters a block with the same
    # settings (a no-op) and is still inside when A leaves: B's connections
    # must still go through the proxy.
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def thread_a() -> None:
        with socks5client.patched(url(socks_server), no_proxy=""):
            a_inside.set()
            b_inside.wait(5)
        a_done.set()

    def thread_b() -> None:
        a_inside.wait(5)
        with socks5client.patched(url(socks_server), no_proxy=""):
            b_inside.set()
            a_done.wait(5)
            seen["patched"] = socks5client.is_patched()
            with socket.create_connection(echo_server, timeout=5) as s:
                echo(s)
        seen["after"] = socks5client.is_patched()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    original = socket.socket
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"patched": True, "after": False}
    assert socks_server.connections == 1
    assert socket.socket is original
    # A block inside an explicit patch() still leaves it in place, in any thread.
    socks5client.patch(url(socks_server), no_proxy="")

    def block() -> None:
        with socks5client.patched(url(socks_server), no_proxy=""):
            pass

    other = threading.Thread(target=block)
    other.start()
    other.join(10)
    assert socks5client.is_patched()


# --------------------------------------------------------------------------
# UDP
# --------------------------------------------------------------------------


def test_udp_stays_plain_unless_asked(
    socks_server: SocksServer, udp_echo_server: Any, unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"ping", udp_echo_server.address)
        assert s.recvfrom(10)[0] == b"ping"
        synthetic = socket.gethostbyname("udp.test")
        with pytest.raises(OSError) as info:
            s.sendto(b"x", (synthetic, 53))
        assert info.value.errno == errno.ENETUNREACH
    assert socks_server.associations == []


def test_udp_to_a_proxied_name_is_refused_when_not_proxied(
    socks_server: SocksServer, udp_echo_server: Any, resolver: Resolver
) -> None:
    # A plain UDP socket resolves a name given to sendto()/connect() in C,
    # past the patched getaddrinfo: for a proxied name, a local DNS query.
    # "localhost" (proxied with no_proxy="") resolves from /etc/hosts, so
    # without the refusal the datagram would arrive, with no query made.
    port = udp_echo_server.address[1]
    socks5client.patch(url(socks_server), no_proxy="")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for send in (
            lambda: s.sendto(b"sendto", ("localhost", port)),
            lambda: s.sendto(b"sendto", 0, (b"localhost", port)),
            lambda: s.sendmsg([b"sendmsg"], [], 0, ("localhost", port)),
            lambda: s.connect(("localhost", port)),
        ):
            with pytest.raises(OSError) as info:
                send()
            assert info.value.errno == errno.ENETUNREACH
            assert "'localhost' is a proxied name" in str(info.value)
        assert s.connect_ex(("localhost", port)) == errno.ENETUNREACH
        # IP addresses are no lookup: they are sent as before.
        s.settimeout(5)
        s.sendto(b"ip", udp_echo_server.address)
        assert s.recvfrom(10)[0] == b"ip"
    socks5client.unpatch()
    # A name that goes direct is resolved and sent to, as on a plain socket.
    socks5client.patch(url(socks_server), no_proxy="localhost")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"direct", ("localhost", port))
        assert s.recvfrom(10)[0] == b"direct"
    assert [payload for payload, _source in udp_echo_server.received] == [b"ip", b"direct"]
    assert socks_server.associations == []


def test_udp_socket_made_direct_by_its_first_destination_refuses_proxied_names(
    socks_server: SocksServer, udp_echo_server: Any, resolver: Resolver
) -> None:
    # udp=True: the first destination went direct, so the socket stays a
    # plain one; a proxied name sent later must not be resolved here.
    port = udp_echo_server.address[1]
    socks5client.patch(url(socks_server), no_proxy="127.0.0.1", udp=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"first", udp_echo_server.address)
        assert s.recvfrom(10)[0] == b"first"
        with pytest.raises(OSError) as info:
            s.sendto(b"name", ("localhost", port))
        assert info.value.errno == errno.ENETUNREACH
        assert "first destination went direct" in str(info.value)
    assert [payload for payload, _source in udp_echo_server.received] == [b"first"]
    assert socks_server.associations == []


def test_udp_true_goes_through_the_relay(
    socks_server: SocksServer, udp_echo_server: Any, resolver: Resolver
) -> None:
    resolver.forbidden = {"localhost"}
    socks5client.patch(url(socks_server), no_proxy="", udp=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        sockaddr = socket.getaddrinfo("localhost", udp_echo_server.address[1], socket.AF_INET)[0][4]
        s.sendto(b"ping", sockaddr)
        assert s.recvfrom(10)[0] == b"ping"
    assert len(socks_server.associations) == 1
    assert "localhost" not in resolver.hosts()


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------


def test_connections_while_another_thread_patches_and_unpatches(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    # Every connection must work, whichever state it meets: patched (through
    # the proxy) or not (direct).  At the end the module is as it was.
    before = {name: getattr(socket, name) for name in ORIGINAL_NAMES}
    failures: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(echo_server, timeout=5) as s:
                    echo(s)
                s2 = socket.socket()
                with s2:
                    s2.settimeout(5)
                    s2.connect(echo_server)
                    echo(s2)
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for _ in range(100):
        socks5client.patch(url(socks_server), no_proxy="")
        time.sleep(0.002)
        socks5client.unpatch()
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert {name: getattr(socket, name) for name in ORIGINAL_NAMES} == before
    assert socks_server.connections > 0


def test_a_synthetic_address_stays_proxied_where_a_port_entry_would_send_its_name_direct(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    # getaddrinfo has no port to match "localhost:PORT" with, so it hands
    # out a synthetic address; connecting that to PORT goes through the
    # proxy, as the lookup decided (it was refused with a wrong "no longer
    # mapped" error).  No lookup of the name.
    port = echo_server[1]
    socks5client.patch(url(socks_server), no_proxy=f"localhost:{port}")
    address = socket.getaddrinfo("localhost", None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    with socket.socket() as s:
        s.settimeout(5)
        s.connect((address, port))
        echo(s)
    assert [r.dst_addr for r in socks_server.records] == ["localhost"]
    assert "localhost" not in resolver.hosts()


def test_a_socksocket_with_its_own_proxy_sends_the_name_of_a_synthetic_address(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    address = socket.gethostbyname("localhost")
    with socks5client.socksocket() as s:  # not the patched class
        s.set_proxy(url(socks_server))
        s.settimeout(5)
        s.connect((address, echo_server[1]))
        echo(s)
    assert [r.dst_addr for r in socks_server.records] == ["localhost"]


def test_addresses_from_gethostbyname_of_a_direct_name_stay_direct(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy="localhost")
    address = socket.gethostbyname("localhost")
    with socket.socket() as s:
        s.connect((address, echo_server[1]))
        echo(s)
    assert socks_server.connections == 0


def test_connections_to_the_proxy_itself_go_direct(
    socks_server: SocksServer, unpatched: None
) -> None:
    # Code that speaks SOCKS on its own (PySocks under requests with
    # ALL_PROXY) must reach the proxy, not the proxy through itself.
    socks5client.patch(url(socks_server), no_proxy="")
    with socket.create_connection(("127.0.0.1", socks_server.port), timeout=5) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
    (record,) = socks_server.records
    assert record.command is None  # a direct client's greeting, no CONNECT to the proxy


def test_an_accepted_connection_can_be_wrapped_with_ssl(
    socks_server: SocksServer, unpatched: None
) -> None:
    # A server socket made before the patch accepts connections as objects
    # of the patched class: existing connections, with no proxy to bypass.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    socks5client.patch(url(socks_server), no_proxy="")
    with listener, PlainClient(listener.getsockname()[1]):
        conn, _ = listener.accept()
        with conn:
            assert isinstance(conn, _PatchedSocket)
            fd = conn.fileno()
            assert conn.detach() == fd
            socket.socket(fileno=fd).close()
    assert socks_server.connections == 0


def test_this_machines_own_name_is_local_by_default(
    socks_server: SocksServer, unpatched: None
) -> None:
    socks5client.patch(url(socks_server))
    assert not _synthetic.is_synthetic(socket.gethostbyname(socket.gethostname()))


def test_a_refused_ssl_wrap_never_closes_another_socket_later(
    socks_server: SocksServer, unpatched: None
) -> None:
    import gc
    import ssl

    socks5client.patch(url(socks_server), no_proxy="")
    kept: list[BaseException] = []
    try:
        ssl.create_default_context().wrap_socket(socket.socket(), server_hostname="x")
    except OSError as exc:
        kept.append(exc)  # as an error reporter would keep it
    victim = socket.socket()
    with victim:
        kept.clear()
        gc.collect()
        victim.getsockname()  # still its own descriptor


def test_a_no_proxy_entry_with_a_port_applies_to_that_port_only(
    socks_server: SocksServer, echo_server: tuple[str, int], unpatched: None
) -> None:
    socks5client.patch(url(socks_server), no_proxy=f"127.0.0.1:{echo_server[1]}")
    with socket.create_connection(echo_server, timeout=5) as s:
        echo(s)
    assert socks_server.connections == 0
    # Another port of the same host goes through the proxy (which finds
    # nothing listening there: a SOCKS5 refusal, not a direct one).
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(socks5client.SOCKS5ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port), timeout=5)
    assert socks_server.connections == 1


def test_a_lookup_on_the_port_of_a_no_proxy_entry_resolves_the_name_and_goes_direct(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    # "localhost:PORT": a lookup that names PORT is looked up for real, and
    # its addresses go direct on PORT (not on other ports); a lookup with
    # no port, or another one, still gets a synthetic address.
    port = echo_server[1]
    socks5client.patch(url(socks_server), no_proxy=f"localhost:{port}")
    for service in (port, str(port)):
        (info,) = socket.getaddrinfo("localhost", service, socket.AF_INET, socket.SOCK_STREAM)
        assert info[4] == ("127.0.0.1", port)
    with socket.socket() as s:
        s.settimeout(5)
        s.connect(info[4])
        echo(s)
    with socket.create_connection(("localhost", str(port)), timeout=5) as s:
        echo(s)
    assert socks_server.connections == 0
    for service in (None, port + 1 if port < 65535 else port - 1):
        synthetic = socket.getaddrinfo("localhost", service, socket.AF_INET)[0][4][0]
        assert _synthetic.is_synthetic(synthetic)
    assert _synthetic.is_synthetic(socket.gethostbyname("localhost"))
    # The real address is direct on PORT only: elsewhere it is proxied
    # (nothing listens there: the proxy's refusal, not a direct one).
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(socks5client.SOCKS5ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port), timeout=5)
    assert socks_server.connections == 1


def test_create_connection_to_a_synthetic_address_stays_proxied_on_a_port_entry(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    # As for connect(): the lookup found the name proxied, so the name is
    # sent to the proxy, not looked up here and connected to directly.
    port = echo_server[1]
    socks5client.patch(url(socks_server), no_proxy=f"localhost:{port}")
    address = socket.gethostbyname("localhost")
    assert _synthetic.is_synthetic(address)
    with socket.create_connection((address, port), timeout=5) as s:
        echo(s)
    assert [r.dst_addr for r in socks_server.records] == ["localhost"]
    assert "localhost" not in resolver.hosts()


def test_udp_to_a_synthetic_address_stays_proxied_on_a_port_entry(
    socks_server: SocksServer, udp_echo_server: Any, resolver: Resolver
) -> None:
    # As for TCP: the name was looked up without a port and found proxied,
    # so its datagrams go through the relay on the listed port too (the
    # socket was made direct, then refused them).
    port = udp_echo_server.address[1]
    socks5client.patch(url(socks_server), no_proxy=f"localhost:{port}", udp=True)
    address = socket.gethostbyname("localhost")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"ping", (address, port))
        assert s.recvfrom(10)[0] == b"ping"
    assert len(socks_server.associations) == 1
    assert "localhost" not in resolver.hosts()


def _answer(lookup: Any, *args: Any) -> Any:
    """What a getaddrinfo call gives, minus the address: entries, or the error's code."""
    try:
        infos = lookup(*args)
    except socket.gaierror as exc:
        return ("gaierror", exc.errno)
    return [(fam, kind, proto, canon, sockaddr[1]) for fam, kind, proto, canon, sockaddr in infos]


def test_synthetic_answers_are_the_real_resolvers_for_every_type_proto_port_and_flag(
    socks_server: SocksServer, resolver: Resolver
) -> None:
    # "localhost" is answered from /etc/hosts before the patch, and gets a
    # synthetic address under it: everything but the address must agree,
    # errors included (glibc: proto=IPPROTO_UDP alone means SOCK_DGRAM only;
    # a type that does not fit the proto, port -1, a service name with
    # AI_NUMERICSERV, are gaierrors; "http" is TCP only).
    udp, tcp = socket.IPPROTO_UDP, socket.IPPROTO_TCP
    stream, dgram = socket.SOCK_STREAM, socket.SOCK_DGRAM
    cases: list[tuple[Any, ...]] = [
        (53, 0, udp, 0),
        (53, 0, tcp, 0),
        (53, stream, udp, 0),
        (53, dgram, tcp, 0),
        (53, socket.SOCK_RAW, 0, 0),
        (53, 0, 0, 0),
        (443, stream, 0, 0),
        (-1, 0, 0, 0),
        ("-1", stream, 0, 0),
        (70000, 0, 0, 0),
        ("http", 0, 0, 0),
        ("http", dgram, 0, 0),
        ("http", 0, 0, socket.AI_NUMERICSERV),
        ("80", 0, 0, socket.AI_NUMERICSERV),
        ("domain", dgram, 0, 0),
        ("no-such-service", 0, 0, 0),
        (None, stream, 0, socket.AI_CANONNAME),
        (80, 0, 0, 0x10000),  # a flag no resolver knows
    ]
    expected = [_answer(socket.getaddrinfo, "localhost", p, socket.AF_INET, *c) for p, *c in cases]
    resolver.forbidden = {"localhost"}
    resolver.calls.clear()
    socks5client.patch(url(socks_server), no_proxy="")
    got = [_answer(socket.getaddrinfo, "localhost", p, socket.AF_INET, *c) for p, *c in cases]
    assert got == expected
    (first, *_) = socket.getaddrinfo("localhost", 53, proto=udp)
    assert _synthetic.is_synthetic(first[4][0])
    socket.socket(*first[:3]).close()  # a protocol that fits its type
    assert resolver.names() == []


def test_a_passive_lookup_of_a_proxied_name_is_local_as_bind_is(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    # AI_PASSIVE asks for an address to bind to: the name is resolved here,
    # as bind(("localhost", 0)) resolves it, not given a synthetic address
    # no interface has.
    socks5client.patch(url(socks_server), no_proxy="")
    passive = socket.AI_PASSIVE
    infos = socket.getaddrinfo("localhost", 0, socket.AF_INET, socket.SOCK_STREAM, 0, passive)
    assert [info[4] for info in infos] == [("127.0.0.1", 0)]
    with socket.socket(*infos[0][:3]) as s:
        s.bind(infos[0][4])
        s.listen()
        assert s.getsockname()[0] == "127.0.0.1"
    # A lookup for a destination still gets a synthetic address, and the
    # local answer was not remembered as a direct destination.
    address = socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    assert _synthetic.is_synthetic(address)
    with socket.create_connection(("127.0.0.1", echo_server[1]), timeout=5) as s:
        echo(s)
    assert socks_server.connections == 1


def test_the_port_of_a_proxied_destination_is_read_as_the_resolver_reads_it(
    resolver: Resolver,
) -> None:
    # uvloop's hooked create_connection takes the port from _port_number:
    # the same number, or the same error, as the loop's own lookup.
    from socks5client.patch import _port_number

    for port in (443, "443", "http", 70000, None):
        expected = socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)
        assert _port_number(port, socket.SOCK_STREAM) == expected[0][4][1]
    for bad in (-1, "no-such-service", "0x50"):
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("localhost", bad, socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(socket.gaierror):
            _port_number(bad, socket.SOCK_STREAM)


def test_a_tunnel_refuses_a_direct_connect_with_eisconn(
    socks_server: SocksServer, echo_server: tuple[str, int]
) -> None:
    # After a connect completed in non-blocking mode, Linux answers the next
    # connect() with success, once: a direct route chosen by no_proxy must
    # not take that for a connection while the socket is still the tunnel.
    with socket.create_server(("127.0.0.1", 0)) as direct:
        direct_port = direct.getsockname()[1]
        socks5client.patch(url(socks_server), no_proxy=f"127.0.0.1:{direct_port}")
        with socket.socket() as s:
            s.settimeout(5)
            s.connect(echo_server)  # through the proxy
            with pytest.raises(OSError) as info:
                s.connect(("127.0.0.1", direct_port))
            assert info.value.errno == errno.EISCONN
            assert s.connect_ex(("127.0.0.1", direct_port)) == errno.EISCONN
            assert s.getpeername() == echo_server
            echo(s)  # still the tunnel
        direct.settimeout(0.2)
        with pytest.raises(socket.timeout):
            direct.accept()  # nothing came directly
