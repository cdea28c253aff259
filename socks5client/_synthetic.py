"""Synthetic addresses: how a patched process resolves a proxied name without DNS.

Programs resolve a name (``getaddrinfo``) and then connect to the address
they got.  Through a ``socks5h`` proxy no address may be looked up here, so
while :func:`socks5client.patch` is active each proxied name gets an address
from a reserved range, remembered here; a connection to that address sends
the original name to the proxy.

The ranges:

* IPv4: ``240.0.0.0/8``, part of ``240.0.0.0/4``, which RFC 1112 reserves
  and which is not routed on the Internet;
* IPv6: ``fd53:6f63:6b35::/48``, a unique local prefix (RFC 4193) chosen for
  this library (its hex spells "Sock5").

An address's number is shared by both families, so a name has the same
synthetic address in each.  The table is bounded (:data:`MAX_NAMES`): the
least recently used name is forgotten first, and an address that is no
longer (or was never) in the table resolves to nothing, so a caller gets a
clear error rather than a connection to it.
"""

from __future__ import annotations

import _thread
import collections
import ipaddress
import os

__all__ = [
    "IPV4_NETWORK",
    "IPV6_NETWORK",
    "MAX_NAMES",
    "address_for",
    "forget_all",
    "is_synthetic",
    "name_for",
]

IPV4_NETWORK = ipaddress.IPv4Network("240.0.0.0/8")
IPV6_NETWORK = ipaddress.IPv6Network("fd53:6f63:6b35::/48")

#: How many names the table remembers at once.
MAX_NAMES = 65536

_V4_BASE = int(IPV4_NETWORK.network_address)
_V6_BASE = int(IPV6_NETWORK.network_address)
# Numbers 1 .. _SPAN-1: neither the network address nor 240.255.255.255.
_SPAN = IPV4_NETWORK.num_addresses - 1

_lock = _thread.allocate_lock()  # threading.Lock(), without importing threading
_by_name: collections.OrderedDict[str, int] = collections.OrderedDict()
_by_number: dict[int, str] = {}
_next = 1


def _after_fork_in_child() -> None:
    """Give a forked child a usable lock and a whole table.

    Only the forking thread lives on in the child: a lock another thread
    held at the fork would stay held for ever, and the child's first lookup
    of a proxied name would hang.  The table itself is kept, since the
    child's sockets and lookups go on with the addresses the parent handed
    out.  A lock that was held means that thread may have stopped between
    two steps of an update (a name entered but not yet its number, or a
    name evicted but not yet its number), so the numbers are made to agree
    with the names again; nothing else needs mending (``_next`` merely
    skips numbers in use).
    """
    global _lock
    held = _lock.locked()
    _lock = _thread.allocate_lock()
    if not held:
        return
    numbers: dict[int, str] = {}
    for key, number in _by_name.items():
        name = _by_number.get(number)
        # The name the parent's thread had not yet entered survives as its key:
        # the same name, as proxies compare names.
        numbers[number] = name if name is not None and _key(name) == key else key
    _by_number.clear()
    _by_number.update(numbers)


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def _number(name: str) -> int:
    global _next
    key = _key(name)
    with _lock:
        number = _by_name.get(key)
        if number is not None:
            _by_name.move_to_end(key)
            return number
        # Numbers are handed out in turn and reused only after the whole
        # range has gone round, so an address a program still holds is very
        # unlikely to mean another name by then.
        while _next in _by_number:
            _next = _next % (_SPAN - 1) + 1
        number = _next
        _next = _next % (_SPAN - 1) + 1
        _by_name[key] = number
        _by_number[number] = name
        if len(_by_name) > MAX_NAMES:
            _old, old_number = _by_name.popitem(last=False)
            del _by_number[old_number]
        return number


def address_for(name: str, ipv6: bool = False) -> str:
    """The synthetic address of ``name`` (made on first use), as text."""
    number = _number(name)
    if ipv6:
        return str(ipaddress.IPv6Address(_V6_BASE + number))
    return str(ipaddress.IPv4Address(_V4_BASE + number))


def _number_of(host: str) -> int | None:
    """The table number a synthetic address text stands for, or None if it is not one."""
    if host.startswith("240."):
        try:
            value = int(ipaddress.IPv4Address(host))
        except ValueError:
            return None
        return value - _V4_BASE
    if host[:4].lower() == "fd53":
        try:
            ip = ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
        if ip in IPV6_NETWORK:
            return int(ip) - _V6_BASE
    return None


def is_synthetic(host: object) -> bool:
    """Whether ``host`` is an address from the synthetic ranges (known or not)."""
    return isinstance(host, str) and _number_of(host) is not None


def name_for(host: object) -> str | None:
    """The name a synthetic address stands for; None if unknown or not synthetic."""
    if not isinstance(host, str):
        return None
    number = _number_of(host)
    if number is None:
        return None
    with _lock:
        return _by_number.get(number)


def forget_all() -> None:
    """Forget every name (``unpatch()``): their addresses then resolve to nothing."""
    with _lock:
        _by_name.clear()
        _by_number.clear()
