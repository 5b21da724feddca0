"""The worker's HTTP server: leaderboard API, wallboard, ``/metrics``, health.

A thin aiohttp adapter: each route parses nothing itself and calls the framework-free
handlers of ``streams.core.views.api`` with the cluster-wide view (``ClusterReplica``), then writes
their ``(status, body)``. Started before the tables are recovered (``BatchApp``), so
``/healthz``, ``/readyz`` (``recovering``, with progress) and ``/metrics`` answer during a
recovery; the partitions not loaded yet simply have no series. Who may call it, with which
method and from which origin: ``streams.worker.access`` (read-only, optional bearer token
``WORKER_API_TOKEN``, CORS only for ``WORKER_CORS_ORIGIN``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib import resources
from typing import Any

import mode
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from engage_streams.settings import Settings
from streams.core.directory import Directory
from streams.core.responses.channels import merge_channels
from streams.core.views import api
from streams.core.views.openapi import openapi_document
from streams.worker import early_web
from streams.worker.access import AccessPolicy, access_middleware
from streams.worker.cluster import ClusterReplica
from streams.worker.contents import ContentsPipeline
from streams.worker.health import WorkerHealth
from streams.worker.metrics import MetricsPage, WorkerCollector


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class WorkerWeb(mode.Service):
    """Serves the worker's HTTP API on ``WORKER_WEB_HOST:WORKER_WEB_PORT``."""

    def __init__(
        self,
        *,
        settings: Settings,
        pipeline: ContentsPipeline,
        replica: ClusterReplica,
        directory: Directory,
        source_names: Mapping[str, str],
        contents_topic: str,
        health: WorkerHealth,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pipeline = pipeline
        self.replica = replica
        self.directory = directory
        self.source_names = source_names
        self.health = health
        self.metrics_page = MetricsPage(
            pipeline=pipeline,
            worker=WorkerCollector(
                pipeline=pipeline,
                replica=replica,
                directory=directory,
                source_names=source_names,
                contents_topic=contents_topic,
                top_n=settings.leaderboard_top_n,
            ),
            health=health,
            contents_topic=contents_topic,
        )
        self.access = AccessPolicy.of(settings)
        self._runner: web.AppRunner | None = None

    def web_application(self) -> web.Application:
        application = web.Application(
            client_max_size=64 * 1024, middlewares=[access_middleware(self.access)]
        )
        application.add_routes(
            [
                web.get("/api/v1/leaderboard", self.leaderboard),
                web.get("/api/v1/agents/{agent_id}", self.agent),
                web.get("/api/v1/channels", self.channels),
                web.get("/api/v1/openapi.json", self.openapi),
                web.get("/wallboard", self.wallboard),
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
            ]
        )
        return application

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self.web_application(), access_log=None)
        await self._runner.setup()
        sock = early_web.take_socket()
        site: web.BaseSite = (
            web.SockSite(self._runner, sock)
            if sock is not None
            else web.TCPSite(self._runner, self.settings.worker_host, self.settings.worker_web_port)
        )
        await site.start()
        self.log.info(
            "worker web listening on http://%s:%d",
            self.settings.worker_host,
            self.settings.worker_web_port,
        )

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def web_url(self) -> str:
        return f"http://{self.settings.worker_host}:{self.settings.worker_web_port}/"

    # -- routes ----------------------------------------------------------------------------

    async def leaderboard(self, request: web.Request) -> web.Response:
        status, body = api.leaderboard_view(
            self.replica.standings, self.directory, request.query, time.time()
        )
        return _json(status, body)

    async def agent(self, request: web.Request) -> web.Response:
        status, body = api.agent_view(
            self.replica.standings,
            self.directory,
            request.match_info["agent_id"],
            time.time(),
        )
        return _json(status, body)

    async def channels(self, request: web.Request) -> web.Response:
        now = time.time()
        figures = merge_channels(self.replica.summaries.values())
        status, body = api.channels_view(
            api.channel_summaries(figures, now, self.source_names), now
        )
        return _json(status, body)

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(200, openapi_document(bearer_token=self.access.token is not None))

    async def wallboard(self, request: web.Request) -> web.Response:
        page = resources.files("streams.worker").joinpath("wallboard.html").read_text("utf-8")
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=await self.metrics_page.body(),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        status, body = self.health.readyz(owned=sorted(self.pipeline.owned))
        return _json(status, body)
