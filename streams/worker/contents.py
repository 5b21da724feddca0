"""The contents pipeline of one worker: batches in, durable partition state out.

For every owned partition of ``engage.contents`` this service feeds each fetched batch to the
``PartitionProcessor`` (the rules), publishes the released agent activities to
``engage.agent-activity`` (keyed by agent), and flushes the partition's state with the
protocol in ``streams.worker.durable``: activities acknowledged, then the partition record and the
dirty threads acknowledged by the changelog, then the local store, then the source offset
commit. A clock tick releases reorder buffers of caught-up partitions, flushes idle ones and
drops threads idle past the horizon.

It owns the I/O and the locking; it decides nothing about contact-center rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from engage_streams.partitioning import partition_for
from streams.core.gamification.activity import AgentActivity, encode_activity
from streams.core.responses.partition import PartitionProcessor, PartitionState, UnreadableRecord
from streams.worker.durable import (
    DurablePartition,
    FlushBatch,
    apply_locally,
    finish_flush,
    load_partition,
    prepare_flush,
)
from streams.worker.faust_batch import commit_offsets, highwater, local_partition
from streams.worker.thread_store import LocalPartition

log = logging.getLogger(__name__)


class ContentsPipeline:
    """Processes the owned partitions of the contents topic; see the module docstring."""

    def __init__(
        self,
        *,
        app: Any,
        table: Any,
        processor: PartitionProcessor,
        topic: str,
        activity_topic: str,
        partitions: int,
        producer_factory: Callable[[], AIOKafkaProducer],
        prepare_topics: Callable[[], Awaitable[None]] | None = None,
        flush_interval_seconds: float = 1.0,
        idle_flush_seconds: float = 0.5,
        max_dirty_threads: int = 20_000,
        thread_cache_size: int = 200_000,
        expire_every_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.table = table
        self.processor = processor
        self.topic = topic
        self.activity_topic = activity_topic
        self.partitions = partitions
        self._producer_factory = producer_factory
        self._prepare_topics = prepare_topics
        self.producer: AIOKafkaProducer | None = None
        self.flush_interval = flush_interval_seconds
        self.idle_flush = idle_flush_seconds
        self.max_dirty = max_dirty_threads
        self.thread_cache_size = thread_cache_size
        self.expire_every = expire_every_seconds
        self.clock = clock
        self.owned: dict[int, DurablePartition] = {}
        self._local: dict[int, LocalPartition] = {}
        self._last_flush: dict[int, float] = {}
        self._last_expiry: dict[int, float] = {}
        self._pending_sends: list[asyncio.Future[Any]] = []
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._producer_lock = asyncio.Lock()
        self._activity_partitions: int | None = None
        self._crashing: asyncio.Future[Any] | None = None
        self._lock = asyncio.Lock()
        self.unreadable_records = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._started_producer()

    async def stop(self) -> None:
        async with self._lock:
            for durable in list(self.owned.values()):
                await self._flush(durable)
                await self._drain(durable.partition)
            self.owned.clear()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def on_assigned(self, partitions: set[int]) -> None:
        """Load the state of newly owned partitions (called once their table is recovered)."""
        async with self._lock:
            for partition in sorted(partitions):
                if partition not in self.owned:
                    self._load(partition)

    async def on_revoked(self, partitions: set[int]) -> None:
        """Make what we have durable, then forget the partitions (the new owner resumes)."""
        async with self._lock:
            for partition in sorted(partitions):
                durable = self.owned.get(partition)
                if durable is None:
                    continue
                try:
                    await self._flush(durable)
                    await self._drain(partition)
                except Exception:
                    log.exception("flush of revoked partition %d failed", partition)
                self._forget(partition)

    # -- the hot path ----------------------------------------------------------------------

    async def on_batch(self, partition: int, records: Sequence[Any]) -> None:
        """One fetched batch of one partition (aiokafka ConsumerRecords, in offset order)."""
        async with self._lock:
            durable = self.owned.get(partition) or self._load(partition)
            state, threads = durable.state, durable.threads
            apply = self.processor.apply
            released: list[AgentActivity] = []
            for record in records:
                try:
                    released.extend(apply(state, threads, record.offset, record.value))
                except UnreadableRecord as exc:
                    self.unreadable_records += 1
                    log.warning(
                        "unreadable record skipped topic=%s partition=%d offset=%d reason=%s",
                        self.topic,
                        partition,
                        record.offset,
                        exc,
                    )
            if released:
                await self._publish(released)
            now = time.monotonic()
            if (
                threads.dirty_count >= self.max_dirty
                or now - self._last_flush.get(partition, 0.0) >= self.flush_interval
            ):
                await self._flush(durable)

    async def tick(self) -> None:
        """Clock work: release caught-up reorder buffers, flush, expire idle threads."""
        now = self.clock()
        for partition in list(self.owned):
            async with self._lock:
                durable = self.owned.get(partition)
                if durable is None:
                    continue
                end = highwater(self.app, self.topic, partition)
                released = []
                if end is not None and durable.state.applied_offset + 1 >= end:
                    released = self.processor.release_until(durable.state, durable.threads, now)
                    if released:
                        await self._publish(released)
                # Released responses are exported once durable: flush them at once; other
                # changes (volumes of new contents) at most every ``idle_flush`` seconds.
                since = time.monotonic() - self._last_flush.get(partition, 0.0)
                if durable.needs_flush and (released or since >= self.idle_flush):
                    await self._flush(durable)
            if now - self._last_expiry.setdefault(partition, now) >= self.expire_every:
                await self._expire(partition, now)
                self._last_expiry[partition] = now

    # -- views for exporters ---------------------------------------------------------------

    def snapshots(self) -> Mapping[int, PartitionState]:
        """The state of each owned partition as last made durable."""
        return {p: d.snapshot for p, d in self.owned.items()}

    def lag(self) -> dict[int, int]:
        """Messages not yet processed, per owned partition (when the end offset is known)."""
        lags: dict[int, int] = {}
        for partition, durable in self.owned.items():
            end = highwater(self.app, self.topic, partition)
            if end is not None:
                lags[partition] = max(0, end - (durable.state.applied_offset + 1))
        return lags

    # -- internals -------------------------------------------------------------------------

    def _load(self, partition: int) -> DurablePartition:
        local = local_partition(self.table.data, partition, self.partitions)
        durable = load_partition(partition, local, self.thread_cache_size)
        self._local[partition] = local
        self.owned[partition] = durable
        self._last_flush[partition] = time.monotonic()
        log.info(
            "partition loaded topic=%s partition=%d applied_offset=%d",
            self.topic,
            partition,
            durable.state.applied_offset,
        )
        return durable

    def _forget(self, partition: int) -> None:
        self.owned.pop(partition, None)
        self._inflight.pop(partition, None)
        self._last_expiry.pop(partition, None)
        self._local.pop(partition, None)
        self._last_flush.pop(partition, None)

    async def _publish(self, activities: Sequence[AgentActivity]) -> None:
        """Send activities keyed by agent, one record batch per activity partition.

        Same partition as the default partitioner would pick, without its per-record cost.
        """
        producer = await self._started_producer()
        if self._activity_partitions is None:
            self._activity_partitions = len(await producer.partitions_for(self.activity_topic))
        partitions = self._activity_partitions
        by_partition: dict[int, list[AgentActivity]] = {}
        for activity in activities:
            key = activity.agent_id.encode()
            partition = partition_for(key, partitions)
            by_partition.setdefault(partition, []).append(activity)
        for partition, group in by_partition.items():
            records = [(a.agent_id.encode(), encode_activity(a)) for a in group]
            futures, _ = await send_in_batches(producer, self.activity_topic, partition, records)
            self._pending_sends.extend(futures)

    async def _flush(self, durable: DurablePartition) -> None:
        """Start making the partition's state durable; caller holds the lock.

        The records are encoded now (the state goes on changing); writing them waits in a
        background task, so processing goes on while Kafka acknowledges. Flushes of one
        partition complete in order: each waits for the previous one first.
        """
        producer = await self._started_producer()
        partition = durable.partition
        self._last_flush[partition] = time.monotonic()
        if not durable.needs_flush:
            return
        previous = self._inflight.get(partition)
        activities, self._pending_sends = self._pending_sends, []
        batch = prepare_flush(durable)
        task = asyncio.create_task(
            self._write(producer, durable, batch, activities, previous),
            name=f"flush-{partition}",
        )
        task.add_done_callback(self._on_written)
        self._inflight[partition] = task

    def _on_written(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # State could not be made durable: stop, so that a restart resumes from what was.
        log.error("flush failed, stopping the worker", exc_info=task.exception())
        crash = getattr(self.app, "crash", None)
        if crash is not None:
            self._crashing = asyncio.ensure_future(crash(task.exception()))

    async def _drain(self, partition: int) -> None:
        """Wait until every flush started for ``partition`` is complete."""
        task = self._inflight.get(partition)
        if task is not None:
            await task

    async def _write(
        self,
        producer: AIOKafkaProducer,
        durable: DurablePartition,
        batch: FlushBatch,
        activities: list[asyncio.Future[Any]],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await previous
        # The activities released up to this flush must be in Kafka before the state that
        # says they were released (a replay after a crash would not release them again).
        if activities:
            await asyncio.gather(*activities)
        changelog = self.table.changelog_topic.get_topic_name()
        futures, in_last = await send_in_batches(
            producer, changelog, batch.partition, batch.records
        )
        results = await asyncio.gather(*futures)
        if self.owned.get(batch.partition) is not durable:
            return  # revoked meanwhile: the new owner recovers from the changelog
        apply_locally(batch, self._local[batch.partition], durable.threads)
        # The store's recovery resumes after the last changelog offset it has applied.
        self._local[batch.partition].set_changelog_offset(int(results[-1].offset) + in_last - 1)
        finish_flush(durable, batch)
        if batch.applied_offset >= 0:
            try:
                await commit_offsets(
                    self.app, {batch.partition: batch.applied_offset + 1}, self.topic
                )
            except Exception as exc:
                # Only a shortcut: a later reader skips offsets <= applied_offset anyway.
                log.info("offset commit skipped partition=%d: %r", batch.partition, exc)

    async def _expire(self, partition: int, now: float) -> None:
        local = self._local.get(partition)
        if local is None:
            return
        keys = [key.decode() for key in local.thread_keys()]
        for start in range(0, len(keys), 5000):
            async with self._lock:
                durable = self.owned.get(partition)
                if durable is None:
                    return
                dropped = self.processor.expire_idle(
                    durable.state, durable.threads, keys[start : start + 5000], now
                )
                if dropped:
                    log.info("idle threads dropped partition=%d count=%d", partition, dropped)
            await asyncio.sleep(0)

    async def _started_producer(self) -> AIOKafkaProducer:
        # Batches can arrive before the app's services start (right after recovery).
        async with self._producer_lock:
            if self.producer is None:
                if self._prepare_topics is not None:
                    await self._prepare_topics()
                producer = self._producer_factory()
                await producer.start()
                self.producer = producer
            return self.producer


async def send_in_batches(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: Sequence[tuple[bytes, bytes | None]],
) -> tuple[list[asyncio.Future[Any]], int]:
    """Send ``records`` in order to one partition as few record batches as fit.

    Returns the batches' delivery futures (each resolves to the batch's base offset) and the
    number of records in the last batch. Far cheaper than ``send()`` per record.
    """
    futures: list[asyncio.Future[Any]] = []
    builder = producer.create_batch()
    in_builder = 0
    for key, value in records:
        if builder.append(key=key, value=value, timestamp=None) is None:
            builder.close()
            futures.append(await producer.send_batch(builder, topic, partition=partition))
            builder = producer.create_batch()
            builder.append(key=key, value=value, timestamp=None)
            in_builder = 0
        in_builder += 1
    builder.close()
    futures.append(await producer.send_batch(builder, topic, partition=partition))
    return futures, in_builder
