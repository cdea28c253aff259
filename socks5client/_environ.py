"""Which SOCKS5 proxy the environment asks for: one reading shared by every integration.

The variables, as curl and requests use them:

* ``<scheme>_proxy`` / ``<SCHEME>_PROXY`` (``http_proxy``, ``https_proxy``...)
  for requests of that URL scheme;
* otherwise ``all_proxy`` / ``ALL_PROXY``, then ``socks_proxy`` /
  ``SOCKS_PROXY``;
* ``no_proxy`` / ``NO_PROXY``: destinations that go direct (see
  :mod:`._noproxy`; localhost and loopback always do).

Lowercase wins over uppercase, and an empty value counts as unset.  Under
CGI (``REQUEST_METHOD`` set) uppercase ``HTTP_PROXY`` is ignored: it comes
from the request's ``Proxy:`` header ("httpoxy").  The
first variable that applies decides: if it names a proxy that is not
SOCKS5 (an HTTP proxy in ``https_proxy``, say), there is no SOCKS5 proxy for
that URL, and ``None`` is returned rather than falling back to
``ALL_PROXY``.  A SOCKS4 or plain ``socks://`` URL is an error, since going
direct instead would leave the network outside the proxy the user set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._noproxy import NoProxy
from ._secret import guard_secrets
from .proxy import Proxy

__all__ = ["proxy_from_environment", "proxy_url_from_environment"]

_SOCKS5_SCHEMES = ("socks5://", "socks5h://")
_OTHER_SOCKS_SCHEMES = ("socks://", "socks4://", "socks4a://", "socks5a://")


def _get(environ: Mapping[str, str], name: str) -> str | None:
    keys = [name.lower(), name.upper()]
    if keys[1] == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
        # Under CGI, HTTP_PROXY is the client's "Proxy:" request header
        # ("httpoxy"): whoever sends the request would choose the proxy.
        # Only the lowercase name counts then, as in urllib and curl.
        del keys[1]
    for key in keys:
        value = environ.get(key)
        if value:
            return value
    return None


def proxy_url_from_environment(
    scheme: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(variable, url)`` of the proxy variable that applies to ``scheme``, if any is set.

    Any URL is returned, SOCKS5 or not; :func:`proxy_from_environment`
    judges it.
    """
    env = os.environ if environ is None else environ
    names = [f"{scheme}_proxy"] if scheme else []
    for name in (*names, "all_proxy", "socks_proxy"):
        value = _get(env, name)
        if value is not None:
            return name.upper(), value.strip()
    return None


@guard_secrets
def proxy_from_environment(
    scheme: str | None = None,
    host: str | None = None,
    environ: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Proxy | None:
    """The SOCKS5 proxy the environment sets for a request to ``scheme://host:port``, or None.

    ``port`` lets ``no_proxy`` entries with a port (``example.com:8080``)
    apply; without it they do not.

    None means: no proxy variable applies, the one that applies is not a
    SOCKS5 proxy, or ``host`` matches ``no_proxy`` (go direct).  A SOCKS4 URL
    raises :class:`ValueError`, and so does a malformed SOCKS5 URL; the
    message names the variable and the problem, never the password.

    The URL, password included, sits in this frame's locals, and this is
    called at every request, below the caller's frames: ``guard_secrets``
    makes the ``ValueError`` a fresh one whose traceback starts above this
    frame and that chains to nothing, so an error reporter that records
    traceback locals and ``__context__`` never meets the URL.
    """
    env = os.environ if environ is None else environ
    found = proxy_url_from_environment(scheme, env)
    if found is None:
        return None
    name, url = found
    lowered = url.lower()
    if lowered.startswith(_OTHER_SOCKS_SCHEMES):
        raise ValueError(
            f"{name} names a proxy that is not SOCKS5 ({lowered.split('://', 1)[0]}://);"
            " socks5client speaks SOCKS5 only: use socks5h:// (or socks5://)"
        )
    if not lowered.startswith(_SOCKS5_SCHEMES):
        return None
    if host is not None and NoProxy.from_setting(None, env).matches(host, port):
        return None
    try:
        return Proxy.from_url(url)
    except ValueError as exc:
        # Proxy.from_url's message says what is wrong but not where the URL
        # came from.  Only the text is kept, and the error is raised outside
        # the except block: the original's traceback holds this frame.
        problem = str(exc)
    raise ValueError(f"{name}: {problem}")
