"""asyncio under :func:`socks5client.patch`: event loop methods that reach the network.

The socket-module patch alone already routes asyncio (its loops make their
sockets with ``socket.socket`` and resolve with ``socket.getaddrinfo``), but
a proxied socket's ``connect()`` inside ``loop.sock_connect`` can only run
the handshake *blocking*: returning EINPROGRESS before the proxy's reply
would let the loop believe the tunnel open.  And uvloop resolves and
connects in libuv, past the socket module altogether.  So while patched,
these loop methods are replaced on their classes:

* ``sock_connect`` (``BaseSelectorEventLoop``, ``uvloop.Loop``): a proxied
  socket (a ``socksocket``, which under the patch is every TCP socket made
  with ``socket.socket``) runs its handshake with
  :func:`socks5client.asyncio.connect`, on the loop, never blocking it;
  other sockets and ``no_proxy`` destinations go to the original;
* ``getaddrinfo`` (``BaseEventLoop``, ``uvloop.Loop``): a proxied name gets
  its synthetic address at once, with no executor and no DNS; other names,
  and lookups with ``AI_PASSIVE`` (an address to listen on, as bind()
  resolves it), go through the patched ``socket.getaddrinfo`` in the executor, which
  remembers the addresses of ``no_proxy`` names as the blocking patch does;
* ``create_connection`` (``BaseEventLoop``): only the TLS name of a
  non-ASCII host, the IDNA 2008 form reached (it resolves and connects
  through the two above);
* ``create_connection`` (``uvloop.Loop``): a proxied host gets a tunnel from
  :mod:`socks5client.asyncio`, handed to the original as ``sock=``; a
  direct one goes to the original in the form ``no_proxy`` judged (see
  ``patch._direct_name``), which libuv then looks up;
* ``getnameinfo`` (``uvloop.Loop`` only): the patched
  ``socket.getnameinfo`` in the executor, as the default loop calls it;
  libuv's own would make reverse DNS queries for proxied addresses;
* ``create_datagram_endpoint`` (``uvloop.Loop`` only): libuv sends the
  datagrams itself, past any Python ``sendto``, so under ``patch(udp=True)``
  an endpoint that could reach beyond this machine is refused
  (``EOPNOTSUPP``, pointing to :func:`socks5client.asyncio.open_udp`)
  instead of sending around the proxy.  libuv also resolves ``remote_addr``
  itself, so with remote DNS a proxied name there is refused
  (``ENETUNREACH``) rather than looked up, and a direct one is given in
  the form ``no_proxy`` judged.  The default loop's
  endpoints resolve with the hooked ``getaddrinfo`` and send through the
  patched socket's own ``sendto``, and need no hook.

Classes are patched, not loop instances, so loops made before or after
``patch()`` are covered alike.  ``asyncio`` and ``uvloop`` are not imported
for this: if they are not loaded yet, an import watcher on
``sys.meta_path`` patches them as soon as they are.  :func:`uninstall`
puts back exactly what was there: the original function, or nothing where
the class only inherited one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import threading
from typing import Any, Callable

__all__ = ["install", "uninstall"]

_MISSING = object()
_lock = threading.RLock()


def _after_fork_in_child() -> None:
    # A child forked while another thread was in install()/uninstall()
    # would wait for ever on a lock that thread held.
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)

#: (class, attribute, what the class's own __dict__ had, or _MISSING).
_replaced: list[tuple[type, str, Any]] = []
_watcher: _ImportWatcher | None = None


def _patch_module() -> Any:
    """``socks5client.patch``, the module (the package's attribute is the function)."""
    return sys.modules[__name__.rpartition(".")[0] + ".patch"]


def _active() -> Any:
    return _patch_module()._active


def _proxied_route(sock: Any, address: Any) -> tuple[Any, Any] | None:
    """``(proxy, target)`` when ``sock`` must reach ``address`` through a proxy, else None."""
    from .patch import _PatchedSocket
    from .sock import socksocket

    if not isinstance(sock, socksocket) or not sock._stream or sock._udp_variant:
        return None
    if isinstance(sock, _PatchedSocket):
        proxy, target = sock._route(address)
    else:
        proxy, target = sock._effective_proxy(), address
    if proxy is None:
        return None
    return proxy, target


def _hook_sock_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    async def sock_connect(self: Any, sock: Any, address: Any) -> None:
        route = _proxied_route(sock, address)
        if route is None:
            return await original(self, sock, address)  # type: ignore[no-any-return]
        from . import asyncio as aio
        from .patch import _PatchedSocket

        proxy, target = route
        # No timeout is given to sock_connect: as for a blocking socket made
        # with the defaults, socket.getdefaulttimeout() bounds the handshake
        # (the caller's own asyncio timeouts cancel it cleanly too).
        await aio.connect(sock, target, proxy, timeout=socket.getdefaulttimeout())
        if isinstance(sock, _PatchedSocket):
            sock._shown_peer(address, target)
        return None

    return functools.wraps(original)(sock_connect)


def _hook_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    async def getaddrinfo(
        self: Any,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        patch = _patch_module()
        active = patch._active
        if active is None:
            return await original(  # type: ignore[no-any-return]
                self, host, port, family=family, type=type, proto=proto, flags=flags
            )
        name = patch._proxied_name(active, host, port)
        if name is not None and not flags & (socket.AI_NUMERICHOST | socket.AI_PASSIVE):
            return patch._synthetic_infos(active, name, port, family, type, proto, flags)  # type: ignore[no-any-return]
        # The patched function: the real resolver, and no_proxy names'
        # addresses remembered, as for the blocking patch (uvloop's own
        # resolver would skip both).  AI_PASSIVE (start_server, create_server)
        # asks for a local address to listen on, looked up here as bind()
        # and the patched socket.getaddrinfo do.
        return await self.run_in_executor(  # type: ignore[no-any-return]
            None, patch._getaddrinfo, host, port, family, type, proto, flags
        )

    return functools.wraps(original)(getaddrinfo)


def _hook_create_connection(original: Callable[..., Any]) -> Callable[..., Any]:
    async def create_connection(
        self: Any,
        protocol_factory: Callable[[], Any],
        host: Any = None,
        port: Any = None,
        *,
        ssl: Any = None,
        server_hostname: str | None = None,
        **kwargs: Any,
    ) -> Any:
        patch = _patch_module()
        active = patch._active
        if active is None or host is None or kwargs.get("sock") is not None:
            return await original(
                self, protocol_factory, host, port, ssl=ssl, server_hostname=server_hostname,
                **kwargs,
            )  # fmt: skip
        target, name = patch._map((host, port))
        shown = str(patch._text(target[0]))
        # As the blocking patch decides: a synthetic address stays proxied,
        # and a direct name reaches libuv in the form no_proxy judged, since
        # uvloop would encode a str in Python's IDNA 2003 form, which can be
        # another domain; a name with no such form raises gaierror there.
        # (Without server_hostname, ssl then checks the certificate for that
        # form too: the name of the server reached.)
        if (name is None and active.direct(shown, target[1])) or active.is_proxy(shown, target[1]):
            return await original(
                self, protocol_factory, patch._direct_name(target[0]), target[1], ssl=ssl,
                server_hostname=server_hostname, **kwargs,
            )  # fmt: skip
        from . import asyncio as aio

        kwargs.pop("sock", None)
        if ssl and not server_hostname:
            # The host asked for, in the form the proxy is asked to connect
            # to: ssl would encode non-ASCII text in IDNA 2003, which can
            # name another domain than the IDNA 2008 form the proxy gets.
            server_hostname = aio._tls_name(str(patch._text(host)))
        return await aio.create_connection(
            protocol_factory,
            shown,
            patch._port_number(target[1], socket.SOCK_STREAM),
            proxy=active.proxy,
            ssl=ssl,
            server_hostname=server_hostname,
            timeout=socket.getdefaulttimeout(),
            **kwargs,
        )

    return functools.wraps(original)(create_connection)


def _hook_tls_name(original: Callable[..., Any]) -> Callable[..., Any]:
    """The default loop's ``create_connection``: only its TLS name needs the patch.

    It connects through the hooked ``getaddrinfo`` and ``sock_connect``, so
    a non-ASCII host is reached in its IDNA 2008 form (through the proxy,
    or direct as ``no_proxy`` judged it), but it hands ``ssl`` the host
    text, which ``ssl`` encodes in IDNA 2003 for SNI and the certificate
    check: another domain than the one reached.  The form reached is
    given instead, as uvloop's hook does.
    """

    async def create_connection(
        self: Any,
        protocol_factory: Callable[[], Any],
        host: Any = None,
        port: Any = None,
        *,
        ssl: Any = None,
        server_hostname: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if ssl and server_hostname is None and isinstance(host, str) and not host.isascii():
            patch = _patch_module()
            active = patch._active
            if active is not None and kwargs.get("sock") is None:
                if active.direct(host, port) or active.is_proxy(host, port):
                    server_hostname = patch._direct_name(host)
                else:
                    from . import asyncio as aio

                    server_hostname = aio._tls_name(host)
        return await original(
            self, protocol_factory, host, port, ssl=ssl, server_hostname=server_hostname,
            **kwargs,
        )  # fmt: skip

    return functools.wraps(original)(create_connection)


def _local_only(address: Any) -> bool:
    """Whether a UDP endpoint bound or connected to ``address`` can only reach this machine."""
    from .sock import _is_loopback

    return isinstance(address, tuple) and bool(address) and _is_loopback(str(address[0]))


def _hook_create_datagram_endpoint(original: Callable[..., Any]) -> Callable[..., Any]:
    async def create_datagram_endpoint(
        self: Any, protocol_factory: Callable[[], Any], *args: Any, **kwargs: Any
    ) -> Any:
        patch = _patch_module()
        active = patch._active
        remote = kwargs.get("remote_addr", args[1] if len(args) > 1 else None)
        if active is not None and isinstance(remote, (tuple, list)) and remote:
            # libuv resolves remote_addr itself, past the patched getaddrinfo,
            # and its endpoints never go through the proxy (see below): a
            # proxied name would be a DNS query here.  Refused as the patched
            # socket's connect() refuses it.
            host = patch._proxied_name(active, remote[0], remote[1] if len(remote) > 1 else None)
            if host is not None:
                import errno

                raise OSError(
                    errno.ENETUNREACH,
                    f"{host!r} is a proxied name, and this uvloop datagram endpoint does"
                    " not go through the proxy; its name is not resolved locally",
                )
            # Looked up by libuv in the form no_proxy judged, not in the
            # IDNA 2003 form uvloop would encode a str in; a name with no
            # such form is refused (gaierror) as patch._direct_name does.
            judged = patch._direct_name(remote[0])
            if judged is not remote[0]:
                remote = type(remote)((judged, *remote[1:]))
                if "remote_addr" in kwargs:
                    kwargs["remote_addr"] = remote
                else:
                    args = (args[0], remote, *args[2:])
        if active is not None and active.udp:
            local = kwargs.get("local_addr", args[0] if args else None)
            sock = kwargs.get("sock")
            if sock is not None:
                with contextlib.suppress(OSError):
                    local = sock.getsockname()
            family = kwargs.get("family", 0)
            unix = family == getattr(socket, "AF_UNIX", None) or (
                sock is not None and sock.family == getattr(socket, "AF_UNIX", None)
            )
            # A socket bound to loopback cannot send beyond this machine;
            # one connected to a destination that goes direct is the
            # patch's own choice.
            safe = (
                unix
                or _local_only(local)
                or (
                    isinstance(remote, tuple)
                    and bool(remote)
                    and active.direct(str(remote[0]), remote[1])
                )
            )
            if not safe:
                import errno

                raise OSError(
                    errno.EOPNOTSUPP,
                    "uvloop sends UDP from libuv, past socks5client.patch(udp=True): this"
                    " datagram endpoint would leave around the proxy; use"
                    " socks5client.asyncio.open_udp() instead",
                )
        return await original(self, protocol_factory, *args, **kwargs)

    return functools.wraps(original)(create_datagram_endpoint)


def _hook_getnameinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    async def getnameinfo(self: Any, sockaddr: Any, flags: int = 0) -> tuple[str, str]:
        patch = _patch_module()
        if patch._active is None:
            return await original(self, sockaddr, flags)  # type: ignore[no-any-return]
        # The patched function, in the executor as the default loop does:
        # a synthetic address gets its name, and a proxied address no
        # reverse DNS query (libuv's own uv_getnameinfo would make one).
        return await self.run_in_executor(  # type: ignore[no-any-return]
            None, patch._getnameinfo, sockaddr, flags
        )

    return functools.wraps(original)(getnameinfo)


_HOOKS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "sock_connect": _hook_sock_connect,
    "getaddrinfo": _hook_getaddrinfo,
    "getnameinfo": _hook_getnameinfo,
    "create_connection": _hook_create_connection,
    "create_datagram_endpoint": _hook_create_datagram_endpoint,
}


def _targets(module_name: str) -> list[tuple[type, str]]:
    """The (class, method) pairs to replace for a loaded module."""
    module = sys.modules.get(module_name)
    if module is None:
        return []
    if getattr(getattr(module, "__spec__", None), "_initializing", False):
        # Another thread is importing it: its classes may not exist yet,
        # and the watcher would not see an import already under way.  Wait
        # for that import (it holds the module's import lock; it needs none
        # of ours, since the watcher is not installed while this runs).
        import importlib

        try:
            module = importlib.import_module(module_name)
        except Exception:
            return []  # that import failed: nothing to patch
    if module_name == "asyncio":
        from asyncio import base_events, selector_events

        return [
            (selector_events.BaseSelectorEventLoop, "sock_connect"),
            (base_events.BaseEventLoop, "getaddrinfo"),
            (base_events.BaseEventLoop, "create_connection"),
        ]
    loop_class = getattr(module, "Loop", None)
    if not isinstance(loop_class, type):
        return []
    # uvloop.Loop is a Python subclass of the Cython loop, so it takes
    # attributes; libuv does its own resolving and connecting.
    return [
        (loop_class, "sock_connect"),
        (loop_class, "getaddrinfo"),
        (loop_class, "getnameinfo"),
        (loop_class, "create_connection"),
        (loop_class, "create_datagram_endpoint"),
    ]


def _install_for(module_name: str) -> None:
    with _lock:
        if _active() is None:
            return
        for cls, name in _targets(module_name):
            if any(c is cls and n == name for c, n, _ in _replaced):
                continue
            own = cls.__dict__.get(name, _MISSING)
            original = getattr(cls, name)
            _replaced.append((cls, name, own))
            # The default loop's create_connection needs only its TLS name
            # (it resolves and connects through the two hooks above).
            default_loop = module_name == "asyncio" and name == "create_connection"
            hook = _hook_tls_name if default_loop else _HOOKS[name]
            setattr(cls, name, hook(original))


class _ImportWatcher:
    """A ``sys.meta_path`` finder that patches asyncio and uvloop once they are imported.

    It finds nothing itself: it asks the other finders for the spec and
    has the loader run the hooks right after the module's own code.
    """

    _WATCHED = frozenset(["asyncio", "uvloop"])

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self._WATCHED or fullname in self._busy:
            return None
        import importlib.util

        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        real_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            # On the loader object itself, for this one import: the spec
            # and module keep the real loader.
            try:
                real_exec(module)
            finally:
                loader.__dict__.pop("exec_module", None)
            sys.modules.setdefault(fullname, module)
            _install_for(fullname)

        loader.exec_module = exec_module
        return spec


def install() -> None:
    """Patch the loaded loop classes, and watch for those not imported yet (called by patch())."""
    global _watcher
    with _lock:
        _install_for("asyncio")
        _install_for("uvloop")
        if _watcher is None and not all(m in sys.modules for m in _ImportWatcher._WATCHED):
            _watcher = _ImportWatcher()
            sys.meta_path.insert(0, _watcher)


def uninstall() -> None:
    """Put back exactly what :func:`install` replaced (called by unpatch())."""
    global _watcher
    with _lock:
        if _watcher is not None:
            with contextlib.suppress(ValueError):  # someone else took it out
                sys.meta_path.remove(_watcher)
            _watcher = None
        while _replaced:
            cls, name, own = _replaced.pop()
            if own is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, own)
