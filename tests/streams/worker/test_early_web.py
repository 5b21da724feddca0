"""The worker's port answered before Faust is imported, then handed to aiohttp unbroken."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from aiohttp import web

from devkit.ports import free_port
from streams.worker import early_web
from streams.worker.early_web import EarlyWeb


def _get(port: int, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_liveness_answers_and_everything_else_says_starting() -> None:
    early = EarlyWeb.bind("127.0.0.1", 0)
    assert early is not None
    port = early.port
    try:
        assert _get(port, "/healthz") == (200, {"status": "starting"})
        assert _get(port, "/readyz") == (503, {"status": "starting"})
        assert _get(port, "/metrics?x=1") == (503, {"status": "starting"})
    finally:
        early.hand_over().close()


def test_a_port_in_use_is_left_to_the_worker_server_to_report() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        assert EarlyWeb.bind("127.0.0.1", taken.getsockname()[1]) is None
    finally:
        taken.close()


def test_take_socket_without_start_is_none() -> None:
    assert early_web.take_socket() is None


async def test_a_connection_made_during_the_hand_over_is_answered_by_the_worker_server() -> None:
    early_web.start("127.0.0.1", 0)
    sock = early_web.take_socket()
    assert sock is not None
    assert early_web.take_socket() is None  # once
    port = sock.getsockname()[1]
    # Nobody serves the port now, but it still listens: a client connects and waits.
    waiting = socket.create_connection(("127.0.0.1", port), timeout=5)

    async def alive(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    application = web.Application()
    application.add_routes([web.get("/healthz", alive)])
    runner = web.AppRunner(application)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        answer = await asyncio.to_thread(_ask, waiting)
        assert answer.startswith(b"HTTP/1.1 200")
        assert b'"alive"' in answer
        assert await asyncio.to_thread(_get, port, "/healthz") == (200, {"status": "alive"})
    finally:
        waiting.close()
        await runner.cleanup()


def _ask(connection: socket.socket) -> bytes:
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    chunks = []
    while chunk := connection.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_worker_command_answers_starting_before_its_own_server(tmp_path: Path) -> None:
    """The first answer on a new worker's port comes from the start-up answerer.

    No broker is needed: the port is bound before Faust is imported, and the worker's own
    server (``"alive"``) can only answer after it. Without ``early_web`` the first answer is
    the worker server's, or there is none before the process gives up on the broker.
    """
    port = free_port()
    environment = dict(
        os.environ,
        WORKER_WEB_PORT=str(port),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nobody there
        ENGAGE_DATA_DIR=str(tmp_path),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "engage_streams.cli", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = None
        deadline = time.monotonic() + 60
        while first is None and process.poll() is None and time.monotonic() < deadline:
            try:
                first = _get(port, "/healthz")
            except OSError:
                time.sleep(0.005)
        assert first == (200, {"status": "starting"})
    finally:
        process.terminate()
        process.wait(timeout=30)
