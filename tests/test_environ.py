"""Proxy selection from the environment (socks5client._environ), pure logic."""

from __future__ import annotations

import pytest
from secret_places import password_places

from socks5client import Proxy
from socks5client._environ import proxy_from_environment, proxy_url_from_environment

S5H = "socks5h://127.0.0.1:1080"
S5 = "socks5://user:pw@[::1]:9050"


@pytest.mark.parametrize(
    ("environ", "scheme", "expected"),
    [
        ({}, "https", None),
        ({"ALL_PROXY": S5H}, "https", S5H),
        ({"all_proxy": S5H, "ALL_PROXY": "socks5h://other:1"}, "https", S5H),  # lowercase wins
        ({"all_proxy": "", "ALL_PROXY": S5H}, "https", S5H),  # empty counts as unset
        ({"https_proxy": S5, "ALL_PROXY": S5H}, "https", S5),  # the scheme's own first
        ({"HTTPS_PROXY": S5, "ALL_PROXY": S5H}, "https", S5),
        ({"http_proxy": S5, "ALL_PROXY": S5H}, "https", S5H),  # another scheme's
        ({"socks_proxy": S5H}, "http", S5H),
        ({"SOCKS_PROXY": S5H, "all_proxy": S5}, "http", S5),  # ALL_PROXY before socks_proxy
        # The first variable that applies decides: an HTTP proxy there means
        # no SOCKS5 proxy for this URL, not a fall-back to ALL_PROXY.
        ({"https_proxy": "http://corp:3128", "ALL_PROXY": S5H}, "https", None),
        # Under CGI, HTTP_PROXY is the request's "Proxy:" header (httpoxy):
        # ignored, whatever it names, while the lowercase name still counts.
        (
            {"REQUEST_METHOD": "GET", "HTTP_PROXY": "socks5h://evil:1", "ALL_PROXY": S5H},
            "http",
            S5H,
        ),
        ({"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://evil:1", "ALL_PROXY": S5H}, "http", S5H),
        ({"REQUEST_METHOD": "GET", "http_proxy": S5, "ALL_PROXY": S5H}, "http", S5),
        ({"REQUEST_METHOD": "GET", "HTTPS_PROXY": S5, "ALL_PROXY": S5H}, "https", S5),
    ],
)
def test_which_variable_applies(environ: dict[str, str], scheme: str, expected: str | None) -> None:
    proxy = proxy_from_environment(scheme, "example.com", environ)
    assert proxy == (None if expected is None else Proxy.from_url(expected))


def test_the_url_and_its_variable_are_reported() -> None:
    env = {"https_proxy": "http://corp:3128"}
    assert proxy_url_from_environment("https", env) == ("HTTPS_PROXY", "http://corp:3128")
    assert proxy_url_from_environment(None, {"ALL_PROXY": S5H}) == ("ALL_PROXY", S5H)
    assert proxy_url_from_environment("http", {}) is None


@pytest.mark.parametrize(
    ("host", "direct"),
    [
        ("example.com", True),
        ("www.example.com", True),
        ("badexample.com", False),
        ("10.1.2.3", True),
        ("localhost", True),  # always local
        ("127.0.0.1", True),
        ("other.org", False),
    ],
)
def test_no_proxy_sends_matching_hosts_direct(host: str, direct: bool) -> None:
    env = {"ALL_PROXY": S5H, "no_proxy": "example.com, 10.0.0.0/8"}
    proxy = proxy_from_environment("http", host, env)
    assert (proxy is None) is direct


@pytest.mark.parametrize("url", ["socks4://h:1080", "socks://h:1080", "SOCKS4A://h:1"])
def test_a_socks4_proxy_is_an_error_not_a_direct_connection(url: str) -> None:
    with pytest.raises(ValueError, match="SOCKS5 only"):
        proxy_from_environment("http", "example.com", {"ALL_PROXY": url})


def test_a_malformed_url_does_not_show_its_password() -> None:
    with pytest.raises(ValueError) as info:
        proxy_from_environment("http", "h", {"ALL_PROXY": "socks5h://u:Sekr1t@h:99999"})
    assert "Sekr1t" not in str(info.value)


def test_no_proxy_entries_with_a_port_apply_to_that_port() -> None:
    env = {"ALL_PROXY": S5H, "NO_PROXY": "example.com:8080"}
    assert proxy_from_environment("http", "example.com", env, port=8080) is None
    assert proxy_from_environment("http", "example.com", env, port=80) is not None
    assert proxy_from_environment("http", "example.com", env) is not None


# --------------------------------------------------------------------------
# No password reachable from the error (docs/errors.md): not in the message,
# nor in repr() of a local of any socks5client frame in the traceback of the
# error or of an exception chained to it.  Error reporters record those.

#: Nothing else in this file contains this text.
PASSWORD = "Pw-environ-7a2c-never-LEAK"

#: The malformed URLs a user may put in a proxy variable, by kind.
MALFORMED = {
    # A '#' in the password that was not percent-encoded: a fragment.
    "unencoded-hash": f"socks5h://user:{PASSWORD}#1@127.0.0.1:1080",
    "socks4": f"socks4://user:{PASSWORD}@127.0.0.1:1080",
    "bad-port": f"socks5h://user:{PASSWORD}@127.0.0.1:99999",
}


@pytest.mark.parametrize("url", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_url_leaves_its_password_in_no_traceback_local(url: str) -> None:
    with pytest.raises(ValueError) as info:
        proxy_from_environment("http", "example.com", {"ALL_PROXY": url})
    assert password_places(info.value, PASSWORD) == []
    # Chained to nothing, and still saying where the URL came from.
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert str(info.value).startswith("ALL_PROXY")
