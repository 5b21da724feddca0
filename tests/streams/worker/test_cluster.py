"""The cluster replica: topics that appear after the worker started, its own records.

First the replica alone (real broker): a topic created after it started is found, and a
backlog of weeks is pruned while it is read without changing the totals. Then a
whole worker: started on a broker where none of its topics exist yet, it creates the contents
topic and the side topics itself, and ``GET /api/v1/channels`` must list the channels of
the traffic that follows, without a restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from devkit.broker import LocalKafka
from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from simulator.scenario import ScenarioConfig, generate
from streams.core.gamification.activity import AgentActivity, encode_activity
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import WaitingRun, encode_run
from streams.core.responses.channels import PartitionSummary, encode_summary
from streams.worker.cluster import ClusterReplica
from streams.worker.contents import _send_all
from tests.plugins.topics import end_offsets, produce
from tests.plugins.waiting import wait_for
from tests.plugins.workers import WorkerProcess, load_scenario, worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def test_a_fresh_cluster_lists_its_channels_without_a_restart(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    suffix = kafka_settings.app_id.rsplit("-", 1)[-1]
    settings = worker_settings(
        replace(
            kafka_settings,
            activity_topic=f"engage.agent-activity.{suffix}",
            summary_topic=f"engage.partition-summaries.{suffix}",
        ),
        tmp_path / "w1",
    )
    worker = WorkerProcess(settings, tmp_path / "w1.log")
    worker.start()
    try:
        # The worker creates every topic itself; nothing existed before it started.
        for topic in (
            settings.topic,
            settings.summary_topic,
            settings.activity_topic,
            settings.waiting_topic,
        ):
            asyncio.run(end_offsets(settings.kafka_bootstrap_servers, topic, timeout=120))
        wait_for(lambda: worker.scrape() is not None, 120, "the worker's /metrics", worker.log_tail)
        events = generate(ScenarioConfig(seed=5, threads=60, agents=4))
        sources = {e.source_id for e in events if e.source_id}
        load_scenario(settings, events)

        def channel_ids() -> set[str]:
            return {c["source_id"] for c in worker.get("/api/v1/channels").json()["channels"]}

        started = time.monotonic()
        wait_for(
            lambda: channel_ids() >= sources,
            90,
            "every channel in /channels",
            lambda: f"{sources} wanted\n{worker.log_tail()}",
            tolerate=(httpx.HTTPError,),
        )
        print(f"\nchannels listed {time.monotonic() - started:.1f} s after the traffic")
    finally:
        worker.stop()


async def test_the_replica_finds_a_topic_created_after_it_started(
    kafka_broker: LocalKafka, kafka_settings: Settings
) -> None:
    suffix = kafka_settings.app_id.rsplit("-", 1)[-1]
    activity, summaries = f"engage.agent-activity.{suffix}", f"engage.summaries.{suffix}"
    await create_topics(kafka_broker.bootstrap_servers, {activity: 2})
    replica = ClusterReplica(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        activity_topic=activity,
        summary_topic=summaries,
        waiting_topic=kafka_settings.waiting_topic,
        standings=Standings(ScoringRules(), "UTC"),
    )
    await replica.start()
    try:
        await create_topics(kafka_broker.bootstrap_servers, {summaries: 3})
        summary = PartitionSummary(partition=2, generated_at=time.time(), channels=[])
        await produce(kafka_broker.bootstrap_servers, summaries, [(b"2", encode_summary(summary))])
        deadline = time.monotonic() + 60
        while 2 not in replica.summaries:
            assert time.monotonic() < deadline, "the replica never read the new topic"
            await asyncio.sleep(0.25)
    finally:
        await replica.stop()


@pytest.mark.parametrize("turns", [1, 3, 10, 30, 100, 150, 200, 300, 500, 1000])
async def test_a_replica_stopped_while_it_starts_stops_cleanly(
    kafka_broker: LocalKafka, kafka_settings: Settings, turns: int
) -> None:
    # A worker told to stop while its services start (a second worker joining and leaving at
    # once) stops the replica in the middle of ``start``: neither may fail or leave a reader.
    replica = ClusterReplica(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        activity_topic=kafka_settings.activity_topic,
        summary_topic=kafka_settings.summary_topic,
        waiting_topic=kafka_settings.waiting_topic,
        standings=Standings(ScoringRules(), "UTC"),
    )
    starting = asyncio.create_task(replica.start())
    for _ in range(turns):
        await asyncio.sleep(0)
    await replica.stop()
    await starting
    assert replica._task is None
    assert replica._consumer is None


class _RecordingStandings(Standings):
    """Standings that note what each prune was told and left behind."""

    def __init__(self) -> None:
        super().__init__(ScoringRules(), "UTC")
        self.prunes: list[tuple[float | None, int]] = []

    def prune(self, now: float, settled: float | None = None) -> None:
        super().prune(now, settled)
        self.prunes.append((settled, len(self._archived_seen)))


async def test_the_replica_archives_days_while_it_reads_a_backlog(
    kafka_broker: LocalKafka, kafka_settings: Settings
) -> None:
    """Three weeks of activities (some redelivered a few hundred records later) read by a cold
    replica: it archives days as it goes, drops the redeliveries of archived days, and ends
    with the totals of a replica that read everything first."""
    suffix = kafka_settings.app_id.rsplit("-", 1)[-1]
    activity_topic, waiting = f"engage.agent-activity.{suffix}", f"engage.waiting.{suffix}"
    summaries = f"engage.summaries.{suffix}"
    await create_topics(
        kafka_broker.bootstrap_servers, {activity_topic: 2, waiting: 1, summaries: 1}
    )
    start = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
    activities = [
        AgentActivity(
            agent_id=f"a{i % 7}",
            content_id=f"c{i}",
            thread_id=f"t{i}",
            source_id=f"s{i % 3}",
            source_type="email",
            event_time=start + i * 60.0,  # 30,000 minutes: ~21 days
            response_seconds=float(i % 400),
            first_response=i % 5 == 0,
            within_sla=i % 400 < 300,
        )
        for i in range(30_000)
    ]
    published = list(activities)
    for i in range(0, 30_000, 97):  # a redelivery ~300 records (5 hours) after the original
        published.insert(min(len(published), i + 300), activities[i])
    await produce(
        kafka_broker.bootstrap_servers,
        activity_topic,
        [(a.agent_id.encode(), encode_activity(a)) for a in published],
    )
    standings = _RecordingStandings()
    replica = ClusterReplica(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        activity_topic=activity_topic,
        summary_topic=summaries,
        waiting_topic=waiting,
        standings=standings,
        prune_every_seconds=0.0,
    )
    await replica.start()
    try:
        deadline = time.monotonic() + 120
        while not standings.prunes or standings.prunes[-1][0] is not None:
            assert time.monotonic() < deadline, "the replica never caught up"
            await asyncio.sleep(0.1)
    finally:
        await replica.stop()
    assert any(settled is not None and kept for settled, kept in standings.prunes), (
        "no day was archived while reading"
    )
    assert standings._archived_seen == {}  # caught up: the kept dedupe is let go
    reference = Standings(ScoringRules(), "UTC")
    for activity in activities:
        reference.add(activity)
    now = time.time()
    reference.prune(now)
    assert standings.leaderboard("all", now, limit=100) == reference.leaderboard(
        "all", now, limit=100
    )
    for source in ("s0", "s1", "s2"):
        assert standings.leaderboard("all", now, source=source) == reference.leaderboard(
            "all", now, source=source
        )


class _CountingStandings(Standings):
    """Standings that count every activity and waiting run handed to them."""

    def __init__(self) -> None:
        super().__init__(ScoringRules(), "UTC")
        self.activities_given = 0
        self.runs_given = 0

    def add(self, activity: AgentActivity) -> bool:
        self.activities_given += 1
        return super().add(activity)

    def add_waiting_run(self, run: WaitingRun) -> bool:
        self.runs_given += 1
        return super().add_waiting_run(run)


async def test_the_replica_takes_its_own_records_without_reading_them_back(
    kafka_broker: LocalKafka, kafka_settings: Settings
) -> None:
    """Issue 10: activities and waiting runs this worker announced before writing them are
    skipped when read and taken in once the write ended (also when the replica read them
    before that); another worker's are read; a write given up is taken in, and read when it
    lands after all. The standings end equal to a reference that took every record once."""
    bootstrap = kafka_broker.bootstrap_servers
    suffix = kafka_settings.app_id.rsplit("-", 1)[-1]
    activity_topic, waiting = f"engage.agent-activity.{suffix}", f"engage.waiting.{suffix}"
    summaries = f"engage.summaries.{suffix}"
    await create_topics(bootstrap, {activity_topic: 2, waiting: 2, summaries: 1})
    now = time.time()

    def activity(i: int) -> AgentActivity:
        return AgentActivity(
            agent_id=f"a{i % 5}",
            content_id=f"c{i}",
            thread_id=f"t{i}",
            source_id=f"s{i % 3}",
            source_type="email",
            event_time=now - 3600 + i,
            response_seconds=float(i % 90),
            first_response=i % 4 == 0,
            within_sla=i % 90 < 60,
        )

    own = [activity(i) for i in range(0, 1200, 2)]
    others = [activity(i) for i in range(1, 1200, 2)]
    own_runs = [
        WaitingRun(thread_id=f"t{i}", source_id=f"s{i % 3}", source_type="email",
                   since=now - 3600 + i, until=None if i % 3 else now - 3000 + i)
        for i in range(0, 300, 2)
    ]  # fmt: skip
    standings = _CountingStandings()
    replica = ClusterReplica(
        bootstrap_servers=bootstrap,
        activity_topic=activity_topic,
        summary_topic=summaries,
        waiting_topic=waiting,
        standings=standings,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)

    def records(items: list[AgentActivity]) -> list[tuple[bytes, bytes | None]]:
        return [(a.agent_id.encode(), encode_activity(a)) for a in items]

    async def read_to_the_end() -> None:
        consumer = replica._consumer
        assert consumer is not None
        deadline = time.monotonic() + 60
        for topic in (activity_topic, waiting):
            for partition, end in (await end_offsets(bootstrap, topic)).items():
                tp = TopicPartition(topic, partition)
                while await consumer.position(tp) < end:
                    assert time.monotonic() < deadline, f"the replica never read {tp}"
                    await asyncio.sleep(0.05)

    await producer.start()
    await replica.start()
    try:
        # Announced, written, read: skipped; taken in once the write ended.
        for partition, chunk in ((0, own[:300]), (1, own[300:])):
            replica.writing_own(activity_topic, partition, records(chunk))
            await _send_all(activity_topic, partition, records(chunk), producer)
            replica.wrote_own(activity_topic, partition, records(chunk), chunk, landed=True)
        run_records = [(r.record_key(), encode_run(r)) for r in own_runs]
        replica.writing_own(waiting, 1, run_records)
        await _send_all(waiting, 1, run_records, producer)
        await read_to_the_end()
        replica.wrote_own(waiting, 1, run_records, own_runs, landed=True)  # read before this
        # A write given up (the partition moved): taken in, and when it lands later, read.
        given_up = [activity(i) for i in range(5000, 5040)]
        replica.writing_own(activity_topic, 0, records(given_up))
        replica.wrote_own(activity_topic, 0, records(given_up), given_up, landed=False)
        await _send_all(activity_topic, 0, records(given_up), producer)
        await produce(bootstrap, activity_topic, records(others))  # another worker's
        await read_to_the_end()
    finally:
        await producer.stop()
        await replica.stop()
    assert replica.own_taken == len(own) + len(own_runs) + len(given_up)
    # Every record once: none of the announced ones read back (the given-up write's twice:
    # taken in, then read when it landed).
    assert standings.activities_given == len(own) + len(others) + 2 * len(given_up)
    assert standings.runs_given == len(own_runs)
    assert replica._own == {
        TopicPartition(activity_topic, 0): {},
        TopicPartition(activity_topic, 1): {},
        TopicPartition(waiting, 1): {},
    }
    reference = Standings(ScoringRules(), "UTC")
    for item in own + others + given_up:
        reference.add(item)
    for run in own_runs:
        reference.add_waiting_run(run)
    later = time.time()
    for window in ("today", "week", "all"):
        assert standings.leaderboard(window, later, limit=10) == reference.leaderboard(
            window, later, limit=10
        )
    assert standings.waiting._runs == reference.waiting._runs
