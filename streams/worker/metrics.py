"""The worker's Prometheus registry: durable partition numbers plus live worker gauges.

- ``PartitionCollector`` (``streams.worker.exporter``): the contract's counters, histograms and
  backlog gauges, read from the flushed state of the partitions this worker owns now.
- ``WorkerCollector`` (here): ``engage_stream_lag_messages`` per owned partition,
  ``engage_unreadable_records_total``, and -- from the worker that owns partition 0 of the
  contents topic only, so that ``sum()``/``max()`` over workers see each series once --
  ``engage_leaderboard_score``/``engage_leaderboard_rank`` for the top N of each window and
  ``engage_agent_info`` and ``engage_source_info``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.core.directory import Directory
from streams.core.responses.channels import merge_channels
from streams.worker.cluster import ClusterReplica
from streams.worker.contents import ContentsPipeline
from streams.worker.exporter import PartitionCollector
from streams.worker.health import HealthCollector, WorkerHealth


class WorkerCollector(Collector):
    def __init__(
        self,
        *,
        pipeline: ContentsPipeline,
        replica: ClusterReplica,
        directory: Directory,
        source_names: Mapping[str, str],
        contents_topic: str,
        top_n: int,
    ) -> None:
        self.source_names = source_names
        self.pipeline = pipeline
        self.replica = replica
        self.directory = directory
        self.topic = contents_topic
        self.top_n = top_n

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily(
            "engage_stream_lag_messages",
            "Messages of the partition not yet processed by this worker.",
            labels=["topic", "partition"],
        )
        for partition, messages in sorted(self.pipeline.lag().items()):
            lag.add_metric([self.topic, str(partition)], messages)
        yield lag
        unreadable = CounterMetricFamily(
            "engage_unreadable_records",
            "Records of the contents topic this worker could not decode (skipped).",
        )
        unreadable.add_metric([], self.pipeline.unreadable_records)
        yield unreadable
        if 0 not in self.pipeline.owned:
            return
        score = GaugeMetricFamily(
            "engage_leaderboard_score",
            "Score of a top agent in a window.",
            labels=["window", "agent"],
        )
        rank = GaugeMetricFamily(
            "engage_leaderboard_rank",
            "Rank (1 = leader) of a top agent.",
            labels=["window", "agent"],
        )
        for gauge in self.replica.standings.gauges(time.time(), self.top_n):
            score.add_metric([gauge.window, gauge.agent_id], gauge.score)
            rank.add_metric([gauge.window, gauge.agent_id], float(gauge.rank))
        yield score
        yield rank
        info = GaugeMetricFamily(
            "engage_agent_info",
            "Agent names and teams (value 1).",
            labels=["agent", "agent_name", "team"],
        )
        for agent_id in sorted(set(self.directory) | set(self.replica.standings.agent_ids())):
            team = self.directory.team(agent_id) or ""
            info.add_metric([agent_id, self.directory.name(agent_id), team], 1.0)
        yield info
        sources = GaugeMetricFamily(
            "engage_source_info",
            "Channels (sources) seen in the cluster, with their type (value 1).",
            labels=["source", "source_name", "source_type"],
        )
        for figures in merge_channels(self.replica.summaries.values()):
            # Names come from the Engage sources API; until enrichment knows one, the id.
            name = self.source_names.get(figures.source_id, figures.source_id)
            sources.add_metric([figures.source_id, name, figures.source_type], 1.0)
        yield sources


def build_registry(
    *,
    pipeline: ContentsPipeline,
    replica: ClusterReplica,
    directory: Directory,
    source_names: Mapping[str, str],
    contents_topic: str,
    top_n: int,
    health: WorkerHealth,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(health))
    registry.register(PartitionCollector(pipeline.snapshots, time.time, contents_topic))
    registry.register(
        WorkerCollector(
            pipeline=pipeline,
            replica=replica,
            directory=directory,
            source_names=source_names,
            contents_topic=contents_topic,
            top_n=top_n,
        )
    )
    return registry
