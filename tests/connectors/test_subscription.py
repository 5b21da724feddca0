"""``engage-streams subscribe`` and the SubscriptionKeeper against the fake platform API (HTTP).

The command runs end to end through ``engage_streams.cli.main`` (settings from the
environment, a real HTTP server in a thread); the keeper runs on a ``ManualClock`` shared with
the fake, so subscriptions expire and get renewed without waiting for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from connectors.subscription import (
    SubscriptionKeeper,
    content_event_filters,
    is_renewal_reminder,
)
from engage_streams import cli
from engage_streams.rest.platform import PlatformClient
from engage_streams.settings import Settings
from simulator.platform_api import FakePlatform, ManualClock, serving, serving_in_thread

ADDRESS = "https://connector.example.com/webhooks/ringcentral"
VERIFICATION = "verification-token-5be1"


@pytest.fixture
def platform_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlatform]:
    platform = FakePlatform()
    with serving_in_thread(platform) as url:
        for name, value in {
            "RINGCENTRAL_SERVER_URL": url,
            "RINGCENTRAL_CLIENT_ID": platform.client_id,
            "RINGCENTRAL_CLIENT_SECRET": platform.client_secret,
            "RINGCENTRAL_JWT": platform.jwt,
            "RINGCENTRAL_VERIFICATION_TOKEN": VERIFICATION,
        }.items():
            monkeypatch.setenv(name, value)
        yield platform


def subscribe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["subscribe", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_renew_delete(
    platform_env: FakePlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = subscribe(capsys, "create", "--address", ADDRESS)
    assert code == 0 and out.startswith("created ")
    ((sid, subscription),) = platform_env.subscriptions.items()
    assert subscription["deliveryMode"]["address"] == ADDRESS
    assert platform_env.verification_tokens[sid] == VERIFICATION
    filters = subscription["eventFilters"]
    assert filters[:3] == [
        "/cx/social-messaging/v1/contents/Imported",
        "/cx/social-messaging/v1/contents/Exported",
        "/cx/social-messaging/v1/contents/DiscussionInitiated",
    ]
    assert is_renewal_reminder(filters[3])

    code, out, _ = subscribe(capsys, "create", "--address", ADDRESS)  # no duplicate
    assert code == 0 and out.startswith(f"renewed {sid} ")
    assert list(platform_env.subscriptions) == [sid]

    code, out, _ = subscribe(capsys, "list")
    assert code == 0 and sid in out and ADDRESS in out and "Imported," in out
    assert "RenewalReminder" in out
    assert VERIFICATION not in out

    code, out, _ = subscribe(capsys, "renew")
    assert code == 0 and out.startswith(f"renewed {sid} ")
    assert platform_env.calls("POST", f"/restapi/v1.0/subscription/{sid}/renew") == 2

    code, out, _ = subscribe(capsys, "delete", "--address", ADDRESS)
    assert (code, out.strip()) == (0, f"deleted {sid}")
    assert platform_env.subscriptions == {}
    code, _, err = subscribe(capsys, "list")
    assert code == 0 and "no subscription" in err
    code, _, err = subscribe(capsys, "renew", sid)
    assert code == 1 and "404" in err


def test_create_needs_an_address_and_the_verification_token(
    platform_env: FakePlatform, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = subscribe(capsys, "create")
    assert code == 2 and "RINGCENTRAL_WEBHOOK_URL" in err
    monkeypatch.setenv("RINGCENTRAL_WEBHOOK_URL", ADDRESS)
    monkeypatch.delenv("RINGCENTRAL_VERIFICATION_TOKEN")
    code, _, err = subscribe(capsys, "create")
    assert code == 2 and "RINGCENTRAL_VERIFICATION_TOKEN" in err
    assert platform_env.subscriptions == {}


def test_refused_credentials_exit_1_without_the_secret(
    platform_env: FakePlatform, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGCENTRAL_JWT", "a-jwt-the-platform-refuses")
    code, out, err = subscribe(capsys, "list")
    assert code == 1 and "token" in err and "RINGCENTRAL_JWT" in err
    assert "a-jwt-the-platform-refuses" not in out + err
    assert platform_env.client_secret not in out + err


# -- the keeper ------------------------------------------------------------------------------
class World:
    def __init__(self, platform: FakePlatform, url: str, clock: ManualClock) -> None:
        self.platform, self.url, self.clock = platform, url, clock
        self.registry = CollectorRegistry()

    def client(self) -> PlatformClient:
        p = self.platform
        return PlatformClient(self.url, p.client_id, p.client_secret, p.jwt, clock=self.clock)

    def keeper(self, client: PlatformClient, **options: Any) -> SubscriptionKeeper:
        return SubscriptionKeeper(
            client,
            address=ADDRESS,
            verification_token=VERIFICATION,
            clock=self.clock,
            registry=self.registry,
            **options,
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = ManualClock(1_772_442_000.0)
    platform = FakePlatform(clock=clock, token_lifetime=10**9)
    async with serving(platform) as url:
        yield World(platform, url, clock)


async def wait_until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_keeper_renews_before_expiry_so_the_subscription_outlives_its_lifetime(
    world: World,
) -> None:
    async def time_passes(seconds: float) -> None:  # the keeper's sleep: move the clock
        world.clock.advance(seconds)
        await asyncio.sleep(0)

    async with world.client() as client:
        keeper = world.keeper(client, expires_in=3600, sleep=time_passes)
        await keeper.start()
        start = world.clock()
        try:
            await wait_until(lambda: keeper.renewals >= 5)
        finally:
            await keeper.stop()
        assert world.clock() - start > 3 * 3600  # far past the first expiry...
        assert list(world.platform.subscriptions) == [keeper.subscription_id]  # ...still alive
        assert keeper.creations == 1
        gauge = world.registry.get_sample_value("engage_subscription_expires_in_seconds")
        assert gauge is not None and 0 < gauge <= 3600


async def test_keeper_renews_on_the_reminder_and_recreates_a_lost_subscription(
    world: World,
) -> None:
    async with world.client() as client:
        keeper = world.keeper(client)  # a week's lifetime: only the reminder renews it here
        await keeper.start()
        try:
            first = keeper.subscription_id
            assert first is not None and keeper.creations == 1
            world.clock.advance(5 * 24 * 3600)  # not due yet: the keeper sleeps
            await keeper.on_renewal_reminder("someone-elses-subscription")
            assert keeper.renewals == 0
            await keeper.on_renewal_reminder(first)
            assert keeper.renewals == 1
            assert keeper.expires_in_seconds() == pytest.approx(7 * 24 * 3600, abs=5)

            world.platform.subscriptions.clear()  # the platform dropped it (e.g. blacklisted)
            await keeper.on_renewal_reminder(first)
            assert keeper.creations == 2 and keeper.subscription_id != first
            assert list(world.platform.subscriptions) == [keeper.subscription_id]
        finally:
            await keeper.stop()


async def test_a_second_connector_adopts_the_subscription(world: World) -> None:
    async with world.client() as client:
        first = world.keeper(client)
        await first.start()
        second = SubscriptionKeeper(
            client, address=ADDRESS, verification_token=VERIFICATION, clock=world.clock
        )
        await second.start()
        try:
            assert second.subscription_id == first.subscription_id
            assert (second.creations, second.renewals) == (0, 1)
            assert len(world.platform.subscriptions) == 1
        finally:
            await first.stop()
            await second.stop()


async def test_keeper_from_settings_only_when_configured(world: World) -> None:
    async with world.client() as client:
        assert SubscriptionKeeper.from_settings(Settings(), client) is None
        configured = Settings(
            ringcentral_webhook_url=ADDRESS, ringcentral_verification_token=VERIFICATION
        )
        keeper = SubscriptionKeeper.from_settings(configured, client, clock=world.clock)
        assert keeper is not None
        await keeper.start()
        await keeper.stop()
        assert world.platform.verification_tokens == {keeper.subscription_id: VERIFICATION}


def test_event_filters_follow_the_api_prefix() -> None:
    assert content_event_filters("/engage/advanced-messaging/v1/") == [
        "/engage/advanced-messaging/v1/contents/Imported",
        "/engage/advanced-messaging/v1/contents/Exported",
        "/engage/advanced-messaging/v1/contents/DiscussionInitiated",
    ]
