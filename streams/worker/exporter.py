"""Prometheus adapter: the contract metrics of the partitions this worker owns, at scrape time.

``PartitionCollector`` reads the durable ``PartitionState`` of each owned partition (never
process-local counters), so a restart neither resets nor repeats a counter. Every series
carries ``topic`` and ``partition`` labels: a partition's series move with it from worker to
worker, no series of one worker ever decreases because another took a partition over, and
``sum without (topic, partition)`` over all workers is the cluster total.

Live numbers (issue 10): ``engage_contents_total`` counts buffered contents too
(``streams.core.responses.partition.volumes``: moved, never retracted, when released), and
the backlog gauges come from ``get_backlogs`` -- the *live* state's backlog, computed by the
caller on the event loop -- when given, so a new waiting customer shows within a scrape;
counters and histograms always come from the durable states.

The collector reads only what ``get_states``/``get_backlogs`` return, so it can run in a
thread on immutable snapshots (``streams.worker.metrics.MetricsPage``).

Backlog gauges: one series per (source, source_type, partition) the partition has ever
counted a content of, 0-valued when nothing waits (``engage_backlog_oldest_age_seconds`` is 0
then), so dashboards show 0 rather than "no data" and alerts resolve cleanly. For the same
reason ``engage_late_contents_total`` and both ``within_sla`` series of
``engage_sla_responses_total`` exist, at 0, from a source's first content.

This module is an adapter (it imports prometheus_client); the numbers come from
``streams.core.responses.totals`` and ``streams.core.responses.partition.backlog``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from streams.core.responses.partition import PartitionState, backlog, volumes
from streams.core.responses.totals import Histogram, SourceKey, cumulative_buckets

#: ``(source_id, source_type) -> (waiting contents, oldest age)`` of one partition.
Backlog = Mapping[SourceKey, tuple[int, float]]

_WHERE = ["topic", "partition"]


class PartitionCollector(Collector):
    """Yields engage_contents_total, the response histograms, agent replies, SLA, backlog
    and late counters of the states ``get_states()`` returns (partition -> state)."""

    def __init__(
        self,
        get_states: Callable[[], Mapping[int, PartitionState]],
        now: Callable[[], float],
        topic: str,
        get_backlogs: Callable[[], Mapping[int, Backlog]] | None = None,
    ) -> None:
        self._get_states = get_states
        self._now = now
        self._topic = topic
        self._get_backlogs = get_backlogs

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the series depend on the partitions owned at scrape time

    def collect(self) -> Iterator[Metric]:
        states = dict(self._get_states())
        now = self._now()
        backlogs = {} if self._get_backlogs is None else dict(self._get_backlogs())
        topic = self._topic
        contents = CounterMetricFamily(
            "engage_contents",
            "Contents counted once each (non-automatic), by source and direction.",
            labels=["source", "source_type", "direction", *_WHERE],
        )
        first = HistogramMetricFamily(
            "engage_first_response_seconds",
            "First response time of each intervention (event times), by source.",
            labels=["source", "source_type", *_WHERE],
        )
        response = HistogramMetricFamily(
            "engage_response_seconds",
            "Response time of every answer: answer time - earliest waiting customer content.",
            labels=["source", "source_type", *_WHERE],
        )
        replies = CounterMetricFamily(
            "engage_agent_replies",
            "Agent contents (answers and proactive messages), by agent id.",
            labels=["agent", *_WHERE],
        )
        agent_response = HistogramMetricFamily(
            "engage_agent_response_seconds",
            "Response time of every answer, by answering agent id.",
            labels=["agent", *_WHERE],
        )
        sla = CounterMetricFamily(
            "engage_sla_responses",
            "Response observations, by source and whether within the source's SLA.",
            labels=["source", "within_sla", *_WHERE],
        )
        waiting = GaugeMetricFamily(
            "engage_backlog_contents",
            "Customer contents waiting for an agent reply now.",
            labels=["source", "source_type", *_WHERE],
        )
        oldest = GaugeMetricFamily(
            "engage_backlog_oldest_age_seconds",
            "Age of the oldest customer content waiting for a reply (0 when none waits).",
            labels=["source", "source_type", *_WHERE],
        )
        buffered = GaugeMetricFamily(
            "engage_reorder_buffer_threads",
            "Threads with contents in their reorder buffer (counted live in volumes and "
            "backlog, their responses not yet released), as last made durable.",
            labels=_WHERE,
        )
        late = CounterMetricFamily(
            "engage_late_contents",
            "Contents received after the reorder window, too late to be put in order.",
            labels=["source", *_WHERE],
        )
        for partition in sorted(states):
            state = states[partition]
            totals = state.totals
            where = [topic, str(partition)]
            counted = volumes(state)
            for (source_id, source_type, direction), n in sorted(counted.items()):
                contents.add_metric([source_id, source_type, direction, *where], n)
            for skey, histogram in sorted(totals.first_response.items()):
                _observe(first, [*skey, *where], histogram)
            for skey, histogram in sorted(totals.response.items()):
                _observe(response, [*skey, *where], histogram)
            for agent, n in sorted(totals.agent_replies.items()):
                replies.add_metric([agent, *where], n)
            for agent, histogram in sorted(totals.agent_response.items()):
                _observe(agent_response, [agent, *where], histogram)
            # Known sources get both SLA series and a late counter at 0 from their first content.
            known = {source_id for source_id, _, _ in counted}
            sla_counts = dict.fromkeys(((s, w) for s in known for w in ("false", "true")), 0)
            for (source_id, within), n in sorted({**sla_counts, **totals.sla}.items()):
                sla.add_metric([source_id, within, *where], n)
            for source_id, n in sorted({**dict.fromkeys(known, 0), **totals.late}.items()):
                late.add_metric([source_id, *where], n)
            now_waiting = backlogs.get(partition)
            if now_waiting is None:
                now_waiting = backlog(state, now)
            sources = {(s, t) for s, t, _ in counted} | set(now_waiting)
            for skey in sorted(sources):
                count, age = now_waiting.get(skey, (0, 0.0))
                waiting.add_metric([*skey, *where], count)
                oldest.add_metric([*skey, *where], age)
            buffered.add_metric(where, len(state.provisional))
        yield from (contents, first, response, replies, agent_response, sla, waiting, oldest)
        yield from (buffered, late)


def _observe(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    buckets = [(le, float(n)) for le, n in cumulative_buckets(histogram)]
    family.add_metric(labels, buckets, histogram.sum)
