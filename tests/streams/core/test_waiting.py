"""Cluster-wide ``cleared_backlog``: waiting runs from the partitions, the timeline, the badge.

The processor's runs, merged over every partition, must say "nobody of this channel waits at
t" exactly when the independent reference (every customer content's waiting interval,
``tests/references/responses.py``) says so -- whatever the arrival order, duplicates or a
crash and replay. Then the badge, through ``Standings``, on a case the old per-partition rule
got wrong.
"""

from __future__ import annotations

import itertools
import math
import random
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage_streams.record import ContentEvent, encode_event
from simulator.scenario import ScenarioConfig, generate
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import (
    WaitingRun,
    WaitingTimeline,
    decode_run,
    encode_run,
    merged_runs,
)
from streams.core.responses.partition import (
    PartitionProcessor,
    PartitionState,
    decode_partition_state,
    decode_thread_state,
    encode_partition_state,
    encode_thread_state,
)
from streams.core.responses.sla import SlaPolicy
from streams.core.responses.threads import ThreadState
from tests.plugins.stores import MemoryThreadStore
from tests.references.leaderboard import Wait, channel_clear
from tests.references.responses import Expected, Step, reference

WINDOW = 10.0
T0 = 1772438400.0
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def run(thread: str, since: float, until: float | None = None, source: str = "wa") -> WaitingRun:
    return WaitingRun(
        thread_id=thread, source_id=source, source_type="whatsapp", since=since, until=until
    )


# -- the timeline on its own ----------------------------------------------------------------


def test_an_open_run_keeps_the_channel_busy_from_its_start_on() -> None:
    timeline = WaitingTimeline()
    assert timeline.clear_at("wa", 100.0)  # nobody ever waited: clear
    timeline.add(run("t1", 100.0))
    assert timeline.clear_at("wa", 99.9)
    assert not timeline.clear_at("wa", 100.0)  # a customer sent at that very moment waits
    assert not timeline.clear_at("wa", 1e12)
    assert timeline.clear_at("mail", 500.0)  # other channels are not concerned


def test_a_closed_run_is_half_open_and_runs_merge() -> None:
    timeline = WaitingTimeline()
    for r in (run("t1", 100.0, 200.0), run("t2", 150.0, 300.0), run("t3", 300.0, 310.0)):
        timeline.add(r)
    timeline.add(run("t4", 400.0, 400.0))  # empty: nobody waited
    times = (99.0, 100.0, 199.0, 200.0, 299.0, 300.0, 309.0, 310.0, 400.0)
    assert [timeline.clear_at("wa", t) for t in times] == [
        True, False, False, False, False, False, False, True, True,
    ]  # fmt: skip


def test_records_of_one_run_merge_whatever_their_order() -> None:
    records = [
        run("t1", 100.0),  # opened
        run("t1", 100.0, 180.0),  # closed by an answer
        run("t1", 100.0),  # redelivered after a crash
        run("t2", 150.0, 160.0),
        run("t2", 150.0, 160.0),
    ]
    probes = [99.0, 100.0, 155.0, 170.0, 180.0, 1e9]
    answers = set()
    for order in itertools.permutations(records):
        timeline = WaitingTimeline()
        changed = [timeline.add(r) for r in order]
        assert sum(changed) >= 2 and len(timeline) == 2
        answers.add(tuple(timeline.clear_at("wa", t) for t in probes))
    assert answers == {(True, False, False, False, True, True)}


def test_forget_before_drops_only_runs_that_ended() -> None:
    timeline = WaitingTimeline()
    timeline.add(run("old", 10.0, 20.0))
    timeline.add(run("open", 15.0))
    timeline.add(run("recent", 30.0, 40.0))
    assert timeline.forget_before(20.0) == 1
    assert len(timeline) == 2 and not timeline.clear_at("wa", 35.0)


@pytest.mark.parametrize("seed", range(20))
def test_the_timeline_answers_like_a_scan_of_every_run_while_runs_arrive(seed: int) -> None:
    rng = random.Random(seed)
    timeline = WaitingTimeline()
    latest: dict[tuple[str, float], WaitingRun] = {}  # the greatest record of each run

    def rank(r: WaitingRun) -> tuple[bool, float, str]:
        return (r.until is not None, r.until or 0.0, r.source_id or "")

    floor = -math.inf
    for step in range(300):
        since = float(rng.randrange(0, 200))
        record = run(
            f"t{rng.randrange(40)}",
            since,
            None if rng.random() < 0.3 else since + rng.randrange(0, 30),
            source=rng.choice(["wa", "mail"]),
        )
        timeline.add(record)
        if record.key not in latest or rank(record) > rank(latest[record.key]):
            latest[record.key] = record
        if step % 100 == 99:
            floor = float(rng.randrange(0, 150))
            timeline.forget_before(floor)
            latest = {k: r for k, r in latest.items() if r.until is None or r.until > floor}
        for when in (rng.uniform(max(floor, 0), 240) for _ in range(5)):
            for source in ("wa", "mail"):
                want = not any(
                    r.source_id == source
                    and r.since <= when < (math.inf if r.until is None else r.until)
                    for r in latest.values()
                )
                assert timeline.clear_at(source, when) == want, (step, source, when)
    assert len(timeline) == len(latest)


def test_runs_round_trip_as_json() -> None:
    for r in (run("t1", T0 + 0.1), run("t1", T0 + 0.1, T0 + 0.30000000000000004)):
        assert decode_run(encode_run(r)) == r
    assert run("t", 1.5).record_key() == run("t", 1.5, 9.0).record_key()


# -- the processor's runs against the reference ------------------------------------------


class Partition:
    """One partition: records in offset order, with the runs it publishes."""

    def __init__(self) -> None:
        self.processor = PartitionProcessor(SlaPolicy(), WINDOW, 7 * 86400.0)
        self.state = PartitionState()
        self.store = MemoryThreadStore()
        self.activities: list[AgentActivity] = []
        self.runs: list[WaitingRun] = []
        self.offset = 0

    def feed(self, steps: Iterable[Step], flush: bool = True) -> Partition:
        for step in steps:
            if isinstance(step, ContentEvent):
                self.activities += self.processor.apply(
                    self.state, self.store, self.offset, encode_event(step), runs=self.runs
                )
                self.offset += 1
            else:
                self.activities += self.processor.release_until(
                    self.state, self.store, step, runs=self.runs
                )
        if flush:
            self.release(math.inf)
        return self

    def release(self, now: float) -> Partition:
        self.activities += self.processor.release_until(self.state, self.store, now, runs=self.runs)
        return self


def scenario(seed: int, **overrides: float) -> list[ContentEvent]:
    config = {"threads": 40, "late_rate": 0.05, "span_seconds": 4 * 3600.0, **overrides}
    return generate(ScenarioConfig(seed=seed, **config))  # type: ignore[arg-type]


def by_partition(events: Sequence[ContentEvent], partitions: int) -> list[list[ContentEvent]]:
    out: list[list[ContentEvent]] = [[] for _ in range(partitions)]
    for event in events:
        out[zlib.crc32(event.thread_id.encode()) % partitions].append(event)
    return out


def with_clock(events: Sequence[ContentEvent], rng: random.Random) -> list[Step]:
    steps: list[Step] = []
    for event in events:
        steps.append(event)
        if rng.random() < 0.1:  # the shell's clock, a little ahead of the last arrival
            steps.append(event.received_at.timestamp() + rng.uniform(0.0, 2 * WINDOW))
    return steps


def probes(events: Iterable[ContentEvent]) -> list[float]:
    """Every event time, and just before and after it: where the answer can change."""
    times = {e.event_time.timestamp() for e in events}
    return sorted({t + d for t in times for d in (-0.25, 0.0, 0.25)})


def assert_timeline_is_the_reference(
    runs: Iterable[WaitingRun], waits: Sequence[Wait], events: Sequence[ContentEvent]
) -> None:
    timeline = WaitingTimeline()
    for r in runs:
        timeline.add(r)
    sources = {e.source_id for e in events}
    assert {w[0] for w in waits} <= sources
    seen = set()
    for source in sorted(s for s in sources if s):
        mine = [w for w in waits if w[0] == source]
        got = [timeline.clear_at(source, t) for t in probes(events)]
        want = [channel_clear(mine, source, t) for t in probes(events)]
        assert got == want, source
        seen.update(want)
    assert seen == {True, False}  # the scenario has both moments


@given(seed=SEEDS, partitions=st.integers(min_value=1, max_value=5))
@PROPERTY
def test_runs_of_every_partition_say_when_the_channel_is_clear(seed: int, partitions: int) -> None:
    rng = random.Random(seed)
    events = scenario(seed)
    expected = Expected()
    runs: list[WaitingRun] = []
    flush = rng.random() < 0.5  # else some contents stay buffered, unreleased
    for part_events in by_partition(events, partitions):
        steps = with_clock(part_events, rng)
        runs += Partition().feed(steps, flush=flush).runs
        expected.add(reference(steps, WINDOW, flush=flush))
    rng.shuffle(runs)  # the replica reads partitions of the topic in any interleaving
    assert_timeline_is_the_reference(runs + runs[: len(runs) // 3], expected.waits, events)


def _snapshot(part: Partition) -> tuple[bytes, dict[str, bytes]]:
    return (
        encode_partition_state(part.state),
        {k: encode_thread_state(v) for k, v in part.store.data.items()},
    )


@given(seed=SEEDS, data=st.data())
@PROPERTY
def test_a_crash_and_replay_publish_the_same_runs(seed: int, data: st.DataObject) -> None:
    events = scenario(seed)
    flushed_at = data.draw(st.integers(0, len(events)), label="last flush")
    crashed_at = data.draw(st.integers(flushed_at, len(events)), label="crash")
    live = Partition().feed(events[:flushed_at], flush=False)
    state, threads = _snapshot(live)
    live.feed(events[flushed_at:crashed_at], flush=False)

    restarted = Partition()
    restarted.state = decode_partition_state(state)
    restarted.store.data = {k: decode_thread_state(v) for k, v in threads.items()}
    restarted.offset = flushed_at
    restarted.feed(events[flushed_at:])
    uninterrupted = Partition().feed(events)
    # What was published before the crash stays in the topic, replayed records come again.
    assert set(restarted.runs) <= set(uninterrupted.runs)
    published = live.runs + restarted.runs
    assert set(published) == set(uninterrupted.runs)
    assert_timeline_is_the_reference(published, reference(events, WINDOW).waits, events)


def ev(
    t: float,
    direction: str = "inbound",
    *,
    thread: str,
    recv: float | None = None,
    agent: str = "agent-b",
    source: str | None = "wa",
) -> ContentEvent:
    n = next(_ids)
    outbound = direction == "outbound"
    return ContentEvent(
        event_id=f"e{n}",
        event_type="content.replied" if outbound else "content.imported",
        origin="engage",
        event_time=datetime.fromtimestamp(T0 + t, UTC),
        received_at=datetime.fromtimestamp(T0 + (t + 0.5 if recv is None else recv), UTC),
        content_id=f"c{n}",
        thread_id=thread,
        intervention_id=f"i-{thread}",
        source_id=source,
        source_type=None if source is None else "whatsapp",
        agent_id=agent if outbound else None,
        direction="outbound" if outbound else "inbound",
    )


_ids = itertools.count()


def test_a_thread_opens_one_run_and_its_answer_closes_it() -> None:
    part = Partition().feed([ev(0, thread="a"), ev(5, thread="a")], flush=False).release(T0 + 20)
    assert part.runs == [run("a", T0 + 0)]  # the earliest waiting content only
    state = part.store.data["a"]
    assert isinstance(state, ThreadState) and state.open_runs == [T0 + 0]
    part.feed([ev(30, "outbound", thread="a", recv=30)])
    assert part.runs[1:] == [run("a", T0 + 0, T0 + 30)]
    assert part.store.data["a"].open_runs == []


def test_answered_within_one_release_is_one_closed_run() -> None:
    part = Partition().feed([ev(0, thread="a", recv=0), ev(3, "outbound", thread="a", recv=3)])
    assert part.runs == [run("a", T0 + 0, T0 + 3)]


def test_a_late_customer_content_before_the_open_run_opens_its_own() -> None:
    part = Partition().feed([ev(200, thread="a", recv=200)], flush=False).release(T0 + 215)
    assert part.runs == [run("a", T0 + 200)]
    # Received long after: released at once, out of order, and it waits from 100.
    part.feed([ev(100, thread="a", recv=300)], flush=False)
    assert part.state.totals.late == {"wa": 1}
    assert part.runs[1:] == [run("a", T0 + 100)]
    part.feed([ev(400, "outbound", thread="a", recv=400)])
    assert part.runs[2:] == [run("a", T0 + 100, T0 + 400), run("a", T0 + 200, T0 + 400)]
    timeline = WaitingTimeline()
    for r in part.runs:
        timeline.add(r)
    assert [timeline.clear_at("wa", T0 + t) for t in (99, 100, 399, 400)] == [
        True, False, False, True,
    ]  # fmt: skip


def test_a_late_answer_closes_what_it_stops_and_the_next_customer_opens_a_run() -> None:
    part = (
        Partition()
        .feed([ev(100, thread="a", recv=100), ev(200, thread="a", recv=200)], flush=False)
        .release(T0 + 215)
    )
    assert part.runs == [run("a", T0 + 100)]
    part.feed([ev(150, "outbound", thread="a", recv=300)])
    assert part.runs[1:] == [run("a", T0 + 100, T0 + 150), run("a", T0 + 200)]
    timeline = WaitingTimeline()
    for r in part.runs:
        timeline.add(r)
    assert [timeline.clear_at("wa", T0 + t) for t in (120, 150, 199, 200)] == [
        False, True, True, False,
    ]  # fmt: skip


def test_an_idle_thread_that_expires_closes_its_run_at_its_horizon() -> None:
    part = Partition().feed([ev(0, thread="a", recv=0)])
    horizon = part.processor.idle_horizon
    expired: list[WaitingRun] = []
    now = T0 + horizon + 100
    assert part.processor.expire_idle(part.state, part.store, ["a"], now, runs=expired) == 1
    assert expired == [run("a", T0 + 0, T0 + horizon)]


def test_a_run_opened_before_the_thread_knew_its_channel_is_published_again_with_it() -> None:
    part = Partition().feed([ev(0, thread="a", recv=0, source=None)], flush=False)
    part.release(T0 + 15)
    unknown = WaitingRun(thread_id="a", source_id=None, source_type=None, since=T0)
    assert part.runs == [unknown]
    part.feed([ev(20, thread="a", recv=20)], flush=False)  # names the channel
    assert part.runs[1:] == [run("a", T0 + 0)]
    for records in (part.runs, part.runs[::-1]):  # whatever the order the replica reads
        timeline = WaitingTimeline()
        for r in records:
            timeline.add(r)
        assert not timeline.clear_at("wa", T0 + 10)  # the customer of 0 waits in "wa"
        assert timeline.clear_at(None, T0 + 10)
    events = [ev(0, thread="b", recv=0, source=None), ev(20, thread="b", recv=20)]
    events.append(ev(30, thread="c", recv=30))
    steps: list[Step] = [events[0], T0 + 15.0, *events[1:]]
    assert_timeline_is_the_reference(
        Partition().feed(steps, flush=False).runs,
        reference(steps, WINDOW, flush=False).waits,
        events,
    )


# -- the badge ------------------------------------------------------------------------------


def cleared(standings: Standings, now: float) -> dict[str, int]:
    return {
        e.agent_id: next((b.count for b in e.badges if b.badge == "cleared_backlog"), 0)
        for e in standings.leaderboard("today", now, limit=100)
    }


def test_an_answer_does_not_clear_a_channel_whose_customers_wait_in_another_partition() -> None:
    """The old rule (the releasing partition's own count) gave agent-b the badge here."""
    one = Partition().feed([ev(0, thread="a", recv=0)])  # a customer waits, unanswered
    two = Partition().feed(
        [ev(5, thread="b", recv=5), ev(10, "outbound", thread="b", recv=10)]
    )  # answered at 10 while "a" (another partition) still waits
    (answer,) = two.activities
    assert answer.is_answer and two.state.waiting == {}  # partition two has nobody waiting
    standings = Standings(ScoringRules(), "UTC")
    for a in one.activities + two.activities:
        standings.add(a)
    for r in one.runs + two.runs:
        standings.add_waiting_run(r)
    assert cleared(standings, T0 + 60) == {"agent-b": 0}

    # "a" answered at 20, when nobody else waits: that answer clears the channel, and b's
    # answer at 10 still did not ("a" waited from 0 to 20).
    runs_before = len(one.runs)
    one.feed([ev(20, "outbound", thread="a", recv=20, agent="agent-c")])
    standings.add(one.activities[-1])
    for r in one.runs[runs_before:]:
        standings.add_waiting_run(r)
    assert cleared(standings, T0 + 60) == {"agent-b": 0, "agent-c": 1}


@pytest.mark.parametrize("seed", range(8))
def test_badges_are_a_function_of_the_records_not_of_their_order(seed: int) -> None:
    rng = random.Random(seed)
    events = scenario(seed, threads=30)
    parts = [Partition().feed(p) for p in by_partition(events, 3)]
    activities = [a for p in parts for a in p.activities]
    runs = [r for p in parts for r in p.runs]
    now = max(e.event_time.timestamp() for e in events) + 60
    results = []
    for _ in range(3):
        records: list[AgentActivity | WaitingRun] = [*activities, *runs, *rng.sample(runs, 5)]
        rng.shuffle(records)
        standings = Standings(ScoringRules(), "UTC")
        for record in records:
            if isinstance(record, WaitingRun):
                standings.add_waiting_run(record)
            else:
                standings.add(record)
        results.append([(e.agent_id, e.badges) for e in standings.leaderboard("all", now)])
    assert results[0] == results[1] == results[2]
    assert any(b.badge == "cleared_backlog" for _, badges in results[0] for b in badges)


@pytest.mark.parametrize("seed", range(20))
def test_merged_runs_carry_what_every_record_says(seed: int) -> None:
    """A flush writes ``merged_runs`` of its runs: a reader of the merged records answers
    exactly as a reader of all of them, and keeps the same greatest record of each run."""
    rng = random.Random(seed)
    records = []
    for _ in range(200):
        since = float(rng.randrange(0, 100))
        records.append(
            run(
                f"t{rng.randrange(15)}",
                since,
                None if rng.random() < 0.4 else since + rng.randrange(0, 30),
                source=rng.choice(["wa", "mail"]),
            )
        )
    merged = merged_runs(records)
    assert len({r.key for r in merged}) == len(merged) < len(records)
    every, fewer = WaitingTimeline(), WaitingTimeline()
    for record in records:
        every.add(record)
    for record in merged:
        fewer.add(record)
    assert len(every) == len(fewer)
    for when in [rng.uniform(-5, 140) for _ in range(200)]:
        for source in ("wa", "mail"):
            assert every.clear_at(source, when) == fewer.clear_at(source, when)
    # Each run's surviving record is its greatest: adding any original changes nothing.
    assert not any(fewer.add(record) for record in records)
    # The runs keep the order in which they first appeared.
    first_seen = list(dict.fromkeys(r.key for r in records))
    assert [r.key for r in merged] == first_seen
