"""At most two flushes of a partition in flight (no Kafka: the write is held by the test).

A flush encodes every dirty thread state and the partition record; while Kafka takes its
time, starting more flushes only piles encoded copies up in memory (a worker of 400k threads
reached 1.4 GB that way on a loaded machine). One is written while the next waits for it
(processing goes on); a flush due beyond that waits for the next call, which takes
everything changed meanwhile; a revocation's or a stop's last flush is started anyway.
"""

from __future__ import annotations

import asyncio

from streams.core.responses.partition import PartitionProcessor
from streams.core.responses.sla import SlaPolicy
from streams.core.responses.threads import ThreadState
from streams.worker.contents import FLUSHES_IN_FLIGHT, ContentsPipeline
from streams.worker.durable import DurablePartition, FlushBatch, load_partition
from streams.worker.thread_store import MemoryPartition


async def test_at_most_two_flushes_of_a_partition_in_flight() -> None:
    pipeline = ContentsPipeline(
        app=None,
        table=None,
        processor=PartitionProcessor(SlaPolicy(), 0.0, 3600.0),
        topic="contents",
        activity_topic="activity",
        waiting_topic="waiting",
        partitions=1,
        producer_factory=lambda: None,  # type: ignore[arg-type,return-value]  # never used
    )
    durable = load_partition(0, MemoryPartition({}, 0, 1), 100)
    pipeline.owned[0] = durable
    written: list[set[str]] = []
    kafka_done = asyncio.Event()

    async def held_write(
        durable: DurablePartition,
        batch: FlushBatch,
        activities: object,
        runs: object,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await previous
        written.append(set(batch.threads))
        await kafka_done.wait()

    pipeline._write = held_write  # type: ignore[assignment,method-assign]
    assert FLUSHES_IN_FLIGHT == 2
    state = ThreadState(source_id="s1")
    durable.threads.put("t1", state)
    assert await pipeline._flush(durable) is None  # written at once
    durable.threads.put("t2", state)
    assert await pipeline._flush(durable) is None  # encoded, waits for the first
    await asyncio.sleep(0)
    durable.threads.put("t3", state)
    durable.threads.put("t4", state)
    busy = await pipeline._flush(durable)
    assert busy is not None and not busy.done()  # the oldest one; nothing new started
    await asyncio.sleep(0)
    assert written == [{"t1"}] and durable.threads.dirty_count == 2
    kafka_done.set()
    await busy
    assert await pipeline._flush(durable) is None  # a slot is free: it starts, with both
    await asyncio.wait([pipeline._inflight[0]])
    assert written == [{"t1"}, {"t2"}, {"t3", "t4"}] and durable.threads.dirty_count == 0
    # A last flush (revocation, stop) does not wait for a slot.
    kafka_done.clear()
    for thread_id in ("t5", "t6"):
        durable.threads.put(thread_id, state)
        assert await pipeline._flush(durable) is None
    durable.threads.put("t7", state)
    assert await pipeline._flush(durable, last=True) is None
    kafka_done.set()
    await asyncio.wait([pipeline._inflight[0]])
    assert written[3:] == [{"t5"}, {"t6"}, {"t7"}]
