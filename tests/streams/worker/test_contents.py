"""The contents pipeline's Kafka writes, against the real broker.

A flush sends its records (the partition record, then each dirty thread; or a partition's
activities) to one partition as few record batches as fit, in order, and learns from the
last batch's base offset and size where the store's recovery resumes
(``set_changelog_offset``). Those offsets must be exact, and the order must hold also when
the records fill several batches. The pipeline as a whole runs in the worker integration
and fault tests.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from streams.core.responses.partition import PartitionProcessor
from streams.core.responses.sla import SlaPolicy
from streams.worker.contents import ContentsPipeline, _send_all, send_in_batches
from tests.plugins.topics import end_offsets, read_topic

pytestmark = pytest.mark.kafka


async def test_records_fill_several_batches_in_order_and_the_last_offset_is_exact(
    kafka_settings: Settings,
) -> None:
    bootstrap = kafka_settings.kafka_bootstrap_servers
    topic = kafka_settings.topic
    await create_topics(bootstrap, {topic: 3})
    # Small batches: 1,500 records of ~200 bytes need many of them.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_batch_size=16_384
    )
    await producer.start()
    try:
        records = [(f"thread-{i:05d}".encode(), b"x" * 190 + str(i).encode()) for i in range(1500)]
        records.append((b"thread-gone", None))  # a tombstone, as for a dropped thread
        futures, in_last = await send_in_batches(producer, topic, 2, records)
        assert len(futures) > 5, "the records should not fit one batch"
        base_offsets = [int((await f).offset) for f in futures]
        assert base_offsets == sorted(base_offsets)
        assert base_offsets[-1] + in_last - 1 == len(records) - 1  # the last record's offset
        last_offset, last_count = await _send_all(topic, 2, records[:10], producer)
        assert last_offset + last_count - 1 == len(records) + 9
    finally:
        await producer.stop()
    assert (await end_offsets(bootstrap, topic)) == {0: 0, 1: 0, 2: len(records) + 10}
    got = await read_topic(bootstrap, topic, 0)
    assert [(r.key, r.value) for r in got] == records + records[:10]
    assert {r.partition for r in got} == {2}


async def test_a_flush_whose_producer_the_broker_lost_track_of_lands_with_a_new_one(
    kafka_settings: Settings,
) -> None:
    """After a broker restart the broker may refuse every batch of the worker's idempotent
    producer (``OutOfOrderSequenceNumber``). Made for real here (the producer's sequence is
    advanced past what the broker expects): the write must land, once, with a new producer."""
    bootstrap = kafka_settings.kafka_bootstrap_servers
    topic = kafka_settings.topic
    await create_topics(bootstrap, {topic: 1})
    pipeline = ContentsPipeline(
        app=None,
        table=None,
        processor=PartitionProcessor(SlaPolicy(), 0.0, 3600.0),
        topic=topic,
        activity_topic=topic,
        waiting_topic=topic,
        partitions=1,
        producer_factory=lambda: AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        ),
    )
    owned = SimpleNamespace(partition=0)
    pipeline.owned[0] = owned  # type: ignore[assignment]
    records = [(b"thread-1", b"first"), (b"thread-2", b"second")]

    async def write(producer: AIOKafkaProducer) -> tuple[int, int]:
        return await _send_all(topic, 0, records, producer)

    try:
        assert await pipeline._until_acknowledged(owned, "test write", write) == (0, 2)  # type: ignore[arg-type]
        broken = pipeline.producer
        assert broken is not None
        broken._txn_manager.increment_sequence_number(TopicPartition(topic, 0), 5)
        landed = await asyncio.wait_for(
            pipeline._until_acknowledged(owned, "test write", write),  # type: ignore[arg-type]
            60,
        )
        assert landed == (2, 2)
        assert pipeline.producer is not broken and pipeline.health.producer_renewals == 1
    finally:
        pipeline.owned.clear()  # nothing of a real partition to flush
        await pipeline.stop()
    got = await read_topic(bootstrap, topic, 0)
    assert [(r.key, r.value) for r in got] == records + records
