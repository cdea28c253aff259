"""Proxy descriptions: the :class:`Proxy` record, proxy URLs, and the process default.

A :class:`Proxy` is immutable and validated when it is made, so a bad port or
an over-long username is reported where it was written, not at the first
connection.  Its ``repr`` and ``str`` never show the password, and neither
does any error raised here, nor any local of a frame in such an error's
traceback (see :mod:`socks5client._secret`).
"""

from __future__ import annotations

import _thread
import os
import socket

from ._codec import encode_userpass
from ._secret import Secret, guard_secrets

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Union
    from urllib.parse import SplitResult

    from .auth import AuthPlan

__all__ = [
    "HTTP",
    "PROXY_TYPE_HTTP",
    "PROXY_TYPE_SOCKS4",
    "PROXY_TYPE_SOCKS5",
    "SOCKS4",
    "SOCKS5",
    "Proxy",
    "ProxyLike",
    "get_default_proxy",
    "proxy_from_args",
    "set_default_proxy",
]

#: PySocks' proxy type numbers.  Only SOCKS5 is supported; the others exist
#: so that PySocks code imports, and are refused with a clear message.
PROXY_TYPE_SOCKS4 = SOCKS4 = 1
PROXY_TYPE_SOCKS5 = SOCKS5 = 2
PROXY_TYPE_HTTP = HTTP = 3

DEFAULT_PORT = 1080

_SCHEMES = {"socks5": False, "socks5h": True}  # scheme -> remote DNS
_MASK = "***"
#: Values of the ``pipeline`` and ``gssapi`` URL query parameters.
_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS.update({"0": False, "false": False, "no": False, "off": False})
#: Parsed proxy URLs, so that ``set_proxy(url)`` on every new socket does not
#: parse the same URL again (a Proxy is immutable, so sharing one is safe).
#: Bounded: emptied when full.
_url_cache: dict[str, Proxy] = {}
_URL_CACHE_SIZE = 64
#: RFC 1961 protection levels by ``gssapi_protection`` name.
GSSAPI_PROTECTION_LEVELS = {"none": 0, "integrity": 1, "confidentiality": 2}
DEFAULT_GSSAPI_SERVICE = "rcmd"


#: The :class:`Proxy` already parsed from a URL, if any (no parsing here).
#: The bound ``dict.get`` itself: ``set_proxy(url)`` runs it for every new
#: socket, and it then costs no Python call.
cached_url: Callable[[str], Proxy | None] = _url_cache.get


def _scheme_syntax_ok(scheme: str) -> bool:
    """RFC 3986's scheme syntax: only text of this shape is quoted back in an error.

    So a malformed URL cannot get its user info echoed as a "scheme".
    """
    return (
        scheme[:1].isascii()
        and scheme[:1].isalpha()
        and all(c.isascii() and (c.isalnum() or c in "+.-") for c in scheme)
    )


if TYPE_CHECKING:
    #: A username or password: ``str`` is sent as UTF-8, ``bytes`` as it is.
    Credential = Union[str, bytes]


def _blank(value: object) -> bool:
    """True for a credential that is absent: ``None`` or empty."""
    return value is None or (isinstance(value, (str, bytes, bytearray)) and not value)


def _encodable(value: object) -> bool:
    """False for a ``str`` that UTF-8 cannot encode (a lone surrogate)."""
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Its args hold the whole string: drop it here, never re-raise it.
        return False
    return True


class Proxy:
    """An immutable description of a SOCKS5 proxy.

    :param host: the proxy's hostname or IP address.
    :param port: the proxy's port (1-65535), 1080 by default.
    :param username: for RFC 1929 authentication (1-255 bytes in UTF-8).
    :param password: for RFC 1929 authentication (0-255 bytes in UTF-8).
    :param remote_dns: when true (the default, ``socks5h``), destination
        hostnames are sent to the proxy to resolve; when false
        (``socks5``), they are resolved locally first.
    :param pipeline: when true, each handshake sends its greeting, the
        credentials and the request in one write and then reads the
        replies, which saves one round trip (two with a username).  Off by
        default: some proxies (microsocks) do not accept it.  See
        ``docs/performance.md`` for the servers known to.
    :param gssapi: authenticate with GSS-API (Kerberos, RFC 1961).  The
        greeting then offers GSSAPI only, plus username/password when
        credentials are given: never "no authentication".  Needs the
        ``gssapi`` package (``pip install 'socks5client[gssapi]'``) and a
        ticket (``kinit``).  See ``docs/kerberos.md``.
    :param gssapi_service: the proxy's service.  A bare name (``"rcmd"``,
        Dante's default) means the host-based service ``name@host`` on the
        proxy's host as written here (an IP literal stays an IP literal:
        no reverse DNS); ``"name@host"`` names the host explicitly; a name
        with a ``/`` is a full Kerberos principal
        (``"rcmd/proxy.example.com@EXAMPLE.COM"``).
    :param gssapi_protection: the per-message protection to ask for:
        ``"none"``, ``"integrity"`` or ``"confidentiality"``; a proxy that
        answers a weaker level is refused.  ``None`` (the default) asks for
        confidentiality and accepts the level the proxy answers.

    An empty (or ``None``) username with an empty (or ``None``) password
    means no authentication, as PySocks-style callers (``requests``) pass
    ``""`` for "none"; both attributes are then ``None``.  A password with
    an empty username is refused.  A username with an empty or no password
    is RFC 1929 with an empty password.
    """

    __slots__ = (
        "_gssapi_host",
        "_literal",
        "_password",
        "_plan",
        "_quick",
        "gssapi",
        "gssapi_protection",
        "gssapi_service",
        "host",
        "pipeline",
        "port",
        "remote_dns",
        "username",
    )

    host: str
    port: int
    username: Credential | None
    remote_dns: bool
    pipeline: bool
    gssapi: bool
    gssapi_service: str
    gssapi_protection: str | None
    # Caches for the handshake, not part of the value: the socket address of
    # an IP-literal host (no getaddrinfo per connection) and the greeting
    # and methods to offer (socks5client.auth.plan_for).
    _literal: tuple[int, tuple[Any, ...]] | None
    _plan: AuthPlan | None
    # What socks5client._negotiate's quick path needs, worked out on first
    # use (None until then; False when the quick path does not apply).
    _quick: Any
    # The host a GSS-API service name is built on when it is not ``host``:
    # a proxy made for one resolved address of a named host keeps the name.
    _gssapi_host: str | None
    # Wrapped, so that code looking into a Proxy's slots (debuggers, error
    # reporters expanding traceback locals) sees it masked too.
    _password: Secret[Credential] | None

    @guard_secrets
    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        username: Credential | None = None,
        password: Credential | None = None,
        remote_dns: bool = True,
        pipeline: bool = False,
        gssapi: bool = False,
        gssapi_service: str = DEFAULT_GSSAPI_SERVICE,
        gssapi_protection: str | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError("the proxy host must be a non-empty string")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"the proxy port must be an int, not {type(port).__name__}")
        if not 1 <= port <= 0xFFFF:
            raise ValueError(f"the proxy port {port} is out of range 1-65535")
        literal = _literal_sockaddr(host, port)
        if literal is None:
            _check_host_name(host)
        if _blank(username):
            if not _blank(password):
                raise ValueError(
                    "a proxy password was given without a username"
                    " (an empty username means no authentication)"
                )
            username = password = None
        if username is not None:
            for what, credential in (("username", username), ("password", password)):
                if not _encodable(credential):
                    raise ValueError(
                        f"the proxy {what} has a lone surrogate; UTF-8 cannot encode it"
                    )
            # Validates both lengths now rather than at the first connection.
            encode_userpass(username, password if password is not None else b"")
        _check_gssapi(gssapi, gssapi_service, gssapi_protection)
        for name, value in (
            ("host", host),
            ("port", port),
            ("username", username),
            ("_password", None if password is None else Secret(password)),
            ("remote_dns", bool(remote_dns)),
            ("pipeline", bool(pipeline)),
            ("gssapi", bool(gssapi)),
            ("gssapi_service", gssapi_service),
            ("gssapi_protection", gssapi_protection),
            ("_literal", literal),
            ("_plan", None),
            ("_quick", None),
            ("_gssapi_host", None),
        ):
            object.__setattr__(self, name, value)

    def _literal_sockaddrs(self, family: int) -> list[tuple[Any, ...]] | None:
        """``[sockaddr]`` when the host is an IP literal of ``family``, else ``None``."""
        literal = self._literal
        if literal is not None and literal[0] == family:
            return [literal[1]]
        return None

    @property
    def password(self) -> Credential | None:
        """The RFC 1929 password, or ``None``."""
        return None if self._password is None else self._password.reveal()

    @classmethod
    @guard_secrets
    def from_url(cls, url: str) -> Proxy:
        """Parse ``socks5h://[user[:password]@]host[:port]``.

        ``socks5h://`` has the proxy resolve hostnames; ``socks5://``
        resolves them locally.  User info is percent-decoded; an IPv6 host
        goes in brackets (``socks5://[::1]:1080``); the port defaults to
        1080.  ``socks5h://@host`` and ``socks5h://:@host`` mean no
        authentication; ``user:@host`` is the user with an empty password.
        The query may set ``pipeline`` and ``gssapi`` (``1``/``0``) and
        ``gssapi_service`` and ``gssapi_protection``
        (``?gssapi=1&gssapi_protection=integrity``).  Anything else raises
        :class:`ValueError` naming the problem, never quoting the user info.
        """
        if not isinstance(url, str):
            raise TypeError(f"a proxy URL must be a str, not {type(url).__name__}")
        if cls is Proxy:
            cached = _url_cache.get(url)
            if cached is not None:
                return cached
        proxy = cls._parse_url(url)
        if cls is Proxy:
            if len(_url_cache) >= _URL_CACHE_SIZE:
                _url_cache.clear()
            _url_cache[url] = proxy
        return proxy

    @classmethod
    @guard_secrets
    def _parse_url(cls, url: str) -> Proxy:
        scheme, sep, _ = url.partition("://")
        if not sep:
            raise ValueError("proxy URL has no scheme; expected socks5:// or socks5h://")
        remote_dns = _SCHEMES.get(scheme.lower())
        if remote_dns is None:
            shown = repr(scheme) if _scheme_syntax_ok(scheme) else "(not a valid scheme)"
            hint = ""
            if scheme.lower() in ("socks", "socks4", "socks4a", "socks5a"):
                hint = (
                    " (did you mean socks5h://? it lets the proxy resolve names;"
                    " socks5:// resolves them here)"
                )
            raise ValueError(
                f"unsupported proxy scheme {shown}; expected socks5:// or socks5h://{hint}"
            )
        parts = _split_url(url)
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("a proxy URL has no path or fragment")
        options = _query_options(parts.query)
        host = parts.hostname
        if not host:
            raise ValueError("proxy URL has no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("proxy URL has a port that is not a number in 1-65535") from None
        if port is None:
            port = DEFAULT_PORT
        if port == 0:
            raise ValueError("proxy URL has port 0; a proxy port is 1-65535")
        username = _url_credential(parts.username)
        password = _url_credential(parts.password)
        return cls(
            host,
            port,
            username=username,
            password=password,
            remote_dns=remote_dns,
            **options,  # type: ignore[arg-type]
        )

    @property
    def url(self) -> str:
        """The proxy as a URL, with the password masked."""
        from urllib.parse import quote

        scheme = "socks5h" if self.remote_dns else "socks5"
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = ""
        if self.username is not None:
            user = self.username
            auth = quote(user, safe="")
            if self._password is not None:
                auth += ":" + _MASK
            auth += "@"
        params = []
        if self.pipeline:
            params.append("pipeline=1")
        if self.gssapi:
            params.append("gssapi=1")
            if self.gssapi_service != DEFAULT_GSSAPI_SERVICE:
                params.append("gssapi_service=" + quote(self.gssapi_service, safe="/@"))
            if self.gssapi_protection is not None:
                params.append("gssapi_protection=" + self.gssapi_protection)
        query = "?" + "&".join(params) if params else ""
        return f"{scheme}://{auth}{host}:{self.port}{query}"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Proxy is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Proxy is immutable")

    def _key(self) -> tuple[object, ...]:
        # Not for display: it holds the password in the clear.
        return (
            self.host,
            self.port,
            self.username,
            self.password,
            self.remote_dns,
            self.pipeline,
            self.gssapi,
            self.gssapi_service,
            self.gssapi_protection,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proxy):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        pw = "" if self._password is None else f", password={_MASK!r}"
        user = "" if self.username is None else f", username={self.username!r}"
        extra = ", pipeline=True" if self.pipeline else ""
        if self.gssapi:
            extra += ", gssapi=True"
            if self.gssapi_service != DEFAULT_GSSAPI_SERVICE:
                extra += f", gssapi_service={self.gssapi_service!r}"
            if self.gssapi_protection is not None:
                extra += f", gssapi_protection={self.gssapi_protection!r}"
        return f"Proxy({self.host!r}, {self.port}{user}{pw}, remote_dns={self.remote_dns}{extra})"

    def __str__(self) -> str:
        return self.url

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_proxy, self._key())


def _split_url(url: str) -> SplitResult:
    """``urlsplit(url)``, with urllib's errors replaced by ours.

    urllib's message for a netloc that NFKC normalisation would change (a
    U+FF03 FULLWIDTH NUMBER SIGN or a U+FE6B SMALL COMMERCIAL AT in a
    password, say) quotes the whole netloc, password included.  Ours names
    the problem only, and is raised outside the ``except`` block so the
    original is not chained to it.
    """
    from urllib.parse import urlsplit

    try:
        return urlsplit(url)
    except ValueError as exc:
        nfkc = "NFKC" in str(exc)
    if nfkc:
        raise ValueError(
            "proxy URL has a character in its user info or host that Unicode NFKC"
            " normalization turns into '/', '?', '#', '@' or ':';"
            " percent-encode the user name and password"
        )
    # urllib's other netloc errors are about brackets.
    raise ValueError("proxy URL has a malformed host: brackets must hold an IPv6 address")


_QUERY_KEYS = ("pipeline", "gssapi", "gssapi_service", "gssapi_protection")


def _query_options(query: str) -> dict[str, object]:
    """Proxy keyword arguments from a proxy URL's query.

    ``pipeline`` and ``gssapi`` are flags (``1``/``0``, ``true``/``false``;
    alone, true); ``gssapi_service`` and ``gssapi_protection`` take the
    values :class:`Proxy` does (percent-decoded).  Nothing else is allowed.
    """
    from urllib.parse import unquote

    options: dict[str, object] = {}
    for item in query.split("&") if query else ():
        key, sep, value = item.partition("=")
        if key not in _QUERY_KEYS:
            raise ValueError(
                "a proxy URL's query may only have pipeline, gssapi, gssapi_service and"
                " gssapi_protection; it has another parameter"
            )
        if key in options:
            # Which one was meant?  Keeping the last would quietly drop,
            # say, the GSS-API authentication or protection asked for first.
            raise ValueError(f"a proxy URL's query has its {key} parameter twice")
        if key in ("pipeline", "gssapi"):
            flag = _FLAGS.get(value.lower()) if sep else True
            if flag is None:
                raise ValueError(f"a proxy URL's {key} parameter must be 1 or 0 (true or false)")
            options[key] = flag
        else:
            options[key] = unquote(value)
    return options


def _check_gssapi(gssapi: object, service: object, protection: object) -> None:
    """Refuse GSS-API settings that cannot work, before any connection."""
    if not isinstance(service, str) or not service or service != service.strip():
        raise ValueError("gssapi_service must be a non-empty name without surrounding spaces")
    if protection is not None and protection not in GSSAPI_PROTECTION_LEVELS:
        raise ValueError(
            "gssapi_protection must be 'none', 'integrity', 'confidentiality' or None"
            " (the strongest the proxy accepts)"
        )
    if not gssapi and (service != DEFAULT_GSSAPI_SERVICE or protection is not None):
        raise ValueError(
            "gssapi_service and gssapi_protection need gssapi=True (or ?gssapi=1 in the URL)"
        )


def _url_credential(text: str | None) -> Credential | None:
    """A percent-decoded username or password: text if its bytes are UTF-8, else the bytes.

    ``unquote`` would turn bytes that are not UTF-8 (``caf%E9``, Latin-1)
    into U+FFFD, sending other credentials than the URL's; RFC 1929 sends
    bytes, and curl sends these as they are.
    """
    if text is None:
        return None
    from urllib.parse import unquote_to_bytes

    # surrogateescape: a byte that is not UTF-8 in a URL from argv or the
    # environment arrives as a lone surrogate, and goes back to that byte.
    raw = unquote_to_bytes(text.encode("utf-8", "surrogateescape"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _check_host_name(host: str) -> None:
    """Refuse a proxy host name that no lookup could take, now rather than at each connection.

    ``getaddrinfo`` encodes a name with Python's ``idna`` codec, which
    raises ``UnicodeError`` for an empty label (``proxy..example``, ``.``)
    or one over 63 characters; and the C resolver would end a name at a
    NUL, looking up (and connecting to) another proxy than the one named.
    """
    if "\x00" in host:
        raise ValueError("the proxy host must not contain a NUL character")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ValueError(
            f"the proxy host {host!r} is not a valid host name"
            " (an empty label, or a label over 63 characters)"
        ) from None


def _literal_sockaddr(host: str, port: int) -> tuple[int, tuple[Any, ...]] | None:
    """``(family, sockaddr)`` for an IPv4 or IPv6 literal (no scope), else ``None``."""
    for family, sockaddr in (
        (socket.AF_INET, (host, port)),
        (socket.AF_INET6, (host, port, 0, 0)),
    ):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return family, sockaddr
    return None


def _make_proxy(
    host: str,
    port: int,
    username: Credential | None,
    password: Credential | None,
    remote_dns: bool,
    pipeline: bool = False,
    gssapi: bool = False,
    gssapi_service: str = DEFAULT_GSSAPI_SERVICE,
    gssapi_protection: str | None = None,
) -> Proxy:
    return Proxy(
        host,
        port,
        username=username,
        password=password,
        remote_dns=remote_dns,
        pipeline=pipeline,
        gssapi=gssapi,
        gssapi_service=gssapi_service,
        gssapi_protection=gssapi_protection,
    )


if TYPE_CHECKING:
    #: What the API accepts wherever a proxy is expected.
    ProxyLike = Union[Proxy, str]
else:
    # The aliases are typing objects, so they are made when first asked for
    # (importing typing would add milliseconds to ``import socks5client``):
    # code that uses them at run time gets the same objects as before.
    def __getattr__(name: str) -> object:
        if name not in _ALIASES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from typing import Union

        value = globals()[name] = Union[str, bytes] if name == "Credential" else Union[Proxy, str]
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_ALIASES})

    _ALIASES = ("Credential", "ProxyLike")


@guard_secrets
def proxy_from_args(
    proxy_type: int | Proxy | str | None = None,
    addr: str | None = None,
    port: int | None = None,
    rdns: bool = True,
    username: Credential | None = None,
    password: Credential | None = None,
) -> Proxy | None:
    """Turn PySocks-style ``set_proxy`` arguments into a :class:`Proxy`.

    ``proxy_type`` may also be a :class:`Proxy` or a proxy URL, in which case
    the other arguments must be left out.  All arguments left out mean "no
    proxy" (``None``), as in PySocks.  An empty username and password (what
    ``requests`` passes for a proxy URL without user info) count as left
    out: no authentication.
    """
    rest_given = (
        addr is not None
        or port is not None
        or not (_blank(username) and _blank(password))
        or not rdns
    )
    if isinstance(proxy_type, (Proxy, str)):
        if rest_given:
            raise ValueError("give either a Proxy/URL or separate proxy arguments, not both")
        return proxy_type if isinstance(proxy_type, Proxy) else Proxy.from_url(proxy_type)
    if proxy_type is None:
        if rest_given:
            raise ValueError("proxy_type is required when a proxy address is given")
        return None
    if isinstance(proxy_type, bool) or not isinstance(proxy_type, int):
        raise TypeError(
            f"proxy_type must be SOCKS5, a Proxy or a URL, not {type(proxy_type).__name__}"
        )
    if proxy_type != SOCKS5:
        names = {SOCKS4: "SOCKS4", HTTP: "HTTP"}
        name = names.get(proxy_type, f"proxy type {proxy_type}")
        raise ValueError(f"{name} proxies are not supported; socks5client speaks SOCKS5 only")
    if addr is None:
        raise ValueError("a SOCKS5 proxy needs an address")
    return Proxy(
        addr,
        DEFAULT_PORT if port is None else port,
        username=username,
        password=password,
        remote_dns=rdns,
    )


_default_lock = _thread.allocate_lock()  # threading.Lock(), without importing threading
_default_proxy: Proxy | None = None


def _after_fork_in_child() -> None:
    # Only the forking thread lives on in a forked child: a lock another
    # thread held at the fork would stay held for ever.
    global _default_lock
    _default_lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: socks5client.socksocket, once sock.py has made it (see _adopt_class_setting).
_socket_class: Any = None
#: What its ``default_proxy`` attribute held when last read (_NOT_SET: nothing).
_NOT_SET: Any = object()
_adopted_class_setting: Any = _NOT_SET


@guard_secrets
def set_default_proxy(
    proxy_type: int | Proxy | str | None = None,
    addr: str | None = None,
    port: int | None = None,
    rdns: bool = True,
    username: Credential | None = None,
    password: Credential | None = None,
) -> None:
    """Set the proxy used by every socksocket that has none of its own.

    Takes the same arguments as :meth:`socksocket.set_proxy`; called with no
    arguments it removes the default, and such sockets connect directly.
    """
    global _default_proxy, _adopted_class_setting
    proxy = proxy_from_args(proxy_type, addr, port, rdns, username, password)
    cls = _socket_class
    with _default_lock:
        _default_proxy = proxy
        if cls is not None:
            # Later than whatever socksocket.default_proxy holds now: the
            # attribute goes, so that any later assignment, even of the
            # same object again, is seen as one.
            if "default_proxy" in cls.__dict__:
                delattr(cls, "default_proxy")
            _adopted_class_setting = _NOT_SET


@guard_secrets
def _adopt_class_setting(cls: Any) -> None:
    """Make ``socksocket.default_proxy = value``, which PySocks code writes, the default.

    PySocks keeps its default in that class attribute, and code written for
    it (``import socks5client as socks`` included) assigns it directly
    rather than calling ``set_default_proxy``.  Nothing can run when a
    class attribute is assigned, so the value is taken when the default is
    next read; left unread, a proxy set that way would leave connections
    direct.  Whichever was done last wins: a later ``set_default_proxy``
    call, or a new value assigned to the attribute.
    """
    global _adopted_class_setting, _default_proxy
    value = cls.__dict__.get("default_proxy", _NOT_SET)
    if value is _NOT_SET:  # deleted again: the default stays as it is
        _adopted_class_setting = value
        return
    if value is None or (isinstance(value, (tuple, list)) and tuple(value) == (None,) * 6):
        proxy = None
    elif isinstance(value, (tuple, list)):
        proxy = proxy_from_args(*value)  # SOCKS4 and HTTP raise, at every read
    else:
        proxy = proxy_from_args(value)
    with _default_lock:
        _default_proxy = proxy
        _adopted_class_setting = value


def get_default_proxy() -> Proxy | None:
    """The process-wide default proxy, or ``None``."""
    cls = _socket_class
    # (No local holds the value: it may carry a password, and an error
    # raised for it passes through this frame.)
    if cls is not None and cls.__dict__.get("default_proxy", _NOT_SET) is not (
        _adopted_class_setting
    ):
        _adopt_class_setting(cls)
    return _default_proxy
