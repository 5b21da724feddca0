"""The simulator against a real connector and broker: what it sends arrives as records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from connectors.publisher import KafkaPublisher
from connectors.server import create_app
from engage_streams.record import decode_event
from engage_streams.settings import Settings
from simulator.simulate import SimulationOptions, simulate
from tests.plugins.topics import read_all

pytestmark = pytest.mark.kafka


@pytest.fixture
async def running(kafka_broker: Any) -> AsyncIterator[tuple[Settings, str]]:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"test.simulate.{suffix}",
        dlq_topic=f"test.simulate.{suffix}.dlq",
        webhook_secret="sim-secret",
        ringcentral_verification_token="sim-rc-token",
    )
    await asyncio.to_thread(kafka_broker.create_topic, settings.topic, 3)
    await asyncio.to_thread(kafka_broker.create_topic, settings.dlq_topic, 1)
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers)
    await publisher.start()
    server = TestServer(create_app(settings, publisher), host="127.0.0.1")
    await server.start_server()
    try:
        yield settings, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await publisher.stop()


async def test_one_round_of_traffic_reaches_the_topic(running: tuple[Settings, str]) -> None:
    settings, url = running
    options = SimulationOptions(
        url=url, speed=50_000.0, threads=6, once=True, platform_share=0.3, seed=7
    )
    report = await simulate(settings, options)
    assert report.failed == 0
    assert report.events >= 6
    records = [
        decode_event(v) for _, v in await read_all(settings.kafka_bootstrap_servers, settings.topic)
    ]
    assert {r.event_id for r in records} == report.event_ids
    assert {r.origin for r in records} == {"engage", "ringcentral"}
    assert {r.direction for r in records} == {"inbound", "outbound"}
    assert any(r.automatic for r in records) or any(r.agent_id for r in records)
    assert all(r.body is None for r in records)  # words are not forwarded by default
    # event times are live (mapped onto the wall clock), received in order of the scenario
    assert all(r.received_at.year >= 2025 for r in records)


async def test_without_replies_only_customers_and_bots_write(
    running: tuple[Settings, str],
) -> None:
    settings, url = running
    options = SimulationOptions(url=url, speed=50_000.0, threads=12, once=True, seed=7)
    report = await simulate(settings, replace(options, replies=False))
    assert report.failed == 0 and report.events >= 12
    records = [
        decode_event(v) for _, v in await read_all(settings.kafka_bootstrap_servers, settings.topic)
    ]
    assert {r.event_id for r in records} == report.event_ids
    assert all(r.agent_id is None for r in records)
    assert {r.direction for r in records if not r.automatic} == {"inbound"}
