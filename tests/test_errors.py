"""The exception tree: hierarchy, errno, args, socket_err, pickling, REP mapping."""

from __future__ import annotations

import errno
import pickle
import socket

import pytest

from socks5client import errors


def test_everything_is_an_oserror_under_proxy_error() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.ProxyError)
            assert issubclass(obj, OSError)


def test_timeouts_are_timeout_errors() -> None:
    for cls in (errors.ProxyTimeoutError, errors.ProxyConnectionTimeoutError):
        assert issubclass(cls, TimeoutError)
        assert issubclass(cls, socket.timeout)
    assert issubclass(errors.ProxyTimeoutError, errors.GeneralProxyError)
    assert issubclass(errors.ProxyConnectionTimeoutError, errors.ProxyConnectionError)


def test_protocol_error_is_a_general_proxy_error() -> None:
    assert issubclass(errors.ProxyProtocolError, errors.GeneralProxyError)


@pytest.mark.parametrize(
    ("code", "cls", "err"),
    [
        (1, errors.SOCKS5GeneralFailureError, errno.EIO),
        (2, errors.SOCKS5ConnectionNotAllowedError, errno.EACCES),
        (3, errors.SOCKS5NetworkUnreachableError, errno.ENETUNREACH),
        (4, errors.SOCKS5HostUnreachableError, errno.EHOSTUNREACH),
        (5, errors.SOCKS5ConnectionRefusedError, errno.ECONNREFUSED),
        (6, errors.SOCKS5TTLExpiredError, errno.ETIMEDOUT),
        (7, errors.SOCKS5CommandNotSupportedError, errno.EOPNOTSUPP),
        (8, errors.SOCKS5AddressTypeNotSupportedError, errno.EAFNOSUPPORT),
        (9, errors.SOCKS5UnassignedReplyError, errno.EIO),
        (255, errors.SOCKS5UnassignedReplyError, errno.EIO),
    ],
)
def test_reply_codes_map_to_classes(code: int, cls: type[errors.SOCKS5Error], err: int) -> None:
    exc = errors.error_for_reply_code(code, "CONNECT to example.com:80")
    assert type(exc) is cls
    assert exc.reply_code == code
    assert exc.errno == err
    assert exc.args == (err, str(exc))
    assert "example.com:80" in str(exc)
    assert f"reply code {code}" in str(exc)
    assert exc.socket_err is None


def test_refused_is_also_a_connection_refused_error() -> None:
    assert isinstance(errors.error_for_reply_code(5, "x"), ConnectionRefusedError)


def test_socket_err_and_errno_come_from_the_cause() -> None:
    cause = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    exc = errors.GeneralProxyError("lost the proxy", cause)
    assert exc.socket_err is cause
    assert exc.errno == errno.ECONNRESET
    assert str(exc) == "lost the proxy: [Errno 104] Connection reset by peer"
    assert exc.msg == str(exc)


def test_errors_pickle_with_their_attributes() -> None:
    exc = errors.error_for_reply_code(4, "CONNECT to h:1")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.SOCKS5HostUnreachableError
    assert (back.errno, str(back), back.reply_code) == (exc.errno, str(exc), 4)
    cause = errors.ProxyConnectionError("no proxy", ConnectionRefusedError(111, "refused"))
    back2 = pickle.loads(pickle.dumps(cause))
    assert str(back2) == str(cause)
    assert isinstance(back2.socket_err, ConnectionRefusedError)
