"""Fetch a web page through a SOCKS5 proxy with socks5client: the library's main job.

With no arguments the demo is self-contained and touches only 127.0.0.1:

1. it starts the reference SOCKS5 server from ``tests/server.py`` on a free port;
2. it starts a small HTTP server that serves a page of its own on another free port;
3. it opens a :class:`socks5client.socksocket`, points it at the proxy with a
   ``socks5h://`` URL, and connects to ``("localhost", http_port)``: the name
   ``localhost`` is sent to the proxy unresolved, and the proxy resolves it;
4. it sends a GET on the tunnel and prints what happened at each step.

To fetch through a proxy of your own instead::

    python examples/demo.py --proxy socks5h://user:password@proxy.example:1080 \\
        --url http://example.com/

``--proxy`` alone fetches the demo's local page through your proxy (useful
when the proxy runs on this machine, e.g. ``ssh -D 1080``).  ``https://``
URLs work too: the tunnel is an ordinary socket, so it is wrapped with
:mod:`ssl` like any other.

Exit status: 0 on success, 1 when the proxy fails (the message says how),
2 for bad arguments, 3 when the destination misbehaves after the tunnel is up.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import socks5client

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0
#: The most of the body printed; the rest is counted, not shown.
BODY_PREVIEW = 2000

PAGE = b"""<!doctype html>
<title>socks5client demo</title>
<p>Hello from the demo's HTTP server. You reached me through a SOCKS5 proxy.</p>
"""


class Target(NamedTuple):
    """Where the GET goes: what :func:`urllib.parse.urlsplit` makes of ``--url``."""

    scheme: str
    host: str
    port: int
    path: str


class _PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves :data:`PAGE` for every GET and logs nothing."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def local_http_server() -> Iterator[int]:
    """Serve :data:`PAGE` on 127.0.0.1 (a free port) in a thread; yield the port."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@contextlib.contextmanager
def reference_proxy() -> Iterator[str]:
    """Run the reference SOCKS5 server from ``tests/server.py``; yield its URL."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.server import SocksServer

    with SocksServer("127.0.0.1", 0) as server:
        host, port = server.address
        yield f"socks5h://{host}:{port}"


def parse_target(url: str) -> Target:
    """Split an ``http://`` or ``https://`` URL; raise :class:`ValueError` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--url must be an http:// or https:// URL, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"--url has no host: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, path)


def show(label: str, value: object, note: str = "") -> None:
    """Print one aligned line of the report."""
    suffix = f"   ({note})" if note else ""
    print(f"  {label:<22} {value}{suffix}")


def fetch(proxy: socks5client.Proxy, target: Target) -> None:
    """GET ``target`` through ``proxy`` and print each step.

    Raises :class:`socks5client.ProxyError` if the proxy fails, and other
    :class:`OSError` or :class:`http.client.HTTPException` if the
    destination does.
    """
    show("proxy", proxy, "remote DNS" if proxy.remote_dns else "local DNS")
    show("destination", f"{target.host}:{target.port}")

    sock = socks5client.socksocket()
    sock.set_proxy(proxy)
    sock.settimeout(TIMEOUT)  # bounds the whole SOCKS5 handshake, then each read
    conn: socket.socket = sock
    try:
        # The SOCKS5 handshake (greeting, authentication, CONNECT) runs here.
        sock.connect((target.host, target.port))
        bnd_host, bnd_port = sock.get_proxy_sockname() or ("?", 0)
        show("SOCKS reply BND", f"{bnd_host}:{bnd_port}", "get_proxy_sockname()")
        show("connected to proxy", sock.get_proxy_peername(), "get_proxy_peername()")
        show("peer", sock.getpeername(), "getpeername()")

        if target.scheme == "https":
            # The tunnel is a plain socket: TLS wraps it as it would any socket.
            conn = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
            show("TLS", conn.version())

        host_header = f"[{target.host}]" if ":" in target.host else target.host
        request = (
            f"GET {target.path} HTTP/1.1\r\n"
            f"Host: {host_header}\r\n"
            "User-Agent: socks5client-demo\r\n"
            "Accept: */*\r\n"
            "Connection: close\r\n\r\n"
        )
        conn.sendall(request.encode("ascii"))
        response = http.client.HTTPResponse(conn, method="GET")
        try:
            response.begin()
            body = response.read()
        finally:
            response.close()
    finally:
        conn.close()

    version = "HTTP/1.0" if response.version == 10 else "HTTP/1.1"
    show("status line", f"{version} {response.status} {response.reason}")
    show("body", f"{len(body)} bytes")
    text = body[:BODY_PREVIEW].decode("utf-8", "replace")
    for line in text.rstrip("\n").splitlines():
        print(f"    | {line}")
    if len(body) > BODY_PREVIEW:
        print(f"    | ... ({len(body) - BODY_PREVIEW} more bytes)")


def fail(message: str) -> None:
    """Print ``message`` on stderr, after what the report printed so far."""
    sys.stdout.flush()
    print(message, file=sys.stderr)


def run(proxy: socks5client.Proxy, target: Target) -> int:
    """Fetch and turn failures into a message and an exit status."""
    try:
        fetch(proxy, target)
    except socks5client.ProxyError as exc:
        fail(f"proxy error ({type(exc).__name__}, errno {exc.errno}): {exc}")
        return 1
    except (OSError, http.client.HTTPException) as exc:
        fail(f"error after the tunnel was up: {type(exc).__name__}: {exc}")
        return 3
    print("OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the demo."""
    parser = argparse.ArgumentParser(
        description="Fetch a page through a SOCKS5 proxy with socks5client."
    )
    parser.add_argument(
        "--proxy",
        metavar="URL",
        help="your proxy, e.g. socks5h://user:pass@host:1080 (default: start the"
        " reference server from tests/server.py on 127.0.0.1)",
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="the http:// or https:// page to fetch (needs --proxy; default: a page"
        " served by the demo on 127.0.0.1, reached as 'localhost')",
    )
    args = parser.parse_args(argv)
    if args.url is not None and args.proxy is None:
        parser.error("--url needs --proxy (the reference proxy only serves this machine)")

    # Check both URLs before starting anything.
    try:
        own_proxy = None if args.proxy is None else socks5client.Proxy.from_url(args.proxy)
        own_target = None if args.url is None else parse_target(args.url)
    except ValueError as exc:
        parser.error(str(exc))

    print(f"socks5client {socks5client.__version__} demo")
    with contextlib.ExitStack() as stack:
        if own_target is not None:
            target = own_target
        else:
            http_port = stack.enter_context(local_http_server())
            show("local HTTP server", f"127.0.0.1:{http_port}")
            target = Target("http", "localhost", http_port, "/")
        if own_proxy is not None:
            proxy = own_proxy
        else:
            url = stack.enter_context(reference_proxy())
            show("reference proxy", url, "tests/server.py")
            proxy = socks5client.Proxy.from_url(url)
        return run(proxy, target)


if __name__ == "__main__":
    sys.exit(main())
