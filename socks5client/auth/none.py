"""Method 0x00, no authentication: nothing to negotiate."""

from __future__ import annotations

from .._codec import Method

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._conversation import Steps


class NoAuth:
    """RFC 1928 method X'00' (no authentication required)."""

    code = Method.NO_AUTH

    def negotiate(self, command: int | None = None) -> Steps[None]:
        """Nothing is exchanged for this method."""
        return
        yield  # a generator that yields nothing

    def script(self) -> tuple[()]:
        """Nothing is exchanged."""
        return ()

    def first_message(self) -> bytes:
        """Nothing: the request follows the greeting directly."""
        return b""

    finish = negotiate
