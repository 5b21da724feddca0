"""The Engage REST client against a small local fake of the API (paging, auth, rate limits)."""

from __future__ import annotations

import pytest

from engage_streams.rest.classic import EngageApiError, EngageRestClient
from tests.plugins.fake_engage import TOKEN, FakeEngage


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
