"""PartitionProcessor + totals against the independent reference, on generated scenarios.

Each property feeds a scenario (``simulator.scenario``) to the processor and compares every
number -- volumes, response / first-response / per-agent histograms, SLA, late, backlog and
the agent activities -- with ``tests/reference.py``.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage_streams.record import ContentEvent, encode_event
from simulator.scenario import ScenarioConfig, generate
from streams.core.gamification.activity import AgentActivity
from streams.core.responses.partition import (
    PartitionProcessor,
    PartitionState,
    backlog,
    decode_partition_state,
    decode_thread_state,
    encode_partition_state,
    encode_thread_state,
    volumes,
)
from streams.core.responses.sla import SlaPolicy
from streams.core.responses.totals import Histogram, PartitionTotals, cumulative_buckets
from tests.plugins.stores import MemoryThreadStore
from tests.references.responses import Expected, Step, live_reference, reference

WINDOW = 10.0
NOW = 1772438400.0 + 30 * 86400  # a month after the scenarios begin
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Partition:
    def __init__(self) -> None:
        self.processor = PartitionProcessor(SlaPolicy(), WINDOW, 7 * 86400.0)
        self.state = PartitionState()
        self.store = MemoryThreadStore()
        self.activities: list[AgentActivity] = []

    def run(self, steps: Sequence[Step], flush: bool = True) -> Partition:
        offset = self.state.applied_offset + 1
        for step in steps:
            if isinstance(step, ContentEvent):
                value = encode_event(step)
                self.activities += self.processor.apply(self.state, self.store, offset, value)
                offset += 1
            else:
                self.activities += self.processor.release_until(self.state, self.store, step)
        if flush:
            self.activities += self.processor.release_until(self.state, self.store, math.inf)
        return self


def scenario(seed: int, **overrides: float) -> list[ContentEvent]:
    config = {"threads": 40, "late_rate": 0.03, "span_seconds": 4 * 3600.0, **overrides}
    return generate(ScenarioConfig(seed=seed, **config))  # type: ignore[arg-type]


def split(events: Sequence[ContentEvent], partitions: int) -> list[list[ContentEvent]]:
    out: list[list[ContentEvent]] = [[] for _ in range(partitions)]
    for event in events:
        out[zlib.crc32(event.thread_id.encode()) % partitions].append(event)
    return out


def activity_table(activities: Sequence[AgentActivity]) -> dict[str, tuple[object, ...]]:
    table: dict[str, tuple[object, ...]] = {}
    for a in activities:
        row = (a.agent_id, a.thread_id, a.source_id, a.source_type, a.event_time,
               a.response_seconds, a.first_response, a.within_sla)  # fmt: skip
        assert table.setdefault(a.content_id, row) == row, "one content, two activities"
    return table


def assert_histograms_match(
    table: dict[object, object], expected: Expected, pick: object, first_only: bool = False
) -> None:
    labels = {pick(o) for o in expected.observations if o.first or not first_only}  # type: ignore[operator]
    assert set(table) == labels
    for label, histogram in table.items():
        cumulative, total, count = expected.histogram(pick, label, first_only)  # type: ignore[arg-type]
        assert [n for _, n in cumulative_buckets(histogram)] == cumulative  # type: ignore[arg-type]
        assert histogram.count == count  # type: ignore[attr-defined]
        assert histogram.sum == pytest.approx(total, rel=1e-9, abs=1e-6)  # type: ignore[attr-defined]


def assert_matches(
    totals: PartitionTotals,
    states: Sequence[PartitionState],
    activities: Sequence[AgentActivity],
    expected: Expected,
    live: bool = True,
) -> None:
    """Every released number equals ``expected``; so do the live ones (volumes, backlog)
    unless ``live`` is False (contents still buffered: see ``assert_live``)."""
    if live:
        assert totals.contents == dict(expected.contents)
    assert totals.agent_replies == dict(expected.agent_replies)
    assert totals.late == dict(expected.late)
    assert totals.sla == dict(expected.sla)
    assert_histograms_match(totals.response, expected, lambda o: o.source)  # type: ignore[arg-type]
    assert_histograms_match(totals.first_response, expected, lambda o: o.source, True)  # type: ignore[arg-type]
    assert_histograms_match(totals.agent_response, expected, lambda o: o.agent)  # type: ignore[arg-type]
    if live:
        assert merged_backlog(states) == expected.backlog(NOW)
    assert activity_table(activities) == expected.activities


def merged_backlog(states: Sequence[PartitionState]) -> dict[tuple[str, str], tuple[int, float]]:
    merged: dict[tuple[str, str], tuple[int, float]] = {}
    for state in states:
        for key, (n, age) in backlog(state, NOW).items():
            old = merged.get(key, (0, -math.inf))
            merged[key] = (old[0] + n, max(old[1], age))
    return merged


def assert_live(state: PartitionState, expected: Expected) -> None:
    """The live numbers (backlog, volumes) count every content received, buffered or not."""
    assert backlog(state, NOW) == expected.backlog(NOW)
    assert volumes(state) == dict(expected.contents)


@given(seed=SEEDS)
@PROPERTY
def test_one_partition_matches_reference(seed: int) -> None:
    events = scenario(seed)
    part = Partition().run(events)
    expected = reference(events, WINDOW)
    assert sum(expected.contents.values()) > 50 and expected.observations
    assert_matches(part.state.totals, [part.state], part.activities, expected)


def merge_totals(parts: Iterable[PartitionTotals]) -> PartitionTotals:
    """The sum of several partitions' totals, as ``sum()`` over workers sees them."""
    out = PartitionTotals()
    for part in parts:
        for ckey, n in part.contents.items():
            out.contents[ckey] = out.contents.get(ckey, 0) + n
        for table, into in (
            (part.first_response, out.first_response),
            (part.response, out.response),
        ):
            for skey, histogram in table.items():
                into.setdefault(skey, Histogram()).add(histogram)
        for agent, histogram in part.agent_response.items():
            out.agent_response.setdefault(agent, Histogram()).add(histogram)
        for agent, n in part.agent_replies.items():
            out.agent_replies[agent] = out.agent_replies.get(agent, 0) + n
        for slakey, n in part.sla.items():
            out.sla[slakey] = out.sla.get(slakey, 0) + n
        for source_id, n in part.late.items():
            out.late[source_id] = out.late.get(source_id, 0) + n
    return out


@given(seed=SEEDS, partitions=st.integers(min_value=2, max_value=6))
@PROPERTY
def test_partitions_summed_match_reference(seed: int, partitions: int) -> None:
    expected = Expected()
    parts = []
    for events in split(scenario(seed), partitions):
        parts.append(Partition().run(events))
        expected.add(reference(events, WINDOW))
    totals = merge_totals(p.state.totals for p in parts)
    activities = [a for p in parts for a in p.activities]
    assert_matches(totals, [p.state for p in parts], activities, expected)


@given(seed=SEEDS)
@PROPERTY
def test_clock_releases_and_unflushed_buffers_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    events = scenario(seed)
    steps: list[Step] = []
    for event in events:
        steps.append(event)
        if rng.random() < 0.05:  # the shell's clock: a little ahead of the last arrival
            steps.append(event.received_at.timestamp() + rng.uniform(0.0, 2 * WINDOW))
    part = Partition().run(steps, flush=False)
    expected = reference(steps, WINDOW, flush=False)
    assert_matches(part.state.totals, [part.state], part.activities, expected, live=False)
    assert_live(part.state, live_reference(steps, WINDOW))


@given(seed=SEEDS, data=st.data())
@PROPERTY
def test_live_backlog_and_volumes_match_reference_at_every_step(
    seed: int, data: st.DataObject
) -> None:
    """Backlog and volumes count a content as soon as it is applied (issue 10), equal to
    "everything received so far, in event-time order", while the response numbers still
    wait for the reorder window; volumes never go down; the view survives a round trip."""
    rng = random.Random(seed)
    events = scenario(seed, threads=25)
    steps: list[Step] = []
    for event in events:
        steps.append(event)
        if rng.random() < 0.05:
            steps.append(event.received_at.timestamp() + rng.uniform(0.0, 2 * WINDOW))
    checks = set(data.draw(st.lists(st.integers(1, len(steps)), min_size=3, max_size=8)))
    part = Partition()
    before: dict[tuple[str, str, str], int] = {}
    buffered_seen = False
    for n, step in enumerate(steps, start=1):
        part.run([step], flush=False)
        counted = volumes(part.state)
        assert all(counted.get(key, 0) >= k for key, k in before.items()), "a volume went down"
        before = dict(counted)
        buffered_seen = buffered_seen or bool(part.state.provisional)
        if n in checks:
            prefix = steps[:n]
            assert_live(part.state, live_reference(prefix, WINDOW))
            released = reference(prefix, WINDOW, flush=False)
            assert part.state.totals.contents == dict(live_reference(prefix, WINDOW).contents)
            assert_histograms_match(part.state.totals.response, released, lambda o: o.source)  # type: ignore[arg-type]
            assert decode_partition_state(encode_partition_state(part.state)) == part.state
    assert buffered_seen
    part.run([], flush=True)
    assert part.state.provisional == {}


def test_a_new_question_is_in_the_backlog_before_its_window_passes() -> None:
    part = Partition()
    start = datetime.fromtimestamp(1772438400.0, UTC)

    def content(n: int, seconds: float, direction: str) -> ContentEvent:
        at = start + timedelta(seconds=seconds)
        return ContentEvent(event_id=f"e{n}", event_type="content.imported", origin="engage",
                            event_time=at, received_at=at, content_id=f"c{n}", thread_id="t1",
                            source_id="wa-1", source_type="whatsapp", direction=direction,
                            agent_id="a1" if direction == "outbound" else None)  # fmt: skip

    part.run([content(1, 0, "inbound")], flush=False)
    now = start.timestamp() + 1
    assert backlog(part.state, now) == {("wa-1", "whatsapp"): (1, 1.0)}
    assert volumes(part.state) == {("wa-1", "whatsapp", "inbound"): 1}
    assert part.state.totals.response == {} and part.activities == []
    part.run([content(2, 0.5, "outbound")], flush=False)  # the answer clears it, live
    assert backlog(part.state, now) == {}
    assert part.state.totals.response == {}  # the response itself waits for the window
    part.run([], flush=True)
    assert [a.response_seconds for a in part.activities] == [0.5]
    assert backlog(part.state, now) == {}


def _jittered(
    events: Sequence[ContentEvent], rng: random.Random, jitter: float
) -> list[ContentEvent]:
    """Each event received ``[0, jitter)`` s after its event time; arrival order follows."""
    out = []
    for event in events:
        delay = timedelta(seconds=round(rng.uniform(0.0, jitter), 3))
        out.append(msgspec.structs.replace(event, received_at=event.event_time + delay))
    out.sort(key=lambda e: e.received_at)
    return out


def _out_of_order_pairs(events: Sequence[ContentEvent]) -> int:
    last: dict[str, datetime] = {}
    n = 0
    for event in events:
        if event.thread_id in last and event.event_time < last[event.thread_id]:
            n += 1
        last[event.thread_id] = max(event.event_time, last.get(event.thread_id, event.event_time))
    return n


@given(seed=SEEDS)
@PROPERTY
def test_arrival_shuffles_within_the_window_equal_event_time_order(seed: int) -> None:
    rng = random.Random(seed)
    events = scenario(seed, threads=60, late_rate=0.0, race_rate=0.5)
    in_order = _jittered(events, rng, 0.0)
    shuffled = _jittered(events, rng, WINDOW * 0.7)
    assert _out_of_order_pairs(in_order) == 0 < _out_of_order_pairs(shuffled)
    a, b = Partition().run(in_order), Partition().run(shuffled)
    assert b.state.totals == a.state.totals
    assert b.state.totals.late == {}
    assert activity_table(b.activities) == activity_table(a.activities)
    assert backlog(b.state, NOW) == backlog(a.state, NOW)


@given(seed=SEEDS)
@PROPERTY
def test_duplicates_change_nothing(seed: int) -> None:
    rng = random.Random(seed)
    events = scenario(seed)
    with_duplicates = list(events)
    for _ in range(len(events) // 5):
        event = events[rng.randrange(len(events))]
        original = next(i for i, e in enumerate(with_duplicates) if e is event)
        at = rng.randrange(original + 1, len(with_duplicates) + 1)
        # Inserted later, received no later than its neighbour so the watermark is unchanged;
        # a later event may even contradict the first one: the first event defines a content.
        received = with_duplicates[at - 1].received_at
        copy = msgspec.structs.replace(
            event,
            event_id=rng.choice([event.event_id, f"dup-{rng.random()}"]),
            event_type=rng.choice(["content.exported", "content.update_exported"]),
            received_at=received,
            automatic=rng.random() < 0.2,
            direction=rng.choice(["inbound", "outbound"]),
        )
        with_duplicates.insert(at, copy)
    with_duplicates.sort(key=lambda e: e.received_at)
    a, b = Partition().run(events), Partition().run(with_duplicates)
    assert b.state.totals == a.state.totals
    assert activity_table(b.activities) == activity_table(a.activities)
    assert backlog(b.state, NOW) == backlog(a.state, NOW)


def _snapshot(part: Partition) -> tuple[bytes, dict[str, bytes]]:
    return (
        encode_partition_state(part.state),
        {k: encode_thread_state(v) for k, v in part.store.data.items()},
    )


def _restore(snapshot: tuple[bytes, dict[str, bytes]]) -> Partition:
    part = Partition()
    part.state = decode_partition_state(snapshot[0])
    part.store.data = {k: decode_thread_state(v) for k, v in snapshot[1].items()}
    return part


@given(seed=SEEDS, data=st.data())
@PROPERTY
def test_replaying_after_a_crash_changes_nothing(seed: int, data: st.DataObject) -> None:
    events = scenario(seed)
    values = [encode_event(e) for e in events]
    flushed_at = data.draw(st.integers(0, len(values)), label="last flush")
    crashed_at = data.draw(st.integers(flushed_at, len(values)), label="crash")

    live = Partition()
    for offset in range(flushed_at):
        live.activities += live.processor.apply(live.state, live.store, offset, values[offset])
    snapshot = _snapshot(live)  # what the last flush made durable
    for offset in range(flushed_at, crashed_at):
        live.activities += live.processor.apply(live.state, live.store, offset, values[offset])
    # Re-applying offsets already applied is a no-op on live state too.
    for offset in range(crashed_at):
        assert live.processor.apply(live.state, live.store, offset, values[offset]) == []

    restarted = _restore(snapshot)
    restarted.activities = list(live.activities)  # published before the crash: may repeat
    for offset in range(len(values)):  # the consumer starts from the committed offset, or 0
        restarted.activities += restarted.processor.apply(
            restarted.state, restarted.store, offset, values[offset]
        )
    restarted.activities += restarted.processor.release_until(
        restarted.state, restarted.store, math.inf
    )
    uninterrupted = Partition().run(events)
    assert restarted.state.totals == uninterrupted.state.totals
    assert activity_table(restarted.activities) == activity_table(uninterrupted.activities)
    assert backlog(restarted.state, NOW) == backlog(uninterrupted.state, NOW)


def test_partition_state_round_trips_through_msgpack() -> None:
    part = Partition().run(scenario(3), flush=False)
    assert part.state.waiting and part.state.pending_threads and part.state.totals.response
    assert decode_partition_state(encode_partition_state(part.state)) == part.state


def test_late_contents_are_generated_and_counted() -> None:
    events = scenario(5, threads=200, late_rate=0.05)
    part = Partition().run(events)
    assert sum(part.state.totals.late.values()) >= 3
    assert part.state.totals.late == dict(reference(events, WINDOW).late)


def test_expire_idle_keeps_threads_with_buffered_contents() -> None:
    part = Partition()
    start = datetime.fromtimestamp(1772438400.0, UTC)
    event = ContentEvent(event_id="e1", event_type="content.imported", origin="engage",
                         event_time=start, received_at=start, content_id="c1", thread_id="t1",
                         source_id="wa-1", source_type="whatsapp", direction="inbound")  # fmt: skip
    part.run([event], flush=False)
    far = 1772438400.0 + 30 * 86400
    assert part.processor.expire_idle(part.state, part.store, ["t1"], far) == 0
    part.processor.release_until(part.state, part.store, far)
    assert part.processor.expire_idle(part.state, part.store, ["t1"], far) == 1
    assert part.store.data == {} and part.state.waiting == {}


def _content(n: int, seconds: float, direction: str, agent: str | None) -> ContentEvent:
    start = datetime.fromtimestamp(1772438400.0, UTC)
    when = start + timedelta(seconds=seconds)
    return ContentEvent(
        event_id=f"e{n}", event_type="content.imported", origin="ringcentral", event_time=when,
        received_at=when, content_id=f"c{n}", thread_id="t1", intervention_id="i1",
        source_id="wa-1", source_type="whatsapp", agent_id=agent,
        direction=direction,  # type: ignore[arg-type]
    )  # fmt: skip


def test_outbound_content_without_an_agent_is_never_an_answer() -> None:
    events = [
        _content(1, 0.0, "inbound", None),
        _content(2, 10.0, "outbound", None),  # e.g. a system message, nobody wrote it
        _content(3, 70.0, "outbound", "agent-1"),
    ]
    part = Partition().run(events)
    totals = part.state.totals
    assert totals.contents == {
        ("wa-1", "whatsapp", "inbound"): 1,
        ("wa-1", "whatsapp", "outbound"): 2,
    }
    assert totals.agent_replies == {"agent-1": 1}  # no "" agent
    assert [h.sum for h in totals.response.values()] == [70.0]  # not 10 s
    assert [h.sum for h in totals.first_response.values()] == [70.0]
    assert totals.sla == {("wa-1", "true"): 1}
    assert [(a.agent_id, a.response_seconds, a.first_response) for a in part.activities] == [
        ("agent-1", 70.0, True)
    ]
    assert_matches(totals, [part.state], part.activities, reference(events, WINDOW))


def test_only_an_agentless_outbound_leaves_the_customer_waiting() -> None:
    events = [_content(1, 0.0, "inbound", None), _content(2, 10.0, "outbound", None)]
    part = Partition().run(events)
    assert part.state.totals.response == {} and part.state.totals.sla == {}
    assert part.activities == []
    assert backlog(part.state, 1772438400.0 + 100) == {("wa-1", "whatsapp"): (1, 100.0)}
    assert_matches(part.state.totals, [part.state], part.activities, reference(events, WINDOW))


@given(seed=SEEDS, data=st.data())
@PROPERTY
def test_scenarios_with_agentless_outbound_contents_match_reference(
    seed: int, data: st.DataObject
) -> None:
    events = scenario(seed)
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    events = [
        msgspec.structs.replace(e, agent_id=None)
        if e.direction == "outbound" and rng.random() < 0.2
        else e
        for e in events
    ]
    part = Partition().run(events)
    expected = reference(events, WINDOW)
    assert "" not in expected.agent_replies
    assert_matches(part.state.totals, [part.state], part.activities, expected)
