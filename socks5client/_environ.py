"""Which SOCKS5 proxy the environment asks for: one reading shared by every integration.

The variables, as curl and requests use them:

* ``<scheme>_proxy`` / ``<SCHEME>_PROXY`` (``http_proxy``, ``https_proxy``...)
  for requests of that URL scheme;
* otherwise ``all_proxy`` / ``ALL_PROXY``, then ``socks_proxy`` /
  ``SOCKS_PROXY``;
* ``no_proxy`` / ``NO_PROXY``: destinations that go direct (see
  :mod:`._noproxy`; localhost and loopback always do).

Lowercase wins over uppercase, and a value that is empty or only spaces
counts as unset.  Under CGI (``REQUEST_METHOD`` set) uppercase
``HTTP_PROXY`` is ignored: it comes from the request's ``Proxy:`` header
("httpoxy").  The first variable that applies decides:

* an HTTP proxy (``http://`` or ``https://``, or no scheme at all:
  ``host:port``, which curl and requests read as HTTP) is meant for another
  program: there is no SOCKS5 proxy for that URL, and ``None`` is returned
  rather than falling back to ``ALL_PROXY``;
* anything else must be a valid ``socks5://`` or ``socks5h://`` URL, or it
  is an error: a SOCKS4 or plain ``socks://`` URL, a scheme typo
  (``sock5h://``), an unknown scheme, or a SOCKS5 URL with missing or extra
  slashes (``socks5h:/host:1080``).  Going direct instead would leave the
  network outside the proxy the user set, with names resolved here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._noproxy import NoProxy
from ._secret import guard_secrets
from .proxy import Proxy

__all__ = ["proxy_from_environment", "proxy_url_from_environment"]

#: Schemes of proxies for other programs (curl, requests): not ours to use,
#: nor an error.
_HTTP_SCHEMES = frozenset({"http", "https"})
#: SOCKS versions other than 5, which get their own message.
_OTHER_SOCKS_SCHEMES = frozenset({"socks", "socks4", "socks4a", "socks5a"})


def _get(environ: Mapping[str, str], name: str) -> str | None:
    keys = [name.lower(), name.upper()]
    if keys[1] == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
        # Under CGI, HTTP_PROXY is the client's "Proxy:" request header
        # ("httpoxy"): whoever sends the request would choose the proxy.
        # Only the lowercase name counts then, as in urllib and curl.
        del keys[1]
    for key in keys:
        # Spaces only count as unset, like an empty value: otherwise
        # "https_proxy= " would mean "direct" and hide a valid ALL_PROXY.
        value = (environ.get(key) or "").strip()
        if value:
            return value
    return None


def _is_for_another_program(url: str) -> bool:
    """Whether ``url`` (stripped) names an HTTP proxy, which is not for us.

    Only an exact ``http://``/``https://`` scheme, or no scheme at all
    (``host:port``, ``user:pw@host``, which curl and requests take for an
    HTTP proxy), is.  Anything that mentions SOCKS is ours even when
    mangled (``socks5h:/host``, ``socks5h:host:1080``, ``sock5h//host``):
    such a value cannot be someone else's HTTP proxy, and skipping it would
    send the request direct.
    """
    scheme, sep, _ = url.partition("://")
    if sep:
        return scheme.lower() in _HTTP_SCHEMES
    userinfo, at, host = url.rpartition("@")
    if at and "/" not in userinfo and userinfo.count(":") <= 1:
        # "user:pw@host:port": the host is what names the proxy (a user
        # name with "sock" in it says nothing).
        return "sock" not in host.partition(":")[0].lower()
    return "sock" not in url.partition(":")[0].lower()


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
            return name.upper(), value
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

    None means: no proxy variable applies, the one that applies names an
    HTTP proxy (``http://``, ``https://`` or no scheme), or ``host`` matches
    ``no_proxy`` (go direct).  Any other value that is not a valid SOCKS5
    URL raises :class:`ValueError` (SOCKS4, a scheme typo, a malformed
    ``socks5h:/host``); the message names the variable and the problem,
    never the password.

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
    if _is_for_another_program(url):
        return None
    scheme = url.partition("://")[0].lower()
    if scheme in _OTHER_SOCKS_SCHEMES:
        # The scheme shown comes from the fixed set, never from the value.
        raise ValueError(
            f"{name} names a proxy that is not SOCKS5 ({scheme}://);"
            " socks5client speaks SOCKS5 only: use socks5h:// (or socks5://)"
        )
    if host is not None and NoProxy.from_setting(None, env).matches(host, port):
        return None
    # Every other value is a SOCKS5 URL or an error (a typo in the scheme,
    # missing slashes...): Proxy.from_url says which, as it does for the
    # command line's --proxy, without quoting the user info.
    try:
        return Proxy.from_url(url)
    except ValueError as exc:
        # Proxy.from_url's message says what is wrong but not where the URL
        # came from.  Only the text is kept, and the error is raised outside
        # the except block: the original's traceback holds this frame.
        problem = str(exc)
    raise ValueError(f"{name}: {problem}")
