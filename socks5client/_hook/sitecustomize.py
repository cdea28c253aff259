"""Start-up hook that routes a Python child of the socks5client runner through the proxy.

The runner puts this module's directory first on ``PYTHONPATH`` and its
settings in ``SOCKS5CLIENT_PATCH``.  Python's ``site`` imports the first
``sitecustomize`` on ``sys.path`` at start-up, before the child's own code,
so every Python child of the program (``subprocess`` running
``sys.executable``, ``multiprocessing`` spawn and forkserver processes),
and their children in turn, applies the same patch as the program.

Any Python the program starts finds this file, not only the ones
socks5client supports: a Python 2.7 or 3.6 child that could not even
compile it would have ``site`` print "Error in sitecustomize" and go on
*unproxied*.  So this file is written in the syntax every Python since 2.7
parses (no f-strings, annotations, keyword-only arguments, ``from
__future__ import annotations``...; tests/test_cli.py checks it), and its
first act is the version check: an interpreter older than 3.9 that finds
``SOCKS5CLIENT_PATCH`` prints one line and exits with status 2, as any
child that cannot apply the settings does.  Without the settings it does
nothing at all.  The hook proper (applying the settings, then running the
``sitecustomize`` this one shadows) is in ``_startup.py`` next to this
file, loaded by file path once the interpreter is known to be recent
enough.

Imported under any other name (tests, type checkers) the module does
nothing.
"""

import os
import sys

_ENV_VAR = "SOCKS5CLIENT_PATCH"


def _refuse(detail):
    # type: (str) -> None
    """Fail closed: one line on stderr, then status 2 (see _startup._fail_closed)."""
    try:
        sys.stderr.write(
            "socks5client: error: cannot route this Python process through the proxy ("
            + detail
            + "); exiting with status 2 rather than running it unproxied\n"
        )
        sys.stderr.flush()
    finally:
        # Not SystemExit: raised from sitecustomize it is a fatal error of
        # the interpreter's start-up, with a traceback and status 1.
        os._exit(2)


def _start():
    # type: () -> None
    settings = os.environ.get(_ENV_VAR)
    # ruff's UP036 calls this check dead code for the project's target
    # version: that is the point, it is for the interpreters outside it.
    if sys.version_info < (3, 9):  # noqa: UP036
        if settings:
            version = ".".join(str(part) for part in sys.version_info[:2])
            _refuse("socks5client needs Python 3.9 or later; this is Python " + version)
        return
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_startup.py")
    try:
        spec = importlib.util.spec_from_file_location("socks5client._hook._startup", path)
        if spec is None or spec.loader is None:
            raise ImportError("cannot load " + path)
        startup = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(startup)
    except Exception as exc:
        if not settings:
            raise  # site reports it; nothing to apply, so nothing leaks
        _refuse(type(exc).__name__ + ": " + " ".join(str(exc).split()))
    else:
        startup.main()


if __name__ == "sitecustomize":
    _start()
