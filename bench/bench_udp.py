#!/usr/bin/env python3
"""UDP datagram rate through Dante: socks5client next to PySocks.

One run starts its own Dante (``danted``, as root) on a free loopback port
and a UDP echo server in a child process, then times ``--round-trips``
echo round trips (send one datagram, wait for its echo) for each client:

* ``socks5client``   ``socksocket(AF_INET, SOCK_DGRAM)`` + ``sendto``/``recvfrom``
* ``socks5client-connected``  the same after ``connect()``, with ``send``/``recv``
* ``PySocks``        ``socks.socksocket(AF_INET, SOCK_DGRAM)`` + ``sendto``/``recvfrom``
* ``direct``         a plain UDP socket straight to the echo server (``--baseline``)

Every client sends to the IPv4 literal 127.0.0.1, so all put the same
10-byte header on each datagram.  Figures are round trips per second (wall
clock) and client CPU per round trip (``time.process_time``); each is the
median over ``--rounds`` rounds, the clients interleaved in a different
order each round.  "x PySocks" is the median of the per-round ratios to
PySocks' figure: higher is better for the rate, lower for CPU.

Dante's rule is ``from: 0/0`` here: PySocks asks for the association with
DST set to the domain name "0" (or 0.0.0.0 without remote DNS), which a
``from: 127.0.0.0/8`` rule refuses with REP 2.  socks5client sends its real
UDP address and works under either rule.

Needs: root, ``danted`` (Debian ``dante-server``), PySocks.  Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOOPBACK = "127.0.0.1"
IO_TIMEOUT = 5.0
STARTUP_TIMEOUT = 10.0
PAYLOAD = b"x" * 64

_DANTE_CONFIG = """\
logoutput: {log}
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 0/0 to: 0/0 log: error }}
socks pass {{
    from: 0/0 to: 0/0
    command: udpassociate udpreply
    log: error
}}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_dante(workdir: Path) -> Iterator[int]:
    """Start danted on a free port; stop it (and its workers) by PID afterwards."""
    binary = shutil.which("danted", path=os.pathsep.join([os.defpath, "/usr/sbin", "/sbin"]))
    if binary is None:
        sys.exit("danted not found (Debian: apt-get install dante-server)")
    if os.geteuid() != 0:
        sys.exit("this benchmark runs danted as root (user.privileged: root)")
    port = _free_port()
    conf = workdir / "dante.conf"
    conf.write_text(_DANTE_CONFIG.format(log=workdir / "dante.log", port=port))
    with open(workdir / "dante.out", "wb") as out:
        proc = subprocess.Popen(
            [binary, "-f", str(conf), "-N", "1", "-p", str(workdir / "dante.pid")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "dante.log").read_text(errors="replace")[-2000:]
                sys.exit(f"danted did not start on port {port}:\n{log}")
            with socket.socket() as probe:
                if probe.connect_ex((LOOPBACK, port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _echo_forever(sock: socket.socket) -> None:
    while True:
        data, source = sock.recvfrom(65535)
        sock.sendto(data, source)


@contextlib.contextmanager
def running_echo() -> Iterator[int]:
    """A UDP echo server in a child process (its CPU is not the client's)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    port = int(sock.getsockname()[1])
    child = multiprocessing.get_context("fork").Process(
        target=_echo_forever, args=(sock,), daemon=True
    )
    child.start()
    sock.close()
    try:
        yield port
    finally:
        child.terminate()
        child.join(timeout=5)


# ---------------------------------------------------------------------------
# One client each: make a socket, run n round trips, close


def _round_trips(send: Callable[[bytes], object], recv: Callable[[], bytes], n: int) -> None:
    for _ in range(n):
        send(PAYLOAD)
        if recv() != PAYLOAD:
            raise RuntimeError("the echo came back wrong")


def run_socks5client(proxy_port: int, echo_port: int, n: int, connected: bool) -> None:
    import socks5client

    with socks5client.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(socks5client.Proxy(LOOPBACK, proxy_port))
        s.settimeout(IO_TIMEOUT)
        dest = (LOOPBACK, echo_port)
        s.sendto(PAYLOAD, dest)  # makes the association (not timed separately)
        s.recvfrom(2048)
        if connected:
            s.connect(dest)
            _round_trips(s.send, lambda: s.recv(2048), n)
        else:
            _round_trips(lambda d: s.sendto(d, dest), lambda: s.recvfrom(2048)[0], n)


def run_pysocks(proxy_port: int, echo_port: int, n: int) -> None:
    import socks  # type: ignore[import-untyped]

    with socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(socks.SOCKS5, LOOPBACK, proxy_port)
        s.settimeout(IO_TIMEOUT)
        dest = (LOOPBACK, echo_port)
        s.sendto(PAYLOAD, dest)
        s.recvfrom(2048)
        _round_trips(lambda d: s.sendto(d, dest), lambda: s.recvfrom(2048)[0], n)


def run_direct(proxy_port: int, echo_port: int, n: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(IO_TIMEOUT)
        s.connect((LOOPBACK, echo_port))
        _round_trips(s.send, lambda: s.recv(2048), n)


CLIENTS: dict[str, Callable[[int, int, int], None]] = {
    "socks5client": lambda p, e, n: run_socks5client(p, e, n, connected=False),
    "socks5client-connected": lambda p, e, n: run_socks5client(p, e, n, connected=True),
    "PySocks": run_pysocks,
    "direct": run_direct,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", action="store_true", help="also plain UDP, no proxy")
    parser.add_argument("--quick", action="store_true", help="500 round trips, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.round_trips, args.rounds = 500, 3
    names = [n for n in CLIENTS if n != "direct" or args.baseline]

    rates: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    orders = itertools.cycle(itertools.permutations(names))
    with (
        tempfile.TemporaryDirectory(prefix="bench_udp.") as tmp,
        running_dante(Path(tmp)) as proxy_port,
        running_echo() as echo_port,
    ):
        for round_no in range(args.rounds):
            for name in next(orders):
                wall, cpu = time.perf_counter(), time.process_time()
                CLIENTS[name](proxy_port, echo_port, args.round_trips)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rates[name].append(args.round_trips / wall)
                cpus[name].append(cpu / args.round_trips * 1e6)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    def ratio(figures: dict[str, list[float]], name: str) -> str:
        if "PySocks" not in figures:
            return "-"
        per_round = [a / b for a, b in zip(figures[name], figures["PySocks"])]
        return f"{statistics.median(per_round):.2f}"

    print(
        f"\nUDP echo round trips through Dante, {args.round_trips} x {len(PAYLOAD)} bytes,"
        f" median of {args.rounds} rounds"
    )
    print(f"{'client':<24}{'round trips/s':>14}{'x PySocks':>11}{'CPU us/rt':>11}{'x PySocks':>11}")
    for name in names:
        print(
            f"{name:<24}{statistics.median(rates[name]):>14.0f}{ratio(rates, name):>11}"
            f"{statistics.median(cpus[name]):>11.1f}{ratio(cpus, name):>11}"
        )


if __name__ == "__main__":
    main()
