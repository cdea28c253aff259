#!/usr/bin/env python3
"""A TCP relay that adds a fixed one-way delay in each direction: a slow link.

Used by ``bench/run.py`` to measure what pipelining the SOCKS5 handshake
saves.  There is no ``netem`` on the benchmark machines, so the delay is
added in user space: every chunk read from one side is stamped with the
time it arrived and written to the other side ``--delay-ms`` later.

Each connection gets one reader and one writer thread per direction, joined
by a queue.  The reader never waits for the writer, so a chunk's delay
starts when it arrives, not when the previous chunk left: throughput is not
serialised by the sleeping, and each direction behaves like a link with a
fixed latency (and the kernel's socket buffers as its bandwidth-delay
product).  Order is kept, half-closes are forwarded (after the same delay),
and either side failing closes both.

The TCP handshake with the relay itself is local (the relay accepts at once
and connects upstream with no added delay), so a relayed connection costs
no extra round trip before its first byte; only data is delayed.

Run on its own::

    python bench/relay.py --upstream 127.0.0.1:1080 [--port 0] [--delay-ms 20]

It prints the port it listens on (one line, then flushes) and runs until
its standard input reaches EOF or it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Optional

LOOPBACK = "127.0.0.1"
CHUNK = 64 << 10
#: Bound on connecting upstream and on a stalled write.
IO_TIMEOUT = 10.0

#: A queue item: (time due, data); ``data`` None means "the sender half-closed".
_Item = tuple[float, Optional[bytes]]


class _Pair:
    """Both sockets of one relayed connection; closes them once, from any thread."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self._lock = threading.Lock()
        self._open_directions = 2
        self._closed = False

    def direction_done(self) -> None:
        """One direction finished cleanly; close both when both have."""
        with self._lock:
            self._open_directions -= 1
            done = self._open_directions == 0
        if done:
            self.close()

    def close(self) -> None:
        """Close both sockets (idempotent): any error ends the whole connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _read(src: socket.socket, items: queue.SimpleQueue[_Item], delay: float, pair: _Pair) -> None:
    """Stamp each chunk from ``src`` with its due time and queue it at once."""
    try:
        while True:
            data = src.recv(CHUNK)
            items.put((time.monotonic() + delay, data or None))
            if not data:
                return
    except OSError:
        items.put((0.0, None))
        pair.close()


def _write(dst: socket.socket, items: queue.SimpleQueue[_Item], pair: _Pair) -> None:
    """Send each queued chunk to ``dst`` when it falls due; forward the EOF."""
    try:
        while True:
            due, data = items.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                pair.direction_done()
                return
            dst.sendall(data)
    except OSError:
        pair.close()


def _relay(client: socket.socket, upstream_addr: tuple[str, int], delay: float) -> None:
    """Connect upstream and start the four threads of one relayed connection."""
    try:
        upstream = socket.create_connection(upstream_addr, timeout=IO_TIMEOUT)
    except OSError:
        client.close()
        return
    for s in (client, upstream):
        s.settimeout(None)
        # No Nagle in the relay: a delay of its own would blur the one we add.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pair = _Pair(client, upstream)
    for src, dst in ((client, upstream), (upstream, client)):
        items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        threading.Thread(target=_read, args=(src, items, delay, pair), daemon=True).start()
        threading.Thread(target=_write, args=(dst, items, pair), daemon=True).start()


def serve(listener: socket.socket, upstream: tuple[str, int], delay: float) -> None:
    """Accept connections on ``listener`` forever, relaying each one upstream."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the listener was closed: shutting down
        _relay(client, upstream, delay)


class Relay:
    """A relay running in threads of the calling process (for tests and scripts).

    ``bench/run.py`` runs the relay as a child process instead (``main``), so
    that its threads neither take the client's GIL nor count as its CPU.
    """

    def __init__(self, upstream: tuple[str, int], delay: float, port: int = 0) -> None:
        self.listener = socket.create_server((LOOPBACK, port), backlog=128)
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(
            target=serve, args=(self.listener, upstream, delay), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting; connections already relayed end with their peers."""
        self.listener.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Listen on loopback, print the port, relay until stdin closes or a signal."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", type=_parse_address, required=True, help="HOST:PORT to relay to")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    p.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay (default 20)")
    args = p.parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    with Relay(args.upstream, args.delay_ms / 1000.0, args.port) as relay:
        print(relay.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            # The parent closes our stdin to stop us; EOF also comes if it dies.
            sys.stdin.buffer.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
