"""The durable numbers of one partition: counters and histograms, keyed by their labels.

``PartitionTotals`` is part of the partition state that is flushed to the table's changelog,
so exported counters survive restarts and move with the partition. It only ever grows
(counters never go down). Keys are label tuples; ``""`` stands for an unknown source or
agent. Histogram buckets are defined once here (``BUCKET_BOUNDS``, seconds, contact-center
scale: 5 s .. 1 day) and stored per bucket (not cumulative); ``cumulative_buckets`` gives
the Prometheus form. Pure: no framework imports.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import MutableMapping
from typing import TypeVar

import msgspec

#: Upper bounds (seconds) of the response-time histogram buckets; +Inf is implicit.
BUCKET_BOUNDS: tuple[float, ...] = (
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
    1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
)  # fmt: skip

SourceKey = tuple[str, str]  # (source_id, source_type)
ContentsKey = tuple[str, str, str]  # (source_id, source_type, direction)
SlaKey = tuple[str, str]  # (source_id, "true" | "false")
_K = TypeVar("_K")


class Histogram(msgspec.Struct, array_like=True):
    """Observations of one series: count per bucket of ``BUCKET_BOUNDS`` (+Inf last)."""

    counts: list[int] = msgspec.field(default_factory=lambda: [0] * (len(BUCKET_BOUNDS) + 1))
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus "le").
        self.counts[bisect_left(BUCKET_BOUNDS, value)] += 1
        self.sum += value
        self.count += 1

    def add(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum
        self.count += other.count


def cumulative_buckets(histogram: Histogram) -> list[tuple[str, int]]:
    """``[(le, cumulative count), ..., ("+Inf", count)]`` as Prometheus exposes them."""
    out: list[tuple[str, int]] = []
    running = 0
    for bound, n in zip(BUCKET_BOUNDS, histogram.counts, strict=False):
        running += n
        out.append((_format_bound(bound), running))
    out.append(("+Inf", running + histogram.counts[-1]))
    return out


def _format_bound(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else repr(bound)


class PartitionTotals(msgspec.Struct):
    """Everything counted in one partition so far (see CONTRACT "Definitions")."""

    contents: dict[ContentsKey, int] = msgspec.field(default_factory=dict)
    first_response: dict[SourceKey, Histogram] = msgspec.field(default_factory=dict)
    response: dict[SourceKey, Histogram] = msgspec.field(default_factory=dict)
    agent_replies: dict[str, int] = msgspec.field(default_factory=dict)
    agent_response: dict[str, Histogram] = msgspec.field(default_factory=dict)
    sla: dict[SlaKey, int] = msgspec.field(default_factory=dict)
    late: dict[str, int] = msgspec.field(default_factory=dict)

    def count_content(self, source: SourceKey, direction: str) -> None:
        """A content in the volumes (counted on arrival: ``streams.core.responses.partition``)."""
        key = (source[0], source[1], direction)
        self.contents[key] = self.contents.get(key, 0) + 1

    def count_reply(self, agent_id: str | None) -> None:
        """A released agent content (answer or proactive), as the leaderboard counts it;
        an outbound content with no agent is no agent's reply (CONTRACT)."""
        if agent_id:
            self.agent_replies[agent_id] = self.agent_replies.get(agent_id, 0) + 1

    def count_late(self, source_id: str) -> None:
        self.late[source_id] = self.late.get(source_id, 0) + 1

    def observe_response(
        self,
        source: SourceKey,
        agent_id: str | None,
        seconds: float,
        first: bool,
        within_sla: bool,
    ) -> None:
        _histogram(self.response, source).observe(seconds)
        if first:
            _histogram(self.first_response, source).observe(seconds)
        _histogram(self.agent_response, agent_id or "").observe(seconds)
        key = (source[0], "true" if within_sla else "false")
        self.sla[key] = self.sla.get(key, 0) + 1


def _histogram(table: MutableMapping[_K, Histogram], key: _K) -> Histogram:
    histogram = table.get(key)
    if histogram is None:
        histogram = table[key] = Histogram()
    return histogram
