"""The worker's port, answered from the first second of the process.

Importing Faust and building the app takes seconds before the worker's own web server
(``streams.worker.web``) can start; a liveness probe in that gap would find nothing
listening. ``engage-streams worker`` therefore binds the port first, with the standard
library only, and answers ``/healthz`` 200 and every other path 503 ``starting``. When the
worker's web server starts it takes the same listening socket over (``take_socket``), so no
connection is refused in between: the kernel queues them while the hand-over happens.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

_STARTING: Final = json.dumps({"status": "starting"}).encode()


class _Handler(BaseHTTPRequestHandler):
    # The default HTTP/1.0 closes each connection after its answer: no kept-alive connection
    # stays with this thread once the worker's own server has the socket.
    server_version = "engage-worker"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        code = 200 if path == "/healthz" else 503
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(_STARTING)))
        if code == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(_STARTING)

    def log_message(self, format: str, *args: object) -> None:
        """No access log (the worker's own server keeps none either)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


class EarlyWeb:
    """A listening socket answered by a small thread until the worker takes it."""

    def __init__(self, sock: socket.socket) -> None:
        self._server = _Server(sock)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @classmethod
    def bind(cls, host: str, port: int) -> EarlyWeb | None:
        """Listen on ``host:port``; ``None`` when that fails (the worker's server says why)."""
        try:
            sock = socket.create_server((host, port), backlog=128)
        except OSError:
            return None
        early = cls(sock)
        early._thread.start()
        return early

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one the system chose for 0)."""
        port: int = self._server.socket.getsockname()[1]
        return port

    def hand_over(self) -> socket.socket:
        """Stop answering and give the still-listening socket to the caller."""
        self._server.shutdown()
        self._thread.join()
        return self._server.socket


_early: EarlyWeb | None = None


def start(host: str, port: int) -> None:
    """Answer the worker's port until ``take_socket`` is called."""
    global _early
    _early = EarlyWeb.bind(host, port)


def take_socket() -> socket.socket | None:
    """The listening socket ``start`` bound, once; ``None`` when there is none."""
    global _early
    early, _early = _early, None
    return early.hand_over() if early is not None else None
