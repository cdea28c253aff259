"""Where a secret shows in an exception, as an error reporter would record it.

Shared by the tests that check a proxy password stays out of failures
(the environment reader and the HTTP adapters): reporters such as Sentry
record ``repr()`` of every local of every frame and follow
``__cause__``/``__context__``; docs/errors.md promises that no socks5client
frame among them holds a password.  Frames of other packages (urllib3,
httpx...) are not ours to judge.
"""

from __future__ import annotations

import os

import socks5client

__all__ = ["password_places"]


def password_places(exc: BaseException, secret: str) -> list[str]:
    """Where ``secret`` shows: the messages, and socks5client frames' locals, chain included."""
    package = os.path.dirname(socks5client.__file__)
    places: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if secret in str(err) or secret in repr(err.args):
            places.append(f"the message of {type(err).__name__}")
        tb = err.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename.startswith(package):
                for name, value in dict(tb.tb_frame.f_locals).items():
                    if secret in repr(value):
                        places.append(f"{type(err).__name__}: {code.co_name}() local {name}")
            tb = tb.tb_next
        todo += [err.__cause__, err.__context__]
    return places
