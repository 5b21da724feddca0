"""Badges: what an agent earned in a calendar day (in ``ENGAGE_TIMEZONE``).

Every badge is awarded at most once per period, and the period is the calendar day:

- ``sla_streak_N`` — N consecutive answers within SLA (in event-time order, ties by content
  id) during the day; once per day per threshold N (``ScoringRules.sla_streaks``). Proactive
  messages neither extend nor break a streak; an answer outside SLA breaks it.
- ``first_to_N`` — the agent whose Nth answer of the day came first (earliest event time of
  the Nth answer, ties by agent id); once per day, one agent (``ScoringRules.first_to_answer``).
- ``cleared_backlog`` — an answer of the agent left its channel (``source_id``) with no
  customer waiting anywhere in the cluster at the answer's event time: no customer content of
  the channel, in any thread or partition, sent at or before that time and not yet answered
  then (``WaitingTimeline.clear_at``); once per day per channel, so its count is the number
  of (day, channel) pairs. Proactive messages never earn it.

Badges are a function of the set of activities and waiting runs, not of their arrival order:
an activity or a run that arrives late (out of event-time order) is slotted in place and the
day is re-evaluated, so a replay gives the same badges. Nothing here knows about Kafka, HTTP
or Prometheus.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec

from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import WaitingTimeline

CLEARED_BACKLOG = "cleared_backlog"


def streak_badge(threshold: int) -> str:
    """The name of the streak badge for ``threshold`` consecutive answers within SLA."""
    return f"sla_streak_{threshold}"


def first_to_badge(threshold: int) -> str:
    """The name of the badge of the first agent to reach ``threshold`` answers in a day."""
    return f"first_to_{threshold}"


class BadgeCount(msgspec.Struct, frozen=True):
    """A badge and how many periods (days, or day x channel) it was earned in a window."""

    badge: str
    count: int


class AgentDay:
    """One agent's badge facts for one day.

    Memory: one ``(event_time, content_id, within_sla)`` tuple and one time (by channel) per
    answer of the day, plus one cached "cleared?" per channel.
    """

    __slots__ = ("_answers", "_by_source", "_cleared", "_max_run", "_stale", "_tail_run")

    def __init__(self) -> None:
        self._answers: list[tuple[float, str, bool]] = []
        self._max_run = 0
        self._tail_run = 0
        self._stale = False
        self._by_source: dict[str | None, array[float]] = {}
        # channel -> (timeline version, answers seen, cleared?)
        self._cleared: dict[str | None, tuple[int, int, bool]] = {}

    def add_answer(
        self, event_time: float, content_id: str, within_sla: bool, source_id: str | None = None
    ) -> None:
        """Record an answer (in channel ``source_id``); an out-of-order one makes the streaks
        be recounted when read."""
        times = self._by_source.get(source_id)
        if times is None:
            times = self._by_source[source_id] = array("d")
        times.append(event_time)
        entry = (event_time, content_id, within_sla)
        if not self._answers or entry[:2] >= self._answers[-1][:2]:
            self._answers.append(entry)
            if not self._stale:
                self._tail_run = self._tail_run + 1 if within_sla else 0
                self._max_run = max(self._max_run, self._tail_run)
            return
        # Replays interleave partitions, so out-of-order answers come in bursts: recount
        # once when the streaks are read, not on every insertion.
        bisect.insort(self._answers, entry)
        self._stale = True

    def _recount(self) -> None:
        run = best = 0
        for _, _, ok in self._answers:
            run = run + 1 if ok else 0
            best = max(best, run)
        self._max_run, self._tail_run = best, run
        self._stale = False

    @property
    def answers(self) -> int:
        """How many answers the agent gave this day."""
        return len(self._answers)

    @property
    def longest_sla_run(self) -> int:
        """The longest run of consecutive answers within SLA this day."""
        if self._stale:
            self._recount()
        return self._max_run

    def nth_answer_time(self, n: int) -> float | None:
        """Event time of the agent's ``n``-th answer of the day (1-based), if any."""
        return self._answers[n - 1][0] if len(self._answers) >= n else None

    def cleared_channels(self, waiting: WaitingTimeline) -> int:
        """In how many channels an answer of this day left no customer waiting."""
        count = 0
        for source_id, times in self._by_source.items():
            version = waiting.version(source_id)
            cached = self._cleared.get(source_id)
            if cached is not None and cached[:2] == (version, len(times)):
                cleared = cached[2]
            else:
                cleared = any(waiting.clear_at(source_id, when) for when in times)
                self._cleared[source_id] = (version, len(times), cleared)
            count += cleared
        return count

    def badges(
        self, rules: ScoringRules, first_to_answer: bool, waiting: WaitingTimeline
    ) -> Counter[str]:
        """Badges earned this day (``first_to_answer``: whether this agent won that race;
        ``waiting``: the cluster's waiting runs, for ``cleared_backlog``)."""
        earned: Counter[str] = Counter()
        if self._stale:
            self._recount()
        for threshold in rules.sla_streaks:
            if self._max_run >= threshold:
                earned[streak_badge(threshold)] = 1
        if first_to_answer:
            earned[first_to_badge(rules.first_to_answer)] = 1
        cleared = self.cleared_channels(waiting)
        if cleared:
            earned[CLEARED_BACKLOG] = cleared
        return earned


def first_to_answer_winner(days: Mapping[str, AgentDay], threshold: int) -> str | None:
    """The agent (of one day) whose ``threshold``-th answer came first, or ``None``."""
    best: tuple[float, str] | None = None
    for agent_id, day in days.items():
        when = day.nth_answer_time(threshold)
        if when is not None and (best is None or (when, agent_id) < best):
            best = (when, agent_id)
    return None if best is None else best[1]


def badge_counts(counters: Iterable[Mapping[str, int]]) -> list[BadgeCount]:
    """Sum badge counters into a list sorted by badge name (zero counts left out)."""
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return [BadgeCount(badge, count) for badge, count in sorted(total.items()) if count > 0]
