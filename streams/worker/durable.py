"""Durable per-partition state: the flush protocol that makes a crash harmless.

A flush of partition ``p`` writes, in this order, to partition ``p`` of the thread table's
changelog (one producer, idempotent, so the order holds):

1. the *partition record* (key ``\\x00partition:p``): the encoded ``PartitionState`` (totals,
   waiting index, watermark, ``applied_offset``) **and** every thread state dirtied since the
   previous flush -- one Kafka record, so it is atomic;
2. each dirtied thread's own record (key = thread id; a tombstone for a dropped thread).

Only after Kafka acknowledged all of it are the same records written to the local store and
the source offset committed. After a crash the changelog ends somewhere in a flush: the last
partition record then holds a complete, consistent state, so loading it *overlays* its
threads onto the table (``load_partition``) and marks them dirty so the next flush rewrites
them. Offsets at or below ``applied_offset`` are skipped by the processor: replays after a
crash change nothing. Counters exported to Prometheus come from ``snapshot`` (the state as
last flushed), so they never go back.

This module does the encoding and the bookkeeping; ``streams.worker.contents`` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from streams.core.responses.partition import (
    PartitionState,
    decode_partition_state,
    decode_thread_state,
    encode_partition_state,
    encode_thread_state,
)
from streams.worker.thread_store import LocalPartition, TakenThreads, ThreadCache, partition_key


class PartitionRecord(msgspec.Struct, array_like=True):
    """The changelog value under ``\\x00partition:p``: state + threads dirtied by that flush."""

    state: bytes
    threads: dict[str, bytes | None]


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(PartitionRecord)


@dataclass
class DurablePartition:
    """One owned partition: live state, its thread cache, and what was last made durable."""

    partition: int
    state: PartitionState
    threads: ThreadCache
    snapshot: PartitionState
    #: ``applied_offset`` of the latest flush started (it may still be in flight).
    started_offset: int

    @property
    def needs_flush(self) -> bool:
        return self.state.applied_offset != self.started_offset or self.threads.dirty_count > 0


@dataclass(frozen=True)
class FlushBatch:
    """What one flush writes: ``records`` in order, key -> value (None = tombstone)."""

    partition: int
    records: list[tuple[bytes, bytes | None]]
    state: bytes
    applied_offset: int
    threads: TakenThreads


def load_partition(
    partition: int, local: LocalPartition, cache_size: int = 200_000
) -> DurablePartition:
    """The partition as its last flush left it, with that flush's threads overlaid.

    ``cache_size``: clean thread states kept in memory (``ThreadCache``'s bound).
    """
    threads = ThreadCache(local, max_clean_entries=cache_size)
    raw = local.get(partition_key(partition))
    if raw is None:
        state = PartitionState()
        return DurablePartition(partition, state, threads, PartitionState(), started_offset=-1)
    record = _record_decoder.decode(raw)
    state = decode_partition_state(record.state)
    for thread_id, value in record.threads.items():
        # The thread records after this partition record may not have reached Kafka
        # before a crash: rewrite them from the partition record.
        if value is None:
            local.delete(thread_id.encode())
            threads.delete(thread_id)
        else:
            local.put(thread_id.encode(), value)
            threads.put(thread_id, decode_thread_state(value))
    snapshot = decode_partition_state(record.state)
    return DurablePartition(partition, state, threads, snapshot, state.applied_offset)


def prepare_flush(durable: DurablePartition) -> FlushBatch:
    """Encode the partition record and the dirty threads, in changelog order."""
    dirty = durable.threads.take_dirty()
    encoded: dict[str, bytes | None] = {
        thread_id: None if state is None else encode_thread_state(state)
        for thread_id, state in dirty.items()
    }
    state_bytes = encode_partition_state(durable.state)
    head = _record_encoder.encode(PartitionRecord(state_bytes, encoded))
    records: list[tuple[bytes, bytes | None]] = [(partition_key(durable.partition), head)]
    records.extend((thread_id.encode(), value) for thread_id, value in encoded.items())
    durable.started_offset = durable.state.applied_offset
    return FlushBatch(durable.partition, records, state_bytes, durable.state.applied_offset, dirty)


def apply_locally(batch: FlushBatch, local: LocalPartition, threads: ThreadCache) -> None:
    """Write an acknowledged flush to the local store (same records, same order)."""
    for key, value in batch.records:
        if value is None:
            local.delete(key)
        else:
            local.put(key, value)
    threads.stored(batch.threads)


def finish_flush(durable: DurablePartition, batch: FlushBatch) -> None:
    durable.snapshot = decode_partition_state(batch.state)
