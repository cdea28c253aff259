"""The start-up hook proper, run by ``sitecustomize`` in this directory (see its docstring).

``sitecustomize`` must stay parseable by every Python that may find it on
``PYTHONPATH`` (2.7 included), so that an interpreter too old for
socks5client fails closed instead of failing to compile it; this module
holds the rest and is loaded by file path only once the interpreter is
known to be recent enough, so it may use any syntax socks5client uses.

Here, in order:

1. If ``SOCKS5CLIENT_PATCH`` is set, apply it.  socks5client is loaded from
   the directory above this one, the runner's own copy, so that a child
   whose ``sys.path`` lacks it (another virtual environment) is covered
   too.  On any failure the child prints one line and exits with status 2:
   it fails closed, because running unproxied is what the user asked us
   to prevent, and a child that exits is easier to notice than a leak.
2. Import the ``sitecustomize`` this hook shadows, if any (Debian's, a
   virtual environment's...), with this directory off ``sys.path`` and the
   hook out of ``sys.modules``, so that it is found and runs as it would
   have without us.  Its errors are reported as ``site`` reports them and
   do not stop the child: the patch is already in place.

This directory stays off ``sys.path`` afterwards: the child sees the path
it would have had without the runner (``PYTHONPATH`` keeps the entry, for
grandchildren).  Importing this module does nothing; :func:`main` runs the
hook.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

_ENV_VAR = "SOCKS5CLIENT_PATCH"
_HOOK_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_HOOK_DIR)


def _load_socks5client() -> ModuleType:
    """Import socks5client from the runner's copy (the directory above this one)."""
    import importlib.util

    loaded = sys.modules.get("socks5client")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(
        "socks5client",
        os.path.join(_PACKAGE_DIR, "__init__.py"),
        submodule_search_locations=[_PACKAGE_DIR],
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"socks5client is not in {_PACKAGE_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["socks5client"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop("socks5client", None)
        raise
    return module


def _masked(message: str, raw: str) -> str:
    """``message`` on one line, with anything that could be the proxy's user info masked.

    socks5client's messages never quote a password; this guards against
    the ones that do not come from it (a failed import, say).
    """
    import json
    from urllib.parse import unquote

    try:
        url = str(json.loads(raw).get("proxy", ""))
    except Exception:
        url = ""
    userinfo = url.split("://", 1)[-1].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    secrets = {raw, userinfo, unquote(userinfo), password, unquote(password)} - {""}
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return " ".join(message.split())


def _apply(raw: str) -> None:
    _load_socks5client()
    from socks5client._cli import apply_inherited_settings

    apply_inherited_settings(raw)


def _fail_closed(exc: Exception, raw: str) -> None:
    try:
        detail = _masked(f"{type(exc).__name__}: {exc}", raw)
        sys.stderr.write(
            f"socks5client: error: cannot route this Python process through the proxy"
            f" ({detail}); exiting with status 2 rather than running it unproxied\n"
        )
        sys.stderr.flush()
    finally:
        # Not SystemExit: raised from sitecustomize it is a fatal error of
        # the interpreter's start-up, with a traceback and status 1.
        os._exit(2)


def _same_dir(entry: str) -> bool:
    try:
        return os.path.samefile(entry or os.curdir, _HOOK_DIR)
    except OSError:
        return False


def _chain() -> None:
    """Run the ``sitecustomize`` this module shadows, as ``site`` would have."""
    ours = sys.modules.pop("sitecustomize", None)
    sys.path[:] = [entry for entry in sys.path if not _same_dir(entry)]
    try:
        importlib.import_module("sitecustomize")  # the next one on sys.path, if any
    except ImportError as exc:
        if exc.name != "sitecustomize":
            _report_chained(exc)
        _restore(ours)
    except Exception as exc:
        _report_chained(exc)
        _restore(ours)


def _restore(ours: ModuleType | None) -> None:
    # No other sitecustomize ran: keep ours registered, so that a later
    # "import sitecustomize" does not run this hook a second time.
    if ours is not None and "sitecustomize" not in sys.modules:
        sys.modules["sitecustomize"] = ours


def _report_chained(exc: BaseException) -> None:
    if sys.flags.verbose:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    else:
        sys.stderr.write(
            f"Error in sitecustomize (run by socks5client's hook): {type(exc).__name__}: {exc}\n"
        )


def main() -> None:
    """Run the hook: called by ``sitecustomize`` while ``site`` imports it."""
    raw = os.environ.get(_ENV_VAR)
    if raw:
        try:
            _apply(raw)
        except Exception as exc:
            _fail_closed(exc, raw)
    _chain()
