"""The contents pipeline of one worker: batches in, durable partition state out.

For every owned partition of ``engage.contents`` this service feeds each fetched batch to the
``PartitionProcessor`` (the rules), and flushes the partition's state with the protocol in
``streams.worker.durable``: the agent activities it released (to ``engage.agent-activity``,
keyed by agent) and the waiting runs (to ``engage.waiting-runs``, keyed by run; the records
of one run in a flush merged to the greatest, ``merged_runs``) acknowledged, then the
partition record and the dirty threads acknowledged by the changelog, then the local store,
then the source offset commit. The activities and runs written are told to ``own`` before
and after (the leaderboard replica takes them without reading them back). A clock tick
releases reorder buffers of caught-up partitions, flushes idle ones and drops threads idle
past the horizon.

Kafka going away (a broker restart, a leader moving) never stops it: a flush whose records are
not acknowledged is sent again, whole and in order, until they are (a repeated record in the
changelog or the activity topic changes nothing: readers keep the last state of a key and
count each content once), and later flushes of the partition wait for it. A producer the
broker lost track of (``engage_streams.producers``) is replaced by a new one
(``health.producer_renewals``) and the write sent again with it. Offset commits go
one at a time with a deadline and are only a shortcut (a reader skips offsets at or below
``applied_offset``). ``KafkaWatchdog`` hears of every wait and failure and tells ``/readyz``.

It owns the I/O and the locking; it decides nothing about contact-center rules.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from engage_streams.partitioning import partition_for
from engage_streams.producers import close_quietly, needs_new_producer, sender_stopped
from streams.core.gamification.activity import AgentActivity, encode_activity
from streams.core.gamification.waiting import WaitingRun, encode_run, merged_runs
from streams.core.responses.partition import PartitionProcessor, PartitionState, UnreadableRecord
from streams.worker.durable import (
    DurablePartition,
    FlushBatch,
    apply_locally,
    finish_flush,
    load_partition,
    prepare_flush,
)
from streams.worker.faust_batch import commit_offsets, fetch_loop_age, highwater, local_partition
from streams.worker.health import WorkerHealth
from streams.worker.thread_store import LocalPartition
from streams.worker.watchdog import KafkaWatchdog

log = logging.getLogger(__name__)
T = TypeVar("T")


class OwnRecords(Protocol):
    """Told of every write of activities or waiting runs, before and after
    (``streams.worker.cluster.ClusterReplica``: it takes them without reading them back)."""

    def writing_own(
        self, topic: str, partition: int, records: Sequence[tuple[bytes, bytes | None]]
    ) -> None: ...

    def wrote_own(
        self,
        topic: str,
        partition: int,
        records: Sequence[tuple[bytes, bytes | None]],
        items: Sequence[AgentActivity] | Sequence[WaitingRun],
        *,
        landed: bool,
    ) -> None: ...


#: Flushes of one partition encoded and not yet acknowledged, at most: one being written and
#: one waiting for it, so that processing goes on meanwhile; more would only hold more
#: encoded copies of the states in memory.
FLUSHES_IN_FLIGHT = 2

#: Records applied between two yields to the event loop within one fetched batch (~50 ms of
#: work), so that ``/metrics``, ``/readyz`` and the API answer while a big batch is applied.
RECORDS_BETWEEN_YIELDS = 1000

#: How long a revoked partition's or a stopping worker's last flush may take.
LAST_FLUSH_PATIENCE_SECONDS = 20.0
#: Longest wait between two attempts of a flush that Kafka did not acknowledge.
MAX_RETRY_BACKOFF_SECONDS = 2.0


def _retriable(error: BaseException) -> bool:
    """Kafka may take it next time (the broker is away, a leader moves, a request timed out)."""
    if isinstance(error, KafkaTimeoutError | KafkaConnectionError | TimeoutError):
        return True
    return isinstance(error, KafkaError) and bool(error.retriable)


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
        waiting_topic: str,
        partitions: int,
        producer_factory: Callable[[], AIOKafkaProducer],
        prepare_topics: Callable[[], Awaitable[None]] | None = None,
        flush_interval_seconds: float = 1.0,
        idle_flush_seconds: float = 0.5,
        max_dirty_threads: int = 20_000,
        thread_cache_size: int = 200_000,
        expire_every_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
        health: WorkerHealth | None = None,
        commit_timeout_seconds: float = 10.0,
        own: OwnRecords | None = None,
    ) -> None:
        self.app = app
        self.table = table
        self.processor = processor
        self.topic = topic
        self.activity_topic = activity_topic
        self.waiting_topic = waiting_topic
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
        self.health = health if health is not None else WorkerHealth()
        self.watchdog = KafkaWatchdog(self.health)
        # Activities released but not yet taken by a flush, per partition.
        self._outbox: dict[int, list[AgentActivity]] = {}
        # Waiting runs opened or closed but not yet taken by a flush, per partition.
        self._runs_outbox: dict[int, list[WaitingRun]] = {}
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Flushes of each partition started and not complete (at most FLUSHES_IN_FLIGHT).
        self._flights: dict[int, list[asyncio.Task[None]]] = {}
        # Offsets to commit (partition -> next offset to read), one commit at a time.
        self._to_commit: dict[int, int] = {}
        self._committing: asyncio.Task[None] | None = None
        self.commit_timeout = commit_timeout_seconds
        self._probing: asyncio.Task[None] | None = None
        self._unwritable: set[int] = set()  # partitions whose local store refuses writes
        self._producer_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._activity_partitions: int | None = None
        self._waiting_partitions: int | None = None
        self._crashing: asyncio.Future[Any] | None = None
        self._lock = asyncio.Lock()
        self.unreadable_records = 0
        self.own = own

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._started_producer()

    async def stop(self) -> None:
        async with self._lock:
            for durable in list(self.owned.values()):
                await self._flush(durable, last=True)
                await self._drain(durable.partition, LAST_FLUSH_PATIENCE_SECONDS)
            self.owned.clear()
        for task in (self._committing, self._probing):
            if task is not None:
                task.cancel()
        if self.producer is not None:
            try:
                await asyncio.wait_for(self.producer.stop(), LAST_FLUSH_PATIENCE_SECONDS)
            except (KafkaError, TimeoutError) as exc:
                log.warning("producer did not stop cleanly: %r", exc)
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
                    await self._flush(durable, last=True)
                    await self._drain(partition, LAST_FLUSH_PATIENCE_SECONDS)
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
            runs = self._runs_outbox.setdefault(partition, [])
            for n, record in enumerate(records):
                if n and n % RECORDS_BETWEEN_YIELDS == 0:
                    # Let the loop answer scrapes and probes meanwhile: a 10,000-record batch
                    # takes ~0.5 s, and the state may be read (not changed) while we wait.
                    await asyncio.sleep(0)
                try:
                    released.extend(apply(state, threads, record.offset, record.value, runs=runs))
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
                self._outbox.setdefault(partition, []).extend(released)
            now = time.monotonic()
            full = threads.dirty_count >= self.max_dirty
            busy = None
            if full or now - self._last_flush.get(partition, 0.0) >= self.flush_interval:
                busy = await self._flush(durable)
        if busy is not None and full:
            # Kafka is slower than the rules: wait for it (outside the lock, so a revocation
            # or a stop goes on), then flush, so that a flush never carries more than
            # ``max_dirty_threads`` states and encoded flushes never pile up in memory.
            await asyncio.wait([busy])
            async with self._lock:
                if self.owned.get(partition) is durable:
                    await self._flush(durable)

    async def tick(self) -> None:
        """Clock work: release caught-up reorder buffers, flush, expire idle threads, commit,
        and tell the watchdog how consuming goes."""
        self._watch()
        now = self.clock()
        for partition in list(self.owned):
            async with self._lock:
                durable = self.owned.get(partition)
                if durable is None:
                    continue
                end = highwater(self.app, self.topic, partition)
                released = []
                if end is not None and durable.state.applied_offset + 1 >= end:
                    released = self.processor.release_until(
                        durable.state,
                        durable.threads,
                        now,
                        runs=self._runs_outbox.setdefault(partition, []),
                    )
                    if released:
                        self._outbox.setdefault(partition, []).extend(released)
                # Released responses are exported once durable: flush them at once; other
                # changes (volumes of new contents) at most every ``idle_flush`` seconds.
                since = time.monotonic() - self._last_flush.get(partition, 0.0)
                if durable.needs_flush and (released or since >= self.idle_flush):
                    await self._flush(durable)
            if now - self._last_expiry.setdefault(partition, now) >= self.expire_every:
                await self._expire(partition, now)
                self._last_expiry[partition] = now
        self._start_commit()

    def _watch(self) -> None:
        self.watchdog.check(
            rebalancing=bool(getattr(self.app, "rebalancing", False)),
            fetch_age=fetch_loop_age(self.app) if self.owned else None,
            positions={p: d.state.applied_offset for p, d in self.owned.items()},
            lags=self.lag(),
        )
        if self.watchdog.needs_probe() and (self._probing is None or self._probing.done()):
            self._probing = asyncio.create_task(self._probe(), name="kafka-probe")

    async def _probe(self) -> None:
        """Ask the cluster for its metadata: is Kafka there at all (no write said so lately)?"""
        producer = self.producer
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 5.0)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.watchdog.probe_failed(exc)
        else:
            self.watchdog.probe_ok()

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
        self._outbox.pop(partition, None)
        self._runs_outbox.pop(partition, None)
        self._to_commit.pop(partition, None)
        self._unwritable.discard(partition)
        if not self._unwritable:
            self.health.ready_again("state_unwritable")
        self._inflight.pop(partition, None)
        self._flights.pop(partition, None)
        self._last_expiry.pop(partition, None)
        self._local.pop(partition, None)
        self._last_flush.pop(partition, None)

    async def _activity_batches(
        self, producer: AIOKafkaProducer, activities: Sequence[AgentActivity]
    ) -> dict[int, tuple[list[tuple[bytes, bytes | None]], list[AgentActivity]]]:
        """Activities keyed by agent, grouped by partition (``_by_partition``)."""
        if self._activity_partitions is None:
            self._activity_partitions = len(await producer.partitions_for(self.activity_topic))
        return _by_partition(
            activities,
            lambda a: a.agent_id.encode(),
            encode_activity,
            self._activity_partitions,
        )

    async def _run_batches(
        self, producer: AIOKafkaProducer, runs: Sequence[WaitingRun]
    ) -> dict[int, tuple[list[tuple[bytes, bytes | None]], list[WaitingRun]]]:
        """Waiting runs keyed by run, grouped by partition: the records of one run stay in
        order (same key, same partition), so the compacted topic keeps its latest."""
        if self._waiting_partitions is None:
            self._waiting_partitions = len(await producer.partitions_for(self.waiting_topic))
        return _by_partition(runs, WaitingRun.record_key, encode_run, self._waiting_partitions)

    async def _flush(
        self, durable: DurablePartition, *, last: bool = False
    ) -> asyncio.Task[None] | None:
        """Start making the partition's state durable; caller holds the lock.

        The records are encoded now (the state goes on changing); writing them waits in a
        background task, so processing goes on while Kafka acknowledges; flushes of one
        partition are written in order, each after the previous one. With
        ``FLUSHES_IN_FLIGHT`` of them not acknowledged yet, no other is started (it would only
        hold one more encoded copy of the states in memory): the oldest is returned, and the
        next call takes everything changed meanwhile. ``last`` (revocation, stop): start it
        anyway, after the others.
        """
        partition = durable.partition
        flights = [t for t in self._flights.get(partition, ()) if not t.done()]
        self._flights[partition] = flights
        if len(flights) >= FLUSHES_IN_FLIGHT and not last:
            return flights[0]
        previous = self._inflight.get(partition)
        self._last_flush[partition] = time.monotonic()
        if (
            not durable.needs_flush
            and not self._outbox.get(partition)
            and not self._runs_outbox.get(partition)
        ):
            return None
        activities = self._outbox.pop(partition, [])
        runs = merged_runs(self._runs_outbox.pop(partition, []))
        batch = prepare_flush(durable)
        task = asyncio.create_task(
            self._write(durable, batch, activities, runs, previous),
            name=f"flush-{partition}",
        )
        task.add_done_callback(self._on_written)
        self._inflight[partition] = task
        flights.append(task)
        return None

    def _on_written(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # State could not be made durable: stop, so that a restart resumes from what was.
        log.error("flush failed, stopping the worker", exc_info=task.exception())
        crash = getattr(self.app, "crash", None)
        if crash is not None:
            self._crashing = asyncio.ensure_future(crash(task.exception()))

    async def _drain(self, partition: int, patience: float | None = None) -> None:
        """Wait until every flush started for ``partition`` is complete (at most ``patience``
        seconds: past that the partition resumes from its last durable state elsewhere)."""
        task = self._inflight.get(partition)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), patience)
        except TimeoutError:
            log.warning(
                "last flush of partition %d not acknowledged within %.0f s; its partition "
                "resumes from the last durable state",
                partition,
                patience,
            )

    async def _write(
        self,
        durable: DurablePartition,
        batch: FlushBatch,
        activities: list[AgentActivity],
        runs: list[WaitingRun],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await previous
        partition = batch.partition
        # The activities released up to this flush must be in Kafka before the state that
        # says they were released (a replay after a crash would not release them again).
        if activities:
            groups = await self._until_acknowledged(
                durable, "agent activity", lambda p: self._activity_batches(p, activities)
            )
            if groups is None:
                return
            topic = self.activity_topic
            for activity_partition, (records, taken) in groups.items():
                if not await self._write_own(durable, topic, activity_partition, records, taken):
                    return
        # Likewise the waiting runs (a replay would not open or close them again).
        if runs:
            run_groups = await self._until_acknowledged(
                durable, "waiting run", lambda p: self._run_batches(p, runs)
            )
            if run_groups is None:
                return
            topic = self.waiting_topic
            for run_partition, (records, taken_runs) in run_groups.items():
                if not await self._write_own(durable, topic, run_partition, records, taken_runs):
                    return
        changelog = self.table.changelog_topic.get_topic_name()
        sent = await self._until_acknowledged(
            durable,
            f"flush of partition {partition}",
            functools.partial(_send_all, changelog, partition, batch.records),
        )
        if sent is None:
            return  # revoked meanwhile: the new owner recovers from the changelog
        last_offset, in_last = sent
        if not await self._store_locally(durable, batch, last_offset + in_last - 1):
            return
        finish_flush(durable, batch)
        if batch.applied_offset >= 0:
            self._to_commit[partition] = batch.applied_offset + 1
            self._start_commit()

    async def _write_own(
        self,
        durable: DurablePartition,
        topic: str,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        items: Sequence[AgentActivity] | Sequence[WaitingRun],
    ) -> bool:
        """Write activities or waiting runs until acknowledged, telling ``own`` before and
        after; False when the partition stopped being ours meanwhile."""
        own = self.own
        if own is not None:
            own.writing_own(topic, partition, records)
        landed = False
        try:
            send = functools.partial(_send_all, topic, partition, records)
            what = "agent activity" if topic == self.activity_topic else "waiting run"
            landed = await self._until_acknowledged(durable, what, send) is not None
        finally:
            if own is not None:
                own.wrote_own(topic, partition, records, items, landed=landed)
        return landed

    async def _store_locally(
        self, durable: DurablePartition, batch: FlushBatch, changelog_offset: int
    ) -> bool:
        """Write an acknowledged flush to the local store, however long the disk refuses.

        The flush is in Kafka already, so nothing is lost meanwhile: the partition waits
        (its later flushes queue behind this one, nothing more is committed) and ``/readyz``
        says ``state_unwritable``. False when the partition stopped being ours meanwhile.
        """
        partition = batch.partition
        failures = 0
        while self.owned.get(partition) is durable:
            local = self._local[partition]
            try:
                apply_locally(batch, local, durable.threads)
                # The store's recovery resumes after the last changelog offset it applied.
                local.set_changelog_offset(changelog_offset)
            except Exception as exc:  # rocksdict raises plain Exception ("IO error: ...")
                failures += 1
                self._unwritable.add(partition)
                detail = " ".join(str(exc).split())[:200]
                self.health.not_ready("state_unwritable", f"partition {partition}: {detail}")
                if failures == 1:
                    log.error("state of partition %d cannot be written: %s", partition, detail)
                await asyncio.sleep(min(MAX_RETRY_BACKOFF_SECONDS, 0.25 * failures))
                try:
                    local.reopen()  # RocksDB refuses every write after an I/O error
                except Exception as reopen_error:
                    log.info("reopening partition %d's state failed: %s", partition, reopen_error)
                continue
            if failures:
                log.info("state of partition %d written after %d failures", partition, failures)
                self._unwritable.discard(partition)
                if not self._unwritable:
                    self.health.ready_again("state_unwritable")
            return True
        return False

    async def _until_acknowledged(
        self,
        durable: DurablePartition,
        what: str,
        attempt: Callable[[AIOKafkaProducer], Awaitable[T]],
    ) -> T | None:
        """``attempt(producer)`` again and again until Kafka takes it, or None when the
        partition stopped being ours meanwhile. Errors Kafka may get over are retried with
        back-off (and told to the watchdog); any other error is raised."""
        ticket = self.watchdog.write_started(what)
        failures = 0
        try:
            while self.owned.get(durable.partition) is durable:
                producer: AIOKafkaProducer | None = None
                try:
                    producer = await self._started_producer()
                    result = await attempt(producer)
                except Exception as exc:
                    lost = needs_new_producer(exc) or sender_stopped(producer)
                    if producer is not None and lost:
                        self.replace_producer(producer)
                    elif not _retriable(exc):
                        raise
                    failures += 1
                    self.watchdog.write_failed(what, exc)
                    log.warning(
                        "%s not acknowledged (attempt %d): %r; trying again", what, failures, exc
                    )
                    await asyncio.sleep(min(MAX_RETRY_BACKOFF_SECONDS, 0.1 * 2**failures))
                    continue
                self.watchdog.write_done(ticket)
                if failures:
                    log.info("%s acknowledged after %d failed attempts", what, failures)
                return result
            return None
        finally:
            self.watchdog.write_abandoned(ticket)

    def _start_commit(self) -> None:
        if self._to_commit and (self._committing is None or self._committing.done()):
            self._committing = asyncio.create_task(self._commit(), name="offset-commit")

    async def _commit(self) -> None:
        """Commit the latest flushed offsets of every partition, one request at a time."""
        while self._to_commit:
            offsets, self._to_commit = self._to_commit, {}
            try:
                await commit_offsets(self.app, offsets, self.topic, self.commit_timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                # Only a shortcut: a later reader skips offsets <= applied_offset anyway.
                self.watchdog.commit_failed(exc)
                log.info("offset commit failed partitions=%s: %r", sorted(offsets), exc)
                for partition, offset in offsets.items():
                    if partition in self.owned:
                        self._to_commit.setdefault(partition, offset)
                return  # the next tick tries again
            self.watchdog.commit_ok()

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
                    durable.state,
                    durable.threads,
                    keys[start : start + 5000],
                    now,
                    runs=self._runs_outbox.setdefault(partition, []),
                )  # their runs close with the next flush, which carries the expiry
                if dropped:
                    log.info("idle threads dropped partition=%d count=%d", partition, dropped)
            await asyncio.sleep(0)

    def replace_producer(self, broken: AIOKafkaProducer) -> None:
        """The broker lost track of ``broken``: close it; the next write starts a new one."""
        if self.producer is not broken:
            return  # replaced already (several writes fail together)
        self.producer = None
        self.health.producer_renewals += 1
        log.warning("Kafka producer replaced (renewals=%d)", self.health.producer_renewals)
        closing = asyncio.create_task(close_quietly(broken), name="producer-close")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

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


def _by_partition(
    items: Sequence[T],
    key_of: Callable[[T], bytes],
    encode: Callable[[T], bytes],
    partitions: int,
) -> dict[int, tuple[list[tuple[bytes, bytes | None]], list[T]]]:
    """``items`` grouped by the partition the default partitioner picks for their key
    (without its per-record cost), in order: each partition's records and their items."""
    by_partition: dict[int, tuple[list[tuple[bytes, bytes | None]], list[T]]] = {}
    for item in items:
        key = key_of(item)
        group = by_partition.get(partition := partition_for(key, partitions))
        if group is None:
            group = by_partition[partition] = ([], [])
        group[0].append((key, encode(item)))
        group[1].append(item)
    return by_partition


async def _send_all(
    topic: str,
    partition: int,
    records: Sequence[tuple[bytes, bytes | None]],
    producer: AIOKafkaProducer,
) -> tuple[int, int]:
    """Send ``records`` in order and wait for all of them: (base offset of the last record
    batch, records in it). A failure of any batch fails the whole (it is sent again whole)."""
    futures, in_last = await send_in_batches(producer, topic, partition, records)
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return int(results[-1].offset), in_last  # type: ignore[union-attr]


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
