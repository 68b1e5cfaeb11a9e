"""A plain HTTP server on 127.0.0.1 in a thread, for tests that need something to fetch."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serves `handler` on a free loopback port (yielded) until the block ends."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for `serving` that keeps its access log off the test output."""

    def reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        """Answer `status` with exactly these headers (a Content-Length may promise more
        than `body` holds, as a HEAD answer's does)."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass
