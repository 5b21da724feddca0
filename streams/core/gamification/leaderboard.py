"""Standings: scores, replies, response medians and badges per agent, over four windows.

``Standings`` is fed ``AgentActivity`` records (any order, duplicates dropped by content id)
and the cluster's ``WaitingRun`` records (any order, for ``cleared_backlog``) and answers
leaderboards over these windows, all by event time:

- ``hour``  — the rolling 60 minutes ending at ``now`` (``now - 3600 < event_time <= now``);
- ``today`` — the calendar day of ``now`` in the configured timezone (``ENGAGE_TIMEZONE``);
- ``week``  — the calendar week of ``now``, Monday to Sunday, in that timezone;
- ``all``   — everything ever added.

Calendar windows hold whole days, so an activity stamped later than ``now`` but on the same
day counts in ``today``. Ranking: score desc, replies desc, faster median response (none
last), agent id. Badges (see ``streams.core.gamification.badges``) are the agent's, whatever
the source filter: ``hour`` and ``today`` show today's, ``week`` the week's, ``all`` every
day's.

How it stays fast: per-day buckets (day -> agent -> tally, with per-source tallies) answer
``today``/``week``; a per-agent list sorted by event time answers ``hour``; all-time tallies
answer ``all``. A leaderboard over 1,000 agents x 100k activities takes a few milliseconds.

Memory, per agent:

- all time: one tally per source it worked on, plus one over all sources; each keeps every
  response time as 8 bytes, in one sorted array while small and in buckets of 1/8 of an
  octave past ``SMALL_TALLY`` answers (``_LifetimeTally``), so all-time medians stay exact;
- retained days (``prune`` keeps the current calendar week and yesterday, so at most 8 days):
  per activity one content id (dedupe), one score, one response time (twice: all sources and
  its own source) and one ``(time, content id, within_sla)`` tuple per answer;
- the last hour: one small tuple per activity.

Dedupe works for activities of retained days, and of days archived while catching up (a
prune with ``settled``) until the next prune without it. An activity of a day already pruned
is added to the all-time totals only (its day's badges are final); once caught up it cannot
be checked for duplicates any more. Waiting runs: every open
run, and the closed runs that end within the retained days (``prune`` forgets older ones:
a closed run only decides answers during it). Nothing here knows about
Kafka, HTTP or Prometheus.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, tzinfo
from itertools import chain
from operator import itemgetter
from typing import Literal, get_args
from zoneinfo import ZoneInfo

import msgspec

from streams.core.directory import Directory
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.badges import (
    AgentDay,
    BadgeCount,
    badge_counts,
    first_to_answer_winner,
)
from streams.core.gamification.scoring import ScoringRules, points_milli
from streams.core.gamification.waiting import WaitingRun, WaitingTimeline

Window = Literal["hour", "today", "week", "all"]
WINDOWS: tuple[Window, ...] = get_args(Window)
HOUR_SECONDS = 3600.0


class LeaderboardEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One row of a leaderboard (``rank`` starts at 1)."""

    rank: int
    agent_id: str
    name: str
    score: float
    replies: int
    median_response_seconds: float | None
    badges: list[BadgeCount]


class WindowSummary(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's numbers in one window; ``rank`` is ``None`` with no activity there."""

    rank: int | None
    score: float
    replies: int
    median_response_seconds: float | None
    badges: list[BadgeCount]


class AgentSummary(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's standing in every window (keys: ``hour``, ``today``, ``week``, ``all``)."""

    agent_id: str
    name: str
    team: str | None
    windows: dict[str, WindowSummary]


class LeaderboardGauge(msgspec.Struct, frozen=True):
    """One ``engage_leaderboard_score``/``engage_leaderboard_rank`` sample (top N only)."""

    window: str
    agent_id: str
    score: float
    rank: int


class _DayTally:
    """Replies, points and the sorted response times of some activities."""

    __slots__ = ("replies", "responses", "score_milli")

    def __init__(self) -> None:
        self.replies = 0
        self.score_milli = 0
        self.responses = array("d")  # sorted; 8 bytes a value

    def add(self, score_milli: int, response_seconds: float | None) -> None:
        self.replies += 1
        self.score_milli += score_milli
        if response_seconds is not None:
            bisect.insort(self.responses, response_seconds)


#: Answers up to which an all-time tally keeps its response times in one sorted array.
SMALL_TALLY = 1024


class _LifetimeTally:
    """All-time replies and points, with every response time kept exactly but compactly.

    Up to ``SMALL_TALLY`` answers, the response times are one sorted ``array("d")`` (8 bytes
    a value). Past that they sit in buckets of 1/8 of an octave (``_bucket``), each an
    ``array("d")``: the exact median is found by counting along the sorted buckets, then
    sorting the one bucket that holds it. At most 8 buckets per octave of response times, so
    ~150 per tally from 1 s to a week. Buckets from the first answer cost ~100 bytes of array
    per value while a tally is small (most values alone in their bucket): at 10,000 agents
    that was most of the all-time tallies' memory.
    """

    __slots__ = ("_buckets", "_median", "_sorted", "answers", "replies", "score_milli")

    def __init__(self) -> None:
        self.replies = 0
        self.score_milli = 0
        self.answers = 0
        self._sorted: array[float] | None = array("d")
        self._buckets: dict[float, array[float]] = {}
        self._median: float | None = None

    def add(self, score_milli: int, response_seconds: float | None) -> None:
        self.replies += 1
        self.score_milli += score_milli
        if response_seconds is None:
            return
        self.answers += 1
        self._median = None
        if self._sorted is not None:
            bisect.insort(self._sorted, response_seconds)
            if len(self._sorted) < SMALL_TALLY:
                return
            values, self._sorted = self._sorted, None
            for value in values:
                self._into_bucket(value)
            return
        self._into_bucket(response_seconds)

    def _into_bucket(self, response_seconds: float) -> None:
        key = _bucket(response_seconds)
        values = self._buckets.get(key)
        if values is None:
            values = self._buckets[key] = array("d")
        values.append(response_seconds)

    def median(self) -> float | None:
        if self.answers == 0:
            return None
        if self._median is None:
            low = self._at_rank((self.answers - 1) // 2)
            high = self._at_rank(self.answers // 2)
            self._median = low if low == high else (low + high) / 2
        return self._median

    def _at_rank(self, rank: int) -> float:
        """The response time at ``rank`` (0-based) in ascending order."""
        if self._sorted is not None:
            return self._sorted[rank]
        seen = 0
        for key in sorted(self._buckets):
            values = self._buckets[key]
            if seen + len(values) > rank:
                return sorted(values)[rank - seen]
            seen += len(values)
        raise IndexError(rank)


def _bucket(seconds: float) -> float:
    """The lower bound of the bucket of ``seconds``: buckets are 1/8 of an octave wide, so
    their order is the order of the values they hold (zero, negative and infinite values
    are their own bucket)."""
    if seconds <= 0.0 or math.isinf(seconds):
        return seconds
    mantissa, exponent = math.frexp(seconds)
    return math.ldexp(math.floor(mantissa * 16) / 16, exponent)


class _AgentDay:
    """One agent's day: tallies (all sources, per source) and badge facts."""

    __slots__ = ("badges", "by_source", "tally")

    def __init__(self) -> None:
        self.tally = _DayTally()
        self.by_source: dict[str | None, _DayTally] = {}
        self.badges = AgentDay()


class _AgentBook:
    """Everything kept about one agent beyond the retained days."""

    __slots__ = ("archived_badges", "lifetime", "lifetime_by_source", "recent")

    def __init__(self) -> None:
        self.lifetime = _LifetimeTally()
        self.lifetime_by_source: dict[str | None, _LifetimeTally] = {}
        # (event_time, content_id, source_id, score_milli, response_seconds), sorted
        self.recent: list[tuple[float, str, str | None, int, float | None]] = []
        self.archived_badges: Counter[str] = Counter()


# A ranked row before it becomes an entry: agent, score (milli), replies, median.
_Row = tuple[str, int, int, float | None]


def _rank_key(row: _Row) -> tuple[int, int, bool, float, str]:
    agent_id, score_milli, replies, median = row
    return (-score_milli, -replies, median is None, median or 0.0, agent_id)


def _median_sorted(values: Sequence[float]) -> float | None:
    if not values:
        return None
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


class Standings:
    """Agent standings over the ``hour``/``today``/``week``/``all`` windows (see module doc)."""

    def __init__(
        self,
        rules: ScoringRules | None = None,
        timezone: str | tzinfo = "UTC",
        directory: Directory | None = None,
    ) -> None:
        self.rules = rules or ScoringRules()
        self.timezone: tzinfo = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self.directory = directory or Directory()
        self._books: dict[str, _AgentBook] = {}
        self._days: dict[int, dict[str, _AgentDay]] = {}
        self._seen: dict[int, set[str]] = {}
        # Dedupe of days archived while catching up (``prune(settled=...)``): sorted hashes.
        self._archived_seen: dict[int, array[int]] = {}
        self._winners: dict[int, str | None] = {}
        self._retained_from: int | None = None
        self._hour_floor: float | None = None
        self.waiting = WaitingTimeline()

    def day_of(self, epoch_seconds: float) -> int:
        """The calendar day (proleptic ordinal) of a time, in the standings' timezone."""
        return datetime.fromtimestamp(epoch_seconds, self.timezone).toordinal()

    def add(self, activity: AgentActivity) -> bool:
        """Count an activity; ``False`` when its content id was already counted."""
        day = self.day_of(activity.event_time)
        archived = self._retained_from is not None and day < self._retained_from
        if archived:
            if not self._first_time_archived(day, activity.content_id):
                return False
        else:
            seen = self._seen.setdefault(day, set())
            if activity.content_id in seen:
                return False
            seen.add(activity.content_id)
        score = points_milli(activity, self.rules)
        response = activity.response_seconds
        book = self._books.get(activity.agent_id)
        if book is None:
            book = self._books[activity.agent_id] = _AgentBook()
        book.lifetime.add(score, response)
        by_source = book.lifetime_by_source.get(activity.source_id)
        if by_source is None:
            by_source = book.lifetime_by_source[activity.source_id] = _LifetimeTally()
        by_source.add(score, response)
        if archived:
            return True
        if self._hour_floor is None or activity.event_time > self._hour_floor:
            entry = (activity.event_time, activity.content_id, activity.source_id, score, response)
            if not book.recent or entry[:2] >= book.recent[-1][:2]:
                book.recent.append(entry)
            else:
                bisect.insort(book.recent, entry, key=itemgetter(0, 1))
        agents = self._days.setdefault(day, {})
        agent_day = agents.get(activity.agent_id)
        if agent_day is None:
            agent_day = agents[activity.agent_id] = _AgentDay()
        agent_day.tally.add(score, response)
        source_tally = agent_day.by_source.get(activity.source_id)
        if source_tally is None:
            source_tally = agent_day.by_source[activity.source_id] = _DayTally()
        source_tally.add(score, response)
        if response is not None:
            agent_day.badges.add_answer(
                activity.event_time,
                activity.content_id,
                activity.within_sla is True,
                activity.source_id,
            )
            self._winners.pop(day, None)
        return True

    def add_waiting_run(self, run: WaitingRun) -> bool:
        """Take a waiting run of the cluster; ``False`` when it changes nothing."""
        return self.waiting.add(run)

    def prune(self, now: float, settled: float | None = None) -> None:
        """Drop per-activity detail no window needs any more at ``now``.

        Keeps the calendar week of ``now`` and yesterday; days before that are folded into
        each agent's archived badges and all-time tallies, which are kept.

        ``settled``: while the caller is still reading a backlog (a cold replica, a catch-up),
        the event time before which it has read every activity and waiting run (its
        watermark). A day is then archived only once it ended a whole day before the day of
        ``settled`` (so a day's badges are decided on all of its activities and runs), and its
        dedupe is kept as 8 bytes an activity until a prune without ``settled`` (caught up).
        ``-inf``: nothing read yet, so only the last hour's detail is trimmed.
        """
        today = self.day_of(now)
        cutoff: int | None = min(self._week_start(today), today - 1)
        if settled is not None and cutoff is not None:
            cutoff = min(cutoff, self.day_of(settled) - 1) if math.isfinite(settled) else None
        if cutoff is not None:
            if self._retained_from is not None:
                cutoff = max(cutoff, self._retained_from)
            self._archive_before(cutoff, keep_dedupe=settled is not None)
        floor = now - HOUR_SECONDS
        self._hour_floor = floor if self._hour_floor is None else max(self._hour_floor, floor)
        for book in self._books.values():
            if book.recent and book.recent[0][0] <= self._hour_floor:
                keep = bisect.bisect_right(book.recent, self._hour_floor, key=itemgetter(0))
                del book.recent[:keep]

    def _archive_before(self, cutoff: int, *, keep_dedupe: bool) -> None:
        for day in [d for d in self._days if d < cutoff]:
            winner = self._winner(day)
            for agent_id, agent_day in self._days.pop(day).items():
                earned = agent_day.badges.badges(self.rules, winner == agent_id, self.waiting)
                self._books[agent_id].archived_badges.update(earned)
            self._winners.pop(day, None)
        for day in [d for d in self._seen if d < cutoff]:
            seen = self._seen.pop(day)
            if keep_dedupe:
                self._archived_seen[day] = array("q", sorted(hash(c) for c in seen))
        if not keep_dedupe:
            self._archived_seen.clear()
        self._retained_from = cutoff
        start = datetime.combine(date.fromordinal(cutoff), time(), self.timezone).timestamp()
        self.waiting.forget_before(start)

    def _first_time_archived(self, day: int, content_id: str) -> bool:
        """Whether an activity of an archived day is new, as far as its kept dedupe tells
        (content ids as 64-bit hashes: a new id taken for a known one is ~10^-13 likely)."""
        hashes = self._archived_seen.get(day)
        if hashes is None:
            return True
        key = hash(content_id)
        at = bisect.bisect_left(hashes, key)
        if at < len(hashes) and hashes[at] == key:
            return False
        hashes.insert(at, key)
        return True

    def leaderboard(
        self,
        window: Window,
        now: float,
        source: str | None = None,
        team: str | None = None,
        limit: int = 10,
    ) -> list[LeaderboardEntry]:
        """The top ``limit`` agents of ``window`` at ``now``, optionally for one source/team."""
        rows = self._ranked(window, now, source, team)[:limit]
        return [
            LeaderboardEntry(
                rank=rank,
                agent_id=agent_id,
                name=self.directory.name(agent_id),
                score=score_milli / 1000,
                replies=replies,
                median_response_seconds=median,
                badges=self._badges(agent_id, window, now),
            )
            for rank, (agent_id, score_milli, replies, median) in enumerate(rows, start=1)
        ]

    def agent(self, agent_id: str, now: float) -> AgentSummary | None:
        """The agent's standing in every window, or ``None`` if it never had an activity."""
        if agent_id not in self._books:
            return None
        windows: dict[str, WindowSummary] = {}
        for window in WINDOWS:
            rows = self._ranked(window, now, None, None)
            found = next(((i, r) for i, r in enumerate(rows, 1) if r[0] == agent_id), None)
            windows[window] = WindowSummary(
                rank=None if found is None else found[0],
                score=0.0 if found is None else found[1][1] / 1000,
                replies=0 if found is None else found[1][2],
                median_response_seconds=None if found is None else found[1][3],
                badges=self._badges(agent_id, window, now),
            )
        return AgentSummary(
            agent_id=agent_id,
            name=self.directory.name(agent_id),
            team=self.directory.team(agent_id),
            windows=windows,
        )

    def gauges(self, now: float, top_n: int) -> list[LeaderboardGauge]:
        """Score and rank of the top ``top_n`` agents of every window, for Prometheus."""
        return [
            LeaderboardGauge(window, agent_id, score_milli / 1000, rank)
            for window in WINDOWS
            for rank, (agent_id, score_milli, _, _) in enumerate(
                self._ranked(window, now, None, None)[:top_n], start=1
            )
        ]

    def agent_ids(self) -> list[str]:
        """Every agent that ever had an activity, sorted."""
        return sorted(self._books)

    # -- internals ---------------------------------------------------------------------

    def _week_start(self, day: int) -> int:
        return day - date.fromordinal(day).weekday()

    def _window_days(self, window: Window, now: float) -> range:
        today = self.day_of(now)
        if window == "week":
            start = self._week_start(today)
            return range(start, start + 7)
        return range(today, today + 1)

    def _ranked(
        self, window: Window, now: float, source: str | None, team: str | None
    ) -> list[_Row]:
        if window == "hour":
            rows = self._hour_rows(now, source)
        elif window == "all":
            rows = self._all_rows(source)
        else:
            rows = self._day_rows(self._window_days(window, now), source)
        if team is not None:
            rows = [row for row in rows if self.directory.team(row[0]) == team]
        rows.sort(key=_rank_key)
        return rows

    def _all_rows(self, source: str | None) -> list[_Row]:
        rows: list[_Row] = []
        for agent_id, book in self._books.items():
            tally = book.lifetime if source is None else book.lifetime_by_source.get(source)
            if tally is not None and tally.replies:
                rows.append((agent_id, tally.score_milli, tally.replies, tally.median()))
        return rows

    def _day_rows(self, days: range, source: str | None) -> list[_Row]:
        tallies: dict[str, list[_DayTally]] = {}
        for day in days:
            for agent_id, agent_day in self._days.get(day, {}).items():
                tally = agent_day.tally if source is None else agent_day.by_source.get(source)
                if tally is not None:
                    tallies.setdefault(agent_id, []).append(tally)
        rows: list[_Row] = []
        for agent_id, parts in tallies.items():
            responses: Sequence[float]
            if len(parts) == 1:
                responses = parts[0].responses
            else:
                responses = sorted(chain.from_iterable(p.responses for p in parts))
            rows.append(
                (
                    agent_id,
                    sum(p.score_milli for p in parts),
                    sum(p.replies for p in parts),
                    _median_sorted(responses),
                )
            )
        return rows

    def _hour_rows(self, now: float, source: str | None) -> list[_Row]:
        rows: list[_Row] = []
        for agent_id, book in self._books.items():
            recent = book.recent
            if not recent:
                continue
            low = bisect.bisect_right(recent, now - HOUR_SECONDS, key=itemgetter(0))
            high = bisect.bisect_right(recent, now, key=itemgetter(0))
            if low >= high:
                continue
            score = replies = 0
            responses: list[float] = []
            for _, _, source_id, score_milli, response in recent[low:high]:
                if source is not None and source_id != source:
                    continue
                score += score_milli
                replies += 1
                if response is not None:
                    responses.append(response)
            if replies:
                responses.sort()
                rows.append((agent_id, score, replies, _median_sorted(responses)))
        return rows

    def _winner(self, day: int) -> str | None:
        if day not in self._winners:
            self._winners[day] = first_to_answer_winner(
                {agent_id: d.badges for agent_id, d in self._days.get(day, {}).items()},
                self.rules.first_to_answer,
            )
        return self._winners[day]

    def _badges(self, agent_id: str, window: Window, now: float) -> list[BadgeCount]:
        counters: list[Mapping[str, int]] = []
        days: Iterable[int]
        if window == "all":
            book = self._books.get(agent_id)
            if book is not None:
                counters.append(book.archived_badges)
            days = list(self._days)
        else:
            days = self._window_days(window, now)
        for day in days:
            agent_day = self._days.get(day, {}).get(agent_id)
            if agent_day is not None:
                winner = self._winner(day) == agent_id
                counters.append(agent_day.badges.badges(self.rules, winner, self.waiting))
        return badge_counts(counters)
