"""A big fetched batch does not hold the event loop for its whole length (no Kafka).

A batch of 10,000 records takes the busy worker about half a second; meanwhile the loop must
answer ``/metrics``, ``/readyz`` and the API. ``on_batch`` applies the records a thousand at a
time and lets the loop run between them, and the result is the same as in one go.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engage_streams.record import encode_event
from simulator.scenario import ScenarioConfig, generate
from streams.core.responses.partition import PartitionProcessor, encode_partition_state
from streams.core.responses.sla import SlaPolicy
from streams.worker.contents import RECORDS_BETWEEN_YIELDS, ContentsPipeline
from streams.worker.durable import load_partition
from streams.worker.thread_store import MemoryPartition


@dataclass(frozen=True)
class Record:
    offset: int
    value: bytes


def _pipeline() -> ContentsPipeline:
    pipeline = ContentsPipeline(
        app=None,
        table=None,
        processor=PartitionProcessor(SlaPolicy(), 10.0, 3600.0),
        topic="contents",
        activity_topic="activity",
        waiting_topic="waiting",
        partitions=1,
        producer_factory=lambda: None,  # type: ignore[arg-type,return-value]  # never used
        flush_interval_seconds=3600.0,  # no flush: this test is about applying
    )
    pipeline.owned[0] = load_partition(0, MemoryPartition({}, 0, 1), 100_000)
    pipeline._last_flush[0] = float("inf")
    return pipeline


async def test_the_loop_runs_while_a_big_batch_is_applied_and_the_result_is_the_same() -> None:
    events = generate(ScenarioConfig(seed=3, threads=400, span_seconds=3600.0))
    records = [Record(offset, encode_event(event)) for offset, event in enumerate(events)]
    assert len(records) > 3 * RECORDS_BETWEEN_YIELDS
    chunked, whole = _pipeline(), _pipeline()

    turns = 0
    applying = True

    async def other_work() -> None:
        nonlocal turns
        while applying:
            turns += 1
            await asyncio.sleep(0)

    beside = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    await chunked.on_batch(0, records)
    applying = False
    await beside
    # The other task ran between the thousands (once before the batch, once after it).
    assert turns >= len(records) // RECORDS_BETWEEN_YIELDS

    # The reference: the same records through the rules in one go.
    state = whole.owned[0]
    for record in records:
        whole.processor.apply(state.state, state.threads, record.offset, record.value)
    applied = chunked.owned[0].state
    assert applied.applied_offset == len(records) - 1
    assert encode_partition_state(applied) == encode_partition_state(state.state)
