"""``KafkaPublisher`` against the real broker when the broker has lost track of its producer.

After a broker restart the broker can refuse every later batch of an idempotent producer
(``OutOfOrderSequenceNumber``: batches given up during the outage left a gap in its sequence
numbers). The test makes that gap for real -- it advances the producer's sequence number of
the topic's partition, so its next batch reaches the broker out of order -- and checks that
the delivery fails (the sender retries it), that a new producer replaces the old one, and that
the retried delivery then lands, once.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition

from connectors.publisher import KafkaPublisher, Message, PublishError
from tests.plugins.topics import read_topic

pytestmark = pytest.mark.kafka


async def publish_until_acknowledged(
    publisher: KafkaPublisher, message: Message, *, attempts: int = 40
) -> list[str]:
    """Publish as Engage redelivers: again after each failure (0.25 s apart); returns the
    failures seen before the acknowledgement."""
    failures: list[str] = []
    for _ in range(attempts):
        try:
            await publisher.publish([message], within_seconds=5.0)
        except PublishError as error:
            failures.append(str(error))
            await asyncio.sleep(0.25)
        else:
            return failures
    raise AssertionError(f"never acknowledged after {attempts} attempts: {failures[-3:]}")


async def test_a_producer_the_broker_lost_track_of_is_replaced(kafka_broker: Any) -> None:
    topic = f"test.publisher.{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(kafka_broker.create_topic, topic, 1)
    renewed: list[int] = []
    publisher = KafkaPublisher(
        kafka_broker.bootstrap_servers,
        request_timeout_seconds=5.0,
        on_renewed=lambda: renewed.append(1),
    )
    await publisher.start()
    try:
        await publisher.publish([Message(topic, b"t1", b"before")], within_seconds=10.0)
        broken = publisher._producer
        # The gap a broker restart leaves: the next batch's sequence is not the one expected.
        broken._txn_manager.increment_sequence_number(TopicPartition(topic, 0), 5)

        with pytest.raises(PublishError, match="OutOfOrderSequenceNumber"):
            await publisher.publish([Message(topic, b"t1", b"refused")], within_seconds=10.0)
        failures = await publish_until_acknowledged(publisher, Message(topic, b"t1", b"after"))

        assert publisher._producer is not broken
        assert publisher.renewals == 1 and renewed == [1]
        assert all("OutOfOrderSequenceNumber" not in failure for failure in failures), failures
        assert await publisher.ready()
    finally:
        await publisher.stop()
    values = [record.value for record in await read_topic(kafka_broker.bootstrap_servers, topic, 0)]
    assert values == [b"before", b"after"]


async def test_a_healthy_producer_is_kept(kafka_broker: Any) -> None:
    topic = f"test.publisher.{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(kafka_broker.create_topic, topic, 1)
    publisher = KafkaPublisher(kafka_broker.bootstrap_servers, request_timeout_seconds=5.0)
    await publisher.start()
    try:
        producer = publisher._producer
        for n in range(5):
            await publisher.publish([Message(topic, b"t", str(n).encode())], within_seconds=10.0)
        assert publisher._producer is producer and publisher.renewals == 0
    finally:
        await publisher.stop()
