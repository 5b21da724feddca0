"""An independent, deliberately plain calculation of every number the core produces.

Given one partition's input -- its records in offset order, optionally with clock-driven
releases (a float ``now`` = ``release_until(now)``) -- it works the CONTRACT definitions out
directly: no buffers, no heaps, no incremental state; quadratic where that is simplest.

Release rule, stated as a formula rather than simulated: with ``W[s]`` the partition
watermark at step ``s`` (largest ``received_at`` of records up to ``s``; for a clock step,
``max(W, now)``), a content X is *due* from the first step ``e(X) >= arrival(X)`` where
``received_at(X) + window <= W[s]``. A content C is released at step
``min over X of its thread with key(X) >= key(C) of max(arrival(C), e(X))`` -- due itself,
or ordered before something due. key = (event time, outbound, content id). A thread's
contents are then taken in (release step, key) order; C is late when a content with a
greater key was released at an earlier step.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engage_streams.record import ContentEvent

Step = ContentEvent | float  # a record, or a release_until(now) call

BOUNDS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)


def reference_sla_seconds(source_id: str | None, source_type: str | None) -> float:
    kind = (source_type or "").lower()
    if "mail" in kind or "review" in kind or kind == "google_my_business":
        return 3600.0
    return 300.0


@dataclass
class Observation:
    source: tuple[str, str]
    agent: str
    seconds: float
    first: bool
    within_sla: bool


@dataclass
class Expected:
    contents: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    agent_replies: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    sla: Counter[tuple[str, str]] = field(default_factory=Counter)
    observations: list[Observation] = field(default_factory=list)
    # content id -> (agent, thread, source_id, source_type, time, response, first, within)
    activities: dict[str, tuple[object, ...]] = field(default_factory=dict)
    # thread id -> event times of its customer contents still waiting at the end
    waiting: dict[str, list[float]] = field(default_factory=dict)
    # every customer content's waiting interval: (source id, sent, answered or inf)
    waits: list[tuple[str, float, float]] = field(default_factory=list)
    thread_source: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, other: Expected) -> None:
        self.contents += other.contents
        self.agent_replies += other.agent_replies
        self.late += other.late
        self.sla += other.sla
        self.observations += other.observations
        self.activities.update(other.activities)
        self.waiting.update(other.waiting)
        self.waits += other.waits
        self.thread_source.update(other.thread_source)

    def backlog(self, now: float) -> dict[tuple[str, str], tuple[int, float]]:
        out: dict[tuple[str, str], tuple[int, float]] = {}
        for source in {self.thread_source[t] for t, w in self.waiting.items() if w}:
            times = [
                x for t, w in self.waiting.items() if self.thread_source[t] == source for x in w
            ]
            out[source] = (len(times), now - min(times))
        return out

    def histogram(
        self, pick: Callable[[Observation], object], label: object, first_only: bool = False
    ) -> tuple[list[int], float, int]:
        """(cumulative counts per bound + Inf, sum, count) of the matching observations."""
        values = [
            o.seconds for o in self.observations if pick(o) == label and (o.first or not first_only)
        ]
        cumulative = [sum(1 for v in values if v <= b) for b in BOUNDS] + [len(values)]
        return cumulative, sum(values), len(values)


def live_reference(
    steps: Sequence[Step],
    window: float,
    *,
    sla_seconds: Callable[[str | None, str | None], float] = reference_sla_seconds,
) -> Expected:
    """The live numbers after ``steps`` (CONTRACT "Backlog": customer contents waiting
    *now*; "Contents": each content counted once): every content received so far counts,
    whether or not its reorder window has passed, as it would once released. Only its
    ``backlog`` and ``contents`` are live numbers; response observations wait for the
    window (use ``reference``)."""
    return reference(steps, window, flush=True, sla_seconds=sla_seconds)


def reference(
    steps: Sequence[Step],
    window: float,
    *,
    flush: bool = True,
    sla_seconds: Callable[[str | None, str | None], float] = reference_sla_seconds,
) -> Expected:
    """What one partition must have counted after ``steps`` (then ``release_until(inf)``
    when ``flush``)."""
    steps = list(steps) + ([math.inf] if flush else [])
    marks: list[float] = []  # effective watermark at each step
    high = 0.0
    for step in steps:
        if isinstance(step, ContentEvent):
            high = max(high, step.received_at.timestamp())
            marks.append(high)
        else:
            marks.append(max(high, step))

    monotonic = all(a <= b for a, b in itertools.pairwise(marks))
    source: dict[str, tuple[str, str]] = {}
    seen: set[str] = set()
    contents: dict[str, list[tuple[int, ContentEvent]]] = defaultdict(list)
    for i, step in enumerate(steps):
        if not isinstance(step, ContentEvent):
            continue
        if step.thread_id not in source and step.source_id is not None:
            source[step.thread_id] = (step.source_id, step.source_type or "")
        if step.content_id in seen:
            continue
        seen.add(step.content_id)
        if step.automatic or step.event_type.startswith("content.thread_"):
            continue
        contents[step.thread_id].append((i, step))

    expected = Expected()
    for thread_id, items in contents.items():
        src = source.get(thread_id, ("", ""))
        expected.thread_source[thread_id] = src

        def key(event: ContentEvent) -> tuple[float, bool, str]:
            return (event.event_time.timestamp(), event.direction == "outbound", event.content_id)

        def due(arrival: int, event: ContentEvent) -> int | None:
            threshold = event.received_at.timestamp() + window
            if monotonic:  # the first step at or after arrival whose watermark passes it
                s = bisect.bisect_left(marks, threshold, lo=arrival)
                return s if s < len(steps) else None
            for s in range(arrival, len(steps)):
                if threshold <= marks[s]:
                    return s
            return None

        dues = [due(a, e) for a, e in items]
        released: list[tuple[int, tuple[float, bool, str], ContentEvent]] = []
        for a, c in items:
            candidates = [
                max(a, d) for (_, x), d in zip(items, dues) if d is not None and key(x) >= key(c)
            ]
            if candidates:
                released.append((min(candidates), key(c), c))
        released.sort(key=lambda r: (r[0], r[1]))

        waiting: list[float] = []
        answered: set[str | None] = set()
        for n, (step_index, k, c) in enumerate(released):
            if any(step_index > s and k2 > k for s, k2, _ in released[:n]):
                expected.late[src[0]] += 1
            t = c.event_time.timestamp()
            expected.contents[(src[0], src[1], c.direction)] += 1
            if c.direction == "inbound":
                waiting.append(t)
                continue
            if not c.agent_id:
                continue  # no agent at all: counted in contents only, never an answer
            agent = c.agent_id
            expected.agent_replies[agent] += 1
            answered_now = [w for w in waiting if w <= t]
            if not answered_now:
                expected.activities[c.content_id] = (
                    agent,
                    thread_id,
                    src[0],
                    src[1],
                    t,
                    None,
                    False,
                    None,
                )
                continue
            seconds = t - min(answered_now)
            waiting = [w for w in waiting if w > t]
            expected.waits += [(src[0], w, t) for w in answered_now]
            first = c.intervention_id not in answered
            answered.add(c.intervention_id)
            within = seconds <= sla_seconds(src[0], src[1])
            expected.observations.append(Observation(src, agent, seconds, first, within))
            expected.sla[(src[0], "true" if within else "false")] += 1
            expected.activities[c.content_id] = (
                agent,
                thread_id,
                src[0],
                src[1],
                t,
                seconds,
                first,
                within,
            )
        expected.waiting[thread_id] = waiting
        expected.waits += [(src[0], w, math.inf) for w in waiting]
    return expected
