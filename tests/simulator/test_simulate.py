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


async def test_platform_notifications_in_every_shape_name_what_the_fake_api_serves(
    kafka_broker: Any,
) -> None:
    """With the fake platform API: nested, flat and thin notifications; every content handed
    to the fake before it is notified (a thin one's id is served there in full), agents'
    contents carrying their extension id, which the connector maps back to the agent."""
    from connectors.agents import AgentIds
    from engage_streams.rest.platform import PlatformClient
    from simulator.platform_api import FakePlatform, serving

    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"test.simulate-platform.{suffix}",
        dlq_topic=f"test.simulate-platform.{suffix}.dlq",
        unresolved_topic=f"test.simulate-platform.{suffix}.unresolved",
        webhook_secret="sim-secret",
        ringcentral_verification_token="sim-rc-token",
    )
    for topic in (settings.topic, settings.dlq_topic, settings.unresolved_topic):
        await asyncio.to_thread(kafka_broker.create_topic, topic, 1)
    creator_ids = {f"agent-{n:03d}": f"4001312340{n:02d}" for n in range(1, 13)}
    platform = FakePlatform()
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers)
    await publisher.start()
    agent_ids = AgentIds({extension: agent for agent, extension in creator_ids.items()})
    server = TestServer(create_app(settings, publisher, agent_ids=agent_ids), host="127.0.0.1")
    await server.start_server()
    try:
        async with serving(platform) as api_url:
            options = SimulationOptions(
                url=str(server.make_url("")).rstrip("/"),
                speed=50_000.0,
                threads=20,
                once=True,
                platform_share=0.5,
                seed=11,
                platform_api_url=api_url,
                creator_ids=creator_ids,
            )
            report = await simulate(settings, options)
            assert report.failed == 0
            assert set(report.platform_shapes) == {"nested", "flat", "thin"}
            queued = await read_all(settings.kafka_bootstrap_servers, settings.unresolved_topic)
            assert len(queued) == report.platform_shapes["thin"]
            client = PlatformClient(
                api_url, platform.client_id, platform.client_secret, platform.jwt
            )
            async with client:
                for key, _ in queued:
                    assert key is not None
                    fetched = await client.get_content(key.decode())
                    assert fetched["threadId"] and fetched["contentDirection"]
    finally:
        await server.close()
        await publisher.stop()
    records = [
        decode_event(v) for _, v in await read_all(settings.kafka_bootstrap_servers, settings.topic)
    ]
    assert {r.content_id for r in records} <= set(platform.contents)  # handed over first
    platform_agents = {r.agent_id for r in records if r.origin == "ringcentral" and r.agent_id}
    assert platform_agents and platform_agents <= set(creator_ids)  # mapped back
    served_creators = {c["creatorId"] for c in platform.contents.values() if c["creatorId"]}
    assert served_creators <= set(creator_ids.values())
