#!/usr/bin/env python3
"""Side-by-side TCP benchmark: socks5client against PySocks and python-socks.

All three clients run in the same process, in the same run, through the same
SOCKS5 server (a ``microsocks`` started here on a free loopback port) to the
same destination (a small threaded TCP server started here in a child
process, so that its CPU time is not charged to the clients).

What is measured
----------------
1. Handshake rate -- connect through the proxy, send one byte, read the echo,
   close; ``--handshakes`` times in a row.  Reported as connections per
   second, plus the client process's CPU time per connection
   (``time.process_time``), which is the library's own overhead: the proxy
   and the destination run in other processes.  Each ``connect`` (the
   handshake: socket creation to CONNECT reply read) is also timed alone:
   its median wall-clock latency and mean CPU time.  ``--auth`` runs
   microsocks with a username and password, and every client logs in.
2. Bulk throughput -- one tunnel receives ``--bulk-mib`` MiB that the
   destination sends and then closes; the client reads with ``recv_into``
   into a preallocated ``bytearray``.  Reported in MiB/s (and CPU per MiB).
   After the handshake every library hands back a plain kernel socket, so
   this should come out the same for all three: it checks that nothing sits
   on the data path.
3. Small-message latency -- ``--round-trips`` request/response exchanges of
   64 bytes (``sendall`` + ``recv``) on one tunnel, each one timed; reported
   as the median round trip in microseconds (and CPU per round trip).
   PySocks' ``recv`` is a Python-level wrapper; the others' is the C one.

The libraries are interleaved: every round runs each library once, and the
order changes from round to round (all permutations in turn), so slow drift
in the machine's load hits every library alike.  Each figure is the median
over rounds; "spread" is (max - min) / median over rounds.

How to read the ratios
----------------------
"x PySocks" is, for each round, the library's figure divided by PySocks'
figure from the same round; the column shows the median of those per-round
ratios.  Pairing figures taken seconds apart cancels most of the noise of a
busy machine, which absolute numbers do not.  Each section says whether
higher or lower is better: 1.20 is 20 % better for a rate, 20 % worse for
a latency or a CPU cost.  Differences within the spread are noise.

Everything runs on loopback and microsocks does most of the work for a
handshake (a thread per connection, an outgoing connect), so the wall-clock
rates understate client-side differences; the CPU-per-connection figure is
the one that isolates the client.

Run ``python bench/bench_tcp.py --help`` for the options; ``--quick`` takes
about ten seconds, the defaults about a minute or two.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import socketserver
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

LOOPBACK = "127.0.0.1"
#: Bound on every socket operation, so that a wedged peer cannot hang the run.
IO_TIMEOUT = 10.0
#: Bound on a server's start-up.
STARTUP_TIMEOUT = 10.0
MESSAGE_SIZE = 64
BULK_HEADER = struct.Struct("!Q")
BULK_CHUNK = 1 << 20
RECV_BUFFER = 256 << 10
MIB = 1 << 20

REFERENCE = "PySocks"
ORDER = ("socks5client", "PySocks", "python-socks", "floor")
#: "floor": the least a Python client can do for the same tunnel -- connect,
#: send the greeting, read 2 bytes, send the request, read the 10-byte reply
#: -- with none of the checks a library owes its users.  The target a
#: library's handshake cost is measured against.
#: The optional no-proxy baseline (``--baseline``): the ceiling set by the
#: destination and the kernel, not a contender.
DIRECT = "direct"
#: Credentials given to microsocks (``-u``/``-P``) and to every client by ``--auth``.
AUTH = ("bench", "bench-secret")


class BenchError(Exception):
    """The benchmark cannot go on (a server missing, a wrong reply...)."""


class TimeLimitExceeded(BenchError):
    """The whole run took longer than ``--time-limit``."""


# ---------------------------------------------------------------------------
# The destination: runs in a child process (``--serve-target``)


class _EchoHandler(socketserver.BaseRequestHandler):
    """Send back every byte received until the client closes."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(IO_TIMEOUT * 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(RECV_BUFFER)
        view = memoryview(buf)
        with contextlib.suppress(OSError):
            while True:
                n = sock.recv_into(buf)
                if not n:
                    return
                sock.sendall(view[:n])


class _BulkHandler(socketserver.BaseRequestHandler):
    """Read an 8-byte big-endian count, send that many bytes, close."""

    chunk = memoryview(bytes(BULK_CHUNK))

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(IO_TIMEOUT * 3)
        header = b""
        with contextlib.suppress(OSError):
            while len(header) < BULK_HEADER.size:
                got = sock.recv(BULK_HEADER.size - len(header))
                if not got:
                    return
                header += got
            (left,) = BULK_HEADER.unpack(header)
            while left > 0:
                piece = self.chunk[: min(left, BULK_CHUNK)]
                sock.sendall(piece)
                left -= len(piece)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def serve_target() -> int:
    """Child process: serve echo and bulk ports until stdin reaches EOF.

    Prints ``ECHO_PORT BULK_PORT`` on one line once both listen.  The parent
    stops it by closing the pipe (or, failing that, by its PID); the pipe
    also closes if the parent dies, so the child never outlives it.
    """
    servers = [_Server((LOOPBACK, 0), _EchoHandler), _Server((LOOPBACK, 0), _BulkHandler)]
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        for s in servers
    ]
    for t in threads:
        t.start()
    print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
    try:
        sys.stdin.buffer.read()
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    return 0


# ---------------------------------------------------------------------------
# Starting and stopping the helper processes


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux SIGTERM the child if the benchmark dies.

    Best effort, Linux only; everything is looked up here, in the parent, so
    the child runs no import between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


#: Every child started, so that a last sweep can kill any that an
#: interrupted clean-up left running.
_started: list[subprocess.Popen[Any]] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """Stop ``proc`` by its PID: close its stdin, then SIGTERM, then SIGKILL."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_accepting(proc: subprocess.Popen[Any], port: int) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_microsocks(
    binary: str, stack: contextlib.ExitStack, auth: tuple[str, str] | None = None
) -> int:
    """Start microsocks on a free loopback port; return the port.

    With ``auth`` (user, password) it requires RFC 1929 username/password
    authentication from every client.
    """
    extra = ["-u", auth[0], "-P", auth[1]] if auth else []
    for _attempt in range(3):
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "-i", LOOPBACK, "-p", str(port), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C is ours to handle, not the child's
            preexec_fn=_die_with_parent_hook(),
        )
        _started.append(proc)
        stack.callback(stop_process, proc)
        if _wait_accepting(proc, port):
            return port
        stop_process(proc)  # lost a race for the port, most likely
    raise BenchError(f"{binary} did not start listening on {LOOPBACK}")


def start_target(stack: contextlib.ExitStack) -> tuple[int, int]:
    """Start the destination server in a child process; return (echo, bulk) ports."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve-target"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_die_with_parent_hook(),
    )
    _started.append(proc)
    stack.callback(stop_process, proc)
    stdout = proc.stdout
    assert stdout is not None
    ready: list[bytes] = []
    reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT)
    line = ready[0].split() if ready else []
    if len(line) != 2:
        raise BenchError("the destination server did not start")
    return int(line[0]), int(line[1])


# ---------------------------------------------------------------------------
# The three clients

Connector = Callable[[tuple[str, int]], socket.socket]


@dataclass(frozen=True)
class Client:
    """One library, reduced to "connect to this destination through the proxy"."""

    name: str
    version: str
    connect: Connector


def floor_connector(
    proxy_port: int, auth: tuple[str, str] | None = None, pipelined: bool = False
) -> Connector:
    """The hand-written "floor" client: the least Python code for the same tunnel.

    Connect, send the greeting (method 0, or method 2 with ``auth``), read 2
    bytes, send the RFC 1929 request and read 2 bytes if authenticating,
    send the CONNECT request, read the 10-byte reply (an IPv4 BND: what
    microsocks and Dante answer for an IPv4 destination).  Each read is a
    single ``recv`` with no check beyond the status byte.  ``pipelined``
    sends every message in one write before reading any reply, which only
    servers that read exactly what they need (Dante, not microsocks) accept.
    """
    if auth is None:
        greeting, login = b"\x05\x01\x00", b""
    else:
        user, password = (x.encode() for x in auth)
        greeting = b"\x05\x01\x02"
        login = bytes([1, len(user)]) + user + bytes([len(password)]) + password
    method = greeting[2:]

    def floor(dest: tuple[str, int]) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        s.connect((LOOPBACK, proxy_port))
        # The request bytes are built per connection, as hand-written code would.
        request = b"\x05\x01\x00\x01" + socket.inet_aton(dest[0]) + dest[1].to_bytes(2, "big")
        if pipelined:
            s.sendall(greeting + login + request)
        else:
            s.sendall(greeting)
        if s.recv(2)[1:] != method:
            raise BenchError("floor: the proxy refused the greeting")
        if login:
            if not pipelined:
                s.sendall(login)
            if s.recv(2)[1:] != b"\x00":
                raise BenchError("floor: the proxy refused the credentials")
        if not pipelined:
            s.sendall(request)
        if s.recv(10)[:2] != b"\x05\x00":
            raise BenchError("floor: the proxy refused the request")
        return s

    return floor


def make_clients(
    proxy_port: int,
    wanted: Sequence[str],
    baseline: bool,
    auth: tuple[str, str] | None = None,
) -> tuple[list[Client], list[str]]:
    """The clients that can be imported, and a note for each that cannot.

    ``auth`` (user, password) makes every client authenticate with RFC 1929,
    each the way its documentation shows.
    """
    clients: list[Client] = []
    missing: list[str] = []
    user, password = auth if auth else (None, None)
    # For the URL forms; quoted although the benchmark's credentials need none.
    userinfo = f"{quote(auth[0], safe='')}:{quote(auth[1], safe='')}@" if auth else ""

    if baseline:

        def direct(dest: tuple[str, int]) -> socket.socket:
            return socket.create_connection(dest, IO_TIMEOUT)

        clients.append(Client(DIRECT, "(no proxy)", direct))

    if "socks5client" in wanted:
        try:
            import socks5client

            url = f"socks5h://{userinfo}{LOOPBACK}:{proxy_port}"

            def via_socks5client(dest: tuple[str, int]) -> socket.socket:
                s = socks5client.socksocket()
                s.settimeout(IO_TIMEOUT)
                s.set_proxy(url)
                s.connect(dest)
                return s

            clients.append(Client("socks5client", socks5client.__version__, via_socks5client))
        except ImportError as exc:
            missing.append(f"socks5client: {exc}")

    if "PySocks" in wanted:
        try:
            import socks  # type: ignore[import-untyped]

            def via_pysocks(dest: tuple[str, int]) -> socket.socket:
                s = socks.socksocket()
                s.settimeout(IO_TIMEOUT)
                s.set_proxy(socks.SOCKS5, LOOPBACK, proxy_port, True, user, password)
                s.connect(dest)
                plain: socket.socket = s  # PySocks has no type information
                return plain

            clients.append(Client("PySocks", str(socks.__version__), via_pysocks))
        except ImportError as exc:
            missing.append(f"PySocks: {exc}")

    if "python-socks" in wanted:
        try:
            import python_socks
            from python_socks.sync import Proxy as SyncProxy

            # python-socks' idiom: one Proxy object, many connect() calls.
            proxy = SyncProxy.from_url(f"socks5://{userinfo}{LOOPBACK}:{proxy_port}")

            def via_python_socks(dest: tuple[str, int]) -> socket.socket:
                s: socket.socket = proxy.connect(
                    dest_host=dest[0], dest_port=dest[1], timeout=IO_TIMEOUT
                )
                s.settimeout(IO_TIMEOUT)
                return s

            clients.append(Client("python-socks", str(python_socks.__version__), via_python_socks))
        except ImportError as exc:
            missing.append(f"python-socks: {exc}")

    if "floor" in wanted:
        clients.append(Client("floor", "(hand-written)", floor_connector(proxy_port, auth)))

    return clients, missing


# ---------------------------------------------------------------------------
# One round of each measurement, for one client


@dataclass
class Sample:
    """One round's figures for one client."""

    value: float  # the headline figure (a rate or a latency)
    cpu: float  # client CPU seconds per operation (connection, MiB, round trip)
    extra: dict[str, float] = field(default_factory=dict)


def run_handshakes(client: Client, dest: tuple[str, int], count: int) -> Sample:
    """``count`` times: connect through the proxy, 1-byte echo, close.

    The headline figure is the rate of whole cycles and ``cpu`` the client CPU
    per cycle.  Each ``connect`` (socket creation to reply read: the
    handshake) is also timed on its own, wall clock and CPU, giving
    ``extra["latency_us"]`` (median) and ``extra["handshake_cpu_us"]``
    (mean).  The clock calls cost the same for every client.
    """
    connect = client.connect
    clock, cpu_clock = time.perf_counter, time.process_time
    latencies = [0.0] * count
    handshake_cpu = 0.0
    gc.collect()
    c0 = cpu_clock()
    t0 = clock()
    for i in range(count):
        hc = cpu_clock()
        ht = clock()
        s = connect(dest)
        latencies[i] = clock() - ht
        handshake_cpu += cpu_clock() - hc
        try:
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise BenchError(f"{client.name}: wrong echo")
        finally:
            s.close()
    wall = clock() - t0
    cpu = cpu_clock() - c0
    extra = {
        "latency_us": statistics.median(latencies) * 1e6,
        "handshake_cpu_us": handshake_cpu / count * 1e6,
    }
    return Sample(count / wall, cpu / count, extra)


def run_bulk(client: Client, dest: tuple[str, int], nbytes: int, buf: bytearray) -> Sample:
    """Receive ``nbytes`` through one tunnel with ``recv_into``."""
    s = client.connect(dest)
    try:
        recv_into = s.recv_into
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        s.sendall(BULK_HEADER.pack(nbytes))
        total = 0
        while True:
            n = recv_into(buf)
            if not n:
                break
            total += n
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    finally:
        s.close()
    if total != nbytes:
        raise BenchError(f"{client.name}: received {total} bytes of {nbytes}")
    mib = nbytes / MIB
    return Sample(mib / wall, cpu / mib)


def run_latency(client: Client, dest: tuple[str, int], count: int) -> Sample:
    """``count`` round trips of 64 bytes on one tunnel, each timed."""
    s = client.connect(dest)
    payload = bytes(range(MESSAGE_SIZE))
    times = [0.0] * count
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sendall, recv, clock = s.sendall, s.recv, time.perf_counter
        gc.collect()
        c0 = time.process_time()
        for i in range(count):
            t = clock()
            sendall(payload)
            got = 0
            while got < MESSAGE_SIZE:
                piece = recv(MESSAGE_SIZE - got)
                if not piece:
                    raise BenchError(f"{client.name}: tunnel closed during the latency test")
                got += len(piece)
            times[i] = clock() - t
        cpu = time.process_time() - c0
    finally:
        s.close()
    times.sort()
    p99 = times[min(count - 1, int(count * 0.99))]
    return Sample(statistics.median(times) * 1e6, cpu / count, {"p99_us": p99 * 1e6})


def check_tunnel(client: Client, dest: tuple[str, int], proxy_port: int) -> None:
    """Prove that the client really went through the proxy (kernel peer = proxy)."""
    if client.name == DIRECT:
        return
    s = client.connect(dest)
    try:
        peer = socket.socket.getpeername(s)
        s.sendall(b"?")
        echoed = s.recv(1)
    finally:
        s.close()
    if peer[1] != proxy_port or echoed != b"?":
        raise BenchError(f"{client.name} did not connect through the proxy (peer {peer})")


# ---------------------------------------------------------------------------
# Rounds, summaries, output


@dataclass(frozen=True)
class Metric:
    """One line group in the report."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    pick: Callable[[Sample], float]


@dataclass
class Measurement:
    """All rounds of one measurement."""

    key: str
    title: str
    metrics: list[Metric]
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def orders(names: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """The running order of each round, forever.

    Round r starts with name r (mod n), and on odd rounds the names after
    the first are reversed, so that each name runs first, last and in every
    other place within n rounds.  (Cycling through ``itertools.permutations``
    would keep the same name first for the first (n-1)! rounds.)
    """
    names = list(names)
    for r in itertools.count():
        k = r % len(names) if names else 0
        order = names[k:] + names[:k]
        if r % 2:
            order = order[:1] + order[:0:-1]
        yield tuple(order)


def run_rounds(
    title: str,
    clients: Sequence[Client],
    rounds: int,
    one: Callable[[Client], Sample],
    progress: bool,
) -> dict[str, list[Sample]]:
    """Run ``one`` for every client, ``rounds`` times, in changing order."""
    by_name = {c.name: c for c in clients}
    samples: dict[str, list[Sample]] = {c.name: [] for c in clients}
    order_of = orders([c.name for c in clients])
    for r in range(rounds):
        order = next(order_of)
        if progress:
            print(f"  {title}: round {r + 1}/{rounds} ({', '.join(order)})", file=sys.stderr)
        for name in order:
            samples[name].append(one(by_name[name]))
    return samples


def summarize(m: Measurement) -> dict[str, Any]:
    """Medians, spreads and per-round ratios against the reference library."""
    out: dict[str, Any] = {}
    ref = m.samples.get(REFERENCE)
    for name, samples in m.samples.items():
        entry: dict[str, Any] = {}
        for metric in m.metrics:
            values = [metric.pick(s) for s in samples]
            med = statistics.median(values)
            ratio: float | None = None
            if ref is not None:
                ratio = statistics.median(
                    v / metric.pick(rs) for v, rs in zip(values, ref) if metric.pick(rs) > 0
                )
            entry[metric.key] = {
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "rounds": values,
                "median": med,
                "spread": (max(values) - min(values)) / med if med else 0.0,
                "ratio_vs_pysocks": ratio,
            }
        out[name] = entry
    return out


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(
    measurements: Sequence[Measurement],
    summaries: dict[str, dict[str, Any]],
    clients: Sequence[Client],
    header: Sequence[str],
) -> str:
    """The human-readable table."""
    width = max(len(f"{c.name} {c.version}") for c in clients)
    lines = list(header)
    for m in measurements:
        lines.append("")
        lines.append(m.title)
        for metric in m.metrics:
            better = "higher" if metric.higher_is_better else "lower"
            lines.append(f"  {metric.title} [{metric.unit}], {better} is better")
            lines.append(
                f"    {'library':<{width}}  {'median':>10}  {'spread':>7}  {'x PySocks':>9}"
            )
            for c in clients:
                e = summaries[m.key][c.name][metric.key]
                ratio = "-" if e["ratio_vs_pysocks"] is None else f"{e['ratio_vs_pysocks']:.2f}"
                label = f"{c.name} {c.version}"
                lines.append(
                    f"    {label:<{width}}  {_fmt(e['median']):>10}"
                    f"  {e['spread'] * 100:>6.0f}%  {ratio:>9}"
                )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--quick`` replaces the defaults with small numbers."""
    p = argparse.ArgumentParser(
        description="Benchmark socks5client against PySocks and python-socks through microsocks"
        " on loopback; reports ratios relative to PySocks.",
    )
    p.add_argument("--rounds", type=int, help="rounds per measurement (default 5; quick 3)")
    p.add_argument(
        "--handshakes", type=int, help="handshakes per round and library (default 2000; quick 300)"
    )
    p.add_argument("--bulk-mib", type=int, help="MiB per bulk transfer (default 256; quick 32)")
    p.add_argument(
        "--round-trips", type=int, help="64-byte round trips per round (default 5000; quick 1000)"
    )
    p.add_argument(
        "--quick", action="store_true", help="small numbers: finishes in about ten seconds"
    )
    p.add_argument(
        "--only",
        default=",".join(ORDER),
        help="comma-separated subset of: " + ", ".join(ORDER) + " (default: all)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated measurements to skip: handshake, bulk, latency",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also run plain sockets straight to the destination (no proxy), for scale",
    )
    p.add_argument(
        "--auth",
        action="store_true",
        help="run microsocks with username/password (RFC 1929) and make every client log in",
    )
    p.add_argument("--json", metavar="FILE", help="also write all figures as JSON to FILE")
    p.add_argument("--microsocks", default="microsocks", help="microsocks binary (default: PATH)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="abort (and clean up) after this many seconds (default 600)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = (
        {"rounds": 3, "handshakes": 300, "bulk_mib": 32, "round_trips": 1000}
        if args.quick
        else {"rounds": 5, "handshakes": 2000, "bulk_mib": 256, "round_trips": 5000}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    args.only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(args.only) - set(ORDER)
    if unknown:
        p.error(f"unknown library in --only: {', '.join(sorted(unknown))}")
    args.skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    if args.skip - {"handshake", "bulk", "latency"}:
        p.error("--skip takes handshake, bulk, latency")
    return args


def _raise_time_limit(signum: int, frame: Any) -> None:
    raise TimeLimitExceeded("time limit reached")


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    """Start the servers, run every measurement, print (and save) the report."""
    binary = shutil.which(args.microsocks)
    if binary is None:
        print(
            f"error: {args.microsocks!r} not found; install microsocks"
            " (Debian: apt-get install microsocks) or give --microsocks PATH",
            file=sys.stderr,
        )
        return 2
    progress = not args.quiet
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        auth = AUTH if args.auth else None
        proxy_port = start_microsocks(binary, stack, auth)
        echo_port, bulk_port = start_target(stack)
        echo, bulk = (LOOPBACK, echo_port), (LOOPBACK, bulk_port)
        clients, missing = make_clients(proxy_port, args.only, args.baseline, auth)
        for note in missing:
            print(f"warning: skipped {note}", file=sys.stderr)
        if not clients:
            raise BenchError("no client library could be imported")
        # Fixed display order, whatever the running order.
        clients.sort(key=lambda c: (*ORDER, DIRECT).index(c.name))

        buf = bytearray(RECV_BUFFER)
        for c in clients:  # warm-up, and proof that each one really uses the proxy
            check_tunnel(c, echo, proxy_port)
            run_handshakes(c, echo, 20)
            run_bulk(c, bulk, 4 * MIB, buf)
            run_latency(c, echo, 100)

        measurements: list[Measurement] = []
        if "handshake" not in args.skip:
            m = Measurement(
                "handshake",
                f"Handshake: connect via proxy + 1-byte echo + close, {args.handshakes} per round",
                [
                    Metric("rate", "rate", "conn/s", True, lambda s: s.value),
                    Metric(
                        "cpu_us", "client CPU per connection", "us", False, lambda s: s.cpu * 1e6
                    ),
                    Metric(
                        "latency_us",
                        "handshake latency (connect to reply read, median)",
                        "us",
                        False,
                        lambda s: s.extra["latency_us"],
                    ),
                    Metric(
                        "handshake_cpu_us",
                        "client CPU per handshake (connect to reply read)",
                        "us",
                        False,
                        lambda s: s.extra["handshake_cpu_us"],
                    ),
                ],
            )
            m.samples = run_rounds(
                "handshake",
                clients,
                args.rounds,
                lambda c: run_handshakes(c, echo, args.handshakes),
                progress,
            )
            measurements.append(m)
        if "bulk" not in args.skip:
            nbytes = args.bulk_mib * MIB
            m = Measurement(
                "bulk",
                f"Bulk: receive {args.bulk_mib} MiB through one tunnel with recv_into",
                [
                    Metric("throughput", "throughput", "MiB/s", True, lambda s: s.value),
                    Metric("cpu_us", "client CPU per MiB", "us", False, lambda s: s.cpu * 1e6),
                ],
            )
            m.samples = run_rounds(
                "bulk", clients, args.rounds, lambda c: run_bulk(c, bulk, nbytes, buf), progress
            )
            measurements.append(m)
        if "latency" not in args.skip:
            m = Measurement(
                "latency",
                f"Latency: {args.round_trips} round trips of {MESSAGE_SIZE} bytes on one tunnel",
                [
                    Metric("median_us", "median round trip", "us", False, lambda s: s.value),
                    Metric(
                        "p99_us",
                        "99th percentile round trip",
                        "us",
                        False,
                        lambda s: s.extra["p99_us"],
                    ),
                    Metric(
                        "cpu_us", "client CPU per round trip", "us", False, lambda s: s.cpu * 1e6
                    ),
                ],
            )
            m.samples = run_rounds(
                "latency",
                clients,
                args.rounds,
                lambda c: run_latency(c, echo, args.round_trips),
                progress,
            )
            measurements.append(m)

    elapsed = time.perf_counter() - started
    summaries = {m.key: summarize(m) for m in measurements}
    header = [
        f"socks5client TCP benchmark: {args.rounds} rounds,"
        f" microsocks{' with username/password' if args.auth else ''} on {LOOPBACK},"
        f" Python {platform.python_version()}, {os.cpu_count()} CPUs, {elapsed:.0f} s",
        "median over rounds; spread = (max-min)/median;"
        " x PySocks = median of per-round ratios library/PySocks",
    ]
    print(render(measurements, summaries, clients, header))
    if args.json:
        doc = {
            "config": {
                "rounds": args.rounds,
                "handshakes": args.handshakes,
                "bulk_mib": args.bulk_mib,
                "round_trips": args.round_trips,
                "message_size": MESSAGE_SIZE,
                "quick": args.quick,
                "auth": args.auth,
            },
            "environment": {
                "python": sys.version,
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "microsocks": binary,
                "elapsed_s": elapsed,
            },
            "libraries": {c.name: c.version for c in clients},
            "reference": REFERENCE,
            "results": summaries,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the benchmark under a time limit, always cleaning up."""
    args = parse_args(argv)
    if args.serve_target:
        return serve_target()
    old_term = signal.signal(signal.SIGTERM, _raise_exit)
    alarm = getattr(signal, "SIGALRM", None)
    if alarm is not None:
        signal.signal(alarm, _raise_time_limit)
        signal.setitimer(signal.ITIMER_REAL, args.time_limit)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if alarm is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGTERM, old_term)
        for proc in _started:  # normally all stopped already
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
