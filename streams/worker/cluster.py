"""What every worker knows about the whole cluster: standings and channel figures.

Per-agent activity is partitioned by agent on ``engage.agent-activity``; the waiting runs of
every thread (for ``cleared_backlog``) are on the compacted ``engage.waiting-runs``; each
partition's channel figures are published by its owner on the compacted
``engage.partition-summaries`` (key = partition). Every worker reads *all* partitions of the
three topics (no consumer group, from the beginning) into a local replica, so any worker
answers the leaderboard, an agent's rank and the channels view for the whole cluster -- the
same answer from every worker once it has caught up (badges are a function of the records,
whatever order the topics are read in).

Every ``prune_every_seconds`` the replica folds detail no window needs into the totals: once
caught up, by the clock; while still reading a backlog (a cold start, a long catch-up), only
the days that every partition still behind has read a whole day past (its watermark, see
``_settled``), so memory follows the retained days, not the length of the backlog.

A worker's own activities and waiting runs are not read back (issue 10: that was ~10 % of
a busy worker's core). The pipeline tells the replica of each write before it sends it
(``writing_own``: the record values, by partition) and once it ended (``wrote_own``): the
replica then takes the items into the standings, and skips a record whose value it was told
of when it reads it (its offsets are not known before Kafka acknowledges, and the replica's
fetch often sees the records before the pipeline sees the acknowledgement). A write given up
(the partition moved) is taken in anyway and its values forgotten. Activities (a content id
once) and runs (a run's latest version) count once whatever the order, so a record read
before it was announced, or written twice by a retried flush, changes nothing.

``ClusterReplica`` is the I/O; ``Standings`` (the rules) and ``merge_channels`` are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.core.gamification.activity import AgentActivity, decode_activity
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.waiting import WaitingRun, decode_run
from streams.core.responses.channels import PartitionSummary, decode_summary

log = logging.getLogger(__name__)


class ClusterReplica:
    """Reads the activity and summary topics in full and keeps the cluster-wide view."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        activity_topic: str,
        summary_topic: str,
        waiting_topic: str,
        standings: Standings,
        prune_every_seconds: float = 60.0,
    ) -> None:
        self.prune_every = prune_every_seconds
        self.bootstrap_servers = bootstrap_servers
        self.activity_topic = activity_topic
        self.summary_topic = summary_topic
        self.waiting_topic = waiting_topic
        self.standings = standings
        self.summaries: dict[int, PartitionSummary] = {}
        self.undecodable = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._assigned: set[TopicPartition] = set()
        # The latest event time read from each activity and waiting-run partition.
        self._read_until: dict[TopicPartition, float] = {}
        # Values of this worker's own records not read yet (value -> how many), per partition.
        self._own: dict[TopicPartition, dict[bytes, int]] = {}
        self.own_taken = 0  # records taken from the pipeline instead of read back

    def writing_own(
        self, topic: str, partition: int, records: Sequence[tuple[bytes, bytes | None]]
    ) -> None:
        """This worker is about to write ``records`` to ``topic``/``partition``: skip them
        when read (``wrote_own`` takes their items in)."""
        pending = self._own.setdefault(TopicPartition(topic, partition), {})
        for _, value in records:
            if value is not None:
                pending[value] = pending.get(value, 0) + 1

    def wrote_own(
        self,
        topic: str,
        partition: int,
        records: Sequence[tuple[bytes, bytes | None]],
        items: Sequence[AgentActivity] | Sequence[WaitingRun],
        *,
        landed: bool,
    ) -> None:
        """The write of ``records`` (``items``, in order) ended: take the items in; when it
        did not land (given up), forget its values (a later write of them is read)."""
        if topic == self.activity_topic:
            for activity in items:
                assert isinstance(activity, AgentActivity)
                self.standings.add(activity)
        elif topic == self.waiting_topic:
            for run in items:
                assert isinstance(run, WaitingRun)
                self.standings.add_waiting_run(run)
        else:
            raise ValueError(f"not a topic of the replica's standings: {topic}")
        self.own_taken += len(items)
        if not landed:
            pending = self._own.get(TopicPartition(topic, partition), {})
            for _, value in records:
                if value is not None and value in pending:
                    pending[value] -= 1
                    if not pending[value]:
                        del pending[value]

    def _unread_own(self, tp: TopicPartition, records: Sequence[Any]) -> list[Any]:
        """``records`` without this worker's own (announced by ``writing_own``)."""
        pending = self._own.get(tp)
        if not pending:
            return list(records)
        kept = []
        for record in records:
            left = pending.get(record.value)
            if left is None:
                kept.append(record)
            elif left == 1:
                del pending[record.value]
            else:
                pending[record.value] = left - 1
        return kept

    @property
    def _topics(self) -> tuple[str, str, str]:
        return (self.activity_topic, self.waiting_topic, self.summary_topic)

    async def start(self) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A fetch answer and the records unpacked from it stay in memory until read:
            # 1 MiB a partition (aiokafka's default) and 8 MiB an answer keep that small.
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=8 * 1024 * 1024,
        )
        try:
            await consumer.start()
            if self._consumer is consumer:
                await self._assign_all()
        except KafkaError:
            if self._consumer is consumer:
                raise
            # stop() closed the client under a request: the worker is shutting down.
        if self._consumer is not consumer:
            return  # stopped while starting (the worker shut down): nothing to run
        self._task = asyncio.create_task(self._run(), name="cluster-replica")

    async def stop(self) -> None:
        # Let go of the consumer first: a start() still under way sees it gone at its next
        # check and returns without starting a reader on a consumer being stopped.
        consumer, self._consumer = self._consumer, None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if consumer is not None:
            await consumer.stop()

    async def _assign_all(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return  # stopped meanwhile
        # Only ever more: a broker that is just starting may answer without some topics.
        wanted = set(self._assigned)
        # The metadata of every topic: the client's own refresh asks only for the topics it
        # is assigned, so a topic created after we started would never show up.
        cluster = await consumer._client.fetch_all_metadata()
        for topic in self._topics:
            partitions = cluster.partitions_for_topic(topic) or set()
            wanted.update(TopicPartition(topic, p) for p in partitions)
        if wanted != self._assigned:
            new = wanted - self._assigned
            consumer.assign(sorted(wanted))
            if new:
                await consumer.seek_to_beginning(*new)
            self._assigned = wanted

    async def _settled(self) -> float | None:
        """The replica's watermark: the earliest, over the activity and waiting-run partitions
        still behind their end, of the latest event time read from each (``-inf`` when one
        of them has given nothing yet); ``None`` when every partition is read to its end."""
        consumer = self._consumer
        assert consumer is not None
        behind = []
        for tp in self._assigned:
            if tp.topic == self.summary_topic:
                continue
            end = consumer.highwater(tp)
            if end is None or await consumer.position(tp) < end:
                behind.append(self._read_until.get(tp, -math.inf))
        return min(behind, default=None)

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        rounds = 0
        last_prune = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, fetched in batches.items():
                if tp.topic == self.activity_topic:
                    records = self._unread_own(tp, fetched)
                    latest = self._read_until.get(tp, -math.inf)
                    for record in records:
                        try:
                            activity = decode_activity(record.value)
                        except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                            self.undecodable += 1
                            continue
                        self.standings.add(activity)
                        latest = max(latest, activity.event_time)
                    self._read_until[tp] = latest
                elif tp.topic == self.waiting_topic:
                    records = self._unread_own(tp, fetched)
                    latest = self._read_until.get(tp, -math.inf)
                    for record in records:
                        if record.value is None:
                            continue
                        try:
                            run = decode_run(record.value)
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            self.undecodable += 1
                            continue
                        self.standings.add_waiting_run(run)
                        latest = max(latest, run.since if run.until is None else run.until)
                    self._read_until[tp] = latest
                else:
                    for record in fetched:
                        if record.value is None:
                            continue
                        try:
                            summary = decode_summary(record.value)
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            self.undecodable += 1
                            continue
                        self.summaries[summary.partition] = summary
            if time.monotonic() - last_prune >= self.prune_every:
                # Fold per-activity detail that no window needs into the totals; while still
                # reading a backlog, only days that every partition has read well past. After
                # the batch is taken in: the consumer's positions already count it.
                self.standings.prune(time.time(), settled=await self._settled())
                last_prune = time.monotonic()
            rounds += 1
            complete = {tp.topic for tp in self._assigned} == set(self._topics)
            if not complete or rounds % 20 == 0:
                # Topics may gain partitions or appear after we started.
                try:
                    await self._assign_all()
                except KafkaError as exc:
                    # The broker is away (a restart): keep reading what we have, ask again.
                    log.info("cluster metadata unavailable, asking again later: %r", exc)
