#!/usr/bin/env python3
"""UDP datagram rate through Dante: socks5client next to a raw header loop and PySocks.

One run starts its own Dante (``danted``, as root), listening on 127.0.0.1
and ::1 on one free port, and a UDP echo server per address family in child
processes, then times echo round trips (send one datagram, wait for its
echo, check it) through Dante's UDP relay for each client:

* ``socks5client``  ``socksocket(family, SOCK_DGRAM)`` + ``sendto``/``recvfrom``
* ``socks5client-connected``  the same after ``connect()``, with ``send``/``recv``
* ``PySocks``  ``socks.socksocket(family, SOCK_DGRAM)`` + ``sendto``/``recvfrom``
  (PySocks cannot associate over IPv6: reported as n/a there)
* ``raw``  the floor: a plain UDP socket whose association was made by hand
  (greeting and UDP ASSOCIATE written with ``struct``), which then only
  prepends a prebuilt header in ``sendto`` to the relay and slices it off
  what ``recvfrom`` returns -- no check of any kind
* ``direct``  (``--baseline``) a plain connected UDP socket straight to the
  echo server, no proxy

Every client sends to the echo server's literal address (127.0.0.1 or
::1), so all put the same header (10 or 22 bytes) on each datagram; every
socket has the same 5-second timeout.  Setting up (socket, association,
one untimed warm-up round trip and a few hundred more) is not timed.

In each round and for each size and family, every client is set up, then
they take turns in batches of 250 round trips (the order rotating batch by
batch) until each has done ``--round-trips``: whatever else the machine
does meanwhile falls on all of them alike.  Figures per payload size and
family, each the median over ``--rounds`` rounds: round trips per second
(wall clock, summed over the client's batches), the spread of
that rate over the rounds ((max - min) / median), client CPU per round trip
(``time.process_time`` of this process: Dante and the echo servers run in
other processes), and the ratios to ``raw`` and to ``PySocks``: the median
of the per-round ratios (higher is better for the rate, lower for CPU).

Options::

    --sizes 64,1400        payload sizes in bytes
    --families ipv4,ipv6   address families (ipv4/4/v4, ipv6/6/v6)
    --round-trips N        timed round trips per client per round (default 5000)
    --rounds N             rounds (default 11; about a minute in all)
    --quick                2000 round trips, 5 rounds (about 10 s)
    --baseline             also time ``direct``
    --clients a,b          only these clients (raw is always run: ratios need it)
    --cpu N                the CPU that this process, Dante and the echo servers
                           all run on (default: the highest-numbered one)
    --no-pin               let the scheduler place them (noisier: see below)
    --json FILE            every figure, per round too, as JSON
    --markdown FILE        a markdown section "## UDP datagrams": a table per
                           size and family and how it was measured

Everything runs pinned to one CPU by default.  A round trip is sequential
anyway (client, Dante, echo server, Dante, client), and on a small virtual
machine whether the scheduler puts two of them on one CPU or on two (where
each hand-over costs an inter-processor wake-up) otherwise changes a run's
figures by a factor of two or more, from one run to the next.

Dante's rule is ``from: 0/0``: PySocks asks for the association with DST
set to the domain name "0", which a ``from: 127.0.0.0/8`` rule refuses with
REP 2.  socks5client and the raw loop send their real UDP address.

Needs: root, ``danted`` (Debian ``dante-server``), PySocks.  Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

LOOPBACK: dict[int, str] = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
FAMILY_NAMES: dict[int, str] = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}
IO_TIMEOUT = 5.0
STARTUP_TIMEOUT = 10.0
RECV_SIZE = 2048
WARM_UP = 300
BATCH = 250

_DANTE_CONFIG = """\
logoutput: {log}
internal: 127.0.0.1 port = {port}
internal: ::1 port = {port}
external: 127.0.0.1
external: ::1
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
    """A TCP port free on both loopback addresses (Dante listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                try:
                    s6.bind(("::1", port))
                except OSError:
                    continue
                return port
    sys.exit("no TCP port free on both 127.0.0.1 and ::1")


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
        for family, host in LOOPBACK.items():
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "dante.log").read_text(errors="replace")[-2000:]
                    sys.exit(f"danted did not start on port {port}:\n{log}")
                with socket.socket(family) as probe:
                    if probe.connect_ex((host, port)) == 0:
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
def running_echo(family: int) -> Iterator[tuple[str, int]]:
    """A UDP echo server in a child process (its CPU is not the client's)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK[family], 0))
    address = (LOOPBACK[family], int(sock.getsockname()[1]))
    child = multiprocessing.get_context("fork").Process(
        target=_echo_forever, args=(sock,), daemon=True
    )
    child.start()
    sock.close()
    try:
        yield address
    finally:
        child.terminate()
        child.join(timeout=5)


# ---------------------------------------------------------------------------
# The clients: each sets up (untimed) and returns send(payload), recv() and
# close().


class Client(NamedTuple):
    send: Callable[[bytes], object]
    recv: Callable[[], bytes]
    close: Callable[[], None]


class Setting(NamedTuple):
    family: int
    proxy: tuple[str, int]
    echo: tuple[str, int]
    payload: bytes


def setup_socks5client(setting: Setting, connected: bool) -> Client:
    import socks5client

    s = socks5client.socksocket(setting.family, socket.SOCK_DGRAM)
    s.set_proxy(socks5client.Proxy(*setting.proxy))
    s.settimeout(IO_TIMEOUT)
    dest = setting.echo
    s.sendto(setting.payload, dest)  # makes the association
    s.recvfrom(RECV_SIZE)
    if connected:
        s.connect(dest)
        recv = s.recv
        return Client(s.send, lambda: recv(RECV_SIZE), s.close)
    sendto, recvfrom = s.sendto, s.recvfrom
    return Client(lambda d: sendto(d, dest), lambda: recvfrom(RECV_SIZE)[0], s.close)


def setup_pysocks(setting: Setting) -> Client:
    import socks  # type: ignore[import-untyped]

    s = socks.socksocket(setting.family, socket.SOCK_DGRAM)
    try:
        s.set_proxy(socks.SOCKS5, *setting.proxy)
        s.settimeout(IO_TIMEOUT)
        dest = setting.echo
        s.sendto(setting.payload, dest)
        s.recvfrom(RECV_SIZE)
    except BaseException:
        s.close()
        raise
    sendto, recvfrom = s.sendto, s.recvfrom
    return Client(lambda d: sendto(d, dest), lambda: recvfrom(RECV_SIZE)[0], s.close)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the proxy closed the connection")
        data += chunk
    return data


def _packed(host: str) -> tuple[int, bytes]:
    """ATYP and address bytes of an IP literal."""
    if ":" in host:
        return 4, socket.inet_pton(socket.AF_INET6, host)
    return 1, socket.inet_pton(socket.AF_INET, host)


def setup_raw(setting: Setting) -> Client:
    """UDP ASSOCIATE by hand, then a header loop with no checks."""
    family = setting.family
    udp = socket.socket(family, socket.SOCK_DGRAM)
    control = socket.create_connection(setting.proxy, timeout=IO_TIMEOUT)
    try:
        udp.settimeout(IO_TIMEOUT)
        udp.bind((LOOPBACK[family], 0))
        control.sendall(b"\x05\x01\x00")
        if _recv_exact(control, 2) != b"\x05\x00":
            raise RuntimeError("the proxy refused method 0")
        local_host, local_port = udp.getsockname()[:2]
        atyp, packed = _packed(local_host)
        control.sendall(
            struct.pack("!BBBB", 5, 3, 0, atyp) + packed + struct.pack("!H", local_port)
        )
        ver, rep, _, atyp = _recv_exact(control, 4)
        if ver != 5 or rep != 0 or atyp not in (1, 4):
            raise RuntimeError(f"UDP ASSOCIATE failed: VER {ver} REP {rep} ATYP {atyp}")
        addr = _recv_exact(control, 4 if atyp == 1 else 16)
        (relay_port,) = struct.unpack("!H", _recv_exact(control, 2))
        relay_host = socket.inet_ntop(socket.AF_INET if atyp == 1 else socket.AF_INET6, addr)
        relay = (relay_host, relay_port)
        atyp, packed = _packed(setting.echo[0])
        header = struct.pack("!HBB", 0, 0, atyp) + packed + struct.pack("!H", setting.echo[1])
        size = len(header)
        sendto, recvfrom = udp.sendto, udp.recvfrom
        sendto(header + setting.payload, relay)
        recvfrom(65536)
    except BaseException:
        udp.close()
        control.close()
        raise

    def close() -> None:
        udp.close()
        control.close()

    return Client(lambda d: sendto(header + d, relay), lambda: recvfrom(65536)[0][size:], close)


def setup_direct(setting: Setting) -> Client:
    s = socket.socket(setting.family, socket.SOCK_DGRAM)
    s.settimeout(IO_TIMEOUT)
    s.connect(setting.echo)
    recv = s.recv
    return Client(s.send, lambda: recv(RECV_SIZE), s.close)


SETUPS: dict[str, Callable[[Setting], Client]] = {
    "socks5client": lambda s: setup_socks5client(s, connected=False),
    "socks5client-connected": lambda s: setup_socks5client(s, connected=True),
    "PySocks": setup_pysocks,
    "raw": setup_raw,
    "direct": setup_direct,
}


def _round_trips(client: Client, payload: bytes, n: int) -> None:
    send, recv = client.send, client.recv
    for _ in range(n):
        send(payload)
        if recv() != payload:
            raise RuntimeError("the echo came back wrong")


def time_round(
    names: list[str], setting: Setting, n: int, errors: dict[str, str]
) -> dict[str, tuple[float, float]]:
    """One round of one cell: ``{client: (round trips/s, CPU µs per round trip)}``.

    Every client is set up first (untimed); then the ``n`` round trips of
    each are run in batches of ``BATCH``, the clients taking turns batch by
    batch in an order that rotates, so that whatever else the machine does
    meanwhile falls on all of them alike.  A client that cannot be set up
    is recorded in ``errors`` (raw must work).
    """
    clients: dict[str, Client] = {}
    try:
        for name in names:
            if name in errors:
                continue
            try:
                clients[name] = SETUPS[name](setting)
            except Exception as exc:  # reported as n/a
                if name == "raw":
                    raise
                errors[name] = f"{type(exc).__name__}: {exc}"
        for client in clients.values():
            _round_trips(client, setting.payload, min(WARM_UP, n))
        walls = dict.fromkeys(clients, 0.0)
        cpus = dict.fromkeys(clients, 0.0)
        order = list(clients)
        gc.collect()
        done = 0
        while done < n:
            batch = min(BATCH, n - done)
            for name in order:
                client = clients[name]
                wall, cpu = time.perf_counter(), time.process_time()
                _round_trips(client, setting.payload, batch)
                walls[name] += time.perf_counter() - wall
                cpus[name] += time.process_time() - cpu
            order.append(order.pop(0))
            done += batch
    finally:
        for client in clients.values():
            client.close()
    return {name: (n / walls[name], cpus[name] / n * 1e6) for name in clients}


# ---------------------------------------------------------------------------
# Figures


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def _ratio(mine: list[float], theirs: list[float] | None) -> float | None:
    if not mine or not theirs:
        return None
    return statistics.median(a / b for a, b in zip(mine, theirs))


def summarize(
    rates: dict[str, list[float]], cpus: dict[str, list[float]], errors: dict[str, str]
) -> list[dict[str, Any]]:
    rows = []
    for name in SETUPS:
        if name not in rates:
            continue
        row: dict[str, Any] = {"client": name}
        if name in errors or not rates[name]:
            row["error"] = errors.get(name, "not run")
            rows.append(row)
            continue
        row.update(
            rate=statistics.median(rates[name]),
            rate_spread=_spread(rates[name]),
            cpu_us=statistics.median(cpus[name]),
            cpu_spread=_spread(cpus[name]),
            rate_vs_raw=_ratio(rates[name], rates.get("raw")),
            rate_vs_pysocks=_ratio(rates[name], rates.get("PySocks")),
            cpu_vs_raw=_ratio(cpus[name], cpus.get("raw")),
            cpu_vs_pysocks=_ratio(cpus[name], cpus.get("PySocks")),
            rates=rates[name],
            cpus_us=cpus[name],
        )
        rows.append(row)
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


TABLE_HEAD = (
    "client",
    "round trips/s",
    "spread",
    "x raw",
    "x PySocks",
    "CPU µs/rt",
    "x raw",
    "x PySocks",
)


def table_cells(row: dict[str, Any]) -> list[str]:
    if "error" in row:
        return [row["client"], "n/a", "", "", "", "n/a", "", ""]
    return [
        row["client"],
        f"{row['rate']:.0f}",
        f"{row['rate_spread']:.0%}",
        _fmt(row["rate_vs_raw"], ".2f"),
        _fmt(row["rate_vs_pysocks"], ".2f"),
        f"{row['cpu_us']:.1f}",
        _fmt(row["cpu_vs_raw"], ".2f"),
        _fmt(row["cpu_vs_pysocks"], ".2f"),
    ]


def text_report(cells: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"UDP echo round trips through Dante: {args.round_trips} per client per round,"
        f" median of {args.rounds} rounds"
    ]
    widths = (24, 14, 8, 7, 10, 10, 7, 10)
    for cell in cells:
        lines.append("")
        lines.append(f"{cell['family']}, {cell['size']}-byte payloads")
        lines.append(
            "".join(
                h.ljust(w) if i == 0 else h.rjust(w)
                for i, (h, w) in enumerate(zip(TABLE_HEAD, widths))
            )
        )
        for row in cell["rows"]:
            lines.append(
                "".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(table_cells(row), widths))
                )
            )
            if "error" in row:
                lines.append(f"{'':<24}({row['error']})")
    return "\n".join(lines)


def markdown_report(
    cells: list[dict[str, Any]], args: argparse.Namespace, env: dict[str, Any]
) -> str:
    out = [
        "## UDP datagrams",
        "",
        "Echo round trips (send one datagram, wait for its echo) through Dante's UDP relay"
        " on loopback, measured by `bench/bench_udp.py" + (" --quick" if args.quick else "") + "`.",
        "",
    ]
    for cell in cells:
        out.append(f"### {cell['family']}, {cell['size']}-byte payloads")
        out.append("")
        out.append("| " + " | ".join(TABLE_HEAD) + " |")
        out.append("| --- |" + " ---: |" * (len(TABLE_HEAD) - 1))
        for row in cell["rows"]:
            out.append("| " + " | ".join(table_cells(row)) + " |")
        notes = [f"{r['client']}: {r['error']}" for r in cell["rows"] if "error" in r]
        if notes:
            out.append("")
            out.append("n/a (the client failed to set up): " + "; ".join(notes))
        out.append("")
    out += [
        "How measured: one Dante 1.4 (`danted -N 1`, method none) listens on 127.0.0.1 and ::1;"
        " a UDP echo server per family runs in its own process.  Each client makes its socket"
        " and association (and warms up) untimed; then the clients take turns in batches of"
        f" {BATCH} round trips (each checked) until each has done {args.round_trips};"
        f" {args.rounds} rounds.  `socks5client` uses `sendto`/`recvfrom`,"
        " `socks5client-connected` `connect` then `send`/`recv`; `raw` is the floor: a plain"
        " UDP socket whose association was made by hand, which only prepends a prebuilt header"
        " (`sendto` to the relay) and slices it off (`recvfrom`), with no check at all.  Every"
        " socket has a 5 s timeout.  "
        + (
            f"Client, Dante and echo servers all run pinned to one CPU (CPU {env['pinned_cpu']}),"
            " which makes the figures repeatable: a round trip is sequential anyway.  "
            if env["pinned_cpu"] is not None
            else "Not pinned to a CPU (--no-pin): expect a large spread.  "
        )
        + "Figures are medians over the rounds: round trips per"
        " second (wall clock), spread = (max - min) / median of that rate, client CPU per round"
        " trip (`time.process_time`; Dante and the echo server are other processes), and the"
        " median of the per-round ratios to `raw` and to `PySocks` (higher is better for the"
        " rate, lower for CPU).  PySocks cannot associate over IPv6 (n/a).  The rate includes"
        " Dante's and the echo server's time, so it moves less than CPU does; on a busy machine"
        " the spread shows how far to trust it."
        f"  Machine: {env['cpus']} CPUs, Python {env['python']}, {env['platform']}.",
        "",
    ]
    return "\n".join(out)


def _families(text: str) -> list[int]:
    names = {"ipv4": socket.AF_INET, "4": socket.AF_INET, "v4": socket.AF_INET}
    names.update({"ipv6": socket.AF_INET6, "6": socket.AF_INET6, "v6": socket.AF_INET6})
    try:
        return [names[part.strip().lower()] for part in text.split(",") if part.strip()]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"unknown family {exc.args[0]!r} (ipv4, ipv6)") from None


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(not 1 <= s <= 65000 for s in sizes):
        raise argparse.ArgumentTypeError("sizes are 1-65000 bytes")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--sizes", type=_sizes, default=[64, 1400])
    parser.add_argument("--families", type=_families, default=[socket.AF_INET, socket.AF_INET6])
    parser.add_argument("--baseline", action="store_true", help="also plain UDP, no proxy")
    parser.add_argument("--clients", help="comma-separated subset of the clients")
    parser.add_argument("--quick", action="store_true", help="2000 round trips, 5 rounds")
    parser.add_argument("--cpu", type=int, help="CPU to run everything on")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--markdown", type=Path, help="write a markdown section to this file")
    args = parser.parse_args()
    if args.quick:
        args.round_trips, args.rounds = 2000, 5
    names = [n for n in SETUPS if n != "direct" or args.baseline]
    if args.clients:
        wanted = {c.strip() for c in args.clients.split(",")} | {"raw"}
        unknown = wanted - set(SETUPS)
        if unknown:
            parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
        names = [n for n in SETUPS if n in wanted]

    pinned = None
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        pinned = allowed[-1] if args.cpu is None else args.cpu
        if pinned not in allowed:
            parser.error(f"CPU {pinned} is not one of {allowed}")
        # Inherited by Dante and the echo servers, started below.
        os.sched_setaffinity(0, {pinned})

    keys = [(f, s) for f in args.families for s in args.sizes]
    rates: dict[tuple[int, int], dict[str, list[float]]] = {k: {n: [] for n in names} for k in keys}
    cpus: dict[tuple[int, int], dict[str, list[float]]] = {k: {n: [] for n in names} for k in keys}
    errors: dict[tuple[int, int], dict[str, str]] = {k: {} for k in keys}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_udp.")))
        proxy_port = stack.enter_context(running_dante(tmp))
        echoes = {f: stack.enter_context(running_echo(f)) for f in args.families}
        for round_no in range(args.rounds):
            for key_no, (family, size) in enumerate(keys):
                setting = Setting(
                    family, (LOOPBACK[family], proxy_port), echoes[family], b"x" * size
                )
                # A different starting order every round (and cell).
                shift = (round_no + key_no) % len(names)
                order = names[shift:] + names[:shift]
                if round_no % 2:
                    order.reverse()
                figures = time_round(order, setting, args.round_trips, errors[family, size])
                for name, (rate, cpu) in figures.items():
                    rates[family, size][name].append(rate)
                    cpus[family, size][name].append(cpu)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    cells = [
        {
            "family": FAMILY_NAMES[f],
            "size": s,
            "rows": summarize(rates[f, s], cpus[f, s], errors[f, s]),
        }
        for f, s in keys
    ]
    env = {
        "pinned_cpu": pinned,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    print()
    print(text_report(cells, args))
    if args.json:
        document = {
            "benchmark": "udp",
            "round_trips": args.round_trips,
            "rounds": args.rounds,
            "quick": args.quick,
            "environment": env,
            "cells": cells,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown_report(cells, args, env))


if __name__ == "__main__":
    main()
