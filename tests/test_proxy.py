"""Proxy descriptions, proxy URLs, PySocks-style arguments and the default proxy."""

from __future__ import annotations

import pickle

import pytest

import socks5client
from socks5client import Proxy
from socks5client.proxy import proxy_from_args


def test_defaults() -> None:
    p = Proxy("proxy.example")
    assert (p.host, p.port, p.username, p.password, p.remote_dns) == (
        "proxy.example",
        1080,
        None,
        None,
        True,
    )


@pytest.mark.parametrize(
    ("url", "host", "port", "remote_dns"),
    [
        ("socks5h://proxy.example", "proxy.example", 1080, True),
        ("socks5://proxy.example:9050", "proxy.example", 9050, False),
        ("SOCKS5H://10.0.0.1:1/", "10.0.0.1", 1, True),
        ("socks5://[::1]:1080", "::1", 1080, False),
        ("socks5h://[2001:db8::1]", "2001:db8::1", 1080, True),
    ],
)
def test_from_url(url: str, host: str, port: int, remote_dns: bool) -> None:
    p = Proxy.from_url(url)
    assert (p.host, p.port, p.remote_dns, p.username) == (host, port, remote_dns, None)


def test_from_url_percent_decodes_credentials() -> None:
    p = Proxy.from_url("socks5h://us%40er:p%3Aa%2Fss%20word@h:1")
    assert p.username == "us@er"
    assert p.password == "p:a/ss word"


def test_from_url_keeps_credential_bytes_that_are_not_utf8() -> None:
    # Latin-1 "café": sent as the byte E9, not as U+FFFD's three bytes (which
    # would also make caf%E8 the same password).
    p = Proxy.from_url("socks5h://caf%C3%A9:caf%E9@h:1")
    assert (p.username, p.password) == ("café", b"caf\xe9")
    assert Proxy.from_url("socks5h://u:caf%E8@h:1").password == b"caf\xe8"


def test_from_url_with_user_and_no_password() -> None:
    p = Proxy.from_url("socks5h://alice@h")
    assert (p.username, p.password) == ("alice", None)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://h:1080", "scheme 'http'"),
        ("socks4://h:1080", "scheme 'socks4'"),
        ("h:1080", "scheme"),
        ("proxy.example", "no scheme"),
        ("socks5://:1080", "no host"),
        ("socks5://", "no host"),
        ("socks5://h:65536", "port"),
        ("socks5://h:port", "port"),
        ("socks5://h:0", "port 0"),
        ("socks5://h:1080/path", "path"),
        ("socks5://h:1080?x=1", "query"),
        # Which one was meant: the GSS-API asked for first, or its removal?
        ("socks5h://h:1080?gssapi=1&gssapi=0", "gssapi parameter twice"),
        (
            "socks5h://h:1080?gssapi=1&gssapi_protection=confidentiality&gssapi_protection=none",
            "gssapi_protection parameter twice",
        ),
        ("socks5h://h:1080?pipeline&pipeline=0", "pipeline parameter twice"),
        # Names no lookup can take: refused here, not as a UnicodeError at
        # each connection.
        ("socks5h://proxy..example:1080", "not a valid host name"),
        ("socks5h://.:1080", "not a valid host name"),
        (f"socks5h://{'a' * 64}.example:1080", "not a valid host name"),
    ],
)
def test_bad_urls_name_the_problem(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Proxy.from_url(url)


@pytest.mark.parametrize("host", ["proxy..example", "a\x00.example", "-" * 64])
def test_bad_host_name_is_refused_at_construction(host: str) -> None:
    with pytest.raises(ValueError, match="proxy host"):
        Proxy(host, 1080)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_bad_port_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        Proxy("h", port)


def test_long_username_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="username"):
        Proxy("h", username="u" * 256, password="x")


def test_long_password_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="password") as info:
        Proxy("h", username="u", password="S" * 256)
    assert "SSSS" not in str(info.value)


def test_password_without_username_is_refused() -> None:
    with pytest.raises(ValueError, match="without a username"):
        Proxy("h", password="x")


def test_repr_and_str_mask_the_password() -> None:
    p = Proxy.from_url("socks5h://alice:hunter2@[::1]:1081")
    assert "hunter2" not in repr(p)
    assert "hunter2" not in str(p)
    assert "alice" in repr(p)
    assert str(p) == "socks5h://alice:***@[::1]:1081"


def test_proxy_is_immutable_hashable_and_picklable() -> None:
    p = Proxy("h", 1, username="u", password="pw")
    with pytest.raises(AttributeError):
        p.port = 2  # type: ignore[misc]
    assert p == Proxy("h", 1, username="u", password="pw")
    assert len({p, Proxy("h", 1, username="u", password="pw")}) == 1
    assert pickle.loads(pickle.dumps(p)) == p


def test_pysocks_style_arguments() -> None:
    p = proxy_from_args(socks5client.SOCKS5, "h", 1081, False, "u", "pw")
    assert p == Proxy("h", 1081, username="u", password="pw", remote_dns=False)
    assert proxy_from_args(socks5client.PROXY_TYPE_SOCKS5, "h") == Proxy("h", 1080)


def test_no_arguments_mean_no_proxy() -> None:
    assert proxy_from_args() is None


@pytest.mark.parametrize(
    ("ptype", "match"),
    [(socks5client.SOCKS4, "SOCKS4"), (socks5client.HTTP, "HTTP"), (9, "proxy type 9")],
)
def test_other_proxy_types_are_refused_clearly(ptype: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        proxy_from_args(ptype, "h", 1080)


def test_url_or_proxy_as_first_argument() -> None:
    assert proxy_from_args("socks5://h:1") == Proxy("h", 1, remote_dns=False)
    p = Proxy("h")
    assert proxy_from_args(p) is p
    with pytest.raises(ValueError, match="not both"):
        proxy_from_args(p, "other")


def test_address_without_type_is_refused() -> None:
    with pytest.raises(ValueError, match="proxy_type"):
        proxy_from_args(None, "h", 1080)


def test_default_proxy_round_trip() -> None:
    try:
        socks5client.set_default_proxy(socks5client.SOCKS5, "h", 1082)
        assert socks5client.get_default_proxy() == Proxy("h", 1082)
        socks5client.set_default_proxy("socks5://h2")
        assert socks5client.get_default_proxy() == Proxy("h2", remote_dns=False)
    finally:
        socks5client.set_default_proxy()
    assert socks5client.get_default_proxy() is None


def test_url_quotes_a_username_with_reserved_characters() -> None:
    p = Proxy("h", 1, username="a:b@c", password="pw")
    assert p.url == "socks5h://a%3Ab%40c:***@h:1"
    assert Proxy.from_url(p.url.replace("***", "pw")) == p
