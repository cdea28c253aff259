"""Method 0x02, RFC 1929 username/password."""

from __future__ import annotations

from .._codec import Method, encode_userpass, parse_auth_reply
from .._conversation import SEND, receive
from .._secret import Secret, guard_secrets
from ..errors import SOCKS5AuthError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._conversation import Steps

#: The proxy's answer to the credentials, as timeout messages name it.
_REPLY = "username/password reply"


class UsernamePasswordAuth:
    """RFC 1929 sub-negotiation.  The password never appears in a repr or error."""

    code = Method.USERNAME_PASSWORD

    @guard_secrets
    def __init__(self, username: str | bytes, password: str | bytes | None) -> None:
        # Encoding here validates the lengths before any connection is made.
        # The request holds the password: it stays wrapped, so that neither
        # this object's attributes nor the frames that send it (and may time
        # out) show it.
        self._request = Secret(encode_userpass(username, password if password is not None else b""))
        self._username = username

    def __repr__(self) -> str:
        return f"UsernamePasswordAuth(username={self._username!r}, password='***')"

    def negotiate(self, command: int | None = None) -> Steps[None]:
        """Send the credentials; raise :class:`SOCKS5AuthError` if refused."""
        yield (SEND, self._request)
        yield from self.finish()

    def script(self) -> tuple[Secret[bytes], bytes, str]:
        """The request, and the reply that accepts it (version 1, status 0)."""
        return (self._request, b"\x01\x00", _REPLY)

    def first_message(self) -> Secret[bytes]:
        """The RFC 1929 request (wrapped: it holds the password)."""
        return self._request

    def finish(self) -> Steps[None]:
        """Read the proxy's verdict on the credentials; raise if refused."""
        reply = yield from receive(parse_auth_reply, _REPLY)
        if not reply.ok:
            raise SOCKS5AuthError(
                f"proxy rejected the username/password for user {self._username!r}"
                f" (status {reply.status:#04x})"
            )
