"""The NO_PROXY matcher: which destinations a patched process reaches directly.

Pure logic: no sockets, no DNS, and ``os.environ`` is never touched (the
environment is always handed in through the ``environ`` parameter).
"""

from __future__ import annotations

import inspect
import ipaddress
import os
import platform
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from socks5client import _noproxy
from socks5client._noproxy import LOCAL_ENTRIES, NoProxy

NO_ENV: dict[str, str] = {}


def explicit(setting: str | list[str]) -> NoProxy:
    """A matcher for an explicit ``no_proxy`` setting, environment empty."""
    return NoProxy.from_setting(setting, environ=NO_ENV)


def default(environ: dict[str, str] | None = None) -> NoProxy:
    """The matcher for ``no_proxy=None`` with the given environment."""
    return NoProxy.from_setting(None, environ=environ if environ is not None else NO_ENV)


# -- names ---------------------------------------------------------------------

NAME_CASES = [
    # An entry matches the name itself and every name below it...
    ("example.com", "example.com", True),
    ("example.com", "a.example.com", True),
    ("example.com", "a.b.c.example.com", True),
    # ...on label boundaries only.
    ("example.com", "badexample.com", False),
    ("example.com", "xexample.com", False),
    ("example.com", "example.com.evil.net", False),
    ("example.com", "example.co", False),
    ("example.com", "com", False),
    ("example.com", "ample.com", False),
    ("a.example.com", "example.com", False),
    ("a.example.com", "b.example.com", False),
    ("com", "example.com", True),
    # A leading dot: subdomains, and (as curl does) the name itself.
    (".example.com", "example.com", True),
    (".example.com", "a.example.com", True),
    (".example.com", "badexample.com", False),
    # A leading "*." is the same as a leading dot.
    ("*.example.com", "example.com", True),
    ("*.example.com", "a.example.com", True),
    ("*.example.com", "a.b.example.com", True),
    ("*.example.com", "badexample.com", False),
    # Trailing dots are ignored on both sides.
    ("example.com.", "example.com", True),
    ("example.com", "example.com.", True),
    ("example.com", "a.example.com.", True),
    (".example.com.", "a.example.com.", True),
    ("*.example.com.", "example.com", True),
    # Case never matters.
    ("EXAMPLE.Com", "example.com", True),
    ("example.com", "A.EXAMPLE.COM", True),
    ("*.ExAmPlE.cOm", "WWW.example.COM.", True),
    # Single-label names.
    ("intranet", "intranet", True),
    ("intranet", "wiki.intranet", True),
    ("intranet", "intranet.example.com", False),
    # A name entry never matches an address, nor an address entry a name.
    ("example.com", "93.184.216.34", False),
    ("1.2.3.4", "a.1.2.3.4", False),
    ("1.2.3.4", "1.2.3.4.example.com", False),
    ("::1", "localhost", False),
    # Names that are not IPv4 literals although they look numeric are names.
    ("256.1.1.1", "256.1.1.1", True),
    ("1.2.3.4.5", "1.2.3.4.5", True),
    ("cafe", "cafe", True),
    ("dead.beef", "x.dead.beef", True),
    # Several entries: any one is enough.
    ("a.com,b.org,c.net", "x.b.org", True),
    ("a.com,b.org,c.net", "d.io", False),
]


@pytest.mark.parametrize(("setting", "host", "expected"), NAME_CASES)
def test_names(setting: str, host: str, expected: bool) -> None:
    assert explicit(setting).matches(host) is expected


# -- wildcard --------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    ["*", " * ", "a.com,*", "* a.com", "a.com, *, 10.0.0.0/8", ["a.com", "*"], ["*"]],
)
@pytest.mark.parametrize(
    "host",
    ["example.com", "localhost", "10.1.2.3", "::1", "[fe80::1%eth0]", "bücher.de", ""],
)
def test_star_anywhere_in_the_list_matches_everything(setting: str | list[str], host: str) -> None:
    matcher = explicit(setting)
    assert matcher.matches(host)
    assert matcher
    assert "*" in matcher.entries


@pytest.mark.parametrize(
    ("setting", "host"),
    [
        ("*example.com", "example.com"),
        ("*example.com", "a.example.com"),
        ("a.*.com", "a.b.com"),
        ("*.*.com", "a.b.com"),
        ("**", "example.com"),
        ("*.", "example.com"),
        ("example.*", "example.com"),
    ],
)
def test_other_wildcards_are_not_a_syntax(setting: str, host: str) -> None:
    matcher = explicit(setting)
    assert not matcher.matches(host)
    assert matcher.ignored == (setting,)
    assert not matcher


# -- IPv4 ----------------------------------------------------------------------

IPV4_CASES = [
    ("10.1.2.3", "10.1.2.3", True),
    ("10.1.2.3", "10.1.2.4", False),
    ("10.1.2.3", "110.1.2.3", False),
    # Hosts are read as getaddrinfo reads them.
    ("10.1.2.3", "10.1.515", True),  # 10.1.(2*256+3)
    ("10.1.2.3", "0xa.1.2.3", True),
    ("10.1.2.3", "012.1.2.3", True),  # octal 12
    ("10.0.0.1", "010.0.0.1", False),  # octal: 8.0.0.1
    ("8.0.0.1", "010.0.0.1", True),
    ("10.1.2.3", "167838211", True),
    # An IPv4-mapped IPv6 host is its IPv4 address, and vice versa.
    ("10.1.2.3", "::ffff:10.1.2.3", True),
    ("10.1.2.3", "[::ffff:10.1.2.3]", True),
    ("10.1.2.3", "::ffff:a01:203", True),
    ("::ffff:10.1.2.3", "10.1.2.3", True),
    ("[::ffff:10.1.2.3]", "10.1.2.3", True),
    ("::ffff:10.1.2.3", "::ffff:10.1.2.3", True),
    ("::ffff:10.1.2.3", "10.1.2.4", False),
    # IPv4-compatible (deprecated) and NAT64 addresses are not IPv4.
    ("1.2.3.4", "::1.2.3.4", False),
    ("1.2.3.4", "64:ff9b::1.2.3.4", False),
    # CIDR ranges.
    ("10.0.0.0/8", "10.0.0.0", True),
    ("10.0.0.0/8", "10.255.255.255", True),
    ("10.0.0.0/8", "9.255.255.255", False),
    ("10.0.0.0/8", "11.0.0.0", False),
    ("10.1.2.3/8", "10.200.0.1", True),  # host bits set, as curl allows
    ("192.168.0.0/16", "192.168.255.1", True),
    ("192.168.0.0/16", "192.169.0.1", False),
    ("172.16.0.0/12", "172.31.255.255", True),
    ("172.16.0.0/12", "172.32.0.0", False),
    ("10.0.0.5/32", "10.0.0.5", True),
    ("10.0.0.5/32", "10.0.0.4", False),
    ("10.0.0.0/31", "10.0.0.1", True),
    ("10.0.0.0/31", "10.0.0.2", False),
    ("0.0.0.0/0", "8.8.8.8", True),
    ("0.0.0.0/0", "255.255.255.255", True),
    ("10.0.0.0/8", "10.1", True),  # 10.0.0.1
    ("10.0.0.0/8", "::ffff:10.9.9.9", True),
    ("10.0.0.0/8", "::ffff:11.0.0.1", False),
    # A CIDR entry never matches a name, however it looks.
    ("0.0.0.0/0", "example.com", False),
    ("10.0.0.0/8", "10.example.com", False),
    ("10.0.0.0/8", "10.0.0.1.nip.io", False),
    ("10.0.0.0/8", "10.0.0.1.", False),  # getaddrinfo treats this as a name
    # IPv6 entries never match plain IPv4 hosts, nor the reverse.
    ("::/0", "1.2.3.4", False),
    ("0.0.0.0/0", "::2", False),
]


@pytest.mark.parametrize(("setting", "host", "expected"), IPV4_CASES)
def test_ipv4(setting: str, host: str, expected: bool) -> None:
    assert explicit(setting).matches(host) is expected


# -- IPv6 ----------------------------------------------------------------------

IPV6_CASES = [
    ("::1", "::1", True),
    ("::1", "::2", False),
    # Compressed and expanded forms, case, brackets, leading zeros.
    ("::1", "0:0:0:0:0:0:0:1", True),
    ("0:0:0:0:0:0:0:1", "::1", True),
    ("0000:0000:0000:0000:0000:0000:0000:0001", "::1", True),
    ("::1", "[::1]", True),
    ("[::1]", "::1", True),
    ("[::1]", "[0::1]", True),
    ("2001:db8::1", "2001:DB8:0:0::1", True),
    ("2001:DB8::1", "2001:db8::0001", True),
    ("2001:db8::1", "2001:db8::2", False),
    # The scope is ignored on both sides.
    ("fe80::1", "fe80::1%eth0", True),
    ("fe80::1", "[fe80::1%eth0]", True),
    ("fe80::1", "fe80::1%2", True),
    ("fe80::1%eth0", "fe80::1", True),
    ("fe80::1%eth0", "fe80::1%eth1", True),
    ("fe80::1", "fe80::2%eth0", False),
    # CIDR ranges, bracketed or not.
    ("fd00::/8", "fd12:3456::1", True),
    ("fd00::/8", "[fdff:ffff::1]", True),
    ("fd00::/8", "fe00::1", False),
    ("fd00::/8", "fc00::1", False),
    ("[fd00::]/8", "fd00::1", True),
    ("[fd00::/8]", "fd00::1", True),
    ("2001:db8::/32", "2001:db8:ffff::1", True),
    ("2001:db8::/32", "2001:db9::1", False),
    ("2001:db8::/127", "2001:db8::1", True),
    ("2001:db8::/127", "2001:db8::2", False),
    ("fe80::/10", "fe80::1%eth0", True),
    ("fe80::/10", "febf::1", True),
    ("fe80::/10", "fec0::1", False),
    ("::/0", "2001:db8::1", True),
    ("::/0", "::ffff:1.2.3.4", True),  # mapped hosts are also matched as IPv6
    # IPv4-mapped ranges are IPv4 ranges.
    ("::ffff:0:0/96", "1.2.3.4", True),
    ("::ffff:10.0.0.0/104", "10.1.1.1", True),
    ("::ffff:10.0.0.0/104", "11.1.1.1", False),
    ("::ffff:10.0.0.0/104", "::ffff:10.2.2.2", True),
    # A CIDR entry never matches a name.
    ("fd00::/8", "fd00.example.com", False),
    # Hosts that are not addresses match no address entry.
    ("::1", "[::1", False),
    ("::1", "[::1]:8080", False),
    ("::1", "::1::", False),
    ("::1", "[localhost]", False),
    ("127.0.0.0/8", "[127.0.0.1]", False),  # brackets hold IPv6 only
]


@pytest.mark.parametrize(("setting", "host", "expected"), IPV6_CASES)
def test_ipv6(setting: str, host: str, expected: bool) -> None:
    assert explicit(setting).matches(host) is expected


# -- what getaddrinfo calls an IPv4 literal --------------------------------------

LEGACY_IPV4 = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("1.2.3", "1.2.0.3"),
    ("1.2.65535", "1.2.255.255"),
    ("1.16777215", "1.255.255.255"),
    ("0x7f.1", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("010.0.0.1", "8.0.0.1"),
    ("00000127.0.0.1", "87.0.0.1"),
    ("0", "0.0.0.0"),
    ("4294967295", "255.255.255.255"),
    ("0xffffffff", "255.255.255.255"),
    # Not literals: names, as far as the resolver is concerned.
    ("4294967296", None),
    ("0x1ffffffff", None),
    ("1.16777216", None),
    ("1.2.65536", None),
    ("256.1.1.1", None),
    ("0x100.1.1.1", None),
    ("08.1.1.1", None),
    ("09", None),
    ("0x", None),
    ("0x.1.2.3", None),
    ("1.2.3.4.5", None),
    ("1..2", None),
    (".1.2.3", None),
    ("1.2.3.", None),
    ("127.0.0.1.", None),
    ("", None),
    ("1_0.0.0.1", None),
    ("١٢٧.0.0.1", None),  # Arabic-Indic digits: int() takes them, resolvers don't
    (" 127.0.0.1", None),
    ("127.0.0.1 ", None),
    ("+1.2.3.4", None),
    ("cafe", None),
]


@pytest.mark.parametrize(("text", "expected"), LEGACY_IPV4)
def test_ipv4_literal_parser(text: str, expected: str | None) -> None:
    value = _noproxy._parse_ipv4(text)
    assert (None if value is None else str(ipaddress.IPv4Address(value))) == expected


def _getaddrinfo_ipv4(text: str) -> str | None:
    """What glibc makes of ``text`` as a numeric IPv4 host (never a DNS query)."""
    try:
        infos = socket.getaddrinfo(
            text, None, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
    except (OSError, UnicodeError, ValueError):
        return None
    return str(infos[0][4][0])


glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the reference is glibc's getaddrinfo"
)


@glibc_only
@pytest.mark.parametrize(("text", "expected"), LEGACY_IPV4)
def test_ipv4_literal_table_agrees_with_getaddrinfo(text: str, expected: str | None) -> None:
    assert _getaddrinfo_ipv4(text) == expected


@glibc_only
@given(st.text(alphabet="0123456789xXaAfF.", max_size=24))
@example("0x7f.1")
@example("0xffffffff.")
@example("0x0.0x0.0x0.0x0")
@example("00.00.00.00")
def test_ipv4_literal_parser_agrees_with_getaddrinfo(text: str) -> None:
    value = _noproxy._parse_ipv4(text)
    ours = None if value is None else str(ipaddress.IPv4Address(value))
    assert ours == _getaddrinfo_ipv4(text)


# -- the built-in local set ----------------------------------------------------

LOCAL_HOSTS = [
    ("localhost", True),
    ("LOCALHOST", True),
    ("localhost.", True),
    ("a.localhost", True),
    ("a.b.localhost", True),
    ("Foo.LocalHost.", True),
    ("127.0.0.1", True),
    ("127.0.0.0", True),
    ("127.255.255.255", True),
    ("127.1", True),
    ("0x7f.0.0.1", True),
    ("2130706433", True),
    ("::1", True),
    ("[::1]", True),
    ("0:0:0:0:0:0:0:1", True),
    ("::1%lo", True),
    ("::ffff:127.0.0.1", True),
    ("[::ffff:127.9.9.9]", True),
    ("::ffff:7f00:1", True),
    ("localhost.example.com", False),
    ("mylocalhost", False),
    ("localhost6", False),
    ("126.255.255.255", False),
    ("128.0.0.1", False),
    ("0127.0.0.1", False),  # octal: 87.0.0.1
    ("::2", False),
    ("::ffff:128.0.0.1", False),
    ("::127.0.0.1", False),
    ("0.0.0.0", False),
    ("::", False),
    ("10.0.0.1", False),
    ("example.com", False),
]


@pytest.mark.parametrize(("host", "expected"), LOCAL_HOSTS)
def test_default_always_includes_the_local_set(host: str, expected: bool) -> None:
    assert default().matches(host) is expected
    # The environment adds to the local set; it never takes it away.
    assert default({"no_proxy": "example.org"}).matches(host) is expected


@pytest.mark.parametrize("host", [host for host, local in LOCAL_HOSTS if local])
@pytest.mark.parametrize("setting", ["", " , ", [], (), "example.org", ["example.org"]])
def test_explicit_setting_replaces_the_local_set(host: str, setting: str | list[str]) -> None:
    # Neither the environment nor the local set: "" or [] proxies loopback too.
    environ = {"no_proxy": "*", "NO_PROXY": "*"}
    assert not NoProxy.from_setting(setting, environ=environ).matches(host)


def test_local_entries() -> None:
    assert LOCAL_ENTRIES == ("localhost", "127.0.0.0/8", "::1")
    assert default().entries == LOCAL_ENTRIES


# -- the environment -------------------------------------------------------------

ENV_CASES = [
    # (environ, hosts that must match, hosts that must not)
    ({}, [], ["a.com", "b.com"]),
    ({"no_proxy": "a.com"}, ["a.com"], ["b.com"]),
    ({"NO_PROXY": "b.com"}, ["b.com"], ["a.com"]),
    # Lowercase wins when both are set (curl, requests)...
    ({"no_proxy": "a.com", "NO_PROXY": "b.com"}, ["a.com"], ["b.com"]),
    ({"NO_PROXY": "b.com", "no_proxy": "a.com"}, ["a.com"], ["b.com"]),
    # ...unless it is empty, which counts as unset.
    ({"no_proxy": "", "NO_PROXY": "b.com"}, ["b.com"], ["a.com"]),
    ({"no_proxy": "a.com", "NO_PROXY": ""}, ["a.com"], ["b.com"]),
    ({"no_proxy": "", "NO_PROXY": ""}, [], ["a.com", "b.com"]),
    # Blank but not empty: set, and lists nothing.
    ({"no_proxy": " ", "NO_PROXY": "b.com"}, [], ["a.com", "b.com"]),
    ({"no_proxy": "*"}, ["a.com", "b.com", "10.0.0.1"], []),
    ({"NO_PROXY": "*"}, ["a.com", "b.com", "10.0.0.1"], []),
    ({"no_proxy": "a.com", "NO_PROXY": "*"}, ["a.com"], ["b.com"]),
    # Other spellings are not read (POSIX environments are case-sensitive).
    ({"No_Proxy": "a.com", "NO_proxy": "a.com", "noproxy": "a.com"}, [], ["a.com"]),
    # Only no_proxy: the *_proxy variables play no part here.
    ({"http_proxy": "socks5://a.com", "all_proxy": "socks5://b.com"}, [], ["a.com"]),
    (
        {"no_proxy": ".corp.example, 10.0.0.0/8 fd00::/8"},
        ["git.corp.example", "10.2.3.4", "fd00::5"],
        ["example", "11.0.0.1", "fe00::1"],
    ),
]


@pytest.mark.parametrize(("environ", "direct", "proxied"), ENV_CASES)
def test_environment(environ: dict[str, str], direct: list[str], proxied: list[str]) -> None:
    matcher = default(environ)
    for host in direct:
        assert matcher.matches(host), host
    for host in proxied:
        assert not matcher.matches(host), host
    # Whatever the environment says, the local set is there too.
    assert matcher.matches("localhost")
    assert matcher.matches("127.0.0.1")
    assert matcher.matches("::1")


@pytest.mark.parametrize("setting", ["", [], "a.com", ["a.com"], "10.0.0.0/8"])
def test_explicit_setting_ignores_the_environment(setting: str | list[str]) -> None:
    environ = {"no_proxy": "b.com", "NO_PROXY": "*"}
    matcher = NoProxy.from_setting(setting, environ=environ)
    assert not matcher.matches("b.com")
    assert not matcher.matches("c.org")


def test_environ_may_be_any_mapping() -> None:
    environ = types.MappingProxyType({"no_proxy": "a.com"})
    assert NoProxy.from_setting(None, environ=environ).matches("x.a.com")


def test_environ_defaults_to_os_environ() -> None:
    # Checked on the signature: the test must not change the real environment.
    parameter = inspect.signature(NoProxy.from_setting).parameters["environ"]
    assert parameter.default is os.environ


def test_environ_is_read_when_the_matcher_is_built_not_later() -> None:
    environ = {"no_proxy": "a.com"}
    matcher = default(environ)
    environ["no_proxy"] = "b.com"
    assert matcher.matches("a.com")
    assert not matcher.matches("b.com")


# -- separators ----------------------------------------------------------------

SPLIT_CASES = [
    ("a.com,b.com", ("a.com", "b.com")),
    ("a.com b.com", ("a.com", "b.com")),
    ("a.com, b.com", ("a.com", "b.com")),
    ("a.com ,b.com", ("a.com", "b.com")),
    ("a.com\tb.com\nc.com\r\n", ("a.com", "b.com", "c.com")),
    (",,a.com,,, ,b.com,,", ("a.com", "b.com")),
    ("  a.com  ", ("a.com",)),
    (["a.com", "b.com"], ("a.com", "b.com")),
    (("a.com", "b.com"), ("a.com", "b.com")),
    ([" a.com , b.com ", "c.com"], ("a.com", "b.com", "c.com")),
    (["", " ", ","], ()),
    ("", ()),
    (",", ()),
    (" \t\n", ()),
]


@pytest.mark.parametrize(("setting", "entries"), SPLIT_CASES)
def test_separators(setting: str | list[str], entries: tuple[str, ...]) -> None:
    matcher = explicit(setting)
    assert matcher.entries == entries
    assert matcher.ignored == ()
    for entry in entries:
        assert matcher.matches(entry)


# -- ports -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "host", "port"),
    [
        ("example.com:8080", "example.com", 8080),
        ("example.com:8080", "a.example.com", 8080),
        (".example.com:8080", "example.com", 8080),
        ("*.example.com:443", "a.example.com", 443),
        ("localhost:80", "localhost", 80),
        ("10.1.2.3:80", "10.1.2.3", 80),
        ("[::1]:8080", "::1", 8080),
        ("[2001:db8::1]:443", "2001:db8::1", 443),
    ],
)
def test_entries_with_a_port_match_that_port_only(entry: str, host: str, port: int) -> None:
    # As requests and Go read them: direct for that port, proxied for any
    # other, and proxied when the caller cannot say which port.
    matcher = explicit(f"{entry}, other.org")
    assert matcher.matches(host, port)
    assert not matcher.matches(host, port + 1)
    assert not matcher.matches(host)
    assert matcher.matches("other.org")
    assert matcher.ignored == ()
    assert matcher.entries == (entry.lower(), "other.org")


@pytest.mark.parametrize("entry", ["example.com:", "example.com:0", "example.com:70000", "*:80"])
def test_unusable_port_entries_are_ignored(entry: str) -> None:
    matcher = explicit(f"{entry}, other.org")
    assert not matcher.matches("example.com", 80)
    assert matcher.ignored == (entry,)


def test_a_bare_ipv6_entry_is_an_address_not_a_port() -> None:
    # "::1:8080" is the IPv6 address ::1:8080; write [::1]:8080 for a port.
    matcher = explicit("::1:8080")
    assert matcher.entries == ("::1:8080",)
    assert matcher.matches("::1:8080")
    assert not matcher.matches("::1")


@pytest.mark.parametrize("host", ["example.com:80", "localhost:8080", "127.0.0.1:80"])
def test_a_host_with_a_port_matches_no_entry(host: str) -> None:
    # The caller passes the host alone; "name:port" is not a host.
    assert not default({"no_proxy": "example.com"}).matches(host)
    assert explicit("*").matches(host)


# -- unusable entries ------------------------------------------------------------

IGNORED_ENTRIES = [
    "10.0.0.0/33",
    "::/129",
    "10.0.0.0/",
    "10.0.0.0/-1",
    "10.0.0.0/+8",
    "10.0.0.0/8/8",
    "10.0.0.0/0x8",
    "10.0.0.0/٨",
    "10.0.0.0/0008",
    "fd00::/x",
    "example.com/24",
    "/8",
    "10/8",  # inet_aton would read 0.0.0.10/8
    "127.1",  # entries spell IPv4 as a dotted quad
    "010.0.0.1",
    "0x0a.0.0.1",
    "2130706433",
    "[fd00::",
    "[1.2.3.4]",
    "[example.com]",
    "[::1]x",
    "a:b",
    "a:b:c",
    "http://example.com",
    "user@example.com",
    ".",
    "..",
    "..example.com",
    "*.",
]


@pytest.mark.parametrize("entry", IGNORED_ENTRIES)
def test_unusable_entries_are_ignored_not_fatal(entry: str) -> None:
    matcher = explicit(f"a.com {entry}")
    assert matcher.entries == ("a.com",)
    assert matcher.ignored == (entry,)
    alone = explicit(entry)
    assert not alone
    for host in ["example.com", "10.0.0.1", "0.0.0.10", "127.0.0.1", "::1", "fd00::1", "a"]:
        assert not alone.matches(host)


def test_ignored_keeps_order_and_drops_duplicates() -> None:
    matcher = explicit("x: a.com 10/8 x: [::1]:0")
    assert matcher.ignored == ("x:", "10/8", "[::1]:0")


# -- IDNA ------------------------------------------------------------------------


def fullwidth(text: str) -> str:
    """``text`` in full-width letters (U+FF41...), which UTS 46 maps to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


IDNA_CASES = [
    ("bücher.de", "xn--bcher-kva.de", True),
    ("xn--bcher-kva.de", "bücher.de", True),
    ("bücher.de", "bücher.de", True),
    ("bücher.de", "www.BÜCHER.de", True),
    ("BÜCHER.DE", "bücher.de", True),
    (".bücher.de", "a.xn--bcher-kva.de", True),
    ("*.bücher.de", "bücher.de.", True),
    ("bücher.de", "buecher.de", False),
    ("bücher.de", "bucher.de", False),
    ("bücher.de", "xbücher.de", False),
    # IDNA 2008 / UTS 46 non-transitional, like the codec: ß stays ß.
    ("faß.de", "xn--fa-hia.de", True),
    ("faß.de", "fass.de", False),
    ("fass.de", "faß.de", False),
    # UTS 46 mapping: ideographic full stop, full-width letters.
    ("bücher。de", "bücher.de", True),
    ("bücher.de", "www。bücher。de", True),
    (f"{fullwidth('example')}.com", "example.com", True),
    ("example.com", ".".join(map(fullwidth, ["www", "example", "com"])), True),
    ("例え.テスト", "xn--r8jz45g.xn--zckzah", True),
    ("xn--r8jz45g.xn--zckzah", "サブ.例え.テスト", True),
    # A label idna refuses does not spoil the comparison of the others.
    ("bücher.de", "foo_bar.bücher.de", True),
    ("foo_bar.bücher.de", "foo_bar.xn--bcher-kva.de", True),
    # Non-ASCII text that is no valid name only ever matches itself.
    ("☃☃☃.example", "☃☃☃.example", True),
    ("example", "☃☃☃.example", True),
    ("☃☃☃.example", "example", False),
]


@pytest.mark.parametrize(("setting", "host", "expected"), IDNA_CASES)
def test_idna(setting: str, host: str, expected: bool) -> None:
    assert explicit(setting).matches(host) is expected


def test_idna_entries_are_shown_in_ascii_form() -> None:
    assert explicit("BÜCHER.de, *.例え.テスト").entries == (
        "xn--bcher-kva.de",
        "xn--r8jz45g.xn--zckzah",
    )


LOOKUP_CASES = [
    ("example.com", "example.com"),
    ("Example.COM", "Example.COM"),  # ASCII text is left as written
    ("faß.de", "xn--fa-hia.de"),  # not Python's IDNA 2003 "fass.de"
    ("BÜCHER.de.", "xn--bcher-kva.de."),
    ("www。bücher。de", "www.xn--bcher-kva.de"),
    # Labels idna.encode() refuses but a resolver takes stay as written.
    ("foo_bar.bücher.de", "foo_bar.xn--bcher-kva.de"),
    ("-a.faß.de", "-a.xn--fa-hia.de"),
    ("ab--c.faß.de", "ab--c.xn--fa-hia.de"),
    (f"x_y.{fullwidth('example')}.com", "x_y.example.com"),
]


@pytest.mark.parametrize(("host", "expected"), LOOKUP_CASES)
def test_a_direct_name_is_looked_up_in_the_form_it_was_judged_in(host: str, expected: str) -> None:
    assert _noproxy.lookup_name(host) == expected
    # That form is the one matches() judged: an entry of it covers the host.
    assert explicit(expected).matches(host)


@pytest.mark.parametrize("host", ["☃☃☃.example", "x.ß-.example", "a\u200db.example"])
def test_a_name_whose_judged_form_is_not_ascii_has_none_to_look_up(host: str) -> None:
    # matches() compares such a label as text; no resolver takes that form,
    # and the IDNA 2003 form the socket module would use is another name.
    assert explicit("example").matches(host)
    with pytest.raises(socket.gaierror) as info:
        _noproxy.lookup_name(host)
    assert info.value.errno == socket.EAI_NONAME


ASCII_ONLY_SCRIPT = """
import importlib.util, sys

# Loaded on its own: importing the socks5client package would pull idna in
# through the codec, which is not what is under test here.
spec = importlib.util.spec_from_file_location("noproxy_alone", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
NoProxy = module.NoProxy

matchers = [
    NoProxy.from_setting(None, environ={}),
    NoProxy.from_setting(None, environ={"no_proxy": "Example.COM .corp *.x.org 10.0.0.0/8"}),
    NoProxy.from_setting(["a.b", "fd00::/8", "[::1]", "::ffff:1.2.3.4", "h:80", "10/8"]),
    NoProxy.from_setting("", environ={}),
    NoProxy(),
]
hosts = [
    "localhost", "A.LOCALHOST.", "example.com", "www.example.com", "git.corp",
    "x.org", "badexample.com", "10.1.2.3", "127.1", "0x7f.1", "::1", "[::1]",
    "fe80::1%eth0", "fd00::1", "::ffff:1.2.3.4", "xn--bcher-kva.de", "", "h:80",
]
for matcher in matchers:
    repr(matcher), bool(matcher), matcher.entries, matcher.ignored
    for host in hosts:
        matcher.matches(host)
        matcher.matches(host.encode())
assert "idna" not in sys.modules, "ASCII matching imported idna"

# The check above can fail: non-ASCII text does import idna.
assert matchers[1].matches("bücher.de") is False
assert "idna" in sys.modules
print("ok")
"""


def test_ascii_matching_does_not_import_idna() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ASCII_ONLY_SCRIPT), _noproxy.__file__],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_module_imports_nothing_from_the_package() -> None:
    # What lets it be loaded on its own above, and what keeps idna lazy.
    source = Path(_noproxy.__file__).read_text(encoding="utf-8")
    assert "from ." not in source
    assert "import socks5client" not in source


# -- no DNS ----------------------------------------------------------------------


def test_matching_never_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"name resolution attempted: {args!r}")

    for name in [
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "getnameinfo",
        "getfqdn",
    ]:
        monkeypatch.setattr(socket, name, refuse)
    matchers = [
        default({"no_proxy": "example.com 10.0.0.0/8 fd00::/8 1.2.3.4 bücher.de"}),
        explicit("10.0.0.0/8"),
        explicit("0.0.0.0/0, ::/0"),
    ]
    for matcher in matchers:
        for host in [
            "example.com",
            "www.example.com",
            "resolves-to-10.example",
            "localhost",
            "dns.google",
            "10.1.2.3",
            "::1",
            "bücher.de",
            "not-a-real-host.invalid",
        ]:
            matcher.matches(host)
    # Names are never turned into addresses, so an all-addresses matcher
    # still does not match a name.
    assert not matchers[2].matches("dns.google")


# -- entries, repr, bool -----------------------------------------------------------

CANONICAL_CASES = [
    ("Example.COM.", ("example.com",)),
    (".example.com", ("example.com",)),
    ("*.example.com", ("example.com",)),
    ("example.com .example.com *.example.com EXAMPLE.COM.", ("example.com",)),
    ("0:0:0:0:0:0:0:1", ("::1",)),
    ("[::1]", ("::1",)),
    ("::1 [::1] 0::1", ("::1",)),
    ("2001:DB8::1", ("2001:db8::1",)),
    ("fe80::1%eth0", ("fe80::1",)),
    ("10.1.2.3/8", ("10.0.0.0/8",)),
    ("10.0.0.0/8 10.1.0.0/8", ("10.0.0.0/8",)),
    ("10.0.0.1/32", ("10.0.0.1",)),
    ("fd00::1/128", ("fd00::1",)),
    ("[fd12::]/8", ("fd00::/8",)),
    ("::ffff:10.0.0.1", ("10.0.0.1",)),
    ("::ffff:10.0.0.0/104", ("10.0.0.0/8",)),
    ("::ffff:0:0/96", ("0.0.0.0/0",)),
    ("::ffff:0:0/95", ("::fffe:0:0/95",)),
    ("bücher.de", ("xn--bcher-kva.de",)),
    ("*", ("*",)),
    ("a.com,*,*", ("a.com", "*")),
    ("b.com a.com 10.0.0.1 ::1", ("b.com", "a.com", "10.0.0.1", "::1")),
]


@pytest.mark.parametrize(("setting", "entries"), CANONICAL_CASES)
def test_entries_are_canonical_deduplicated_and_ordered(
    setting: str, entries: tuple[str, ...]
) -> None:
    assert explicit(setting).entries == entries


def test_default_entries_put_the_environment_first() -> None:
    assert default({"no_proxy": "a.com localhost"}).entries == ("a.com", *LOCAL_ENTRIES)


def test_repr_shows_the_entries_and_round_trips() -> None:
    matcher = explicit("Example.com, 10.0.0.0/8 ::1 x:80")
    assert repr(matcher) == "NoProxy(['example.com', '10.0.0.0/8', '::1', 'x:80'])"
    again = eval(repr(matcher), {"NoProxy": NoProxy})
    assert again.entries == matcher.entries
    assert repr(explicit("")) == "NoProxy([])"
    assert repr(default()) == "NoProxy(['localhost', '127.0.0.0/8', '::1'])"


@pytest.mark.parametrize(
    ("setting", "truth"),
    [
        ("", False),
        ([], False),
        ((), False),
        (", \t,", False),
        ("example.com:80", True),
        ("10/8 *foo [::1]:1", True),
        ("10/8 *foo [::1]:0", False),
        ("*", True),
        ("a.com", True),
        ("10.0.0.1", True),
        ("::1", True),
        ("10.0.0.0/8", True),
        ("fd00::/8", True),
        ("0.0.0.0/0", True),
    ],
)
def test_bool_is_false_only_when_nothing_can_match(setting: str | list[str], truth: bool) -> None:
    assert bool(explicit(setting)) is truth


def test_default_is_never_empty() -> None:
    assert default()
    assert default({"no_proxy": "", "NO_PROXY": ""})


# -- the constructor and argument types --------------------------------------------


def test_constructor_uses_exactly_its_entries() -> None:
    assert NoProxy().entries == ()
    assert not NoProxy()
    assert NoProxy("a.com, b.com").entries == ("a.com", "b.com")
    assert NoProxy(["a.com, b.com", "c.com"]).entries == ("a.com", "b.com", "c.com")
    assert NoProxy(iter(["a.com"])).entries == ("a.com",)
    assert not NoProxy(["a.com"]).matches("localhost")


@pytest.mark.parametrize("setting", [42, 1.5, object(), b"a.com", bytearray(b"a.com")])
def test_from_setting_rejects_other_types(setting: object) -> None:
    with pytest.raises(TypeError):
        NoProxy.from_setting(setting, environ=NO_ENV)  # type: ignore[arg-type]


@pytest.mark.parametrize("setting", [[b"a.com"], ["a.com", None], ["a.com", 1]])
def test_from_setting_rejects_non_str_entries(setting: list[object]) -> None:
    with pytest.raises(TypeError):
        NoProxy.from_setting(setting, environ=NO_ENV)  # type: ignore[arg-type]


# -- odd hosts -------------------------------------------------------------------


def test_empty_host_matches_only_star() -> None:
    assert not default().matches("")
    assert not explicit("a.com").matches("")
    assert explicit("*").matches("")


def test_ascii_bytes_hosts_are_accepted() -> None:
    matcher = default({"no_proxy": "example.com"})
    assert matcher.matches(b"localhost")  # type: ignore[arg-type]
    assert matcher.matches(b"www.example.com")  # type: ignore[arg-type]
    assert matcher.matches(bytearray(b"127.0.0.1"))  # type: ignore[arg-type]
    assert not matcher.matches(b"other.org")  # type: ignore[arg-type]
    assert not matcher.matches(b"\xff.example.com")  # type: ignore[arg-type]


def test_a_host_with_a_nul_never_matches() -> None:
    # The C resolver stops at the NUL: "evil.example\0.localhost" would be
    # looked up, and connected to, as "evil.example".
    assert not default().matches("evil.example\x00.localhost")
    assert not default().matches("127.0.0.1\x00")
    assert not explicit("localhost").matches("ip6-localhost\x00.localhost", 80)
    assert not explicit("localhost:80").matches("ip6-localhost\x00.localhost", 80)
    assert not explicit("*").matches("evil.example\x00")
    assert not default().matches(b"evil.example\x00.localhost")  # type: ignore[arg-type]
    assert default().matches("db.localhost")


def test_many_entries_cost_set_lookups() -> None:
    # The per-connect cost depends on the host's labels, not on the number
    # of entries: a long list still answers instantly.
    names = [f"host{i}.example{i % 97}.test" for i in range(20000)]
    matcher = explicit(names)
    assert matcher.matches(f"a.b.host19999.example{19999 % 97}.test")
    assert not matcher.matches(f"host19999.example{19998 % 97}.test")
    assert not matcher.matches("host20000.example0.test")
    assert len(matcher.entries) == 20000
