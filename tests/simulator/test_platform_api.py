"""The fake platform API itself, over HTTP: what it refuses, expiry, failures on demand.

The client tests (tests/engage_streams/rest/) cover the happy paths; these pin the fake's own
contract with a plain httpx client, so a client bug cannot hide behind a lenient fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from simulator.deliveries import platform_envelope
from simulator.platform_api import JWT_GRANT, FakePlatform, ManualClock, serving
from simulator.scenario import ScenarioConfig, generate

PREFIX = "/cx/social-messaging/v1"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakePlatform, httpx.AsyncClient]]:
    platform = FakePlatform(token_lifetime=60, clock=ManualClock(1_772_442_000.0))
    async with serving(platform) as url, httpx.AsyncClient(base_url=url) as http:
        yield platform, http


async def token(platform: FakePlatform, http: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await http.post(
        "/restapi/oauth/token",
        data={"grant_type": JWT_GRANT, "assertion": platform.jwt, **form},
        auth=(platform.client_id, platform.client_secret),
    )


def bearer(response: httpx.Response) -> dict[str, str]:
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_token_endpoint_checks_client_and_jwt(fake: Any) -> None:
    platform, http = fake
    ok = await token(platform, http)
    assert ok.status_code == 200 and ok.json()["expires_in"] == 60
    wrong_jwt = await token(platform, http, assertion="forged")
    assert (wrong_jwt.status_code, wrong_jwt.json()["error"]) == (400, "invalid_grant")
    wrong_grant = await token(platform, http, grant_type="password")
    assert wrong_grant.status_code == 400
    wrong_client = await http.post(
        "/restapi/oauth/token",
        data={"grant_type": JWT_GRANT, "assertion": platform.jwt},
        auth=(platform.client_id, "not-the-secret"),
    )
    assert wrong_client.status_code == 401
    assert platform.tokens_issued == 1


async def test_tokens_expire_and_can_be_revoked(fake: Any) -> None:
    platform, http = fake
    platform.add_content({"id": "c1"})
    headers = bearer(await token(platform, http))
    assert (await http.get(f"{PREFIX}/contents/c1", headers=headers)).status_code == 200
    platform.clock.advance(61)
    assert (await http.get(f"{PREFIX}/contents/c1", headers=headers)).status_code == 401
    headers = bearer(await token(platform, http))
    platform.revoke_tokens()
    assert (await http.get(f"{PREFIX}/contents/c1", headers=headers)).status_code == 401
    assert (await http.get(f"{PREFIX}/contents/c1")).status_code == 401


async def test_contents_filters_order_and_bad_paging(fake: Any) -> None:
    platform, http = fake
    for i in range(6):
        platform.add_content(
            {
                "id": f"c{i}",
                "threadId": f"t{i % 2}",
                "channelId": "s1",
                "creationTime": f"2026-03-02T09:0{i}:00Z",
            }
        )
    headers = bearer(await token(platform, http))
    newest = await http.get(f"{PREFIX}/contents", headers=headers, params={"thread": "t1"})
    assert [c["id"] for c in newest.json()["records"]] == ["c5", "c3", "c1"]  # default: newest
    page = await http.get(
        f"{PREFIX}/contents", headers=headers, params={"orderBy": "+creationTime", "perPage": 4}
    )
    assert [c["id"] for c in page.json()["records"]] == ["c0", "c1", "c2", "c3"]
    next_token = page.json()["paging"]["nextPageToken"]
    rest = await http.get(
        f"{PREFIX}/contents",
        headers=headers,
        params={"orderBy": "+creationTime", "perPage": 4, "pageToken": next_token},
    )
    assert [c["id"] for c in rest.json()["records"]] == ["c4", "c5"]
    assert "nextPageToken" not in rest.json()["paging"]
    for params in ({"orderBy": "lastModifiedTime"}, {"pageToken": "garbage!"}):
        refused = await http.get(f"{PREFIX}/contents", headers=headers, params=params)
        assert refused.status_code == 400


async def test_reply_to_unknown_content_and_discussion_without_channel(fake: Any) -> None:
    platform, http = fake
    headers = bearer(await token(platform, http))
    missing = await http.post(
        f"{PREFIX}/contents", headers=headers, json={"body": "hi", "inReplyToContentId": "nope"}
    )
    assert missing.status_code == 404
    no_channel = await http.post(f"{PREFIX}/contents", headers=headers, json={"body": "hi"})
    assert no_channel.status_code == 400
    assert platform.contents == {}


async def test_failures_for_a_count_and_for_a_while(fake: Any) -> None:
    platform, http = fake
    platform.fail(429, times=1, retry_after=3)
    limited = await token(platform, http)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.headers["X-Rate-Limit-Window"] == "60"
    assert (await token(platform, http)).status_code == 200
    platform.fail(503, seconds=10)
    assert (await token(platform, http)).status_code == 503
    assert (await token(platform, http)).status_code == 503
    platform.clock.advance(10)
    assert (await token(platform, http)).status_code == 200


async def test_subscriptions_expire_unless_renewed(fake: Any) -> None:
    platform, http = fake
    headers = bearer(await token(platform, http))
    created = await http.post(
        "/restapi/v1.0/subscription",
        headers=headers,
        json={
            "eventFilters": [f"{PREFIX}/contents/Imported"],
            "deliveryMode": {"transportType": "WebHook", "address": "https://x.example/hook"},
            "expiresIn": 100,
        },
    )
    assert created.status_code == 200
    sid = created.json()["id"]
    assert created.json()["expiresIn"] == 100 and created.json()["status"] == "Active"
    platform.clock.advance(50)
    headers = bearer(await token(platform, http))
    assert (await http.post(f"/restapi/v1.0/subscription/{sid}/renew", headers=headers)).json()[
        "expiresIn"
    ] == 100
    platform.clock.advance(99)
    headers = bearer(await token(platform, http))
    listed = await http.get("/restapi/v1.0/subscription", headers=headers)
    assert [s["id"] for s in listed.json()["records"]] == [sid]
    platform.clock.advance(2)
    headers = bearer(await token(platform, http))
    assert (await http.get("/restapi/v1.0/subscription", headers=headers)).json()["records"] == []
    renew = await http.post(f"/restapi/v1.0/subscription/{sid}/renew", headers=headers)
    assert renew.status_code == 404


async def test_simulated_events_are_served_as_their_notifications_show_them(fake: Any) -> None:
    platform, http = fake
    events = generate(ScenarioConfig(threads=3, seed=7))
    event = next(e for e in events if e.direction == "outbound" and not e.automatic)
    platform.add_event(event)
    headers = bearer(await token(platform, http))
    served = (await http.get(f"{PREFIX}/contents/{event.content_id}", headers=headers)).json()
    notified = orjson.loads(platform_envelope(event))["body"]
    assert {k: served[k] for k in notified} == notified
    assert served["channelId"] == event.source_id and served["createdFrom"] == "Interface"


async def test_agents_become_identities_and_the_simulator_hands_over_contents(fake: Any) -> None:
    platform, http = fake
    held = platform.add_agents(
        {
            "agent-001": {"name": "Ada Lovelace", "rc_user_id": "400131234001"},
            "agent-002": {"name": "Grace Hopper"},  # no extension id: not on the platform
        }
    )
    assert [(i["displayName"], i["userIds"]) for i in held] == [("Ada Lovelace", ["400131234001"])]
    assert (await http.get("/_simulator/healthz")).status_code == 200  # no token needed
    contents = [{"id": "c-1", "threadId": "t-1", "status": "New"}]
    refused = await http.post("/_simulator/contents", content=orjson.dumps(contents))
    assert refused.status_code == 401 and "c-1" not in platform.contents
    headers = bearer(await token(platform, http))
    raw = orjson.dumps(contents)
    answer = await http.post("/_simulator/contents", content=raw, headers=headers)
    assert answer.status_code == 200 and answer.json()["held"] == 1
    served = await http.get(f"{PREFIX}/contents/c-1", headers=headers)
    assert served.json()["threadId"] == "t-1"
    bad = await http.post("/_simulator/contents", content=b'{"id": "c-2"}', headers=headers)
    assert bad.status_code == 400


async def test_a_thin_notification_names_what_the_fake_serves(fake: Any) -> None:
    """What the simulator notifies thin, and hands to the fake, resolves to the record its
    nested notification gives, with the agent's extension id as creatorId."""
    from datetime import UTC, datetime

    from connectors.envelopes import parse_platform, resolved_record
    from simulator.platform_api import served_content

    platform, http = fake
    event = next(
        e
        for e in generate(ScenarioConfig(threads=5, seed=3))
        if e.direction == "outbound" and e.agent_id is not None
    )
    creator_ids = {event.agent_id: "400131234777"}
    headers = bearer(await token(platform, http))
    handed = orjson.dumps([served_content(event, creator_ids=creator_ids)])
    assert (await http.post("/_simulator/contents", content=handed, headers=headers)).is_success
    now = datetime(2026, 3, 2, tzinfo=UTC)
    thin = platform_envelope(event, shape="thin", creator_ids=creator_ids)
    assert orjson.loads(thin)["body"]["resource"] == {"id": event.content_id}
    (queued,) = parse_platform(thin, received_at=now, forward_body=False).unresolved
    fetched = (await http.get(f"{PREFIX}/contents/{event.content_id}", headers=headers)).json()
    assert fetched["creatorId"] == "400131234777"
    resolved = resolved_record(queued.notification, fetched, received_at=now, forward_body=False)
    nested = platform_envelope(event, shape="nested", creator_ids=creator_ids)
    flat = platform_envelope(event, shape="flat", creator_ids=creator_ids)
    (from_nested,) = parse_platform(nested, received_at=now, forward_body=False).records
    (from_flat,) = parse_platform(flat, received_at=now, forward_body=False).records
    assert resolved == from_nested == from_flat
    assert from_nested.agent_id == "400131234777"  # the connector maps it (its own tests)
