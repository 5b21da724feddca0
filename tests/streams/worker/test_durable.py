"""The flush protocol makes a crash harmless, wherever in a flush it happens.

The changelog is modelled as the ordered list of (key, value) records a partition's flushes
wrote; a crash keeps any prefix of it (Kafka appends in order; the idempotent producer
never leaves a gap). Recovery rebuilds the store from that prefix, ``load_partition``
resumes, the records are replayed from the recovered ``applied_offset`` -- and every number
must equal one clean run and the independent reference.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from engage_streams.partitioning import partition_for
from engage_streams.record import ContentEvent, encode_event
from simulator.scenario import ScenarioConfig, generate
from streams.core.responses.partition import PartitionProcessor, backlog
from streams.core.responses.sla import SlaPolicy
from streams.worker.durable import (
    FlushBatch,
    apply_locally,
    finish_flush,
    load_partition,
    prepare_flush,
)
from streams.worker.thread_store import ThreadCache
from tests.references.responses import reference

WINDOW = 10.0


class Store(dict[bytes, bytes]):
    """A LocalPartition over a dict."""

    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value

    def delete(self, key: bytes) -> None:
        self.pop(key, None)

    def set_changelog_offset(self, offset: int) -> None:
        self[b"\x00changelog-offset"] = str(offset).encode()

    def thread_keys(self) -> Iterator[bytes]:
        return iter([k for k in self if not k.startswith(b"\x00")])


def recover(changelog: list[tuple[bytes, bytes | None]]) -> Store:
    store = Store()
    for key, value in changelog:
        if value is None:
            store.delete(key)
        else:
            store.put(key, value)
    return store


def one_partition(seed: int) -> list[ContentEvent]:
    events = generate(ScenarioConfig(seed=seed, threads=400, agents=8))
    return [e for e in events if partition_for(e.thread_id.encode(), 2) == 0]


def run(
    events: list[ContentEvent], crashes: list[int], flush_every: int, rng: random.Random
) -> tuple[object, object]:
    """Process with crashes after the given numbers of flushes; returns (totals, backlog)."""
    processor = PartitionProcessor(SlaPolicy(), WINDOW, 7 * 86400.0)
    changelog: list[tuple[bytes, bytes | None]] = []
    local = Store()
    durable = load_partition(0, local)
    flushes = 0
    offset = 0
    pending = sorted(crashes)
    while offset < len(events):
        processor.apply(durable.state, durable.threads, offset, encode_event(events[offset]))
        offset += 1
        if offset % flush_every == 0 or offset == len(events):
            batch: FlushBatch = prepare_flush(durable)
            flushes += 1
            if pending and flushes == pending[0]:
                pending.pop(0)
                # Crash in the middle of writing this flush: a prefix reached Kafka.
                cut = rng.randrange(len(batch.records) + 1)
                changelog.extend(batch.records[:cut])
                local = recover(changelog)
                durable = load_partition(0, local)
                offset = durable.state.applied_offset + 1
                continue
            changelog.extend(batch.records)
            apply_locally(batch, local, durable.threads)
            finish_flush(durable, batch)
    processor.release_until(durable.state, durable.threads, float("inf"))
    return durable.state.totals, backlog(durable.state, 2e9)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_crash_anywhere_in_a_flush_changes_nothing(seed: int) -> None:
    rng = random.Random(seed)
    events = one_partition(seed)
    clean_totals, clean_backlog = run(events, [], flush_every=97, rng=rng)
    crashes = sorted(rng.sample(range(1, len(events) // 97), 4))
    totals, waiting = run(events, crashes, flush_every=97, rng=rng)
    assert totals == clean_totals
    assert waiting == clean_backlog
    expected = reference(events, WINDOW)
    assert sum(clean_totals.contents.values()) == sum(expected.contents.values())
    assert dict(clean_totals.agent_replies) == dict(expected.agent_replies)
    assert {k: v[0] for k, v in waiting.items()} == {
        k: v[0] for k, v in expected.backlog(2e9).items()
    }


def test_losing_the_whole_flush_loses_nothing() -> None:
    """A crash before any record of a flush is written resumes from the flush before."""
    rng = random.Random(9)
    events = one_partition(9)
    clean, _ = run(events, [], flush_every=50, rng=rng)

    class NoPrefix(random.Random):
        def randrange(self, *args: int, **kwargs: int) -> int:
            return 0

    totals, _ = run(events, [2, 3, 7], flush_every=50, rng=NoPrefix())
    assert totals == clean


def test_thread_cache_reads_unstored_states_before_the_store() -> None:
    store = Store()
    cache = ThreadCache(store, max_clean_entries=0)
    processor = PartitionProcessor(SlaPolicy(), WINDOW, 7 * 86400.0)
    durable = load_partition(0, store)
    events = one_partition(3)[:50]
    for offset, event in enumerate(events):
        processor.apply(durable.state, durable.threads, offset, encode_event(event))
    batch = prepare_flush(durable)
    thread_id = next(iter(batch.threads))
    # Not yet acknowledged, so not in the store: the cache still answers with it.
    assert store.get(thread_id.encode()) is None
    assert durable.threads.get(thread_id) is batch.threads[thread_id]
    apply_locally(batch, store, durable.threads)
    assert store.get(thread_id.encode()) is not None
    del cache
