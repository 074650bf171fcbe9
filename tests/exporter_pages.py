"""Local HTTP pages standing in for brokers' exporters, for tests of the scrape's HTTP edge."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ExporterPages:
    """One local server per page; a page of None answers 500 (a broken exporter).

    ``together=True``: each request waits until every working page has been asked for (a barrier across
    the servers); fetched one after another, the first request times out and answers 503, so a scrape
    that gets every page has fetched them at once.
    """

    def __init__(self, pages: list[str | None], together: bool = False) -> None:
        barrier = threading.Barrier(sum(p is not None for p in pages)) if together else None
        self.servers = []
        for page in pages:
            class Handler(BaseHTTPRequestHandler):
                def do_GET(self, page=page) -> None:  # noqa: N802 (http.server's name)
                    if page is None:
                        self.send_error(500, "exporter broken")
                        return
                    try:
                        if barrier is not None:
                            barrier.wait(timeout=5)
                    except threading.BrokenBarrierError:
                        self.send_error(503, "asked alone")
                        return
                    body = page.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args) -> None:
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        self.urls = [f"http://127.0.0.1:{s.server_address[1]}/metrics" for s in self.servers]

    def close(self) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()
