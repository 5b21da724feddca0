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

Two renderings of the same series (``partition_series``): ``PartitionCollector`` builds
prometheus_client families (the library's own exposition is the reference), and
``render_partitions`` writes the same text exposition directly (issue 10). With 200 agents
on 4 partitions the page holds ~15,000 samples, and prometheus_client spends ~10 us on each
(a ``Sample`` and a label dict per bucket, label names validated and escaped per sample):
a scrape every second took ~25 % of the busy worker's one core. ``render_partitions`` builds
each series' label text once and writes its bucket lines from it, and a test checks that
its bytes equal ``generate_latest`` of ``PartitionCollector`` for the same states.

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
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _go_float

from streams.core.responses.partition import PartitionState, backlog, volumes
from streams.core.responses.totals import Histogram, SourceKey, cumulative_buckets

#: ``(source_id, source_type) -> (waiting contents, oldest age)`` of one partition.
Backlog = Mapping[SourceKey, tuple[int, float]]

_WHERE = ("topic", "partition")


@dataclass(frozen=True)
class Family:
    """One exported metric family: its name (without ``_total``), kind, help and labels."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    documentation: str
    labels: tuple[str, ...]


CONTENTS, FIRST, RESPONSE, REPLIES, AGENT_RESPONSE, SLA, WAITING, OLDEST, BUFFERED, LATE = range(10)

#: In the order they are exposed.
FAMILIES: tuple[Family, ...] = (
    Family(
        "engage_contents",
        "counter",
        "Contents counted once each (non-automatic), by source and direction.",
        ("source", "source_type", "direction", *_WHERE),
    ),
    Family(
        "engage_first_response_seconds",
        "histogram",
        "First response time of each intervention (event times), by source.",
        ("source", "source_type", *_WHERE),
    ),
    Family(
        "engage_response_seconds",
        "histogram",
        "Response time of every answer: answer time - earliest waiting customer content.",
        ("source", "source_type", *_WHERE),
    ),
    Family(
        "engage_agent_replies",
        "counter",
        "Agent contents (answers and proactive messages), by agent id.",
        ("agent", *_WHERE),
    ),
    Family(
        "engage_agent_response_seconds",
        "histogram",
        "Response time of every answer, by answering agent id.",
        ("agent", *_WHERE),
    ),
    Family(
        "engage_sla_responses",
        "counter",
        "Response observations, by source and whether within the source's SLA.",
        ("source", "within_sla", *_WHERE),
    ),
    Family(
        "engage_backlog_contents",
        "gauge",
        "Customer contents waiting for an agent reply now.",
        ("source", "source_type", *_WHERE),
    ),
    Family(
        "engage_backlog_oldest_age_seconds",
        "gauge",
        "Age of the oldest customer content waiting for a reply (0 when none waits).",
        ("source", "source_type", *_WHERE),
    ),
    Family(
        "engage_reorder_buffer_threads",
        "gauge",
        "Threads with contents in their reorder buffer (counted live in volumes and "
        "backlog, their responses not yet released), as last made durable.",
        _WHERE,
    ),
    Family(
        "engage_late_contents",
        "counter",
        "Contents received after the reorder window, too late to be put in order.",
        ("source", *_WHERE),
    ),
)

#: ``(family index, label values, value or histogram)``
Series = tuple[int, tuple[str, ...], float | Histogram]


def partition_series(
    states: Mapping[int, PartitionState],
    backlogs: Mapping[int, Backlog],
    now: float,
    topic: str,
) -> Iterator[Series]:
    """Every series of every partition (module docstring), partition by partition."""
    for partition in sorted(states):
        state = states[partition]
        totals = state.totals
        where = (topic, str(partition))
        counted = volumes(state)
        for key, n in sorted(counted.items()):
            yield CONTENTS, (*key, *where), n
        for skey, histogram in sorted(totals.first_response.items()):
            yield FIRST, (*skey, *where), histogram
        for skey, histogram in sorted(totals.response.items()):
            yield RESPONSE, (*skey, *where), histogram
        for agent, n in sorted(totals.agent_replies.items()):
            yield REPLIES, (agent, *where), n
        for agent, histogram in sorted(totals.agent_response.items()):
            yield AGENT_RESPONSE, (agent, *where), histogram
        # Known sources get both SLA series and a late counter at 0 from their first content.
        known = {source_id for source_id, _, _ in counted}
        sla_counts = dict.fromkeys(((s, w) for s in known for w in ("false", "true")), 0)
        for sla_key, n in sorted({**sla_counts, **totals.sla}.items()):
            yield SLA, (*sla_key, *where), n
        now_waiting = backlogs.get(partition)
        if now_waiting is None:
            now_waiting = backlog(state, now)
        sources = {(s, t) for s, t, _ in counted} | set(now_waiting)
        for skey in sorted(sources):
            count, age = now_waiting.get(skey, (0, 0.0))
            yield WAITING, (*skey, *where), count
            yield OLDEST, (*skey, *where), age
        yield BUFFERED, where, len(state.provisional)
        for source_id, n in sorted({**dict.fromkeys(known, 0), **totals.late}.items()):
            yield LATE, (source_id, *where), n


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
        backlogs = {} if self._get_backlogs is None else dict(self._get_backlogs())
        families: list[Metric] = [_library_family(f) for f in FAMILIES]
        for index, labels, value in partition_series(states, backlogs, self._now(), self._topic):
            family = families[index]
            if isinstance(value, Histogram):
                assert isinstance(family, HistogramMetricFamily)
                buckets = [(le, float(n)) for le, n in cumulative_buckets(value)]
                family.add_metric(list(labels), buckets, value.sum)
            else:
                assert isinstance(family, CounterMetricFamily | GaugeMetricFamily)
                family.add_metric(list(labels), value)
        yield from families


def _library_family(family: Family) -> Metric:
    labels = list(family.labels)
    if family.kind == "counter":
        return CounterMetricFamily(family.name, family.documentation, labels=labels)
    if family.kind == "gauge":
        return GaugeMetricFamily(family.name, family.documentation, labels=labels)
    return HistogramMetricFamily(family.name, family.documentation, labels=labels)


#: The ``le`` label of each bucket, "+Inf" last (as ``cumulative_buckets`` spells them).
_LE = [le for le, _ in cumulative_buckets(Histogram())]
#: Per family: its label positions in name order, and how many names sort before "le".
_ORDERS = [sorted(range(len(f.labels)), key=f.labels.__getitem__) for f in FAMILIES]
_BEFORE_LE = [sum(1 for name in f.labels if name < "le") for f in FAMILIES]


def render_partitions(
    states: Mapping[int, PartitionState],
    backlogs: Mapping[int, Backlog],
    now: float,
    topic: str,
) -> str:
    """The text exposition (format 0.0.4) of ``partition_series``: the same bytes as
    ``generate_latest`` of a ``PartitionCollector`` over the same states, written directly."""
    lines: list[list[str]] = [[] for _ in FAMILIES]
    for index, labels, value in partition_series(states, backlogs, now, topic):
        family = FAMILIES[index]
        names = family.labels
        out = lines[index]
        pairs = [f'{names[i]}="{_escape(labels[i])}"' for i in _ORDERS[index]]
        if isinstance(value, Histogram):
            # "le" takes its place among the sorted label names.
            cut = _BEFORE_LE[index]
            before = "".join(p + "," for p in pairs[:cut])
            after = "".join("," + p for p in pairs[cut:])
            head = f'{family.name}_bucket{{{before}le="'
            tail = f'"{after}}} '
            running = 0
            for le, n in zip(_LE, value.counts, strict=True):
                running += n
                out.append(f"{head}{le}{tail}{_number(running)}\n")
            plain = ",".join(pairs)
            out.append(f"{family.name}_count{{{plain}}} {_number(running)}\n")
            out.append(f"{family.name}_sum{{{plain}}} {_go_string(value.sum)}\n")
        else:
            suffix = "_total" if family.kind == "counter" else ""
            out.append(f"{family.name}{suffix}{{{','.join(pairs)}}} {_number(value)}\n")
    text: list[str] = []
    for family, body in zip(FAMILIES, lines, strict=True):
        name = family.name + ("_total" if family.kind == "counter" else "")
        documentation = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        text.append(f"# HELP {name} {documentation}\n# TYPE {name} {family.kind}\n")
        text.extend(body)
    return "".join(text)


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _number(value: float) -> str:
    """prometheus_client's ``floatToGoString(value)``, without its work for small integers."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"
    return _go_string(value)


def _go_string(value: float) -> str:
    """Go's spelling of a float, as prometheus_client writes it."""
    text: str = _go_float(value)  # type: ignore[no-untyped-call]
    return text
