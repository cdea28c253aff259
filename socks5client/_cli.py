"""The command-line runner: ``python -m socks5client`` and the ``socks5client`` script.

It runs an existing Python program *in this process*, after
:func:`socks5client.patch` has rerouted the ``socket`` module, so the
program's first line already runs behind the proxy.  Running in-process is
what lets exit status, standard streams and signals pass through with no
relaying; the work here is to make the program see what ``python`` would
have given it (``sys.argv``, a ``__main__`` module, ``sys.path[0]``) and to
report its end the way ``python`` does (a traceback without our frames and
status 1, ``SystemExit`` as is, death by SIGINT after an uncaught
``KeyboardInterrupt``).

Python child processes are covered by :mod:`socks5client._hook`: a
directory holding a ``sitecustomize`` module, put first on ``PYTHONPATH``,
which applies the settings this runner exports in :data:`ENV_VAR`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from types import CodeType, TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .proxy import Proxy

__all__ = ["ENV_VAR", "HOOK_DIR", "apply_inherited_settings", "main"]

PROG = "socks5client"

#: The environment variable carrying the patch settings to Python children,
#: as JSON: ``{"proxy": URL, "no_proxy": str or null, "udp": bool,
#: "bind": bool, "verbose": bool}``.  The URL includes the password, as
#: ``ALL_PROXY`` would: a child cannot authenticate otherwise.
ENV_VAR = "SOCKS5CLIENT_PATCH"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: The directory put first on ``PYTHONPATH`` for children (see _hook/).
HOOK_DIR = os.path.join(_PACKAGE_DIR, "_hook")


USAGE = f"""\
usage: {PROG} [options] [--] script.py [args...]
       {PROG} [options] -m module [args...]
       {PROG} [options] -c code [args...]
       {PROG} [options] - [args...]          (program read from stdin)
"""

# Written out rather than formatted from PROG and ENV_VAR, to keep the
# wrapping right; test_cli checks that it names ENV_VAR.
HELP = (
    USAGE
    + """
Run a Python program with its network traffic routed through a SOCKS5 proxy.
The program runs in this process as if started by "python": the proxy is in
place before its first line; it gets the sys.argv, __main__ module and
sys.path[0] that python would give it; its exit status, standard streams and
signals are its own.  "python -m socks5client" is the same command.

options:
  --proxy URL       the proxy: socks5h://[user[:password]@]host[:port] has the
                    proxy resolve host names (no local DNS query for them);
                    socks5://... resolves them locally.  The port defaults to
                    1080; percent-encode special characters in credentials.
  --no-proxy LIST   comma-separated hosts, domains (.example.com) and
                    addresses or networks that go direct, in NO_PROXY syntax.
                    It replaces the default (see below); --no-proxy ""
                    sends everything, loopback included, through the proxy.
  --udp             route UDP sockets through the proxy (UDP ASSOCIATE);
                    without it they are left unproxied.
  --bind            make TCP sockets that listen on a non-loopback address
                    listen on the proxy (SOCKS BIND); without it listening
                    sockets stay local.
  -v, --verbose     log each proxied connection to stderr, this process and
                    its Python children alike (never the password).
  -m module         run a library module as a script, like python -m; the
                    arguments after it are the program's.
  -c code           run code given as a string, like python -c; the
                    arguments after it are the program's.
  -                 read the program from standard input.
  --                end of options: the next argument is the script.
  -h, --help        show this help and exit.
  --version         show the version and exit.
Options go before the program; everything after it belongs to the program.

environment:
  SOCKS5CLIENT_PROXY, all_proxy, ALL_PROXY, socks_proxy, SOCKS_PROXY
                        the proxy URL when --proxy is absent, looked up in
                        this order (a value that is empty or only spaces
                        counts as unset).  Only
                        socks5:// and socks5h:// URLs are accepted.
                        SOCKS5CLIENT_PROXY keeps the URL out of ps output
                        (unlike --proxy) and, unlike ALL_PROXY, is not read
                        by requests or httpx, which would otherwise try to
                        reach the proxy themselves.
  no_proxy, NO_PROXY    without --no-proxy: more hosts that go direct (the
                        first of the two that is set and not empty).
  SOCKS5CLIENT_PATCH, PYTHONPATH
                        set by socks5client for child processes (below).

what goes direct:
  Without --no-proxy, connections to localhost, to loopback addresses
  (127.0.0.0/8, ::1), to this machine's host name and to the hosts
  no_proxy/NO_PROXY lists go direct;
  everything else goes through the proxy.  Sockets that are not IPv4/IPv6
  (AF_UNIX...) are never proxied.  With socks5h:// the program's name
  lookups (getaddrinfo, gethostbyname...) for proxied names make no DNS
  query: the name travels to the proxy with the connection.

child processes:
  Python programs the program starts are routed with the same settings:
  subprocess running sys.executable (or another interpreter that can import
  this socks5client and its dependencies), and multiprocessing with the
  spawn, forkserver or fork start method.  socks5client puts its hook
  directory (socks5client/_hook, a sitecustomize module) first on PYTHONPATH
  and the settings in SOCKS5CLIENT_PATCH; the proxy URL in it includes the
  password, as ALL_PROXY would.  A Python child that finds
  SOCKS5CLIENT_PATCH but cannot apply it prints one line to stderr and
  exits with status 2 rather than run unproxied; so does a Python older
  than 3.9 that finds it.  The hook then runs any other sitecustomize it
  shadows (Debian ships one).
  Not covered: children started with python -I, -E or -S (they ignore
  PYTHONPATH or skip sitecustomize), children given an environment without
  PYTHONPATH or SOCKS5CLIENT_PATCH, and programs that are not Python (many,
  such as curl and git, read ALL_PROXY themselves).  For that reason
  socks5client refuses to run under python -I, -E or -S itself:
  multiprocessing would start its children with the same flag.

exit status:
  The program's own: 0 at its end, the SystemExit code, 1 after an uncaught
  exception (its traceback shows the program's frames only), death by
  SIGINT after an uncaught KeyboardInterrupt.  socks5client itself exits
  with status 2 for a usage error (no proxy, a bad proxy URL, an unknown
  option, a script that cannot be opened, python run with -I, -E or -S)
  and 1 for a module that cannot be found, as python does; its errors
  never show the password.
"""
)


class _UsageError(Exception):
    """A mistake on the command line or in the proxy settings: exit status 2."""


@dataclasses.dataclass
class _Options:
    """The parsed command line."""

    proxy: str | None = None
    no_proxy: str | None = None
    udp: bool = False
    bind: bool = False
    verbose: bool = False
    help: bool = False
    version: bool = False
    #: "script", "module", "code" or "stdin"; None when no program was given.
    mode: str | None = None
    target: str = ""
    args: list[str] = dataclasses.field(default_factory=list)


_VALUE_OPTIONS = {"--proxy": "proxy", "--no-proxy": "no_proxy"}
_FLAG_OPTIONS = {
    "--udp": "udp",
    "--bind": "bind",
    "--verbose": "verbose",
    "-v": "verbose",
    "--help": "help",
    "-h": "help",
    "--version": "version",
}


def _parse(argv: Sequence[str]) -> _Options:
    """Parse the runner's options up to the program, like python's own command line.

    Parsing stops at the program (a script, ``-``, ``-m module`` or ``-c
    code``): what follows is the program's, even if it looks like one of
    our options.  Hand-written rather than argparse, whose ``REMAINDER``
    handling cannot express "options end at the first positional or at
    -m/-c" reliably.
    """
    opts = _Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            if i >= len(argv):
                raise _UsageError("'--' must be followed by the script to run")
            opts.mode, opts.target, opts.args = "script", argv[i], list(argv[i + 1 :])
            return opts
        if arg == "-":
            opts.mode, opts.target, opts.args = "stdin", "-", list(argv[i:])
            return opts
        if arg[:2] in ("-m", "-c"):
            # python accepts both "-m mod" and "-mmod".
            value = arg[2:]
            if not value:
                if i >= len(argv):
                    raise _UsageError(f"option {arg} needs an argument")
                value = argv[i]
                i += 1
            opts.mode = "module" if arg[:2] == "-m" else "code"
            opts.target, opts.args = value, list(argv[i:])
            return opts
        if not arg.startswith("-"):
            opts.mode, opts.target, opts.args = "script", arg, list(argv[i:])
            return opts
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _VALUE_OPTIONS:
            if not eq:
                if i >= len(argv):
                    raise _UsageError(f"option {name} needs a value")
                value = argv[i]
                i += 1
            setattr(opts, _VALUE_OPTIONS[name], value)
        elif name in _FLAG_OPTIONS and not eq:
            setattr(opts, _FLAG_OPTIONS[name], True)
            if name in ("-h", "--help", "--version"):
                return opts
        else:
            raise _unknown_option(arg)
    return opts


def _unknown_option(arg: str) -> _UsageError:
    """The error for ``arg``, an option we do not know, quoting only its name.

    What follows the name may be a proxy URL with its password: after
    "=" ("--prox=URL"), glued to a short option ("-xURL"), or glued to a
    long one by a missing space, a colon or a pasted no-break space
    ("--proxysocks5h://...", "--proxy:URL").  So only the leading
    ``--letters-and-dashes`` (or ``-x``) is shown, with "..." when
    something other than "=value" was cut off.
    """
    if arg.startswith("--"):
        match = re.match(r"--[A-Za-z-]*", arg)
        shown = match.group() if match else "--"
        rest = arg[len(shown) :]
        if shown in _FLAG_OPTIONS and rest.startswith("="):  # "--udp=1"
            return _UsageError(f"option {shown} takes no value; give options one by one")
        if rest and not rest.startswith("="):
            shown += "..."  # say that the name was cut, not that "--proxy" is unknown
    else:
        shown = arg[:2]
        if shown in _FLAG_OPTIONS:  # "-vh": no combined short flags
            return _UsageError(f"option {shown} takes no value; give options one by one")
    return _UsageError(f"unrecognized option {shown!r} (see --help)")


def _userinfo_parts(url: str) -> list[str]:
    """The user-info pieces of ``url`` worth masking, longest first.

    Best effort on purpose: it must work on URLs too malformed to parse.
    """
    from urllib.parse import unquote

    rest = url.split("://", 1)[-1]
    userinfo = rest.rpartition("@")[0]
    if not userinfo:
        return []
    pieces = {userinfo, unquote(userinfo)}
    _, colon, password = userinfo.partition(":")
    if colon and password:
        pieces |= {password, unquote(password)}
    return sorted((p for p in pieces if p), key=len, reverse=True)


def _scrub(message: str, *urls: str | None) -> str:
    """``message`` with the user info of each of ``urls`` masked.

    The parser's messages never quote credentials; this is the second
    lock on that door, for any message that may have come near a URL.
    """
    pieces = {piece for url in urls if url for piece in _userinfo_parts(url)}
    # Longest first, across all the URLs: a password that contains another
    # URL's password must not be left half masked.
    for piece in sorted(pieces, key=len, reverse=True):
        message = message.replace(piece, "***")
    return " ".join(message.split())  # one line, whatever the message held


#: The runner's arguments that hold "://", and the proxy URL once known:
#: :func:`_error` masks their user info in every message.  Any argument may
#: be a proxy URL in the wrong place (typed where the script goes, glued to
#: an option by a missing space), and the messages quote arguments (a
#: script that cannot be opened, a module that cannot be found).
_urls_to_mask: list[str] = []


def _resolve_proxy(given: str | None, environ: Mapping[str, str]) -> tuple[Proxy, str]:
    """The proxy and its URL, from ``--proxy`` or else the environment."""
    from ._environ import proxy_url_from_environment
    from .proxy import Proxy

    source, url = "--proxy", given
    if url is None:
        # SOCKS5CLIENT_PROXY first: unlike ALL_PROXY, requests and httpx do
        # not read it, so they do not try to use the proxy themselves on top
        # of the patch.
        own = environ.get("SOCKS5CLIENT_PROXY", "").strip()
        # Then the variables every integration reads (all_proxy, ALL_PROXY,
        # socks_proxy), with the same precedence.
        found = ("SOCKS5CLIENT_PROXY", own) if own else proxy_url_from_environment(None, environ)
        if found is None:
            raise _UsageError(
                "no proxy given: use --proxy socks5h://host:port, or set SOCKS5CLIENT_PROXY"
                " or ALL_PROXY (see --help)"
            )
        source, url = found
    url = url.strip()
    try:
        proxy = Proxy.from_url(url)
    except (ValueError, TypeError) as exc:
        raise _UsageError(f"{source}: {_scrub(str(exc), url)}") from None
    return proxy, url


def _configure_logging() -> None:
    """``--verbose``: the ``socks5client`` logger at DEBUG, written to stderr.

    Lines carry the process id, since a program's Python children log to
    the same stderr.  Propagation stops here so that a program that
    configures root logging does not print every line twice.
    """
    logger = logging.getLogger("socks5client")
    if not any(getattr(h, "_socks5client_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}[%(process)d]: %(message)s"))
        handler._socks5client_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def _export_to_children(url: str, opts: _Options) -> None:
    """Make Python children apply the same patch (see :mod:`socks5client._hook`)."""
    settings = {
        "proxy": url,
        "no_proxy": opts.no_proxy,
        "udp": opts.udp,
        "bind": opts.bind,
        "verbose": opts.verbose,
    }
    os.environ[ENV_VAR] = json.dumps(settings)
    existing = os.environ.get("PYTHONPATH")
    # Entries are kept as they are, empty ones included (an empty entry
    # means the current directory); only an earlier copy of the hook, from
    # a runner that started this one, is dropped.
    entries = existing.split(os.pathsep) if existing else []
    entries = [p for p in entries if not (p and os.path.abspath(p) == HOOK_DIR)]
    os.environ["PYTHONPATH"] = os.pathsep.join([HOOK_DIR, *entries])


def apply_inherited_settings(raw: str) -> None:
    """Apply the settings a parent runner exported in :data:`ENV_VAR`.

    Called by the hook at the start-up of every Python child.  Raises on
    anything malformed: the hook then ends the child rather than let it run
    unproxied.
    """
    from .patch import patch

    settings = json.loads(raw)
    if not isinstance(settings, dict):
        raise ValueError(f"{ENV_VAR} is not a JSON object")
    proxy = settings.get("proxy")
    no_proxy = settings.get("no_proxy")
    flags = {key: settings.get(key, False) for key in ("udp", "bind", "verbose")}
    if not isinstance(proxy, str):
        raise ValueError(f"{ENV_VAR} has no proxy URL")
    if no_proxy is not None and not isinstance(no_proxy, str):
        raise ValueError(f"{ENV_VAR}: no_proxy is not a string")
    if not all(isinstance(value, bool) for value in flags.values()):
        raise ValueError(f"{ENV_VAR}: udp, bind and verbose must be true or false")
    if flags["verbose"]:
        _configure_logging()
    patch(proxy, no_proxy=no_proxy, udp=flags["udp"], bind=flags["bind"])


def _apply_patch(proxy: Proxy, opts: _Options) -> None:
    from .patch import is_patched, patch, unpatch

    if is_patched():
        # This runner is itself a Python child of another runner, whose
        # hook has patched it already: the explicit settings here win.
        unpatch()
    patch(proxy, no_proxy=opts.no_proxy, udp=opts.udp, bind=opts.bind)


# -- running the program ---------------------------------------------------------


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {_scrub(message, *_urls_to_mask)}\n")
    sys.stderr.flush()


def _set_path0(entry: str | None) -> None:
    """Put ``entry`` where python puts the program's directory: ``sys.path[0]``.

    ``sys.path[0]`` is ours now (the current directory under ``python -m``,
    the script's directory for the console script), unless python was told
    not to add one (``-P``/``PYTHONSAFEPATH``, 3.11+), in which case it
    would not have added the program's either.  ``None`` removes ours.
    """
    if getattr(sys.flags, "safe_path", False) or not sys.path:
        return
    if entry is None:
        del sys.path[0]
    else:
        sys.path[0] = entry


def _run_script(path: str, args: list[str]) -> int:
    import pkgutil
    import runpy

    sys.argv[:] = [path, *args]
    importer = pkgutil.get_importer(path)
    if importer is None:
        # A plain file: runpy leaves sys.path alone for it.
        try:
            with open(path, "rb") as file:
                if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                    # A pipe (/dev/stdin, <(...)): runpy would read it once
                    # to look for compiled code, then again to run it, and
                    # find it empty.  Read once, run that, as python does.
                    source = file.read()
                    _set_path0(os.path.dirname(os.path.realpath(path)))
                    return _run_source(source, path, path, args, as_file=True)
        except OSError as exc:
            _error(f"can't open file {os.path.abspath(path)!r}: [Errno {exc.errno}] {exc.strerror}")
            return 2
        _set_path0(os.path.dirname(os.path.realpath(path)))
    else:
        # A directory or zip archive with a __main__ module.  runpy puts the
        # path it is given first on sys.path: given as absolute, as python
        # does, so that the entry survives a chdir.  The price: sys.argv[0]
        # is that absolute path too, where python keeps it as typed.
        path = os.path.abspath(path)
        find_spec = getattr(importer, "find_spec", None)
        if find_spec is not None and find_spec("__main__") is None:
            _error(f"can't find '__main__' module in {path!r}")
            return 1
        _set_path0(None)
    runpy.run_path(path, run_name="__main__")
    return 0


def _run_module(name: str, args: list[str]) -> int:
    import importlib.util
    import runpy

    sys.argv[:] = ["-m", *args]  # runpy replaces it with the module's path
    _set_path0(os.getcwd())
    # Found here first, so that "no such module" is a one-line error as with
    # python, not a traceback out of runpy.
    try:
        spec = importlib.util.find_spec(name)
        is_package = spec is not None and spec.submodule_search_locations is not None
        if is_package and importlib.util.find_spec(f"{name}.__main__") is None:
            _error(f"No module named {name}.__main__; {name!r} is a package and cannot be run")
            return 1
    except Exception as exc:
        # Finding a submodule imports its packages, whose code may fail.
        _error(f"cannot find module {name!r} ({type(exc).__name__}: {exc})")
        return 1
    if spec is None:
        _error(f"No module named {name}")
        return 1
    runpy.run_module(name, run_name="__main__", alter_sys=True)
    return 0


def _run_source(
    source: str | bytes, filename: str, argv0: str, args: list[str], *, as_file: bool = False
) -> int:
    """Run ``-c`` code, a program from stdin, or a script read from a pipe (``as_file``).

    It runs in a fresh ``__main__`` module; a script keeps the ``sys.path[0]``
    its caller set.
    """
    import builtins
    import importlib.machinery
    import types

    sys.argv[:] = [argv0, *args]
    if not as_file:
        _set_path0("")
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    module.__dict__["__loader__"] = importlib.machinery.BuiltinImporter
    if filename == "<stdin>" or as_file:
        module.__dict__["__file__"] = filename
    sys.modules["__main__"] = module
    # dont_inherit: this module's own "from __future__" must not leak into
    # the program's compilation.
    code = compile(source, filename, "exec", dont_inherit=True)
    exec(code, module.__dict__)
    return 0


def _runner_code_names() -> tuple[set[str], tuple[str, ...]]:
    import runpy

    files = {"<frozen runpy>", os.path.splitext(runpy.__file__ or "")[0] + ".py"}
    prefixes = (_PACKAGE_DIR + os.sep, "<frozen importlib")
    return files, prefixes


def _is_runner_code(code: CodeType, names: tuple[set[str], tuple[str, ...]]) -> bool:
    files, prefixes = names
    return code.co_filename in files or code.co_filename.startswith(prefixes)


def _strip_runner_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames of this runner, runpy and importlib.

    Only the leading ones: once the program's first frame is reached,
    everything below it is the program's story, even a call into
    socks5client.
    """
    names = _runner_code_names()
    while tb is not None and _is_runner_code(tb.tb_frame.f_code, names):
        tb = tb.tb_next
    return tb


def _report_uncaught(exc: BaseException) -> None:
    """Show an uncaught exception as python would at top level: via sys.excepthook."""
    tb = _strip_runner_frames(exc.__traceback__)
    exc.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception as hook_exc:
        # The program's own hook failed: show both, with the default one.
        sys.__excepthook__(type(hook_exc), hook_exc, hook_exc.__traceback__)
        sys.__excepthook__(type(exc), exc, tb)


def _mute_excepthook_for(reported: BaseException) -> None:
    """Make ``sys.excepthook`` skip ``reported``, whose traceback is out already.

    Any other exception still goes to the hook in place before, should a
    caller of :func:`main` catch ``reported`` and go on.
    """
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if exc is not reported:
            previous(exc_type, exc, tb)

    sys.excepthook = hook


def _run(opts: _Options) -> int:
    if opts.mode == "script":
        return _run_script(opts.target, opts.args)
    if opts.mode == "module":
        return _run_module(opts.target, opts.args)
    if opts.mode == "code":
        return _run_source(opts.target, "<string>", "-c", opts.args)
    return _run_source(sys.stdin.buffer.read(), "<stdin>", "-", opts.args)


def _run_as_python_would(opts: _Options) -> int:
    """Run the program; end as python would after it."""
    try:
        return _run(opts)
    except SystemExit:
        raise  # its code is the exit status, and python reports it as usual
    except KeyboardInterrupt as exc:
        _report_uncaught(exc)
        # Letting it go up makes python finish as it does for a program of
        # its own: threads joined, atexit handlers run, streams flushed, and
        # then the default SIGINT action, so the parent sees death by
        # SIGINT.  The traceback is out already: the top level must not
        # print it again with our frames.
        _mute_excepthook_for(exc)
        raise
    except BaseException as exc:
        _report_uncaught(exc)
        return 1


def _refuse_flags_children_would_inherit() -> None:
    """Refuse to run under ``python -E``, ``-I`` or ``-S``.

    multiprocessing starts its spawn and forkserver children with the
    parent's interpreter flags (``subprocess._args_from_interpreter_flags``):
    under these flags they would ignore ``PYTHONPATH`` or skip
    ``sitecustomize``, never run the hook, and run unproxied without a word.
    Failing here, before the program starts, is the only place that can
    say so.
    """
    flags = [
        flag
        for flag, on in [
            ("-I", sys.flags.isolated),
            # -I implies -E: name only what was typed.
            ("-E", sys.flags.ignore_environment and not sys.flags.isolated),
            ("-S", sys.flags.no_site),
        ]
        if on
    ]
    if flags:
        raise _UsageError(
            f"python was started with {' and '.join(flags)}, which multiprocessing passes on to"
            " its child processes: they would skip socks5client's hook and run unproxied;"
            " run python without -I, -E and -S"
        )


def _refuse_a_hook_path_children_cannot_find() -> None:
    """Refuse to run if ``PYTHONPATH`` cannot carry the hook's directory.

    Python splits ``PYTHONPATH`` at every ``os.pathsep``: installed under a
    directory whose name has one (``/opt/env:2026/...``), the hook would be
    cut in two, never found, and every Python child would run unproxied.
    """
    if os.pathsep in HOOK_DIR:
        raise _UsageError(
            f"socks5client is installed under a path that contains {os.pathsep!r}, which"
            " PYTHONPATH cannot hold: Python child processes could not load its hook and"
            " would run unproxied; install it under another path"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    _urls_to_mask[:] = [arg for arg in args if "://" in arg]
    try:
        opts = _parse(args)
        if opts.help:
            sys.stdout.write(HELP)
            return 0
        if opts.version:
            from . import __version__

            sys.stdout.write(f"{PROG} {__version__}\n")
            return 0
        _refuse_flags_children_would_inherit()
        _refuse_a_hook_path_children_cannot_find()
        if opts.mode is None:
            raise _UsageError("no program to run: give a script, -m module or -c code (see --help)")
        proxy, url = _resolve_proxy(opts.proxy, os.environ)
        _urls_to_mask.append(url)
    except _UsageError as exc:
        _error(str(exc))
        return 2
    if opts.verbose:
        _configure_logging()
    try:
        _apply_patch(proxy, opts)
    except (ValueError, TypeError, RuntimeError) as exc:
        # A bad --no-proxy entry, for one.
        _error(f"cannot patch the socket module: {_scrub(str(exc), url)}")
        return 2
    _export_to_children(url, opts)
    program = {"module": f"-m {opts.target}", "code": "-c code", "stdin": "stdin"}
    logging.getLogger("socks5client").debug(
        "running %s through %s (no_proxy: %s)",
        program.get(opts.mode or "", opts.target),
        proxy.url,
        "default" if opts.no_proxy is None else repr(opts.no_proxy),
    )
    return _run_as_python_would(opts)
