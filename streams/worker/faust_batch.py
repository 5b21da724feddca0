"""Hand whole fetched batches of chosen topics to a handler, bypassing Faust's per-event path.

Faust spends ~200 us of framework time per event (drain loop, event objects, stream
iteration, per-write changelog). For ``engage.contents`` we want the batch as aiokafka
fetched it, so this module -- and only this module -- reaches into Faust internals:

- ``BatchConsumer.getmany`` takes the records of *batch topics* out of each fetch and awaits
  the registered handler with ``(partition, records)``; records of other topics go on through
  Faust as usual.
- ``BatchApp`` makes the transport build that consumer.
- Faust's own liveness checks of its streams (``verify_event_path``: "Stream has not started
  processing", logged as an ERROR every few minutes) are left out for batch topics: their
  records never pass through a Faust stream. ``streams.worker.watchdog`` watches them instead.
- ``local_partition`` finds one partition's database in a table's store (a private method of
  Faust's RocksDB store), for ``streams.worker.thread_store``.
- ``commit_offsets`` commits on the consumer's own event loop, with a deadline, instead of
  through Faust's consumer thread: Faust's ``_commit`` crashes the consumer thread on any
  commit error, and a commit waiting for a broker that is down occupies one of the two
  workers of that thread's method queue -- two of them and ``getmany`` never runs again
  (the worker goes deaf after a broker restart).
- ``BatchApp.restore_in_bulk(table)``: during recovery (and for standby partitions) the
  table's changelog records are written to its store a fetched batch at a time, one RocksDB
  ``WriteBatch`` each (raw bytes, as Faust's own ``apply_changelog_batch`` writes them),
  instead of going one by one through Faust's event path; Faust's recovery is told the new
  offsets and, at the highwater, that it is done.
- ``BatchApp`` starts its registered web server (``app.web_server``) before the tables are
  recovered, so ``/healthz`` answers during a long recovery (Faust starts it after).
- ``RecoveryWatch`` reads how far the current recovery is (highwaters and offsets of
  ``app.tables.recovery``), for ``/readyz`` and ``engage_worker_recovery_progress_ratio``.

Faust still subscribes to the batch topic (an agent is declared on it), assigns its
partitions, co-partitions tables with it, recovers their changelogs and seeks to the
committed offsets; the handler's owner commits offsets itself (``commit_offsets``).
Partitions can move at any moment: a seek or commit that finds a partition no longer
assigned (``IllegalStateError``) is left to the rebalance that moved it. Tested against the
pinned faust-streaming version by ``tests/streams/worker/test_faust_batch.py``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import OffsetAndMetadata
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.worker.thread_store import LocalPartition, MemoryPartition, RocksPartition

log = logging.getLogger(__name__)

BatchHandler = Callable[[int, Sequence[Any]], Awaitable[None]]


class BatchConsumer(aiokafka_driver.Consumer):
    """A Faust consumer that hands batch-topic records to their handler, a batch at a time.

    ``fetched_at`` is when the fetch loop last came back from Kafka (monotonic seconds): the
    loop asks every second, so an old value means the worker is not consuming.
    """

    fetched_at: float | None = None

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        handlers: Mapping[str, BatchHandler] = getattr(self.app, "batch_handlers", {})
        restorers: Mapping[str, ChangelogRestorer] = getattr(self.app, "bulk_restorers", {})
        if not handlers and not restorers:
            async for item in super().getmany(timeout):
                yield item
            return
        # As Faust's own getmany: this waits while the flow is stopped (rebalance, recovery).
        records, active_partitions = await self._wait_next_records(timeout)
        self.fetched_at = time.monotonic()
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # Same as Faust: fetched while a rebalance began; go back to committed offsets.
            try:
                await self.perform_seek()
            except IllegalStateError as exc:
                # The partitions moved again meanwhile; the rebalance that moved them seeks.
                log.info("seek to committed offsets skipped (partitions moved): %s", exc)
            return
        generation_id = self.app.consumer_generation_id
        others: dict[TP, Any] = {}
        for tp, batch in records.items():
            restorer = restorers.get(tp.topic)
            handler = handlers.get(tp.topic)
            if restorer is None and handler is None:
                others[tp] = batch
                continue
            if active_partitions is not None and tp not in active_partitions:
                continue
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                # Rebalanced while we were busy: these records go back to their new owner.
                return
            if restorer is not None:
                restorer.restore(tp, batch)
            elif handler is not None:
                await handler(tp.partition, batch)
        if not others or not self.flow_active:
            return
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(others):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if active_partitions is None or tp in active_partitions:
                yield tp, to_message(tp, record)

    def verify_event_path(self, now: float, tp: TP) -> None:
        if tp.topic in getattr(self.app, "batch_handlers", {}):
            return None  # no Faust stream reads it (see the module docstring)
        return super().verify_event_path(now, tp)


class ChangelogRestorer:
    """Writes a table's changelog records into its store a fetched batch at a time.

    Does what Faust's ``Recovery._slurp_changelogs`` + ``Store.apply_changelog_batch`` do per
    event: skip offsets already applied, write key/value (``None`` = delete) and the store's
    persisted changelog offset -- here in one RocksDB ``WriteBatch`` per fetched batch, so a
    crash in the middle resumes after the last batch written -- and advance the recovery's
    offsets; when the active partitions reach their highwater, end the recovery as Faust
    does (``_maybe_signal_recovery_end``).
    """

    def __init__(self, app: faust.App, table: Any) -> None:
        self.app = app
        self.table = table
        self.records_restored = 0

    def restore(self, tp: TP, records: Sequence[Any]) -> None:
        recovery: Any = getattr(self.app.tables, "recovery")  # noqa: B009 -- not on TableManagerT
        if tp in recovery.active_tps:
            offsets = recovery.active_offsets
            received_at = recovery._active_events_received_at
        elif tp in recovery.standby_tps:
            offsets = recovery.standby_offsets
            received_at = recovery._standby_events_received_at
        else:
            return  # not ours (any more): Faust would only warn about it
        seen = offsets.get(tp)
        fresh = [r for r in records if seen is None or r.offset > seen]
        if not fresh:
            return
        watch: RecoveryWatch | None = getattr(self.app, "recovery_watch", None)
        if watch is not None:
            watch.observe()  # the progress baseline, before these records count as restored
        last = fresh[-1].offset
        write_changelog_batch(self.table.data, tp.partition, fresh, last)
        offsets[tp] = last
        now = time.monotonic()
        received_at[tp] = now
        recovery._last_flush_at = now
        self.records_restored += len(fresh)
        if recovery.in_recovery and not recovery.need_recovery():
            recovery.flush_buffers()
            recovery._set_recovery_ended()
            recovery.signal_recovery_end.set()
        if watch is not None:
            watch.observe()  # how far now (None once the recovery has ended)


def write_changelog_batch(store: Any, partition: int, records: Sequence[Any], last: int) -> None:
    """Write changelog records (raw key/value, ``None`` = delete) up to offset ``last``."""
    if hasattr(store, "_db_for_partition"):
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        for record in records:
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
        batch.put(store.offset_key, str(last).encode())
        store._db_for_partition(partition).write(batch)
        return
    data = store.data  # memory store: one dict; it has no persisted offset
    for record in records:
        if record.value is None:
            data.pop(record.key, None)
        else:
            data[record.key] = record.value


@dataclass(frozen=True)
class RecoveryProgress:
    """How far the current recovery of the app's tables is (active partitions only)."""

    restored: int
    to_restore: int
    partitions: int

    @property
    def ratio(self) -> float:
        if self.partitions == 0:
            return 0.0  # the highwaters are not known yet
        return 1.0 if self.to_restore <= 0 else min(1.0, self.restored / self.to_restore)


class RecoveryWatch:
    """Reads Faust's recovery (highwaters, offsets) as records restored / records to restore.

    The records to restore of a partition are counted from the first time this watch sees it
    in a recovery (``observe`` is called before and after each restored batch and by a timer).
    Each observation goes to ``listener`` when one is set, so a report made from the restore
    itself does not wait for the next timer: a restore that lasts less than a timer period
    is still seen.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.listener: Callable[[RecoveryProgress | None], None] | None = None
        self._started_at: float | None = None
        self._baseline: dict[TP, int] = {}

    def observe(self) -> RecoveryProgress | None:
        """The progress of the recovery under way, or None when none is."""
        progress = self._progress()
        if self.listener is not None:
            self.listener(progress)
        return progress

    def _progress(self) -> RecoveryProgress | None:
        recovery: Any = getattr(self.app.tables, "recovery")  # noqa: B009 -- not on TableManagerT
        if not recovery.in_recovery:
            self._started_at = None
            self._baseline = {}
            return None
        started_at = recovery._recovery_started_at
        if started_at != self._started_at:
            self._started_at = started_at
            self._baseline = {}
        remaining = {
            tp: max(0, int(n))
            for tp, n in recovery.active_remaining().items()
            if tp in recovery.active_tps
        }
        baseline = self._baseline
        for tp, n in remaining.items():
            baseline.setdefault(tp, n)
        to_restore = sum(baseline.get(tp, 0) for tp in remaining)
        restored = sum(max(0, baseline[tp] - n) for tp, n in remaining.items())
        return RecoveryProgress(restored, to_restore, len(remaining))


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer hands batch topics to ``batch_handlers[topic]``, restores
    the tables given to ``restore_in_bulk`` a batch at a time, and starts its web server
    before recovery."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.bulk_restorers: dict[str, ChangelogRestorer] = {}
        self.recovery_watch = RecoveryWatch(self)

    def restore_in_bulk(self, table: Any) -> ChangelogRestorer:
        """Restore ``table`` (raw bytes keys and values) from its changelog in bulk."""
        restorer = ChangelogRestorer(self, table)
        self.bulk_restorers[table.changelog_topic.get_topic_name()] = restorer
        return restorer

    async def on_start(self) -> None:
        await super().on_start()
        # Faust starts the web server once the tables are recovered (on_started): a worker
        # restoring a large changelog would answer nothing, not even its liveness probe.
        service = self._web_server_service
        if (
            service is not None
            and self._web_server_service_instance is None
            and self.boot_strategy._should_enable_web()
        ):
            self._web_server_service_instance = await self.on_init_extra_service(service)

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


async def commit_offsets(
    app: faust.App, offsets: Mapping[int, int], topic: str, within_seconds: float = 10.0
) -> None:
    """Commit ``partition -> next offset to read`` for ``topic`` in the app's consumer group.

    Runs on the consumer thread's event loop (not its method queue) and gives up after
    ``within_seconds`` (``TimeoutError``); Kafka's refusals (``KafkaError``) are raised to
    the caller, never turned into a crash. Partitions not assigned any more are left out.
    """
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._ensure_consumer()  # the aiokafka consumer, owned by that thread

    async def commit_assigned() -> None:
        assigned = consumer.assignment()
        wanted = {
            TopicPartition(topic, p): OffsetAndMetadata(o, "")
            for p, o in offsets.items()
            if TopicPartition(topic, p) in assigned
        }
        if wanted:
            await consumer.commit(wanted)

    future = asyncio.run_coroutine_threadsafe(commit_assigned(), thread.thread_loop)
    try:
        await asyncio.wait_for(asyncio.wrap_future(future), within_seconds)
    finally:
        future.cancel()  # a commit that timed out stops retrying in the consumer's loop


def fetch_loop_age(app: faust.App) -> float | None:
    """Seconds since the fetch loop last came back from Kafka (None before the first)."""
    fetched_at = getattr(app.consumer, "fetched_at", None)
    return None if fetched_at is None else time.monotonic() - fetched_at


def highwater(app: faust.App, topic: str, partition: int) -> int | None:
    """The partition's end offset as last fetched, or None before the first fetch."""
    try:
        value = app.consumer.highwater(TP(topic, partition))
    except Exception:
        return None
    return None if value is None else int(value)


def local_partition(store: Any, partition: int, partitions: int) -> LocalPartition:
    """The key/value view of ``partition`` in a Faust table store (RocksDB or memory)."""
    if hasattr(store, "_db_for_partition"):

        def opener() -> Any:
            return _reopen(store, partition)

        return RocksPartition(store._db_for_partition(partition), store.offset_key, opener)
    return MemoryPartition(store.data, partition, partitions)


#: Free space a partition's filesystem needs before its RocksDB is opened again.
REOPEN_FREE_BYTES = 16 * 1024 * 1024


def _reopen(store: Any, partition: int) -> Any:
    """One partition's RocksDB closed and opened again, or None while its filesystem is still
    full (the old handle is kept then: RocksDB still reads after a write error)."""
    path = Path(store.partition_path(partition))
    if shutil.disk_usage(path if path.exists() else path.parent).free < REOPEN_FREE_BYTES:
        return None
    old = store._dbs.pop(partition, None)
    if old is not None:
        try:
            old.close()
        except Exception as exc:  # rocksdict raises plain Exception ("IO error: ...")
            log.info("closing partition %d's RocksDB after an error: %s", partition, exc)
        del old
    return store._db_for_partition(partition)
