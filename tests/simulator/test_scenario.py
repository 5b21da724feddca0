"""The scenario generator: deterministic, arrival-ordered, and carrying every hard case."""

from __future__ import annotations

from collections import Counter, defaultdict

from engage_streams.record import ContentEvent, decode_event, encode_event
from simulator.scenario import CHANNELS, ScenarioConfig, generate

WINDOW = 10.0


def test_same_seed_same_events_other_seed_other_events() -> None:
    config = ScenarioConfig(seed=42, threads=50)
    assert generate(config) == generate(config)
    assert generate(config) != generate(ScenarioConfig(seed=43, threads=50))


def test_events_come_in_arrival_order_and_survive_the_wire() -> None:
    events = generate(ScenarioConfig(seed=1, threads=80))
    received = [e.received_at for e in events]
    assert received == sorted(received)
    assert all(decode_event(encode_event(e)) == e for e in events)
    assert all(e.event_time <= e.received_at for e in events)


def test_times_stay_within_the_configured_span_from_the_base_time() -> None:
    config = ScenarioConfig(seed=2, threads=100, base_time=1_700_000_000.0, span_seconds=3600.0)
    starts: dict[str, float] = {}
    for event in generate(config):
        t = event.event_time.timestamp()
        starts[event.thread_id] = min(t, starts.get(event.thread_id, t))
    assert all(1_700_000_000.0 <= t <= 1_700_003_600.0 for t in starts.values())


def _first_events(events: list[ContentEvent]) -> dict[str, ContentEvent]:
    first: dict[str, ContentEvent] = {}
    for event in events:
        first.setdefault(event.content_id, event)
    return first


def test_the_hard_cases_are_all_present() -> None:
    events = generate(ScenarioConfig(seed=3, threads=300))
    by_content = Counter(e.content_id for e in events)
    by_event = Counter(e.event_id for e in events)
    types = Counter(e.event_type for e in events)
    assert max(by_content.values()) >= 2, "a content in several events"
    assert max(by_event.values()) == 2, "a redelivered event"
    assert types["content.imported"] and types["content.replied"] and types["content.exported"]
    assert types["content.discussion_initiated"], "proactive agent messages"
    assert any(e.automatic for e in events), "automatic welcome messages"
    assert {e.source_type for e in events} == {t for _, t, _ in CHANNELS}
    assert len({e.agent_id for e in events if e.agent_id}) > 5
    assert any(e.intervention_id is None for e in events if not e.automatic)

    first = _first_events(events)
    races = late = 0
    seen_in_thread: dict[str, list[ContentEvent]] = defaultdict(list)
    for event in first.values():
        for earlier in seen_in_thread[event.thread_id]:
            if earlier.event_time > event.event_time:
                gap = (event.received_at - earlier.received_at).total_seconds()
                if gap < 3.5:
                    races += earlier.direction == "outbound" and event.direction == "inbound"
                elif gap > WINDOW:
                    late += 1
        seen_in_thread[event.thread_id].append(event)
    assert races >= 5, "answers received before their question, within 3 s"
    assert late >= 1, "contents received long after a later content of their thread"
