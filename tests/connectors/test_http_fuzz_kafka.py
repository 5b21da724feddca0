"""A sample of the hostile bodies of ``test_http_fuzz.py`` through the real broker.

The connector (real app, HTTP limits, ``KafkaPublisher``) answers each body; afterwards the
events topic and the DLQ hold exactly what the 200 answers counted -- records decodable,
dead letters with a known reason, no customer's words -- and nothing of the refused bodies.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.envelopes import DEAD_LETTER_REASONS
from connectors.publisher import KafkaPublisher, Publisher
from engage_streams.record import decode_event
from engage_streams.topics import ensure_topics
from tests.connectors.hostile_deliveries import (
    WORDS_MARKER,
    bodies,
    classic_envelopes,
    platform_envelopes,
)
from tests.connectors.in_process import connector_in_thread
from tests.connectors.test_http_fuzz import AUTH, SETTINGS
from tests.plugins.topics import read_topic

pytestmark = pytest.mark.kafka

SAMPLE = int(os.environ.get("FUZZ_KAFKA_EXAMPLES", "60"))


def test_hostile_bodies_through_kafka_are_exactly_accounted_for(kafka_broker: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    config = replace(
        SETTINGS,
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"fuzz.contents.{suffix}",
        dlq_topic=f"fuzz.contents.dlq.{suffix}",
        topic_partitions=2,
    )
    asyncio.run(ensure_topics(config))

    async def start() -> Publisher:
        publisher = KafkaPublisher(config.kafka_bootstrap_servers, request_timeout_seconds=15.0)
        await publisher.start()
        return publisher

    totals = {"published": 0, "dead_lettered": 0, "refused": 0}
    with (
        connector_in_thread(config, start_publisher=start) as served,
        httpx.Client(base_url=served.url, timeout=30) as client,
    ):

        @settings(
            max_examples=SAMPLE,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            case=st.one_of(
                bodies(classic_envelopes()).map(lambda raw: ("engage", raw)),
                bodies(platform_envelopes()).map(lambda raw: ("ringcentral", raw)),
            )
        )
        def deliver(case: tuple[str, bytes]) -> None:
            endpoint, raw = case
            response = client.post(f"/webhooks/{endpoint}", content=raw, headers=AUTH[endpoint])
            assert response.status_code in (200, 400), response.text
            answer = orjson.loads(response.content)
            if response.status_code == 200:
                totals["published"] += answer["published"]
                totals["dead_lettered"] += answer["dead_lettered"]
            else:
                totals["refused"] += 1
                assert answer["error"]

        deliver()

    records = asyncio.run(read_topic(config.kafka_bootstrap_servers, config.topic, 0, timeout=60))
    dead = asyncio.run(read_topic(config.kafka_bootstrap_servers, config.dlq_topic, 0, timeout=60))
    assert (len(records), len(dead)) == (totals["published"], totals["dead_lettered"]), totals
    for record in records:
        assert record.key == decode_event(record.value).thread_id.encode()
    for letter in dead:
        assert orjson.loads(letter.value)["reason"] in DEAD_LETTER_REASONS
    for item in [*records, *dead]:
        assert WORDS_MARKER.encode() not in item.value
    assert totals["published"] + totals["dead_lettered"] > 0 and totals["refused"] > 0, totals
