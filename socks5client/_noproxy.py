"""Which destinations bypass the proxy when a whole process is patched.

:class:`NoProxy` answers one question, on every ``connect``: should this host
be reached directly instead of through the proxy?  It only looks at the text
of the host as the program passed it; it never resolves a name (a DNS query
here would leak the very lookups a ``socks5h`` proxy exists to hide).

Entry syntax (the one shared, give or take, by curl, requests/urllib and Go):

* Entries are separated by commas and/or whitespace and compared without
  regard to case.
* ``*`` (an entry that is just an asterisk) matches every host.
* ``example.com`` matches ``example.com`` and every name below it
  (``a.example.com``), not ``badexample.com``.  ``.example.com`` and
  ``*.example.com`` mean the same thing: the name itself is included, as
  curl does (Go leaves the bare name out for those two forms).
* A trailing dot is ignored in entries and hosts (``example.com.``).
* Non-ASCII names, in entries and hosts, are compared by their IDNA 2008 /
  UTS 46 form, the form the codec sends to the proxy (``bücher.de`` and
  ``xn--bcher-kva.de`` are the same entry).  ``idna`` is imported only when
  such text shows up.
* An IP address matches that address only; IPv6 may be bracketed, carry a
  ``%scope`` (ignored) and be written in any form (``::1`` equals
  ``0:0:0:0:0:0:0:1``).  An IPv4-mapped IPv6 host (``::ffff:10.0.0.1``) also
  matches as its IPv4 address, because that is where the kernel sends it.
* An IPv4 host means what ``getaddrinfo``/``inet_aton`` make of it:
  ``127.1``, ``0x7f.0.0.1`` and ``2130706433`` are all 127.0.0.1, and
  ``010.0.0.1`` is 8.0.0.1 (octal).  Otherwise a program connecting to
  ``127.1`` would be sent to the proxy while the kernel reads it as
  loopback.  Entries, on the other hand, must use the usual dotted quad
  (``10.0.0.1``, ``10.0.0.0/8``); other spellings are ambiguous to a human
  reader (``10/8``, ``010.0.0.1``) and skipped.
* A CIDR range (``10.0.0.0/8``, ``fd00::/8``) matches the IP literals inside
  it and never a hostname.
* Entries that cannot be understood are skipped (listed in
  :attr:`NoProxy.ignored`) rather than raising: a stray character in an
  environment variable must not break every connection of the process.

Choices where the tools disagree:

* Environment: lowercase ``no_proxy`` first, then ``NO_PROXY``; a variable
  that is set but empty counts as unset.  That is what curl does (it reads
  the lowercase variable first and its getenv wrapper treats an empty value
  as missing; checked with curl 7.88) and what requests does
  (``no_proxy or NO_PROXY``), so a patched process agrees with the curl and
  requests calls it makes alongside.  Go's ``httpproxy`` reads the
  uppercase variable first (also skipping empty values).  Whatever the
  environment says, loopback goes direct; only an explicit ``no_proxy``
  (``""`` for nothing at all) sends it through the proxy.
* Ports: an entry with a port (``example.com:8080``, ``10.1.2.3:80``,
  ``[::1]:8080``) sends only connections to that port direct, as requests
  and Go read it; :meth:`NoProxy.matches` must then be given the port, and
  without one such an entry does not match (the safe side: through the
  proxy).
* ``*`` is honoured as any entry of the list (as Go does), not only as the
  whole value (as curl and urllib do): someone who wrote ``*`` meant it.
* ``*.example.com``: curl has no such form (it compares the text as is, so
  it matches nothing); Go drops the ``*`` and, as for ``.example.com``,
  matches subdomains only.  Here it is a synonym of ``.example.com`` and,
  like every name entry, includes the name itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

__all__ = ["LOCAL_ENTRIES", "NoProxy", "lookup_name"]

#: What always goes direct when ``no_proxy`` is left to its default: the
#: names RFC 6761 reserves for the local host and the loopback addresses
#: (IPv4-mapped loopback such as ``::ffff:127.0.0.1`` is covered because
#: mapped hosts are also matched as IPv4).  A proxy, above all a remote one,
#: would reach *its own* loopback instead of ours.
LOCAL_ENTRIES: tuple[str, ...] = ("localhost", "127.0.0.0/8", "::1")

# One part of an IPv4 literal as inet_aton reads it: hex with 0x, octal with
# a leading 0, else decimal.  Spelled out in ASCII because ``int()`` would
# also take underscores, spaces and non-ASCII digits, which no resolver does.
_V4_PART = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_LEGACY_V4 = re.compile(rf"{_V4_PART}(?:\.{_V4_PART}){{0,3}}")

# Four decimal parts without leading zeros: the everyday spelling (matched
# first, the fast path) and the only one accepted in entries.  The range of
# each part is checked by _parse_ipv4.
_DEC_BYTE = r"(0|[1-9][0-9]{0,2})"
_DOTTED_QUAD = re.compile(rf"{_DEC_BYTE}\.{_DEC_BYTE}\.{_DEC_BYTE}\.{_DEC_BYTE}")

_MAPPED_PREFIX = 0xFFFF << 32  # ::ffff:0:0/96, IPv4 addresses seen by AF_INET6
_MAPPED_MASK = ((1 << 96) - 1) << 32


def _parse_ipv4(text: str) -> int | None:
    """The IPv4 address ``text`` denotes for ``getaddrinfo``, or None.

    glibc (and the BSDs) accept one to four parts; every part but the last
    is one byte, the last fills the remaining bytes (``1.2.3`` is 1.2.0.3).
    A trailing dot, an empty part or a value too large makes it a name.
    """
    quad = _DOTTED_QUAD.fullmatch(text)
    if quad:
        a, b, c, d = map(int, quad.groups())
        if a > 0xFF or b > 0xFF or c > 0xFF or d > 0xFF:
            return None
        return a << 24 | b << 16 | c << 8 | d
    if not _LEGACY_V4.fullmatch(text):
        return None
    parts = text.split(".")
    value = 0
    for part in parts[:-1]:
        byte = _part_value(part)
        if byte is None or byte > 0xFF:
            return None
        value = value << 8 | byte
    last = _part_value(parts[-1])
    width = 8 * (5 - len(parts))
    if last is None or last >= 1 << width:
        return None
    return value << width | last


def _part_value(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        return int(part[2:], 16)
    if len(part) > 1 and part[0] == "0":
        # Octal: an 8 or 9 makes the whole literal invalid (glibc rejects
        # "08.1.1.1" rather than reading it as decimal).
        return int(part, 8) if "8" not in part and "9" not in part else None
    return int(part)


def _parse_ipv6(text: str) -> int | None:
    """The IPv6 address ``text`` (scope dropped) as an integer, or None."""
    try:
        return int(ipaddress.IPv6Address(text.partition("%")[0]))
    except ValueError:
        return None


def _normalize_name(name: str) -> str:
    """The form two names are compared in: lowercase ASCII, no trailing dot."""
    name = name.lower() if name.isascii() else _idna_name(name)
    return name[:-1] if name.endswith(".") else name


def _idna_name(name: str) -> str:
    """``name`` in IDNA 2008 / UTS 46 ASCII form, as far as it has one.

    For a valid name this equals ``idna.encode(name, uts46=True)``, which is
    what the codec sends to the proxy.  It works label by label so that one
    label idna refuses (``under_score``, which the resolver accepts) does not
    keep the rest of the name from being compared: such labels stay as they
    are, lowercased.
    """
    import idna  # here, not at the top: plain ASCII names never need it

    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
    except (idna.IDNAError, ValueError):
        mapped = name.lower()
    labels = []
    for label in mapped.split("."):
        if not label.isascii():
            try:
                label = idna.alabel(label).decode("ascii")
            except (idna.IDNAError, ValueError):
                label = label.lower()
        labels.append(label.lower())
    return ".".join(labels)


def lookup_name(host: str) -> str:
    """The name a direct connection to ``host`` looks up: the form :meth:`NoProxy.matches` judged.

    Python's socket functions, given non-ASCII text, encode it with IDNA
    2003, which can spell another domain than the IDNA 2008 form judged
    here ("faß.de" is "fass.de"; look-alike letters such as U+1F174 map to
    "e" in one and not the other): the lookup and the connection would then
    leave directly for a name no entry covered.  So a direct name is looked
    up in exactly the judged form, and a name whose judged form is not ASCII
    (a label IDNA 2008 cannot encode, such as ``☃`` or ``ß-``) has no form
    that is both the judged one and one a resolver takes: it is refused
    with ``gaierror(EAI_NONAME)``, as for a name that does not exist.
    ASCII text is returned as it is.
    """
    if host.isascii():
        return host
    judged = _idna_name(host)
    if not judged.isascii():
        raise socket.gaierror(
            socket.EAI_NONAME,
            f"{host!r} has no IDNA 2008 form to look up (the form no_proxy judged it in)",
        )
    return judged


def _split(setting: str) -> list[str]:
    # Commas and whitespace are both separators, in any mix and number
    # ("a.com, b.com", "a.com b.com", "a.com,,b.com").
    return setting.replace(",", " ").split()


class NoProxy:
    """A set of NO_PROXY entries, ready to be matched against hosts.

    Immutable once built; safe to share between threads.  Build it with
    :meth:`from_setting` (which applies the environment and the built-in
    local set) or directly from entries (which uses exactly those).
    """

    __slots__ = (
        "_all",
        "_by_port",
        "_domains",
        "_entries",
        "_exact4",
        "_exact6",
        "_ignored",
        "_nets4",
        "_nets6",
    )

    _all: bool
    _domains: frozenset[str]
    _exact4: frozenset[int]
    _exact6: frozenset[int]
    _nets4: tuple[tuple[int, int], ...]
    _nets6: tuple[tuple[int, int], ...]
    _entries: tuple[str, ...]
    _ignored: tuple[str, ...]
    _by_port: dict[int, NoProxy]

    def __init__(self, entries: str | Iterable[str] = ()) -> None:
        """Use exactly ``entries``: a NO_PROXY-style string, or strings.

        Every string is split on commas and whitespace, so ``["a.com,
        b.com"]`` is two entries.  Unusable entries are skipped (see
        :attr:`ignored`).
        """
        if isinstance(entries, str):
            entries = (entries,)
        elif isinstance(entries, (bytes, bytearray, memoryview)):
            raise TypeError("no_proxy entries must be str, not bytes")
        domains: set[str] = set()
        exact4: set[int] = set()
        exact6: set[int] = set()
        nets4: dict[tuple[int, int], None] = {}  # dicts as ordered sets
        nets6: dict[tuple[int, int], None] = {}
        canonical: dict[str, None] = {}
        ignored: dict[str, None] = {}
        ported: dict[int, list[str]] = {}
        match_all = False
        for item in entries:
            if not isinstance(item, str):
                raise TypeError(f"no_proxy entries must be str, not {type(item).__name__}")
            for token in _split(item):
                split = _split_port(token)
                if split is not None:
                    # "host:port": direct for that port only, as requests
                    # and Go read it (matches() must be given the port).
                    host_part, port = split
                    if _parse_entry(host_part) is None or host_part == "*":
                        ignored[token] = None
                    else:
                        ported.setdefault(port, []).append(host_part)
                        canonical[token.lower()] = None
                    continue
                entry = _parse_entry(token)
                if entry is None:
                    ignored[token] = None
                elif entry.kind == "*":
                    match_all = True
                    canonical["*"] = None
                elif entry.kind == "name":
                    domains.add(entry.name)
                    canonical[entry.name] = None
                elif entry.kind == "v4":
                    mask = _mask(32, entry.prefix)
                    address = entry.address & mask
                    if entry.prefix == 32:
                        exact4.add(address)
                        canonical[str(ipaddress.IPv4Address(address))] = None
                    else:
                        nets4[address, mask] = None
                        canonical[str(ipaddress.IPv4Network((address, entry.prefix)))] = None
                else:
                    mask = _mask(128, entry.prefix)
                    address = entry.address & mask
                    if entry.prefix == 128:
                        exact6.add(address)
                        canonical[str(ipaddress.IPv6Address(address))] = None
                    else:
                        nets6[address, mask] = None
                        canonical[str(ipaddress.IPv6Network((address, entry.prefix)))] = None
        self._all = match_all
        self._domains = frozenset(domains)
        self._exact4 = frozenset(exact4)
        self._exact6 = frozenset(exact6)
        self._nets4 = tuple(nets4)
        self._nets6 = tuple(nets6)
        self._entries = tuple(canonical)
        self._ignored = tuple(ignored)
        self._by_port = {port: NoProxy(hosts) for port, hosts in ported.items()}

    @classmethod
    def from_setting(
        cls,
        no_proxy: str | Sequence[str] | None,
        environ: Mapping[str, str] = os.environ,
    ) -> NoProxy:
        """The matcher for ``patch(proxy, no_proxy=...)``.

        ``None`` (the default of ``patch``) means the environment --
        ``no_proxy``, or ``NO_PROXY`` when that is unset or empty -- plus
        :data:`LOCAL_ENTRIES`, which always go direct.  Anything else (a
        NO_PROXY-style string or a sequence of entries) replaces both: then
        ``""`` or ``[]`` sends everything through the proxy, loopback
        included, which is what a test of the proxy path needs.
        """
        if no_proxy is None:
            from_env = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
            return cls((from_env, *LOCAL_ENTRIES))
        if not isinstance(no_proxy, Iterable):
            raise TypeError(
                f"no_proxy must be None, a str or a sequence of str, not {type(no_proxy).__name__}"
            )
        return cls(no_proxy)

    @property
    def entries(self) -> tuple[str, ...]:
        """The entries in use, canonical and deduplicated, in order.

        Names are lowercase ASCII without leading ``.``/``*.`` or trailing
        dot (the forms are equivalent); addresses and ranges are in their
        standard notation, IPv4-mapped ones as IPv4.
        """
        return self._entries

    @property
    def ignored(self) -> tuple[str, ...]:
        """Entries that were skipped as unusable, as written (for warnings)."""
        return self._ignored

    def matches(self, host: str, port: int | None = None) -> bool:
        """Whether a connection to ``host`` (on ``port``) should bypass the proxy.

        ``host`` is what the program gave ``connect``/``getaddrinfo``: a
        name, or an IP literal (IPv6 possibly with ``%scope`` or brackets).
        Entries with a port (``example.com:8080``) match only when ``port``
        is given and equal.  Never resolves anything.

        A host with a NUL in it never matches, not even ``*``: the C
        resolver would stop at the NUL and look up (and connect to) another
        host than the one matched here.
        """
        if ("\x00" if isinstance(host, str) else b"\x00") in host:
            return False
        if self._all:
            return True
        if port is not None and self._by_port:
            for_port = self._by_port.get(port)
            if for_port is not None and for_port.matches(host):
                return True
        if isinstance(host, (bytes, bytearray)):
            # socket functions also take ASCII bytes for a host.
            try:
                host = bytes(host).decode("ascii")
            except UnicodeDecodeError:
                return False
        if not host:
            return False
        if host[0] == "[":
            # Only IPv6 goes in brackets; anything else there is no host a
            # resolver would accept, so nothing can match it.
            if host[-1] != "]":
                return False
            v6 = _parse_ipv6(host[1:-1])
            return v6 is not None and self._match_v6(v6)
        if ":" in host:
            # Names never contain a colon: either IPv6 or not a host at all
            # (a "name:port" slipped through), which no entry can match.
            v6 = _parse_ipv6(host)
            return v6 is not None and self._match_v6(v6)
        if host[-1] in "0123456789abcdefABCDEF":
            # Cheap pre-filter: every IPv4 literal ends in a (hex) digit.
            v4 = _parse_ipv4(host)
            if v4 is not None:
                return self._match_v4(v4)
        domains = self._domains
        if not domains:
            return False
        name = _normalize_name(host)
        if name in domains:
            return True
        # Each parent domain in turn: a.b.example.com -> b.example.com ->
        # example.com -> com.  Set lookups, so the cost depends on the number
        # of labels, not of entries.
        dot = name.find(".")
        while dot >= 0:
            if name[dot + 1 :] in domains:
                return True
            dot = name.find(".", dot + 1)
        return False

    def _match_v4(self, address: int) -> bool:
        if address in self._exact4:
            return True
        return any(address & mask == network for network, mask in self._nets4)

    def _match_v6(self, address: int) -> bool:
        if address in self._exact6:
            return True
        if any(address & mask == network for network, mask in self._nets6):
            return True
        # ::ffff:a.b.c.d on an AF_INET6 socket is a connection to a.b.c.d.
        return address & _MAPPED_MASK == _MAPPED_PREFIX and self._match_v4(address & 0xFFFFFFFF)

    def __bool__(self) -> bool:
        """False when no host at all can match (everything is proxied)."""
        return bool(
            self._all
            or self._domains
            or self._exact4
            or self._exact6
            or self._nets4
            or self._nets6
            or self._by_port
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._entries)!r})"


def _mask(bits: int, prefix: int) -> int:
    """The netmask of a ``/prefix`` among ``bits``-bit addresses, as an int."""
    return ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)


class _Entry(NamedTuple):
    """One usable entry: ``*``, a domain name, or an address with a prefix."""

    kind: str  # "*", "name", "v4" or "v6"
    name: str = ""
    address: int = 0
    prefix: int = 0


def _split_port(token: str) -> tuple[str, int] | None:
    """``(host, port)`` of a port-qualified entry (``name:80``, ``1.2.3.4:80``, ``[v6]:80``)."""
    if token.startswith("["):
        close = token.find("]")
        if close < 0 or not token[close + 1 :].startswith(":"):
            return None
        host, port_text = token[: close + 1], token[close + 2 :]
    elif token.count(":") == 1:
        host, _, port_text = token.partition(":")
    else:
        return None
    if not port_text.isascii() or not port_text.isdigit() or not host:
        return None
    port = int(port_text)
    if not 0 < port <= 0xFFFF:
        return None
    return host, port


def _parse_entry(token: str) -> _Entry | None:
    """Classify one entry, or None when it is unusable."""
    if token == "*":
        return _Entry("*")
    text = token
    if text.startswith("["):
        # [v6] or [v6]/prefix; [v6]:port is port-qualified, hence ignored.
        close = text.find("]")
        if close < 0:
            return None
        rest = text[close + 1 :]
        if rest and not rest.startswith("/"):
            return None
        text = text[1:close] + rest
        if ":" not in text:
            return None  # brackets hold IPv6 only
    address, slash, prefix_text = text.partition("/")
    if ":" in address:
        if address.count(":") == 1:
            return None  # name:port or v4:port (IPv6 has at least two colons)
        v6 = _parse_ipv6(address)
        if v6 is None:
            return None
        entry = _with_prefix("v6", v6, slash, prefix_text, 128)
        if entry is not None and entry.prefix >= 96 and v6 & _MAPPED_MASK == _MAPPED_PREFIX:
            # An IPv4-mapped entry is an IPv4 entry in disguise; kept as IPv4
            # it also matches the plain IPv4 host, the same destination.
            return _Entry("v4", address=v6 & 0xFFFFFFFF, prefix=entry.prefix - 96)
        return entry
    v4 = _parse_ipv4(address)
    if v4 is not None:
        # Entries must spell IPv4 in the usual four decimal parts.  Read the
        # inet_aton way, "10/8" would be 0.0.0.0/8 and "010.0.0.1" 8.0.0.1,
        # hardly what anyone writing them means; skipping them is safer than
        # guessing (curl's inet_pton never matches them either).  A name
        # entry would be no better: a host spelt so is an address, never a
        # name.
        if not _DOTTED_QUAD.fullmatch(address):
            return None
        return _with_prefix("v4", v4, slash, prefix_text, 32)
    if slash:
        return None  # a range of something that is not an address
    return _parse_name(token)


def _with_prefix(kind: str, value: int, slash: str, prefix_text: str, bits: int) -> _Entry | None:
    if not slash:
        return _Entry(kind, address=value, prefix=bits)
    # ASCII digits only: int() would take "+8", " 8" or "٨" too.
    if not prefix_text.isascii() or not prefix_text.isdigit() or len(prefix_text) > 3:
        return None
    prefix = int(prefix_text)
    if prefix > bits:
        return None
    return _Entry(kind, address=value, prefix=prefix)


def _parse_name(token: str) -> _Entry | None:
    # Normalized first, so that UTS 46 maps full-width dots and the like
    # before the prefixes are recognized.
    name = _normalize_name(token)
    if name.startswith("*."):
        name = name[2:]  # "*.example.com" means ".example.com"
    elif name.startswith("."):
        name = name[1:]  # ".example.com" includes example.com itself (curl)
    # What is left must look like a name: no wildcard elsewhere ("*foo",
    # "a.*.com" are not a syntax any of the tools share), no port, no path.
    if not name or name.startswith(".") or any(c in name for c in "*:/[]@"):
        return None
    return _Entry("name", name=name)
