"""The platform REST client against the fake platform API served over real HTTP on 127.0.0.1.

Token issue/refresh (expiry and 401), paging and time bounds, 429/503 handling with
``Retry-After`` and the rate-limit headers, errors naming the call and never a secret.
Time is a ``ManualClock`` shared by the client and the fake, and the client's sleeps are
recorded instead of slept: nothing here waits on a wall clock.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from engage_streams.rest.platform import PlatformApiError, PlatformClient, PlatformNotFound
from engage_streams.settings import Settings, SettingsError
from simulator.platform_api import FakePlatform, ManualClock, serving

SECRET = "client-secret-0f3a9c"
JWT = "eyJhbGciOiJSUzI1NiJ9.jwt-credential-7d2e"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class Setup:
    platform: FakePlatform
    url: str
    clock: ManualClock
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    sleeps: list[float] = field(default_factory=list)

    def client(self, **options: Any) -> PlatformClient:
        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            self.clock.advance(seconds)

        options.setdefault("registry", self.registry)
        return PlatformClient(
            self.url,
            self.platform.client_id,
            options.pop("client_secret", SECRET),
            options.pop("jwt", JWT),
            clock=self.clock,
            sleep=sleep,
            **options,
        )

    def requests(self, call: str, code: str) -> float:
        value = self.registry.get_sample_value(
            "engage_platform_api_requests_total", {"call": call, "code": code}
        )
        return value or 0.0


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    clock = ManualClock(START.timestamp())
    platform = FakePlatform(client_secret=SECRET, jwt=JWT, token_lifetime=3600, clock=clock)
    async with serving(platform) as url:
        yield Setup(platform, url, clock)


def contents(count: int, *, every: timedelta = timedelta(minutes=1)) -> list[dict[str, Any]]:
    return [
        {
            "id": f"c{i:04d}",
            "threadId": f"t{i % 5}",
            "channelId": "whatsapp-1" if i % 2 else "facebook-1",
            "channelType": "WhatsApp" if i % 2 else "Messenger",
            "creationTime": (START + i * every).isoformat().replace("+00:00", "Z"),
            "status": "New",
            "body": "the customer's words",
        }
        for i in range(count)
    ]


async def test_one_token_serves_many_calls(setup: Setup) -> None:
    setup.platform.add_contents(contents(3))
    async with setup.client() as platform:
        for content_id in ("c0000", "c0001", "c0002"):
            assert (await platform.get_content(content_id))["id"] == content_id
    assert setup.platform.tokens_issued == 1
    assert setup.requests("token", "200") == 1
    assert setup.requests("get_content", "200") == 3


async def test_token_is_refreshed_before_it_expires(setup: Setup) -> None:
    setup.platform.add_contents(contents(1))
    async with setup.client() as platform:
        await platform.get_content("c0000")
        setup.clock.advance(3600 - 30)  # within the refresh margin, not yet expired
        await platform.get_content("c0000")
        setup.clock.advance(3600 - 30)
        await platform.get_content("c0000")
    assert setup.platform.tokens_issued == 3
    assert setup.requests("get_content", "401") == 0  # refreshed ahead, never refused


async def test_token_is_refreshed_once_on_401(setup: Setup) -> None:
    setup.platform.add_contents(contents(1))
    async with setup.client() as platform:
        await platform.get_content("c0000")
        setup.platform.revoke_tokens()
        assert (await platform.get_content("c0000"))["id"] == "c0000"
    assert setup.platform.tokens_issued == 2
    assert setup.requests("get_content", "401") == 1


async def test_a_second_401_is_an_error_naming_the_settings(setup: Setup) -> None:
    setup.platform.add_contents(contents(1))
    async with setup.client() as platform:
        await platform.get_content("c0000")
        setup.platform.fail(401, times=2, path="/cx/")
        with pytest.raises(PlatformApiError) as caught:
            await platform.get_content("c0000")
    assert caught.value.call == "get_content" and caught.value.status == 401
    assert "RINGCENTRAL_JWT" in str(caught.value)
    assert setup.platform.tokens_issued == 2  # one refresh, not a loop


@pytest.mark.parametrize("wrong", ["jwt", "client_secret"])
async def test_refused_credentials_never_appear_in_the_error(setup: Setup, wrong: str) -> None:
    bad = f"wrong-{wrong}-value-91c4"
    async with setup.client(**{wrong: bad}) as platform:
        with pytest.raises(PlatformApiError) as caught:
            await platform.get_content("c0000")
    error = caught.value
    assert error.call == "token" and error.status in (400, 401)
    assert "RINGCENTRAL_CLIENT_SECRET" in str(error)
    shown = "".join(traceback.format_exception(error)) + repr(error) + repr(platform)
    for secret in (bad, SECRET, JWT):
        assert secret not in shown
    assert error.__cause__ is None and error.__context__ is None  # no chained request


async def test_paging_reads_every_page_in_order(setup: Setup) -> None:
    setup.platform.add_contents(contents(250))
    async with setup.client() as platform:
        seen = [c["id"] async for c in platform.list_contents(order_by="+creationTime")]
    assert seen == [f"c{i:04d}" for i in range(250)]
    assert setup.platform.calls("GET", "/cx/social-messaging/v1/contents") == 3
    assert setup.requests("list_contents", "200") == 3


async def test_paging_newest_first_with_filters(setup: Setup) -> None:
    setup.platform.add_contents(contents(40))
    async with setup.client() as platform:
        seen = [
            c["id"]
            async for c in platform.list_contents(
                order_by="-creationTime", per_page=7, source="whatsapp-1"
            )
        ]
    assert seen == [f"c{i:04d}" for i in range(39, 0, -2)]


async def test_since_and_until_stop_paging_early(setup: Setup) -> None:
    setup.platform.add_contents(contents(100, every=timedelta(hours=1)))
    since, until = START + timedelta(hours=10), START + timedelta(hours=20)
    async with setup.client() as platform:
        oldest_first = [
            c["id"] async for c in platform.list_contents(since=since, until=until, per_page=10)
        ]
        pages_ascending = setup.platform.calls("GET", "/cx/social-messaging/v1/contents")
        newest_first = [
            c["id"]
            async for c in platform.list_contents(
                since=since, until=until, per_page=10, order_by="-creationTime"
            )
        ]
    expected = [f"c{i:04d}" for i in range(10, 20)]  # since inclusive, until exclusive
    assert oldest_first == expected
    assert newest_first == expected[::-1]
    assert pages_ascending == 3  # pages 1-3 of 10; nothing after `until` was read


async def test_429_waits_as_retry_after_says(setup: Setup) -> None:
    setup.platform.add_contents(contents(1))
    async with setup.client() as platform:
        await platform.get_content("c0000")
        setup.platform.fail(429, times=2, retry_after=7, path="/cx/")
        assert (await platform.get_content("c0000"))["id"] == "c0000"
    assert setup.sleeps == [7.0, 7.0]
    assert setup.requests("get_content", "429") == 2


async def test_429_without_retry_after_waits_for_the_rate_limit_window(setup: Setup) -> None:
    setup.platform.add_contents(contents(1))
    async with setup.client(max_wait_seconds=45) as platform:
        setup.platform.fail(429, times=1, path="/cx/")  # X-Rate-Limit-Window: 60, capped at 45
        await platform.get_content("c0000")
    assert setup.sleeps == [45.0]


async def test_the_last_request_of_a_rate_limit_window_pauses_the_next(setup: Setup) -> None:
    setup.platform.add_contents(contents(1))
    setup.platform.rate_limit = (3, 60.0)  # three requests a minute, then 429
    async with setup.client() as platform:
        for _ in range(7):
            await platform.get_content("c0000")
    assert setup.requests("get_content", "200") == 7
    assert setup.requests("get_content", "429") == 0  # paced, never refused
    assert setup.sleeps == [60.0, 60.0]


async def test_503_backs_off_exponentially_then_names_the_call(setup: Setup) -> None:
    async with setup.client(max_retries=3) as platform:
        setup.platform.fail(503, times=10)
        with pytest.raises(PlatformApiError) as caught:
            await platform.get_content("c0000")
    assert caught.value.status == 503 and caught.value.call == "token"
    assert "HTTP 503 after 4 attempts" in str(caught.value)
    assert setup.sleeps == [0.5, 1.0, 2.0]


async def test_unknown_content_is_not_found(setup: Setup) -> None:
    async with setup.client() as platform:
        with pytest.raises(PlatformNotFound) as caught:
            await platform.get_content("nope")
    assert caught.value.error_code == "EDI-029"
    assert "get_content" in str(caught.value) and "404" in str(caught.value)


async def test_create_a_reply_and_a_new_discussion(setup: Setup) -> None:
    (customer,) = setup.platform.add_contents(contents(1))
    setup.platform.add_identity({"id": "agent-identity", "userIds": [setup.platform.owner_id]})
    async with setup.client() as platform:
        setup.platform.fail(
            429, times=1, retry_after=1, path="/cx/"
        )  # not processed: safe to repeat
        reply = await platform.create_content("On it!", in_reply_to_content_id="c0000")
        discussion = await platform.create_content("Hello", source_id="whatsapp-1", to=["+331"])
        fetched = await platform.get_content(reply["id"])
    assert fetched == reply
    assert (reply["threadId"], reply["channelId"]) == (customer["threadId"], "facebook-1")
    assert (reply["inReplyToContentId"], reply["status"]) == ("c0000", "UserReply")
    assert reply["creatorId"] == setup.platform.owner_id
    assert reply["authorIdentityId"] == "agent-identity"
    assert discussion["status"] == "UserInitiated" and discussion["to"] == ["+331"]
    assert setup.platform.calls("POST", "/cx/social-messaging/v1/contents") == 3


async def test_list_identities_with_a_filter(setup: Setup) -> None:
    for i in range(5):
        setup.platform.add_identity({"id": f"i{i}", "userIds": [f"ext-{i % 2}"]})
    async with setup.client() as platform:
        everyone = [i["id"] async for i in platform.list_identities()]
        agents = [i["id"] async for i in platform.list_identities(userId="ext-1")]
    assert sorted(everyone) == [f"i{i}" for i in range(5)]
    assert sorted(agents) == ["i1", "i3"]


async def test_subscription_lifecycle(setup: Setup) -> None:
    filters = ["/cx/social-messaging/v1/contents/Imported"]
    async with setup.client() as platform:
        created = await platform.create_subscription(
            "https://connector.example/webhooks/ringcentral", "verify-me", filters, 3600
        )
        sid = created["id"]
        assert setup.platform.verification_tokens[sid] == "verify-me"
        assert "verify-me" not in str(created)
        assert [s["id"] for s in await platform.list_subscriptions()] == [sid]
        setup.clock.advance(3000)
        assert (await platform.renew_subscription(sid))["expiresIn"] == 3600
        setup.clock.advance(3000)  # 6000 s after creation: alive because it was renewed
        await platform.delete_subscription(sid)
        assert await platform.list_subscriptions() == []
        with pytest.raises(PlatformNotFound):
            await platform.renew_subscription(sid)
    assert setup.requests("subscription", "200") >= 3
    assert setup.requests("subscription", "204") == 1


def test_from_settings_names_what_is_missing() -> None:
    with pytest.raises(SettingsError) as caught:
        PlatformClient.from_settings(Settings(ringcentral_client_id="id"))
    message = str(caught.value)
    assert "RINGCENTRAL_CLIENT_SECRET" in message and "RINGCENTRAL_JWT" in message
    assert "RINGCENTRAL_CLIENT_ID," not in message


def test_settings_never_show_the_credentials() -> None:
    settings = Settings(ringcentral_client_secret=SECRET, ringcentral_jwt=JWT)
    shown = repr(settings) + str(settings.describe())
    assert SECRET not in shown and JWT not in shown
    assert "https://platform.ringcentral.com" in shown
