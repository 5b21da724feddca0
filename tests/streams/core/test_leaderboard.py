"""Standings against the naive reference, plus the window edges a user would notice."""

from __future__ import annotations

import math
import random
import statistics
from datetime import datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.directory import AgentProfile, Directory
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.leaderboard import SMALL_TALLY, WINDOWS, Standings, _LifetimeTally
from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import WaitingRun
from tests.references.leaderboard import (
    Wait,
    reference_badges,
    reference_leaderboard,
    unique,
    window_dates,
)

RULES = ScoringRules(
    reply=1.0,
    within_sla_bonus=2.0,
    fast_answer_bonus=3.5,
    fast_answer_seconds=60.0,
    first_response_bonus=0.5,
    source_type_weights=MappingProxyType({"email": 1.5}),
    source_id_weights=MappingProxyType({"s2": 0.25}),
    sla_streaks=(2, 4),
    first_to_answer=3,
)
TEAMS = {"a0": "red", "a1": "blue", "a2": "red", "a3": "blue"}  # a4: no team
DIRECTORY = Directory(
    MappingProxyType({a: AgentProfile(name=f"Agent {a}", team=t) for a, t in TEAMS.items()})
)
SOURCES = {"s0": "email", "s1": "messaging", "s2": "twitter"}


def local(text: str, zone: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def act(
    agent: str,
    content: str,
    when: float,
    response: float | None = 30.0,
    *,
    source: str | None = "s1",
    first: bool = False,
    sla: bool | None = None,
) -> AgentActivity:
    return AgentActivity(
        agent_id=agent,
        content_id=content,
        thread_id=f"t-{content}",
        source_id=source,
        source_type=SOURCES.get(source or ""),
        event_time=when,
        response_seconds=response,
        first_response=first,
        within_sla=(response is not None and response <= 300) if sla is None else sla,
    )


def waiting_runs(
    waits: list[tuple[str | None, float, float | None]], rng: random.Random
) -> tuple[list[WaitingRun], list[Wait]]:
    """Records of these waits as a partition publishes them (a closed run's open record
    too, sometimes, and a few redelivered), shuffled; and the waits for the reference."""
    records: list[WaitingRun] = []
    for i, (source, since, until) in enumerate(waits):
        closed = WaitingRun(thread_id=f"w{i}", source_id=source, source_type=None, since=since,
                            until=until)  # fmt: skip
        records.append(closed)
        if until is not None and rng.random() < 0.5:
            records.append(msgspec.structs.replace(closed, until=None))
    records += rng.sample(records, k=len(records) // 4)
    rng.shuffle(records)
    return records, [(s, a, math.inf if b is None else b) for s, a, b in waits]


def as_rows(standings: Standings, window: Any, now: float, **kw: Any) -> list[dict[str, Any]]:
    rows = []
    for entry in standings.leaderboard(window, now, limit=1000, **kw):
        row = msgspec.to_builtins(entry)
        assert row.pop("name") == DIRECTORY.name(entry.agent_id)
        rows.append(row)
    return rows


def assert_matches_reference(
    standings: Standings,
    activities: list[AgentActivity],
    now: float,
    zone: str,
    waits: list[Wait] | None = None,
) -> None:
    for window in WINDOWS:
        for source in (None, "s0", "s2", "nowhere"):
            for team in (None, "red", "blue"):
                got = as_rows(standings, window, now, source=source, team=team)
                want = reference_leaderboard(
                    activities, RULES, now, zone, window, source=source, team=team,
                    teams=TEAMS, waits=waits or [],
                )  # fmt: skip
                assert got == want, (window, source, team)


# Moments around the 2024 DST changes in Paris and week boundaries (local times).
NOWS = [
    ("2024-03-31T03:30", "Europe/Paris"),  # one hour after clocks jumped forward, Sunday
    ("2024-04-01T00:30", "Europe/Paris"),  # Monday just after midnight: a new week
    ("2024-10-27T02:30", "Europe/Paris"),  # inside the repeated hour, Sunday
    ("2024-10-27T23:59", "Europe/Paris"),  # last minute of a 25-hour Sunday
    ("2024-11-03T01:30", "America/New_York"),  # repeated hour in New York
    ("2024-06-12T12:00", "UTC"),
]

activity_params = st.tuples(
    st.sampled_from(["a0", "a1", "a2", "a3", "a4"]),
    st.sampled_from(["s0", "s1", "s2", None]),
    st.one_of(
        st.integers(-9 * 86400, 2 * 3600),  # anywhere in ~9 days
        st.integers(-2 * 3600, 600),  # around the last hour
        st.sampled_from([-3600, 0, 1, -3599]),  # hour window edges
    ),
    st.one_of(st.none(), st.integers(0, 900), st.floats(0, 900, allow_nan=False)),
    st.booleans(),
    st.booleans(),
)
# Customers waiting: channel, since (offset from now, s), how long (None: still waiting).
wait_params = st.tuples(
    st.sampled_from(["s0", "s1", "s2", None]),
    st.integers(-9 * 86400, 2 * 3600),
    st.one_of(st.none(), st.integers(0, 4 * 3600), st.sampled_from([0, 1])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=st.lists(activity_params, max_size=60),
    wait_offsets=st.lists(wait_params, max_size=12),
    now_at=st.sampled_from(NOWS),
    duplicate_seed=st.integers(0, 10**6),
)
def test_standings_equal_reference(
    params: list[tuple[Any, ...]],
    wait_offsets: list[tuple[Any, ...]],
    now_at: tuple[str, str],
    duplicate_seed: int,
) -> None:
    zone = now_at[1]
    now = local(*now_at)
    activities = [
        act(
            agent,
            f"c{i}",
            now + offset,
            response,
            source=source,
            first=first,
            sla=sla,
        )
        for i, (agent, source, offset, response, first, sla) in enumerate(params)
    ]
    rng = random.Random(duplicate_seed)
    delivered = activities + rng.sample(activities, k=len(activities) // 3)
    rng.shuffle(delivered)
    runs, waits = waiting_runs(
        [(s, now + a, None if d is None else now + a + d) for s, a, d in wait_offsets], rng
    )
    standings = Standings(RULES, zone, DIRECTORY)
    records: list[AgentActivity | WaitingRun] = [*delivered, *runs]
    rng.shuffle(records)
    added = [
        standings.add_waiting_run(r) if isinstance(r, WaitingRun) else standings.add(r)
        for r in records
    ]
    assert sum(added) >= len(unique(delivered))
    assert_matches_reference(standings, delivered, now, zone, waits)
    # Pruning keeps every window's answer at `now`.
    standings.prune(now)
    assert_matches_reference(standings, delivered, now, zone, waits)
    # ... and duplicates delivered after the prune (within retained days) are still dropped.
    retained = window_dates("week", now, ZoneInfo(zone))
    assert retained is not None
    for activity in rng.sample(activities, k=min(5, len(activities))):
        day = datetime.fromtimestamp(activity.event_time, ZoneInfo(zone)).date()
        if day in retained:
            assert standings.add(activity) is False
    assert_matches_reference(standings, delivered, now, zone, waits)


@pytest.mark.parametrize("seed", range(12))
def test_larger_random_days_equal_reference(seed: int) -> None:
    rng = random.Random(seed)
    zone, now_text = (
        ("Europe/Paris", "2024-10-27T23:00") if seed % 2 else ("UTC", "2024-05-06T09:00")
    )
    now = local(now_text, zone)
    activities = []
    for i in range(600):
        response = (
            None
            if rng.random() < 0.2
            else float(rng.choice([5, 30, 59, 60, 61, 299, 300, 301, 1200]))
        )
        activities.append(
            act(
                rng.choice(["a0", "a1", "a2", "a3", "a4", "a5"]),
                f"c{i}",
                now - rng.uniform(0, 10 * 86400)
                if rng.random() < 0.7
                else now - rng.uniform(0, 7200),
                response,
                source=rng.choice(["s0", "s1", "s2"]),
                first=rng.random() < 0.3,
                sla=None if rng.random() < 0.9 else False,
            )
        )
    runs, waits = waiting_runs(
        [
            (
                rng.choice(["s0", "s1", "s2"]),
                since := now - rng.uniform(0, 10 * 86400),
                None if rng.random() < 0.05 else since + rng.uniform(0, 6 * 3600),
            )
            for _ in range(30)
        ],
        rng,
    )
    standings = Standings(RULES, zone, DIRECTORY)
    for activity in activities + activities[:50]:
        standings.add(activity)
    for r in runs:
        standings.add_waiting_run(r)
    assert_matches_reference(standings, activities, now, zone, waits)
    # Standing still and pruning an hour later: the windows at the new now still agree.
    later = now + 3600
    standings.prune(later)
    assert_matches_reference(standings, activities, later, zone, waits)


@pytest.mark.parametrize("seed", range(8))
def test_pruning_while_catching_up_changes_nothing(seed: int) -> None:
    """A replica reading weeks of backlog prunes as it goes (``settled``: the event time it
    has read up to): redeliveries of an archived day are still dropped, every day's badges
    are decided on all of its activities and runs, and once caught up every window equals the
    reference, as if it had read everything first."""
    rng = random.Random(seed)
    zone = "Europe/Paris" if seed % 2 else "UTC"
    now = local("2024-10-30T15:00" if seed % 2 else "2024-06-12T12:00", zone)
    activities = [
        act(
            rng.choice(["a0", "a1", "a2", "a3", "a4"]),
            f"c{i}",
            now - rng.uniform(0, 24 * 86400),
            None if rng.random() < 0.2 else float(rng.choice([5, 59, 60, 61, 299, 301])),
            source=rng.choice(["s0", "s1", "s2"]),
            first=rng.random() < 0.3,
        )
        for i in range(700)
    ]
    runs, waits = waiting_runs(
        [
            (
                rng.choice(["s0", "s1", "s2"]),
                since := now - rng.uniform(0, 24 * 86400),
                None if rng.random() < 0.05 else since + rng.uniform(0, 3 * 3600),
            )
            for _ in range(60)
        ],
        rng,
    )
    # As the topics hold them: in publish order, a few minutes after their event time (some
    # up to 20 hours: a partition far behind); a redelivery (a processor restarted) up to six
    # hours after the original.
    published: list[tuple[float, AgentActivity | WaitingRun]] = [
        (a.event_time + rng.uniform(0, 600 if rng.random() < 0.95 else 20 * 3600), a)
        for a in activities
    ]
    published += [
        (a.event_time + rng.uniform(600, 6 * 3600), a) for a in rng.sample(activities, k=150)
    ]
    published += [(r.since if r.until is None else r.until, r) for r in runs]
    published.sort(key=lambda pair: pair[0])
    standings = Standings(RULES, zone, DIRECTORY)
    settled = -math.inf
    archived_while_reading = False
    for n, (_, record) in enumerate(published):
        if isinstance(record, WaitingRun):
            standings.add_waiting_run(record)
            settled = max(settled, record.since if record.until is None else record.until)
        else:
            standings.add(record)
            settled = max(settled, record.event_time)
        if n % 50 == 0:  # as the replica: the latest event time read, whatever came late
            standings.prune(now, settled=settled)
            archived_while_reading |= bool(standings._archived_seen)
    assert archived_while_reading  # the case under test happened
    standings.prune(now)  # caught up
    assert not standings._archived_seen
    assert_matches_reference(standings, activities, now, zone, waits)


def test_agent_summary_matches_leaderboards() -> None:
    now = local("2024-06-12T12:00", "UTC")
    activities = [
        act("a0", "c1", now - 10, 20.0, first=True),
        act("a0", "c2", now - 7200, 400.0),
        act("a1", "c3", now - 5, None),
        act("a1", "c4", now - 86400 * 3, 10.0),
    ]
    standings = Standings(RULES, "UTC", DIRECTORY)
    for activity in activities:
        standings.add(activity)
    assert standings.agent("nobody", now) is None
    summary = standings.agent("a0", now)
    assert summary is not None and summary.name == "Agent a0" and summary.team == "red"
    for window in WINDOWS:
        ref = {
            r["agent_id"]: r for r in reference_leaderboard(activities, RULES, now, "UTC", window)
        }
        got = summary.windows[window]
        if "a0" in ref:
            assert got.rank == ref["a0"]["rank"]
            assert got.score == ref["a0"]["score"]
            assert got.replies == ref["a0"]["replies"]
            assert got.median_response_seconds == ref["a0"]["median_response_seconds"]
        else:
            assert (got.rank, got.score, got.replies) == (None, 0.0, 0)
    # Hand-checked: a0 in the last hour has one fast first answer: 1 + 3.5 + 0.5 points.
    assert summary.windows["hour"].score == 5.0
    assert summary.windows["today"].replies == 2


def test_hour_window_is_rolling_sixty_minutes_ending_now() -> None:
    now = 1_700_000_000.0
    standings = Standings(RULES)
    standings.add(act("a0", "exactly-an-hour-ago", now - 3600, None))
    standings.add(act("a1", "just-inside", now - 3599.5, None))
    standings.add(act("a2", "in-the-future", now + 1, None))
    standings.add(act("a3", "now", now, None))
    assert [e.agent_id for e in standings.leaderboard("hour", now)] == ["a1", "a3"]


def test_week_starts_monday_in_the_configured_timezone() -> None:
    # Sunday 23:30 in Paris (21:30 UTC) belongs to the week before Monday 00:30 in Paris.
    sunday_late = local("2024-04-07T23:30", "Europe/Paris")
    monday_early = local("2024-04-08T00:30", "Europe/Paris")
    standings = Standings(RULES, "Europe/Paris")
    standings.add(act("a0", "sunday", sunday_late, None))
    standings.add(act("a1", "monday", monday_early, None))
    assert [e.agent_id for e in standings.leaderboard("week", monday_early + 60)] == ["a1"]
    assert [e.agent_id for e in standings.leaderboard("today", sunday_late + 60)] == ["a0"]
    utc = Standings(RULES, "UTC")
    utc.add(act("a0", "sunday", sunday_late, None))
    utc.add(act("a1", "monday", monday_early, None))
    # In UTC both are on Sunday 7 April: the same week.
    assert {e.agent_id for e in utc.leaderboard("week", monday_early + 60)} == {"a0", "a1"}


def test_ties_are_broken_by_replies_then_median_then_agent_id() -> None:
    now = 1_700_000_000.0
    rules = ScoringRules(reply=1, within_sla_bonus=0, fast_answer_bonus=0, first_response_bonus=0)
    standings = Standings(rules)
    # Every content is worth 1 point; d and e have 2 points, one answer each.
    standings.add(act("e", "e1", now - 10, 100.0))
    standings.add(act("e", "e2", now - 10, None))
    standings.add(act("d", "d1", now - 10, 50.0))
    standings.add(act("d", "d2", now - 10, None))
    standings.add(act("c", "c1", now - 10, None))  # 2 points, no answers: median None, last
    standings.add(act("c", "c2", now - 10, None))
    standings.add(act("b", "b1", now - 10, 50.0))  # same as d: agent id decides
    standings.add(act("b", "b2", now - 10, None))
    standings.add(act("a", "a1", now - 10, 999.0))  # 1 point only
    order = [e.agent_id for e in standings.leaderboard("all", now)]
    assert order == ["b", "d", "e", "c", "a"]
    assert [e.rank for e in standings.leaderboard("all", now)] == [1, 2, 3, 4, 5]
    assert [e.agent_id for e in standings.leaderboard("all", now, limit=2)] == ["b", "d"]


def test_median_of_even_count_is_the_mean_of_the_middle_two() -> None:
    now = 1_700_000_000.0
    standings = Standings(RULES)
    for i, seconds in enumerate([10.0, 40.0, 20.0, 1000.0]):
        standings.add(act("a0", f"c{i}", now - 100 - i, seconds))
    for window in WINDOWS:
        (entry,) = standings.leaderboard(window, now)
        assert entry.median_response_seconds == 30.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=10 * 86400.0),
            st.sampled_from([0.0, 1.0, 1.5, 59.999, 60.0, 3600.0]),  # ties and bucket edges
        ),
        min_size=1,
        max_size=300,
    )
)
def test_all_time_median_is_exact_for_any_response_times(responses: list[float]) -> None:
    """All-time response times are kept in buckets: the median is still the exact one, for
    one source and for all (an activity of a day long pruned counts in all-time only)."""
    now = 1_700_000_000.0
    standings = Standings(RULES)
    standings.prune(now)
    for i, seconds in enumerate(responses):
        standings.add(act("a0", f"c{i}", now - 30 * 86400 - i, seconds))  # pruned days
    expected = statistics.median(responses)
    for source in (None, "s1"):
        (entry,) = standings.leaderboard("all", now, source=source)
        assert entry.median_response_seconds == expected


def test_badges_once_per_day_and_out_of_order_streaks() -> None:
    now = local("2024-06-12T18:00", "UTC")
    standings = Standings(RULES)
    # a0 answers 4 in SLA at 09:00..09:03 but the third arrives last; 5th is outside SLA.
    times = [now - 9 * 3600 + 60 * i for i in range(5)]
    standings.add(act("a0", "x0", times[0], 10.0, source="s1"))
    standings.add(act("a0", "x1", times[1], 10.0, source="s1"))
    standings.add(act("a0", "x3", times[3], 10.0, source="s0"))
    # A customer of s2 waits all day: no answer there clears it (none of a0's is in s2).
    standings.add_waiting_run(
        WaitingRun(thread_id="q", source_id="s2", source_type=None, since=now - 86400)
    )
    standings.add(act("a0", "x5", times[4] + 60, None, source="s2"))  # proactive: never
    standings.add(act("a0", "x4", times[4], 500.0))
    badges = {b.badge: b.count for b in standings.leaderboard("today", now)[0].badges}
    assert badges == {"sla_streak_2": 1, "cleared_backlog": 2, "first_to_3": 1}
    # The late in-SLA answer at 09:02 completes a 4-answer run.
    standings.add(act("a0", "x2", times[2], 10.0))
    badges = {b.badge: b.count for b in standings.leaderboard("today", now)[0].badges}
    assert badges == {"sla_streak_2": 1, "sla_streak_4": 1, "cleared_backlog": 2, "first_to_3": 1}
    # a late answer outside SLA in the middle breaks the 4-run again (badges follow event time)
    standings.add(act("a0", "x25", times[2] + 1, 900.0))
    badges = {b.badge: b.count for b in standings.leaderboard("today", now)[0].badges}
    assert "sla_streak_4" not in badges
    # a1 reaches 3 answers earlier than a0's third (09:02): the race is a1's.
    for i in range(3):
        standings.add(act("a1", f"y{i}", times[0] - 100 + i, 400.0))
    by_agent = {
        e.agent_id: {b.badge for b in e.badges} for e in standings.leaderboard("today", now)
    }
    assert "first_to_3" in by_agent["a1"] and "first_to_3" not in by_agent["a0"]


def test_badges_of_pruned_days_stay_in_all() -> None:
    zone = "Europe/Paris"
    monday = local("2024-04-01T10:00", zone)
    standings = Standings(RULES, zone)
    activities = [act("a0", f"w{i}", monday + 60 * i, 10.0) for i in range(4)]
    for activity in activities:
        standings.add(activity)
    two_weeks_later = monday + 14 * 86400
    standings.prune(two_weeks_later)
    (entry,) = standings.leaderboard("all", two_weeks_later)
    want = reference_badges(activities, RULES, ZoneInfo(zone), None)["a0"]
    assert {b.badge: b.count for b in entry.badges} == want
    assert want == {"sla_streak_2": 1, "sla_streak_4": 1, "first_to_3": 1, "cleared_backlog": 1}
    assert standings.leaderboard("week", two_weeks_later) == []
    # A late activity of a pruned day still counts in all-time totals.
    assert standings.add(act("a0", "late", monday + 3600, None))
    assert standings.leaderboard("all", two_weeks_later)[0].replies == 5


@pytest.mark.parametrize("answers", [1, 2, 7, SMALL_TALLY - 1, SMALL_TALLY, SMALL_TALLY + 1, 5000])
def test_all_time_medians_are_exact_below_and_past_the_small_tally(answers: int) -> None:
    rng = random.Random(answers)
    tally = _LifetimeTally()
    values: list[float] = []
    for i in range(answers):
        # repeated values, zero and a few huge ones among ordinary response times
        value = rng.choice([0.0, 30.0, 30.0, 1e9]) if i % 13 == 0 else rng.uniform(0.5, 9000)
        tally.add(100, value)
        tally.add(100, None)  # a reply that answers nothing
        values.append(value)
        if i % 97 == 0 or i == answers - 1:
            assert tally.median() == statistics.median(values)
    assert (tally.answers, tally.replies) == (answers, 2 * answers)
