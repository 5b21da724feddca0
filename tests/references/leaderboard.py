"""An independent, naive leaderboard: straight from the definitions, no incremental state.

Used by the tests to check ``streams.core.gamification.leaderboard.Standings``. It re-reads
the whole list of activities for every question, uses exact fractions for points,
``statistics.median`` for medians and ``datetime.date`` arithmetic for calendar windows.
``cleared_backlog`` comes from every customer content's waiting interval in the cluster
(``Wait`` = source id, sent, answered or ``inf``): an answer clears its channel when no
interval of that channel holds its time. It deliberately shares no code with ``streams/``
beyond the ``AgentActivity`` and ``ScoringRules`` data types."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.scoring import ScoringRules


def unique(activities: Iterable[AgentActivity]) -> list[AgentActivity]:
    """The activities with repeated content ids removed (the first delivery wins)."""
    seen: set[str] = set()
    out = []
    for activity in activities:
        if activity.content_id not in seen:
            seen.add(activity.content_id)
            out.append(activity)
    return out


def reference_points_milli(activity: AgentActivity, rules: ScoringRules) -> int:
    """Points in thousandths, computed with exact fractions."""
    total = Fraction(rules.reply)
    is_answer = activity.response_seconds is not None
    fast = is_answer and activity.response_seconds <= rules.fast_answer_seconds  # type: ignore[operator]
    if fast:
        total += Fraction(rules.fast_answer_bonus)
    if is_answer and not fast and activity.within_sla:
        total += Fraction(rules.within_sla_bonus)
    if is_answer and activity.first_response:
        total += Fraction(rules.first_response_bonus)
    weight = Fraction(1)
    if activity.source_type in rules.source_type_weights:
        weight = Fraction(rules.source_type_weights[activity.source_type])  # type: ignore[index]
    if activity.source_id in rules.source_id_weights:
        weight = Fraction(rules.source_id_weights[activity.source_id])  # type: ignore[index]
    return round(total * weight * 1000)


#: A customer content's wait: (source id, sent, answered -- ``math.inf`` while it waits).
Wait = tuple[str | None, float, float]


def channel_clear(waits: Iterable[Wait], source_id: str | None, when: float) -> bool:
    """No customer of the channel waits at ``when``: none sent at or before it and answered
    after it (or not yet)."""
    return not any(s == source_id and sent <= when < until for s, sent, until in waits)


def local_date(epoch: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(epoch, tz).date()


def window_dates(window: str, now: float, tz: ZoneInfo) -> set[date] | None:
    """The calendar dates of a calendar window (None: not a calendar window)."""
    today = local_date(now, tz)
    if window in ("hour", "today"):
        return {today}
    if window == "week":
        monday = today - timedelta(days=today.isoweekday() - 1)
        return {monday + timedelta(days=i) for i in range(7)}
    return None


def in_window(activity: AgentActivity, window: str, now: float, tz: ZoneInfo) -> bool:
    if window == "all":
        return True
    if window == "hour":
        return now - 3600 < activity.event_time <= now
    dates = window_dates(window, now, tz)
    assert dates is not None
    return local_date(activity.event_time, tz) in dates


def reference_badges(
    activities: list[AgentActivity],
    rules: ScoringRules,
    tz: ZoneInfo,
    dates: set[date] | None,
    waits: Iterable[Wait] = (),
) -> dict[str, dict[str, int]]:
    """agent -> badge -> count over the given local dates (None: every date)."""
    waits_of: dict[str | None, list[Wait]] = {}
    for wait in waits:
        waits_of.setdefault(wait[0], []).append(wait)
    by_day: dict[date, list[AgentActivity]] = {}
    for activity in unique(activities):
        if activity.response_seconds is None:
            continue
        day = local_date(activity.event_time, tz)
        if dates is None or day in dates:
            by_day.setdefault(day, []).append(activity)
    result: dict[str, dict[str, int]] = {}

    def award(agent: str, badge: str, count: int = 1) -> None:
        counts = result.setdefault(agent, {})
        counts[badge] = counts.get(badge, 0) + count

    for answers in by_day.values():
        agents = sorted({a.agent_id for a in answers})
        nth_times: list[tuple[float, str]] = []
        for agent in agents:
            mine = sorted(
                (a for a in answers if a.agent_id == agent),
                key=lambda a: (a.event_time, a.content_id),
            )
            longest = 0
            for start in range(len(mine)):
                length = 0
                while start + length < len(mine) and mine[start + length].within_sla is True:
                    length += 1
                longest = max(longest, length)
            for threshold in rules.sla_streaks:
                if longest >= threshold:
                    award(agent, f"sla_streak_{threshold}")
            if len(mine) >= rules.first_to_answer:
                nth_times.append((mine[rules.first_to_answer - 1].event_time, agent))
            cleared = {
                a.source_id
                for a in mine
                if channel_clear(waits_of.get(a.source_id, []), a.source_id, a.event_time)
            }
            if cleared:
                award(agent, "cleared_backlog", len(cleared))
        if nth_times:
            award(min(nth_times)[1], f"first_to_{rules.first_to_answer}")
    return result


def reference_leaderboard(
    activities: Iterable[AgentActivity],
    rules: ScoringRules,
    now: float,
    timezone: str,
    window: str,
    source: str | None = None,
    team: str | None = None,
    teams: Mapping[str, str] | None = None,
    limit: int | None = None,
    waits: Iterable[Wait] = (),
) -> list[dict[str, Any]]:
    """Rows ``{rank, agent_id, score, replies, median_response_seconds, badges}``."""
    tz = ZoneInfo(timezone)
    everything = unique(activities)
    chosen = [
        a
        for a in everything
        if in_window(a, window, now, tz)
        and (source is None or a.source_id == source)
        and (team is None or (teams or {}).get(a.agent_id) == team)
    ]
    agents = sorted({a.agent_id for a in chosen})
    badges = reference_badges(everything, rules, tz, window_dates(window, now, tz), waits)
    rows = []
    for agent in agents:
        mine = [a for a in chosen if a.agent_id == agent]
        responses = [a.response_seconds for a in mine if a.response_seconds is not None]
        rows.append(
            {
                "agent_id": agent,
                "score": sum(reference_points_milli(a, rules) for a in mine) / 1000,
                "replies": len(mine),
                "median_response_seconds": statistics.median(responses) if responses else None,
                "badges": [
                    {"badge": b, "count": c} for b, c in sorted(badges.get(agent, {}).items())
                ],
            }
        )
    # Each tie-break rule applied as a stable sort, least important first.
    rows.sort(key=lambda r: r["agent_id"])
    rows.sort(
        key=lambda r: (r["median_response_seconds"] is None, r["median_response_seconds"] or 0)
    )
    rows.sort(key=lambda r: r["replies"], reverse=True)
    rows.sort(key=lambda r: r["score"], reverse=True)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows if limit is None else rows[:limit]
