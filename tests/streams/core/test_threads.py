"""Each definition of CONTRACT "Definitions" on tiny hand-made threads.

Expected values are worked out by hand in each test (times in seconds after ``T0``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import msgspec
import pytest

from engage_streams.record import ContentEvent, encode_event
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.waiting import WaitingRun
from streams.core.responses.partition import (
    PartitionProcessor,
    PartitionState,
    backlog,
)
from streams.core.responses.sla import SlaPolicy
from streams.core.responses.threads import (
    MAX_SEEN,
    ThreadState,
    decode_thread_state,
    encode_thread_state,
)
from streams.core.responses.totals import PartitionTotals
from tests.plugins.stores import MemoryThreadStore

T0 = 1772438400.0
WA = ("wa-1", "whatsapp")
MAIL = ("mb-1", "email")


_ids = iter(range(1_000_000))


def ev(
    t: float,
    direction: str = "inbound",
    content: str | None = None,
    *,
    thread: str = "T1",
    recv: float | None = None,
    agent: str | None = None,
    iid: str | None = "I1",
    automatic: bool = False,
    source: tuple[str | None, str | None] = WA,
    event_type: str | None = None,
) -> ContentEvent:
    n = next(_ids)
    if direction == "outbound" and agent is None and not automatic:
        agent = "ag-1"
    return ContentEvent(
        event_id=f"e{n}",
        event_type=event_type or ("content.replied" if agent else "content.imported"),
        origin="engage",
        event_time=datetime.fromtimestamp(T0 + t, UTC),
        received_at=datetime.fromtimestamp(T0 + (t + 0.5 if recv is None else recv), UTC),
        content_id=content or f"c{n}",
        thread_id=thread,
        intervention_id=iid,
        source_id=source[0],
        source_type=source[1],
        agent_id=agent,
        direction="outbound" if direction == "outbound" else "inbound",
        automatic=automatic,
    )


def out(t: float, **kw: object) -> ContentEvent:
    return ev(t, "outbound", **kw)  # type: ignore[arg-type]


class Run:
    """Feeds events in the given (arrival) order to one partition."""

    def __init__(self, window: float = 10.0, sla: SlaPolicy | None = None) -> None:
        self.processor = PartitionProcessor(sla or SlaPolicy(), window, 7 * 86400.0)
        self.state = PartitionState()
        self.store = MemoryThreadStore()
        self.activities: list[AgentActivity] = []
        self.runs: list[WaitingRun] = []
        self.offset = 0

    def feed(self, *events: ContentEvent) -> Run:
        for event in events:
            self.activities += self.processor.apply(
                self.state, self.store, self.offset, encode_event(event), runs=self.runs
            )
            self.offset += 1
        return self

    def flush(self) -> Run:
        self.activities += self.processor.release_until(
            self.state, self.store, math.inf, runs=self.runs
        )
        return self

    @property
    def totals(self) -> PartitionTotals:
        return self.state.totals

    def responses(self) -> list[float | None]:
        return [a.response_seconds for a in self.activities]


def test_response_runs_from_the_earliest_waiting_customer_content() -> None:
    run = Run().feed(ev(0), ev(30), out(100), ev(200), out(260)).flush()
    assert run.responses() == [100.0, 60.0]
    assert [a.first_response for a in run.activities] == [True, False]
    hist = run.totals.response[WA]
    assert (hist.count, hist.sum) == (2, 160.0)
    # 60 <= 60 and 100 <= 120: buckets le=60 and le=120 (non-cumulative storage).
    assert hist.counts[3] == 1 and hist.counts[4] == 1
    assert run.totals.first_response[WA].count == 1
    assert run.totals.first_response[WA].sum == 100.0
    assert run.totals.contents == {("wa-1", "whatsapp", "inbound"): 3,
                                   ("wa-1", "whatsapp", "outbound"): 2}  # fmt: skip
    assert run.totals.agent_replies == {"ag-1": 2}
    assert run.totals.agent_response["ag-1"].count == 2
    assert backlog(run.state, T0 + 1000) == {}


def test_agent_content_with_nothing_waiting_is_proactive() -> None:
    run = Run().feed(out(0), ev(10)).flush()
    (activity,) = run.activities
    assert activity.response_seconds is None and activity.within_sla is None
    assert not activity.first_response
    assert run.totals.agent_replies == {"ag-1": 1}
    assert run.totals.response == {} and run.totals.sla == {}
    assert backlog(run.state, T0 + 1000) == {WA: (1, 990.0)}


def test_agent_content_at_the_same_time_answers_with_zero() -> None:
    run = Run().feed(ev(50), out(50)).flush()
    assert run.responses() == [0.0]


def test_agent_content_earlier_than_the_customer_does_not_answer_it() -> None:
    # Received in the opposite order, within the window: released in event-time order.
    run = Run().feed(ev(100, recv=101), out(90, recv=102)).flush()
    assert run.responses() == [None]
    assert backlog(run.state, T0 + 200) == {WA: (1, 100.0)}


def test_first_response_per_intervention() -> None:
    run = Run().feed(
        ev(0, iid="I1"), out(10, iid="I1"),
        ev(20, iid="I2"), out(50, iid="I2"),
        ev(60, iid="I2"), out(70, iid="I2"),
    ).flush()  # fmt: skip
    assert run.responses() == [10.0, 30.0, 10.0]
    assert [a.first_response for a in run.activities] == [True, True, False]
    assert run.totals.first_response[WA].sum == 40.0


def test_first_response_without_intervention_is_the_first_answer_of_the_thread() -> None:
    run = Run().feed(
        ev(0, iid=None), out(10, iid=None), ev(20, iid=None), out(25, iid=None),
        ev(0, thread="T2", iid=None), out(7, thread="T2", iid=None),
    ).flush()  # fmt: skip
    firsts = [(a.thread_id, a.first_response) for a in run.activities]
    assert sorted(firsts) == [("T1", False), ("T1", True), ("T2", True)]
    assert run.totals.first_response[WA].count == 2
    assert run.totals.first_response[WA].sum == 17.0


def test_automatic_contents_never_count_even_when_a_later_event_says_otherwise() -> None:
    welcome = out(5, content="w1", automatic=True)
    again = out(5, content="w1")  # the same content, later event: the first event defines it
    run = Run().feed(ev(0), welcome, again, out(40)).flush()
    assert run.responses() == [40.0]
    assert run.totals.contents[("wa-1", "whatsapp", "outbound")] == 1


def test_each_content_counts_once_whatever_events_carry_it() -> None:
    question = ev(0, content="q")
    answer = out(30, content="a", event_type="content.replied")
    exported = out(30, content="a", event_type="content.exported", recv=90)
    redelivered = msgspec.structs.replace(
        question, received_at=datetime.fromtimestamp(T0 + 300, UTC)
    )
    run = Run().feed(question, answer, exported, redelivered).flush()
    assert run.responses() == [30.0]
    assert sum(run.totals.contents.values()) == 2
    assert run.totals.agent_replies == {"ag-1": 1}


def test_thread_events_are_not_contents() -> None:
    run = Run().feed(ev(0), out(60, event_type="content.thread_closed")).flush()
    assert run.activities == []
    assert sum(run.totals.contents.values()) == 1


def test_sla_by_channel_kind_and_bound_inclusive() -> None:
    run = Run().feed(
        ev(0, thread="m", source=MAIL), out(3000, thread="m", source=MAIL),   # 3000 <= 3600
        ev(0, thread="w"), out(300, thread="w"),                              # 300 <= 300
        ev(0, thread="x"), out(301, thread="x"),                              # 301 > 300
    ).flush()  # fmt: skip
    assert {a.thread_id: a.within_sla for a in run.activities} == {"m": True, "w": True, "x": False}
    assert run.totals.sla == {("mb-1", "true"): 1, ("wa-1", "true"): 1, ("wa-1", "false"): 1}


def test_sla_from_config_per_source() -> None:
    run = Run(sla=SlaPolicy(sources={"wa-1": 60})).feed(ev(0), out(61)).flush()
    assert run.totals.sla == {("wa-1", "false"): 1}


def test_out_of_order_within_the_window_equals_event_order() -> None:
    # The answer (t=100) is received 1 s before its question (t=99).
    run = Run().feed(out(100, recv=102), ev(99, recv=103)).flush()
    assert run.responses() == [1.0]
    assert run.totals.late == {}


def test_late_content_counts_but_never_retracts() -> None:
    run = Run().feed(
        ev(0, recv=0, content="c1"),
        out(100, recv=100, content="a1"),
        ev(150, recv=200, thread="other"),  # watermark 200: a1 (received 100) is released
        ev(50, recv=201, content="c2"),     # ordered before a1, received > 10 s after it: late
    )  # fmt: skip
    # Nothing can restore c2's order any more: it is released (waiting) at once. The other
    # thread's question (still in its reorder buffer) waits too: the backlog is live.
    assert backlog(run.state, T0 + 202) == {WA: (2, 152.0)}
    assert {t: w.count for t, w in run.state.waiting.items()} == {"T1": 1}  # released: c2 only
    run.feed(out(300, recv=301, content="a2")).flush()
    assert run.responses() == [100.0, 250.0]  # c2 waited for the next answer, a2
    # ... and so its waiting run says (the other thread's question is still waiting).
    got = [(r.thread_id, r.since - T0, None if r.until is None else r.until - T0) for r in run.runs]
    assert got == [
        ("T1", 0.0, None), ("T1", 0.0, 100.0), ("T1", 50.0, None), ("other", 150.0, None),
        ("T1", 50.0, 300.0),
    ]  # fmt: skip
    assert run.totals.late == {"wa-1": 1}
    assert run.totals.contents[("wa-1", "whatsapp", "inbound")] == 3


def test_contents_wait_in_the_buffer_until_the_window_passes() -> None:
    run = Run().feed(ev(0, recv=0), out(5, recv=5))
    assert run.activities == [] and backlog(run.state, T0 + 6) == {}
    run.feed(ev(0, recv=10, thread="other"))  # watermark 10 >= 0 + 10: the question goes
    assert backlog(run.state, T0 + 11) == {WA: (1, 11.0)} and run.activities == []
    run.processor.release_until(run.state, run.store, T0 + 14.9)
    assert run.activities == []
    run.activities += run.processor.release_until(run.state, run.store, T0 + 15)
    assert run.responses() == [5.0]


def test_backlog_per_source_counts_waiting_contents_and_oldest_age() -> None:
    run = Run().feed(
        ev(0, thread="a"), ev(10, thread="b"), ev(20, thread="b"),
        ev(40, thread="m", source=MAIL), ev(5, thread="c"), out(6, thread="c"),
    ).flush()  # fmt: skip
    assert backlog(run.state, T0 + 100) == {WA: (3, 100.0), MAIL: (1, 60.0)}


def test_waiting_runs_cover_each_threads_waiting_customers() -> None:
    run = Run().feed(
        ev(0, thread="a"), ev(1, thread="b"), ev(2, thread="m", source=MAIL),
        out(10, thread="a"), out(11, thread="b"), out(12, thread="b"),
    ).flush()  # fmt: skip
    # Each customer content is released (and opens its thread's run) before the answer comes
    # out of the reorder buffer, which closes it; nobody answers "m".
    got = [(r.thread_id, r.since - T0, None if r.until is None else r.until - T0) for r in run.runs]
    assert got == [
        ("a", 0.0, None), ("b", 1.0, None), ("m", 2.0, None), ("a", 0.0, 10.0), ("b", 1.0, 11.0),
    ]  # fmt: skip
    assert all(r.source_id == ("mb-1" if r.thread_id == "m" else "wa-1") for r in run.runs)


def test_source_comes_from_the_first_event_that_has_one() -> None:
    run = Run().feed(ev(0, source=(None, None), recv=0), ev(1, recv=0.5), out(9, recv=1)).flush()
    assert run.totals.contents == {("wa-1", "whatsapp", "inbound"): 2,
                                   ("wa-1", "whatsapp", "outbound"): 1}  # fmt: skip
    assert run.activities[0].source_id == "wa-1"


def test_expire_idle_drops_idle_threads_and_their_backlog() -> None:
    run = Run().feed(ev(0, thread="old"), ev(5000, thread="recent")).flush()
    horizon = run.processor.idle_horizon
    now = T0 + 100 + horizon
    assert run.processor.expire_idle(run.state, run.store, ["old", "recent", "gone"], now) == 1
    assert set(run.store.data) == {"recent"}
    assert backlog(run.state, now) == {WA: (1, now - (T0 + 5000))}


def test_thread_state_round_trips_and_stays_small() -> None:
    run = Run().feed(*(ev(i * 60) if i % 2 == 0 else out(i * 60) for i in range(10))).flush()
    state = run.store.data["T1"]
    raw = encode_thread_state(state)
    assert decode_thread_state(raw) == state
    # 10 hashes (9 B each) + source + last released key + a few numbers.
    assert len(raw) < 200


def test_seen_content_ids_are_bounded() -> None:
    state = ThreadState()
    for i in range(MAX_SEEN * 2):
        assert state.remember(f"content-{i}")
    assert len(state.seen) == MAX_SEEN
    assert not state.remember(f"content-{MAX_SEEN * 2 - 1}")


@pytest.mark.parametrize("value", [b"not json", b'{"schema": 1}', b"[]"])
def test_unreadable_record_is_marked_applied(value: bytes) -> None:
    from streams.core.responses.partition import UnreadableRecord

    run = Run()
    with pytest.raises(UnreadableRecord) as info:
        run.processor.apply(run.state, run.store, 7, value)
    assert run.state.applied_offset == 7
    assert "offset 7" in str(info.value)
    assert run.processor.apply(run.state, run.store, 7, value) == []
