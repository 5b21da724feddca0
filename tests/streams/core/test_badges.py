"""Badge rules on their own: streaks in event-time order, the first-to-N race, counts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from streams.core.gamification.badges import (
    AgentDay,
    BadgeCount,
    badge_counts,
    first_to_answer_winner,
    first_to_badge,
    streak_badge,
)
from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import WaitingRun, WaitingTimeline


def longest_run(flags: list[bool]) -> int:
    """Reference: the longest run of True, by brute force over every start."""
    best = 0
    for start in range(len(flags)):
        end = start
        while end < len(flags) and flags[end]:
            end += 1
        best = max(best, end - start)
    return best


@pytest.mark.parametrize("seed", range(30))
def test_longest_sla_run_is_in_event_time_order_whatever_the_arrival_order(seed: int) -> None:
    rng = random.Random(seed)
    answers = [(float(rng.randrange(50)), f"c{i}", rng.random() < 0.7) for i in range(40)]
    day = AgentDay()
    for when, content, ok in rng.sample(answers, len(answers)):
        day.add_answer(when, content, ok)
    in_order = [ok for _, _, ok in sorted(answers)]
    assert day.longest_sla_run == longest_run(in_order)
    assert day.answers == 40


def test_streak_badges_once_per_threshold_per_day() -> None:
    rules = ScoringRules(sla_streaks=(2, 3), first_to_answer=99)
    day = AgentDay()
    for i, ok in enumerate([True, True, False, True, True, True, False, True, True]):
        day.add_answer(float(i), f"c{i}", ok)
    busy = WaitingTimeline()  # a customer waits all day: no cleared_backlog
    busy.add(WaitingRun(thread_id="q", source_id=None, source_type=None, since=-1.0))
    assert day.badges(rules, first_to_answer=False, waiting=busy) == Counter(
        {"sla_streak_2": 1, "sla_streak_3": 1}
    )


def test_cleared_backlog_counts_channels_and_first_to_is_a_flag() -> None:
    rules = ScoringRules(sla_streaks=(9,), first_to_answer=4)
    waiting = WaitingTimeline()
    waiting.add(WaitingRun(thread_id="q", source_id="s3", source_type=None, since=0.0))
    waiting.add(WaitingRun(thread_id="r", source_id="s2", source_type=None, since=0, until=15))
    day = AgentDay()
    day.add_answer(10.0, "c1", True, "s1")
    day.add_answer(11.0, "c2", True, "s1")  # the same channel again: still one
    day.add_answer(12.0, "c3", True, "s2")  # someone waits in s2 until 15 ...
    day.add_answer(20.0, "c4", True, "s2")  # ... not any more at 20
    day.add_answer(30.0, "c5", True, "s3")  # s3 has a customer waiting since 0
    assert day.badges(rules, first_to_answer=True, waiting=waiting) == Counter(
        {"cleared_backlog": 2, "first_to_4": 1}
    )
    # A run that arrives later re-decides: s1 was busy the whole time after all.
    waiting.add(WaitingRun(thread_id="p", source_id="s1", source_type=None, since=5, until=50))
    assert day.badges(rules, first_to_answer=False, waiting=waiting) == Counter(
        {"cleared_backlog": 1}
    )


def test_first_to_answer_race_uses_the_nth_answer_time_then_agent_id() -> None:
    fast, slow, tie = AgentDay(), AgentDay(), AgentDay()
    for i, when in enumerate([1.0, 2.0, 50.0]):
        fast.add_answer(when, f"f{i}", True)
    for i, when in enumerate([0.0, 0.5, 60.0, 61.0]):  # earlier start, later 3rd answer
        slow.add_answer(when, f"s{i}", True)
    for i, when in enumerate([10.0, 20.0, 50.0]):  # same 3rd-answer time as "fast"
        tie.add_answer(when, f"t{i}", True)
    assert first_to_answer_winner({"zed": fast, "amy": slow}, 3) == "zed"
    assert first_to_answer_winner({"zed": fast, "bob": tie, "amy": slow}, 3) == "bob"
    assert first_to_answer_winner({"zed": fast}, 4) is None


def test_badge_names_and_counts() -> None:
    assert streak_badge(10) == "sla_streak_10"
    assert first_to_badge(25) == "first_to_25"
    assert badge_counts([{"b": 1, "a": 2}, Counter({"b": 2, "z": 0})]) == [
        BadgeCount("a", 2),
        BadgeCount("b", 3),
    ]
