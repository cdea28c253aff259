"""Unit and property tests of the sans-I/O codec: no sockets involved."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socks5client import _codec
from socks5client._codec import (
    AddressType,
    Command,
    NeedData,
    Parsed,
    Reply,
)
from socks5client.errors import ProxyProtocolError


def feed(parser, data: bytes):  # type: ignore[no-untyped-def]
    """Drive a parser the way the socket layer does: ask, read exactly, repeat."""
    buf = bytearray()
    pos = 0
    while True:
        result = parser(buf)
        if isinstance(result, Parsed):
            return result, pos
        assert result.size > 0
        if pos >= len(data):
            return result, pos
        chunk = data[pos : pos + result.size]
        pos += len(chunk)
        buf += chunk


# -- encoding -----------------------------------------------------------------


def test_greeting_lists_methods() -> None:
    assert _codec.encode_greeting([0, 2]) == b"\x05\x02\x00\x02"


@pytest.mark.parametrize("methods", [[], list(range(256)), [0xFF]])
def test_greeting_refuses_impossible_method_lists(methods: list[int]) -> None:
    with pytest.raises(ValueError):
        _codec.encode_greeting(methods)


def test_connect_request_ipv4() -> None:
    assert (
        _codec.encode_request(Command.CONNECT, "127.0.0.1", 80)
        == b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"
    )


def test_connect_request_ipv6_drops_scope() -> None:
    req = _codec.encode_request(Command.CONNECT, "fe80::1%lo", 443)
    assert req[:4] == b"\x05\x01\x00\x04"
    assert req[4:20] == ipaddress.IPv6Address("fe80::1").packed
    assert req[20:] == b"\x01\xbb"


def test_bind_and_udp_associate_commands() -> None:
    assert _codec.encode_request(Command.BIND, "0.0.0.0", 0)[1] == 2
    assert _codec.encode_request(Command.UDP_ASSOCIATE, "0.0.0.0", 0)[1] == 3


def test_domain_request_keeps_ascii_names_unchanged() -> None:
    req = _codec.encode_request(Command.CONNECT, "Under_Score.Example", 8080)
    assert req == b"\x05\x01\x00\x03\x13Under_Score.Example\x1f\x90"


def test_domain_uses_idna2008_with_uts46_mapping() -> None:
    atyp, addr = _codec.encode_host("faß.de")
    assert atyp == AddressType.DOMAIN
    # IDNA 2003 would have mapped ß to "ss" and produced fass.de.
    assert addr == b"\x0dxn--fa-hia.de"


def test_uts46_maps_uppercase_non_ascii() -> None:
    assert _codec.encode_host("BÜCHER.example")[1][1:] == b"xn--bcher-kva.example"


@pytest.mark.parametrize("host", ["evil\x00.allowed.example", "\x00", "127.0.0.1\x00.example"])
def test_hostname_with_a_nul_is_refused(host: str) -> None:
    # A proxy written in C would end the name at the NUL.
    with pytest.raises(ValueError, match="NUL"):
        _codec.encode_host(host)


def test_hostname_of_255_bytes_is_accepted() -> None:
    name = ("a" * 63 + ".") * 3 + "a" * 63
    assert len(name) == 255
    assert _codec.encode_host(name)[1][0] == 255


@pytest.mark.parametrize(
    "host",
    [
        "a" * 256,
        ("a" * 63 + ".") * 4,
        # 216 characters that grow past 255 bytes once punycoded.
        ".".join(["é" * 30] * 7),
    ],
)
def test_hostname_over_255_bytes_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match=r"255|too long"):
        _codec.encode_request(Command.CONNECT, host, 80)


def test_empty_hostname_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        _codec.encode_request(Command.CONNECT, "", 80)


def test_invalid_idna_name_is_refused_with_value_error() -> None:
    with pytest.raises(ValueError, match="IDNA"):
        _codec.encode_host("\u0378bad.example")  # unassigned code point


@pytest.mark.parametrize("port", [-1, 65536, 10**9])
def test_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        _codec.encode_request(Command.CONNECT, "example.com", port)


@pytest.mark.parametrize("port", ["80", 80.0, True, None])
def test_port_of_wrong_type_is_refused(port: object) -> None:
    with pytest.raises(TypeError):
        _codec.encode_address("example.com", port)  # type: ignore[arg-type]


def test_userpass_request_layout() -> None:
    assert _codec.encode_userpass("alice", "pw") == b"\x01\x05alice\x02pw"


def test_userpass_is_utf8() -> None:
    assert _codec.encode_userpass("é", b"\xff") == b"\x01\x02\xc3\xa9\x01\xff"


def test_empty_password_is_allowed() -> None:
    assert _codec.encode_userpass("u", "") == b"\x01\x01u\x00"


@pytest.mark.parametrize(
    ("user", "password", "what"),
    [("u" * 256, "p", "username"), ("u", "p" * 256, "password"), ("", "p", "username")],
)
def test_bad_credentials_are_refused_without_echoing_them(
    user: str, password: str, what: str
) -> None:
    with pytest.raises(ValueError, match=what) as info:
        _codec.encode_userpass(user, password)
    assert "p" * 20 not in str(info.value)


def test_udp_header_layout() -> None:
    hdr = _codec.encode_udp_header("10.0.0.1", 53)
    assert hdr == b"\x00\x00\x00\x01\x0a\x00\x00\x01\x00\x35"
    assert len(hdr) == _codec.udp_header_size(AddressType.IPV4)
    assert len(_codec.encode_udp_header("::1", 53)) == _codec.udp_header_size(AddressType.IPV6)
    assert _codec.udp_header_size(AddressType.DOMAIN) == 262


# -- parsing ------------------------------------------------------------------


def test_method_selection() -> None:
    assert _codec.parse_method_selection(b"") == NeedData(2)
    assert _codec.parse_method_selection(b"\x05") == NeedData(1)
    assert _codec.parse_method_selection(b"\x05\x02") == Parsed(_codec.MethodSelection(2), 2)


def test_method_selection_wrong_version_fails_on_first_byte() -> None:
    with pytest.raises(ProxyProtocolError, match="version"):
        _codec.parse_method_selection(b"\x04")


def test_http_answer_is_recognised() -> None:
    with pytest.raises(ProxyProtocolError, match="HTTP proxy"):
        _codec.parse_method_selection(b"HTTP/1.1 400 Bad Request")


def test_auth_reply() -> None:
    assert _codec.parse_auth_reply(b"\x01\x00") == Parsed(_codec.AuthReply(0), 2)
    assert not _codec.parse_auth_reply(b"\x01\x01").message.ok  # type: ignore[union-attr]
    with pytest.raises(ProxyProtocolError):
        _codec.parse_auth_reply(b"\x05\x00")


REPLY_V4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
REPLY_V6 = b"\x05\x00\x00\x04" + ipaddress.IPv6Address("2001:db8::5").packed + b"\x00\x16"
REPLY_DOMAIN = b"\x05\x00\x00\x03\x0bexample.org\x01\xbb"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (REPLY_V4, Reply(0, AddressType.IPV4, "127.0.0.1", 1080)),
        (REPLY_V6, Reply(0, AddressType.IPV6, "2001:db8::5", 22)),
        (REPLY_DOMAIN, Reply(0, AddressType.DOMAIN, "example.org", 443)),
    ],
)
def test_reply_parses_every_address_type(raw: bytes, expected: Reply) -> None:
    assert _codec.parse_reply(raw) == Parsed(expected, len(raw))


@pytest.mark.parametrize("raw", [REPLY_V4, REPLY_V6, REPLY_DOMAIN])
def test_reply_fed_exactly_as_requested_never_overreads(raw: bytes) -> None:
    application = b"GET / HTTP/1.1\r\n"
    result, used = feed(_codec.parse_reply, raw + application)
    assert isinstance(result, Parsed)
    assert used == len(raw) == result.consumed


def test_reply_with_trailing_bytes_reports_what_it_consumed() -> None:
    result = _codec.parse_reply(REPLY_V4 + b"extra")
    assert isinstance(result, Parsed)
    assert result.consumed == len(REPLY_V4)


def test_failure_reply_is_a_reply_not_an_error() -> None:
    raw = b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"
    result = _codec.parse_reply(raw)
    assert isinstance(result, Parsed)
    assert result.message.reply_code == 5
    assert not result.message.succeeded


def test_reply_needs_in_steps_never_past_the_shortest_reply() -> None:
    # 8 bytes is the shortest valid reply (ATYP 3 with a one-byte name).
    assert _codec.parse_reply(b"") == NeedData(8)
    assert _codec.parse_reply(b"\x05\x00\x00") == NeedData(5)
    assert _codec.parse_reply(b"\x05\x00\x00\x03") == NeedData(4)
    assert _codec.parse_reply(b"\x05\x00\x00\x03\x01") == NeedData(3)
    assert _codec.parse_reply(b"\x05\x00\x00\x03\x04") == NeedData(6)
    assert _codec.parse_reply(b"\x05\x00\x00\x01") == NeedData(6)
    assert _codec.parse_reply(b"\x05\x00\x00\x04" + b"\x00" * 4) == NeedData(14)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x04\x00", "version"),
        (b"\x05\x00\x00\x02", "address type"),
        (b"\x05\x00\x00\x00", "address type"),
        (b"\x05\x00\x00\x03\x00", "empty domain"),
        (b"\x05\x00\x00\x03\x02\xff\xfe\x00\x00", "not ASCII"),
        (b"\x05\x00\x00\x03\x03a\x00b\x00\x50", "NUL"),
    ],
)
def test_malformed_replies_raise_protocol_error(raw: bytes, match: str) -> None:
    with pytest.raises(ProxyProtocolError, match=match):
        _codec.parse_reply(raw)


@pytest.mark.parametrize(
    ("atyp", "host", "expected"),
    [
        (AddressType.IPV4, "0.0.0.0", True),
        (AddressType.IPV6, "::", True),
        (AddressType.IPV4, "127.0.0.1", False),
        (AddressType.IPV6, "::1", False),
        # A name is never the wildcard, and is not parsed (no ValueError).
        (AddressType.DOMAIN, "0.0.0.0", False),
        (AddressType.DOMAIN, "::", False),
        (AddressType.DOMAIN, "::1%", False),
    ],
)
def test_is_unspecified_goes_by_the_address_type(
    atyp: AddressType, host: str, expected: bool
) -> None:
    assert _codec.is_unspecified(atyp, host) is expected


def test_peek_reply_code() -> None:
    assert _codec.peek_reply_code(b"\x05") is None
    assert _codec.peek_reply_code(b"\x05\x05") == 5
    assert _codec.peek_reply_code(b"\x04\x05") is None


def test_udp_datagram_round_trip() -> None:
    hdr = _codec.encode_udp_header("example.org", 53, frag=0x81)
    dgram = _codec.parse_udp_datagram(hdr + b"payload")
    assert dgram == _codec.UDPDatagram(0x81, AddressType.DOMAIN, "example.org", 53, b"payload")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00\x00",
        b"\x00\x01\x00\x01\x7f\x00\x00\x01\x00\x35",
        b"\x00\x00\x00\x01\x7f\x00\x00",
        b"\x00\x00\x00\x07" + b"\x00" * 10,
        b"\x00\x00\x00\x03\x00\x00\x35",
        b"\x00\x00\x00\x03\x03a\x00b\x00\x35",
    ],
)
def test_malformed_udp_datagrams_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        _codec.parse_udp_datagram(raw)


# -- properties ---------------------------------------------------------------

ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).map(lambda a: str(a))
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=5).map(".".join).filter(lambda d: len(d) <= 255)
hosts = st.one_of(ipv4s, ipv6s, domains)
ports = st.integers(0, 65535)


def _reply_bytes(rep: int, host: str, port: int) -> bytes:
    """A reply built by hand (not by the codec) so the round trip proves something."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        addr = b"\x03" + bytes([len(host)]) + host.encode()
    else:
        addr = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    return bytes([5, rep, 0]) + addr + struct.pack("!H", port)


@given(rep=st.integers(0, 255), host=hosts, port=ports, tail=st.binary(max_size=20))
def test_reply_round_trip(rep: int, host: str, port: int, tail: bytes) -> None:
    raw = _reply_bytes(rep, host, port)
    result, used = feed(_codec.parse_reply, raw + tail)
    assert isinstance(result, Parsed)
    assert used == len(raw)
    assert result.message.reply_code == rep
    assert (
        ipaddress.ip_address(result.message.host) == ipaddress.ip_address(host)
        if (result.message.atyp != AddressType.DOMAIN)
        else result.message.host == host
    )
    assert result.message.port == port


@given(host=hosts, port=ports)
def test_request_address_round_trips_through_reply_parser(host: str, port: int) -> None:
    # A request's ATYP/ADDR/PORT has the same layout as a reply's BND part.
    address = _codec.encode_address(host, port)
    result = _codec.parse_reply(b"\x05\x00\x00" + address)
    assert isinstance(result, Parsed)
    assert result.message.port == port
    assert result.consumed == 3 + len(address)


@given(host=hosts, port=ports, frag=st.integers(0, 255), data=st.binary(max_size=64))
def test_udp_header_round_trip(host: str, port: int, frag: int, data: bytes) -> None:
    dgram = _codec.parse_udp_datagram(_codec.encode_udp_header(host, port, frag) + data)
    assert (dgram.frag, dgram.port, dgram.data) == (frag, port, data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_stream_parsers(data: bytes) -> None:
    for parser in (_codec.parse_method_selection, _codec.parse_auth_reply, _codec.parse_reply):
        for end in range(len(data) + 1):
            try:
                result = parser(data[:end])
            except ProxyProtocolError:
                break
            if isinstance(result, NeedData):
                assert result.size >= 1
            else:
                assert 0 < result.consumed <= end
                break


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_udp_parser(data: bytes) -> None:
    try:
        dgram = _codec.parse_udp_datagram(data)
    except ProxyProtocolError:
        return
    assert len(dgram.data) <= len(data)


@given(st.text(max_size=300), ports)
def test_arbitrary_hosts_encode_or_raise_value_error(host: str, port: int) -> None:
    try:
        out = _codec.encode_address(host, port)
    except ValueError:
        return
    assert len(out) <= 1 + 1 + 255 + 2
    if out[0] == AddressType.DOMAIN:
        assert 1 <= out[1] == len(out) - 4


def test_importing_the_package_does_not_import_idna() -> None:
    # idna is needed only for a non-ASCII name; most programs never send one.
    import subprocess
    import sys

    code = (
        "import sys, socks5client\n"
        "socks5client._codec.encode_host('example.com')\n"
        "assert 'idna' not in sys.modules, 'idna imported for ASCII'\n"
        "socks5client._codec.encode_host('faß.de')\n"
        "assert 'idna' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
