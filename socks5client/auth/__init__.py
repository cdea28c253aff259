"""Authentication methods: one module per method, all behind one small interface.

A method object has the RFC 1928 method ``code`` it answers to and a
``negotiate()`` conversation (``socks5client._conversation``): a generator of
send and receive steps that the blocking and the asyncio drivers run, so
methods are written against messages, not I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._codec import encode_greeting
from .._secret import guard_secrets
from .base import AuthMethod
from .none import NoAuth
from .userpass import UsernamePasswordAuth

if TYPE_CHECKING:
    from ..proxy import Proxy

__all__ = [
    "AuthMethod",
    "AuthPlan",
    "NoAuth",
    "UsernamePasswordAuth",
    "methods_for",
    "plan_for",
]

# Stateless, so one instance serves every handshake.
_NO_AUTH = NoAuth()


@guard_secrets
def methods_for(username: str | bytes | None, password: str | bytes | None) -> list[AuthMethod]:
    """The methods to offer, in order of preference, for the given credentials."""
    if username is None:
        return [_NO_AUTH]
    return [_NO_AUTH, UsernamePasswordAuth(username, password)]


class AuthPlan:
    """What a proxy's handshakes offer: worked out once per :class:`Proxy`.

    ``greeting`` offers every method in ``offered``.  ``pipelined`` is the
    one method a pipelined handshake offers (its first message is known
    before the proxy answers), or ``None`` if none can be pipelined.
    """

    __slots__ = ("greeting", "offered", "pipelined", "pipelined_greeting")

    def __init__(self, methods: list[AuthMethod]) -> None:
        self.offered = {m.code: m for m in methods}
        self.greeting = encode_greeting(list(self.offered))
        # The last method is the one the credentials were given for (no
        # credentials: no authentication).
        last = methods[-1]
        self.pipelined: AuthMethod | None = last if last.first_message() is not None else None
        self.pipelined_greeting = encode_greeting([last.code])


def plan_for(proxy: Proxy) -> AuthPlan:
    """``proxy``'s :class:`AuthPlan`, made on first use and kept on the proxy."""
    plan: AuthPlan | None = proxy._plan
    if plan is None:
        plan = AuthPlan(methods_for(proxy.username, proxy.password))
        # Proxy is immutable to its users; this cache is not part of its
        # value (equality and pickling ignore it), and two threads making
        # it at once make equal plans.
        object.__setattr__(proxy, "_plan", plan)
    return plan
