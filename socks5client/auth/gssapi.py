"""Method 0x01, GSS-API (RFC 1961), on the ``gssapi`` package and so on Kerberos.

The sub-negotiation has two stages.  First the security context: our
initiator's tokens go out as ``01 01 LEN TOKEN`` frames, the proxy answers
each with one such frame (Dante answers the last one with an empty token),
until the context is complete with mutual authentication -- the proxy has
proved that it holds the service key.  Then the protection level: one octet,
wrapped with ``gss_wrap`` (no confidentiality, as RFC 1961 section 4.4
says), as ``01 02 LEN TOKEN``; the proxy answers the level it agrees to the
same way.  ``01 FF`` from the proxy at any point is an abort.

The conversation returns a :class:`MessageProtection` when the agreed level
is integrity (1) or confidentiality (2): the handshake then wraps the request
and unwraps the reply with it, and the socket switches to the wrapping class
(``socks5client._gssapi_socket``).  Level 0 returns ``None``: the data path
stays the plain C socket.

``gssapi`` is imported when a handshake first needs it, never at import
time: it is an optional dependency (``pip install 'socks5client[gssapi]'``).
One :class:`GSSAPIAuth` serves every handshake of its proxy (plans are
shared), so all per-handshake state -- the security context above all --
lives in the ``negotiate()`` generator, never on the object.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._codec import (
    Command,
    GSSAPIFrame,
    GSSAPIMessage,
    Method,
    encode_gssapi_frame,
    parse_gssapi_frame,
)
from .._conversation import SEND, Truncated, receive
from .._secret import Secret
from ..errors import (
    GSSAPIAbortError,
    GSSAPIError,
    GSSAPIFramingError,
    GSSAPINoCredentialsError,
    GSSAPIProtectionRefusedError,
    GSSAPIUnknownServiceError,
    ProxyProtocolError,
)

if TYPE_CHECKING:
    from .._conversation import Steps

__all__ = ["GSSAPIAuth", "MessageProtection", "target_name"]

#: RFC 1961 levels by the names ``Proxy.gssapi_protection`` takes, and back.
LEVELS = {"none": 0, "integrity": 1, "confidentiality": 2}
LEVEL_NAMES = {0: "none", 1: "integrity", 2: "confidentiality", 3: "selective"}

#: The largest token we put in a frame.  RFC 1961's LEN allows 65535, but
#: Dante, the server this is proven against, never sends more than 65531
#: (a whole frame within 64 KiB), and a peer may size its buffer the same way.
MAX_TOKEN = 65531

#: Context tokens each way before we give up: Kerberos needs one round trip;
#: the bound keeps a misbehaving peer from keeping us in the loop forever.
_MAX_ROUNDS = 8

#: KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN as GSS-API reports it (an unsigned minor
#: status): the KDC has no such service principal.
_KRB5_PRINCIPAL_UNKNOWN = 2529638919
#: GSS_S_BAD_NAME, GSS_S_NO_CRED and GSS_S_CREDENTIALS_EXPIRED (major status
#: routine errors, in the high 16 bits).
_GSS_S_BAD_NAME = 2 << 16
_GSS_S_NO_CRED = 7 << 16
_GSS_S_CREDENTIALS_EXPIRED = 11 << 16


def target_name(host: str, service: str) -> tuple[str, bool]:
    """The proxy's GSS-API name for ``service``, and whether it is a host-based name.

    ``"rcmd"`` is the host-based service ``rcmd@host``; ``"rcmd@other"``
    names its host; anything with a ``/`` is a Kerberos principal as written
    (``rcmd/proxy.example.com`` or with ``@REALM``).  ``host`` is used as the
    user wrote it: an IP literal is not looked up in reverse DNS, whose
    answer an attacker on the path could choose.
    """
    if "/" in service:
        return service, False
    if "@" in service:
        return service, True
    return f"{service}@{host}", True


def _load_gssapi() -> Any:
    try:
        import gssapi
    except ImportError as exc:
        raise GSSAPIError(
            "GSS-API authentication needs the gssapi package:"
            " pip install 'socks5client[gssapi]' (it builds against libkrb5-dev)",
            exc,
        ) from None
    return gssapi


class MessageProtection:
    """An established context's per-message protection at level 1 or 2.

    ``wrap`` turns plaintext into a token, ``unwrap`` a token into plaintext.
    One lock serialises both: a GSS-API context is not safe for concurrent
    use, and a reader and a writer thread may share the socket.
    """

    __slots__ = ("_context", "_encrypt", "_lock", "level", "max_payload")

    def __init__(self, context: Any, level: int) -> None:
        self._context = context
        self.level = level
        self._encrypt = level == 2
        self._lock = threading.Lock()
        #: The most plaintext one token of at most MAX_TOKEN bytes can carry.
        self.max_payload: int = context.get_wrap_size_limit(MAX_TOKEN, self._encrypt)

    def __repr__(self) -> str:
        return f"<MessageProtection {LEVEL_NAMES[self.level]}>"

    def wrap(self, data: bytes) -> bytes:
        """One token carrying ``data`` (at most :attr:`max_payload` bytes)."""
        with self._lock:
            token: bytes = self._context.wrap(data, self._encrypt).message
        return token

    def unwrap(self, token: bytes) -> bytes:
        """The plaintext of a token from the proxy; raise if it fails verification."""
        gssapi = _load_gssapi()
        try:
            with self._lock:
                result = self._context.unwrap(token)
        except gssapi.exceptions.GSSError as exc:
            raise ProxyProtocolError(
                "a GSS-API token from the proxy failed verification (corrupted, replayed or"
                f" forged): {_gss_text(exc)}"
            ) from None
        if self._encrypt and not result.encrypted:
            # Level 2 was agreed: accepting a token in clear would let a
            # peer on the path downgrade what we read.
            raise ProxyProtocolError(
                "the proxy sent a token without confidentiality after level 2"
                " (confidentiality) was agreed"
            )
        message: bytes = result.message
        return message


def _checks_for(flags: Any, command: int | None) -> list[Any]:
    """The per-message checks (``RequirementFlag`` members) to require for ``command``.

    MIT Kerberos checks a wrapped token's sequence number only when asked:
    without these flags a token replayed, reordered or dropped on the path
    unwraps as if it were the next one.  Replay detection suits every use.
    Sequence checking (a token missing or out of order fails) suits only the
    TCP streams of CONNECT and BIND, where a gap is an attack; over UDP
    ASSOCIATE datagrams are lost and reordered in the ordinary course, and
    it would fail the datagram after each loss.  An unknown command gets
    replay detection only.
    """
    if command in (Command.CONNECT, Command.BIND):
        return [flags.replay_detection, flags.out_of_sequence_detection]
    return [flags.replay_detection]


def _combined(members: list[Any]) -> int:
    combined = 0
    for member in members:
        combined |= member
    return combined


def _gss_text(exc: BaseException) -> str:
    """GSS-API's own words for ``exc`` (it names principals and caches, never keys)."""
    gen = getattr(exc, "gen_message", None)
    try:
        text = str(gen()) if callable(gen) else str(exc)
    except Exception:
        text = str(exc)
    return " ".join(text.split())


class GSSAPIAuth:
    """RFC 1961 sub-negotiation for one proxy: stateless, so plans can share it.

    ``host`` is the proxy host as given (names the host-based service),
    ``where`` the proxy for messages, ``protection`` the wanted level's name
    or ``None`` for the strongest the proxy answers.
    """

    code = Method.GSSAPI

    def __init__(self, host: str, where: str, service: str, protection: str | None) -> None:
        self._name, self._hostbased = target_name(host, service)
        self._service = service
        self._where = where
        self._wanted = None if protection is None else LEVELS[protection]
        # Here rather than at the first token: a missing package is then
        # reported before anything is sent to the proxy.
        _load_gssapi()

    def __repr__(self) -> str:
        return f"GSSAPIAuth(target={self._name!r}, wanted={self._wanted!r})"

    def script(self) -> None:
        """None: each token depends on the proxy's last one."""
        return None

    def first_message(self) -> None:
        """Never pipelined: each token depends on the proxy's last one."""
        return None

    def finish(self) -> Steps[None]:
        """Not used: a method that cannot be pipelined is never finished after a pipelined send."""
        raise AssertionError("GSSAPI is never pipelined")
        yield  # a generator

    def negotiate(self, command: int | None = None) -> Steps[MessageProtection | None]:
        """Establish the context, agree on a protection level; the protection (or None).

        ``command`` is the request's CMD (``Command``), which decides the
        per-message checks asked of the context (see :func:`_checks_for`);
        ``None`` (not known) asks for the checks every command can take.
        """
        gssapi = _load_gssapi()
        flags = gssapi.RequirementFlag
        checks = _checks_for(flags, command)
        # Our initial token is a Kerberos AP-REQ, replayable while its
        # authenticator is fresh, and the context can wrap and unwrap as us:
        # neither may stay in this (generator's) frame, which any error's
        # traceback keeps, so every way out by exception drops them first.
        token: bytes | None = None
        message: Secret[bytes] | None = None
        context: Any = None
        frame: GSSAPIFrame | None = None
        try:
            kind = gssapi.NameType.hostbased_service if self._hostbased else None
            name = (
                gssapi.Name(self._name, kind)
                if kind is not None
                else gssapi.Name(self._name, gssapi.NameType.kerberos_principal)
            )
            try:
                context = gssapi.SecurityContext(
                    name=name,
                    usage="initiate",
                    flags=flags.mutual_authentication
                    | flags.integrity
                    | flags.confidentiality
                    | _combined(checks),
                )
                token = context.step()
            except gssapi.exceptions.GSSError as exc:
                raise self._failure(exc) from None
            for _ in range(_MAX_ROUNDS):
                # As a Secret, revealed only inside the driver's write: the
                # drivers' frames (the step, the data being written) are in
                # the traceback of a failed write; this generator's is not.
                message = Secret(encode_gssapi_frame(GSSAPIMessage.CONTEXT, token or b""))
                token = None
                yield (SEND, message)
                frame = yield from self._frame(GSSAPIMessage.CONTEXT, "GSS-API context token")
                if context.complete:
                    break  # the proxy's acknowledgement (often empty) of our last token
                if not frame.token:
                    raise GSSAPIFramingError(
                        f"proxy {self._where} sent an empty GSS-API context token while the"
                        " context still needed one"
                    )
                try:
                    token = context.step(frame.token)
                except gssapi.exceptions.GSSError as exc:
                    raise self._failure(exc) from None
                if context.complete and not token:
                    break
            else:
                raise GSSAPIError(
                    f"the GSS-API context with proxy {self._where} did not complete in"
                    f" {_MAX_ROUNDS} rounds"
                )
            token = message = frame = None
            actual = context.actual_flags
            if flags.mutual_authentication not in actual:
                raise GSSAPIError(
                    f"proxy {self._where} did not prove its identity (no GSS-API mutual"
                    " authentication), so it may not be the proxy named by the service"
                    f" {self._name!r}"
                )
            missing = [flag.name for flag in checks if flag not in actual]
            if missing:
                # Without them a replayed, reordered or dropped token would
                # unwrap as if it were the next one: the data could be
                # changed on the path without any check failing.
                raise GSSAPIError(
                    f"the GSS-API context with proxy {self._where} lacks "
                    + " and ".join(missing)
                    + ", so replayed, reordered or dropped messages would go unnoticed"
                )
            available = (
                2 if flags.confidentiality in actual else 1 if flags.integrity in actual else 0
            )
            return (yield from self._agree_level(gssapi, context, available))
        except BaseException:
            token = message = context = frame = None
            raise

    def _agree_level(
        self, gssapi: Any, context: Any, available: int
    ) -> Steps[MessageProtection | None]:
        """Agree on a protection level with the proxy over ``context``; its protection."""
        try:
            wanted = self._wanted
            ask = available if wanted is None else wanted
            if ask > available:
                raise GSSAPIProtectionRefusedError(
                    f"gssapi_protection={LEVEL_NAMES[ask]!r} was asked for, but the GSS-API"
                    f" context with proxy {self._where} offers at most {LEVEL_NAMES[available]!r}"
                )
            try:
                token = context.wrap(bytes([ask]), False).message
            except gssapi.exceptions.GSSError as exc:
                raise self._failure(exc) from None
            yield (SEND, encode_gssapi_frame(GSSAPIMessage.PROTECTION, token))
            try:
                frame = yield from self._frame(GSSAPIMessage.PROTECTION, "GSS-API protection level")
            except Truncated:
                # Dante closes the connection on a level it does not grant,
                # without an abort frame.  No retry at a lower level: a closed
                # connection is not authenticated, so anyone on the path could
                # cause it, while the proxy's wrapped answer cannot be forged.
                hint = (
                    " set gssapi_protection to a level the proxy allows"
                    if wanted is not None
                    else " gssapi_protection=None asks for the strongest level the context"
                    " offers; set gssapi_protection to a level the proxy allows"
                )
                raise GSSAPIProtectionRefusedError(
                    f"proxy {self._where} closed the connection when asked for protection level"
                    f" {ask} ({LEVEL_NAMES[ask]}), which it apparently does not grant (Dante"
                    f" closes instead of answering);{hint}"
                ) from None
            try:
                level_octets = context.unwrap(frame.token).message
            except gssapi.exceptions.GSSError as exc:
                raise GSSAPIFramingError(
                    f"proxy {self._where} sent a protection level token that does not unwrap:"
                    f" {_gss_text(exc)}"
                ) from None
            if len(level_octets) != 1:
                raise GSSAPIFramingError(
                    f"proxy {self._where} sent a protection level of {len(level_octets)} octets;"
                    " RFC 1961 says one"
                )
            level = level_octets[0]
            acceptable = level <= available and (level >= wanted if wanted is not None else True)
            if level not in (0, 1, 2) or not acceptable:
                name = LEVEL_NAMES.get(level, f"unknown level {level}")
                want = "the strongest offered" if wanted is None else repr(LEVEL_NAMES[wanted])
                raise GSSAPIProtectionRefusedError(
                    f"proxy {self._where} answered protection level {level} ({name}) where"
                    f" gssapi_protection asks for {want}"
                    + (
                        "; set gssapi_protection=None to accept a weaker level the proxy chooses"
                        if wanted is not None and level < wanted
                        else ""
                    )
                )
            return None if level == 0 else MessageProtection(context, level)
        except BaseException:
            # See negotiate: the context must not outlive a failure in a frame.
            context = None
            raise

    def _frame(self, expected: int, what: str) -> Steps[GSSAPIFrame]:
        """One frame of type ``expected``; raise on an abort or another type."""
        frame = yield from receive(parse_gssapi_frame, what)
        if frame.mtyp == GSSAPIMessage.ABORT:
            raise GSSAPIAbortError(
                f"proxy {self._where} aborted the GSS-API sub-negotiation (it refused our"
                f" credentials for the service {self._name!r}, or its own setup failed;"
                " its log says which)"
            )
        if frame.mtyp != expected:
            raise GSSAPIFramingError(
                f"proxy {self._where} sent GSS-API message type {frame.mtyp:#04x} while we"
                f" waited for the {what} (type {expected:#04x})"
            )
        return frame

    def _failure(self, exc: Any) -> GSSAPIError:
        """Our error for a GSS-API failure on our side (no ticket, unknown service...)."""
        text = _gss_text(exc)
        major = getattr(exc, "maj_code", 0) or 0
        minor = getattr(exc, "min_code", 0) or 0
        routine = major & 0xFF0000
        if routine in (_GSS_S_NO_CRED, _GSS_S_CREDENTIALS_EXPIRED):
            return GSSAPINoCredentialsError(
                "no usable Kerberos ticket for the GSS-API proxy"
                f" {self._where}: run kinit (or point KRB5CCNAME at a credential cache"
                f" that holds a ticket) ({text})"
            )
        if minor == _KRB5_PRINCIPAL_UNKNOWN or routine == _GSS_S_BAD_NAME:
            host = self._name.rpartition("@")[2] if self._hostbased else ""
            literal = bool(host) and (host.replace(".", "").isdigit() or ":" in host)
            hint = (
                f"; the proxy was given as the address {host}, which rarely has a service"
                " principal: use its host name, or gssapi_service='rcmd/HOSTNAME'"
                if literal
                else ""
            )
            return GSSAPIUnknownServiceError(
                f"the Kerberos KDC does not know the service {self._name!r} of proxy"
                f" {self._where} (gssapi_service={self._service!r}){hint} ({text})"
            )
        return GSSAPIError(f"GSS-API with proxy {self._where} failed: {text}")
