"""Keeping passwords out of reprs, error messages and traceback locals.

Error reporters (Sentry, ``pytest -l``, ``cgitb``...) record ``repr()`` of
every local of every frame in a traceback, and follow ``__cause__`` and
``__context__``.  A password must therefore never sit in plain form in a
local of a frame that can raise, nor in an exception's message, arguments or
chain.  Two tools serve that:

* :class:`Secret` wraps a value so that its ``repr`` is masked; code passes
  the wrapper around and unwraps it only inside the call that needs it.
* :func:`guard_secrets` decorates the functions that take raw credentials
  as parameters (``Proxy()``, ``Proxy.from_url``, ``set_proxy``...), so an
  error they raise does not keep those parameters reachable.
"""

from __future__ import annotations

import functools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Generic, TypeVar, cast

    _F = TypeVar("_F", bound=Callable[..., Any])
else:
    # Run-time stand-ins, far cheaper to import (see _runtime_types).
    from ._runtime_types import Generic, TypeVar, cast

__all__ = ["Secret", "guard_secrets"]

_T = TypeVar("_T")

_MASKED = "Secret('***')"


class Secret(Generic[_T]):
    """A value (a password, or bytes that contain one) with a masked ``repr``.

    ``reveal()`` returns the value; ``repr()`` and ``str()`` never show it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: _T) -> None:
        self._value = value

    def reveal(self) -> _T:
        """The wrapped value.  Use it in an expression, not in a named local."""
        return self._value

    def __repr__(self) -> str:
        return _MASKED

    __str__ = __repr__


#: Validation errors: their messages are ours and name problems, never
#: values, so a copy of them is safe to show.
_VALIDATION_ERRORS = (ValueError, TypeError)


def guard_secrets(func: _F) -> _F:
    """Make ``func``'s failures carry none of its (possibly secret) arguments.

    When ``func`` raises a ``ValueError`` or ``TypeError`` (exactly those
    classes: the validation errors, whose messages we write), the caller gets
    a fresh exception of the same class and arguments, raised outside the
    ``except`` block so it has no ``__context__``, and whose traceback starts
    at this wrapper; the original's finished frames are cleared too.  A
    ``UnicodeError`` (whose arguments are the string it failed on) becomes
    such a fresh ``ValueError`` that keeps only its reason.  Any
    other exception passes through unchanged, except that ``func``'s own
    frame, whose parameters are the raw credentials, is cleared.  In both
    cases the wrapper's own ``args``/``kwargs`` are gone before it re-raises.
    """
    code = getattr(func, "__code__", None)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            # This frame is part of every traceback that passes through it.
            del args, kwargs
            clean: BaseException
            if isinstance(exc, UnicodeError):
                # A codec's error (a ValueError) carries the whole string it
                # failed on, a password perhaps, in its args and ``object``:
                # only the reason is kept.
                reason = getattr(exc, "reason", type(exc).__name__)
                clean = ValueError(f"a proxy argument cannot be encoded: {reason}")
            elif type(exc) not in _VALIDATION_ERRORS:
                tb = exc.__traceback__
                inner = tb.tb_next if tb is not None else None
                if inner is not None and inner.tb_frame.f_code is code:
                    inner.tb_frame.clear()
                raise
            else:
                clean = type(exc)(*exc.args)
            # The original is dropped here; clearing its frames (those below
            # this one, all finished) drops the credentials at once even if
            # something still refers to it.  Frames still executing raise
            # RuntimeError, which clear_frames ignores.
            import traceback  # here: only errors need it, and it is slow to import

            traceback.clear_frames(exc.__traceback__)
        raise clean

    return cast("_F", guarded)
