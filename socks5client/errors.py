"""The exception tree of socks5client and the mapping from SOCKS5 reply codes.

Every error raised because of the proxy is a :class:`ProxyError`, itself an
:class:`OSError`, so code that already handles socket errors keeps working.
Each error carries:

* ``msg`` -- a sentence a user can act on (never a password);
* ``errno`` -- an ``errno`` value, so that ``connect_ex`` can return it;
* ``socket_err`` -- the underlying ``OSError`` if there was one.  PySocks
  has this attribute and ``urllib3.contrib.socks`` reads it.

The names ``ProxyError``, ``GeneralProxyError``, ``ProxyConnectionError``,
``SOCKS5AuthError`` and ``SOCKS5Error`` are PySocks' own, so code written
against PySocks catches the same things.  PySocks' ``SOCKS4Error`` and
``HTTPError`` exist too, so that ``except`` clauses naming them still work;
socks5client speaks only SOCKS5 and never raises them.
"""

from __future__ import annotations

import errno as _errno
import socket as _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "GSSAPIAbortError",
    "GSSAPIError",
    "GSSAPIFramingError",
    "GSSAPINoCredentialsError",
    "GSSAPIProtectionRefusedError",
    "GSSAPIUnknownServiceError",
    "GeneralProxyError",
    "HTTPError",
    "ProxyConnectionError",
    "ProxyConnectionTimeoutError",
    "ProxyError",
    "ProxyProtocolError",
    "ProxyTimeoutError",
    "SOCKS4Error",
    "SOCKS5AddressTypeNotSupportedError",
    "SOCKS5AuthError",
    "SOCKS5CommandNotSupportedError",
    "SOCKS5ConnectionNotAllowedError",
    "SOCKS5ConnectionRefusedError",
    "SOCKS5Error",
    "SOCKS5GeneralFailureError",
    "SOCKS5HostUnreachableError",
    "SOCKS5NetworkUnreachableError",
    "SOCKS5TTLExpiredError",
    "SOCKS5UnassignedReplyError",
    "UDPAssociationClosedError",
    "error_for_reply_code",
]


class ProxyError(OSError):
    """Root of every error caused by the proxy or by talking to it.

    ``str(err)`` is the message; when an underlying OS error caused it, the
    message ends with that error's own text.
    """

    #: errno used when no underlying OS error supplies one.
    default_errno: ClassVar[int] = _errno.EIO

    msg: str
    socket_err: BaseException | None

    def __init__(self, msg: str, socket_err: BaseException | None = None) -> None:
        code = getattr(socket_err, "errno", None)
        if not isinstance(code, int) or code <= 0:
            # getaddrinfo errors carry negative EAI_* codes, not errnos.
            code = self.default_errno
        full = f"{msg}: {socket_err}" if socket_err is not None else msg
        # OSError(errno, strerror) fills .errno and .strerror; args stays the
        # conventional (errno, message) pair.
        super().__init__(code, full)
        self.msg = full
        self.socket_err = socket_err

    def __str__(self) -> str:
        return self.msg

    def __reduce__(self) -> tuple[object, ...]:
        # The default OSError pickling would call __init__(errno, msg).
        return (_rebuild, (type(self), self.msg, self.errno, self.__dict__))


def _rebuild(cls: type[ProxyError], msg: str, code: int, state: dict[str, object]) -> ProxyError:
    err = cls.__new__(cls)
    OSError.__init__(err, code, msg)
    err.__dict__.update(state)
    return err


class GeneralProxyError(ProxyError):
    """Something went wrong during the conversation with the proxy."""


class ProxyConnectionError(ProxyError):
    """The proxy itself could not be reached (refused, unreachable, DNS)."""

    default_errno = _errno.ECONNREFUSED


# Before Python 3.10 socket.timeout was its own class, not TimeoutError;
# code of that era catches socket.timeout, newer code TimeoutError.
_TIMEOUTS: tuple[type[OSError], ...] = (
    (TimeoutError,) if _socket.timeout is TimeoutError else (_socket.timeout, TimeoutError)
)


class ProxyConnectionTimeoutError(ProxyConnectionError, *_TIMEOUTS):  # type: ignore[misc]
    """Connecting to the proxy took longer than the socket's timeout."""

    default_errno = _errno.ETIMEDOUT


class ProxyTimeoutError(GeneralProxyError, *_TIMEOUTS):  # type: ignore[misc]
    """The proxy did not complete the SOCKS5 handshake within the timeout."""

    default_errno = _errno.ETIMEDOUT


class ProxyProtocolError(GeneralProxyError):
    """The proxy broke RFC 1928/1929: malformed, unexpected or truncated data.

    A proxy that closes the connection in the middle of the handshake raises
    this too, since a conforming proxy always answers.
    """

    default_errno = _errno.EPROTO


class UDPAssociationClosedError(GeneralProxyError):
    """The proxy closed the control connection, so the UDP association has ended.

    RFC 1928: a UDP association lasts as long as its TCP connection.  Every
    later operation on the UDP socket raises this; make a new socket.
    """

    default_errno = _errno.ECONNRESET


#: PySocks' message for failed authentication.
_AUTH_FAILED = "SOCKS5 authentication failed"


class SOCKS5AuthError(ProxyError):
    """The proxy accepted none of our methods, or rejected our credentials.

    The message starts with PySocks' words, "SOCKS5 authentication failed",
    which code written against PySocks may look for.
    """

    default_errno = _errno.EACCES

    def __init__(self, msg: str, socket_err: BaseException | None = None) -> None:
        if not msg.startswith(_AUTH_FAILED):
            msg = f"{_AUTH_FAILED}: {msg}"
        super().__init__(msg, socket_err)


class GSSAPIError(SOCKS5AuthError):
    """GSS-API (Kerberos, RFC 1961) authentication with the proxy failed.

    The subclasses below name the usual causes; this class itself covers the
    rest (the ``gssapi`` package missing, a context that does not complete,
    no mutual authentication), each with its own message.
    """


class GSSAPINoCredentialsError(GSSAPIError):
    """No usable Kerberos ticket: run ``kinit``, or point ``KRB5CCNAME`` at a cache."""


class GSSAPIUnknownServiceError(GSSAPIError):
    """The KDC does not know the proxy's service principal (see ``gssapi_service``)."""

    default_errno = _errno.EHOSTUNREACH


class GSSAPIAbortError(GSSAPIError):
    """The proxy ended the GSS-API sub-negotiation with an abort message (MTYP 0xFF)."""


class GSSAPIFramingError(GSSAPIError, ProxyProtocolError):
    """The proxy broke RFC 1961's message framing (VER, MTYP or LEN).

    Also a :class:`ProxyProtocolError`: the proxy, not the credentials, is at fault.
    """

    default_errno = _errno.EPROTO


class GSSAPIProtectionRefusedError(GSSAPIError):
    """The proxy and the ``gssapi_protection`` setting did not agree on a protection level.

    Either the proxy answered a level the setting does not allow, or it
    closed the connection when asked for one (Dante does that instead of
    answering).
    """


class SOCKS4Error(ProxyError):
    """PySocks' error for SOCKS4 failures.  Never raised: kept for ``except`` clauses.

    socks5client refuses SOCKS4 proxies when they are configured (with a
    ``ValueError``), so no SOCKS4 conversation can fail.
    """


class HTTPError(ProxyError):
    """PySocks' error for HTTP CONNECT proxy failures.  Never raised: kept for ``except`` clauses.

    socks5client refuses HTTP proxies when they are configured (with a
    ``ValueError``), so no HTTP proxy conversation can fail.
    """


class SOCKS5Error(ProxyError):
    """The proxy answered a request with a failure reply code (REP != 0).

    ``reply_code`` is the REP byte.  Each assigned code has its own subclass.
    """

    reply_code: int = 0
    #: What RFC 1928 says the code means.
    description: ClassVar[str] = "SOCKS5 failure"

    def __init__(
        self,
        msg: str,
        socket_err: BaseException | None = None,
        *,
        reply_code: int | None = None,
    ) -> None:
        super().__init__(msg, socket_err)
        if reply_code is not None:
            self.reply_code = reply_code


class SOCKS5GeneralFailureError(SOCKS5Error):
    """REP 1: general SOCKS server failure."""

    reply_code = 1
    description = "general SOCKS server failure"


class SOCKS5ConnectionNotAllowedError(SOCKS5Error):
    """REP 2: connection not allowed by ruleset."""

    reply_code = 2
    description = "connection not allowed by ruleset"
    default_errno = _errno.EACCES


class SOCKS5NetworkUnreachableError(SOCKS5Error):
    """REP 3: network unreachable."""

    reply_code = 3
    description = "network unreachable"
    default_errno = _errno.ENETUNREACH


class SOCKS5HostUnreachableError(SOCKS5Error):
    """REP 4: host unreachable (some proxies also use it for a name they cannot resolve)."""

    reply_code = 4
    description = "host unreachable"
    default_errno = _errno.EHOSTUNREACH


class SOCKS5ConnectionRefusedError(SOCKS5Error, ConnectionRefusedError):
    """REP 5: the destination refused the connection.

    Also a :class:`ConnectionRefusedError`, like a direct refusal would be.
    """

    reply_code = 5
    description = "connection refused"
    default_errno = _errno.ECONNREFUSED


class SOCKS5TTLExpiredError(SOCKS5Error):
    """REP 6: TTL expired."""

    reply_code = 6
    description = "TTL expired"
    default_errno = _errno.ETIMEDOUT


class SOCKS5CommandNotSupportedError(SOCKS5Error):
    """REP 7: command not supported by this proxy."""

    reply_code = 7
    description = "command not supported"
    default_errno = _errno.EOPNOTSUPP


class SOCKS5AddressTypeNotSupportedError(SOCKS5Error):
    """REP 8: address type not supported by this proxy."""

    reply_code = 8
    description = "address type not supported"
    default_errno = _errno.EAFNOSUPPORT


class SOCKS5UnassignedReplyError(SOCKS5Error):
    """A reply code RFC 1928 does not assign (9 to 255)."""

    description = "unassigned reply code"


_BY_CODE: dict[int, type[SOCKS5Error]] = {
    cls.reply_code: cls
    for cls in (
        SOCKS5GeneralFailureError,
        SOCKS5ConnectionNotAllowedError,
        SOCKS5NetworkUnreachableError,
        SOCKS5HostUnreachableError,
        SOCKS5ConnectionRefusedError,
        SOCKS5TTLExpiredError,
        SOCKS5CommandNotSupportedError,
        SOCKS5AddressTypeNotSupportedError,
    )
}


#: Reply codes proxies use when they cannot resolve a name we sent them
#: (microsocks says 1, Dante 4).
_NAME_FAILURE_CODES = frozenset({1, 4})


def error_for_reply_code(reply_code: int, context: str, name: str | None = None) -> SOCKS5Error:
    """Build the error for a failure reply.

    ``context`` names what was asked, e.g. ``"CONNECT to example.com:443"``;
    ``name`` is the hostname the proxy was asked to resolve, if any.
    """
    cls = _BY_CODE.get(reply_code, SOCKS5UnassignedReplyError)
    msg = f"proxy refused {context}: {cls.description} (SOCKS5 reply code {reply_code})"
    if name is not None and reply_code in _NAME_FAILURE_CODES:
        msg += f"; the proxy may have failed to resolve {name!r}"
    return cls(msg, reply_code=reply_code)
