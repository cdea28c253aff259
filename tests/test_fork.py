"""A child forked while another thread of the parent holds one of the library's locks.

Only the forking thread lives on in a forked child (``os.fork``,
``multiprocessing``'s ``fork`` start method): a lock another thread held at
the fork stays held in the child for ever unless the library makes it anew
there.  Each test holds a lock from a helper thread, forks, and has the
child do what takes that lock.  The child has a watchdog (it dumps its
stack and exits 1); the parent kills it by PID if it outlives the watchdog.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from dns_recorder import Resolver, install_recorder

import socks5client
from socks5client import _synthetic, proxy, sock, udp

from server import SocksServer

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a multi-threaded process may deadlock
    # the child: that is the very case these tests make safe.
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning"),
]

# The module (the package's attribute ``patch`` is the function).
patch_module = importlib.import_module("socks5client.patch")

#: How long a child may take before its watchdog ends it.
CHILD_TIMEOUT = 10.0


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    rec = install_recorder(monkeypatch)
    # Names the tests use for proxied lookups: any real lookup of one fails.
    rec.forbidden = {"child.example", "before-fork.example", "half.example"}
    yield rec
    socks5client.unpatch()


@contextlib.contextmanager
def held_by_another_thread(lock: Any) -> Iterator[None]:
    """``lock`` held by a helper thread for the duration of the block."""
    taken = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(5), "the helper thread could not take the lock"
    try:
        yield
    finally:
        release.set()
        holder.join(5)


def run_in_forked_child(body: Callable[[], None]) -> None:
    """Fork; the child runs ``body`` and must exit 0 within CHILD_TIMEOUT."""
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 1
        try:
            faulthandler.dump_traceback_later(CHILD_TIMEOUT, exit=True)
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung (killed)")
        time.sleep(0.02)
    assert os.WIFEXITED(status), f"the forked child died: status {status}"
    assert os.WEXITSTATUS(status) == 0, "the forked child failed or hung (see its stderr)"


def url(server: SocksServer) -> str:
    return f"socks5h://127.0.0.1:{server.port}"


# -- the synthetic-address table ---------------------------------------------------


def test_child_forked_while_the_synthetic_table_is_locked_resolves_and_connects(
    socks_server: SocksServer, echo_server: tuple[str, int], resolver: Resolver
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    # Handed out before the fork: the child goes on with the parent's table.
    address = socket.gethostbyname("localhost")
    assert _synthetic.is_synthetic(address)

    def child() -> None:
        infos = socket.getaddrinfo("child.example", 443, type=socket.SOCK_STREAM)
        assert _synthetic.name_for(infos[0][4][0]) == "child.example"
        with socket.create_connection((address, echo_server[1]), timeout=5) as s:
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"

    with held_by_another_thread(_synthetic._lock):
        run_in_forked_child(child)
    assert [r.dst_addr for r in socks_server.records] == ["localhost"]


def test_child_forked_in_the_middle_of_a_table_update_gets_a_whole_table(
    socks_server: SocksServer, resolver: Resolver
) -> None:
    socks5client.patch(url(socks_server), no_proxy="")
    kept = socket.gethostbyname("before-fork.example")
    number = _synthetic._next
    with held_by_another_thread(_synthetic._lock):
        # What a thread leaves when the fork stops it between entering a
        # name and entering its number (done here for it, lock held).
        _synthetic._by_name["half.example"] = number
        _synthetic._next += 1

        def child() -> None:
            address = socket.gethostbyname("half.example")
            assert _synthetic.name_for(address) == "half.example"
            assert _synthetic.name_for(kept) == "before-fork.example"

        run_in_forked_child(child)


def test_lookups_bind_the_synthetic_module_itself_after_the_first(
    socks_server: SocksServer, resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Later calls then never enter the import system, whose locks a fork
    # can leave held in the child.
    monkeypatch.setattr(patch_module, "_synthetic", patch_module._LazySynthetic())
    socks5client.patch(url(socks_server), no_proxy="")
    socket.getaddrinfo("child.example", 80)
    assert patch_module._synthetic is _synthetic


# -- the other module-level locks ----------------------------------------------------


def _unpatch_and_patch_again() -> None:
    socks5client.unpatch()
    assert not socks5client.is_patched()
    socks5client.patch("socks5h://127.0.0.1:9", no_proxy="")


def _look_up_a_direct_name() -> None:
    # Direct by the default no_proxy: its addresses are remembered.
    assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)


def _set_the_default_proxy() -> None:
    socks5client.set_default_proxy("socks5h://127.0.0.1:9")
    socks5client.set_default_proxy()


def _make_a_udp_socket_of_a_new_subclass() -> None:
    class Sub(socks5client.socksocket):
        pass

    Sub(socket.AF_INET, socket.SOCK_DGRAM).close()


def _dup_a_proxied_udp_socket() -> None:
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy("socks5h://127.0.0.1:9")
        s.dup().close()


def _install_the_pysocks_stand_in() -> None:
    from socks5client import compat

    compat.install_as_pysocks()
    compat.uninstall_as_pysocks()


@pytest.mark.parametrize(
    ("lock", "action"),
    [
        pytest.param(lambda: patch_module._lock, _unpatch_and_patch_again, id="patch"),
        pytest.param(
            lambda: patch_module._active._direct_lock, _look_up_a_direct_name, id="direct"
        ),
        pytest.param(lambda: proxy._default_lock, _set_the_default_proxy, id="default-proxy"),
        pytest.param(
            lambda: sock._variant_classes_lock,
            _make_a_udp_socket_of_a_new_subclass,
            id="variant-classes",
        ),
        pytest.param(lambda: udp._shared_lock, _dup_a_proxied_udp_socket, id="udp-shared"),
        pytest.param(
            lambda: importlib.import_module("socks5client._asyncio_patch")._lock,
            _unpatch_and_patch_again,
            id="asyncio-hooks",
        ),
        pytest.param(
            lambda: importlib.import_module("socks5client.compat")._lock,
            _install_the_pysocks_stand_in,
            id="pysocks-stand-in",
        ),
    ],
)
def test_child_forked_while_a_module_lock_is_held_does_not_hang(
    lock: Callable[[], Any], action: Callable[[], None], resolver: Resolver
) -> None:
    socks5client.patch("socks5h://127.0.0.1:9")
    with held_by_another_thread(lock()):
        run_in_forked_child(action)


def test_child_forked_while_udp_locks_are_held_uses_an_inherited_udp_socket(
    socks_server: SocksServer, udp_echo_server: Any
) -> None:
    # The association of a socket the child inherited was being opened by
    # another thread (its lock held), and another thread was adopting one.
    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(url(socks_server))
        s.settimeout(5)
        share = s._join(create=True)
        assert share is not None

        def child() -> None:
            s.sendto(b"ping", udp_echo_server.address)
            assert s.recvfrom(10)[0] == b"ping"

        with held_by_another_thread(share.lock), held_by_another_thread(udp._adopt_lock):
            run_in_forked_child(child)
