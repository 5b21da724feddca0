"""The worker API's handlers over a minimal aiohttp adapter, served from a background thread.

Blocking clients (schemathesis, selenium) call it; ``serve(build_app(...))`` gives its URL.
``assert_schemathesis_finds_nothing`` fuzzes any server that serves ``/api/v1/openapi.json``
(``SCHEMATHESIS_CLI`` may name another ``st`` executable; default: the one beside Python).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from streams.core.directory import Directory
from streams.core.gamification.leaderboard import Standings
from streams.core.views.api import ChannelSummary, agent_view, channels_view, leaderboard_view
from streams.core.views.openapi import openapi_document

T = TypeVar("T")


def build_app(
    standings: Standings,
    directory: Directory,
    channels: Callable[[], Sequence[ChannelSummary]],
    clock: Callable[[], float] = time.time,
    *,
    bearer_token: bool = False,
) -> web.Application:
    def reply(result: tuple[int, dict[str, Any]]) -> web.Response:
        return web.json_response(result[1], status=result[0])

    async def leaderboard(request: web.Request) -> web.Response:
        return reply(leaderboard_view(standings, directory, request.query, clock()))

    async def agent(request: web.Request) -> web.Response:
        return reply(agent_view(standings, directory, request.match_info["agent_id"], clock()))

    async def channel_list(request: web.Request) -> web.Response:
        return reply(channels_view(channels(), clock()))

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(bearer_token=bearer_token))

    async def wallboard(request: web.Request) -> web.Response:
        page = resources.files("streams.worker").joinpath("wallboard.html").read_text("utf-8")
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/v1/leaderboard", leaderboard),
            web.get("/api/v1/agents/{agent_id}", agent),
            web.get("/api/v1/channels", channel_list),
            web.get("/api/v1/openapi.json", openapi),
            web.get("/wallboard", wallboard),
        ]
    )
    return app


class Served:
    """A running server: its base URL, and a way to run code on its event loop thread."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self._loop = loop

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the server's loop (no request is being served meanwhile)."""

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)


@contextmanager
def serve(app: web.Application) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="api-test-server", daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{port}", loop)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def assert_schemathesis_finds_nothing(
    base_url: str, workdir: Path, token: str | None = None
) -> None:
    """Fuzz the API described by ``{base_url}/api/v1/openapi.json`` with schemathesis (every
    check, positive and negative data): no server error, no answer that breaks the schema.
    With ``token``, every request carries ``Authorization: Bearer <token>`` (schemathesis's
    ``ignored_auth`` check also sends some without it, and expects them refused)."""
    # We send the real token; schemathesis must not also generate (negative) values for the
    # security header, which our -H then overrides: 3.x reports those as accepted bad data.
    auth = (
        ["-H", f"Authorization: Bearer {token}", "--generation-with-security-parameters=false"]
        if token
        else []
    )
    command = [
        os.environ.get("SCHEMATHESIS_CLI", str(Path(sys.executable).parent / "st")),
        "run",
        f"{base_url}/api/v1/openapi.json",
        *auth,
        "--checks",
        "all",
        "--data-generation-method",
        "all",
        "--hypothesis-max-examples=50",
        "--hypothesis-derandomize",
        "--no-color",
    ]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(workdir)}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=workdir,
        env=environment,
    )
    output = result.stdout + result.stderr
    if "object has no attribute 'more'" in output:
        pytest.fail(
            "hypothesis >= 6.170.10 removed an internal that hypothesis-jsonschema 0.23.1 (used "
            "by schemathesis) needs: pin hypothesis<6.170.10 in the dev dependencies"
        )
    assert result.returncode == 0, output
    # Every operation was exercised, and passed.
    assert len(re.findall(r"PASSED", output)) >= 3, output
