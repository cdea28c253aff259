#!/usr/bin/env python3
"""Issue 10's benchmark in one command: measure everything, write docs/performance.md.

    python bench/run.py [--quick] [--output docs/performance.md]

Measures, in one run and on this machine:

1. **Handshake** through microsocks, without and with username/password:
   per-handshake latency (socket creation to CONNECT reply read, median)
   and client CPU per handshake, for socks5client, PySocks, python-socks and
   the hand-written *floor* client of ``bench_tcp.py``.
2. **Import time** of ``socks5client``, ``socks`` (PySocks) and
   ``python_socks.sync``, each in a fresh interpreter, plus which modules
   ``import socks5client`` adds (and whether ``idna`` is one of them).
3. **Bulk** TCP throughput through microsocks, the floor being a plain
   socket through the same proxy.
4. **Concurrency**: handshakes per second with 1 and with 8 threads, and
   the scaling between the two.
5. **Pipelining**: time to first byte through ``relay.py`` (a fixed delay
   each way) and Dante, for each client, socks5client with and without
   ``pipeline=True``; the round trips it saves.
6. **UDP**: the markdown section of ``bench_udp.py``, and from its per-round
   figures (``--json``) the UDP rows of the targets table.

Every comparison is made inside the run: the clients take turns round by
round (``bench_tcp.orders``), each figure is the median over rounds, and
each ratio is the median of the per-round ratios, with the range over the
rounds as its spread.  The report -- machine, targets table, per-measurement
tables, caveats -- is written entirely by this script.

Servers started here (microsocks, Dante, the relay, the destination) listen
on 127.0.0.1 only and are stopped by PID on every path out: normal end,
error, time limit, Ctrl-C, SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata
import inspect
import json
import os
import platform
import pwd
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_tcp as bt  # noqa: E402  (a sibling script, not a package)
from bench_tcp import LOOPBACK, Client, Sample  # noqa: E402

T = TypeVar("T")

FLOOR = "floor"
PYSOCKS = "PySocks"
S5C = "socks5client"
NO_AUTH = "no auth"
USERPASS = "username/password"
#: Dante checks a system account; the CI creates this one (see tests/).
DANTE_USER = ("socks5test", "s5c-interop-pw")
THREADS = 8
NO_RELAY = "floor, no relay"
DASH = "\N{EN DASH}"  # for "no figure" and ranges
TIMES = "\N{MULTIPLICATION SIGN}"  # in ratio column headings


@dataclass(frozen=True)
class Settings:
    """How much of each measurement to run."""

    rounds: int  # handshake rounds
    handshakes: int  # per client per round
    blocks: int  # the handshakes of a round run in this many interleaved blocks
    import_runs: int  # fresh interpreters per module
    bulk_rounds: int
    bulk_mib: int  # per client per round
    bulk_blocks: int  # ... in this many interleaved transfers
    concurrency_rounds: int
    concurrency_handshakes: int  # per client, thread count and round
    concurrency_blocks: int  # ... in this many interleaved runs (split over the threads)
    ttfb_rounds: int
    ttfb_connections: int  # per client per round
    delay_ms: float


QUICK = Settings(
    rounds=5,
    handshakes=150,
    blocks=6,
    import_runs=10,
    bulk_rounds=5,
    bulk_mib=16,
    bulk_blocks=2,
    concurrency_rounds=3,
    concurrency_handshakes=240,
    concurrency_blocks=3,
    ttfb_rounds=3,
    ttfb_connections=3,
    delay_ms=20.0,
)
DEFAULT = Settings(
    rounds=11,
    handshakes=600,
    blocks=12,
    import_runs=40,
    bulk_rounds=15,
    bulk_mib=64,
    bulk_blocks=4,
    concurrency_rounds=7,
    concurrency_handshakes=800,
    concurrency_blocks=5,
    ttfb_rounds=5,
    ttfb_connections=8,
    delay_ms=20.0,
)
SECTIONS = ("imports", "handshake", "bulk", "concurrency", "pipelining", "udp")


# ---------------------------------------------------------------------------
# Figures: medians, spreads, paired ratios


def median(values: Sequence[float]) -> float:
    """The median (``nan`` for no values)."""
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> float:
    """(max - min) / median over rounds: how noisy a figure was."""
    med = median(values)
    return (max(values) - min(values)) / med if values and med else float("nan")


def paired(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Round-by-round ratios a/b: each pairs two figures measured seconds apart."""
    return [x / y for x, y in zip(a, b) if y]


def num(value: float, unit: str = "") -> str:
    """A figure with three significant digits or so."""
    if value != value:  # nan
        return DASH
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if text == "-0.00":  # a tiny negative difference is no difference
        text = "0.00"
    return f"{text} {unit}".rstrip()


def pct(value: float) -> str:
    """A spread as a percentage."""
    return DASH if value != value else f"{value * 100:.0f} %"


def ratio_text(values: Sequence[float]) -> str:
    """The median of per-round ratios, or a dash."""
    return f"{median(values):.2f}" if values else DASH


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Target:
    """One line of the targets table: a goal, the per-round figures, a verdict."""

    what: str
    goal: str
    limit: float | None = None
    at_most: bool = True
    per_round: list[float] = field(default_factory=list)
    #: For a yes/no target, or to explain why there is no figure.
    measured: str | None = None
    ok: bool | None = None

    def meets(self, value: float) -> bool:
        """Whether one figure meets the goal."""
        assert self.limit is not None
        return value <= self.limit if self.at_most else value >= self.limit

    def row(self) -> list[str]:
        """The cells: target, goal, median, range, rounds meeting it, verdict.

        A row with per-round figures but no limit is for information: its
        median and range, and a dash for the rounds meeting a goal and the
        verdict.
        """
        if self.limit is None and self.per_round:
            lo, hi = min(self.per_round), max(self.per_round)
            middle = f"{median(self.per_round):.2f}"
            return [self.what, self.goal, middle, f"{lo:.2f}{DASH}{hi:.2f}", DASH, DASH]
        if self.limit is None or not self.per_round:
            verdict = "n/a" if self.ok is None else ("pass" if self.ok else "**FAIL**")
            return [self.what, self.goal, self.measured or DASH, DASH, DASH, verdict]
        med = median(self.per_round)
        lo, hi = min(self.per_round), max(self.per_round)
        good = sum(self.meets(v) for v in self.per_round)
        return [
            self.what,
            self.goal,
            f"{med:.2f}",
            f"{lo:.2f}{DASH}{hi:.2f}",
            f"{good}/{len(self.per_round)}",
            "pass" if self.meets(med) else "**FAIL**",
        ]


@dataclass
class Section:
    """One measurement's markdown, its targets and its raw figures."""

    markdown: str
    targets: list[Target] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    #: Facts the caveats quote (e.g. microsocks' handshake rate).
    facts: dict[str, float] = field(default_factory=dict)


def unavailable(title: str, why: str, targets: Sequence[Target] = ()) -> Section:
    """A section that could not be measured, with its targets marked n/a."""
    for t in targets:
        t.measured = why
    return Section(f"## {title}\n\n{why}\n", list(targets))


# ---------------------------------------------------------------------------
# Running things


class Log:
    """Progress lines on stderr, with the time since the start."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:6.1f} s] {message}", file=sys.stderr)


def interleaved(
    label: str, tasks: Mapping[str, Callable[[], T]], rounds: int, log: Log, blocks: int = 1
) -> dict[str, list[list[T]]]:
    """Run every task ``blocks`` times per round, in a different order each time.

    Returns, for each task, one list per round of its ``blocks`` results.
    Small blocks interleave finely: a burst of load from elsewhere then hits
    every task of the round alike instead of one task's whole share.
    """
    results: dict[str, list[list[T]]] = {key: [] for key in tasks}
    order_of = bt.orders(list(tasks))
    for r in range(rounds):
        log(f"{label}: round {r + 1}/{rounds}")
        for key in tasks:
            results[key].append([])
        for _ in range(blocks):
            for key in next(order_of):
                results[key][-1].append(tasks[key]())
    return results


def once(results: dict[str, list[list[T]]]) -> dict[str, list[T]]:
    """The results of :func:`interleaved` with one block per round, flattened."""
    return {key: [blocks[0] for blocks in rounds] for key, rounds in results.items()}


def combine_handshakes(blocks: Sequence[Sample]) -> Sample:
    """One round's handshake figures from its blocks (all of the same size).

    Latency: the median of the blocks' medians; CPU: the mean over blocks;
    rate: connections over total time.
    """
    return Sample(
        len(blocks) / sum(1 / b.value for b in blocks),
        statistics.fmean(b.cpu for b in blocks),
        {
            "latency_us": median([b.extra["latency_us"] for b in blocks]),
            "handshake_cpu_us": statistics.fmean(b.extra["handshake_cpu_us"] for b in blocks),
        },
    )


def working(
    clients: Sequence[Client],
    check: Callable[[Client], object],
    notes: list[str],
    prefix: str = "",
) -> list[Client]:
    """The clients for which ``check`` succeeds; a note for each that fails."""
    good = []
    for c in clients:
        try:
            check(c)
        except Exception as exc:
            notes.append(f"{prefix}{c.name} left out: {type(exc).__name__}: {exc}")
        else:
            good.append(c)
    return good


def by_name(clients: Sequence[Client]) -> dict[str, Client]:
    """Clients by name, in display order."""
    return {c.name: c for c in clients}


def note_lines(notes: Sequence[str]) -> str:
    """Notes as a markdown list (or nothing)."""
    return "".join(f"* {n}\n" for n in notes) + ("\n" if notes else "")


# ---------------------------------------------------------------------------
# 1. Handshake: latency and client CPU, without and with authentication


def measure_handshake(
    settings: Settings, ports: dict[str, int], echo: tuple[str, int], log: Log
) -> Section:
    """Per-handshake latency and CPU for every client, both proxies interleaved."""
    notes: list[str] = []
    variants: dict[str, dict[str, Client]] = {}
    for variant, auth in ((NO_AUTH, None), (USERPASS, bt.AUTH)):
        port = ports[variant]
        found, missing = bt.make_clients(port, bt.ORDER, False, auth)
        notes += [f"{variant}: {m} (left out)" for m in missing]

        def check(c: Client, port: int = port) -> None:
            bt.check_tunnel(c, echo, port)
            bt.run_handshakes(c, echo, 20)  # warm-up

        variants[variant] = by_name(working(found, check, notes, f"{variant}: "))

    block = max(1, settings.handshakes // settings.blocks)
    tasks: dict[str, Callable[..., Sample]] = {}
    for variant, clients in variants.items():
        for name, c in clients.items():
            tasks[f"{variant}|{name}"] = lambda c=c: bt.run_handshakes(c, echo, block)
    blocks = interleaved("handshake", tasks, settings.rounds, log, settings.blocks)
    samples = {key: [combine_handshakes(b) for b in rounds] for key, rounds in blocks.items()}

    parts = [
        "## Handshake\n",
        f"microsocks on loopback; {settings.rounds} rounds, each running every client"
        f" {block * settings.blocks} times (connect through the proxy, 1-byte echo, close)"
        f" in {settings.blocks} blocks of {block}, the blocks of all clients and both"
        " proxies interleaved. *Latency* is the median wall-clock time of the connect"
        " call alone (socket creation to CONNECT reply read; per round, the median of"
        " the blocks' medians); *CPU* is the"
        " client process's CPU time (user + system) for that call, per handshake;"
        " *cycles/s* is the rate of whole cycles. Ratios are medians of per-round"
        " ratios; spread is (max - min) / median over rounds.\n",
    ]
    targets: list[Target] = []
    raw: dict[str, Any] = {}
    facts: dict[str, float] = {}
    for variant, clients in variants.items():
        lat = {n: [s.extra["latency_us"] for s in samples[f"{variant}|{n}"]] for n in clients}
        cpu = {n: [s.extra["handshake_cpu_us"] for s in samples[f"{variant}|{n}"]] for n in clients}
        rate = {n: [s.value for s in samples[f"{variant}|{n}"]] for n in clients}
        raw[variant] = {"latency_us": lat, "handshake_cpu_us": cpu, "cycles_per_s": rate}
        rows = []
        for n in clients:
            rows.append(
                [
                    n,
                    num(median(lat[n])),
                    pct(spread(lat[n])),
                    ratio_text(paired(lat[n], lat.get(FLOOR, []))),
                    ratio_text(paired(lat[n], lat.get(PYSOCKS, []))),
                    num(median(cpu[n])),
                    pct(spread(cpu[n])),
                    ratio_text(paired(cpu[n], cpu.get(FLOOR, []))),
                    ratio_text(paired(cpu[n], cpu.get(PYSOCKS, []))),
                    num(median(rate[n])),
                ]
            )
        parts.append(f"### {variant.capitalize()}\n")
        parts.append(
            table(
                [
                    "client",
                    "latency µs",
                    "spread",
                    f"{TIMES} floor",
                    f"{TIMES} PySocks",
                    "CPU µs",
                    "spread",
                    f"{TIMES} floor",
                    f"{TIMES} PySocks",
                    "cycles/s",
                ],
                rows,
                "lrrrrrrrrr",
            )
            + "\n"
        )
        have = S5C in clients and FLOOR in clients
        why = None if have else "socks5client or floor missing"
        cpu_target = Target(
            f"Handshake client CPU, {variant}: socks5client ÷ floor",
            "≤ 1.25",
            1.25,
            per_round=paired(cpu[S5C], cpu[FLOOR]) if have else [],
            measured=why,
        )
        lat_target = Target(
            f"Handshake latency, {variant}: socks5client ÷ floor",
            "≤ 1.05",
            1.05,
            per_round=paired(lat[S5C], lat[FLOOR]) if have else [],
            measured=why,
        )
        targets += [cpu_target, lat_target]
        if FLOOR in clients:
            facts[f"floor_rate_{variant}"] = median(rate[FLOOR])
    parts.append(note_lines(notes))
    # CPU targets first, then latency: the order of the brief.
    targets.sort(key=lambda t: "latency" in t.what)
    return Section("\n".join(parts), targets, raw, facts)


# ---------------------------------------------------------------------------
# 2. Import time, in fresh interpreters

IMPORTS = {S5C: "socks5client", PYSOCKS: "socks", "python-socks": "python_socks.sync"}

#: Runs in a fresh interpreter: times one import, lists the modules it added.
_PROBE = """\
import sys, time
before = set(sys.modules)
t0 = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t0
added = sorted(set(sys.modules) - before)
print(elapsed)
print(" ".join(added))
print(getattr(sys.modules["{top}"], "__file__", "") or "")
"""


#: The environment of the import probes.  Bytecode caches must be written and
#: read for every library alike: pip compiled PySocks and python-socks when it
#: installed them, but an editable or source checkout of socks5client has no
#: caches, and with PYTHONDONTWRITEBYTECODE set (as on some CI images) every
#: import of it would compile its source again.
_BYTECODE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class ImportRun:
    """One fresh interpreter's figures for one module."""

    seconds: float
    added: list[str]
    path: str


def probe_import(module: str, cwd: str) -> ImportRun:
    """Import ``module`` in a fresh interpreter; raise RuntimeError if it fails."""
    code = _PROBE.format(module=module, top=module.split(".")[0])
    # A neutral working directory: the module is found the way the benchmark
    # process itself finds it (installed, editable or PYTHONPATH).
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        env=_BYTECODE_ENV,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"import {module} failed: {last}")
    seconds, added, path = [*proc.stdout.splitlines(), "", "", ""][:3]
    return ImportRun(float(seconds), added.split(), path)


def slowest_imports(module: str, cwd: str, top: int = 8) -> list[tuple[str, int]]:
    """The modules with the largest self time under ``import module`` (-X importtime).

    One run, for orientation only: ``-X importtime`` adds its own overhead.
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        env=_BYTECODE_ENV,
    )
    entries: list[tuple[int, str, int]] = []  # (depth, name, self µs), in output order
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|( +)(\S+)", line)
        if m:
            entries.append((len(m.group(2)), m.group(3), int(m.group(1))))
    # The module's own entry comes after everything it imported; its subtree
    # is the run of deeper entries just before it.
    idx = max((i for i, e in enumerate(entries) if e[1] == module), default=None)
    if idx is None:
        return []
    depth = entries[idx][0]
    subtree = [entries[idx]]
    for e in reversed(entries[:idx]):
        if e[0] <= depth:
            break
        subtree.append(e)
    subtree.sort(key=lambda e: -e[2])
    return [(name, us) for _, name, us in subtree[:top]]


def measure_imports(settings: Settings, log: Log) -> Section:
    """Import time of each library, fresh interpreters interleaved."""
    targets = [
        Target("Import time: socks5client ÷ PySocks", "≤ 1.00", 1.0),
        Target("`import socks5client` does not import idna", "idna not imported"),
    ]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_run_import.") as cwd:
        modules: dict[str, str] = {}
        for name, module in IMPORTS.items():
            try:
                probe_import(module, cwd)  # warm-up: writes the bytecode caches
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                notes.append(f"{name} left out: {exc}")
            else:
                modules[name] = module
        tasks = {
            name: (lambda module=module: probe_import(module, cwd))
            for name, module in modules.items()
        }
        runs = once(interleaved("imports", tasks, settings.import_runs, log))
        slow = slowest_imports("socks5client", cwd) if S5C in modules else []

    ms = {n: [r.seconds * 1e3 for r in rs] for n, rs in runs.items()}
    rows = []
    for name, rs in runs.items():
        added = rs[0].added
        rows.append(
            [
                f"`import {IMPORTS[name]}` ({name})",
                num(median(ms[name])),
                pct(spread(ms[name])),
                ratio_text(paired(ms[name], ms.get(PYSOCKS, []))),
                str(len(added)),
                "yes" if "idna" in added else "no",
            ]
        )
    parts = [
        "## Import time\n",
        f"Each import timed inside a fresh interpreter (`{Path(sys.executable).name} -c`,"
        " `time.perf_counter` around the import statement alone, so interpreter start-up"
        f" is excluded), {settings.import_runs} interpreters per module, the modules"
        " interleaved. *Modules added* counts the entries the import added to"
        " `sys.modules`.\n",
        table(
            ["import", "median ms", "spread", f"{TIMES} PySocks", "modules added", "idna imported"],
            rows,
            "lrrrrl",
        )
        + "\n",
    ]
    if S5C in runs:
        first = runs[S5C][0]
        ours = sorted(m for m in first.added if m.split(".")[0] == "socks5client")
        others = sorted(m for m in first.added if m.split(".")[0] != "socks5client")
        parts.append(f"Measured socks5client: `{first.path}`.\n")
        parts.append(
            f"`import socks5client` adds {len(first.added)} modules: {len(ours)} of its own"
            f" ({', '.join(f'`{m}`' for m in ours)}) and {len(others)} others"
            f" ({', '.join(f'`{m}`' for m in others)}).\n"
        )
        idna = "idna" in first.added
        targets[0].per_round = paired(ms[S5C], ms.get(PYSOCKS, []))
        targets[1].ok = not idna
        targets[1].measured = "imported" if idna else "not imported"
        if slow:
            parts.append(
                "Largest self times under `import socks5client` (one `-X importtime` run,"
                " which adds overhead of its own; for orientation):\n"
            )
            parts.append(
                table(["module", "self µs"], [[f"`{n}`", f"{us:,}"] for n, us in slow], "lr") + "\n"
            )
    else:
        for t in targets:
            t.measured = "socks5client cannot be imported"
    if PYSOCKS not in runs:
        targets[0].measured = "PySocks cannot be imported"
    parts.append(note_lines(notes))
    raw = {n: {"ms": ms[n], "added": runs[n][0].added} for n in runs}
    return Section("\n".join(parts), targets, raw)


# ---------------------------------------------------------------------------
# 3. Bulk throughput


def measure_bulk(
    settings: Settings,
    proxy_port: int,
    echo: tuple[str, int],
    bulk: tuple[str, int],
    log: Log,
) -> Section:
    """Receive ``bulk_mib`` MiB through one tunnel per client, interleaved."""
    notes: list[str] = []
    clients, missing = bt.make_clients(proxy_port, bt.ORDER, True)
    notes += [f"{m} (left out)" for m in missing]
    buf = bytearray(bt.RECV_BUFFER)
    block_mib = max(1, settings.bulk_mib // settings.bulk_blocks)
    nbytes = block_mib * bt.MIB

    def check(c: Client) -> None:
        bt.check_tunnel(c, echo, proxy_port)
        bt.run_bulk(c, bulk, 4 * bt.MIB, buf)  # warm-up

    ok = by_name(working(clients, check, notes))
    tasks = {n: (lambda c=c: bt.run_bulk(c, bulk, nbytes, buf)) for n, c in ok.items()}
    blocks = interleaved("bulk", tasks, settings.bulk_rounds, log, settings.bulk_blocks)
    # Per round: all the MiB over all the time (blocks are of equal size).
    mibs = {n: [len(b) / sum(1 / s.value for s in b) for b in bs] for n, bs in blocks.items()}
    cpu = {n: [statistics.fmean(s.cpu for s in b) * 1e6 for b in bs] for n, bs in blocks.items()}
    rows = []
    for n in ok:
        label = "direct (no proxy, for scale)" if n == bt.DIRECT else n
        rows.append(
            [
                label,
                num(median(mibs[n])),
                pct(spread(mibs[n])),
                DASH if n == bt.DIRECT else ratio_text(paired(mibs[n], mibs.get(FLOOR, []))),
                DASH if n == bt.DIRECT else ratio_text(paired(mibs[n], mibs.get(PYSOCKS, []))),
                num(median(cpu[n])),
            ]
        )
    have = S5C in ok and FLOOR in ok
    target = Target(
        "Bulk throughput: socks5client ÷ plain socket through the proxy (floor)",
        "≥ 0.98",
        0.98,
        at_most=False,
        per_round=paired(mibs[S5C], mibs[FLOOR]) if have else [],
        measured=None if have else "socks5client or floor missing",
    )
    parts = [
        "## Bulk TCP\n",
        f"Tunnels through microsocks; on each, the destination sends {block_mib} MiB and"
        " closes, and the client reads with `recv_into` into a 256 KiB buffer."
        f" {settings.bulk_rounds} rounds of {settings.bulk_blocks} such transfers per client,"
        " all interleaved; per round, MiB/s is all the MiB over all the time. The floor row is a"
        " plain socket through the same proxy (hand-written handshake, then the kernel"
        " socket's own `recv_into`).\n",
        table(
            ["client", "MiB/s", "spread", f"{TIMES} floor", f"{TIMES} PySocks", "CPU µs per MiB"],
            rows,
            "lrrrrr",
        )
        + "\n",
        note_lines(notes),
    ]
    facts = {}
    if FLOOR in ok:
        facts["floor_mib_s"] = median(mibs[FLOOR])
    if bt.DIRECT in ok:
        facts["direct_mib_s"] = median(mibs[bt.DIRECT])
    return Section("\n".join(parts), [target], {"mib_per_s": mibs, "cpu_us_per_mib": cpu}, facts)


# ---------------------------------------------------------------------------
# 4. Concurrency


def concurrent_rate(client: Client, dest: tuple[str, int], threads: int, total: int) -> float:
    """Handshakes per second with ``threads`` threads sharing ``total`` handshakes.

    Every thread connects, echoes one byte and closes, in a loop; the clock
    runs from the moment all threads are released until the last one ends.
    The single-thread case runs the same way, in one worker thread.
    """
    per_thread = max(1, total // threads)
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []
    connect = client.connect

    def worker() -> None:
        start.wait()
        try:
            for _ in range(per_thread):
                s = connect(dest)
                try:
                    s.sendall(b"x")
                    if s.recv(1) != b"x":
                        raise bt.BenchError(f"{client.name}: wrong echo")
                finally:
                    s.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    gc.collect()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise bt.BenchError(f"{client.name} with {threads} threads: {errors[0]!r}")
    return per_thread * threads / wall


def measure_concurrency(
    settings: Settings, proxy_port: int, echo: tuple[str, int], log: Log
) -> Section:
    """Handshake rate with 1 and with 8 threads, every client, interleaved."""
    notes: list[str] = []
    clients, missing = bt.make_clients(proxy_port, bt.ORDER, False)
    notes += [f"{m} (left out)" for m in missing]
    ok = by_name(working(clients, lambda c: concurrent_rate(c, echo, THREADS, THREADS * 5), notes))
    blocks = settings.concurrency_blocks
    block = max(THREADS, settings.concurrency_handshakes // blocks)
    total = block * blocks
    tasks: dict[str, Callable[..., float]] = {}
    for n, c in ok.items():
        for k in (1, THREADS):
            tasks[f"{n}|{k}"] = lambda c=c, k=k: concurrent_rate(c, echo, k, block)
    rates = interleaved("concurrency", tasks, settings.concurrency_rounds, log, blocks)

    def per_round(key: str) -> list[float]:
        # All the handshakes over all the time (blocks are of equal size).
        return [len(b) / sum(1 / r for r in b) for b in rates[key]]

    one = {n: per_round(f"{n}|1") for n in ok}
    many = {n: per_round(f"{n}|{THREADS}") for n in ok}
    scaling = {n: paired(many[n], one[n]) for n in ok}
    rows = []
    for n in ok:
        rows.append(
            [
                n,
                num(median(one[n])),
                pct(spread(one[n])),
                num(median(many[n])),
                pct(spread(many[n])),
                ratio_text(scaling[n]),
                ratio_text(paired(scaling[n], scaling.get(FLOOR, []))),
            ]
        )
    have = S5C in ok and FLOOR in ok
    target = Target(
        f"Scaling to {THREADS} threads: socks5client's ÷ floor's",
        "≥ 0.90",
        0.90,
        at_most=False,
        per_round=paired(scaling[S5C], scaling[FLOOR]) if have else [],
        measured=None if have else "socks5client or floor missing",
    )
    parts = [
        "## Concurrency\n",
        f"{total} handshakes per client, thread count and round through microsocks"
        " (connect, 1-byte echo, close), by one thread or shared by"
        f" {THREADS} threads started together, in {blocks}"
        f" runs of {block}; {settings.concurrency_rounds} rounds, all the runs of every"
        f" (client, thread count) interleaved. *Scaling* is the {THREADS}-thread"
        f" rate ÷ the 1-thread rate of the same round; *{TIMES} floor* compares it with"
        " the floor's scaling in that round."
        " With the GIL and two cores, scaling shows whether a library serialises"
        " handshakes (a lock, a shared resource), not parallel speed-up; and a client"
        " that spends more CPU per handshake has more to overlap with the proxy's work,"
        " so scaling better than the floor is no merit in itself.\n",
        table(
            [
                "client",
                "1 thread/s",
                "spread",
                f"{THREADS} threads/s",
                "spread",
                "scaling",
                f"scaling {TIMES} floor",
            ],
            rows,
            "lrrrrrr",
        )
        + "\n",
        note_lines(notes),
    ]
    raw = {"one_thread": one, f"{THREADS}_threads": many}
    return Section("\n".join(parts), [target], raw)


# ---------------------------------------------------------------------------
# 5. Pipelining: time to first byte through a slow link

_DANTE_CONFIG = """\
logoutput: {log}
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
socksmethod: {method}
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{
    from: 127.0.0.0/8 to: 0.0.0.0/0
    log: error
}}
socks pass {{
    from: 127.0.0.0/8 to: 0.0.0.0/0
    command: connect
    log: error
}}
"""


#: Started here with workers in their own process group (Dante): stopped with
#: the group.
_grouped: list[subprocess.Popen[Any]] = []
#: Benchmarks run as children that start servers of their own (bench_udp.py):
#: stopped with SIGINT, so that they stop those servers first.
_graceful: list[subprocess.Popen[Any]] = []


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a server we started by its PID, then any workers left in its group.

    Dante forks workers into the process group of its first process (started
    with its own session, so the group's id is that PID and holds nothing
    but Dante).
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def start_dante(workdir: Path, method: str, stack: contextlib.ExitStack) -> int:
    """Start danted on a free loopback port with ``socksmethod: method``."""
    binary = shutil.which("danted", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if binary is None:
        raise bt.BenchError("danted not found")
    if os.geteuid() != 0:
        raise bt.BenchError("danted needs root here (user.privileged: root)")
    for attempt in range(3):
        port = bt._free_port()
        conf = workdir / f"dante-{method}-{attempt}.conf"
        log = workdir / f"dante-{method}-{attempt}.log"
        conf.write_text(_DANTE_CONFIG.format(log=log, port=port, method=method))
        with open(workdir / f"dante-{method}-{attempt}.out", "wb") as out:
            proc = subprocess.Popen(
                [binary, "-f", str(conf), "-N", "1", "-p", str(conf.with_suffix(".pid"))],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        bt._started.append(proc)
        _grouped.append(proc)
        stack.callback(_stop_group, proc)
        if bt._wait_accepting(proc, port):
            return port
        _stop_group(proc)
    raise bt.BenchError(f"danted did not start; see {log}")


def start_reference_server(auth: tuple[str, str] | None, stack: contextlib.ExitStack) -> int:
    """Start tests/server.py (the repo's reference SOCKS5 server) in a child process."""
    for _attempt in range(3):
        port = bt._free_port()
        cmd = [sys.executable, str(ROOT / "tests" / "server.py"), "--host", LOOPBACK]
        cmd += ["--port", str(port)]
        if auth:
            cmd += ["--user", auth[0], "--password", auth[1]]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=bt._die_with_parent_hook(),
        )
        bt._started.append(proc)
        stack.callback(bt.stop_process, proc)
        if bt._wait_accepting(proc, port):
            return port
        bt.stop_process(proc)
    raise bt.BenchError("tests/server.py did not start")


def start_relay(upstream: int, delay_ms: float, stack: contextlib.ExitStack) -> int:
    """Start relay.py in a child process in front of ``upstream``; return its port."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "relay.py"),
            *("--upstream", f"{LOOPBACK}:{upstream}"),
            *("--delay-ms", str(delay_ms)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=bt._die_with_parent_hook(),
    )
    bt._started.append(proc)
    stack.callback(bt.stop_process, proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        raise bt.BenchError("relay.py did not start")
    return int(line)


def pipelined_clients(
    proxy_port: int, auth: tuple[str, str] | None
) -> tuple[list[Client], str | None]:
    """socks5client with pipelining (a Proxy object, and the URL form), if it has it."""
    try:
        import socks5client
    except ImportError as exc:
        return [], f"socks5client cannot be imported: {exc}"
    if "pipeline" not in inspect.signature(socks5client.Proxy).parameters:
        return [], "pipelining not available (socks5client.Proxy has no pipeline= yet)"
    user, password = auth or (None, None)
    proxy = socks5client.Proxy(
        LOOPBACK,
        proxy_port,
        username=user,
        password=password,
        pipeline=True,
    )
    userinfo = f"{quote(auth[0], safe='')}:{quote(auth[1], safe='')}@" if auth else ""
    url = f"socks5h://{userinfo}{LOOPBACK}:{proxy_port}?pipeline=1"

    def connector(target: socks5client.Proxy | str) -> bt.Connector:
        def connect(dest: tuple[str, int]) -> socket.socket:
            s = socks5client.socksocket()
            s.settimeout(bt.IO_TIMEOUT)
            s.set_proxy(target)
            s.connect(dest)
            return s

        return connect

    version = socks5client.__version__
    return [
        Client("socks5client, Proxy(pipeline=True)", version, connector(proxy)),
        Client("socks5client, ?pipeline=1", version, connector(url)),
    ], None


def time_to_first_byte(client: Client, dest: tuple[str, int], count: int) -> float:
    """Median ms from starting to connect to reading a 1-byte echo, over ``count``."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        s = client.connect(dest)
        try:
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise bt.BenchError(f"{client.name}: wrong echo")
            times.append(time.perf_counter() - t0)
        finally:
            s.close()
    return median(times) * 1e3


def measure_pipelining(
    settings: Settings, echo: tuple[str, int], log: Log, stack: contextlib.ExitStack
) -> Section:
    """Time to first byte through relay + Dante, normal and pipelined handshakes."""
    rtt = 2 * settings.delay_ms
    notes: list[str] = []
    targets = [
        Target("Pipelining saves round trips, no auth (RTT)", "≥ 0.90", 0.90, at_most=False),
        Target(
            "Pipelining saves round trips, username/password (RTT)",
            "≥ 1.80",
            1.80,
            at_most=False,
        ),
    ]
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_run.")))
    auth_for: dict[str, tuple[str, str] | None] = {NO_AUTH: None, USERPASS: DANTE_USER}
    upstream: dict[str, int] = {}
    try:
        upstream[NO_AUTH] = start_dante(workdir, "none", stack)
        server = "Dante (`danted -N 1`)"
        try:
            pwd.getpwnam(DANTE_USER[0])
        except KeyError:
            notes.append(f"no system account {DANTE_USER[0]!r}: the auth variant is skipped")
        else:
            upstream[USERPASS] = start_dante(workdir, "username", stack)
    except bt.BenchError as exc:
        notes.append(f"Dante unavailable ({exc}); using tests/server.py instead")
        server = "the repo's reference server (`tests/server.py`)"
        auth_for[USERPASS] = bt.AUTH
        upstream[NO_AUTH] = start_reference_server(None, stack)
        upstream[USERPASS] = start_reference_server(bt.AUTH, stack)

    rows_by_variant: dict[str, list[Client]] = {}
    for variant, port in upstream.items():
        auth = auth_for[variant]
        relay_port = start_relay(port, settings.delay_ms, stack)
        clients, missing = bt.make_clients(relay_port, bt.ORDER, False, auth)
        notes += [f"{variant}: {m} (left out)" for m in missing]
        extra, why = pipelined_clients(relay_port, auth)
        if why:
            notes.append(f"{variant}: {why}")
        floor_pipelined = Client(
            "floor, pipelined", "(hand-written)", bt.floor_connector(relay_port, auth, True)
        )
        # The proxy's own time for a handshake and an echo, with no delay at all.
        floor_direct = Client(NO_RELAY, "(hand-written)", bt.floor_connector(port, auth))
        # Display order: socks5client and its pipelined forms, the others, the floors.
        ordered = [*clients[:1], *extra, *clients[1:], floor_pipelined, floor_direct]
        if auth is not None:
            # A wrong system password makes every client fail alike: say so once.
            try:
                bt.check_tunnel(bt.Client(FLOOR, "", bt.floor_connector(port, auth)), echo, port)
            except (bt.BenchError, OSError) as exc:
                notes.append(f"{variant}: the proxy refused {auth[0]!r} ({exc}); skipped")
                continue

        def check(c: Client, relay_port: int = relay_port, port: int = port) -> None:
            bt.check_tunnel(c, echo, port if c.name == NO_RELAY else relay_port)

        rows_by_variant[variant] = working(ordered, check, notes, f"{variant}: ")

    tasks: dict[str, Callable[..., float]] = {}
    for variant, clients in rows_by_variant.items():
        for c in clients:
            tasks[f"{variant}|{c.name}"] = lambda c=c: time_to_first_byte(
                c, echo, settings.ttfb_connections
            )
    ttfb = once(interleaved("pipelining", tasks, settings.ttfb_rounds, log))

    parts = [
        "## Pipelining\n",
        f"Time to first byte through a slow link: `bench/relay.py` adds"
        f" {num(settings.delay_ms)} ms each way (RTT {num(rtt)} ms) between the client and"
        f" {server}; the destination is the echo server. Each figure is the median over"
        f" {settings.ttfb_rounds} rounds of each round's median over"
        f" {settings.ttfb_connections} connections, timed from the start of the connect to"
        " reading back 1 echoed byte. A normal handshake costs 2 RTT (greeting, request)"
        " plus 1 with authentication, and the echo 1 more; a pipelined one sends everything"
        " in one write: 1 RTT, then the echo. The relay accepts locally, so the TCP"
        " handshake adds no delay here (over a real link it would add 1 RTT to every"
        f" row). *{NO_RELAY}* connects to the proxy directly: the proxy's own time,"
        " which every other row includes (with Dante and a password, mostly the check"
        " of the system account's password hash).\n",
    ]
    raw: dict[str, Any] = {}
    for i, variant in enumerate((NO_AUTH, USERPASS)):
        shown = rows_by_variant.get(variant)
        if not shown:
            targets[i].measured = "not measured"
            continue
        figures = {c.name: ttfb[f"{variant}|{c.name}"] for c in shown}
        raw[variant] = figures
        base = figures.get(S5C, [])
        rows = []
        for c in shown:
            f = figures[c.name]
            if c.name == NO_RELAY:
                expected = "0"
            elif "pipeline" in c.name:
                expected = "2"
            else:
                expected = "4" if variant == USERPASS else "3"
            compare = base and c.name not in (S5C, NO_RELAY)
            saved = [(b - x) / rtt for b, x in zip(base, f)] if compare else []
            rows.append(
                [
                    c.name,
                    num(median(f)),
                    pct(spread(f)),
                    num(median(f) / rtt),
                    expected,
                    num(median(saved)) if saved else DASH,
                ]
            )
        if not any("socks5client," in c.name for c in shown):
            rows.insert(1, ["socks5client, pipelined", "pipelining not available", "", "", "", ""])
        parts.append(f"### {variant.capitalize()}\n")
        parts.append(
            table(
                [
                    "client",
                    "TTFB ms",
                    "spread",
                    "in RTT",
                    "expected RTT",
                    "RTT saved vs socks5client",
                ],
                rows,
                "lrrrrr",
            )
            + "\n"
        )
        pipe = figures.get("socks5client, Proxy(pipeline=True)")
        if pipe and base:
            targets[i].per_round = [(b - p) / rtt for b, p in zip(base, pipe)]
        else:
            targets[i].measured = "pipelining not available" if base else "socks5client missing"
    parts.append(note_lines(notes))
    return Section("\n".join(parts), targets, raw)


# ---------------------------------------------------------------------------
# 6. UDP, from bench_udp.py


def _interrupt(proc: subprocess.Popen[Any]) -> None:
    """Stop bench_udp.py so that it stops its own Dante: SIGINT, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # KeyboardInterrupt runs its clean-up
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


RAW = "raw"  # bench_udp.py's hand-written header loop: the floor for UDP

#: The UDP targets: (family, payload bytes, numerator, denominator, goal).
#: A goal of None is a row for information only: raw ÷ PySocks, next to each
#: socks5client ÷ PySocks target, is the most any client can reach against
#: PySocks (a client that cost nothing would be the raw loop).
UDP_TARGETS: tuple[tuple[str, int, str, str, float | None], ...] = (
    ("IPv4", 64, S5C, RAW, 0.90),
    ("IPv4", 1400, S5C, RAW, 0.90),
    ("IPv6", 64, S5C, RAW, 0.90),
    ("IPv6", 1400, S5C, RAW, 0.90),
    ("IPv4", 64, S5C, PYSOCKS, 1.20),
    ("IPv4", 64, RAW, PYSOCKS, None),
    ("IPv4", 1400, S5C, PYSOCKS, 1.20),
    ("IPv4", 1400, RAW, PYSOCKS, None),
)


def udp_targets() -> list[Target]:
    """The UDP rows of the targets table, not yet filled in."""
    targets = []
    for family, size, top, bottom, goal in UDP_TARGETS:
        what = f"UDP round-trip rate, {family} {size} B: {top} ÷ {bottom}"
        if goal is None:
            what += (
                " (information only: the most any client can reach, since raw is a client"
                " that does no work of its own)"
            )
            targets.append(Target(what, "none", at_most=False))
        else:
            targets.append(Target(what, f"≥ {goal:.2f}", goal, at_most=False))
    return targets


def fill_udp_targets(targets: Sequence[Target], document: dict[str, Any]) -> None:
    """Per-round rate ratios from bench_udp.py's ``--json`` document.

    Each client's ``rates`` are its round trips per second, one per round and
    in round order, so that a ratio pairs two rates measured in the same round.
    A client that failed in a cell has an ``error`` instead, and no rates.
    """
    rates: dict[tuple[str, int], dict[str, list[float]]] = {}
    errors: dict[tuple[str, int], dict[str, str]] = {}
    for cell in document.get("cells", []):
        key = (str(cell["family"]), int(cell["size"]))
        rows = cell.get("rows", [])
        rates[key] = {
            str(r["client"]): [float(x) for x in r["rates"]] for r in rows if "rates" in r
        }
        errors[key] = {str(r["client"]): str(r["error"]) for r in rows if "error" in r}
    for (family, size, top, bottom, _goal), target in zip(UDP_TARGETS, targets):
        cell = rates.get((family, size))
        if cell is None:
            target.measured = f"{family} {size} B not measured"
            continue
        missing = [n for n in (top, bottom) if n not in cell]
        if missing:
            target.measured = "; ".join(
                f"{n} n/a ({errors[family, size].get(n, 'not run')})" for n in missing
            )
            continue
        target.per_round = paired(cell[top], cell[bottom])


def measure_udp(quick: bool, log: Log, stack: contextlib.ExitStack) -> Section:
    """Run bench_udp.py: its markdown section as it is, its rounds for the targets."""
    script = HERE / "bench_udp.py"
    title = "UDP datagrams"
    targets = udp_targets()
    helptext = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    if "--markdown" not in helptext or "--json" not in helptext:
        why = "UDP section not available (bench_udp.py has no --markdown or no --json)."
        return unavailable(title, why, targets)
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_run_udp.")))
    out, figures = workdir / "udp.md", workdir / "udp.json"
    cmd = [sys.executable, str(script), "--markdown", str(out), "--json", str(figures)]
    if quick and "--quick" in helptext:
        cmd.append("--quick")
    log("udp: " + " ".join(["python", "bench/bench_udp.py", *cmd[2:]]))
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # we forward Ctrl-C ourselves, as SIGINT
    )
    bt._started.append(proc)
    _graceful.append(proc)
    try:
        _stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        why = "UDP section not available: bench_udp.py took over 600 s."
        return unavailable(title, why, targets)
    finally:
        _interrupt(proc)
    if proc.returncode != 0 or not out.exists() or not figures.exists():
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        why = f"UDP section not available: bench_udp.py failed ({last})."
        return unavailable(title, why, targets)
    text = out.read_text(encoding="utf-8").strip() + "\n"
    if not text.startswith("## "):
        text = f"## {title}\n\n{text}"
    try:
        document = json.loads(figures.read_text(encoding="utf-8"))
        fill_udp_targets(targets, document)
    except (ValueError, KeyError, TypeError) as exc:
        document = {}
        for t in targets:
            t.per_round = []
            t.measured = f"bench_udp.py's figures unreadable ({type(exc).__name__})"
    text += (
        "\nThe UDP rows of the targets table come from these rounds: in each round,"
        " `socks5client`'s rate (`sendto`/`recvfrom`) divided by `raw`'s, and by"
        " `PySocks`', then the median over the rounds (the *x raw* and *x PySocks*"
        " columns above). Beside each PySocks target, *raw ÷ PySocks* from the same"
        " rounds is given for information: `raw` does nothing but add and strip the"
        " header, so it is about the fastest any client can be, and its ratio to PySocks"
        " is about the most any client can reach against PySocks. If it is below the"
        " goal, no client can meet that goal on this machine. `socks5client-connected`"
        " is in the tables above but not in the targets.\n"
    )
    return Section(text, targets, {"udp": document})


# ---------------------------------------------------------------------------
# The report


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command_output(cmd: Sequence[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout + proc.stderr).strip()


def machine() -> list[tuple[str, str]]:
    """What ran the benchmark: hardware, system, interpreter, every peer's version."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    distro = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    dante = re.search(r"v(\d+(?:\.\d+)*)", _command_output(["danted", "-v"]) or "")
    micro = _command_output(["dpkg-query", "-W", "-f", "${Version}", "microsocks"])
    # Read-only git: no optional locks, so a concurrent commit is never disturbed.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    commit, dirty = "", ""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, env=env
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "socks5client"],
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
        ).stdout.strip()
    s5c = _version("socks5client")
    if commit:
        s5c += f" (commit {commit}{', with uncommitted changes' if dirty else ''})"
    return [
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("kernel", platform.release()),
        ("distribution", distro),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("socks5client", s5c),
        ("PySocks", _version("PySocks")),
        ("python-socks", _version("python-socks")),
        ("microsocks", micro if micro and "no packages" not in micro else "unknown"),
        ("Dante", dante.group(1) if dante else "not found"),
    ]


def caveats(facts: dict[str, float], settings: Settings) -> str:
    """The caveats, quoting this run's own figures where they matter."""
    rate = facts.get(f"floor_rate_{NO_AUTH}")
    floor_mib, direct_mib = facts.get("floor_mib_s"), facts.get("direct_mib_s")
    items = [
        "**Loopback only.** Client, proxy and destination are on one machine: a handshake"
        " costs no network round trips except in the pipelining section, so the client's"
        " own work is a large share of every figure. Over a real network, the differences"
        " in handshake cost shrink against the round trips.",
        "**Noise.** The machine has few cores, shared by the client, the proxy, the"
        " destination and whatever else runs. Figures are medians over interleaved rounds"
        " and ratios are paired per round, which cancels slow drift; the range and the"
        " *rounds meeting goal* column show how much noise is left. Differences smaller"
        " than the range are not meaningful: run without `--quick`, or several times.",
        "**microsocks is the bottleneck for rates.** It starts a thread per connection and"
        " copies through a small buffer"
        + (f": the floor manages {num(rate)} handshake cycles/s" if rate else "")
        + (f" and {num(floor_mib)} MiB/s through it" if floor_mib else "")
        + (f", against {num(direct_mib)} MiB/s without a proxy" if direct_mib else "")
        + ". Rates therefore understate client differences; client CPU per handshake is"
        " the figure that isolates the client.",
        "**Client CPU includes kernel work.** `time.process_time` counts user and system"
        " time; on loopback the kernel delivers each segment to the receiving socket"
        " partly in the sender's context, so some of the proxy's TCP work is charged to"
        " the client, equally for every client. It dilutes, not hides, a library's own"
        " cost.",
        "**Garbage collection** stays enabled for every client (as in real use);"
        " `gc.collect()` runs before each timed loop.",
        f"**The relay** delays data by {num(settings.delay_ms)} ms per direction and per"
        " chunk; it does not delay the TCP handshake with itself, and the proxy's own"
        f" time (the *{NO_RELAY}* rows) is part of every row.",
        "**Import time** is measured with the interpreter and packages installed in this"
        " environment (an editable install of socks5client adds a path finder that every"
        " import in the probe consults, PySocks' included).",
    ]
    return "## Caveats\n\n" + "".join(f"* {item}\n" for item in items)


def render(
    sections: Sequence[Section],
    argv: Sequence[str],
    settings: Settings,
    quick: bool,
    elapsed: float,
) -> str:
    """The whole of docs/performance.md."""
    targets = [t for s in sections for t in s.targets]
    facts: dict[str, float] = {}
    for s in sections:
        facts.update(s.facts)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/run.py", *map(shlex.quote, argv)])
    parts = [
        "# Performance\n",
        "<!-- Generated by bench/run.py: do not edit by hand; run it again. -->\n",
        f"socks5client measured next to PySocks, python-socks and a hand-written *floor*"
        f" client (the least Python code for the same tunnel), on {now}, in"
        f" {elapsed:.0f} s{' (quick mode: few rounds, noisy)' if quick else ''}.\n",
        "## How to reproduce\n",
        f"```sh\n{command}\n```\n",
        "Needs microsocks and Dante (`apt-get install microsocks dante-server`), root (for"
        " Dante), PySocks and python-socks (the `test` extra), and the system account"
        f" `{DANTE_USER[0]}` with password `{DANTE_USER[1]}` for the username/password"
        " pipelining rows. `bench/README.md` describes the options.\n",
        "## Machine\n",
        table(["", ""], [[k, v] for k, v in machine()], "ll") + "\n",
        "## Targets\n",
        "Each ratio is computed per round from figures measured seconds apart; *median* is"
        " the median over rounds, *range* the lowest and highest round, and the verdict"
        " applies to the median.\n",
        table(
            ["target", "goal", "median", "range", "rounds meeting goal", "verdict"],
            [t.row() for t in targets],
            "llrrrl",
        )
        + "\n",
    ]
    parts += [s.markdown.rstrip() + "\n" for s in sections]
    parts.append(caveats(facts, settings))
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description="Run every socks5client benchmark and write docs/performance.md."
    )
    p.add_argument("--quick", action="store_true", help="few rounds: well under two minutes")
    p.add_argument(
        "--output",
        default=str(Path("docs") / "performance.md"),
        help="the report to write, relative to the repository (default docs/performance.md)",
    )
    p.add_argument("--json", metavar="FILE", help="also write every round's figures to FILE")
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to leave out: " + ", ".join(SECTIONS),
    )
    p.add_argument(
        "--delay-ms", type=float, help="one-way delay of the pipelining relay (default 20)"
    )
    p.add_argument("--microsocks", default="microsocks", help="microsocks binary (default: PATH)")
    p.add_argument(
        "--time-limit",
        type=float,
        help="give up (stopping every server) after this many seconds (default 900; quick 300)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.skip - set(SECTIONS):
        p.error("--skip takes: " + ", ".join(SECTIONS))
    if args.time_limit is None:
        args.time_limit = 300.0 if args.quick else 900.0
    return args


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Start the servers, run every section, write the report."""
    settings = QUICK if args.quick else DEFAULT
    if args.delay_ms is not None:
        settings = dataclasses.replace(settings, delay_ms=args.delay_ms)
    log = Log(args.quiet)
    started = time.perf_counter()
    sections: list[Section] = []
    skipped = args.skip
    with contextlib.ExitStack() as stack:
        needs_microsocks = {"handshake", "bulk", "concurrency"} - skipped
        echo = bulk = (LOOPBACK, 0)
        if needs_microsocks or "pipelining" not in skipped:
            echo_port, bulk_port = bt.start_target(stack)
            echo, bulk = (LOOPBACK, echo_port), (LOOPBACK, bulk_port)
        if needs_microsocks:
            binary = shutil.which(args.microsocks)
            if binary is None:
                raise bt.BenchError(f"{args.microsocks!r} not found (apt-get install microsocks)")
            ports = {
                NO_AUTH: bt.start_microsocks(binary, stack),
                USERPASS: bt.start_microsocks(binary, stack, bt.AUTH),
            }
            log(f"microsocks on ports {ports[NO_AUTH]} and {ports[USERPASS]} (with auth)")
            if "handshake" not in skipped:
                sections.append(measure_handshake(settings, ports, echo, log))
        # In the order of issue 10's targets; the idle servers cost nothing meanwhile.
        if "imports" not in skipped:
            sections.append(measure_imports(settings, log))
        if needs_microsocks:
            if "bulk" not in skipped:
                sections.append(measure_bulk(settings, ports[NO_AUTH], echo, bulk, log))
            if "concurrency" not in skipped:
                sections.append(measure_concurrency(settings, ports[NO_AUTH], echo, log))
        if "pipelining" not in skipped:
            with contextlib.ExitStack() as servers:  # Dante and relays stop right after
                sections.append(measure_pipelining(settings, echo, log, servers))
        if "udp" not in skipped:
            sections.append(measure_udp(args.quick, log, stack))
    elapsed = time.perf_counter() - started

    text = render(sections, argv, settings, args.quick, elapsed)
    output = Path(args.output)
    if not output.is_absolute():
        output = ROOT / output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    targets = [t for s in sections for t in s.targets]
    print(
        table(
            ["target", "goal", "median", "range", "rounds meeting goal", "verdict"],
            [t.row() for t in targets],
            "llrrrl",
        )
    )
    print(f"\nwrote {output} in {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"settings": settings.__dict__, "sections": [s.raw for s in sections]},
                f,
                indent=2,
            )
            f.write("\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run under a time limit, always stopping what was started."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    old_term = signal.signal(signal.SIGTERM, bt._raise_exit)
    signal.signal(signal.SIGALRM, bt._raise_time_limit)
    signal.setitimer(signal.ITIMER_REAL, args.time_limit)
    try:
        return run(args, argv)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except bt.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGTERM, old_term)
        # Normally all stopped already; this catches a clean-up cut short.
        for proc in bt._started:
            if proc in _graceful:
                _interrupt(proc)
            elif proc in _grouped:
                _stop_group(proc)
            elif proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
