"""Authentication methods: one module per method, all behind one small interface.

A method object has the RFC 1928 method ``code`` it answers to and an
``authenticate(channel)`` that runs the method's sub-negotiation over a
:class:`Channel`.  The channel hides the socket and the deadline, so methods
are written against messages, not I/O.
"""

from __future__ import annotations

from .._secret import guard_secrets
from .base import AuthMethod, Channel
from .none import NoAuth
from .userpass import UsernamePasswordAuth

__all__ = ["AuthMethod", "Channel", "NoAuth", "UsernamePasswordAuth", "methods_for"]

# Stateless, so one instance serves every handshake.
_NO_AUTH = NoAuth()


@guard_secrets
def methods_for(username: str | bytes | None, password: str | bytes | None) -> list[AuthMethod]:
    """The methods to offer, in order of preference, for the given credentials."""
    if username is None:
        return [_NO_AUTH]
    return [_NO_AUTH, UsernamePasswordAuth(username, password)]
