"""Platform notifications as they really arrive: nested, flat, thin; and the same content
through either webhook gives the same record."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import pytest
from aiohttp.test_utils import TestServer

from connectors.agents import AgentIds
from connectors.envelopes import (
    DEAD_LETTER_REASONS,
    UNRESOLVED_CONTENT,
    DeadLetter,
    QueuedNotification,
    parse_classic,
    parse_platform,
    read_unresolved,
    resolved_record,
    unresolved_value,
)
from connectors.metrics import ConnectorMetrics
from connectors.server import create_app
from connectors.sources import SourceTypes, source_types_of
from engage_streams.record import ContentEvent
from engage_streams.rest.classic import extension_ids
from engage_streams.settings import Settings
from streams.core.responses.sla import SlaPolicy

SAMPLES = Path(__file__).resolve().parents[2] / "devkit" / "data" / "samples"
NOW = datetime(2026, 3, 2, 12, 30, 0, tzinfo=UTC)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((SAMPLES / name).read_bytes())
    return loaded


def platform(
    envelope: dict[str, Any], forward_body: bool = False, agent_ids: dict[str, str] | None = None
) -> Any:
    return parse_platform(
        orjson.dumps(envelope), received_at=NOW, forward_body=forward_body, agent_ids=agent_ids
    )


def only_record(delivery: Any) -> ContentEvent:
    assert delivery.dead_letters == [] and delivery.unresolved == []
    (record,) = delivery.records
    assert isinstance(record, ContentEvent)
    return record


# --- the samples -------------------------------------------------------------------------


def test_nested_sample_is_a_record_timed_by_issued_at() -> None:
    record = only_record(platform(sample("platform-imported-resource.json")))
    assert record == ContentEvent(
        event_id="7c1e0b7a-52d4-4b9e-a1f3-0d2c4e6f8a10",
        event_type="/cx/social-messaging/v1/contents/Imported",
        origin="ringcentral",
        event_time=datetime(2026, 3, 2, 12, 2, 11, tzinfo=UTC),  # body.issuedAt
        received_at=NOW,
        content_id="65e3163bc9d8e70012ab5c21",
        thread_id="65e3163bc9d8e70012ab5c20",
        source_id="5f0a1b2c3d4e5f0011226666",
        source_type="whatsapp",
        author_id="65e3163bc9d8e70012ab0912",
        direction="inbound",
        status="new",
    )


def test_thin_sample_is_unresolved_not_a_dead_letter() -> None:
    delivery = platform(sample("platform-imported-thin.json"))
    assert delivery.records == [] and delivery.dead_letters == []
    (item,) = delivery.unresolved
    assert item.content_id == "65e3170cc9d8e70012ab5d47"
    assert item.notification == sample("platform-imported-thin.json")  # authentic, whole


def test_nested_creation_time_wins_over_issued_at_and_timestamp() -> None:
    envelope = sample("platform-imported-resource.json")
    envelope["body"]["resource"]["creationTime"] = "2026-03-02T12:02:09.500Z"
    record = only_record(platform(envelope))
    assert record.event_time == datetime(2026, 3, 2, 12, 2, 9, 500000, tzinfo=UTC)
    del envelope["body"]["resource"]["creationTime"]
    del envelope["body"]["issuedAt"]
    record = only_record(platform(envelope))
    assert record.event_time == datetime(2026, 3, 2, 12, 2, 11, 318000, tzinfo=UTC)  # timestamp


@pytest.mark.parametrize(
    "resource",
    [
        {"id": "c1"},  # only the id
        {"id": "c1", "status": "New"},  # no thread
        {"id": "c1", "threadId": "t1"},  # nothing says who wrote it
        {"id": "c1", "threadId": "t1", "creatorId": None},
    ],
)
def test_too_thin_to_be_a_record_is_unresolved(resource: dict[str, Any]) -> None:
    envelope = sample("platform-imported-thin.json")
    envelope["body"]["resource"] = resource
    delivery = platform(envelope)
    assert [u.content_id for u in delivery.unresolved] == ["c1"]
    assert delivery.records == [] and delivery.dead_letters == []


def test_thin_without_any_content_id_is_a_dead_letter() -> None:
    envelope = sample("platform-imported-thin.json")
    envelope["body"]["resource"] = {"threadId": "t1"}
    (item,) = platform(envelope).dead_letters
    assert item.reason == "missing_content_id"


def test_resource_that_is_not_an_object_is_a_dead_letter_not_a_400() -> None:
    envelope = sample("platform-imported-thin.json")
    envelope["body"]["resource"] = ["65e3170cc9d8e70012ab5d47"]
    (item,) = platform(envelope).dead_letters
    assert item.reason == "invalid_field"


def test_unresolved_notification_carries_no_words_unless_forwarding() -> None:
    envelope = sample("platform-imported-thin.json")
    envelope["body"]["resource"]["body"] = "my card number is ..."
    (item,) = platform(envelope).unresolved
    assert "body" not in item.notification["body"]["resource"]
    (kept,) = platform(envelope, forward_body=True).unresolved
    assert kept.notification["body"]["resource"]["body"] == "my card number is ..."


# --- the same content through every shape ------------------------------------------------

CONTENT = {
    "id": "65e2f4b7c9d8e70012ab35de",
    "creationTime": "2026-03-02T09:19:01.000Z",
    "authorIdentityId": "65e2f3a1c9d8e70012ab0099",
    "creatorId": "63311250008",  # the agent's RingCentral extension id
    "body": "Hello! I checked: order 4471 ships today.",
    "status": "UserReply",
    "threadId": "65e2f3a1c9d8e70012ab3300",
    "interventionId": "65e2f400c9d8e70012ab3401",
    "inReplyToContentId": "65e2f3a1c9d8e70012ab34cd",
    "sourceId": "5f0a1b2c3d4e5f0011223344",
    "sourceType": "whatsapp",
    "autoSubmitted": False,
    "createdFrom": "Interface",
    "contentDirection": "Outgoing",
}
ENGAGE_USERS = [
    {"id": "5e9f8a7b6c5d4e0099887766", "firstname": "Ada", "rc_user_id": "63311250008"},
    {"id": "5e9f8a7b6c5d4e00aaaaaaaa", "firstname": "Grace"},  # no RingCentral extension
]


def nested(content: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": "8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5968",
        "event": "/cx/social-messaging/v1/contents/Exported",
        "timestamp": "2026-03-02T09:19:02.118Z",
        "subscriptionId": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "ownerId": "400131234008",
        "body": {"issuedAt": "2026-03-02T09:19:02.118Z", "resource": copy.deepcopy(content)},
    }


def flat(content: dict[str, Any]) -> dict[str, Any]:
    envelope = nested(content)
    envelope["body"] = copy.deepcopy(content)
    return envelope


def comparable(record: ContentEvent) -> dict[str, Any]:
    """What must agree between the webhooks (the event's own id, type, origin differ)."""
    fields = msgspec.structs.asdict(record)
    for key in ("event_id", "event_type", "origin"):
        del fields[key]
    return fields


def test_nested_flat_and_classic_of_one_content_are_the_same_record() -> None:
    agent_ids = extension_ids(ENGAGE_USERS)
    assert agent_ids == {"63311250008": "5e9f8a7b6c5d4e0099887766"}
    classic_delivery = parse_classic(
        (SAMPLES / "classic-agent-reply-batch.json").read_bytes(),
        received_at=NOW,
        forward_body=False,
    )
    classic_record = classic_delivery.records[0]
    assert classic_record.content_id == CONTENT["id"]
    from_nested = only_record(platform(nested(CONTENT), agent_ids=agent_ids))
    from_flat = only_record(platform(flat(CONTENT), agent_ids=agent_ids))
    assert from_nested == from_flat
    assert comparable(from_nested) == comparable(classic_record)
    assert from_nested.agent_id == "5e9f8a7b6c5d4e0099887766"  # one agent, one id


@pytest.mark.parametrize(
    ("platform_type", "classic_type"),
    [
        ("WhatsApp", "whatsapp"),
        ("GoogleMyBusiness", "google_my_business"),  # the SLA policy's asynchronous type
        ("EngageMessaging", "engage_messaging"),
        ("LinkedIn", "linkedin"),
        ("YouTube", "youtube"),
        ("email", "email"),  # already spelt the classic way
    ],
)
def test_a_platform_channel_type_is_spelt_as_the_classic_api_spells_it(
    platform_type: str, classic_type: str
) -> None:
    record = only_record(platform(nested({**CONTENT, "sourceType": platform_type})))
    assert record.source_type == classic_type
    assert SlaPolicy().seconds_for(None, record.source_type) == SlaPolicy().seconds_for(
        None, classic_type
    )


def test_a_known_source_keeps_its_classic_type_whatever_the_platform_calls_it() -> None:
    content = {**CONTENT, "sourceType": "FacebookMessenger"}
    known = {CONTENT["sourceId"]: "messenger"}
    delivery = parse_platform(
        orjson.dumps(nested(content)), received_at=NOW, forward_body=False, source_types=known
    )
    assert only_record(delivery).source_type == "messenger"
    thin = nested({"id": CONTENT["id"]})
    resolved = resolved_record(
        thin, content, received_at=NOW, forward_body=False, source_types=known
    )
    assert isinstance(resolved, ContentEvent) and resolved.source_type == "messenger"
    other = only_record(platform(nested({**content, "sourceId": "another"})))
    assert other.source_type == "facebook_messenger"


def test_source_types_are_learnt_from_content_sources_and_classic_records() -> None:
    assert source_types_of(
        [{"id": "s1", "type": "whatsapp"}, {"id": "s2"}, {"id": "s3", "type": ""}]
    ) == {"s1": "whatsapp"}
    known = SourceTypes()
    classic = parse_classic(
        (SAMPLES / "classic-agent-reply-batch.json").read_bytes(),
        received_at=NOW,
        forward_body=False,
    )
    known.note(classic.records)
    record = classic.records[0]
    assert record.source_id is not None
    assert known == {record.source_id: record.source_type}
    known.note([msgspec.structs.replace(record, source_type="other")])  # the first one stays
    assert known[record.source_id] == record.source_type
    assert known.learn({record.source_id: "from_api"}) == 1  # the API's answer wins
    assert known.learn({record.source_id: "from_api"}) == 0


def test_thin_resolved_by_fetching_is_the_record_of_the_full_notification() -> None:
    thin = nested({"id": CONTENT["id"]})
    (item,) = platform(thin).unresolved
    queued = read_unresolved(unresolved_value(item, received_at=NOW))
    assert queued == QueuedNotification(CONTENT["id"], NOW, thin)
    resolved = resolved_record(
        queued.notification, CONTENT, received_at=queued.received_at, forward_body=False
    )
    assert resolved == only_record(platform(nested(CONTENT)))
    with_words = resolved_record(thin, CONTENT, received_at=NOW, forward_body=True)
    assert isinstance(with_words, ContentEvent) and with_words.body == CONTENT["body"]


def test_fetched_content_still_without_thread_is_a_dead_letter() -> None:
    thin = nested({"id": "c1"})
    item = resolved_record(thin, {"id": "c1", "status": "New"}, received_at=NOW, forward_body=False)
    assert isinstance(item, DeadLetter) and item.reason == "missing_thread_id"


def test_unknown_extension_id_is_kept() -> None:
    record = only_record(platform(nested(CONTENT), agent_ids={"other": "x"}))
    assert record.agent_id == "63311250008"


# --- automatic contents ------------------------------------------------------------------


@pytest.mark.parametrize(
    "created_from", ["AutoSurvey", "AutoResponseTrigger", "AutoRequestEmail", "auto_reply"]
)
def test_automatic_from_created_from_without_auto_submitted(created_from: str) -> None:
    content = {**CONTENT, "createdFrom": created_from}
    del content["autoSubmitted"]
    assert only_record(platform(nested(content))).automatic is True
    classic = sample("classic-agent-reply-batch.json")
    metadata = classic["events"][0]["resource"]["metadata"]
    del metadata["auto_submitted"]
    metadata["created_from"] = created_from
    delivery = parse_classic(orjson.dumps(classic), received_at=NOW, forward_body=False)
    assert delivery.records[0].automatic is True


@pytest.mark.parametrize("created_from", ["Interface", "Synchronizer", "api", None])
def test_other_origins_are_not_automatic(created_from: str | None) -> None:
    content = {**CONTENT, "createdFrom": created_from}
    assert only_record(platform(nested(content))).automatic is False


def test_unresolved_content_is_a_dead_letter_reason_exported_from_the_start() -> None:
    assert UNRESOLVED_CONTENT in DEAD_LETTER_REASONS
    exposition = ConnectorMetrics().exposition().decode()
    assert 'engage_dlq_events_total{reason="unresolved_content"} 0.0' in exposition
    for outcome in ("queued", "resolved", "retried", "dead_letter"):
        assert f'engage_unresolved_notifications_total{{outcome="{outcome}"}} 0.0' in exposition
    assert "engage_resolver_pending_notifications 0.0" in exposition


# --- the handshake -----------------------------------------------------------------------


class _NoKafka:
    async def publish(self, messages: Any, *, within_seconds: float) -> None:
        raise AssertionError("a handshake publishes nothing")

    async def ready(self) -> bool:
        return False


async def test_validation_token_is_echoed_with_a_json_content_type() -> None:
    settings = Settings(webhook_secret="s", ringcentral_verification_token="rc-token")
    server = TestServer(create_app(settings, _NoKafka()), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/webhooks/ringcentral"))
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, headers={"Validation-Token": "abc-123"})
        assert answer.status_code == 200
        assert answer.headers["Validation-Token"] == "abc-123"
        assert answer.headers["Content-Type"].startswith("application/json")
        assert len(answer.content) <= 1024
    finally:
        await server.close()


# --- the connector's view ----------------------------------------------------------------


class _Kept:
    """Acknowledges at once and keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def publish(self, messages: Any, *, within_seconds: float) -> None:
        self.messages.extend(messages)

    async def ready(self) -> bool:
        return True


async def test_shapes_are_counted_and_ids_learnt_after_start_are_used() -> None:
    """``engage_platform_notifications_total{shape}`` counts what arrived; an agent-id mapping
    still empty when the app was made (the classic API answers later) is the one it uses."""
    settings = Settings(webhook_secret="s", ringcentral_verification_token="rc-token")
    agent_ids = AgentIds()
    metrics = ConnectorMetrics()
    kept = _Kept()
    server = TestServer(
        create_app(settings, kept, metrics=metrics, agent_ids=agent_ids), host="127.0.0.1"
    )
    await server.start_server()
    try:
        agent_ids.learn(extension_ids(ENGAGE_USERS))  # after the app was made
        url = str(server.make_url("/webhooks/ringcentral"))
        headers = {"Verification-Token": "rc-token", "Content-Type": "application/json"}
        async with httpx.AsyncClient() as client:
            for envelope in (nested(CONTENT), nested(CONTENT), flat(CONTENT), nested({"id": "c"})):
                answer = await client.post(url, content=orjson.dumps(envelope), headers=headers)
                assert answer.status_code == 200, answer.text
    finally:
        await server.close()

    def shape(name: str) -> float | None:
        labels = {"shape": name}
        return metrics.registry.get_sample_value("engage_platform_notifications_total", labels)

    assert (shape("nested"), shape("flat"), shape("thin")) == (2.0, 1.0, 1.0)
    records = [m for m in kept.messages if m.topic == settings.topic]
    assert len(records) == 3
    assert {orjson.loads(m.value)["agent_id"] for m in records} == {"5e9f8a7b6c5d4e0099887766"}


async def test_a_platform_delivery_takes_the_type_a_classic_delivery_taught() -> None:
    """A classic delivery of a channel teaches the connector its classic type; a later platform
    notification of that channel, whatever type it names, is written with it."""
    settings = Settings(webhook_secret="s", ringcentral_verification_token="rc-token")
    kept = _Kept()
    server = TestServer(create_app(settings, kept), host="127.0.0.1")
    await server.start_server()
    classic = sample("classic-agent-reply-batch.json")
    for event in classic["events"]:
        assert event["resource"]["metadata"]["source_id"] == CONTENT["sourceId"]
        event["resource"]["metadata"]["source_type"] = "messenger"
    content = {**CONTENT, "id": "another-content", "sourceType": "FacebookMessenger"}
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                str(server.make_url("/webhooks/engage")),
                content=orjson.dumps(classic),
                headers={"X-Dimelo-Secret": "s", "Content-Type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
            answer = await client.post(
                str(server.make_url("/webhooks/ringcentral")),
                content=orjson.dumps(nested(content)),
                headers={"Verification-Token": "rc-token", "Content-Type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
    finally:
        await server.close()
    written = [orjson.loads(m.value) for m in kept.messages if m.topic == settings.topic]
    by_content = {r["content_id"]: r["source_type"] for r in written}
    assert by_content["another-content"] == "messenger"
