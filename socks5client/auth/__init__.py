"""Authentication methods: one module per method, all behind one small interface.

A method object has the RFC 1928 method ``code`` it answers to and a
``negotiate()`` conversation (``socks5client._conversation``): a generator of
send and receive steps that the blocking and the asyncio drivers run, so
methods are written against messages, not I/O.
"""

from __future__ import annotations

from .._codec import encode_greeting
from .._secret import guard_secrets
from .base import AuthMethod, Protection
from .none import NoAuth
from .userpass import UsernamePasswordAuth

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..proxy import Proxy
    from .base import Script

__all__ = [
    "AuthMethod",
    "AuthPlan",
    "NoAuth",
    "Protection",
    "UsernamePasswordAuth",
    "methods_for",
    "plan_for",
]

# Stateless, so one instance serves every handshake.
_NO_AUTH = NoAuth()


@guard_secrets
def methods_for(
    username: str | bytes | None, password: str | bytes | None, gssapi: AuthMethod | None = None
) -> list[AuthMethod]:
    """The methods to offer, in order of preference, for the given credentials.

    With ``gssapi`` (the GSS-API method of a proxy configured for it) the
    offer is GSSAPI, plus username/password if credentials were given, and
    never "no authentication": a proxy (or someone on the path) choosing
    that would silently drop the authentication the user asked for.
    """
    if gssapi is not None:
        if username is None:
            return [gssapi]
        return [gssapi, UsernamePasswordAuth(username, password)]
    if username is None:
        return [_NO_AUTH]
    return [_NO_AUTH, UsernamePasswordAuth(username, password)]


class AuthPlan:
    """What a proxy's handshakes offer: worked out once per :class:`Proxy`.

    ``greeting`` offers every method in ``offered``.  ``pipelined`` is the
    one method a pipelined handshake offers (its first message is known
    before the proxy answers), or ``None`` if none can be pipelined.
    """

    __slots__ = ("greeting", "offered", "pipelined", "pipelined_greeting", "scripted")

    def __init__(self, methods: list[AuthMethod]) -> None:
        self.offered = {m.code: m for m in methods}
        self.greeting = encode_greeting(list(self.offered))
        # The last method is the one the credentials were given for (no
        # credentials: no authentication).  With a method that cannot be
        # pipelined on offer (GSSAPI), nothing is: offering only the last
        # method would quietly trade GSSAPI for username/password.
        last = methods[-1]
        self.pipelined: AuthMethod | None = (
            last if all(m.first_message() is not None for m in methods) else None
        )
        self.pipelined_greeting = encode_greeting([last.code])
        # For the blocking client's quick path: each method selection the
        # proxy may send (version 5, an offered method), keyed by its exact
        # bytes, and the sub-negotiation that follows it when all goes well.
        # None when some offered method's messages are not known in advance.
        scripts = {bytes((5, m.code)): m.script() for m in methods}
        self.scripted: dict[bytes, Script] | None = (
            None if None in scripts.values() else scripts  # type: ignore[assignment]
        )


def plan_for(proxy: Proxy) -> AuthPlan:
    """``proxy``'s :class:`AuthPlan`, made on first use and kept on the proxy."""
    plan: AuthPlan | None = proxy._plan
    if plan is None:
        gssapi: AuthMethod | None = None
        if proxy.gssapi:
            # Imported only for a proxy that uses it (the gssapi package
            # itself is imported later still, by the first handshake).
            from .._negotiate import describe
            from .gssapi import GSSAPIAuth

            gssapi = GSSAPIAuth(
                proxy._gssapi_host or proxy.host,
                describe(proxy.host, proxy.port),
                proxy.gssapi_service,
                proxy.gssapi_protection,
            )
        plan = AuthPlan(methods_for(proxy.username, proxy.password, gssapi))
        # Proxy is immutable to its users; this cache is not part of its
        # value (equality and pickling ignore it), and two threads making
        # it at once make equal plans.
        object.__setattr__(proxy, "_plan", plan)
    return plan
