"""What ``import socks5client`` costs: the modules it loads, and the stand-ins that spare some.

The package keeps ``typing`` (and the ``re``, ``contextlib`` and ``warnings``
it brings) and ``threading`` out of its import, using the run-time stand-ins
of ``socks5client._runtime_types``; the second half of this file checks that
those behave like the ``typing`` originals the type checker sees.
"""

from __future__ import annotations

import copy
import importlib
import os
import pickle
import subprocess
import sys
import types
import typing
from typing import Any

import pytest

import socks5client
from socks5client import _codec, _runtime_types, _secret, proxy
from socks5client.auth import AuthMethod, Protection

#: Modules ``import socks5client`` must not load.  ``logging`` and ``idna``
#: only when used (``debug_logger``, a non-ASCII hostname); ``typing`` and
#: ``threading`` not at all.
NOT_IMPORTED = ("idna", "ipaddress", "logging", "threading", "typing")


def _modules_loaded_by_import() -> set[str]:
    """The modules a fresh interpreter loads for ``import socks5client``, and only those.

    ``-S`` skips ``site``, whose ``.pth`` files (an editable install's
    finder, say) would load modules of their own first; ``-E`` ignores
    ``PYTHONPATH`` and the like.  The package is found where this process
    found it.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(socks5client.__file__)))
    code = (
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        "before = set(sys.modules)\n"
        "import socks5client\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-E", "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(root),
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_import_loads_no_expensive_module() -> None:
    loaded = _modules_loaded_by_import()
    assert "socks5client.sock" in loaded  # the subprocess did import the package
    unwanted = sorted(loaded.intersection(NOT_IMPORTED))
    assert not unwanted, f"import socks5client loaded {unwanted}"


# -- the NamedTuple stand-in --------------------------------------------------

# Both bases typed Any, so that mypy analyses neither class as a NamedTuple
# (it refuses a plain class attribute in one) and treats the two alike.
_TypingNamedTuple: Any = typing.NamedTuple
_FastNamedTuple: Any = _runtime_types.NamedTuple


class TypingPoint(_TypingNamedTuple):  # type: ignore[misc]
    """A point, the typing way."""

    x: int
    y: str = "b"
    z: tuple[int, ...] = ()

    #: Not a field: no annotation.
    LIMIT = 3

    @property
    def double(self) -> int:
        """Twice ``x``."""
        return self.x * 2

    def shifted(self, by: int) -> TypingPoint:
        return self._replace(x=self.x + by)  # type: ignore[no-any-return]


class FastPoint(_FastNamedTuple):  # type: ignore[misc]
    """A point, the typing way."""

    x: int
    y: str = "b"
    z: tuple[int, ...] = ()

    #: Not a field: no annotation.
    LIMIT = 3

    @property
    def double(self) -> int:
        """Twice ``x``."""
        return self.x * 2

    def shifted(self, by: int) -> FastPoint:
        return self._replace(x=self.x + by)  # type: ignore[no-any-return]


def _same_text(fast: str, typed: str) -> bool:
    return fast.replace("FastPoint", "TypingPoint") == typed


def test_namedtuple_class_is_like_typings() -> None:
    assert FastPoint._fields == TypingPoint._fields == ("x", "y", "z")
    assert FastPoint._field_defaults == TypingPoint._field_defaults == {"y": "b", "z": ()}
    assert FastPoint.__doc__ == TypingPoint.__doc__ == "A point, the typing way."
    assert FastPoint.__module__ == TypingPoint.__module__ == __name__
    assert FastPoint.__qualname__ == FastPoint.__name__ == "FastPoint"
    assert FastPoint.__mro__[1:] == TypingPoint.__mro__[1:] == (tuple, object)
    assert FastPoint.__slots__ == TypingPoint.__slots__ == ()
    assert FastPoint.LIMIT == TypingPoint.LIMIT == 3
    assert FastPoint.double.__doc__ == TypingPoint.double.__doc__
    assert typing.get_type_hints(FastPoint) == typing.get_type_hints(TypingPoint)


def test_namedtuple_instances_are_like_typings() -> None:
    fast, typed = FastPoint(1), TypingPoint(1)
    assert _same_text(repr(fast), repr(typed))
    assert fast == typed == (1, "b", ())
    assert hash(fast) == hash(typed)
    assert isinstance(fast, tuple)
    assert not hasattr(fast, "__dict__")
    assert fast.double == typed.double == 2
    assert fast.shifted(2) == typed.shifted(2) == (3, "b", ())
    assert type(fast.shifted(2)) is FastPoint
    assert fast._replace(y="c") == typed._replace(y="c")
    assert type(fast._replace(y="c")) is FastPoint
    assert fast._asdict() == typed._asdict() == {"x": 1, "y": "b", "z": ()}
    assert FastPoint._make([4, "d", (5,)]) == TypingPoint._make([4, "d", (5,)])
    assert FastPoint(x=1, z=(2,)) == TypingPoint(x=1, z=(2,))
    with pytest.raises(TypeError):
        FastPoint()
    with pytest.raises(AttributeError):
        fast.x = 2
    assert copy.copy(fast) == fast
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(fast, protocol))
        assert back == fast and type(back) is FastPoint


def _define(base: object, **body: object) -> type:
    """``class Bad(base)`` with ``body`` as its namespace (plus this module's name)."""
    namespace = {"__module__": __name__, **body}
    return types.new_class("Bad", (base,), {}, lambda ns: ns.update(namespace))


def test_namedtuple_refuses_what_typing_refuses() -> None:
    for base in (_FastNamedTuple, _TypingNamedTuple):
        # A field without a default after one with a default.
        with pytest.raises(TypeError):
            _define(base, __annotations__={"a": "int", "b": "int"}, a=1)
        # A body that would replace one of namedtuple's own methods.
        with pytest.raises(AttributeError):
            _define(base, __annotations__={"a": "int"}, _replace=len)
        assert _define(base, __annotations__={"a": "int"})(1) == (1,)


def test_package_namedtuples() -> None:
    reply = _codec.Reply(0, _codec.AddressType.IPV4, "192.0.2.1", 1080)
    assert reply.succeeded and not reply._replace(reply_code=1).succeeded
    assert repr(reply) == (
        "Reply(reply_code=0, atyp=<AddressType.IPV4: 1>, host='192.0.2.1', port=1080)"
    )
    assert pickle.loads(pickle.dumps(reply)) == reply
    assert _codec.AuthReply(0).ok and not _codec.AuthReply(1).ok
    assert _codec.NeedData(3).size == 3
    assert _codec.Reply.__module__ == "socks5client._codec"
    assert _codec.Reply.__doc__ is not None and _codec.Reply.__doc__.startswith("A reply to")
    # (socks5client.patch is the function: the module is found by name.)
    patch_module = importlib.import_module("socks5client.patch")
    settings = patch_module._Settings(proxy.Proxy("127.0.0.1"), None, False, False)
    assert settings._fields == ("proxy", "no_proxy", "udp", "bind")
    assert pickle.loads(pickle.dumps(settings)) == settings


# -- the other stand-ins ------------------------------------------------------


def test_generic_subscription_is_the_class() -> None:
    assert _codec.Parsed[int] is _codec.Parsed
    assert _secret.Secret[bytes] is _secret.Secret
    parsed = _codec.Parsed("message", 2)
    assert parsed == _codec.Parsed("message", 2) and parsed.consumed == 2
    assert not hasattr(parsed, "__dict__")  # the base adds no __dict__ to a slotted class
    assert _secret.Secret[bytes](b"pw").reveal() == b"pw"


def test_protocols_cannot_be_instantiated() -> None:
    for protocol in (AuthMethod, Protection):
        with pytest.raises(TypeError):
            protocol()  # type: ignore[misc]


def test_type_aliases_still_exist_at_run_time() -> None:
    assert proxy.ProxyLike == typing.Union[proxy.Proxy, str]
    assert proxy.Credential == typing.Union[str, bytes]
    assert {"Credential", "ProxyLike"} <= set(dir(proxy))
    with pytest.raises(AttributeError):
        proxy.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
