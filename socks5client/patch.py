"""Routing a whole process through the proxy: :func:`patch`, :func:`unpatch`, :func:`patched`.

:func:`patch` replaces, in the ``socket`` module, the names that programs
and libraries use to reach the network:

* ``socket.socket``: a :class:`~socks5client.socksocket` subclass that picks
  its route for each connection (the proxy, or direct for ``no_proxy``
  destinations);
* ``socket.create_connection``: the same routes, and hostnames handed to
  the proxy unresolved;
* ``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``,
  ``gethostbyaddr`` and ``getnameinfo``: with remote DNS (``socks5h``), a
  proxied name gets a *synthetic address* (see :mod:`._synthetic`) instead
  of a DNS query, and a connection to that address sends the name to the
  proxy.  Reverse lookups of proxied addresses are answered without DNS or
  refused.

:func:`unpatch` puts the exact original objects back.  The library's own
connections and lookups never go through the patch (``PlainSocket``,
:mod:`._resolve`).

``set_default_proxy``/``get_default_proxy`` live in :mod:`socks5client.proxy`
and are re-exported here beside PySocks' :func:`wrap_module`.
"""

from __future__ import annotations

import _thread
import collections
import errno
import os
import socket

from . import _resolve
from ._negotiate import Budget, PlainSocket, debug_logger
from ._secret import guard_secrets
from .proxy import Proxy, get_default_proxy, proxy_from_args, set_default_proxy
from .sock import _UNSET, _direct_connection, _errno_of, _unsupported, socksocket
from .sock import create_connection as _proxied_create_connection

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import _GeneratorContextManager
    from types import ModuleType
    from typing import Any, NamedTuple

    from . import _synthetic
    from .proxy import ProxyLike
else:
    # Run-time stand-in, far cheaper to import (see _runtime_types).
    from ._runtime_types import NamedTuple

__all__ = [
    "get_default_proxy",
    "is_patched",
    "patch",
    "patched",
    "set_default_proxy",
    "unpatch",
    "wrap_module",
]


#: The names patch() replaces in the socket module, in this order.
class _LazySynthetic:
    """``socks5client._synthetic``, imported on first use.

    Only a patched process makes synthetic addresses; importing the table
    (and ipaddress) up front would cost every program that imports
    socks5client and never patches.
    """

    def __getattr__(self, name: str) -> Any:
        from . import _synthetic as module

        # The module itself from now on: later calls never enter the import
        # system, whose locks a fork can leave held in the child.
        globals()["_synthetic"] = module
        return getattr(module, name)


if not TYPE_CHECKING:
    _synthetic = _LazySynthetic()

_NAMES = (
    "socket",
    "create_connection",
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
)

#: How many addresses of direct (no_proxy) names are remembered, so that a
#: program that resolves such a name and then connects to the address goes
#: direct too.
_MAX_DIRECT_ADDRESSES = 4096


class _Settings(NamedTuple):
    """What patch() was called with, normalised (equal settings: same patch)."""

    proxy: Proxy
    no_proxy: str | tuple[str, ...] | None
    udp: bool
    bind: bool


class _Active:
    """The running patch: its settings, the no_proxy matcher, the originals."""

    def __init__(self, settings: _Settings, originals: dict[str, Any]) -> None:
        self.settings = settings
        self.proxy = settings.proxy
        self.remote_dns = settings.proxy.remote_dns
        self.udp = settings.udp
        self.bind = settings.bind
        # Imported here: only a process that patches needs the matcher.
        from ._noproxy import NoProxy

        self.no_proxy = NoProxy.from_setting(settings.no_proxy)
        self.originals = originals
        self._direct_lock = _thread.allocate_lock()
        # An address alone is direct on every port; (address, port), from a
        # name that a port-qualified entry sends direct, on that port only.
        self._direct_addresses: collections.OrderedDict[str | tuple[str, int], None] = (
            collections.OrderedDict()
        )
        # Synthetic answers for AF_UNSPEC callers come in a family the proxy
        # can be reached in: an AF_INET socket cannot reach an IPv6-only proxy.
        self.prefer_ipv6 = _ipv6_only(settings.proxy.host, originals["getaddrinfo"])
        self.proxy_address = (settings.proxy.host.lower(), settings.proxy.port)
        # With the default no_proxy, this machine's own name is local too:
        # programs look it up (smtplib's EHLO, getfqdn) and bind to it.
        self.local_names: frozenset[str] = (
            frozenset({socket.gethostname().lower()}) if settings.no_proxy is None else frozenset()
        )
        #: Things to put back at unpatch() besides the socket module's names.
        self.extra_restores: list[tuple[Any, str, Any]] = []
        #: Whether a patched() block applied this patch (not patch()), and
        #: how many patched() blocks, in any thread, are inside it now: the
        #: last of them to exit unpatches (under _lock).
        self.applied_by_block = False
        self.blocks = 0

    def direct(self, host: str, port: Any = None) -> bool:
        """Whether a connection to ``host`` (name or address, on ``port``) bypasses the proxy.

        ``port`` may be what ``getaddrinfo`` takes: a numeric string counts
        as its number; None or a service name matches only entries without
        a port.
        """
        number = _port_for_no_proxy(port)
        return (
            self.no_proxy.matches(host, number)
            or host in self._direct_addresses
            or (number is not None and (host, number) in self._direct_addresses)
            or host.lower() in self.local_names
        )

    def is_proxy(self, host: str, port: Any) -> bool:
        """Whether ``(host, port)`` is the proxy itself.

        Code that talks to the proxy on its own (PySocks under requests
        when ``ALL_PROXY`` is set, say) reaches it directly rather than
        through itself.
        """
        return port == self.proxy_address[1] and host.lower() == self.proxy_address[0]

    def remember_direct(self, addresses: list[str], port: int | None = None) -> None:
        """Remember the addresses of a direct name, so that connecting to them is direct.

        With ``port``, only connections to that port are (the name went
        direct by an entry with that port).
        """
        with self._direct_lock:
            for address in addresses:
                key: str | tuple[str, int] = address if port is None else (address, port)
                self._direct_addresses[key] = None
                self._direct_addresses.move_to_end(key)
            while len(self._direct_addresses) > _MAX_DIRECT_ADDRESSES:
                self._direct_addresses.popitem(last=False)


def _port_for_no_proxy(port: Any) -> int | None:
    """The port number no_proxy entries are matched with: ``port`` if it is one, else None.

    ``getaddrinfo`` and ``create_connection`` take numeric strings too;
    service names are left out, as their number is up to /etc/services.
    """
    if isinstance(port, (bytes, bytearray)):
        port = bytes(port).decode("ascii", "replace")
    if isinstance(port, str) and port.isascii() and port.isdigit():
        return int(port)
    return port if isinstance(port, int) else None


def _ipv6_only(host: str, getaddrinfo: Any) -> bool:
    """Whether the proxy can only be reached over IPv6 (its own name may be looked up)."""
    if ":" in host:
        return True
    if _is_ip(host):
        return False
    try:
        families = {info[0] for info in getaddrinfo(host, None, 0, socket.SOCK_STREAM)}
    except OSError:
        return False
    return socket.AF_INET not in families and socket.AF_INET6 in families


# threading.RLock() is this C lock; threading itself is not imported for it.
_lock = _thread.RLock()
_active: _Active | None = None


def _after_fork_in_child() -> None:
    """New locks for a forked child, where only the forking thread lives on.

    A lock another thread held at the fork would stay held for ever.  What
    they guard needs no mending: a remember_direct() cut short leaves fewer
    direct addresses remembered, and a patch() or unpatch() cut short is
    finished by calling unpatch() in the child.
    """
    global _lock
    _lock = _thread.RLock()
    active = _active
    if active is not None:
        active._direct_lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def is_patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return _active is not None


def _unknown_synthetic(host: str) -> OSError:
    return OSError(
        errno.EHOSTUNREACH,
        f"{host} is a synthetic address that socks5client.patch() no longer (or never)"
        " mapped to a name; it is not connected to, directly or through the proxy",
    )


def _text(host: Any) -> Any:
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii", "replace")
    return host


def _refuse_nul(host: Any) -> None:
    """Raise what a plain socket's ``connect()`` raises for a host with a NUL in it.

    The C resolver stops at the NUL, while no_proxy matching sees the whole
    string: ``"evil.example\\x00.localhost"`` would pass as a name under
    localhost, then be looked up (and connected to, directly) as
    ``"evil.example"``.  Such a host is never direct and never resolved.
    """
    if isinstance(host, str):
        nul = "\x00" in host
    elif isinstance(host, (bytes, bytearray)):
        nul = b"\x00" in host
    else:
        return
    if nul:
        raise TypeError("host name must not contain null character")


def _map(address: Any) -> tuple[Any, str | None]:
    """``address`` with a synthetic host replaced by its name; and that name."""
    if not isinstance(address, tuple) or len(address) < 2:
        return address, None
    _refuse_nul(address[0])
    host = _text(address[0])
    if not isinstance(host, str) or not _synthetic.is_synthetic(host):
        return address, None
    name = _synthetic.name_for(host)
    if name is None:
        raise _unknown_synthetic(host)
    return (name, address[1]), name


class _PatchedSocket(socksocket):
    """``socket.socket`` while the process is patched.

    Each connection picks its route: the socket's own proxy if one was set
    with :meth:`set_proxy`; otherwise, while the patch is active, direct for
    ``no_proxy`` destinations and the patch's proxy for the rest (UDP only
    with ``udp=True``); after :func:`unpatch`, the default proxy, as any
    socksocket.  A synthetic address is always replaced by its name.
    """

    def _effective_proxy(self) -> Proxy | None:
        """This socket's own proxy, else the patch's (None for UDP unless ``udp=True``)."""
        if not self._inet:
            return None
        if self._proxy is not _UNSET:
            return self._proxy
        active = _active
        if active is None:
            return get_default_proxy()
        if self._udp_variant and not active.udp:
            return None
        return active.proxy

    def _route(self, address: Any) -> tuple[Proxy | None, Any]:
        """The proxy (None: direct) and the address to use for a TCP connection."""
        target, name = _map(address)
        proxy = self._effective_proxy()
        active = _active
        if (
            proxy is not None
            and self._proxy is _UNSET
            and active is not None
            and isinstance(target, tuple)
            and len(target) >= 2
        ):
            host = str(_text(target[0]))
            # A synthetic address (name not None) was handed out because the
            # lookup found the name proxied; it stays so, even where a
            # no_proxy entry with a port ("example.test:8080") would send
            # the name itself direct: the lookup had no port to go by.
            if name is None and (
                active.direct(host, target[1]) or active.is_proxy(host, target[1])
            ):
                proxy = None
                target = (_direct_name(target[0]), *target[1:])
        if proxy is None and name is not None:
            raise _unknown_synthetic(str(_text(address[0])))
        return proxy, target

    #: True once the patch itself made this UDP socket direct (its first
    #: destination went direct), as opposed to ``set_proxy()`` without a proxy.
    _direct_by_patch = False

    def _udp_target(self, address: Any) -> Any:
        """A UDP destination with its synthetic host mapped; picks the route on first use."""
        target, name = _map(address)
        active = _active
        if (
            active is not None
            and active.udp
            and self._proxy is _UNSET
            and isinstance(target, tuple)
            and len(target) >= 2
            and name is None  # a synthetic address stays proxied, as in _route
            and active.direct(str(_text(target[0])), target[1])
            and self._current() is None  # type: ignore[attr-defined]
        ):
            # A UDP socket's route is chosen at its first destination: a
            # direct one (a resolver on loopback...) makes it a plain socket.
            self._proxy = None
            self._direct_by_patch = True
        if self._effective_proxy() is not None:
            return target
        why = "its first destination went direct" if self._direct_by_patch else "patch(udp=False)"
        if name is not None:
            # Sending to the name directly would resolve it here.
            raise OSError(
                errno.ENETUNREACH,
                f"{_text(address[0])} is a synthetic address for {name!r}, and this UDP"
                f" socket does not go through the proxy ({why}); its name is not"
                " resolved locally",
            )
        if (
            active is not None
            and (self._proxy is _UNSET or self._direct_by_patch)
            and isinstance(target, tuple)
            and len(target) >= 2
        ):
            # The name itself, given to a plain socket, would be resolved by
            # the C sendto()/connect() here: a DNS query for a proxied name.
            # A socket made direct with set_proxy() is the program's choice.
            host = _proxied_name(active, target[0], target[1])
            if host is not None and host != "<broadcast>":
                raise OSError(
                    errno.ENETUNREACH,
                    f"{host!r} is a proxied name, and this UDP socket does not go"
                    f" through the proxy ({why}); its name is not resolved locally",
                )
            # Any other name is resolved by the C function in the form
            # no_proxy judged (see _direct_name), with local DNS too: the
            # IDNA 2003 form it would pick from the text can be another
            # domain, the datagram then going there directly.
            target = (_direct_name(target[0]), *target[1:])
        return target

    def connect(self, address: Any) -> None:
        """Connect through the proxy, or directly for a ``no_proxy`` destination."""
        if self._udp_variant:
            super().connect(self._udp_target(address))
            return
        proxy, target = self._route(address)
        if proxy is None:
            if self._is_open_tunnel():  # (see socksocket.connect)
                raise OSError(errno.EISCONN, os.strerror(errno.EISCONN))
            self._direct = True  # (see socksocket._connected_directly)
            PlainSocket.connect(self, target)
            return
        if not self._stream:
            raise _unsupported(self)
        self._connect_via(proxy, target, Budget.for_socket(self.gettimeout()))
        self._shown_peer(address, target)

    def connect_ex(self, address: Any) -> int:
        """Like :meth:`connect`, returning an errno instead of raising OSErrors."""
        if self._udp_variant:
            return _errno_of(lambda: super(_PatchedSocket, self).connect(self._udp_target(address)))
        try:
            proxy, target = self._route(address)
        except socket.gaierror:
            raise  # a name that cannot be looked up: raised, as by a plain socket
        except OSError as exc:
            return exc.errno or errno.EHOSTUNREACH
        if proxy is None:
            if self._is_open_tunnel():
                return errno.EISCONN
            self._direct = True
            return PlainSocket.connect_ex(self, target)
        if not self._stream:
            return errno.EOPNOTSUPP
        result = _errno_of(
            self._connect_via, proxy, target, Budget.for_socket(self.gettimeout()), True
        )
        if result == 0:
            self._shown_peer(address, target)
        return result

    def _shown_peer(self, address: Any, target: Any) -> None:
        # getpeername() is what the program connected to (the synthetic
        # address, if that is what it used), as on a plain socket.
        if target is not address and isinstance(address, tuple):
            host = str(_text(address[0]))
            self._peername = self._sockaddr(address, host, int(address[1]))

    def sendto(self, data: Any, *args: Any) -> int:
        """As usual, with a synthetic destination mapped to its name."""
        if self._udp_variant and args:
            args = (*args[:-1], self._udp_target(args[-1]))
        return super().sendto(data, *args)

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        """As usual, with a synthetic destination mapped to its name."""
        if self._udp_variant and len(args) >= 3 and args[2] is not None:
            args = (args[0], args[1], self._udp_target(args[2]), *args[3:])
        return super().sendmsg(buffers, *args)

    def listen(self, *backlog: int) -> None:
        """Listen locally, unless the patch was made with ``bind=True`` (then SOCKS BIND)."""
        active = _active
        if (
            active is not None
            and not active.bind
            and self._proxy is _UNSET
            and (self._stream or self._other)
            and self.fileno() != -1
        ):
            # A process's own server sockets keep working.
            PlainSocket.listen(self, *backlog)
            self._listening = True
            return
        super().listen(*backlog)


# -- name resolution ---------------------------------------------------------


def _is_ip(host: str) -> bool:
    try:
        import ipaddress

        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _port_number(port: Any, kind: int) -> int:
    """The port ``port`` (a number, a service name or None) stands for, read as the resolver does.

    Its errors are the resolver's too (``gaierror`` for ``-1`` or an unknown
    service); a loopback literal with ``AI_NUMERICHOST`` needs no query.
    """
    if isinstance(port, int) and type(port) is not int:
        # An IntEnum port, say: uvloop takes it, the C resolver only an int.
        port = int(port)
    info = _resolve.getaddrinfo("127.0.0.1", port, socket.AF_INET, kind, 0, socket.AI_NUMERICHOST)
    return int(info[0][4][1])


def _synthetic_infos(
    active: _Active, name: str, port: Any, family: int, type_: int, proto: int, flags: int
) -> list[Any]:
    # The answer's family is one the proxy can be reached in (or the one
    # asked for), whatever AI_ADDRCONFIG says: it ignores loopback, so on a
    # machine whose only way out is a proxy on 127.0.0.1 it would refuse
    # every family.
    # (As a plain int: ~ of the IntFlag member would also drop any bit the
    # enum does not name, which the resolver must see to refuse.)
    flags &= ~int(socket.AI_ADDRCONFIG)
    if family == socket.AF_UNSPEC:
        ipv6 = active.prefer_ipv6
    elif family in (socket.AF_INET, socket.AF_INET6):
        ipv6 = family == socket.AF_INET6
    else:
        raise socket.gaierror(socket.EAI_FAMILY, "ai_family not supported")
    # Everything but the address -- which types and protocols, the port or
    # service, the flags, and the errors for what does not fit -- is the
    # real resolver's own answer, for a loopback literal of the family
    # (AI_NUMERICHOST: no query, a few microseconds).  Only the address, and
    # the canonical name, are put in its place.
    infos = _resolve.getaddrinfo(
        "::1" if ipv6 else "127.0.0.1", port, family, type_, proto, flags | socket.AI_NUMERICHOST
    )
    address = _synthetic.address_for(name, ipv6)
    return [
        (fam, kind, protocol, name if canon else "", (address, *sockaddr[1:]))
        for fam, kind, protocol, canon, sockaddr in infos
    ]


def _proxied_name(active: _Active, host: Any, port: Any = None) -> str | None:
    """``host`` if resolving it must not reach the real resolver (a proxied name).

    ``port``: where the caller will connect, if it says (a no_proxy entry
    with that port makes the name direct).
    """
    _refuse_nul(host)
    if not active.remote_dns or host is None:
        return None
    host = _text(host)
    if not isinstance(host, str) or not host or _is_ip(host) or active.direct(host, port):
        return None
    return host


def _remember_if_direct(active: _Active, host: Any, addresses: list[str], port: Any = None) -> None:
    text = _text(host)
    if not isinstance(text, str) or not text or _is_ip(text):
        return
    if active.direct(text):
        active.remember_direct(addresses)
    elif active.direct(text, port):
        # Direct by an entry with this port only: so are its addresses, or
        # "name:8080" would open every port of the name's addresses.
        active.remember_direct(addresses, _port_for_no_proxy(port))


def _direct_name(host: Any) -> Any:
    """``host`` as a lookup on this machine must spell it: the name no_proxy judged.

    no_proxy compares a non-ASCII name in its IDNA 2008 / UTS 46 form, label
    by label, while the C functions given the text would look up Python's
    IDNA 2003 form, often another domain.  So every lookup this module lets
    through is given the judged form, from the matcher's own function; a
    name with no ASCII judged form raises ``gaierror(EAI_NONAME)`` rather
    than reaching the C functions as text (see ``_noproxy.lookup_name``).
    Bytes and ASCII text are returned as they are.
    """
    if isinstance(host, str) and not host.isascii():
        from ._noproxy import lookup_name

        return lookup_name(host)
    return host


def _getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[Any]:
    active = _active
    real = _resolve.getaddrinfo
    if active is None:
        return real(host, port, family, type, proto, flags)
    name = _proxied_name(active, host, port)
    # AI_NUMERICHOST: the real function refuses a name without a query.
    # AI_PASSIVE asks for an address to bind to, on this machine: the name
    # is resolved here, as bind() resolves it (see docs/patching.md,
    # "Listening sockets and BIND").
    if name is None or flags & (socket.AI_NUMERICHOST | socket.AI_PASSIVE):
        infos = real(_direct_name(host), port, family, type, proto, flags)
        _remember_if_direct(active, host, [str(info[4][0]) for info in infos], port)
        return infos
    log = debug_logger()
    if log is not None:
        log.debug("getaddrinfo(%r): synthetic address, the proxy resolves the name", name)
    return _synthetic_infos(active, name, port, family, type, proto, flags)


def _gethostbyname(hostname: str) -> str:
    active = _active
    real = _real("gethostbyname")
    if active is None:
        return str(real(hostname))
    name = _proxied_name(active, hostname)
    if name is None:
        address = str(real(_direct_name(hostname)))
        _remember_if_direct(active, hostname, [address])
        return address
    return _synthetic.address_for(name)


def _gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    active = _active
    real = _real("gethostbyname_ex")
    if active is None:
        return real(hostname)  # type: ignore[no-any-return]
    name = _proxied_name(active, hostname)
    if name is None:
        answer: tuple[str, list[str], list[str]] = real(_direct_name(hostname))
        _remember_if_direct(active, hostname, answer[2])
        return answer
    return name, [], [_synthetic.address_for(name)]


def _gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    active = _active
    real = _real("gethostbyaddr")
    if active is None or not active.remote_dns:
        return real(ip_address)  # type: ignore[no-any-return]
    _refuse_nul(ip_address)
    host = str(_text(ip_address))
    name = _synthetic.name_for(host)
    if name is not None:
        return name, [], [host]
    if active.direct(host):
        return real(ip_address)  # type: ignore[no-any-return]
    if not _is_ip(host):
        # A proxied name: its "address" is the synthetic one, no DNS.
        return host, [], [_synthetic.address_for(host)]
    # A reverse lookup of a proxied address would be a DNS query; SOCKS5 has
    # no way to ask the proxy, so the answer is "unknown", as for an address
    # without a PTR record.
    raise socket.herror(1, "Unknown host")


def _getnameinfo(sockaddr: Any, flags: int) -> tuple[str, str]:
    active = _active
    real = _real("getnameinfo")
    if active is None or not active.remote_dns or not isinstance(sockaddr, tuple):
        return real(sockaddr, flags)  # type: ignore[no-any-return]
    host = str(_text(sockaddr[0]))
    name = _synthetic.name_for(host)
    if name is None and (active.direct(host) or not _is_ip(host)):
        return real(sockaddr, flags)  # type: ignore[no-any-return]
    numeric_host, service = real(sockaddr, flags | socket.NI_NUMERICHOST)
    if name is not None and not flags & socket.NI_NUMERICHOST:
        return name, service
    if name is None and flags & socket.NI_NAMEREQD:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return numeric_host, service


def _create_connection(
    address: tuple[Any, ...],
    timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: tuple[str, int] | None = None,
    *,
    all_errors: bool = False,
) -> socket.socket:
    target, name = _map(address)
    active = _active
    if active is None:
        return _proxied_create_connection(target, timeout, source_address, all_errors=all_errors)
    host = str(_text(target[0]))
    # A synthetic address stays proxied (see _PatchedSocket._route); the
    # proxy itself is reached directly whichever way it was named.
    if (name is None and active.direct(host, target[1])) or active.is_proxy(host, target[1]):
        target = (_direct_name(target[0]), *target[1:])
        return _direct_connection(target, timeout, source_address, None, all_errors)
    return _proxied_create_connection(
        target, timeout, source_address, proxy=active.proxy, all_errors=all_errors
    )


def _real(name: str) -> Any:
    active = _active
    if active is not None:
        return active.originals[name]
    return getattr(socket, name)


_REPLACEMENTS: dict[str, Any] = {
    "socket": _PatchedSocket,
    "create_connection": _create_connection,
    "getaddrinfo": _getaddrinfo,
    "gethostbyname": _gethostbyname,
    "gethostbyname_ex": _gethostbyname_ex,
    "gethostbyaddr": _gethostbyaddr,
    "getnameinfo": _getnameinfo,
}


# -- patch / unpatch -----------------------------------------------------------


@guard_secrets
def _settings(
    proxy: ProxyLike, no_proxy: str | Sequence[str] | None, udp: bool, bind: bool
) -> _Settings:
    chosen = proxy_from_args(proxy)
    if chosen is None:  # pragma: no cover - proxy_from_args(Proxy|str) never is
        raise ValueError("patch() needs a proxy")
    if no_proxy is not None and not isinstance(no_proxy, str):
        no_proxy = tuple(no_proxy)
    return _Settings(chosen, no_proxy, bool(udp), bool(bind))


def patch(
    proxy: ProxyLike,
    *,
    no_proxy: str | Sequence[str] | None = None,
    udp: bool = False,
    bind: bool = False,
) -> None:
    """Route the whole process through ``proxy`` (a :class:`Proxy` or URL).

    ``no_proxy``: ``None`` means the ``NO_PROXY``/``no_proxy`` environment
    variable plus localhost, loopback addresses and this machine's own host
    name, which go direct; a
    comma-separated string or a sequence of entries replaces that; ``""``
    sends everything, loopback included, through the proxy.  ``udp=True``
    proxies UDP sockets too (through UDP ASSOCIATE); ``bind=True`` makes a
    TCP socket that listens on a non-loopback address use SOCKS BIND
    (otherwise listening sockets stay local).

    Calling it again with the same arguments does nothing; with other
    arguments it raises :class:`RuntimeError` (call :func:`unpatch` first).
    Thread-safe.
    """
    global _active
    try:
        settings = _settings(proxy, no_proxy, udp, bind)
    finally:
        # A URL may hold a password, and this frame is in the traceback of
        # a URL _settings refuses (_settings' own is cleared: guard_secrets).
        del proxy
    with _lock:
        if _active is not None:
            if _active.settings == settings:
                return
            raise RuntimeError(
                "socks5client.patch() is already in effect with other settings;"
                " call unpatch() first"
            )
        originals = {name: getattr(socket, name) for name in _NAMES}
        active = _Active(settings, originals)
        _resolve._saved["getaddrinfo"] = originals["getaddrinfo"]
        _active = active
        for name in _NAMES:
            setattr(socket, name, _REPLACEMENTS[name])
        # Event loops: handshakes on the loop, never blocking it.
        from . import _asyncio_patch

        _asyncio_patch.install()
    log = debug_logger()
    if log is not None:
        log.debug("patched the socket module: proxy %s", settings.proxy)


def unpatch() -> None:
    """Undo :func:`patch`: the ``socket`` module gets its exact original objects back.

    Synthetic addresses handed out meanwhile stop meaning anything: a
    socket made while patched that connects to one gets an error.  Does
    nothing when not patched.
    """
    global _active
    with _lock:
        active = _active
        if active is None:
            return
        from . import _asyncio_patch

        _asyncio_patch.uninstall()
        for name in _NAMES:
            setattr(socket, name, active.originals[name])
        for target, attribute, value in reversed(active.extra_restores):
            setattr(target, attribute, value)
        _active = None
        _resolve._saved.clear()
        _synthetic.forget_all()
    log = debug_logger()
    if log is not None:
        log.debug("unpatched the socket module")


def patched(
    proxy: ProxyLike,
    *,
    no_proxy: str | Sequence[str] | None = None,
    udp: bool = False,
    bind: bool = False,
) -> _GeneratorContextManager[None]:
    """:func:`patch` for the duration of a ``with`` block.

    Nested blocks with the same arguments are fine, in one thread or in
    several: the patch stays until the last block that shares it exits (and
    a block entered while :func:`patch` was in effect leaves it in place).
    Other arguments raise :class:`RuntimeError`.
    """
    # The same context manager @contextlib.contextmanager would make, with
    # contextlib imported only now: programs that never patch need not load it.
    import contextlib

    # Made a Proxy now, whose repr masks the password: the generator's frame
    # keeps its arguments, and this one is in the traceback of a bad URL.
    try:
        chosen = proxy_from_args(proxy)
    finally:
        del proxy
    if chosen is None:  # pragma: no cover - proxy_from_args(Proxy|str) never is
        raise ValueError("patched() needs a proxy")
    return contextlib.contextmanager(_patched)(chosen, no_proxy, udp, bind)


def _patched(
    proxy: ProxyLike, no_proxy: str | Sequence[str] | None, udp: bool, bind: bool
) -> Iterator[None]:
    # Blocks are counted, not tied to the one that applied the patch: with
    # threads, that one may exit while a block entered later in another
    # thread (a no-op there, same settings) is still running, and unpatching
    # then would send that thread's connections around the proxy.
    with _lock:
        applies = _active is None
        patch(proxy, no_proxy=no_proxy, udp=udp, bind=bind)
        active = _active
        if active is None:  # pragma: no cover - patch() returned, so it is set
            raise RuntimeError("socks5client.patch() did not take effect")
        if applies:
            active.applied_by_block = True
        active.blocks += 1
    try:
        yield
    finally:
        with _lock:
            active.blocks -= 1
            # Only the patch this block shares: after an explicit unpatch()
            # (and perhaps another patch()) inside the block, it is not ours.
            if active is _active and active.applied_by_block and active.blocks == 0:
                unpatch()


def wrap_module(module: ModuleType) -> None:
    """Route ``module``'s sockets through the default proxy (PySocks' API).

    Applies :func:`patch` with the default proxy, which must be set first
    with :func:`set_default_proxy`, sending everything through it
    (``no_proxy=""``, ``udp=True``, ``bind=True``, as PySocks'
    ``socket.socket = socksocket`` did).  As in PySocks this changes the
    ``socket`` module itself, so it affects the whole process, whichever
    module is passed; unlike PySocks, names are not resolved locally first.
    :func:`unpatch` undoes it.
    """
    proxy = get_default_proxy()
    if proxy is None:
        raise ValueError("no default proxy is set; call set_default_proxy() first")
    target: Any = module if module.__name__ == "socket" else getattr(module, "socket", None)
    if target is None:
        raise TypeError(f"module {module.__name__!r} has no 'socket' attribute to wrap")
    patch(proxy, no_proxy="", udp=True, bind=True)
    if target is not socket and hasattr(target, "socket"):
        # Some other socket-like module (PySocks sets its attribute too);
        # unpatch() puts it back as well.
        with _lock:
            active = _active
            if active is not None and target.socket is not _PatchedSocket:
                active.extra_restores.append((target, "socket", target.socket))
                target.socket = _PatchedSocket
