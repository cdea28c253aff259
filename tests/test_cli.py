"""The command-line runner: ``python -m socks5client ... program``.

Every test runs the runner as a real subprocess, as a user would, against
the reference SOCKS5 server of this process (over loopback) and a local
HTTP server started here.  The HTTP server is reached as ``localhost`` with
``--no-proxy ""``, so that the proxy, not the loopback exemption, carries
the request, and the server's records say who went through it.
"""

from __future__ import annotations

import ast
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Callable

import pytest

import socks5client
from socks5client._cli import ENV_VAR, HOOK_DIR

from conftest import AUTH_PASSWORD, AUTH_USER
from server import SocksServer

CMD_CONNECT = 1
#: Where ``socks5client`` is imported from in this test run: the runner
#: subprocesses must use the same copy.
PACKAGE_ROOT = str(Path(socks5client.__file__).resolve().parent.parent)
#: Generous: a subprocess starting Python children on a loaded CI machine.
TIMEOUT = 60

#: Fetches the URL given as first argument through urllib and prints the body.
FETCH = textwrap.dedent(
    """\
    import sys, urllib.request

    def fetch(url):
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.read().decode()
    """
)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture
def http_port() -> Iterator[int]:
    """Port of an HTTP server on 127.0.0.1 answering ``hello <path>``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without proxy settings, plus ``extra``.

    ``PYTHONPATH`` points at the socks5client under test, so the runner
    subprocess imports that copy whatever is installed.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {"ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", ENV_VAR, "SOCKS5CLIENT_PROXY"}
    }
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [PACKAGE_ROOT, *os.environ.get("PYTHONPATH", "").split(os.pathsep)] if p
    )
    env.update(extra)
    return env


#: What pip writes for ``[project.scripts] socks5client = "socks5client.__main__:main"``.
CONSOLE_SCRIPT = """\
import sys
from socks5client.__main__ import main
if __name__ == "__main__":
    sys.exit(main())
"""


def run_cli(
    args: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    input: str | None = None,
    launcher: str = "module",
) -> subprocess.CompletedProcess[str]:
    """Run the runner as ``python -m socks5client`` or as the console script."""
    if launcher == "module":
        command = [sys.executable, "-m", "socks5client"]
    else:
        command = [sys.executable, str(write(cwd / "bin" / "socks5client", CONSOLE_SCRIPT))]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def proxy_url(server: SocksServer, userinfo: str = "") -> str:
    host, port = server.address
    return f"socks5h://{userinfo}{host}:{port}"


def localhost_connects(server: SocksServer, port: int) -> int:
    """How many CONNECTs to ``localhost:port`` went through ``server``."""
    return sum(
        1
        for r in server.records
        if r.command == CMD_CONNECT and r.dst_addr == "localhost" and r.dst_port == port
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("socks5client: error: ")
    assert AUTH_PASSWORD not in result.stderr


# -- the program and its Python children go through the proxy ------------------------


@pytest.mark.parametrize("launcher", ["module", "console"])
def test_script_and_its_python_child_go_through_the_proxy_and_exit_status_is_kept(
    launcher: str, socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    url = f"http://localhost:{http_port}/"
    write(tmp_path / "child.py", FETCH + "print('child', fetch(sys.argv[1]))\n")
    script = write(
        tmp_path / "main.py",
        FETCH
        + """\
import shutil
import subprocess
print("parent", fetch(sys.argv[1]), flush=True)
subprocess.run([sys.executable, sys.argv[2], sys.argv[1] + "child"], check=True)
sys.exit(3)
""",
    )
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "--no-proxy", "", str(script), url, "child.py"],
        cwd=tmp_path,
        launcher=launcher,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == ["parent hello /", "child hello /child"]
    assert localhost_connects(socks_server, http_port) == 2


def test_multiprocessing_spawn_child_goes_through_the_proxy(
    socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    url = f"http://localhost:{http_port}/spawned"
    script = write(
        tmp_path / "spawner.py",
        FETCH
        + """\
import multiprocessing

def work(url):
    print("spawned", fetch(url), flush=True)

if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=work, args=(sys.argv[1],))
    process.start()
    process.join()
    sys.exit(process.exitcode)
""",
    )
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "--no-proxy", "", str(script), url],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["spawned hello /spawned"]
    assert localhost_connects(socks_server, http_port) == 1


def test_module_form_runs_the_module_as_main_through_the_proxy(
    socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    module = write(
        tmp_path / "fetcher.py",
        FETCH
        + """\
import json
print(json.dumps([sys.argv, __name__, sys.path[0], fetch(sys.argv[1])]))
""",
    )
    url = f"http://localhost:{http_port}/m"
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "--no-proxy", "", "-m", "fetcher", url, "--udp"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    argv, name, path0, body = json.loads(result.stdout)
    assert [Path(argv[0]).resolve(), *argv[1:]] == [module.resolve(), url, "--udp"]
    assert name == "__main__"
    assert Path(path0).resolve() == tmp_path.resolve()
    assert body == "hello /m"
    assert localhost_connects(socks_server, http_port) == 1


def test_code_form_runs_the_code_as_main_through_the_proxy(
    socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    code = (
        FETCH
        + "import json; print(json.dumps([sys.argv, __name__, sys.path[0], fetch(sys.argv[1])]))"
    )
    url = f"http://localhost:{http_port}/c"
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "--no-proxy", "", "-c", code, url, "-v"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["-c", url, "-v"], "__main__", "", "hello /c"]
    assert localhost_connects(socks_server, http_port) == 1


@pytest.mark.parametrize("variable", ["SOCKS5CLIENT_PROXY", "ALL_PROXY", "all_proxy"])
def test_proxy_comes_from_all_proxy_when_no_option_gives_it(
    variable: str, socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    code = FETCH + "print(fetch(sys.argv[1]))"
    result = run_cli(
        ["--no-proxy", "", "-c", code, f"http://localhost:{http_port}/env"],
        cwd=tmp_path,
        env=clean_env(**{variable: proxy_url(socks_server)}),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello /env\n"
    assert localhost_connects(socks_server, http_port) == 1


def test_requests_that_reads_all_proxy_itself_still_works_and_leaks_nothing(
    socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    # requests sees ALL_PROXY and speaks SOCKS itself (urllib3 + PySocks,
    # built on the patched socket class); its connection to the proxy's own
    # address goes direct, so the name reaches the proxy exactly once.
    code = "import requests, sys\nprint(requests.get(sys.argv[1], timeout=10).text)\n"
    result = run_cli(
        ["--no-proxy", "", "-c", code, f"http://localhost:{http_port}/requests"],
        cwd=tmp_path,
        env=clean_env(ALL_PROXY=proxy_url(socks_server)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello /requests\n"
    assert localhost_connects(socks_server, http_port) == 1
    assert len(socks_server.records) == 1


def test_verbose_logs_each_proxied_connection_without_the_password(
    auth_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    write(tmp_path / "child.py", FETCH + "fetch(sys.argv[1])\n")
    script = write(
        tmp_path / "main.py",
        FETCH
        + """\
import shutil
import subprocess
fetch(sys.argv[1])
subprocess.run([sys.executable, "child.py", sys.argv[1]], check=True)
""",
    )
    proxy = proxy_url(auth_server, f"{AUTH_USER}:{AUTH_PASSWORD}@")
    url = f"http://localhost:{http_port}/"
    result = run_cli(
        ["--verbose", "--proxy", proxy, "--no-proxy", "", str(script), url], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert AUTH_PASSWORD not in result.stderr
    assert localhost_connects(auth_server, http_port) == 2
    assert all(r.username == AUTH_USER for r in auth_server.records)
    # One line per proxied connection, from two processes: the program and its child.
    lines = [line for line in result.stderr.splitlines() if f"localhost:{http_port}" in line]
    pids = {line.split("]")[0] for line in lines}
    assert len(pids) == 2, result.stderr
    assert all(line.startswith("socks5client[") for line in lines)


def test_localhost_goes_direct_without_no_proxy_option(
    socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    code = FETCH + "print(fetch(sys.argv[1]))"
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "-c", code, f"http://localhost:{http_port}/direct"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello /direct\n"
    assert socks_server.records == []


def test_nested_runner_uses_its_own_proxy(
    socks_server: SocksServer,
    scripted_server: Callable[..., SocksServer],
    http_port: int,
    tmp_path: Path,
) -> None:
    inner_server = scripted_server(None)
    code = FETCH + "print(fetch(sys.argv[1]))"
    outer = (
        "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-m', 'socks5client',"
        " '--proxy', sys.argv[1], '--no-proxy', '', '-c', sys.argv[2], sys.argv[3]]).returncode)"
    )
    inner_args = [proxy_url(inner_server), code, f"http://localhost:{http_port}/inner"]
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "--no-proxy", "", "-c", outer, *inner_args],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello /inner\n"
    assert localhost_connects(inner_server, http_port) == 1
    assert localhost_connects(socks_server, http_port) == 0


# -- what the program sees ------------------------------------------------------------


def test_script_sees_argv_main_and_its_directory_as_python_gives_them(
    socks_server: SocksServer, tmp_path: Path
) -> None:
    write(
        tmp_path / "sub" / "show.py",
        """\
        import json, sys
        print(json.dumps([sys.argv, __name__, sys.path[0], __file__, sys.stdin.read()]))
        """,
    )
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "sub/show.py", "a", "--proxy", "--", "-m"],
        cwd=tmp_path,
        input="from stdin",
    )
    assert result.returncode == 0, result.stderr
    argv, name, path0, file, stdin = json.loads(result.stdout)
    assert argv == ["sub/show.py", "a", "--proxy", "--", "-m"]
    assert name == "__main__"
    assert path0 == os.path.realpath(tmp_path / "sub")
    assert file == "sub/show.py"
    assert stdin == "from stdin"


def test_double_dash_ends_the_options(socks_server: SocksServer, tmp_path: Path) -> None:
    write(tmp_path / "-v.py", "import sys; print(sys.argv)\n")
    result = run_cli(["--proxy", proxy_url(socks_server), "--", "-v.py", "x"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['-v.py', 'x']\n"


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_directory_or_zip_with_main_runs_with_itself_first_on_sys_path(
    kind: str, socks_server: SocksServer, tmp_path: Path
) -> None:
    app = write(tmp_path / "app" / "__main__.py", "import sys; print(sys.path[0], __name__)\n")
    target = app.parent
    if kind == "zip":
        target = tmp_path / "app.zip"
        with zipfile.ZipFile(target, "w") as archive:
            archive.write(app, "__main__.py")
    result = run_cli(["--proxy", proxy_url(socks_server), target.name], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{target} __main__\n"


def test_program_read_from_stdin(socks_server: SocksServer, tmp_path: Path) -> None:
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "-", "x"],
        cwd=tmp_path,
        input="import sys; print(sys.argv, repr(sys.path[0]), __name__)\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['-', 'x'] '' __main__\n"


def test_hook_dir_is_first_on_pythonpath_for_children_but_not_on_the_programs_path(
    socks_server: SocksServer, tmp_path: Path
) -> None:
    code = "import json, os, sys; print(json.dumps([sys.path, os.environ['PYTHONPATH']]))"
    result = run_cli(["--proxy", proxy_url(socks_server), "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path, pythonpath = json.loads(result.stdout)
    assert HOOK_DIR not in path
    assert pythonpath.split(os.pathsep) == [HOOK_DIR, *clean_env()["PYTHONPATH"].split(os.pathsep)]


# -- how the program ends ----------------------------------------------------------------

_RAISING = """\
def inner():
    raise ValueError("boom")

inner()
"""


@pytest.mark.parametrize("launcher", ["module", "console"])
@pytest.mark.parametrize("form", ["script", "module", "code"])
def test_uncaught_exception_shows_only_program_frames_and_exits_1(
    form: str, launcher: str, socks_server: SocksServer, tmp_path: Path
) -> None:
    write(tmp_path / "raiser.py", _RAISING)
    program = {
        "script": ["raiser.py"],
        "module": ["-m", "raiser"],
        "code": ["-c", _RAISING],
    }[form]
    result = run_cli(["--proxy", proxy_url(socks_server), *program], tmp_path, launcher=launcher)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    where = '"<string>"' if form == "code" else "raiser.py"
    assert where in lines[1] and lines[1].endswith("in <module>"), result.stderr
    assert lines[-1] == "ValueError: boom"
    assert "socks5client" not in result.stderr
    assert "runpy" not in result.stderr


def test_syntax_error_is_reported_like_python(socks_server: SocksServer, tmp_path: Path) -> None:
    write(tmp_path / "bad.py", "x = (\n")
    result = run_cli(["--proxy", proxy_url(socks_server), "bad.py"], cwd=tmp_path)
    assert result.returncode == 1
    assert "SyntaxError" in result.stderr
    assert "socks5client" not in result.stderr and "runpy" not in result.stderr


@pytest.mark.parametrize(
    ("statement", "status", "stderr"),
    [
        ("pass", 0, ""),
        ("sys.exit(0)", 0, ""),
        ("sys.exit(7)", 7, ""),
        ("sys.exit('bye')", 1, "bye\n"),
    ],
)
def test_system_exit_passes_through(
    statement: str, status: int, stderr: str, socks_server: SocksServer, tmp_path: Path
) -> None:
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "-c", f"import sys; {statement}"], cwd=tmp_path
    )
    assert (result.returncode, result.stderr) == (status, stderr)


def test_custom_excepthook_is_used(socks_server: SocksServer, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "def hook(kind, exc, tb):\n"
        "    print('hooked', kind.__name__, tb.tb_frame.f_code.co_filename)\n"
        "sys.excepthook = hook\n"
        "raise KeyError(1)\n"
    )
    result = run_cli(["--proxy", proxy_url(socks_server), "-c", code], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == "hooked KeyError <string>\n"


@pytest.mark.parametrize("launcher", ["module", "console"])
def test_uncaught_keyboard_interrupt_ends_by_sigint_after_normal_shutdown(
    launcher: str, socks_server: SocksServer, tmp_path: Path
) -> None:
    write(
        tmp_path / "interrupted.py",
        """\
        import atexit
        atexit.register(print, "atexit ran")
        raise KeyboardInterrupt
        """,
    )
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "interrupted.py"], tmp_path, launcher=launcher
    )
    assert result.returncode == -signal.SIGINT
    assert result.stdout == "atexit ran\n"
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "interrupted.py" in lines[1]
    assert lines[-1] == "KeyboardInterrupt"
    assert "socks5client" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_from_outside_ends_the_program_as_it_would_end_python(
    signum: int, socks_server: SocksServer, tmp_path: Path
) -> None:
    code = "import time; print('ready', flush=True); time.sleep(60)"
    with subprocess.Popen(
        [sys.executable, "-m", "socks5client", "--proxy", proxy_url(socks_server), "-c", code],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == -signum
    if signum == signal.SIGINT:
        assert stderr.splitlines()[-1] == "KeyboardInterrupt"
        assert "socks5client" not in stderr


def test_missing_script_and_module_are_one_line_errors(
    socks_server: SocksServer, tmp_path: Path
) -> None:
    script = run_cli(["--proxy", proxy_url(socks_server), "nowhere.py"], cwd=tmp_path)
    assert_one_error_line(script)
    assert "nowhere.py" in script.stderr
    module = run_cli(["--proxy", proxy_url(socks_server), "-m", "no_such_module_x"], cwd=tmp_path)
    assert module.returncode == 1  # as python -m
    assert module.stderr == "socks5client: error: No module named no_such_module_x\n"


# -- usage errors and help --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["-c", "pass"], {}, id="no-proxy"),
        pytest.param(["-c", "pass"], {"ALL_PROXY": ""}, id="empty-all-proxy"),
        pytest.param(
            ["--proxy", f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@:1080", "-c", "pass"],
            {},
            id="no-host",
        ),
        pytest.param(
            ["--proxy", f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@host:port", "-c", "pass"],
            {},
            id="bad-port",
        ),
        pytest.param(
            ["--proxy", f"http://{AUTH_USER}:{AUTH_PASSWORD}@host:3128", "-c", "pass"],
            {},
            id="http-scheme",
        ),
        pytest.param(
            ["-c", "pass"],
            {"ALL_PROXY": f"https://{AUTH_USER}:{AUTH_PASSWORD}@host"},
            id="env-scheme",
        ),
        pytest.param(
            ["--proxy", f"{AUTH_USER}:{AUTH_PASSWORD}@host:1080", "-c", "pass"],
            {},
            id="no-scheme",
        ),
        pytest.param(
            [f"--prox=socks5h://{AUTH_USER}:{AUTH_PASSWORD}@h", "-c", "pass"],
            {},
            id="unknown-long-option",
        ),
        pytest.param([f"-x{AUTH_PASSWORD}", "-c", "pass"], {}, id="unknown-short-option"),
        # An option glued to its URL: a missing space, a colon, a no-break
        # space pasted from a web page.
        pytest.param(
            [f"--proxysocks5h://{AUTH_USER}:{AUTH_PASSWORD}@h:1080", "-c", "pass"],
            {},
            id="option-glued-to-url",
        ),
        pytest.param(
            [f"--proxy:socks5h://{AUTH_USER}:{AUTH_PASSWORD}@h:1080", "-c", "pass"],
            {},
            id="option-colon-url",
        ),
        pytest.param(
            [f"--proxy\u00a0socks5h://{AUTH_USER}:{AUTH_PASSWORD}@h:1080", "-c", "pass"],
            {},
            id="option-nbsp-url",
        ),
        # The URL typed where the script goes, the proxy coming from the
        # environment: "can't open file" quotes the script's path.
        pytest.param(
            [f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@h:1080", "script.py"],
            {"SOCKS5CLIENT_PROXY": "socks5h://127.0.0.1:1"},
            id="url-as-script",
        ),
        pytest.param(["--udp=yes", "-c", "pass"], {}, id="flag-with-value"),
        pytest.param(["--proxy"], {}, id="missing-value"),
        pytest.param(["--proxy", "socks5h://h:1080"], {}, id="no-program"),
        pytest.param(["--proxy", "socks5h://h:1080", "-m"], {}, id="missing-module"),
    ],
)
def test_usage_error_is_one_line_without_password_and_status_2(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(args, cwd=tmp_path, env=clean_env(**env))
    assert_one_error_line(result)


def test_option_glued_to_its_value_is_named_in_the_error(tmp_path: Path) -> None:
    result = run_cli(
        [f"--proxysocks5h://{AUTH_USER}:{AUTH_PASSWORD}@h:1080", "-c", "pass"], cwd=tmp_path
    )
    assert result.stderr == (
        "socks5client: error: unrecognized option '--proxysocks...' (see --help)\n"
    )


def test_module_error_does_not_show_a_password_typed_as_the_module(tmp_path: Path) -> None:
    result = run_cli(
        ["-m", f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@h:1080"],
        cwd=tmp_path,
        env=clean_env(SOCKS5CLIENT_PROXY="socks5h://127.0.0.1:1"),
    )
    assert result.returncode == 1  # as python -m
    assert result.stderr.startswith("socks5client: error: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert AUTH_PASSWORD not in result.stderr


@pytest.mark.parametrize("flag", ["-E", "-I", "-S"])
def test_runner_refuses_flags_that_multiprocessing_children_would_inherit(
    flag: str, socks_server: SocksServer, tmp_path: Path
) -> None:
    # multiprocessing starts spawn/forkserver children with these flags too,
    # so they would never run the hook.  The runner is started through -c
    # with this test's sys.path, since -E/-I ignore PYTHONPATH and -S drops
    # site-packages.
    bootstrap = (
        f"import sys; sys.path[:0] = {[PACKAGE_ROOT, *sys.path]!r};"
        " from socks5client.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    runner = [sys.executable, flag, "-c", bootstrap]
    result = subprocess.run(
        [*runner, "--proxy", proxy_url(socks_server), "-c", "print('ran')"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert_one_error_line(result)
    assert f"started with {flag}," in result.stderr
    assert socks_server.records == []


def test_help_documents_options_environment_and_children(tmp_path: Path) -> None:
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""
    text = result.stdout
    for needle in [
        "--proxy URL",
        "--no-proxy LIST",
        "--udp",
        "--bind",
        "--verbose",
        "-m module",
        "-c code",
        "socks5h://",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "PYTHONPATH",
        ENV_VAR,
        "sitecustomize",
        "multiprocessing",
        "go direct",
        "loopback",
        "python -I",
        "status 2",
    ]:
        assert needle in text, needle


def test_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"socks5client {socks5client.__version__}\n")


# -- the child hook on its own -------------------------------------------------------------


def run_child(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` as a child of a runner would be run."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def hook_path(*more: Path) -> str:
    return os.pathsep.join([HOOK_DIR, *map(str, more), PACKAGE_ROOT])


def test_hook_applies_settings_then_chains_to_the_sitecustomize_it_shadows(
    socks_server: SocksServer, tmp_path: Path
) -> None:
    other = write(
        tmp_path / "other" / "sitecustomize.py",
        """\
        import socks5client
        print("other sitecustomize ran, patched:", socks5client.is_patched())
        """,
    )
    settings = {"proxy": proxy_url(socks_server), "no_proxy": "", "udp": False, "bind": False}
    code = (
        "import sys, socks5client, sitecustomize;"
        f" print(socks5client.is_patched(), {HOOK_DIR!r} in sys.path, sitecustomize.__file__)"
    )
    result = run_child(
        code, tmp_path, PYTHONPATH=hook_path(other.parent), **{ENV_VAR: json.dumps(settings)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "other sitecustomize ran, patched: True",
        f"True False {other}",
    ]


def test_hook_without_settings_does_nothing_but_chain(tmp_path: Path) -> None:
    other = write(tmp_path / "other" / "sitecustomize.py", "print('other ran')\n")
    code = "import sys; print('socks5client' in sys.modules)"
    result = run_child(code, tmp_path, PYTHONPATH=hook_path(other.parent))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "other ran\nFalse\n"


def test_hook_reports_a_failing_chained_sitecustomize_and_goes_on(
    socks_server: SocksServer, tmp_path: Path
) -> None:
    other = write(tmp_path / "other" / "sitecustomize.py", "raise RuntimeError('oops')\n")
    settings = {"proxy": proxy_url(socks_server)}
    result = run_child(
        "import socks5client; print(socks5client.is_patched())",
        tmp_path,
        PYTHONPATH=hook_path(other.parent),
        **{ENV_VAR: json.dumps(settings)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"
    assert "RuntimeError: oops" in result.stderr


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"proxy": f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@:1080"}),
        json.dumps({"proxy": f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@h", "udp": "yes"}),
        json.dumps({"no_proxy": ""}),
        f"socks5h://{AUTH_USER}:{AUTH_PASSWORD}@h",
    ],
    ids=["bad-url", "bad-flag", "no-proxy", "not-json"],
)
def test_child_that_cannot_apply_the_settings_exits_2_rather_than_run_unproxied(
    raw: str, tmp_path: Path
) -> None:
    result = run_child("print('ran unproxied')", tmp_path, PYTHONPATH=hook_path(), **{ENV_VAR: raw})
    assert_one_error_line(result)
    assert "unproxied" in result.stderr


# -- the hook in Pythons socks5client does not support --------------------------------

#: The ``site`` of any Python the program starts finds the hook, even one
#: socks5client does not support.
SITECUSTOMIZE = Path(HOOK_DIR) / "sitecustomize.py"
_PYENV = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
OLD_PYTHONS = sorted(
    str(python)
    for prefix in ("2.7", "3.6", "3.7", "3.8")
    for python in _PYENV.glob(f"{prefix}*/bin/python")
)

#: ``from __future__`` features that Python 2.7 knows.
_PY27_FUTURES = {
    "nested_scopes",
    "generators",
    "division",
    "absolute_import",
    "with_statement",
    "print_function",
    "unicode_literals",
}


def _python3_only_syntax(tree: ast.AST) -> list[str]:
    """What in ``tree`` Python 2.7 cannot compile, as far as an AST can tell."""
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            found += [f"{line}: future {a.name}" for a in node.names if a.name not in _PY27_FUTURES]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            if args.kwonlyargs or args.posonlyargs:
                found.append(f"{line}: keyword-only or positional-only parameters")
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            if any(a is not None and a.annotation is not None for a in every):
                found.append(f"{line}: annotated parameter")
            if not isinstance(node, ast.Lambda) and node.returns is not None:
                found.append(f"{line}: return annotation")
        elif isinstance(node, ast.Raise) and node.cause is not None:
            found.append(f"{line}: raise ... from")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            # print(..., end=...) is a syntax error without print_function.
            if node.func.id == "print" and node.keywords:
                found.append(f"{line}: print() with keywords")
        elif isinstance(node, ast.Constant) and node.value is Ellipsis:
            found.append(f"{line}: ... outside a subscript")
        python3_only = (
            ast.JoinedStr,
            ast.AnnAssign,
            ast.Nonlocal,
            ast.AsyncFunctionDef,
            ast.Await,
            ast.AsyncFor,
            ast.AsyncWith,
            ast.NamedExpr,
            ast.YieldFrom,
            ast.Starred,
        )
        if isinstance(node, python3_only):
            found.append(f"{line}: {type(node).__name__}")
        if isinstance(node, ast.Dict) and None in node.keys:
            found.append(f"{line}: ** in a dict display")
    return found


def test_hook_entry_module_uses_only_syntax_python_2_7_parses() -> None:
    """sitecustomize.py must compile in every Python that may find it, 2.7 included.

    Otherwise ``site`` of an old child prints "Error in sitecustomize" and
    the child runs unproxied instead of exiting with status 2.  The test
    below runs real old interpreters when pyenv provides them; CI (.ci/run)
    installs none, and this test is what checks the rule there.  The
    parser at hand cannot be asked for the 2.7 grammar (``ast.parse``'s
    ``feature_version`` goes down to 3.7 at best and checks few features),
    so this walks the tree for the Python 3 constructs 2.7 lacks.  An AST
    cannot see everything (a trailing comma after ``*args``, ``1_000``):
    the old-interpreter test is the full check.
    """
    source = SITECUSTOMIZE.read_text()
    tree = ast.parse(source)
    assert _python3_only_syntax(tree) == []
    # The version check comes before anything 3.9-only runs: the first
    # statement of _start that is not an assignment is that check.
    start = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_start")
    first_if = next(n for n in start.body if not isinstance(n, ast.Assign))
    assert isinstance(first_if, ast.If)
    assert "sys.version_info < (3, 9)" in ast.unparse(first_if.test)


@pytest.mark.parametrize(
    "python",
    OLD_PYTHONS
    or [
        pytest.param(
            None,
            marks=pytest.mark.skip(
                reason=f"no Python 2.7/3.6/3.7/3.8 under {_PYENV} (CI installs none);"
                " test_hook_entry_module_uses_only_syntax_python_2_7_parses checks the syntax"
            ),
        )
    ],
)
def test_child_in_an_unsupported_python_exits_2_rather_than_run_unproxied(
    python: str, socks_server: SocksServer, tmp_path: Path
) -> None:
    settings = {"proxy": proxy_url(socks_server, f"{AUTH_USER}:{AUTH_PASSWORD}@")}
    # No bytecode: Python 2 would write sitecustomize.pyc into the package.
    env = clean_env(PYTHONPATH=hook_path(), PYTHONDONTWRITEBYTECODE="1")
    refused = subprocess.run(
        [python, "-c", "print('ran unproxied')"],
        cwd=tmp_path,
        env={**env, ENV_VAR: json.dumps(settings)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert_one_error_line(refused)
    assert "needs Python 3.9 or later" in refused.stderr
    # Without settings the hook stays out of the way.
    plain = subprocess.run(
        [python, "-c", "print('ran')"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, "ran\n", "")


def test_a_script_read_from_a_pipe_runs_once_as_python_runs_it(
    socks_server: SocksServer, http_port: int, tmp_path: Path
) -> None:
    # "/dev/stdin" (or bash's <(...)) is a pipe: runpy would read it to look
    # for compiled code, then find it empty and run nothing, with status 0.
    url = f"http://localhost:{http_port}/"
    program = FETCH + "print('ran', fetch(sys.argv[1]), __file__)\nsys.exit(7)\n"
    result = run_cli(
        ["--proxy", proxy_url(socks_server), "--no-proxy", "", "/dev/stdin", url],
        cwd=tmp_path,
        input=program,
    )
    assert result.returncode == 7, result.stderr
    assert result.stdout.splitlines() == ["ran hello / /dev/stdin"]
    assert localhost_connects(socks_server, http_port) == 1


def test_an_install_path_pythonpath_cannot_hold_is_refused(
    socks_server: SocksServer, tmp_path: Path
) -> None:
    # PYTHONPATH splits at os.pathsep: the hook directory would be cut in
    # two and every Python child would run unproxied.
    home = tmp_path / f"env{os.pathsep}2026"
    shutil.copytree(
        Path(PACKAGE_ROOT) / "socks5client",
        home / "socks5client",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = clean_env()
    env["PYTHONPATH"] = str(home)
    # The interpreter finds the copy through sys.path itself (the entry is
    # cut at the separator too), so the runner is started from its parent.
    start = "import runpy; runpy.run_module('socks5client', run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", start, "--proxy", proxy_url(socks_server), "-c", "print('ran')"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert_one_error_line(result)
    assert "PYTHONPATH cannot hold" in result.stderr
    assert "ran" not in result.stdout
    assert socks_server.connections == 0
