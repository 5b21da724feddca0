"""Hand whole fetched batches of chosen topics to a handler, bypassing Faust's per-event path.

Faust spends ~200 us of framework time per event (drain loop, event objects, stream
iteration, per-write changelog). For ``engage.contents`` we want the batch as aiokafka
fetched it, so this module -- and only this module -- reaches into Faust internals:

- ``BatchConsumer.getmany`` takes the records of *batch topics* out of each fetch and awaits
  the registered handler with ``(partition, records)``; records of other topics go on through
  Faust as usual.
- ``BatchApp`` makes the transport build that consumer.
- ``local_partition`` finds one partition's database in a table's store (a private method of
  Faust's RocksDB store), for ``streams.worker.thread_store``.

Faust still subscribes to the batch topic (an agent is declared on it), assigns its
partitions, co-partitions tables with it, recovers their changelogs and seeks to the
committed offsets; the handler's owner commits offsets itself (``commit_offsets``).
Tested against the pinned faust-streaming version by ``tests/test_faust_batch.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.worker.thread_store import LocalPartition, MemoryPartition, RocksPartition

BatchHandler = Callable[[int, Sequence[Any]], Awaitable[None]]


class BatchConsumer(aiokafka_driver.Consumer):
    """A Faust consumer that hands batch-topic records to their handler, a batch at a time."""

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        handlers: Mapping[str, BatchHandler] = getattr(self.app, "batch_handlers", {})
        if not handlers:
            async for item in super().getmany(timeout):
                yield item
            return
        # As Faust's own getmany: this waits while the flow is stopped (rebalance, recovery).
        records, active_partitions = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # Same as Faust: fetched while a rebalance began; go back to committed offsets.
            await self.perform_seek()
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


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer hands batch topics to ``batch_handlers[topic]``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


async def commit_offsets(app: faust.App, offsets: Mapping[int, int], topic: str) -> None:
    """Commit ``partition -> next offset to read`` for ``topic`` in the app's consumer group."""
    consumer: Any = app.consumer  # the driver's Consumer: ``_commit`` is not on ConsumerT
    assignment = consumer.assignment()
    tps = {TP(topic, p): o for p, o in offsets.items() if TP(topic, p) in assignment}
    if tps:
        await consumer._commit(tps)


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
        return RocksPartition(store._db_for_partition(partition), store.offset_key)
    return MemoryPartition(store.data, partition, partitions)
