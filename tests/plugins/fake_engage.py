"""A small local fake of the classic Engage Digital REST API (``/1.0``): paging, auth, 429s.

The ``fake`` fixture serves it on 127.0.0.1 and yields ``(FakeEngage, base_url)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "engage-api-token"


@dataclass
class FakeEngage:
    """Just enough of ``/1.0``: paged collections, Bearer auth, scripted 429s."""

    collections: dict[str, list[dict[str, Any]]]
    throttle: list[str] = field(default_factory=list)  # Retry-After values of the next 429s
    seen: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/1.0/{collection}", self.page)
        return app

    async def page(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "invalid token"}, status=401)
        if self.throttle:
            return web.Response(status=429, headers={"Retry-After": self.throttle.pop(0)})
        self.seen.append(dict(request.query))
        records = self.collections.get(request.match_info["collection"])
        if records is None:
            return web.Response(status=404)
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        if limit > 150:
            return web.json_response({"error": "limit above 150"}, status=400)
        ordered = sorted(records, key=lambda r: r.get("created_at", ""), reverse=True)
        if "order:created_at.asc" in request.query.get("q", ""):
            ordered.reverse()
        return web.json_response(
            {
                "count": len(ordered),
                "offset": offset,
                "limit": limit,
                "records": ordered[offset : offset + limit],
            }
        )


def contents(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"content-{i:04d}",
            "thread_id": f"thread-{i % 7}",
            "created_at": f"2026-03-01T{i // 60 % 24:02d}:{i % 60:02d}:00Z",
            "status": "new",
            "body": "secret customer words",
        }
        for i in range(count)
    ]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeEngage, str]]:
    engage = FakeEngage(
        {
            "contents": contents(320),
            "users": [{"id": "u1", "firstname": "Ada"}, {"id": "u2", "firstname": "Bo"}],
            "teams": [{"id": "t1", "name": "Care"}],
            "sources": [{"id": "s1", "name": "WhatsApp", "sla_response": 300}],
        }
    )
    server = TestServer(engage.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield engage, str(server.make_url("/1.0"))
    finally:
        await server.close()
