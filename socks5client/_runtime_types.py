"""Run-time stand-ins for the few ``typing`` names the package needs while it is imported.

``import typing`` takes about 3 ms, and as much again for the ``re``,
``contextlib`` and ``warnings`` it brings along, where socks5client's own
modules take about 6 ms; and a ``typing.NamedTuple`` class takes twice as
long to make as a ``collections.namedtuple``.  So the modules that
``import socks5client`` loads take these names from here at run time, and
from ``typing`` only when type checking::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from ._runtime_types import NamedTuple

(mypy takes any ``if TYPE_CHECKING:`` as true, so it never sees this
module through such an import.)  Each stand-in does what the package uses
of its ``typing`` original and no more:

* :data:`NamedTuple`: class syntax only.  The class is a plain
  ``collections.namedtuple`` with the body's fields, defaults, docstring,
  methods, properties and other attributes, as ``typing`` makes it; only its
  ``__annotations__`` keep the annotation strings, not ``ForwardRef`` objects.
* :class:`Generic`: ``C[...]`` is ``C`` itself; no ``__parameters__``.
* :func:`TypeVar`: the name, enough to write ``Generic[_T]``.
* :class:`Protocol`: a protocol class cannot be instantiated; ``isinstance``
  against one is a plain class check (no protocol here is runtime-checkable).
* :func:`cast`: returns its value.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Generic", "NamedTuple", "Protocol", "TypeVar", "cast"]

# The names typing's own NamedTuple refuses in a class body, or leaves out.
_PROHIBITED = frozenset(
    {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults"}
    | {"_make", "_replace", "_asdict", "_source"}
)
_SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})
# Called through a plain name: mypy checks direct namedtuple() calls as
# class definitions, which these (names known only at run time) cannot be.
_namedtuple: Any = collections.namedtuple


class _NamedTupleMeta(type):
    def __new__(cls, typename: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if bases != (NamedTuple,):
            raise TypeError("a NamedTuple class can only derive from NamedTuple")
        annotations: dict[str, Any] = namespace.get("__annotations__", {})
        defaults: list[Any] = []
        for field in annotations:
            if field in namespace:
                defaults.append(namespace[field])
            elif defaults:
                raise TypeError(f"Non-default namedtuple field {field} cannot follow default field")
        made: Any = _namedtuple(
            typename, list(annotations), defaults=defaults, module=namespace["__module__"]
        )
        made.__annotations__ = made.__new__.__annotations__ = dict(annotations)
        for key, value in namespace.items():
            if key in _PROHIBITED:
                raise AttributeError(f"Cannot overwrite NamedTuple attribute {key}")
            if key not in _SPECIAL and key not in annotations:
                setattr(made, key, value)
        return made


#: ``class Point(NamedTuple): ...`` makes a ``collections.namedtuple`` class.
#: (Made with ``type.__new__`` so that making this base is not itself
#: taken for a named tuple definition.)
NamedTuple: Any = type.__new__(_NamedTupleMeta, "NamedTuple", (), {"__module__": __name__})


class Generic:
    """Base of generic classes at run time: subscripting one returns it unchanged."""

    __slots__ = ()

    def __class_getitem__(cls, params: object) -> Any:
        return cls


def TypeVar(name: str, *constraints: object, **options: object) -> Any:
    """A type variable at run time: its name, which only ever subscripts :class:`Generic`."""
    return name


class Protocol:
    """Base of protocol classes at run time: those cannot be instantiated, as in ``typing``."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if Protocol in cls.__bases__:
            raise TypeError("Protocols cannot be instantiated")
        return super().__new__(cls)


def cast(typ: object, val: Any) -> Any:
    """``val`` itself, as ``typing.cast`` returns it."""
    return val
