"""The cluster replica on a fresh cluster: topics that appear after the worker started.

First the replica alone (real broker): a topic created after it started is found. Then a
whole worker: started on a broker where none of its topics exist yet, it creates the contents
topic and the side topics itself, and ``GET /api/v1/channels`` must list the channels of
the traffic that follows, without a restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from devkit.broker import LocalKafka
from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from simulator.scenario import ScenarioConfig, generate
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.scoring import ScoringRules
from streams.core.responses.channels import PartitionSummary, encode_summary
from streams.worker.cluster import ClusterReplica
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
