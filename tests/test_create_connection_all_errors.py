"""create_connection(..., all_errors=True) fails as socket.create_connection does.

Python 3.11's ``socket.create_connection(all_errors=True)`` raises
``ExceptionGroup("create_connection failed", errors)`` once every attempt
has failed, even after a single attempt; errors of the lookup that comes
before the attempts are raised as they are.  Through a proxy the attempts
are the proxy's addresses.  Loopback only: a closed port for the proxy, the
reference server for a refusal.
"""

from __future__ import annotations

import builtins
import socket
import sys
from typing import Any

import pytest
from dns_recorder import install_recorder

import socks5client
from socks5client import errors, sock

from server import SocksServer

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="all_errors is 3.11+")


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def stdlib_group(address: tuple[str, int]) -> Any:
    """What the unpatched stdlib raises for ``address`` with all_errors=True."""
    with pytest.raises(builtins.ExceptionGroup) as info:
        socket.create_connection(address, timeout=5, all_errors=True)
    return info.value


def test_an_unreachable_proxy_of_one_address_is_a_group_of_one() -> None:
    port = closed_port()
    reference = stdlib_group(("127.0.0.1", port))
    proxy = f"socks5h://127.0.0.1:{port}"
    with pytest.raises(builtins.ExceptionGroup) as info:
        socks5client.create_connection(("localhost", 80), 5, proxy=proxy, all_errors=True)
    group = info.value
    assert type(group) is type(reference)
    assert group.message == reference.message == "create_connection failed"
    assert len(group.exceptions) == 1
    assert isinstance(group.exceptions[0], errors.ProxyConnectionError)
    # Without all_errors: the error itself, as before.
    with pytest.raises(errors.ProxyConnectionError):
        socks5client.create_connection(("localhost", 80), 5, proxy=proxy)


def test_an_unreachable_proxy_groups_the_error_of_each_of_its_addresses() -> None:
    port = closed_port()
    attempts = socket.getaddrinfo("localhost", port, 0, socket.SOCK_STREAM)
    with pytest.raises(builtins.ExceptionGroup) as info:
        socks5client.create_connection(
            ("localhost", 80), 5, proxy=f"socks5h://localhost:{port}", all_errors=True
        )
    assert len(info.value.exceptions) == len(attempts)
    assert all(isinstance(e, errors.ProxyConnectionError) for e in info.value.exceptions)


def test_a_refusal_by_the_proxy_is_a_group_too(socks_server: SocksServer) -> None:
    # The proxy answered (connection refused at the destination): raised at
    # once, without trying the proxy's other addresses, but still grouped.
    proxy = f"socks5h://127.0.0.1:{socks_server.port}"
    with pytest.raises(builtins.ExceptionGroup) as info:
        socks5client.create_connection(
            ("127.0.0.1", closed_port()), 5, proxy=proxy, all_errors=True
        )
    assert info.value.message == "create_connection failed"
    (refusal,) = info.value.exceptions
    assert isinstance(refusal, errors.SOCKS5ConnectionRefusedError)
    # A handler written for the stdlib's group finds it.
    assert info.value.subgroup(ConnectionRefusedError) is not None
    assert socks_server.connections == 1


def test_under_patch_socket_create_connection_raises_the_group(
    socks_server: SocksServer,
) -> None:
    port = closed_port()
    socks5client.patch(f"socks5h://127.0.0.1:{port}", no_proxy="")
    with pytest.raises(builtins.ExceptionGroup) as info:
        socket.create_connection(("localhost", 80), timeout=5, all_errors=True)
    assert info.value.message == "create_connection failed"
    assert [type(e) for e in info.value.exceptions] == [errors.ProxyConnectionError]
    socks5client.unpatch()
    socks5client.patch(f"socks5h://127.0.0.1:{socks_server.port}", no_proxy="")
    with pytest.raises(builtins.ExceptionGroup) as info:
        socket.create_connection(("localhost", closed_port()), timeout=5, all_errors=True)
    assert [type(e) for e in info.value.exceptions] == [errors.SOCKS5ConnectionRefusedError]


def test_a_failed_lookup_of_the_destination_is_not_grouped(
    socks_server: SocksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stdlib looks the destination up before any attempt and raises its
    # gaierror as it is; so does socks5://, which looks it up here.  The
    # recorder refuses the name before the real resolver sees it.
    resolver = install_recorder(monkeypatch)
    resolver.forbidden = {"nowhere.example"}
    with pytest.raises(socket.gaierror):
        socket.create_connection(("nowhere.example", 80), timeout=5, all_errors=True)
    with pytest.raises(socket.gaierror):
        socks5client.create_connection(
            ("nowhere.example", 80),
            5,
            proxy=f"socks5://127.0.0.1:{socks_server.port}",
            all_errors=True,
        )
    assert socks_server.connections == 0


def test_without_a_proxy_the_last_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # socket.create_connection raises the last attempt's error (the group
    # with all_errors); so does the direct path, for both addresses here.
    port = closed_port()
    attempts = [
        (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", port)),
        (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", port)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: attempts)
    raised: list[OSError] = []

    class Recording(socket.socket):
        def connect(self, address: Any) -> None:
            try:
                super().connect(address)
            except OSError as exc:
                raised.append(exc)
                raise

    monkeypatch.setattr(sock, "PlainSocket", Recording)
    with pytest.raises(ConnectionRefusedError) as info:
        socks5client.create_connection(("127.0.0.1", port), 5)
    assert len(raised) == 2 and info.value is raised[-1]
    raised.clear()
    with pytest.raises(builtins.ExceptionGroup) as group:
        socks5client.create_connection(("127.0.0.1", port), 5, all_errors=True)
    assert list(group.value.exceptions) == raised
