"""Backfill from a local fake of the Engage REST API into the real broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from connectors.backfill import backfill, main
from connectors.publisher import KafkaPublisher
from engage_streams.record import decode_event
from engage_streams.rest.classic import EngageRestClient
from engage_streams.settings import Settings
from tests.plugins.fake_engage import TOKEN
from tests.plugins.topics import read_all

pytestmark = pytest.mark.kafka


async def test_backfill_publishes_contents_oldest_first(
    fake: Any,
    kafka_broker: Any,
) -> None:
    engage, url = fake
    engage.collections["contents"].append({"id": "broken", "created_at": "2026-03-01T23:59:00Z"})
    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"test.backfill.{suffix}",
        dlq_topic=f"test.backfill.{suffix}.dlq",
    )
    await asyncio.to_thread(kafka_broker.create_topic, settings.topic, 1)
    await asyncio.to_thread(kafka_broker.create_topic, settings.dlq_topic, 1)
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers)
    await publisher.start()
    try:
        async with EngageRestClient(url, TOKEN) as api:
            report = await backfill(settings, api, publisher)
    finally:
        await publisher.stop()
    assert (report.published, report.dead_lettered) == (320, 1)

    records = await read_all(settings.kafka_bootstrap_servers, settings.topic)
    events = [decode_event(value) for _, value in records]
    assert [e.content_id for e in events] == [f"content-{i:04d}" for i in range(320)]
    assert {e.origin for e in events} == {"backfill"}
    assert events[0].event_id == "backfill:content-0000"
    assert [key for key, _ in records] == [e.thread_id.encode() for e in events]
    assert all(e.body is None for e in events)
    ((_, dead),) = await read_all(settings.kafka_bootstrap_servers, settings.dlq_topic)
    letter = orjson.loads(dead)
    assert (letter["reason"], letter["endpoint"]) == ("missing_thread_id", "backfill")


def test_backfill_needs_the_api_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(Settings(), []) == 2
    assert "ENGAGE_API_TOKEN" in capsys.readouterr().err
