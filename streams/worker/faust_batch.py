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
        if not handlers:
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
            handler = handlers.get(tp.topic)
            if handler is None:
                others[tp] = batch
                continue
            if active_partitions is not None and tp not in active_partitions:
                continue
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                # Rebalanced while we were busy: these records go back to their new owner.
                return
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


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer hands batch topics to ``batch_handlers[topic]``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

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
