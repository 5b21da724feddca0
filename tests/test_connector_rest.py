"""The Engage REST client against a small local fake of the API (paging, auth, rate limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.rest import EngageApiError, EngageRestClient

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


async def test_pages_all_contents_oldest_first(fake: tuple[FakeEngage, str]) -> None:
    engage, url = fake
    async with EngageRestClient(url, TOKEN) as api:
        got = [c["id"] async for c in api.contents(oldest_first=True)]
    assert got == [f"content-{i:04d}" for i in range(320)]
    assert [(q["offset"], q["limit"]) for q in engage.seen] == [
        ("0", "150"),
        ("150", "150"),
        ("300", "150"),
    ]
    assert all(q["q"] == "order:created_at.asc" for q in engage.seen)


async def test_newest_first_by_default_and_filters_are_kept(fake: tuple[FakeEngage, str]) -> None:
    engage, url = fake
    async with EngageRestClient(url, TOKEN) as api:
        first = await anext(api.contents("source:s1"))
    assert first["id"] == "content-0319"
    assert engage.seen[0]["q"] == "source:s1"


async def test_users_teams_sources(fake: tuple[FakeEngage, str]) -> None:
    _, url = fake
    async with EngageRestClient(url, TOKEN) as api:
        assert [u["id"] async for u in api.users()] == ["u1", "u2"]
        assert [t["name"] async for t in api.teams()] == ["Care"]
        assert [s["sla_response"] async for s in api.sources()] == [300]


async def test_429_waits_as_long_as_retry_after_says(fake: tuple[FakeEngage, str]) -> None:
    engage, url = fake
    engage.throttle = ["7", "2"]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with EngageRestClient(url, TOKEN, sleep=sleep) as api:
        users = [u["id"] async for u in api.users()]
    assert users == ["u1", "u2"]
    assert waits == [7.0, 2.0]


async def test_endless_429_gives_up_with_a_clear_error(fake: tuple[FakeEngage, str]) -> None:
    engage, url = fake
    engage.throttle = ["1"] * 10

    async def sleep(seconds: float) -> None:
        return None

    async with EngageRestClient(url, TOKEN, max_attempts=3, sleep=sleep) as api:
        with pytest.raises(EngageApiError, match="rate-limited after 3 tries"):
            await anext(api.users())


async def test_wrong_token_is_an_error_that_does_not_show_the_token(
    fake: tuple[FakeEngage, str],
) -> None:
    _, url = fake
    async with EngageRestClient(url, "wrong-token-value") as api:
        with pytest.raises(EngageApiError, match="HTTP 401") as raised:
            await anext(api.users())
    assert "wrong-token-value" not in str(raised.value)
