"""Reading and writing topics of the real test broker, for tests of every package.

``read_topic`` waits on a condition (N records, or the end of the topic) with a deadline,
never on a sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord as Record  # .key, .value, .partition, .offset


async def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0
) -> list[Record]:
    """The records of ``topic`` from the beginning, once at least ``expected`` are readable.

    Sorted by (partition, offset). Raises AssertionError saying how many arrived when fewer
    than ``expected`` are readable within ``timeout`` seconds. ``expected=0`` means: every
    record there is now (up to the end offsets at the call), e.g. to assert that there are
    exactly N, or none.
    """
    deadline = time.monotonic() + timeout
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic, deadline)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Record] = []
        while not await _enough(consumer, records, expected, ends):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"read {len(records)} of {expected or 'all'} records from {topic!r} "
                    f"within {timeout} s"
                )
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for part in batch.values():
                records.extend(part)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record of ``topic`` up to its current end, as (key, value), by partition."""
    return [(r.key, r.value) for r in await read_topic(bootstrap, topic, 0)]


async def end_offsets(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Partition -> end offset (the number of records ever written to it, for compaction-free
    topics)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(bootstrap, topic, time.monotonic() + timeout)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> None:
    """Publish (key, value) records and wait until the broker acknowledged every one."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def _partitions(bootstrap: str, topic: str, deadline: float) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            (described,) = await admin.describe_topics([topic])
            if described["error_code"] == 0 and described["partitions"]:
                return sorted(p["partition"] for p in described["partitions"])
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic!r} does not exist")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _enough(
    consumer: AIOKafkaConsumer,
    records: list[Record],
    expected: int,
    ends: dict[TopicPartition, int],
) -> bool:
    if expected > 0:
        return len(records) >= expected
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
