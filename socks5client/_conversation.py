"""The SOCKS5 handshake as a conversation, with no I/O: what to send, what to read next.

A conversation is a generator.  It yields *steps* and is resumed with their
results:

* ``(SEND, data)`` -- write all of ``data`` (``bytes``, or a
  :class:`~socks5client._secret.Secret` holding a credential -- a password,
  a Kerberos AP-REQ -- to be unwrapped only inside the write); resumed with
  ``None``;
* ``(RECV, size, what, ready)`` -- read at most ``size`` bytes (at least
  one; ``b""`` means the proxy closed the connection).  ``what`` names the
  awaited message for timeout messages; ``ready`` says part of the message
  has arrived, so the rest is probably there already;
* ``(HINT, text)`` -- from now on, end transport error messages (timeouts,
  a lost connection) with ``text``; resumed with ``None``.

It returns the proxy's :class:`~socks5client._codec.Reply` (the handshake
also the per-message protection an authentication method agreed on), or
raises the library's errors for whatever the proxy said.  Timeouts and transport
errors are the driver's: the blocking one in ``_negotiate`` and the asyncio
one each bring their own clock and socket, and share every byte and every
decision here.  Byte layouts stay in ``_codec``.

Reads never ask for more than the message still needs, so data the
destination sends right behind the reply stays in the socket for the
application.
"""

from __future__ import annotations

from . import _codec
from ._codec import NeedData, Parsed, Reply
from ._secret import Secret
from .errors import (
    GSSAPIFramingError,
    ProxyError,
    ProxyProtocolError,
    SOCKS5AuthError,
    error_for_reply_code,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any, Callable, Optional, TypeVar

    from .auth import AuthMethod, AuthPlan, Protection

    #: What a handshake agreed beyond the reply: the per-message protection
    #: and the application bytes unwrapped past the reply, or None.
    Protected = Optional[tuple[Protection, bytes]]

    #: A step (see the module docstring) and a conversation yielding them.
    Step = tuple[Any, ...]
    Steps = Generator[Step, "bytes | None", "_T"]

    _T = TypeVar("_T")

SEND = 0
RECV = 1
HINT = 2

#: Appended to the errors of a pipelined handshake that the proxy broke.
PIPELINE_HINT = (
    "; pipelining is on (the greeting, credentials and request went in one write),"
    " which some proxies (microsocks) do not accept: turn it off with"
    " Proxy(..., pipeline=False) or by removing ?pipeline=1 from the proxy URL"
)


class Truncated(Exception):
    """The proxy closed the connection before a message was complete."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data


def receive(parser: Callable[[bytearray], NeedData | Parsed[_T]], what: str) -> Steps[_T]:
    """Read one message with ``parser``, never a byte more.

    Raises :class:`Truncated` (with what came) if the proxy closes first.
    """
    buf = bytearray()
    while True:
        result = parser(buf)
        if type(result) is not NeedData:
            return result.message  # type: ignore[union-attr]
        chunk = yield (RECV, result.size, what, bool(buf))
        if not chunk:
            raise Truncated(bytes(buf))
        buf += chunk


def replayed(steps: Steps[_T], sent: int, received: bytes) -> Steps[_T]:
    """``steps`` taken over from a quick path that already did their first part.

    The first ``sent`` SEND steps are skipped (the quick path wrote those
    very bytes) and RECV steps are answered from ``received`` (what it read)
    until that runs out; the rest goes to the driver.  A quick path that
    plays only the usual messages and hands over at the first surprise thus
    leaves every decision and every error message to the conversation.
    """
    advance = steps.send
    result: bytes | None = None
    try:
        while True:
            step = advance(result)
            if step[0] == SEND and sent:
                sent -= 1
                result = None
            elif step[0] == RECV and received:
                result, received = received[: step[1]], received[step[1] :]
            else:
                result = yield step
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def handshake(
    plan: AuthPlan,
    pipeline: bool,
    request: bytes,
    context: str | Callable[[], str],
    where: str,
    name: str | None = None,
) -> Steps[tuple[Reply, Protected]]:
    """Greet, authenticate, send ``request`` and read its reply (REP 0, else raise).

    ``where`` names the proxy and ``context`` the request in messages
    (``context`` may be a function, called only to word an error); ``name``
    is the hostname the proxy was asked to resolve, if any.  Returns the
    reply and, when the method agreed on per-message protection (GSS-API
    integrity or confidentiality), that protection and the unwrapped bytes
    that followed the reply in its last token; else ``None``.
    """
    if pipeline and plan.pipelined is not None:
        return (yield from _pipelined(plan, request, context, where, name)), None
    yield (SEND, plan.greeting)
    choice = yield from method_selection(where)
    method = chosen(choice, plan.offered, where)
    try:
        # The command decides which checks a method asks for (GSS-API:
        # sequence checking on a stream, not on datagrams).
        protection = yield from method.negotiate(request[1])
    except Truncated as exc:
        raise closed(where, "authentication reply", exc.data) from None
    if protection is None:
        yield (SEND, request)
        return (yield from read_reply(context, where, name)), None
    # RFC 1961 section 5: from here on everything is wrapped, the request first.
    try:
        token = protection.wrap(request)
        yield (SEND, _codec.encode_gssapi_frame(_codec.GSSAPIMessage.ENCAPSULATED, token))
        reply, rest = yield from protected_reply(protection, context, where, name)
    except BaseException:
        # The protection holds the live security context (its keys): not
        # for the traceback's locals.
        protection = None
        raise
    return reply, (protection, rest)


def protected_reply(
    protection: Protection,
    context: str | Callable[[], str],
    where: str,
    name: str | None = None,
    buffered: bytes = b"",
) -> Steps[tuple[Reply, bytes]]:
    """Read a reply from wrapped frames; return it and the plaintext that followed it.

    The proxy's frames need not match its messages: the reply may span
    frames, and application data may follow it in the same token.
    ``buffered`` is plaintext already unwrapped (what followed an earlier
    reply: BIND's second reply reads on from the first's).
    """
    buf = bytearray(buffered)
    try:
        return (yield from _protected_reply(protection, buf, context, where, name))
    except BaseException:
        # (See handshake: the live security context stays out of tracebacks.)
        del protection
        raise


def _protected_reply(
    protection: Protection,
    buf: bytearray,
    context: str | Callable[[], str],
    where: str,
    name: str | None,
) -> Steps[tuple[Reply, bytes]]:
    try:
        while True:
            code = _codec.peek_reply_code(buf)
            if code:
                raise error_for_reply_code(code, text(context), name)
            result = _codec.parse_reply(buf)
            if type(result) is not NeedData:
                break
            frame = yield from receive(_codec.parse_gssapi_frame, "reply (GSS-API wrapped)")
            if frame.mtyp != _codec.GSSAPIMessage.ENCAPSULATED:
                raise GSSAPIFramingError(
                    f"proxy {where} sent GSS-API message type {frame.mtyp:#04x} where its"
                    " wrapped reply (type 0x03) was due"
                )
            buf += protection.unwrap(frame.token)
    except Truncated as exc:
        raise closed(where, f"reply to {text(context)}", exc.data) from None
    reply: Reply = result.message  # type: ignore[union-attr]
    if reply.reply_code:
        raise error_for_reply_code(reply.reply_code, text(context), name)
    return reply, bytes(buf[result.consumed :])  # type: ignore[union-attr]


def _pipelined(
    plan: AuthPlan,
    request: bytes,
    context: str | Callable[[], str],
    where: str,
    name: str | None,
) -> Steps[Reply]:
    """Greeting, credentials and request in one write; then the replies in order.

    Only the one method whose messages are known in advance is offered, so
    the proxy's choice cannot make the credentials mean something else.
    """
    method = plan.pipelined
    assert method is not None
    first = method.first_message()
    if type(first) is Secret:
        yield (SEND, Secret(plan.pipelined_greeting + first.reveal() + request))
    else:
        yield (SEND, plan.pipelined_greeting + first + request)  # type: ignore[operator]
    yield (HINT, PIPELINE_HINT)
    choice = yield from method_selection(where, PIPELINE_HINT)
    chosen(choice, {method.code: method}, where, PIPELINE_HINT)
    try:
        yield from method.finish()
    except Truncated as exc:
        raise closed(where, "authentication reply", exc.data, PIPELINE_HINT) from None
    except ProxyProtocolError as exc:
        raise hinted(exc, PIPELINE_HINT) from None
    reply = yield from read_reply(context, where, name, PIPELINE_HINT)
    yield (HINT, "")
    return reply


#: What the steps below wait for, as timeout messages name it.
SELECTION = "method selection"
REPLY = "reply"


def method_selection(where: str, hint: str = "") -> Steps[int]:
    """The METHOD byte of the proxy's method selection."""
    data = (yield (RECV, 2, SELECTION, False)) or b""
    if len(data) == 2 and data[0] == _codec.SOCKS_VERSION:
        return data[1]  # the usual case: all of it in one read
    buf = bytearray(data)
    try:
        if not buf:
            raise Truncated(b"")
        while True:
            result = _codec.parse_method_selection(buf)
            if type(result) is not NeedData:
                return result.message.method  # type: ignore[union-attr]
            chunk = yield (RECV, result.size, SELECTION, True)
            if not chunk:
                raise Truncated(bytes(buf))
            buf += chunk
    except Truncated as exc:
        raise closed(where, SELECTION, exc.data, hint) from None
    except ProxyProtocolError as exc:
        if hint:
            raise hinted(exc, hint) from None
        raise


def chosen(choice: int, offered: dict[int, AuthMethod], where: str, hint: str = "") -> AuthMethod:
    """The offered method the proxy chose; raise if it chose none or another."""
    method = offered.get(choice)
    if method is not None:
        return method
    if choice == _codec.Method.NO_ACCEPTABLE:
        names = ", ".join(_codec.Method(c).name.replace("_", " ").lower() for c in offered)
        raise SOCKS5AuthError(
            f"proxy {where} accepts none of the authentication methods offered ({names}){hint}"
        )
    raise ProxyProtocolError(
        f"proxy {where} chose authentication method {choice:#04x}, which was not offered{hint}"
    )


def read_reply(
    context: str | Callable[[], str], where: str, name: str | None = None, hint: str = ""
) -> Steps[Reply]:
    """Read one reply; raise the matching :class:`SOCKS5Error` unless REP is 0.

    ``name`` is the hostname the request asked the proxy to resolve, if
    any: the error then says that resolving it may be what failed.
    """
    data = (yield (RECV, _codec.MIN_REPLY_SIZE, REPLY, False)) or b""
    try:
        while True:
            if not data:
                raise Truncated(b"")
            code = _codec.peek_reply_code(data)
            if code:
                # The verdict is known from the second byte: a failing proxy
                # that stops there (and keeps the connection open) must not
                # make us wait out the timeout for an address we do not need.
                raise error_for_reply_code(code, text(context), name)
            result = _codec.parse_reply(data)
            if type(result) is not NeedData:
                break
            chunk = yield (RECV, result.size, REPLY, True)
            if not chunk:
                raise Truncated(data)
            data += chunk
    except Truncated as exc:
        raise closed(where, f"reply to {text(context)}", exc.data, hint) from None
    except ProxyProtocolError as exc:
        code = _codec.peek_reply_code(data)
        if code:
            raise error_for_reply_code(code, text(context), name) from exc
        if hint:
            raise hinted(exc, hint) from None
        raise
    reply: Reply = result.message  # type: ignore[union-attr]
    if reply.reply_code:
        raise error_for_reply_code(reply.reply_code, text(context), name)
    return reply


def closed(where: str, what: str, data: bytes, hint: str = "") -> ProxyProtocolError:
    """The error for a proxy that hung up in the middle of the ``what``."""
    got = f" after {len(data)} bytes of it" if data else ""
    return ProxyProtocolError(
        f"proxy {where} closed the connection while we waited for the {what}{got}{hint}"
    )


def text(context: str | Callable[[], str]) -> str:
    """A message's wording of the request: ``context`` itself, or what it returns."""
    return context if isinstance(context, str) else context()


def hinted(exc: ProxyError, hint: str) -> ProxyError:
    """``exc`` again, with ``hint`` at the end of its message."""
    new = type(exc)(exc.msg + hint)
    new.socket_err = exc.socket_err
    return new
