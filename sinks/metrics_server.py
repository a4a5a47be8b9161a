"""``/metrics`` on a thread of its own, so a scrape never waits on the event loop, nor the loop on it.

prometheus-client's ``start_http_server`` would do, but its thread polls for shutdown every 0.5 s,
which every run would pay at its end; this one polls every 50 ms and is closed by :meth:`close`.
It also counts the scrapes it has answered, so a short run can wait for the one that reads its end.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

SHUTDOWN_POLL = 0.05
"""Seconds between the server thread's checks for shutdown: the most a close waits."""


class _QuietHandler(WSGIRequestHandler):
    """Scrapes come every few seconds: logging each one to stderr would drown the run's output."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class MetricsServer:
    """Serves a registry over HTTP on ``host:port`` until :meth:`close`; port 0 picks a free one."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("_Server", (ThreadingWSGIServer,), {"address_family": family})
        self._app = make_wsgi_app(registry)
        self._scraped = threading.Condition()
        self._begun = 0
        self._answered = 0
        self._server: WSGIServer = make_server(host, port, self._counting_app, server_class, _QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL,), name="rillet-metrics", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The address actually bound."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def _counting_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """The exposition is built inside the call, so once it returns the scrape has read the registry."""
        with self._scraped:
            self._begun += 1
            number = self._begun
        body: Iterable[bytes] = self._app(environ, start_response)
        with self._scraped:
            self._answered = max(self._answered, number)
            self._scraped.notify_all()
        return body

    def wait_for_scrape(self, seconds: float) -> bool:
        """Blocks until a scrape that began after this call has read the registry; False after ``seconds``.

        A scrape already under way may have read the registry before the caller's last update, so
        only one begun later counts.
        """
        with self._scraped:
            after = self._begun
            return self._scraped.wait_for(lambda: self._answered > after, seconds)

    def close(self) -> None:
        """Stops serving and releases the port; blocks for at most about :data:`SHUTDOWN_POLL`."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
