"""Method 0x00, no authentication: nothing to negotiate."""

from __future__ import annotations

from .._codec import Method
from .base import Channel


class NoAuth:
    """RFC 1928 method X'00' (no authentication required)."""

    code = Method.NO_AUTH

    def authenticate(self, channel: Channel) -> None:
        """Nothing is exchanged for this method."""

    def first_message(self) -> bytes:
        """Nothing: the request follows the greeting directly."""
        return b""

    def finish(self, channel: Channel) -> None:
        """Nothing is exchanged for this method."""
