"""What a delivery means: every sample, edge cases, dead letters, round trips of the renderer."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.envelopes import (
    Delivery,
    EnvelopeError,
    dead_letter_value,
    parse_classic,
    parse_platform,
    snake_status,
    strip_words,
)
from engage_streams.record import ContentEvent, decode_event, encode_event
from simulator.deliveries import classic_envelope, platform_envelope, platform_event_path

SAMPLES = Path(__file__).resolve().parents[2] / "devkit" / "data" / "samples"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((SAMPLES / name).read_bytes())
    return loaded


def classic(envelope: dict[str, Any], forward_body: bool = False) -> Delivery:
    return parse_classic(orjson.dumps(envelope), received_at=NOW, forward_body=forward_body)


def platform(envelope: dict[str, Any], forward_body: bool = False) -> Delivery:
    return parse_platform(orjson.dumps(envelope), received_at=NOW, forward_body=forward_body)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the samples ---------------------------------------------------------------------------


def test_classic_customer_message() -> None:
    delivery = classic(sample("classic-customer-message.json"))
    assert delivery.dead_letters == []
    assert delivery.records == [
        ContentEvent(
            event_id="b3e1c9d27a4f4f1e8d0c5a6b7e8f9012",
            event_type="content.imported",
            origin="engage",
            event_time=t("2026-03-02T09:15:26+00:00"),
            received_at=NOW,
            content_id="65e2f3a1c9d8e70012ab34cd",
            thread_id="65e2f3a1c9d8e70012ab3300",
            intervention_id=None,
            source_id="5f0a1b2c3d4e5f0011223344",
            source_type="whatsapp",
            author_id="65e2f3a1c9d8e70012ab0001",
            agent_id=None,
            in_reply_to_id=None,
            direction="inbound",
            automatic=False,
            status="new",
            body=None,
        )
    ]


def test_classic_batch_of_agent_reply_and_customer_answer() -> None:
    reply, thanks = classic(sample("classic-agent-reply-batch.json")).records
    assert (reply.event_type, reply.direction, reply.agent_id, reply.status) == (
        "content.replied",
        "outbound",
        "5e9f8a7b6c5d4e0099887766",
        "user_reply",
    )
    assert reply.event_time == t("2026-03-02T09:19:01+00:00")
    assert reply.intervention_id == "65e2f400c9d8e70012ab3401"
    assert reply.in_reply_to_id == "65e2f3a1c9d8e70012ab34cd"
    assert (thanks.direction, thanks.agent_id, thanks.status) == ("inbound", None, "assigned")
    assert thanks.thread_id == reply.thread_id == "65e2f3a1c9d8e70012ab3300"


def test_classic_auto_welcome_is_automatic_outbound_and_uses_issued_at() -> None:
    (welcome,) = classic(sample("classic-auto-welcome.json")).records
    assert welcome.automatic is True
    assert welcome.direction == "outbound"  # status user_initiated, no creator
    assert welcome.agent_id is None  # no creator and no user_id on the event
    # metadata only carries a date: the event's issued_at is the time
    assert welcome.event_time == t("2026-03-02T10:02:11.004+00:00")


def test_platform_imported() -> None:
    (record,) = platform(sample("platform-imported.json")).records
    assert record.event_id == "2f9d1c7e-4b3a-4e6f-9a0b-8c7d6e5f4a3b"
    assert record.event_type == "/cx/social-messaging/v1/contents/Imported"
    assert record.origin == "ringcentral"
    assert record.event_time == t("2026-03-02T11:40:05+00:00")
    assert (record.content_id, record.thread_id) == (
        "65e3117ec9d8e70012ab5a01",
        "65e3117ec9d8e70012ab5a00",
    )
    assert (record.direction, record.agent_id, record.status) == ("inbound", None, "new")
    assert record.author_id == "65e3117ec9d8e70012ab0777"
    assert (record.source_id, record.source_type) == (
        "5f0a1b2c3d4e5f0011225555",
        "facebook_messenger",
    )
    assert record.body is None


def test_platform_agent_reply() -> None:
    (record,) = platform(sample("platform-agent-reply.json")).records
    assert (record.direction, record.agent_id, record.status) == (
        "outbound",
        "63311250008",
        "user_reply",
    )
    assert record.intervention_id == "65e31290c9d8e70012ab5a20"
    assert record.in_reply_to_id == "65e3117ec9d8e70012ab5a01"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SAMPLES.glob("*.json") if "thin" not in p.name)
)
def test_every_sample_encodes_to_a_valid_record_without_words(name: str) -> None:
    parse = parse_platform if name.startswith("platform") else parse_classic
    delivery = parse((SAMPLES / name).read_bytes(), received_at=NOW, forward_body=False)
    assert delivery.records and not delivery.dead_letters
    for record in delivery.records:
        raw = encode_event(record)
        assert decode_event(raw) == record
        assert b"Hello" not in raw and b"order" not in raw.lower()
        assert record.body is None


# --- edge cases ----------------------------------------------------------------------------


def test_domain_id_may_be_string_or_integer() -> None:
    envelope = sample("classic-customer-message.json")
    envelope["domain_id"] = 123456
    assert len(classic(envelope).records) == 1
    envelope["domain_id"] = {"nested": 1}
    with pytest.raises(EnvelopeError, match="domain_id"):
        classic(envelope)


def test_unknown_fields_are_ignored_everywhere() -> None:
    envelope = sample("classic-customer-message.json")
    envelope["brand_new"] = {"x": [1, 2]}
    envelope["events"][0]["future_field"] = True
    envelope["events"][0]["resource"]["metadata"]["sentiment"] = "angry"
    assert classic(envelope).records == classic(sample("classic-customer-message.json")).records


def test_many_events_in_one_delivery_keep_their_order() -> None:
    envelope = sample("classic-customer-message.json")
    event = envelope["events"][0]
    envelope["events"] = []
    for i in range(50):
        e = copy.deepcopy(event)
        e["id"] = f"event-{i}"
        envelope["events"].append(e)
    delivery = classic(envelope)
    assert [r.event_id for r in delivery.records] == [f"event-{i}" for i in range(50)]


def test_integer_ids_become_strings() -> None:
    envelope = sample("classic-customer-message.json")
    meta = envelope["events"][0]["resource"]["metadata"]
    meta["thread_id"] = 42
    envelope["events"][0]["resource"]["id"] = 7
    (record,) = classic(envelope).records
    assert (record.thread_id, record.content_id) == ("42", "7")


def test_forward_body_copies_the_words_only_when_on() -> None:
    envelope = sample("classic-customer-message.json")
    (off,) = classic(envelope).records
    (on,) = classic(envelope, forward_body=True).records
    assert off.body is None
    assert on.body == "Hi, my order 4471 has not arrived yet. Can you check?"
    (platform_on,) = platform(sample("platform-imported.json"), forward_body=True).records
    assert platform_on.body == "Is the store on Main Street open on Sunday?"


def test_agent_from_event_user_when_creator_absent() -> None:
    envelope = sample("classic-auto-welcome.json")
    event = envelope["events"][0]
    event["user_id"] = "agent-7"
    event["resource"]["metadata"]["auto_submitted"] = False
    (record,) = classic(envelope).records
    assert (record.direction, record.agent_id, record.automatic) == ("outbound", "agent-7", False)


def test_user_id_on_a_customer_content_is_not_its_agent() -> None:
    envelope = sample("classic-customer-message.json")
    envelope["events"][0]["type"] = "content.thread_closed"
    envelope["events"][0]["user_id"] = "agent-closing"
    (record,) = classic(envelope).records
    assert (record.direction, record.agent_id) == ("inbound", None)


@pytest.mark.parametrize(
    ("status", "creator", "direction"),
    [
        ("new", None, "inbound"),
        ("assigned", None, "inbound"),
        ("replied", None, "inbound"),
        ("ignored", None, "inbound"),
        ("user_reply", None, "outbound"),
        ("user_initiated", None, "outbound"),
        ("new", "agent-1", "outbound"),
        (None, None, "inbound"),
    ],
)
def test_classic_direction_rules(status: str | None, creator: str | None, direction: str) -> None:
    envelope = sample("classic-customer-message.json")
    meta = envelope["events"][0]["resource"]["metadata"]
    meta["status"], meta["creator_id"] = status, creator
    (record,) = classic(envelope).records
    assert record.direction == direction
    assert record.agent_id == creator


@pytest.mark.parametrize(
    ("fields", "direction"),
    [
        ({"contentDirection": "Outgoing", "status": "Replied"}, "outbound"),
        ({"contentDirection": "Incoming", "status": "New"}, "inbound"),
        ({"contentDirection": None, "status": "UserInitiated"}, "outbound"),
        ({"contentDirection": None, "status": "PendingApproval"}, "outbound"),
        ({"contentDirection": None, "status": "Assigned"}, "inbound"),
    ],
)
def test_platform_direction_rules(fields: dict[str, Any], direction: str) -> None:
    envelope = sample("platform-imported.json")
    envelope["body"].update(fields)
    (record,) = platform(envelope).records
    assert record.direction == direction


def test_platform_channel_fields_and_automatic() -> None:
    envelope = sample("platform-imported.json")
    body = envelope["body"]
    del body["sourceId"], body["sourceType"]
    body["channelId"], body["channelType"] = "chan-1", "WhatsApp"
    body["autoSubmitted"] = True
    (record,) = platform(envelope).records
    assert (record.source_id, record.source_type, record.automatic) == (
        "chan-1",
        "whatsapp",  # spelt as the classic API spells it
        True,
    )


def test_platform_without_creation_time_uses_timestamp() -> None:
    envelope = sample("platform-imported.json")
    del envelope["body"]["creationTime"]
    (record,) = platform(envelope).records
    assert record.event_time == t("2026-03-02T11:40:05.903+00:00")


def test_offsets_are_converted_to_utc_and_naive_means_utc() -> None:
    envelope = sample("classic-customer-message.json")
    meta = envelope["events"][0]["resource"]["metadata"]
    meta["created_at"] = "2026-03-02T10:15:26+01:00"
    (record,) = classic(envelope).records
    assert record.event_time == t("2026-03-02T09:15:26+00:00")
    assert record.event_time.utcoffset() is not None
    meta["created_at"] = "2026-03-02T09:15:26"
    (record,) = classic(envelope).records
    assert record.event_time == t("2026-03-02T09:15:26+00:00")


def test_snake_status() -> None:
    assert snake_status("UserReply") == "user_reply"
    assert snake_status("PendingApproval") == "pending_approval"
    assert snake_status("user_initiated") == "user_initiated"
    assert snake_status("New") == "new"


# --- dead letters --------------------------------------------------------------------------


def dead_reason(envelope: dict[str, Any]) -> str:
    delivery = classic(envelope)
    assert delivery.records == []
    (item,) = delivery.dead_letters
    return item.reason


def test_missing_thread_id_is_a_dead_letter() -> None:
    envelope = sample("classic-customer-message.json")
    del envelope["events"][0]["resource"]["metadata"]["thread_id"]
    assert dead_reason(envelope) == "missing_thread_id"


def test_missing_content_and_event_ids_are_dead_letters() -> None:
    envelope = sample("classic-customer-message.json")
    del envelope["events"][0]["resource"]["id"]
    assert dead_reason(envelope) == "missing_content_id"
    envelope = sample("classic-customer-message.json")
    envelope["events"][0]["id"] = ""
    assert dead_reason(envelope) == "missing_event_id"


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T99:00:00Z", 1709371526, "2026-02-30"])
def test_bad_created_at_is_a_dead_letter(value: object) -> None:
    envelope = sample("classic-customer-message.json")
    envelope["events"][0]["resource"]["metadata"]["created_at"] = value
    assert dead_reason(envelope) == "invalid_timestamp"


def test_no_time_at_all_is_a_dead_letter() -> None:
    envelope = sample("classic-auto-welcome.json")
    del envelope["events"][0]["issued_at"]
    assert dead_reason(envelope) == "missing_timestamp"
    envelope["events"][0]["issued_at"] = "not a time"
    assert dead_reason(envelope) == "invalid_timestamp"


def test_non_content_events_are_dead_letters() -> None:
    envelope = {
        "id": "d",
        "domain_id": "x",
        "events": [
            {
                "type": "intervention.opened",
                "id": "ev-int-1",
                "issued_at": "2026-03-02T09:15:27.412Z",
                "resource": {"type": "intervention", "id": "int-1", "metadata": {}},
            }
        ],
    }
    assert dead_reason(envelope) == "non_content_event"


def test_an_event_that_is_not_an_object_is_a_dead_letter_among_good_ones() -> None:
    envelope = sample("classic-customer-message.json")
    envelope["events"].append("garbage")
    delivery = classic(envelope)
    assert len(delivery.records) == 1
    assert [d.reason for d in delivery.dead_letters] == ["event_not_object"]


def test_dead_letter_strips_words_unless_forwarding() -> None:
    envelope = sample("classic-customer-message.json")
    del envelope["events"][0]["resource"]["metadata"]["thread_id"]
    (item,) = classic(envelope).dead_letters
    value = orjson.loads(dead_letter_value(item, endpoint="engage", received_at=NOW))
    assert value["reason"] == "missing_thread_id"
    assert value["endpoint"] == "engage"
    assert value["received_at"] == "2026-03-02T12:00:00Z"
    metadata = value["event"]["resource"]["metadata"]
    assert "body" not in metadata and "thread_title" not in metadata
    assert metadata["source_id"] == "5f0a1b2c3d4e5f0011223344"  # the rest is kept
    (kept,) = classic(envelope, forward_body=True).dead_letters
    assert kept.event["resource"]["metadata"]["body"].startswith("Hi, my order")


def test_platform_without_thread_is_unresolved_keeping_content_but_not_words() -> None:
    envelope = sample("platform-imported.json")
    del envelope["body"]["threadId"]
    delivery = platform(envelope)
    assert delivery.records == [] and delivery.dead_letters == []
    (item,) = delivery.unresolved
    assert item.content_id == "65e3117ec9d8e70012ab5a01"
    assert item.notification["body"]["id"] == "65e3117ec9d8e70012ab5a01"
    assert "body" not in item.notification["body"]
    (kept,) = platform(envelope, forward_body=True).unresolved
    assert kept.notification["body"]["body"].startswith("Is the store")


def test_platform_non_content_event_is_a_dead_letter() -> None:
    envelope = sample("platform-imported.json")
    envelope["event"] = "/restapi/v1.0/account/~/extension/~/presence"
    (item,) = platform(envelope).dead_letters
    assert item.reason == "non_content_event"


def test_strip_words_recurses_into_lists() -> None:
    assert strip_words({"a": [{"body": "x", "id": 1}], "title": "t", "body": {"id": 2}}) == {
        "a": [{"id": 1}],
        "body": {"id": 2},
    }


# --- not an envelope (HTTP 400) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"events": {"a": 1}}', "field 'events' must be a list"),
        (b'{"id": "x"}', "field 'events' must be a list"),
    ],
)
def test_classic_envelope_errors_say_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse_classic(raw, received_at=NOW, forward_body=False)


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ({"uuid": "u", "body": {}}, "field 'event' must be a string"),
        ({"uuid": "u", "event": "/x/contents/Imported", "body": "x"}, "field 'body' must be"),
    ],
)
def test_platform_envelope_errors_say_what_is_wrong(envelope: Any, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        platform(envelope)


def test_empty_event_list_is_a_valid_delivery() -> None:
    assert classic({"id": "x", "domain_id": "d", "events": []}) == Delivery([], [])


# --- rendering round trips -----------------------------------------------------------------

ids = st.text(alphabet="abcdef0123456789", min_size=1, max_size=24)
moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


@st.composite
def content_events(draw: st.DrawFn) -> ContentEvent:
    outbound = draw(st.booleans())
    automatic = draw(st.booleans())
    agent = draw(ids) if outbound and not automatic else None
    return ContentEvent(
        event_id=draw(ids),
        event_type=draw(
            st.sampled_from(["content.imported", "content.replied", "content.discussion_initiated"])
        ),
        origin="engage",
        event_time=draw(moments),
        received_at=NOW,
        content_id=draw(ids),
        thread_id=draw(ids),
        intervention_id=draw(st.none() | ids),
        source_id=draw(ids),
        source_type=draw(st.sampled_from(["whatsapp", "email", "facebook", "twitter"])),
        author_id=draw(ids),
        agent_id=agent,
        in_reply_to_id=draw(st.none() | ids),
        direction="outbound" if outbound else "inbound",
        automatic=automatic,
        status=draw(st.sampled_from(["user_reply", "user_initiated"]))
        if outbound
        else draw(st.sampled_from(["new", "assigned"])),
        body=draw(st.none() | st.text(max_size=40)),
    )


@settings(max_examples=200, deadline=None)
@given(content_events())
def test_classic_rendering_parses_back_to_the_same_record(event: ContentEvent) -> None:
    raw = classic_envelope([event], delivery_id="d1")
    (back,) = parse_classic(raw, received_at=NOW, forward_body=True).records
    assert back == event


@settings(max_examples=200, deadline=None)
@given(content_events())
def test_platform_rendering_parses_back_to_the_same_record(event: ContentEvent) -> None:
    (back,) = parse_platform(platform_envelope(event), received_at=NOW, forward_body=True).records
    expected = msgspec.structs.replace(
        event, origin="ringcentral", event_type=platform_event_path(event.event_type)
    )
    assert back == expected


def test_platform_event_path() -> None:
    assert platform_event_path("content.discussion_initiated") == (
        "/cx/social-messaging/v1/contents/DiscussionInitiated"
    )
    assert platform_event_path("/cx/x/contents/Imported") == "/cx/x/contents/Imported"
