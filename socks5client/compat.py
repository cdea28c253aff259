"""socks5client in PySocks' place: ``install_as_pysocks()`` makes ``socks`` and ``sockshandler``.

``urllib3.contrib.socks`` (and so ``requests`` with ``socks5h://`` proxies
or ``ALL_PROXY``) is written against PySocks: it does ``import socks`` and
calls ``socks.create_connection``.  After :func:`install_as_pysocks` that
import finds socks5client, and PySocks need not be installed::

    import socks5client.compat

    socks5client.compat.install_as_pysocks()  # before ``import requests``

    import requests

    requests.get("https://example.com", proxies={"https": "socks5h://127.0.0.1:1080"})

The two modules are thin module objects built here, not socks5client
itself, because a few of PySocks' behaviours differ from socks5client's own
and code written against PySocks depends on them:

* ``socks.create_connection`` has PySocks' signature and defaults:
  ``timeout=None`` (or anything that is not a number) leaves the socket
  with the default timeout, ``proxy_port=None`` means 1080, brackets
  around an IPv6 destination are dropped, and without ``proxy_type`` the
  default proxy is used as it is (``proxy_rdns`` is then ignored);
* a proxy setting socksocket refuses -- a SOCKS4 or HTTP proxy type above
  all, which is what ``socks4://`` and ``socks4a://`` URLs ask for -- is
  raised by ``create_connection``, ``set_default_proxy`` and
  ``wrap_module`` as a :class:`ProxyConfigurationError`: a PySocks
  ``GeneralProxyError`` (an ``OSError``, so urllib3 reports it as a failed
  connection) that is also socks5client's ``ValueError``;
* ``setdefaultproxy`` takes PySocks' ``proxytype=`` spelling;
* ``socks.socket`` is the standard ``socket`` module, as in PySocks, so
  ``socks.socket.getaddrinfo`` can be monkeypatched, and socks5client
  looks the proxy's name up through it;
* ``socks.socksocket`` is a subclass of ``socks5client.socksocket`` that
  adds PySocks' class attribute ``default_proxy``: reading it gives the
  default proxy in PySocks' 6-tuple form (or ``None``), assigning a tuple
  sets the default as ``set_default_proxy`` does, ``None`` removes it.
  Every socks5client socket passes ``isinstance(sock, socks.socksocket)``.

Everything else is socks5client's own object: the error classes are
socks5client's, so an ``except socks.ProxyError`` clause catches what
socks5client raises anywhere.  ``socks.get_default_proxy()`` returns a
:class:`~socks5client.Proxy` (or ``None``) rather than PySocks' 6-tuple,
which would show the password in its ``repr`` (``default_proxy``'s tuple
masks it).  ``sockshandler.SocksiPyHandler`` is
:class:`socks5client.contrib.urllib.SocksiPyHandler`, imported on first use.

Failed authentication reads "SOCKS5 authentication failed: ...", PySocks'
words, in socks5client's messages everywhere, so code that looks for them
keeps finding them.
"""

from __future__ import annotations

import base64
import copy
import errno
import importlib
import importlib.machinery
import os
import socket
import sys
import threading
from collections.abc import Iterable, MutableMapping
from types import ModuleType
from typing import Any

from . import __version__
from ._secret import guard_secrets
from .errors import (
    GeneralProxyError,
    HTTPError,
    ProxyConnectionError,
    ProxyError,
    SOCKS4Error,
    SOCKS5AuthError,
    SOCKS5Error,
)
from .patch import wrap_module as _wrap_module
from .proxy import (
    HTTP,
    PROXY_TYPE_HTTP,
    PROXY_TYPE_SOCKS4,
    PROXY_TYPE_SOCKS5,
    SOCKS4,
    SOCKS5,
    Credential,
    Proxy,
    get_default_proxy,
    proxy_from_args,
)
from .proxy import set_default_proxy as _set_default_proxy
from .sock import create_connection as _create_connection
from .sock import socksocket as _socksocket

__all__ = ["ProxyConfigurationError", "install_as_pysocks", "uninstall_as_pysocks"]


class ProxyConfigurationError(GeneralProxyError, ValueError):
    """A proxy setting that socks5client refuses, given through the ``socks`` stand-in.

    A :class:`~socks5client.GeneralProxyError`, hence an ``OSError``, as
    PySocks reports proxy trouble (``urllib3`` turns it into a failed
    connection); and a ``ValueError``, as socks5client itself reports a bad
    setting.
    """

    default_errno = errno.EINVAL


_UNSUPPORTED = {SOCKS4: "SOCKS4", HTTP: "HTTP"}


@guard_secrets
def _pysocks_proxy(
    proxy_type: Any,
    addr: str | None,
    port: int | None,
    rdns: bool,
    username: Credential | None,
    password: Credential | None,
) -> Proxy | None:
    """PySocks' proxy arguments as a :class:`Proxy`, or :class:`ProxyConfigurationError`."""
    kind = _UNSUPPORTED.get(proxy_type) if type(proxy_type) is int else None
    if kind is not None:
        problem = (
            f"{kind} proxies are not supported: the 'socks' module is socks5client"
            " (installed by socks5client.compat.install_as_pysocks()), which speaks SOCKS5"
            " only; with requests or urllib3, use a socks5h:// proxy URL"
        )
    else:
        try:
            return proxy_from_args(proxy_type, addr, port, rdns, username, password)
        except ValueError as exc:
            # Our own validation message: it names the problem, never a value.
            problem = str(exc)
    # Raised outside the except block: nothing chained to it.
    raise ProxyConfigurationError(problem)


@guard_secrets
def create_connection(
    dest_pair: tuple[Any, ...],
    timeout: Any = None,
    source_address: tuple[str, int] | None = None,
    proxy_type: int | None = None,
    proxy_addr: str | None = None,
    proxy_port: int | None = None,
    proxy_rdns: bool = True,
    proxy_username: Credential | None = None,
    proxy_password: Credential | None = None,
    socket_options: list[tuple[int, int, int | bytes]] | None = None,
) -> socket.socket:
    """PySocks' ``create_connection``, run by :func:`socks5client.create_connection`.

    Arguments in PySocks' order and with its defaults: a ``timeout`` that is
    not a number leaves the default timeout; ``proxy_port=None`` is 1080;
    no ``proxy_type`` (nor address, port or credentials) means the default
    proxy, as it was set, or a direct connection if there is none.
    """
    if not isinstance(timeout, (int, float)):
        timeout = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
    address: Any = dest_pair
    host = address[0] if isinstance(address, tuple) and address else None
    if isinstance(host, str) and host.startswith("["):
        address = (host.strip("[]"), *address[1:])
    if (
        proxy_type is None
        and proxy_addr is None
        and proxy_port is None
        and not proxy_username
        and not proxy_password
    ):
        return _create_connection(address, timeout, source_address, socket_options=socket_options)
    proxy = _pysocks_proxy(
        proxy_type, proxy_addr, proxy_port, proxy_rdns, proxy_username, proxy_password
    )
    # The credentials live on in ``proxy`` (masked in its repr) only.
    del proxy_username, proxy_password
    return _create_connection(
        address, timeout, source_address, socket_options=socket_options, proxy=proxy
    )


@guard_secrets
def set_default_proxy(
    proxy_type: Any = None,
    addr: str | None = None,
    port: int | None = None,
    rdns: bool = True,
    username: Credential | None = None,
    password: Credential | None = None,
) -> None:
    """PySocks' ``set_default_proxy``; SOCKS4 and HTTP are refused at once.

    With no arguments the default proxy is removed.
    """
    _set_default_proxy(_pysocks_proxy(proxy_type, addr, port, rdns, username, password))


@guard_secrets
def setdefaultproxy(*args: Any, **kwargs: Any) -> None:
    """PySocks' older name for :func:`set_default_proxy`, which also takes ``proxytype=``."""
    if "proxytype" in kwargs:
        kwargs["proxy_type"] = kwargs.pop("proxytype")
    set_default_proxy(*args, **kwargs)


def wrap_module(module: ModuleType) -> None:
    """:func:`socks5client.wrap_module`, raising PySocks' error class without a default proxy."""
    if get_default_proxy() is None:
        raise ProxyConfigurationError(
            "no default proxy is set; call socks.set_default_proxy() first"
        )
    _wrap_module(module)


class _PySocksSetting(tuple[Any, ...]):
    """The default proxy in PySocks' 6-tuple form, with the password masked in its ``repr``.

    ``(proxy_type, addr, port, rdns, username, password)``, the credentials
    as bytes, as PySocks' ``set_default_proxy`` stores them.  It also keeps
    the :class:`Proxy` it was made from, so that code which saves
    ``socksocket.default_proxy`` and assigns it back restores that proxy
    exactly, options the tuple cannot express (``pipeline``, GSS-API)
    included.
    """

    proxy: Proxy

    def __repr__(self) -> str:
        shown = (*self[:5], "***" if self[5] is not None else None)
        return repr(shown)

    __str__ = __repr__


def _encoded(credential: Credential | None) -> bytes | None:
    if not credential:
        return None
    return credential.encode() if isinstance(credential, str) else bytes(credential)


class _PySocksSocketType(type):
    """The class of ``socks.socksocket``: gives it PySocks' class attribute ``default_proxy``.

    PySocks keeps the process default in ``socksocket.default_proxy``
    (``set_default_proxy()`` only assigns it), and code written for it
    reads, sets and restores that attribute directly.  A property here, on
    the metaclass, sees those assignments: reading gives the default in
    PySocks' tuple form, assigning a tuple sets it as
    :func:`set_default_proxy` does (SOCKS4 and HTTP refused), and ``None``
    turns it off.  socks5client's default stays the one setting, so both
    spellings always agree.
    """

    @property
    def default_proxy(cls) -> _PySocksSetting | None:
        proxy = get_default_proxy()
        if proxy is None:
            return None
        setting = _PySocksSetting(
            (
                SOCKS5,
                proxy.host,
                proxy.port,
                proxy.remote_dns,
                _encoded(proxy.username),
                _encoded(proxy.password),
            )
        )
        setting.proxy = proxy
        return setting

    @default_proxy.setter
    @guard_secrets
    def default_proxy(cls, value: Any) -> None:
        if isinstance(value, _PySocksSetting):
            _set_default_proxy(value.proxy)
        elif isinstance(value, (tuple, list)):
            # PySocks' "no proxy" tuple has rdns None, which is refused with an address.
            set_default_proxy(*(value if tuple(value) != (None,) * 6 else ()))
        else:
            # None (no default), or socks5client's Proxy or URL.
            set_default_proxy(value)

    # Sockets made by socks5client itself (create_connection, socket.socket
    # under patch()) are socks.socksocket objects for code that checks, as
    # every socket PySocks makes is; its variants (UDP...) check as usual.
    def __instancecheck__(cls, instance: Any) -> bool:
        if cls is socksocket:
            return isinstance(instance, _socksocket)
        return super().__instancecheck__(instance)

    def __subclasscheck__(cls, subclass: type) -> bool:
        if cls is socksocket:
            return issubclass(subclass, _socksocket)
        return super().__subclasscheck__(subclass)


# Why a class of its own rather than socks5client.socksocket itself: an
# assignment to a class attribute reaches no code but the metaclass's, and
# socks5client.socksocket keeps ``type`` as its metaclass (a metaclass of
# ours on it would clash with any other a user's subclass mixes in, and
# reading a class attribute in connect() would be a second source of truth
# for the default, besides costing every connection).  Here the attribute
# maps onto socks5client's one default, so reading, assigning and restoring
# it behave as in PySocks, while socks5client.socksocket's connect path is
# untouched.  ``sock.proxy = (...)``, PySocks' instance attribute, needs no
# help: socksocket's own ``proxy`` setter takes it as set_proxy(...).
class socksocket(_socksocket, metaclass=_PySocksSocketType):
    """``socks.socksocket``: socks5client's socksocket, with PySocks' ``default_proxy``."""


def _new_module(name: str, doc: str, attributes: dict[str, Any]) -> ModuleType:
    module = ModuleType(name, doc)
    # A spec, so importlib.util.find_spec(name) answers instead of raising;
    # its origin shows in repr(module).
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, origin=__name__)
    module.__dict__.update(attributes)
    return module


def _missing(module: str, name: str) -> AttributeError:
    return AttributeError(
        f"module {module!r} (socks5client standing in for PySocks) has no attribute {name!r}"
    )


def _socks_getattr(name: str) -> Any:
    raise _missing("socks", name)


_SOCKS = _new_module(
    "socks",
    "socks5client standing in for PySocks (see socks5client.compat).",
    {
        "__version__": __version__,
        "__getattr__": _socks_getattr,
        "PROXY_TYPE_SOCKS4": PROXY_TYPE_SOCKS4,
        "PROXY_TYPE_SOCKS5": PROXY_TYPE_SOCKS5,
        "PROXY_TYPE_HTTP": PROXY_TYPE_HTTP,
        "SOCKS4": SOCKS4,
        "SOCKS5": SOCKS5,
        "HTTP": HTTP,
        "PROXY_TYPES": {"SOCKS4": SOCKS4, "SOCKS5": SOCKS5, "HTTP": HTTP},
        "PRINTABLE_PROXY_TYPES": {SOCKS4: "SOCKS4", SOCKS5: "SOCKS5", HTTP: "HTTP"},
        "ProxyError": ProxyError,
        "GeneralProxyError": GeneralProxyError,
        "ProxyConnectionError": ProxyConnectionError,
        "SOCKS5AuthError": SOCKS5AuthError,
        "SOCKS5Error": SOCKS5Error,
        "SOCKS4Error": SOCKS4Error,
        "HTTPError": HTTPError,
        "socksocket": socksocket,
        "create_connection": create_connection,
        "set_default_proxy": set_default_proxy,
        "setdefaultproxy": setdefaultproxy,
        "get_default_proxy": get_default_proxy,
        "getdefaultproxy": get_default_proxy,
        "wrap_module": wrap_module,
        "wrapmodule": wrap_module,
        "socket": socket,
    },
)

#: What ``sockshandler`` takes from socks5client.contrib.urllib on first use.
_HANDLER_NAMES = frozenset({"SocksiPyHandler"})


def _sockshandler_getattr(name: str) -> Any:
    if name not in _HANDLER_NAMES:
        raise _missing("sockshandler", name)
    # Imported here: urllib.request is not needed until a handler is.
    contrib = importlib.import_module("socks5client.contrib.urllib")
    value = getattr(contrib, name)
    setattr(_SOCKSHANDLER, name, value)
    return value


_SOCKSHANDLER = _new_module(
    "sockshandler",
    "socks5client standing in for PySocks' sockshandler: SocksiPyHandler for urllib.request.",
    {"__getattr__": _sockshandler_getattr, "socks": _SOCKS},
)

_MODULES = {"socks": _SOCKS, "sockshandler": _SOCKSHANDLER}


def _drop_proxy_authorization(
    headers: MutableMapping[str, Any], derived: Iterable[str | None]
) -> bool:
    """Remove a ``Proxy-Authorization`` header equal to one of the ``derived`` values.

    The one rule for both routes into requests (``SOCKSAdapter`` and the
    ``socks`` stand-in under ``urllib3.contrib.socks``): when it follows a
    redirect, requests adds that header, made from the SOCKS proxy URL's
    credentials, and no SOCKS route sends it to an HTTP proxy, so it would
    reach the site itself.  ``derived`` gives the values the proxy
    credentials make; a header with any other value is the caller's own and
    stays.  The name is matched in any case, as HTTP does.  True if removed.
    """
    names = [name for name in headers if name.lower() == "proxy-authorization"]
    if not names:
        return False
    values = {headers[name] for name in names}
    for value in derived:
        if value is not None and value in values:
            for name in names:
                del headers[name]
            return True
    return False


def _basic_authorization(username: Any, password: Any) -> str | None:
    """The ``Proxy-Authorization`` value requests makes from a proxy URL's credentials.

    requests adds it only with both a user name and a password, encoded as
    Latin-1 (``requests.auth._basic_auth_str``); without both, or with
    characters Latin-1 lacks, it adds none, and there is nothing to match.
    """
    if not username or not password:
        return None
    try:
        raw = b":".join(
            part.encode("latin-1") if isinstance(part, str) else bytes(part)
            for part in (username, password)
        )
    except (UnicodeEncodeError, TypeError):
        return None
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _guarded_pool(pool_class: Any) -> Any:
    """``pool_class`` (a urllib3 SOCKS pool) dropping a header made from its proxy credentials."""

    class GuardedPool(pool_class):  # type: ignore[misc]
        def urlopen(
            self,
            method: str,
            url: str,
            body: Any = None,
            headers: Any = None,
            *args: Any,
            **kw: Any,
        ) -> Any:
            options = self.conn_kw.get("_socks_options") or {}
            derived = _basic_authorization(options.get("username"), options.get("password"))
            if headers and derived is not None:
                # A copy: the caller's mapping (requests' request.headers) is theirs.
                headers = copy.copy(headers)
                _drop_proxy_authorization(headers, (derived,))
            # Out of this frame, which is in the traceback of every failure below.
            del options, derived
            return super().urlopen(method, url, body, headers, *args, **kw)

    GuardedPool.__name__ = GuardedPool.__qualname__ = pool_class.__name__
    return GuardedPool


def _guarded_manager(urllib3_socks: ModuleType) -> Any:
    """urllib3's ``SOCKSProxyManager``, with pools that never forward derived proxy credentials.

    requests' ``Session.rebuild_proxies`` adds ``Proxy-Authorization`` for a
    SOCKS proxy URL with credentials as for an HTTP one; urllib3's SOCKS
    pools send it on, through the tunnel, to the site.  requests sends
    through the pool (``conn.urlopen``), not the manager, so the guard is
    on the pools.
    """
    base: Any = urllib3_socks.SOCKSProxyManager
    if getattr(base, "_socks5client_guarded", False):
        return base
    pools = {scheme: _guarded_pool(cls) for scheme, cls in base.pool_classes_by_scheme.items()}

    class SOCKSProxyManager(base):  # type: ignore[misc]
        _socks5client_guarded = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # urllib3 sets this on the instance, from its own class.
            self.pool_classes_by_scheme = pools

    SOCKSProxyManager.__qualname__ = "SOCKSProxyManager"
    return SOCKSProxyManager


_ABSENT: Any = object()


class _Installation:
    """What :func:`install_as_pysocks` changed, so that it can be undone."""

    def __init__(self) -> None:
        self.previous = {name: sys.modules.get(name, _ABSENT) for name in _MODULES}
        #: (object, attribute, value before, value set)
        self.rebound: list[tuple[Any, str, Any, Any]] = []

    def rebind(self, obj: Any, name: str, value: Any) -> None:
        self.rebound.append((obj, name, getattr(obj, name), value))
        setattr(obj, name, value)


_lock = threading.Lock()
_installation: _Installation | None = None


def _after_fork_in_child() -> None:
    # A child forked while another thread was installing the stand-in
    # would wait for ever on a lock that thread held.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def install_as_pysocks() -> ModuleType:
    """Make ``import socks`` and ``import sockshandler`` give socks5client; return ``socks``.

    Opt-in and idempotent.  Call it before ``requests`` or
    ``urllib3.contrib.socks`` is imported: requests imports
    ``urllib3.contrib.socks`` along with itself, and that module imports
    ``socks`` once.  If they were imported first, they are adjusted here:
    an imported ``urllib3.contrib.socks`` gets this ``socks`` in place of
    the one it had (PySocks), and when requests found no SOCKS support
    (PySocks missing) its ``SOCKSProxyManager`` is set to urllib3's, now
    importable.  Other modules that imported PySocks keep it.

    :func:`uninstall_as_pysocks` undoes it.
    """
    global _installation
    with _lock:
        if _installation is None:
            _installation = _Installation()
        sys.modules.update(_MODULES)
        _adopt_consumers(_installation)
        return _SOCKS


def _adopt_consumers(installation: _Installation) -> None:
    """Point urllib3.contrib.socks and an imported requests.adapters at the stand-in.

    urllib3.contrib.socks is imported here if urllib3 is installed, even
    before requests: its ``SOCKSProxyManager`` is replaced with one that
    drops the ``Proxy-Authorization`` header requests derives from the
    proxy URL, and requests takes that class when it is imported.
    """
    urllib3_socks = sys.modules.get("urllib3.contrib.socks")
    if urllib3_socks is not None and getattr(urllib3_socks, "socks", _SOCKS) is not _SOCKS:
        # Its functions read the global ``socks`` at each call.
        installation.rebind(urllib3_socks, "socks", _SOCKS)
    if urllib3_socks is None:
        try:
            urllib3_socks = importlib.import_module("urllib3.contrib.socks")
        except ImportError:
            return
    manager = getattr(urllib3_socks, "SOCKSProxyManager", None)
    if manager is None:
        return
    guarded = _guarded_manager(urllib3_socks)
    if guarded is not manager:
        installation.rebind(urllib3_socks, "SOCKSProxyManager", guarded)
    adapters = sys.modules.get("requests.adapters")
    # requests' own class, its stand-in that raises "Missing dependencies
    # for SOCKS support", or a class from a urllib3.contrib.socks no longer
    # imported.
    if adapters is not None and getattr(adapters, "SOCKSProxyManager", guarded) is not guarded:
        installation.rebind(adapters, "SOCKSProxyManager", guarded)


def uninstall_as_pysocks() -> None:
    """Undo :func:`install_as_pysocks`; without it installed, do nothing.

    The ``socks`` and ``sockshandler`` entries of ``sys.modules`` and what
    install adjusted in urllib3 and requests are put back.  A
    ``urllib3.contrib.socks`` first imported while the stand-in was
    installed is switched to PySocks if PySocks can be imported, and keeps
    socks5client otherwise.  Other modules that imported the stand-in keep
    it, as with any import.
    """
    global _installation
    with _lock:
        installation, _installation = _installation, None
        if installation is None:
            return
        for obj, name, before, current in reversed(installation.rebound):
            if getattr(obj, name, None) is current:
                setattr(obj, name, before)
        for name, module in _MODULES.items():
            if sys.modules.get(name) is not module:
                continue  # replaced since: not ours to change
            previous = installation.previous[name]
            if previous is _ABSENT:
                del sys.modules[name]
            else:
                sys.modules[name] = previous
        adapters = sys.modules.get("requests.adapters")
        manager = getattr(adapters, "SOCKSProxyManager", None)
        if getattr(manager, "_socks5client_guarded", False):
            # requests imported while installed took the guarded class: give
            # it urllib3's, as if it had been imported now.
            adapters.SOCKSProxyManager = manager.__bases__[0]  # type: ignore[union-attr]
        urllib3_socks = sys.modules.get("urllib3.contrib.socks")
        if urllib3_socks is not None and getattr(urllib3_socks, "socks", None) is _SOCKS:
            try:
                pysocks = importlib.import_module("socks")
            except ImportError:
                return
            urllib3_socks.socks = pysocks  # type: ignore[attr-defined]
