"""SOCKS5 wire format, with no I/O: bytes in, messages out, and the reverse.

This module knows RFC 1928 (SOCKS5), RFC 1929 (username/password) and RFC
1961 (GSS-API message framing) byte layouts and nothing else: no sockets, no
clock, no policy.  The socket layer (``sock.py``, ``udp.py``) owns the
connection and calls in here.

Encoders validate their arguments where the bytes are built, so a value that
does not fit its length field can never reach the wire (curl's
CVE-2023-38545 was a hostname length checked in one place and encoded in
another).  They raise :class:`ValueError` (or :class:`TypeError` for a wrong
type).

Parsers are incremental.  Each takes the bytes received so far and returns
either :class:`NeedData` -- how many more bytes are needed at least -- or a
:class:`Parsed` holding the message and the number of bytes it used.  A
parser never uses a byte past the end of its message, so whatever follows
(application data that arrived in the same TCP segment as the reply) is left
to the caller.  Anything that cannot be a valid message raises
:class:`~socks5client.errors.ProxyProtocolError` as early as it is detectable,
so a proxy that floods garbage is stopped after a few bytes.
"""

from __future__ import annotations

import enum
import socket
import struct

from .errors import GSSAPIFramingError, ProxyProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Generic, NamedTuple, TypeVar, Union
else:
    # Run-time stand-ins, far cheaper to import (see _runtime_types).
    from ._runtime_types import Generic, NamedTuple, TypeVar

__all__ = [
    "AddressType",
    "AuthReply",
    "Command",
    "GSSAPIFrame",
    "GSSAPIMessage",
    "Method",
    "MethodSelection",
    "NeedData",
    "Parsed",
    "PortRangeError",
    "Reply",
    "ReplyCode",
    "UDPDatagram",
    "encode_address",
    "encode_greeting",
    "encode_gssapi_frame",
    "encode_host",
    "encode_request",
    "encode_udp_header",
    "encode_userpass",
    "is_unspecified",
    "lookup_udp_datagram",
    "parse_auth_reply",
    "parse_gssapi_frame",
    "parse_method_selection",
    "parse_reply",
    "parse_udp_datagram",
    "peek_reply_code",
    "split_udp_datagram",
    "udp_header_size",
]

SOCKS_VERSION = 5
USERPASS_VERSION = 1
GSSAPI_VERSION = 1
#: RFC 1961's LEN field is two octets.
GSSAPI_MAX_TOKEN = 0xFFFF


class Method(enum.IntEnum):
    """Authentication methods (RFC 1928 section 3)."""

    NO_AUTH = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class GSSAPIMessage(enum.IntEnum):
    """RFC 1961 message types (MTYP)."""

    CONTEXT = 0x01
    PROTECTION = 0x02
    ENCAPSULATED = 0x03
    ABORT = 0xFF


class Command(enum.IntEnum):
    """Request commands (RFC 1928 section 4)."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class AddressType(enum.IntEnum):
    """Address types (RFC 1928 section 5)."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


_IPV4 = AddressType.IPV4


class ReplyCode(enum.IntEnum):
    """Assigned reply codes (RFC 1928 section 6); 9-255 are unassigned."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


_T = TypeVar("_T")


class NeedData(NamedTuple):
    """The message is incomplete: at least ``size`` more bytes are needed.

    ``size`` is exact for the next fixed-size part of the message, so a
    caller that reads exactly ``size`` bytes never reads past the message.
    """

    size: int


class Parsed(Generic[_T]):
    """A complete message and how many bytes of the input it used."""

    # A plain class rather than a dataclass: importing dataclasses pulls in
    # inspect and ast, which cost more import time than this whole package.
    __slots__ = ("consumed", "message")

    def __init__(self, message: _T, consumed: int) -> None:
        self.message = message
        self.consumed = consumed

    def __repr__(self) -> str:
        return f"Parsed(message={self.message!r}, consumed={self.consumed})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parsed):
            return NotImplemented
        return (self.message, self.consumed) == (other.message, other.consumed)

    __hash__ = None  # type: ignore[assignment]


#: NeedData for the sizes a reply can lack, made once: this is on every
#: connection's path.
_NEED = [NeedData(n) for n in range(263)]


class MethodSelection(NamedTuple):
    """The server's choice of authentication method."""

    method: int


class AuthReply(NamedTuple):
    """The server's answer to RFC 1929 username/password authentication."""

    status: int

    @property
    def ok(self) -> bool:
        """True when the credentials were accepted (status 0)."""
        return self.status == 0


class Reply(NamedTuple):
    """A reply to CONNECT, BIND or UDP ASSOCIATE.

    ``host`` is the text form of BND.ADDR: a dotted quad, an IPv6 address
    (compressed form), or the domain name the proxy sent.
    """

    reply_code: int
    atyp: AddressType
    host: str
    port: int

    @property
    def succeeded(self) -> bool:
        """True when REP is 0."""
        return self.reply_code == ReplyCode.SUCCEEDED


class GSSAPIFrame(NamedTuple):
    """One RFC 1961 message: ``VER=1 MTYP LEN(2) TOKEN``, or the two-octet abort."""

    mtyp: int
    token: bytes


class UDPDatagram(NamedTuple):
    """A UDP request/response datagram: header fields and payload."""

    frag: int
    atyp: AddressType
    host: str
    port: int
    data: bytes


# Enum lookups by value through a dict: calling AddressType(n) costs a
# microsecond, which matters once per datagram.
_ATYPS = {int(a): a for a in AddressType}

#: The shortest valid reply: VER REP RSV, ATYP 3 with a one-byte name, PORT.
#: A reader may always ask for this many bytes first without reading past
#: the end of any reply.
MIN_REPLY_SIZE = _MIN_REPLY = 3 + 1 + 1 + 1 + 2

if TYPE_CHECKING:
    _ParseResult = Union[NeedData, Parsed[_T]]
    _Buffer = Union[bytes, bytearray, memoryview]

# ---------------------------------------------------------------------------
# Encoding


class PortRangeError(ValueError, OverflowError):
    """A port outside 0-65535.

    A ``ValueError`` like every bad argument here, and an ``OverflowError``
    like the one ``socket`` raises for the same mistake, so that code written
    for plain sockets catches it too.
    """


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise PortRangeError(f"port {port} is out of range 0-65535")
    return port


_inet_pton = socket.inet_pton
_inet_ntoa = socket.inet_ntoa
_tuple_new = tuple.__new__
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


def encode_host(host: str) -> tuple[AddressType, bytes]:
    """Return the ATYP and the DST.ADDR bytes for ``host``.

    IP literals become ATYP 1 or 4 (an IPv6 scope such as ``%eth0`` is
    dropped: it means nothing to the proxy).  Any other string is a domain
    name: ASCII names go as they are; others are encoded with IDNA 2008 and
    UTS 46 mapping (``faß.de`` -> ``xn--fa-hia.de``).  The result must fit
    the one-byte length field.
    """
    if type(host) is not str:
        if isinstance(host, (bytes, bytearray)):
            try:
                host = bytes(host).decode("ascii")
            except UnicodeDecodeError:
                raise ValueError("a hostname given as bytes must be ASCII") from None
        elif isinstance(host, str):
            host = str(host)
        else:
            raise TypeError(f"host must be a str, not {type(host).__name__}")
    if not host:
        raise ValueError("the destination hostname is empty")
    # inet_pton is the C parser (strict dotted quads, RFC 4291 text), many
    # times cheaper than ipaddress, and this runs for every request and
    # every datagram.  A failure just means "not a literal of that family".
    try:
        if ":" in host:
            return AddressType.IPV6, _inet_pton(_AF_INET6, host.split("%", 1)[0])
        return AddressType.IPV4, _inet_pton(_AF_INET, host)
    except (OSError, ValueError):
        pass
    if "\x00" in host:
        # A plain socket refuses it too (TypeError there): a proxy written
        # in C would end the name at the NUL, so "evil\0.example.com"
        # passing a suffix check here would reach "evil".
        raise ValueError("hostname must not contain a NUL character")
    if host.isascii():
        name = host.encode("ascii")
    else:
        # Imported here: most programs only ever send ASCII names, and
        # importing idna (and its tables) costs more than the rest of the
        # package.
        import idna

        try:
            name = idna.encode(host, uts46=True)
        except idna.IDNAError as exc:  # a UnicodeError, hence a ValueError
            raise ValueError(f"hostname {host!r} is not a valid IDNA name: {exc}") from None
    if len(name) > 255:
        raise ValueError(
            f"hostname is {len(name)} bytes long once encoded; SOCKS5 allows at most 255"
        )
    if not name:
        raise ValueError("the destination hostname is empty")
    return AddressType.DOMAIN, bytes((len(name),)) + name


def encode_address(host: str, port: int) -> bytes:
    """ATYP, DST.ADDR and DST.PORT for ``(host, port)``."""
    port = _check_port(port)
    atyp, addr = encode_host(host)
    return bytes((atyp,)) + addr + port.to_bytes(2, "big")


def encode_greeting(methods: list[int]) -> bytes:
    """The version identifier/method selection message."""
    if not 1 <= len(methods) <= 255:
        raise ValueError("a greeting offers between 1 and 255 methods")
    for m in methods:
        if not 0 <= m <= 0xFE:
            raise ValueError(f"method {m} cannot be offered")
    return bytes([SOCKS_VERSION, len(methods), *methods])


def _credential(value: object, what: str, allow_empty: bool) -> bytes:
    if isinstance(value, str):
        raw = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raise TypeError(f"the {what} must be str or bytes, not {type(value).__name__}")
    if len(raw) > 255:
        # Never echo the value itself: it may be a password.
        raise ValueError(f"the {what} is {len(raw)} bytes long; RFC 1929 allows at most 255")
    if not raw and not allow_empty:
        raise ValueError(f"the {what} is empty; RFC 1929 needs at least one byte")
    return raw


def encode_userpass(username: str | bytes, password: str | bytes) -> bytes:
    """The RFC 1929 username/password request (text is sent as UTF-8).

    The username must be 1-255 bytes; the password 0-255 bytes (RFC 1929
    says 1-255, but servers accept an empty one and users have them).
    """
    user = _credential(username, "username", allow_empty=False)
    pw = _credential(password, "password", allow_empty=True)
    return bytes([USERPASS_VERSION, len(user)]) + user + bytes([len(pw)]) + pw


_COMMANDS = frozenset(int(c) for c in Command)


def encode_gssapi_frame(mtyp: int, token: bytes) -> bytes:
    """``01 MTYP LEN TOKEN``; a token longer than LEN can say is refused."""
    if len(token) > GSSAPI_MAX_TOKEN:
        raise ValueError(
            f"a GSS-API token of {len(token)} bytes does not fit RFC 1961's"
            f" {GSSAPI_MAX_TOKEN}-byte frame"
        )
    return struct.pack("!BBH", GSSAPI_VERSION, mtyp, len(token)) + token


def encode_request(command: Command, host: str, port: int) -> bytes:
    """A CONNECT, BIND or UDP ASSOCIATE request for ``(host, port)``."""
    if command not in _COMMANDS:
        raise ValueError(f"{command!r} is not a SOCKS5 command")
    if type(port) is not int or not 0 <= port <= 0xFFFF:
        port = _check_port(port)  # raises the right error (or takes an int subclass)
    atyp, addr = encode_host(host)
    return bytes((SOCKS_VERSION, command, 0x00, atyp)) + addr + port.to_bytes(2, "big")


def encode_udp_header(host: str, port: int, frag: int = 0) -> bytes:
    """The header to put before a UDP payload bound for ``(host, port)``."""
    if not 0 <= frag <= 0xFF:
        raise ValueError(f"FRAG {frag} is out of range 0-255")
    return b"\x00\x00" + bytes([frag]) + encode_address(host, port)


def udp_header_size(atyp: AddressType, domain_length: int = 255) -> int:
    """Bytes the UDP header takes for an address type (RSV+FRAG+ATYP+ADDR+PORT)."""
    if atyp == AddressType.IPV4:
        return 10
    if atyp == AddressType.IPV6:
        return 22
    return 7 + domain_length


# ---------------------------------------------------------------------------
# Parsing


def _check_version(data: _Buffer, expected: int, what: str) -> None:
    if len(data) >= 1 and data[0] != expected:
        # An HTTP proxy answers our greeting with "HTTP/1.x 400 ...": its
        # first bytes are all that a two-byte method reply read has seen.
        head = bytes(data[:2])
        hint = "; this looks like an HTTP proxy, not SOCKS5" if head in (b"H", b"HT") else ""
        raise ProxyProtocolError(
            f"proxy sent version {data[0]:#04x} in its {what}; expected {expected:#04x}{hint}"
        )


def parse_method_selection(data: _Buffer) -> _ParseResult[MethodSelection]:
    """Parse the server's method selection (VER, METHOD)."""
    _check_version(data, SOCKS_VERSION, "method selection")
    if len(data) < 2:
        return NeedData(2 - len(data))
    return Parsed(MethodSelection(data[1]), 2)


def parse_auth_reply(data: _Buffer) -> _ParseResult[AuthReply]:
    """Parse the RFC 1929 reply (VER=1, STATUS)."""
    _check_version(data, USERPASS_VERSION, "username/password reply")
    if len(data) < 2:
        return NeedData(2 - len(data))
    return Parsed(AuthReply(data[1]), 2)


def parse_gssapi_frame(data: _Buffer) -> _ParseResult[GSSAPIFrame]:
    """Parse one RFC 1961 message; an abort (``01 FF``) is complete at two octets.

    Raises :class:`~socks5client.errors.GSSAPIFramingError` for a VER other
    than 1 or an unknown MTYP, as soon as the first two octets show it.
    Whether the MTYP is the one expected now is the caller's to check.
    """
    if len(data) >= 1 and data[0] != GSSAPI_VERSION:
        raise GSSAPIFramingError(
            f"proxy sent a GSS-API message with version {data[0]:#04x}; RFC 1961 says 0x01"
        )
    if len(data) < 2:
        return NeedData(2 - len(data))
    mtyp = data[1]
    if mtyp == GSSAPIMessage.ABORT:
        return Parsed(GSSAPIFrame(mtyp, b""), 2)
    if mtyp not in (GSSAPIMessage.CONTEXT, GSSAPIMessage.PROTECTION, GSSAPIMessage.ENCAPSULATED):
        raise GSSAPIFramingError(f"proxy sent a GSS-API message of unknown type {mtyp:#04x}")
    if len(data) < 4:
        return NeedData(4 - len(data))
    total = 4 + ((data[2] << 8) | data[3])
    if len(data) < total:
        return NeedData(total - len(data))
    return Parsed(GSSAPIFrame(mtyp, bytes(data[4:total])), total)


def _address_length(data: _Buffer, offset: int, what: str) -> int | NeedData:
    """Length of ATYP+ADDR+PORT starting at ``offset``, or what is missing."""
    if len(data) < offset + 1:
        return NeedData(offset + 1 - len(data))
    atyp = data[offset]
    if atyp == AddressType.IPV4:
        return 1 + 4 + 2
    if atyp == AddressType.IPV6:
        return 1 + 16 + 2
    if atyp == AddressType.DOMAIN:
        if len(data) < offset + 2:
            return NeedData(offset + 2 - len(data))
        n = data[offset + 1]
        if n == 0:
            raise ProxyProtocolError(f"proxy sent an empty domain name in its {what}")
        return 1 + 1 + n + 2
    raise ProxyProtocolError(f"proxy sent unknown address type {atyp:#04x} in its {what}")


def _ipv4_text(data: _Buffer, offset: int) -> str:
    # Formatting the four octets directly is several times faster than
    # ipaddress, and this runs for every UDP datagram.
    return f"{data[offset]}.{data[offset + 1]}.{data[offset + 2]}.{data[offset + 3]}"


def _decode_address(data: _Buffer, offset: int, what: str) -> tuple[AddressType, str, int]:
    atyp = _ATYPS[data[offset]]
    if atyp == AddressType.IPV4:
        host = _ipv4_text(data, offset + 1)
        end = offset + 5
    elif atyp == AddressType.IPV6:
        host = socket.inet_ntop(_AF_INET6, bytes(data[offset + 1 : offset + 17]))
        end = offset + 17
    else:
        n = data[offset + 1]
        raw = bytes(data[offset + 2 : offset + 2 + n])
        try:
            host = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ProxyProtocolError(
                f"proxy sent a domain name that is not ASCII in its {what}"
            ) from None
        if "\x00" in host:
            # No name holds a NUL, and what we would do with this one
            # (give it back as an address, send it on) refuses it with a
            # bare ValueError: a proxy fault must surface as one.
            raise ProxyProtocolError(f"proxy sent a domain name holding a NUL in its {what}")
        end = offset + 2 + n
    (port,) = struct.unpack_from("!H", data, end)
    return atyp, host, port


def is_unspecified(atyp: int, host: str) -> bool:
    """Whether a decoded BND.ADDR is the wildcard address (``0.0.0.0`` or ``::``).

    Decided from the address type and the decoded text alone: a name
    (ATYP 3) is never the wildcard, whatever it reads like, and is not
    parsed again (a hostile one need not be a valid address).
    """
    if atyp == AddressType.IPV4:
        return host == "0.0.0.0"
    # inet_ntop writes the all-zero IPv6 address as "::" and nothing else so.
    return atyp == AddressType.IPV6 and host == "::"


def ipv4_reply(data: _Buffer) -> Reply:
    """The reply in the first 10 bytes of ``data``, known to have an IPv4 BND.ADDR."""
    # tuple.__new__ directly: a named tuple's own __new__ is a Python
    # function, and this runs for nearly every connection.
    return _tuple_new(Reply, (data[1], _IPV4, _inet_ntoa(data[4:8]), data[8] << 8 | data[9]))


def parse_reply(data: _Buffer) -> _ParseResult[Reply]:
    """Parse a reply (VER, REP, RSV, ATYP, BND.ADDR, BND.PORT).

    A reply with a non-zero REP is returned like any other: a failure code
    is a valid answer, and turning it into an error is the caller's policy.
    RSV is not checked (it carries no meaning and some servers fill it).
    """
    size = len(data)
    if size > 3 and data[3] == 1 and data[0] == SOCKS_VERSION:
        # An IPv4 BND, what most servers answer: decoded inline, as this
        # runs for every connection.
        if size < 10:
            return _NEED[10 - size]
        return Parsed(ipv4_reply(data), 10)
    _check_version(data, SOCKS_VERSION, "reply")
    if len(data) < 3:
        return NeedData(_MIN_REPLY - len(data))
    length = _address_length(data, 3, "reply")
    if isinstance(length, NeedData):
        # Every valid reply has at least _MIN_REPLY bytes, so asking for
        # that many at once saves reads without ever reading past the end.
        return NeedData(max(length.size, _MIN_REPLY - len(data)))
    total = 3 + length
    if len(data) < total:
        return NeedData(total - len(data))
    atyp, host, port = _decode_address(data, 3, "reply")
    return Parsed(Reply(data[1], atyp, host, port), total)


def peek_reply_code(data: _Buffer) -> int | None:
    """REP of a possibly incomplete reply, if enough of it has arrived.

    A proxy that fails a request may close the connection before sending the
    whole reply; its reply code is still worth reporting.
    """
    if len(data) >= 2 and data[0] == SOCKS_VERSION:
        return data[1]
    return None


def parse_udp_datagram(data: _Buffer) -> UDPDatagram:
    """Parse a whole UDP datagram from the relay (header and payload).

    Unlike the stream parsers this one gets a complete datagram, so a short
    one is a protocol error rather than a request for more data.
    """
    size = len(data)
    if size < 4:
        raise ProxyProtocolError(f"UDP datagram of {size} bytes is too short for a header")
    if data[0] != 0 or data[1] != 0:
        raise ProxyProtocolError("UDP datagram has a non-zero RSV field")
    if data[3] == AddressType.IPV4 and size >= 10:
        # The common case, inline: this runs once per received datagram.
        return UDPDatagram(
            data[2],
            AddressType.IPV4,
            _ipv4_text(data, 4),
            data[8] << 8 | data[9],
            bytes(data[10:]),
        )
    length = _address_length(data, 3, "UDP header")
    if isinstance(length, NeedData) or len(data) < 3 + length:
        raise ProxyProtocolError("UDP datagram is truncated inside its header")
    atyp, host, port = _decode_address(data, 3, "UDP header")
    return UDPDatagram(data[2], atyp, host, port, bytes(data[3 + length :]))


def split_udp_datagram(data: bytes) -> tuple[bytes, bytes]:
    """Split a whole UDP datagram from the relay into ``(header, payload)``.

    Checks as much as finding the header's end needs (its length, RSV, a
    known ATYP, a non-empty name) and decodes nothing: a caller that sees the
    same few headers over and over keeps what :func:`parse_udp_datagram`
    made of each ``header`` (which checks the rest) and looks it up by the
    header's bytes.  Whatever this refuses, :func:`parse_udp_datagram`
    refuses too, with the same :class:`ProxyProtocolError`.
    """
    size = len(data)
    if size >= 10 and data[3] == 1 and not data[0] and not data[1]:
        # IPv4, the common case: one test per datagram.
        return data[:10], data[10:]
    if size < 4:
        raise ProxyProtocolError(f"UDP datagram of {size} bytes is too short for a header")
    if data[0] != 0 or data[1] != 0:
        raise ProxyProtocolError("UDP datagram has a non-zero RSV field")
    length = _address_length(data, 3, "UDP header")
    if isinstance(length, NeedData) or size < 3 + length:
        raise ProxyProtocolError("UDP datagram is truncated inside its header")
    return data[: 3 + length], data[3 + length :]


if TYPE_CHECKING:
    _V = TypeVar("_V")


def lookup_udp_datagram(data: bytes, known: dict[bytes, _V]) -> tuple[_V, bytes] | None:
    """``(known[header], payload)`` for a datagram whose header is in ``known``; else None.

    ``known`` maps headers that :func:`split_udp_datagram` returned (and
    :func:`parse_udp_datagram` accepted) to whatever the caller made of
    them, so a header found there needs no check again: this is the
    per-datagram fast path, one call.  Only IPv4 and IPv6 headers are looked
    up; None sends the caller to :func:`split_udp_datagram` and the full
    parse.
    """
    atyp = data[3] if len(data) > 3 else 0
    if atyp == 1:
        end = 10
    elif atyp == 4:
        end = 22
    else:
        return None
    value = known.get(data[:end])
    if value is None:
        return None
    return value, data[end:]
