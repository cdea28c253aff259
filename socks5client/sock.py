"""``socksocket``: a ``socket.socket`` that reaches its destination through a SOCKS5 proxy.

The SOCKS5 conversation happens inside :meth:`socksocket.connect`.  Once it
succeeds the socket *is* the tunnel: ``send``, ``recv``, ``sendall``,
``makefile``, ``sendfile`` and TLS wrapping are the C socket's own methods,
so there is no Python code on the data path.

Sockets of other families (``AF_UNIX``...) and sockets with no proxy (none
set and no default) behave exactly as plain sockets.
"""

from __future__ import annotations

import _socket
import _thread
import errno
import operator
import os
import select
import socket
import sys
import time

from . import _codec, _conversation, _negotiate, _resolve
from . import proxy as _proxy_module
from ._codec import Command
from ._negotiate import Budget, PlainSocket
from ._secret import guard_secrets
from .errors import ProxyConnectionError, ProxyError, ProxyTimeoutError, SOCKS5Error
from .proxy import (
    Proxy,
    cached_url,
    get_default_proxy,
    proxy_from_args,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from .proxy import Credential, ProxyLike

__all__ = ["create_connection", "socksocket"]

_PROXIED_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# Protocols that make an AF_INET/AF_INET6 SOCK_STREAM socket a TCP socket
# (MPTCP behaves as TCP towards the proxy).  SCTP and others are refused.
_TCP_PROTOS = frozenset(
    [0, socket.IPPROTO_TCP, getattr(socket, "IPPROTO_MPTCP", socket.IPPROTO_TCP)]
)
_UDP_PROTOS = frozenset([0, socket.IPPROTO_UDP])
# What socket.socket() takes -1 (the default) to mean.
_TCP_V4 = (-1, socket.AF_INET)
_STREAM = (-1, socket.SOCK_STREAM)
_DEFAULT_PROTO = (-1, 0, socket.IPPROTO_TCP)
_MSG_FASTOPEN = int(getattr(socket, "MSG_FASTOPEN", 0))
_UNSET: Any = object()
# The C attributes and methods: socket.socket's family and type properties
# convert to enums on every read, and these run on every connection.
_c_family: Callable[[socket.socket], int] = _socket.socket.family.__get__
_c_type: Callable[[socket.socket], int] = _socket.socket.type.__get__
_gettimeout = PlainSocket.gettimeout
_c_socket_init = _socket.socket.__init__
_settimeout = PlainSocket.settimeout
_DOMAIN = _codec.AddressType.DOMAIN
_AF_INET = int(socket.AF_INET)
#: CONNECT requests already encoded, by destination: ``(host, port)`` ->
#: ``(request, whether host is a name)``.  Programs connect to the same few
#: destinations again and again; checking and encoding each costs more than
#: the lookup.  Cleared when full rather than ordered: a program with more
#: destinations than this only loses the saving.
_CONNECT_REQUESTS: dict[Any, tuple[bytes, bool]] = {}
_CONNECT_REQUESTS_MAX = 512


def _option(level: str, name: str, buflen: int | None = None) -> list[tuple[int, int, int | None]]:
    if not hasattr(socket, level) or not hasattr(socket, name):
        return []
    return [(getattr(socket, level), getattr(socket, name), buflen)]


# Options copied from the old socket to the fresh one used when a locally
# resolved destination has several addresses and the first attempt failed,
# whether they were set through this object or behind its back.  They decide
# which route, interface and treatment the connection to the proxy gets, so
# one that cannot be copied is an error, never silently dropped.  Buffer
# sizes are not in the list (the kernel reports twice what was set); they
# are replayed from the setsockopt() calls this object recorded.
_CARRIED_OPTIONS = [
    opt
    for spec in (
        ("SOL_SOCKET", "SO_BINDTODEVICE", 16),
        ("SOL_SOCKET", "SO_MARK"),
        ("SOL_SOCKET", "SO_PRIORITY"),
        ("SOL_SOCKET", "SO_REUSEADDR"),
        ("SOL_SOCKET", "SO_REUSEPORT"),
        ("SOL_SOCKET", "SO_KEEPALIVE"),
        ("SOL_SOCKET", "SO_LINGER", 8),
        ("IPPROTO_IP", "IP_TOS"),
        ("IPPROTO_IP", "IP_TTL"),
        ("IPPROTO_IP", "IP_FREEBIND"),
        ("IPPROTO_IP", "IP_TRANSPARENT"),
        ("IPPROTO_IP", "IP_BIND_ADDRESS_NO_PORT"),
        ("IPPROTO_IPV6", "IPV6_TCLASS"),
        ("IPPROTO_IPV6", "IPV6_UNICAST_HOPS"),
        ("IPPROTO_IPV6", "IPV6_V6ONLY"),
        ("IPPROTO_TCP", "TCP_NODELAY"),
        ("IPPROTO_TCP", "TCP_KEEPIDLE"),
        ("IPPROTO_TCP", "TCP_KEEPINTVL"),
        ("IPPROTO_TCP", "TCP_KEEPCNT"),
        ("IPPROTO_TCP", "TCP_USER_TIMEOUT"),
        ("IPPROTO_TCP", "TCP_CONGESTION", 16),
    )
    for opt in _option(*spec)
]
#: The carried options whose value is a name: getsockopt() returns it
#: NUL-padded to the buffer size, which setsockopt() would refuse or keep.
#: The others (SO_LINGER's struct) are copied byte for byte.
_NAME_OPTIONS = frozenset(
    opt[:2]
    for spec in (("SOL_SOCKET", "SO_BINDTODEVICE", 16), ("IPPROTO_TCP", "TCP_CONGESTION", 16))
    for opt in _option(*spec)
)


def swap_descriptor(sock: socket.socket) -> list[tuple[int, int, Any]]:
    """Put a fresh, unconnected socket of the same kind under ``sock``'s descriptor.

    A TCP socket whose connect failed cannot connect again, so the next
    attempt needs a new one; ``dup2`` keeps the descriptor number and the
    object.  Returns the options the old one had (``carried_options``),
    for the caller to set again with what else it knows (recorded options,
    local address, timeout).  Shared by ``socksocket._renew_fd`` and the
    renewal of plain sockets in ``_negotiate`` and the asyncio client.
    """
    fresh = PlainSocket(sock.family, sock.type, sock.proto)
    try:
        carried = carried_options(sock, fresh)
        os.dup2(fresh.fileno(), sock.fileno(), inheritable=sock.get_inheritable())
    finally:
        fresh.close()
    return carried


def carried_options(old: socket.socket, fresh: socket.socket) -> list[tuple[int, int, Any]]:
    """The ``_CARRIED_OPTIONS`` where ``old`` differs from ``fresh``: ``(level, name, value)``.

    What a fresh descriptor replacing ``old`` must be given again, however
    the options were set; ready for ``setsockopt``.
    """
    carried = []
    for level, name, buflen in _CARRIED_OPTIONS:
        try:
            if buflen is None:
                value: Any = PlainSocket.getsockopt(old, level, name)
                default: Any = fresh.getsockopt(level, name)
            else:
                value = PlainSocket.getsockopt(old, level, name, buflen)
                default = fresh.getsockopt(level, name, buflen)
        except OSError:
            continue  # not an option of this kind of socket
        if value != default:
            if (level, name) in _NAME_OPTIONS:
                value = value.rstrip(b"\0") or value
            carried.append((level, name, value))
    return carried


# A socket switches class to become a variant (UDP, GSS-API protected, a
# BIND waiting for its peer); a user's subclass becomes a class derived from
# both, made once per subclass and variant.
_variant_classes: dict[tuple[type, type], type] = {}
_variant_classes_lock = _thread.allocate_lock()  # threading.Lock(), without importing threading


def _after_fork_in_child() -> None:
    # Only the forking thread lives on in a forked child: a lock another
    # thread held at the fork would stay held for ever.  The table needs no
    # mending: one assignment adds a class.
    global _variant_classes_lock
    _variant_classes_lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _variant_of(cls: type, bases: tuple[type, type], **attributes: Any) -> type:
    """The class derived from ``bases`` (``cls`` and a variant, in MRO order) for ``cls``.

    It keeps ``cls``'s name and module, so reprs and pickling errors read
    as the user's class.
    """
    key = (cls, bases[0] if bases[1] is cls else bases[1])
    with _variant_classes_lock:
        made = _variant_classes.get(key)
        if made is None:
            made = type(
                cls.__name__,
                bases,
                {"__module__": cls.__module__, "__qualname__": cls.__qualname__, **attributes},
            )
            _variant_classes[key] = made
        return made


def _udp_class_for(cls: type) -> type:
    from .udp import UDPSocksSocket

    if cls is socksocket:
        return UDPSocksSocket
    # (cls, UDPSocksSocket): the subclass's own overrides come first and
    # their super() calls reach the UDP variant.
    return _variant_of(cls, (cls, UDPSocksSocket))


# Likewise, a TCP socksocket whose GSS-API handshake agreed on per-message
# protection becomes the wrapping class (or one derived from its own class
# and the wrapping class).
def _protected_class_for(cls: type) -> type:
    from ._gssapi_socket import GSSAPISocket

    if cls is socksocket or issubclass(cls, GSSAPISocket):
        return GSSAPISocket if cls is socksocket else cls
    return _variant_of(cls, (cls, GSSAPISocket))


def _split_address(address: Any) -> tuple[str, int]:
    """``(host, port)`` from a 2-tuple or an IPv6 4-tuple, type-checked."""
    if type(address) is tuple and len(address) == 2:
        host, port = address
        if (
            type(host) is str
            and type(port) is int
            and 0 <= port <= 0xFFFF
            and host[:3] not in _SYNTHETIC_PREFIXES
        ):
            return host, port  # the usual case, checked in one test
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError(
            "a SOCKS5 destination must be a (host, port) or (host, port, flowinfo,"
            f" scope_id) tuple, not {address!r}"
        )
    host, port = address[0], address[1]
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii")
    if not isinstance(host, str):
        raise TypeError(f"destination host must be a str, not {type(host).__name__}")
    if _is_synthetic(host):
        # An address socks5client.patch() made up for a name: the proxy
        # gets the name, never the made-up address.
        from . import _synthetic

        name = _synthetic.name_for(host)
        if name is None:
            raise OSError(
                errno.EHOSTUNREACH,
                f"{host} is a synthetic address that socks5client.patch() no longer"
                " (or never) mapped to a name",
            )
        host = name
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"destination port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise _codec.PortRangeError(f"destination port {port} is out of range 0-65535")
    return host, port


def _is_ip_literal(host: str) -> bool:
    return _codec.encode_host(host)[0] != _codec.AddressType.DOMAIN


def _is_loopback(host: str) -> bool:
    import ipaddress  # here: importing it costs more than most of this module

    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 on a dual-stack socket (Python 3.11's
        # is_loopback says no to it).
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _c_int(value: Any) -> int:
    """``value`` as the C socket methods read it: the plain int behind ``__index__``.

    A check must look at exactly that: an ``int`` subclass could answer
    ``&`` one way while the kernel gets its real value (and before Python
    3.10, ``operator.index`` returns such a subclass as it is).
    """
    value = operator.index(value)
    return value if type(value) is int else int.__index__(value)


_SYNTHETIC_PREFIXES = frozenset(["240", "fd5", "FD5", "fD5", "Fd5"])


def _is_synthetic(host: object) -> bool:
    """Whether ``host`` is in the ranges ``socks5client.patch()`` makes addresses up from."""
    if not isinstance(host, str) or host[:3] not in _SYNTHETIC_PREFIXES:
        return False
    # Imported only for such an address: the patching machinery (and
    # ipaddress) costs import time that programs which never patch should
    # not pay.
    from . import _synthetic

    return _synthetic.is_synthetic(host)


def _check_not_synthetic(address: Any) -> None:
    """Refuse a direct connection to an address ``socks5client.patch()`` made up."""
    if isinstance(address, tuple) and address and _is_synthetic(address[0]):
        raise OSError(
            errno.EHOSTUNREACH,
            f"{address[0]} is a synthetic address from socks5client.patch(), which only"
            " a connection through the proxy can use",
        )


def _kernel_kind(sock: socket.socket, family: int, type_: int, proto: int) -> tuple[int, int, int]:
    """``(family, type, proto)`` of ``sock``'s descriptor as the kernel has them.

    A value the kernel does not report keeps what the object says; a
    disagreement turns the type into one no variant handles (refused with
    a proxy).
    """
    values = []
    for name, declared in (("SO_DOMAIN", family), ("SO_TYPE", type_), ("SO_PROTOCOL", proto)):
        try:
            values.append(PlainSocket.getsockopt(sock, socket.SOL_SOCKET, getattr(socket, name)))
        except (AttributeError, OSError):
            values.append(declared)
    k_family, k_type, k_proto = values
    if (k_family, k_type) != (family, type_) or (proto and k_proto != proto):
        return k_family, -1, k_proto
    return k_family, k_type, k_proto


def _unsupported(sock: socket.socket) -> OSError:
    return OSError(
        errno.EOPNOTSUPP,
        f"SOCKS5 carries only TCP and UDP; this socket (type {sock.type!r}, protocol"
        f" {sock.proto}) cannot go through the proxy, and does not go around it",
    )


class socksocket(socket.socket):
    """A socket that connects through a SOCKS5 proxy.

    Takes the same arguments as :class:`socket.socket`.  Give it a proxy
    with :meth:`set_proxy`, or set a process default with
    :func:`socks5client.set_default_proxy`; then :meth:`connect` as usual.
    """

    #: True on the UDP variant (and on classes derived from it).
    _udp_variant = False
    #: True once listen() made this a local listener (a loopback bind).
    _listening = False
    # Per-socket state, as class-level defaults: most sockets never change
    # most of it, and setting each in __init__ costs every connection.
    _proxy: Proxy | None = _UNSET
    _peername: tuple[Any, ...] | None = None
    # A tuple, or the raw IPv4 reply until first asked for (see _connect_via).
    _proxy_sockname: tuple[str, int] | bytes | None = None
    #: After a SOCKS BIND: where the peer must connect; None otherwise.
    _bind_address: tuple[Any, ...] | None = None
    _bind_accepted = False
    _bind_proxy: Proxy | None = None
    #: After a SOCKS BIND: held by the accept() that waits for the peer.
    _bind_lock: Any = None
    #: After a SOCKS BIND whose GSS-API handshake agreed on protection: the
    #: protection and the plaintext unwrapped past the first reply.
    _bind_protection: Any = None
    #: The address given to bind(), re-applied if the descriptor is renewed.
    _local_bind: Any = None
    #: setsockopt() calls made before the handshake, replayed on a renewed
    #: descriptor (a tuple until the first one).
    _options: list[tuple[Any, ...]] | tuple[()] = ()
    #: Neither TCP nor UDP on AF_INET/AF_INET6 (raw, SCTP...): refused with a proxy.
    _other = False
    #: Set when this object connects without the proxy: the descriptor may
    #: then be connected with no _peername recorded (see _connected_directly).
    _direct = False
    #: Set when another object may hold the same kernel socket (dup(), or
    #: built on a given descriptor): that one may have connected it, and
    #: this one's _peername would not know (see _connected_directly).
    _shared = False

    def __init__(
        self,
        family: int = -1,
        type: int = -1,
        proto: int = -1,
        fileno: int | None = None,
    ) -> None:
        if fileno is None and family in _TCP_V4 and type in _STREAM and proto in _DEFAULT_PROTO:
            # socksocket() or socksocket(AF_INET, SOCK_STREAM): TCP over IPv4,
            # known without asking the object.  What socket.socket.__init__
            # does, without its frame: the C initialiser (which reads -1 as
            # the default too) and its two slots (test_socksocket checks that
            # these are still all it sets).
            _c_socket_init(self, family, type, proto)
            self._io_refs = 0
            self._closed = False
            self._inet = self._stream = True
            return
        super().__init__(family, type, proto, fileno)
        # Read once: the family and type properties convert to enums on every
        # access, and neither can change for the life of the socket.
        family, type_, proto = _c_family(self), _c_type(self), self.proto
        if fileno is not None:
            # A descriptor's object says what it was told; the kernel says
            # what it is.  A UDP descriptor declared SOCK_STREAM must not be
            # treated as TCP (its sendto would go straight to the address).
            family, type_, proto = _kernel_kind(self, family, type_, proto)
        inet = self._inet = family in _PROXIED_FAMILIES
        if fileno is not None:
            # Whoever else holds the descriptor (the object it was dup'ed
            # from, socket.fromfd's caller) may connect it behind our back.
            self._shared = True
        if fileno is not None and inet:
            # Already connected (socket.accept() and fromfd() build these):
            # an existing connection is not this object's to route, so it
            # has no proxy; it may be detached (ssl) like any socket.
            try:
                PlainSocket.getpeername(self)
            except OSError:
                pass
            else:
                self._proxy = None
        stream = self._stream = inet and type_ == socket.SOCK_STREAM and proto in _TCP_PROTOS
        if not inet or stream:
            return
        udp = type_ == socket.SOCK_DGRAM and proto in _UDP_PROTOS
        # An AF_INET/AF_INET6 socket that is neither TCP nor UDP (raw, SCTP,
        # ICMP...): SOCKS5 cannot carry it, so with a proxy it is refused.
        self._other = not udp
        if udp and not self._udp_variant:
            # The UDP variant overrides sendto/recvfrom; keeping it a
            # separate class keeps TCP's send/recv the C methods.
            self.__class__ = _udp_class_for(self.__class__)

    # -- configuration -----------------------------------------------------

    def set_proxy(
        self,
        proxy_type: int | ProxyLike | None = None,
        addr: str | None = None,
        port: int | None = None,
        rdns: bool = True,
        username: Credential | None = None,
        password: Credential | None = None,
    ) -> None:
        """Set this socket's proxy (PySocks' signature).

        ``proxy_type`` is :data:`~socks5client.SOCKS5`, or a :class:`Proxy`,
        or a ``socks5://``/``socks5h://`` URL (then give nothing else).
        ``rdns=True`` sends hostnames to the proxy unresolved.  With no
        arguments the socket connects directly, ignoring any default proxy.
        """
        if type(proxy_type) is str and addr is None and port is None and rdns is True:
            # A URL alone, the usual call for every new socket: parsed once.
            cached = cached_url(proxy_type)
            if cached is not None and username is None and password is None:
                self._proxy = cached
                return
        try:
            self._proxy = proxy_from_args(proxy_type, addr, port, rdns, username, password)
        except BaseException:
            # proxy_from_args keeps the credentials out of what it raises
            # (guard_secrets); this frame, part of the traceback too, drops
            # its own copies (the URL may hold a password).  Only this
            # branch can raise, so the usual call pays for no wrapper.
            del proxy_type, addr, username, password
            raise

    #: PySocks' older name for :meth:`set_proxy`.
    setproxy = set_proxy

    @property
    def proxy(self) -> Any:
        """The proxy :meth:`connect` will use: this socket's own, else the default.

        Assigning is :meth:`set_proxy`: ``sock.proxy = (SOCKS5, addr, port,
        rdns, username, password)`` (PySocks' instance attribute), or a
        :class:`Proxy`, a URL, or ``None`` (direct, whatever the default).

        Subclasses that keep their own ``proxy`` attribute (PySocks'
        ``socksocket`` does, and under :func:`socks5client.patch` it derives
        from this class) read back what they assign; this class never reads it.
        """
        assigned = self.__dict__.get("_assigned_proxy", _UNSET)
        if assigned is not _UNSET:
            return assigned
        return self._effective_proxy()

    @proxy.setter
    @guard_secrets
    def proxy(self, value: Any) -> None:
        for klass in type(self).__mro__:
            if klass is socksocket:
                break
            if "default_proxy" in klass.__dict__:
                # PySocks' socksocket (its class attribute is the mark):
                # it assigns ``proxy`` in __init__ and set_proxy() and then
                # speaks SOCKS itself over our connect(), which must not add
                # a proxy of its own, so the value is only kept for it.
                self.__dict__["_assigned_proxy"] = value
                return
        # Anything else would keep the value unread and connect directly.
        args = value if isinstance(value, tuple) else (value,)
        if args == (None,) * 6:
            args = ()  # PySocks' own "no proxy" tuple (rdns None, too)
        # The base method: a subclass's set_proxy may assign ``proxy``.
        socksocket.set_proxy(self, *args)

    def _effective_proxy(self) -> Proxy | None:
        """The proxy this socket's next connection or datagram uses (None: direct)."""
        if not self._inet:
            return None
        return get_default_proxy() if self._proxy is _UNSET else self._proxy

    def _copy_state_to(self, other: socksocket) -> None:
        """Give ``other`` (a dup of this socket) this socket's proxy state."""
        other._proxy = self._proxy
        other._peername = self._peername
        other._proxy_sockname = self._proxy_sockname
        other._local_bind = self._local_bind
        other._options = list(self._options)
        other._bind_accepted = self._bind_accepted
        other._listening = self._listening
        other._direct = self._direct

    def dup(self) -> socksocket:
        """A duplicate of this socket that keeps its proxy, destination and tunnel.

        A socket waiting for the peer of a SOCKS BIND cannot be duplicated:
        only one of the two could receive the proxy's second reply.
        """
        if self._bind_address is not None:
            raise OSError(
                errno.EOPNOTSUPP,
                "a socket waiting for its SOCKS5 BIND peer cannot be duplicated; accept() first",
            )
        other: socksocket = super().dup()
        try:
            self._copy_state_to(other)
        except BaseException:
            other.close()
            raise
        # Both objects now hold one kernel socket: each must ask the kernel
        # whether the other connected it before starting a handshake on it.
        self._shared = other._shared = True
        return other

    def _detach_would_bypass(self) -> bool:
        """Whether a new owner of the descriptor could reach the network directly."""
        if not (self._stream or self._other) or self.fileno() == -1:
            return False  # closed: as on a plain socket, detach() returns -1
        if self._peername is not None or self._bind_address is not None:
            return False  # the tunnel, or a line to the proxy
        if self._effective_proxy() is None:
            return False
        # Connected already (directly, to a no_proxy destination under the
        # patch) or listening: a new owner can connect it nowhere.  Asked
        # of the kernel, not of _listening: on Linux shutdown() takes a
        # listening socket back to the closed state, able to connect again.
        try:
            PlainSocket.getpeername(self)
        except OSError:
            pass
        else:
            return False
        try:
            return not PlainSocket.getsockopt(self, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            return True

    def detach(self) -> int:
        """Give up the descriptor (as ``socket.detach``), unless that bypasses the proxy.

        Before :meth:`connect` has gone through the proxy, whoever takes the
        descriptor (``ssl.SSLContext.wrap_socket`` is the usual one) would
        connect directly, so this raises :class:`OSError` (``EOPNOTSUPP``)
        and the socket is closed.  Wrap for TLS after connecting instead.
        """
        if not self._detach_would_bypass():
            return super().detach()
        fd = super().detach()
        # ssl wraps the same descriptor in its own socket object before it
        # calls detach(), and that object outlives the refusal (a traceback
        # holds it).  Put a dead socket under the number, so that whatever
        # holds it can reach nothing; then close it here unless another
        # object owns it (and will close it), so that nothing leaks.
        _defuse(fd)
        if not _owned_elsewhere(fd, self):
            os.close(fd)
        raise OSError(
            errno.EOPNOTSUPP,
            "this socksocket has not connected through its proxy yet, so its"
            " descriptor cannot be handed over (the new owner would connect directly);"
            " connect() first, then wrap it with ssl",
        )

    def set_inheritable(self, inheritable: bool) -> None:
        """As usual, except that it is refused where :meth:`detach` is.

        A child process that inherits the descriptor before the handshake
        could connect it directly.
        """
        if inheritable and self._detach_would_bypass():
            raise OSError(
                errno.EOPNOTSUPP,
                "a process inheriting this proxied socket's descriptor could use it"
                " directly, around the SOCKS5 proxy",
            )
        PlainSocket.set_inheritable(self, inheritable)

    def setsockopt(self, *args: Any) -> None:
        """As usual; before the handshake the call is also recorded.

        A locally resolved destination with several addresses may need a
        fresh descriptor for the next attempt; it gets every option again.
        """
        PlainSocket.setsockopt(self, *args)
        if self._stream and self._peername is None:
            self._options = [*self._options, args]

    # -- sending before the handshake ------------------------------------------

    def _check_direct_send(self, flags: int) -> None:
        """Refuse a send that could open a connection around the proxy."""
        if self._peername is not None or not (self._stream or self._other):
            return
        if self._stream and not flags & _MSG_FASTOPEN:
            return  # without a connection the kernel refuses it (ENOTCONN)
        if self._effective_proxy() is None:
            self._direct = True  # a Fast Open send connects the socket
            return
        if self.fileno() == -1:
            return  # closed: the C method raises EBADF, as on a plain socket
        if self._other:
            raise _unsupported(self)
        raise OSError(
            errno.EOPNOTSUPP,
            "MSG_FASTOPEN would open a TCP connection that skips the SOCKS5 proxy; connect() first",
        )

    def sendto(self, data: Any, *args: Any) -> int:
        """As usual; MSG_FASTOPEN before the handshake is refused (it would bypass the proxy).

        Through a proxy, a host name in the address is not looked up (see
        :meth:`_lookup_for_nothing`).
        """
        if len(args) == 2:
            # Checked and passed on as the int the C method would read: an
            # int subclass could answer ``&`` one way and ``__index__``
            # another.
            args = (_c_int(args[0]), args[1])
            self._check_direct_send(args[0])
        elif self._other:
            self._check_direct_send(0)
        if args and self._lookup_for_nothing(args[-1]):
            return PlainSocket.send(self, data, *args[:-1])
        return PlainSocket.sendto(self, data, *args)

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        """As usual; MSG_FASTOPEN before the handshake is refused (it would bypass the proxy).

        Through a proxy, a host name in the address is not looked up (see
        :meth:`_lookup_for_nothing`).
        """
        if len(args) >= 2:
            args = (args[0], _c_int(args[1]), *args[2:])
            self._check_direct_send(args[1])
        else:
            self._check_direct_send(0)
        if len(args) > 2 and self._lookup_for_nothing(args[2]):
            args = args[:2]
        return PlainSocket.sendmsg(self, buffers, *args)

    def _lookup_for_nothing(self, address: Any) -> bool:
        """Whether ``address``, given to a send on this proxied TCP socket, names a host.

        The kernel ignores a TCP socket's send address (connected) or
        refuses the send whatever the address (not connected, ``EPIPE``),
        but the C method resolves a host name first: a DNS query around
        the proxy, for nothing.  The caller then sends without the address,
        which the kernel treats the same.  IP literals and malformed
        addresses still go to the C method, which checks them as usual.
        """
        if not self._stream or not isinstance(address, tuple) or len(address) < 2:
            return False
        host = address[0]
        if isinstance(host, (bytes, bytearray)):
            host = bytes(host).decode("ascii", "replace")
        if not isinstance(host, str) or host in ("", "<broadcast>"):
            return False
        try:
            if _is_ip_literal(host):
                return False
        except ValueError:
            pass  # not sendable to a proxy either, but the C method would look it up
        # A tunnel counts whatever its proxy setting now: the connection a
        # BIND's accept() returns has none of its own.
        return self._peername is not None or self._effective_proxy() is not None

    # -- connecting --------------------------------------------------------

    def connect(self, address: Any) -> None:
        """Connect to ``address`` through the proxy (directly if there is none).

        Raises :class:`~socks5client.errors.ProxyError` subclasses for proxy
        trouble and :class:`ValueError` for an address that cannot be sent;
        after a proxy error the socket is closed.
        """
        proxy = self._proxy
        if proxy is _UNSET:
            proxy = get_default_proxy()
        if proxy is None or not self._inet:
            if self._is_open_tunnel():
                raise OSError(errno.EISCONN, os.strerror(errno.EISCONN))
            _check_not_synthetic(address)
            self._direct = True
            PlainSocket.connect(self, address)
            return
        if not self._stream:
            raise _unsupported(self)
        timeout = _gettimeout(self)
        # Budget.for_socket, whose work only a non-blocking socket needs.
        budget = Budget(timeout) if timeout else Budget.for_socket(timeout)
        self._connect_via(proxy, address, budget)

    def connect_ex(self, address: Any) -> int:
        """Like :meth:`connect`, but return an errno instead of raising OSErrors.

        As with a plain socket, name resolution errors (``socket.gaierror``)
        and bad arguments still raise, and after a failure the socket stays
        open, so calling ``connect_ex`` again tries again.
        """
        proxy = self._effective_proxy()
        if proxy is None:
            if self._is_open_tunnel():
                return errno.EISCONN
            _check_not_synthetic(address)
            self._direct = True
            return PlainSocket.connect_ex(self, address)
        if not self._stream:
            return errno.EOPNOTSUPP
        return _errno_of(
            self._connect_via, proxy, address, Budget.for_socket(self.gettimeout()), True
        )

    def _is_open_tunnel(self) -> bool:
        """Whether this open socket is a tunnel already (CONNECT done, or a BIND).

        A direct connect() must then fail with EISCONN, as on any connected
        socket; the C call would not say so: after a connect completed in
        non-blocking mode, Linux answers the next one with success, once,
        and the tunnel would pass for a direct connection.  No system call
        (a closed socket: False, and the C call's EBADF).
        """
        return (self._peername is not None or self._bind_address is not None) and (
            self.fileno() != -1
        )

    def _is_connected_already(self) -> bool:
        """Whether a CONNECT must be refused (EISCONN) before anything is sent.

        A tunnel or a BIND already; a listener, as the kernel says; or a
        descriptor this object connected directly, or shares with another
        object (dup(), fileno=) that may have connected it: the handshake
        would go into that connection.  The system calls only for those.
        """
        return (
            self._peername is not None
            or self._bind_address is not None
            or (self._listening and self._still_listening())
            or ((self._direct or self._shared) and self._connected_directly())
        )

    def _connect_via(
        self, proxy: Proxy, address: Any, budget: Budget, keep_open: bool = False
    ) -> None:
        """CONNECT through ``proxy``; every attempt shares ``budget``'s deadline.

        On failure the socket is closed, or with ``keep_open`` given a fresh
        unconnected descriptor (what ``connect_ex`` callers expect).
        """
        if self._is_connected_already():
            # What a plain socket says; this one stays usable.
            raise OSError(errno.EISCONN, os.strerror(errno.EISCONN))
        try:
            known = _CONNECT_REQUESTS.get(address)
        except TypeError:  # unhashable: _split_address says what is wrong
            known = None
        if known is not None and type(address[1]) is int and type(address[0]) is str:
            # A destination this process connected to before: checked and
            # encoded then.  Equal keys need not be alike, hence the types:
            # ("h", 80.0) or ("h", True) would find the entry of ("h", 80).
            host, port = address
            request, is_name = known
        else:
            host, port = _split_address(address)
            # Encoding refuses a bad destination (empty or over-long name,
            # bad port) with a ValueError before any byte goes to the proxy.
            request = _codec.encode_request(Command.CONNECT, host, port)
            is_name = request[3] == _DOMAIN
            if len(address) == 2 and host is address[0] and type(port) is int:
                # Not a synthetic address (patch() may map those to other
                # names later): they are looked up again on every call.
                if len(_CONNECT_REQUESTS) >= _CONNECT_REQUESTS_MAX:
                    _CONNECT_REQUESTS.clear()
                _CONNECT_REQUESTS[address] = (request, is_name)
        if proxy.remote_dns or not is_name:
            quick = _negotiate.quick_plan(self, proxy)
            if quick:
                # The usual connection, on the quick path: one attempt, no
                # GSS-API protection, and the socket's timeout left as it
                # was (see _negotiate.quick_tunnel).  What follows below
                # for the other cases, without their loop.
                try:
                    reply = _negotiate.quick_tunnel(
                        self,
                        proxy,
                        budget,
                        quick,
                        request,
                        lambda: _connect_context(host, port, host),
                        host if is_name else None,
                    )
                except BaseException:
                    self._connect_failed(keep_open, _gettimeout(self))
                    raise
                # quick[0] is this socket's family.
                self._peername = (
                    (host, port)
                    if quick[0] == _AF_INET and len(address) == 2
                    else self._sockaddr(address, host, port)
                )
                # The quick path's reply is its 10 bytes, IPv4 BND: decoded
                # when asked for (see get_proxy_sockname), as decoding them
                # here costs each connection more than it seems (after the
                # wait for the reply, on cold caches).
                self._proxy_sockname = (
                    reply if isinstance(reply, bytes) else (reply.host, reply.port)
                )
                return
            attempts: list[tuple[str, bytes]] = [(host, request)]
        else:
            attempts = [
                (target, _codec.encode_request(Command.CONNECT, target, port))
                for target in _resolve_locally(host, port)
            ]
        user_timeout = _gettimeout(self)
        last: ProxyError | None = None
        try:
            for target, request in attempts:
                if last is not None:
                    self._renew_fd()
                name = host if is_name and target == host else None
                try:
                    reply, protected = _negotiate.tunnel(
                        self,
                        proxy,
                        budget,
                        request,
                        lambda target=target: _connect_context(host, port, target),  # type: ignore[misc]
                        name,
                    )
                except SOCKS5Error as exc:
                    # Like socket.create_connection: a failure for one
                    # address of the destination is a reason to try the next.
                    last = exc
                    continue
                self._peername = self._sockaddr(address, host, port)
                self._proxy_sockname = (reply.host, reply.port)
                if _gettimeout(self) != user_timeout:
                    _settimeout(self, user_timeout)
                if protected is not None:
                    # Only now, and only this socket, leaves the C data path.
                    self.__class__ = _protected_class_for(self.__class__)
                    self._start_protection(*protected)  # type: ignore[attr-defined]
                return
            assert last is not None
            raise last
        except BaseException:
            self._connect_failed(keep_open, user_timeout)
            raise

    def _connect_failed(self, keep_open: bool, user_timeout: float | None) -> None:
        """After a failed CONNECT: close, or renew the descriptor (``keep_open``)."""
        if not keep_open:
            self.close()
        elif self.fileno() != -1:
            try:
                self._renew_fd()
                _settimeout(self, user_timeout)
            except OSError:
                self.close()

    def _still_listening(self) -> bool:
        """Whether the descriptor listens, as the kernel says; the flag follows it.

        On Linux, ``shutdown()`` takes a listening TCP socket back to the
        closed state, from which it can connect (through the proxy) again.
        A closed socket raises ``EBADF``, as a plain one's connect() does.
        """
        if PlainSocket.getsockopt(self, socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return True
        self._listening = False
        return False

    def _connected_directly(self) -> bool:
        """Whether the descriptor is connected, after a connection without the proxy.

        Asked before connecting to the proxy by an object that connected
        directly, or that shares its kernel socket with another object
        (``_shared``): that other one may have connected it, and its tunnel
        would carry our SOCKS5 greeting and credentials to its destination.
        The kernel's connect() does not tell: with a timeout, CPython's
        connect() on a connected socket returns as if it had connected
        (EISCONN counts as success), and after a connect() that completed
        in non-blocking mode Linux answers the next one with success, once,
        whatever the address.  Only getpeername() says.
        """
        try:
            PlainSocket.getpeername(self)
        except OSError:
            return False  # that attempt failed, or is still under way
        return True

    def _sockaddr(self, address: tuple[Any, ...], host: str, port: int) -> tuple[Any, ...]:
        """An address in the shape this socket's family uses (4-tuples for AF_INET6)."""
        if len(address) == 4:
            return (host, port, address[2], address[3])
        if _c_family(self) == socket.AF_INET6:
            return (host, port, 0, 0)
        return (host, port)

    def _renew_fd(self) -> None:
        """Swap in a fresh, unconnected socket under this object's descriptor.

        A TCP socket cannot connect twice, so a second attempt needs a new
        one; ``dup2`` keeps the file descriptor number and this object.  The
        new socket gets the old one's options and local address, so it
        leaves by the same interface and route.
        """
        carried = swap_descriptor(self)
        # The new descriptor is in a fresh socket's mode (the default
        # timeout's), whatever this object's timeout says.  Put it in this
        # one's: with a timeout but a blocking descriptor, connect() would
        # block past the deadline; blocking but non-blocking underneath, a
        # read would fail at once with EAGAIN.
        _settimeout(self, _gettimeout(self))
        for args in self._options:
            PlainSocket.setsockopt(self, *args)
        for level, name, value in carried:
            PlainSocket.setsockopt(self, level, name, value)
        if self._local_bind is not None:
            PlainSocket.bind(self, self._local_bind)

    # -- BIND: accepting one inbound connection through the proxy -------------

    def bind(self, address: Any) -> None:
        """Bind locally, as a plain socket does, and remember the address.

        With a proxy, :meth:`listen` then decides: on a socket bound to a
        loopback address it listens locally; on any other address (the
        wildcard included) it asks the proxy to listen for us (SOCKS5 BIND).
        :meth:`connect` after ``bind`` connects to the proxy from this
        local address.
        """
        if self._stream and (self._peername is not None or self._bind_address is not None):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        PlainSocket.bind(self, address)
        if self._stream:
            self._local_bind = address

    def listen(self, *backlog: int) -> None:
        """Listen; through the proxy (SOCKS5 BIND) unless the socket is bound to loopback.

        After a SOCKS BIND, :meth:`getsockname` is the address on the proxy
        where the peer must connect, and :meth:`accept` waits for that peer.
        """
        if self._bind_address is not None and self.fileno() != -1:
            return
        proxy = self._effective_proxy()
        if proxy is None or not (self._stream or self._other) or self.fileno() == -1:
            PlainSocket.listen(self, *backlog)
            self._listening = True
            return
        # The address the socket is bound to, however it got it (also via
        # fromfd, or on a raw/SCTP socket); unbound, it is the wildcard.
        local = str(PlainSocket.getsockname(self)[0])
        if _is_loopback(local) or PlainSocket.getsockopt(
            self, socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            # A loopback listener stays local; so does a descriptor that
            # already listens (inherited, or socket.fromfd, as gunicorn and
            # systemd sockets are): a listening socket cannot connect to the
            # proxy any more, and on a plain socket listen() again only
            # changes the backlog.
            PlainSocket.listen(self, *backlog)
            self._listening = True
            return
        if self._other:
            raise _unsupported(self)
        self._socks_bind(proxy, None)

    def proxy_bind(self, expected_peer: Any = None) -> tuple[Any, ...]:
        """Send the SOCKS5 BIND now; return the address on the proxy where the peer must connect.

        ``expected_peer`` is the address the proxy should accept a connection
        from (``None``: any).  Proxies such as Dante refuse other peers.
        Then call :meth:`accept`.  :meth:`listen` does the same for any peer.
        """
        proxy = self._effective_proxy()
        if proxy is None or not self._stream:
            raise OSError(errno.EOPNOTSUPP, "SOCKS5 BIND needs a TCP socksocket with a proxy")
        if self._bind_address is not None:
            raise OSError(errno.EINVAL, "this socket has already sent its SOCKS5 BIND")
        self._socks_bind(proxy, expected_peer)
        assert self._bind_address is not None
        return self._bind_address

    def _socks_bind(self, proxy: Proxy, expected_peer: Any) -> None:
        if self._peername is not None or (
            (self._direct or self._shared) and self._connected_directly()
        ):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if PlainSocket.getsockopt(self, socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            # listen() made it a local listener (a loopback bind): its
            # descriptor cannot connect to the proxy any more.
            raise OSError(errno.EINVAL, "this socket already listens locally")
        if expected_peer is None:
            host, port = ("::" if self.family == socket.AF_INET6 else "0.0.0.0"), 0
        else:
            host, port = _split_address(expected_peer)
        if not host:
            host = "::" if self.family == socket.AF_INET6 else "0.0.0.0"
        if not proxy.remote_dns and not _is_ip_literal(host):
            host = _resolve_locally(host, port)[0]
        request = _codec.encode_request(Command.BIND, host, port)
        user_timeout = self.gettimeout()
        try:
            channel, reply = _negotiate.handshake(
                self,
                proxy,
                Budget.for_socket(user_timeout),
                request,
                f"BIND for {_negotiate.describe(host, port)}",
            )
            bnd_host = reply.host
            # From ATYP and the decoded address, never by parsing the text
            # again: BND.ADDR is the proxy's, and a name there (even one
            # that reads like "::1%") is no argument of ours to validate.
            if _codec.is_unspecified(reply.atyp, bnd_host):
                # The proxy listens on all its addresses; the one we reached
                # it on is the one a peer can use too.
                bnd_host = str(PlainSocket.getpeername(self)[0])
        except BaseException:
            self.close()
            raise
        PlainSocket.settimeout(self, user_timeout)
        self._proxy_sockname = (reply.host, reply.port)
        # accept() reads the second reply from this same proxy, whatever
        # happens to the default proxy meanwhile.
        self._bind_proxy = proxy
        if channel.protection is not None:
            # The second reply and the tunnel are wrapped too (RFC 1961).
            self._bind_protection = (channel.protection, channel.pending)
        self._bind_address = self._sockaddr((bnd_host, reply.port), bnd_host, reply.port)
        # One thread at a time waits for the second reply and reads it (see
        # accept()); made here, before any accept() can run, so no two
        # threads can make one each.
        self._bind_lock = _thread.allocate_lock()
        # Until accept(), the descriptor is the line to the proxy: only
        # accept() may read from it (see _BindWaitingSocket).
        self.__class__ = _bind_waiting_class_for(self.__class__)

    def accept(self) -> tuple[socket.socket, Any]:
        """Wait for the peer of a SOCKS BIND; return ``(conn, peer_address)``.

        Honours the socket's timeout, one deadline for the wait and the
        proxy's reply: on expiry a
        :class:`~socks5client.errors.ProxyTimeoutError` (a ``TimeoutError``)
        is raised and, if the proxy sent nothing yet, ``accept`` may be
        called again.  ``conn`` takes over the tunnel (this socket's file
        descriptor); one BIND serves exactly one connection.
        """
        lock = self._bind_lock
        if lock is None:
            return self._plain_accept()
        timeout = self.gettimeout()
        budget = Budget.for_socket(timeout)
        # Several threads may wait in accept(), as on a plain listening
        # socket: one at a time waits for the second reply and reads it,
        # so that no two split its bytes between them (and lose the peer).
        # The wait for the lock counts against the same deadline.
        if timeout == 0.0:
            acquired = lock.acquire(False)
        else:
            left = budget.remaining()
            acquired = lock.acquire(True, -1 if left is None else max(0.0, left))
        if not acquired:
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "another thread is accepting on this socket")
            raise ProxyTimeoutError(
                "another thread was still accepting the peer of this SOCKS5 BIND"
                f" {budget.describe()}"
            )
        try:
            if self._bind_address is None or self.fileno() == -1:
                # Another thread accepted the peer (EINVAL), or failed and
                # closed the socket (EBADF, as on a closed socket).
                return self._plain_accept()
            return self._bind_accept(timeout, budget)
        finally:
            lock.release()

    def _plain_accept(self) -> tuple[socket.socket, Any]:
        """``accept()`` of a socket that is not waiting for a BIND peer."""
        if self._bind_accepted:
            # Checked first: accept() detached the descriptor, so the plain
            # call would raise EBADF, and the documented answer is EINVAL.
            raise OSError(
                errno.EINVAL,
                "a SOCKS5 BIND serves one connection, and it has been accepted",
            )
        conn, address = super().accept()
        if isinstance(conn, socksocket):
            # socket.accept() builds the connection with socket.socket,
            # a socksocket under global patching: it is a direct local
            # connection, already open, so no proxy applies to it (else
            # detach(), and so ssl wrapping, would be refused).
            conn.set_proxy()
        return conn, address

    def _bind_accept(self, timeout: float | None, budget: Budget) -> tuple[socket.socket, Any]:
        """Wait for the BIND's second reply and hand the tunnel over (lock held)."""
        assert self._bind_address is not None
        proxy = self._bind_proxy
        assert proxy is not None
        where = _negotiate.describe(proxy.host, proxy.port)
        protected = self._bind_protection
        # A proxy may wrap both replies in one token (RFC 1961 frames need
        # not match SOCKS messages): then the second is already unwrapped
        # and buffered, and the descriptor may never become readable again.
        try:
            buffered = protected is not None and (
                bool(_codec.peek_reply_code(protected[1]))
                or type(_codec.parse_reply(protected[1])) is not _codec.NeedData
            )
        except ProxyError:
            buffered = True  # broken already: the reading below reports it now
        if not buffered and not _wait_readable(self, 0.0 if timeout == 0.0 else budget.remaining()):
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "no peer has connected yet")
            raise ProxyTimeoutError(
                f"no peer connected to {_negotiate.describe(*self._bind_address[:2])}"
                f" (BIND via proxy {where}) {budget.describe()}"
            )
        channel = _negotiate.SocketChannel(self, proxy, budget)
        rest = b""
        try:
            if protected is None:
                reply = _negotiate.read_reply(channel, "BIND (the peer's connection)", where)
            else:
                reply, rest = channel.run(
                    _conversation.protected_reply(
                        protected[0], "BIND (the peer's connection)", where, None, protected[1]
                    )
                )
        except BaseException:
            self.close()
            raise
        if self.family == socket.AF_INET6 or reply.atyp == _codec.AddressType.IPV6:
            peer: tuple[Any, ...] = (reply.host, reply.port, 0, 0)
        else:
            peer = (reply.host, reply.port)
        family, type_, proto = self.family, self.type, self.proto
        PlainSocket.settimeout(self, timeout)
        fd = PlainSocket.detach(self)
        self._bind_address = None
        self._bind_accepted = True
        # The BIND no longer waits: the usual class (and C methods) again.
        self.__class__ = getattr(type(self), "_class_before_bind", type(self))
        conn = socksocket(family, type_, proto, fileno=fd)
        conn.set_proxy()
        conn._peername = peer
        conn._proxy_sockname = self._proxy_sockname
        if protected is not None:
            conn.__class__ = _protected_class_for(type(conn))
            conn._start_protection(protected[0], rest)  # type: ignore[attr-defined]
        # As socket.accept() does: the new socket starts with the default
        # timeout.  Setting it also resets the descriptor's O_NONBLOCK flag,
        # which the listening socket's timeout may have left on.
        conn.settimeout(socket.getdefaulttimeout())
        return conn, peer

    # -- addresses ---------------------------------------------------------

    def getsockname(self) -> Any:
        """After a SOCKS BIND, where the peer must connect; else the local address."""
        if self._bind_address is not None and self.fileno() != -1:
            return self._bind_address
        return super().getsockname()

    def getpeername(self) -> Any:
        """The destination as it was requested (hostname kept) when proxied."""
        if self._peername is not None and self.fileno() != -1:
            return self._peername
        if self._bind_address is not None:
            raise OSError(errno.ENOTCONN, "no peer has connected to the BIND address yet")
        return super().getpeername()

    #: PySocks' name for :meth:`getpeername`.
    get_peername = getpeername

    def get_proxy_sockname(self) -> tuple[str, int] | None:
        """BND.ADDR and BND.PORT from the proxy's reply (``None`` before it)."""
        name = self._proxy_sockname
        if isinstance(name, bytes):  # (see _connect_via)
            name = self._proxy_sockname = _codec.ipv4_reply(name)[2:]
        return name

    def get_proxy_peername(self) -> Any:
        """The address of the proxy this socket is connected to."""
        return super().getpeername()


class _BindWaitingSocket(socksocket):
    """A TCP socksocket between its SOCKS BIND and ``accept()``.

    Its descriptor is then the connection to the proxy, which owes us the
    second reply: a ``send`` would put application bytes into the SOCKS
    conversation, and a ``recv`` would take the reply away from
    ``accept()``.  Like a plain listening socket, this refuses both:
    sends with ``EPIPE`` and receives with ``ENOTCONN`` (what Linux
    answers on one; ``makefile()`` reads and writes come here too).

    The socket becomes this class only for the wait (``_socks_bind`` sets
    it, ``accept()`` puts the class back), as GSS-API protection and UDP
    switch classes: a socksocket's send/recv stay the C methods, so no
    connected tunnel pays a Python call per send or receive for this.
    Once the socket is closed (or detached) every method is the usual one
    again, so a closed socket still raises ``EBADF``.
    """

    #: The class to put back at accept().
    _class_before_bind: type = socksocket

    def _refuse(self, code: int) -> None:
        if self._bind_address is not None and self.fileno() != -1:
            raise OSError(
                code,
                f"{os.strerror(code)}: this socket waits for the peer of its SOCKS5 BIND;"
                " accept() first, then use the connection it returns",
            )

    def send(self, *args: Any) -> int:
        self._refuse(errno.EPIPE)
        return super().send(*args)

    def sendall(self, *args: Any) -> None:
        self._refuse(errno.EPIPE)
        return super().sendall(*args)

    def sendto(self, *args: Any) -> int:
        self._refuse(errno.EPIPE)
        return super().sendto(*args)

    def sendmsg(self, *args: Any) -> int:
        self._refuse(errno.EPIPE)
        return super().sendmsg(*args)

    def sendfile(self, *args: Any, **kwargs: Any) -> int:
        # socket.sendfile() writes to the descriptor with os.sendfile,
        # never through send(): refused here too.
        self._refuse(errno.EPIPE)
        return super().sendfile(*args, **kwargs)

    def recv(self, *args: Any) -> bytes:
        self._refuse(errno.ENOTCONN)
        return super().recv(*args)

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self._refuse(errno.ENOTCONN)
        return super().recv_into(*args, **kwargs)

    def recvfrom(self, *args: Any) -> tuple[bytes, Any]:
        self._refuse(errno.ENOTCONN)
        return super().recvfrom(*args)

    def recvfrom_into(self, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        self._refuse(errno.ENOTCONN)
        return super().recvfrom_into(*args, **kwargs)

    def recvmsg(self, *args: Any) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        self._refuse(errno.ENOTCONN)
        return super().recvmsg(*args)

    def recvmsg_into(self, *args: Any) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        self._refuse(errno.ENOTCONN)
        return super().recvmsg_into(*args)


def _bind_waiting_class_for(cls: type) -> type:
    """The class a socket of class ``cls`` has while its SOCKS BIND waits for the peer."""
    if cls is socksocket:
        return _BindWaitingSocket
    if issubclass(cls, _BindWaitingSocket):
        return cls
    # (_BindWaitingSocket, cls): the refusals come before the subclass's own
    # send/recv overrides, whose bytes would reach the proxy just the same.
    return _variant_of(cls, (_BindWaitingSocket, cls), _class_before_bind=cls)


def _connect_context(host: str, port: int, target: str) -> str:
    """``CONNECT to host:port`` for messages, with the address tried if resolved here."""
    shown = _negotiate.describe(host, port)
    return f"CONNECT to {shown}" if target == host else f"CONNECT to {shown} ({target})"


def _errno_of(call: Callable[..., None], *args: Any) -> int:
    """``call(*args)``'s outcome as ``connect_ex`` reports it: 0, or the OSError's errno.

    As with a plain socket, name resolution errors and bad arguments raise.
    """
    try:
        call(*args)
    except socket.gaierror:
        raise
    except OSError as exc:
        if not isinstance(exc.errno, int):
            raise
        return exc.errno
    return 0


def _defuse(fd: int) -> None:
    """Replace descriptor ``fd`` with a socket that can neither send nor connect anywhere."""
    dead, other = socket.socketpair()
    try:
        dead.shutdown(socket.SHUT_RDWR)  # both ends: neither can send nor connect
        if fd in (dead.fileno(), other.fileno()):
            # The number was free, closed by whoever held it (uvloop's libuv
            # closes a transport's descriptor, then detaches the socket
            # object), and the pair took it: dup2 onto itself is EINVAL, and
            # onto the other end would leave it closed below.  That end stays
            # there instead, for the caller to close as usual.
            (dead if dead.fileno() == fd else other).detach()
            return
        os.dup2(dead.fileno(), fd, inheritable=False)
    finally:
        dead.close()
        other.close()


def _owned_elsewhere(fd: int, sock: socket.socket) -> bool:
    """Whether another live socket object holds descriptor ``fd`` (an error path only)."""
    # _socket.socket, the C base class: under socks5client.patch()
    # socket.socket is the patched class, which ssl's own socket object
    # (derived from the original) is not an instance of.
    import contextlib  # here, with gc: an error path only
    import gc

    for obj in gc.get_objects():
        if obj is not sock and isinstance(obj, _socket.socket):
            with contextlib.suppress(Exception):
                if obj.fileno() == fd:
                    return True
    return False


#: poll(2) takes an int of milliseconds: about 24.8 days at most per call.
_MAX_POLL_MS = 2**31 - 1


def _wait_readable(sock: socket.socket, timeout: float | None) -> bool:
    """Whether ``sock`` becomes readable within ``timeout`` (None: wait forever)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        wait_ms = None if left is None else min(_MAX_POLL_MS, max(0, int(left * 1000 + 0.999)))
        if poller.poll(wait_ms):
            return True
        if wait_ms is not None and wait_ms < _MAX_POLL_MS:
            return False


def _resolve_locally(host: str, port: int) -> list[str]:
    """The destination's addresses, resolved here (``socks5://``), without repeats.

    The name is looked up in the same IDNA 2008 form that remote resolution
    would send (Python's own codec would use IDNA 2003).
    """
    atyp, encoded = _codec.encode_host(host)
    name = host
    if atyp == _codec.AddressType.DOMAIN:
        host = encoded[1:].decode("ascii")
    try:
        infos = _resolve.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        # Same type and code, but naming the host and why it was looked up
        # here at all: a bare "Name or service not known" says neither.
        raise socket.gaierror(
            exc.errno,
            f"{exc.strerror}: {name!r} was resolved locally because the proxy URL is"
            " socks5:// (socks5h:// lets the proxy resolve it)",
        ) from exc
    seen: list[str] = []
    for info in infos:
        ip = str(info[4][0])
        if ip not in seen:
            seen.append(ip)
    return seen


# PySocks code sets the default by assigning socksocket.default_proxy:
# get_default_proxy() reads this class's attribute (see proxy.py).
_proxy_module._socket_class = socksocket


@guard_secrets
def create_connection(
    address: tuple[str, int],
    timeout: float | None = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: tuple[str, int] | None = None,
    proxy_type: int | None = None,
    proxy_addr: str | None = None,
    proxy_port: int | None = None,
    proxy_rdns: bool = True,
    proxy_username: Credential | None = None,
    proxy_password: Credential | None = None,
    socket_options: list[tuple[int, int, int | bytes]] | None = None,
    *,
    proxy: ProxyLike | None = None,
    all_errors: bool = False,
) -> socket.socket:
    """Connect to ``address`` through a proxy and return the socket.

    Like :func:`socket.create_connection`.  The proxy is ``proxy`` (a
    :class:`Proxy` or URL), else PySocks' ``proxy_*`` arguments (by keyword
    or in PySocks' positional order), else the default proxy; with none at
    all, the connection is direct.  Each of the proxy's addresses is tried
    in turn, all within one ``timeout``; ``socket_options`` are applied
    before connecting, as ``urllib3`` expects.  ``all_errors=True`` (Python
    3.11+) raises what ``socket.create_connection`` does when the
    connection fails: an ``ExceptionGroup`` of the errors of the attempts
    made, even of one, rather than the last of them.
    """
    # Blank credentials are "not given", as in PySocks (requests passes ""
    # for a proxy URL without user info): alone they must not turn the
    # default proxy off.
    pysocks_args = (
        proxy_type,
        proxy_addr,
        proxy_port,
        proxy_username or None,
        proxy_password or None,
    )
    if proxy is not None:
        if pysocks_args != (None,) * 5 or not proxy_rdns:
            raise ValueError("give either proxy= or the proxy_* arguments, not both")
        chosen = proxy_from_args(proxy)
    elif pysocks_args != (None,) * 5:
        chosen = proxy_from_args(
            proxy_type, proxy_addr, proxy_port, proxy_rdns, proxy_username, proxy_password
        )
    else:
        chosen = get_default_proxy()
        if chosen is not None and not proxy_rdns:
            # proxy_rdns=False alone: the default proxy, resolving locally.
            chosen = _with_host(chosen, chosen.host, remote_dns=False)
    # The credentials live on in ``chosen`` (whose repr masks them); no
    # local of this frame, which a traceback keeps, holds them any more.
    del proxy_username, proxy_password, pysocks_args, proxy
    if chosen is None:
        # socket.create_connection's own rules for the address (a port such
        # as "80" included), but as socksocket.connect() without a proxy: a
        # synthetic address leads nowhere but through a proxy.
        _check_not_synthetic(address)
        return _direct_connection(address, timeout, source_address, socket_options, all_errors)
    host, port = _split_address(_as_create_connection_address(address))
    # Refuse a bad destination before resolving or connecting anything.
    _codec.encode_host(host)
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
        timeout = socket.getdefaulttimeout()
    # One deadline for the whole call, however many proxy addresses it tries.
    budget = Budget.for_socket(timeout)
    try:
        literal = chosen._literal
        if literal is not None:
            # An IP address: nothing to resolve, and the proxy is already
            # described by the address each attempt connects to.
            infos: list[Any] = [(literal[0], socket.SOCK_STREAM, 0, "", literal[1])]
        else:
            infos = _resolve.getaddrinfo(chosen.host, chosen.port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProxyConnectionError(f"cannot resolve proxy host {chosen.host!r}", exc) from exc
    errors: list[OSError] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        sock: socksocket | None = None
        connecting = False
        try:
            sock = socksocket(family, socket.SOCK_STREAM)
            for opt in socket_options or ():
                sock.setsockopt(*opt)
            sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            via = chosen if literal is not None else _with_host(chosen, str(sockaddr[0]))
            connecting = True
            sock._connect_via(via, (host, port), budget)
            return sock
        except BaseException as exc:
            if sock is not None:
                sock.close()
            if not isinstance(exc, OSError):
                raise
            if connecting and isinstance(exc, socket.gaierror):
                # The destination's own lookup (socks5://), which the stdlib
                # makes before any attempt and never puts in the group.
                raise
            errors.append(exc)
            # Another address of the proxy may work; a proxy that answered
            # and refused will not do better.
            if not isinstance(exc, ProxyConnectionError):
                break
    if not errors:
        raise OSError(f"getaddrinfo returned no addresses for {chosen.host!r}")
    if all_errors and sys.version_info >= (3, 11):
        # As socket.create_connection: every attempt's error, even just one,
        # so that an ``except* ...`` handler written for it catches ours.
        raise ExceptionGroup("create_connection failed", errors)  # noqa: F821
    raise errors[-1]


def _as_create_connection_address(address: Any) -> Any:
    """``address`` as ``socket.create_connection`` reads it: any pair, a port such as "443".

    Programs call the patched ``socket.create_connection`` with what the
    stdlib accepts; a service name is looked up in the local services
    database (no DNS).  Anything else is left for ``_split_address`` to
    judge.
    """
    if type(address) is tuple and len(address) == 2 and type(address[1]) is int:
        return address  # the usual form, untouched
    try:
        host, port = address
    except (TypeError, ValueError):
        return address
    if isinstance(port, (bytes, bytearray)):
        port = bytes(port).decode("ascii", "replace")
    if isinstance(port, str):
        port = int(port) if port.isdigit() else socket.getservbyname(port, "tcp")
    return (host, port)


def _direct_connection(
    address: tuple[Any, ...],
    timeout: Any,
    source_address: tuple[str, int] | None,
    socket_options: list[tuple[int, int, int | bytes]] | None,
    all_errors: bool,
) -> socket.socket:
    """``socket.create_connection`` with plain sockets and the real resolver (no proxy).

    Written out rather than calling the stdlib function, which looks up
    ``socket.socket`` and ``getaddrinfo`` at call time: under
    :func:`socks5client.patch` those are the patched ones.
    """
    host, port = address[0], address[1]
    errors: list[OSError] = []
    for family, type_, proto, _canon, sockaddr in _resolve.getaddrinfo(
        host, port, 0, socket.SOCK_STREAM
    ):
        sock = PlainSocket(family, type_, proto)
        try:
            for opt in socket_options or ():
                sock.setsockopt(*opt)
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            errors.append(exc)
    if not errors:
        raise OSError(f"getaddrinfo returned no addresses for {host!r}")
    if all_errors and sys.version_info >= (3, 11):
        raise ExceptionGroup("create_connection failed", errors)  # noqa: F821
    # The last attempt's error, as socket.create_connection raises.
    raise errors[-1]


def _with_host(proxy: Proxy, host: str, remote_dns: bool | None = None) -> Proxy:
    """``proxy`` with another host (one of its addresses), and maybe another DNS mode.

    A GSS-API service named by the host (``rcmd``) stays on the host the
    user gave (``rcmd@proxy.example.com``): the address it resolved to has
    no service principal.
    """
    made = Proxy(
        host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        remote_dns=proxy.remote_dns if remote_dns is None else remote_dns,
        pipeline=proxy.pipeline,
        gssapi=proxy.gssapi,
        gssapi_service=proxy.gssapi_service,
        gssapi_protection=proxy.gssapi_protection,
    )
    object.__setattr__(made, "_gssapi_host", proxy._gssapi_host or proxy.host)
    return made
