"""A small FTP server for the BIND interop test, run in its own process.

It is pyftpdlib with one account and one change: every PORT/EPRT command
it receives is written to ``--record`` (one ``PORT host port`` line each),
so the test can check that the address a client announced for a data
connection was a port on the SOCKS server, not on the client.

Usage::

    python ftp_server.py --host 127.0.0.1 --port PORT --root DIR \\
        --user NAME --password PW --record FILE
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]


def _port_target(line: str) -> tuple[str, int]:
    """The address in a PORT argument (``h1,h2,h3,h4,p1,p2``)."""
    parts = [int(x) for x in line.split(",")]
    return ".".join(map(str, parts[:4])), parts[4] * 256 + parts[5]


def _eprt_target(line: str) -> tuple[str, int]:
    """The address in an EPRT argument (``|proto|host|port|``)."""
    delim = line[0]
    _, _proto, host, port, _ = line.split(delim)
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--record", required=True)
    args = parser.parse_args()

    record = Path(args.record)

    def note(kind: str, host: str, port: int) -> None:
        with record.open("a") as out:
            out.write(f"{kind} {host} {port}\n")

    class RecordingHandler(FTPHandler):  # type: ignore[misc]
        def ftp_PORT(self, line: str) -> None:
            # A malformed argument: pyftpdlib answers it itself.
            with contextlib.suppress(ValueError, IndexError):
                note("PORT", *_port_target(line))
            super().ftp_PORT(line)

        def ftp_EPRT(self, line: str) -> None:
            with contextlib.suppress(ValueError, IndexError):
                note("EPRT", *_eprt_target(line))
            super().ftp_EPRT(line)

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    RecordingHandler.authorizer = authorizer
    RecordingHandler.banner = "socks5client interop FTP server ready."
    # The default: refuse PORT to an address other than the control
    # connection's peer.  Through Dante both are 127.0.0.1.
    RecordingHandler.permit_foreign_addresses = False

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = FTPServer((args.host, args.port), RecordingHandler)
    server.serve_forever(timeout=0.5)


if __name__ == "__main__":
    main()
