"""The Prometheus exposition of partition states: names, labels, values, promtool."""

from __future__ import annotations

import math
import shutil
import subprocess
import zlib
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engage_streams.record import encode_event
from simulator.scenario import ScenarioConfig, generate
from streams.core.responses.partition import (
    PartitionProcessor,
    PartitionState,
    WaitingThread,
)
from streams.core.responses.sla import SlaPolicy
from streams.core.responses.totals import BUCKET_BOUNDS, Histogram
from streams.worker.exporter import Backlog, PartitionCollector, render_partitions
from tests.plugins.stores import MemoryThreadStore
from tests.references.responses import Expected, reference

NOW = 1772438400.0
WA = ("wa-1", "whatsapp")
MAIL = ("mb-1", "email")
TOPIC = "engage.contents"


def hand_made_states() -> dict[int, PartitionState]:
    p0 = PartitionState()
    p0.totals.count_content(WA, "inbound")
    p0.totals.count_content(WA, "inbound")
    p0.totals.count_content(WA, "outbound")
    p0.totals.count_reply("ag-1")
    p0.totals.observe_response(WA, "ag-1", 40.0, first=True, within_sla=True)
    p0.totals.observe_response(WA, "ag-1", 400.0, first=False, within_sla=False)
    p0.totals.count_late("wa-1")
    p0.waiting["t9"] = WaitingThread("wa-1", "whatsapp", 2, NOW - 100.0)
    p3 = PartitionState()
    p3.totals.count_content(MAIL, "inbound")
    return {0: p0, 3: p3}


def scrape(states: Mapping[int, PartitionState]) -> str:
    """What the worker's /metrics says of these partitions (``render_partitions``)."""
    return render_partitions(states, {}, NOW, TOPIC)


def library_scrape(
    states: Mapping[int, PartitionState], live: Mapping[int, Backlog] | None = None
) -> str:
    """The same series rendered by prometheus_client (families, then ``generate_latest``)."""
    registry = CollectorRegistry()
    registry.register(
        PartitionCollector(
            lambda: states, lambda: NOW, TOPIC, None if live is None else lambda: live
        )
    )
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def at(partition: int, **labels: str) -> frozenset[tuple[str, str]]:
    return frozenset({**labels, "topic": TOPIC, "partition": str(partition)}.items())


def test_every_contract_metric_with_its_labels_and_values() -> None:
    got = samples(scrape(hand_made_states()))
    wa = {"source": "wa-1", "source_type": "whatsapp"}
    assert got[("engage_contents_total", at(0, **wa, direction="inbound"))] == 2
    assert got[("engage_contents_total", at(0, **wa, direction="outbound"))] == 1
    assert got[("engage_contents_total", at(3, source="mb-1", source_type="email",
                                            direction="inbound"))] == 1  # fmt: skip
    # Responses 40 s and 400 s: cumulative buckets.
    for le, n in (("30", 0), ("60", 1), ("300", 1), ("600", 2), ("+Inf", 2)):
        assert got[("engage_response_seconds_bucket", at(0, **wa, le=le))] == n
    assert got[("engage_response_seconds_count", at(0, **wa))] == 2
    assert got[("engage_response_seconds_sum", at(0, **wa))] == 440.0
    assert got[("engage_first_response_seconds_count", at(0, **wa))] == 1
    assert got[("engage_first_response_seconds_sum", at(0, **wa))] == 40.0
    assert got[("engage_agent_replies_total", at(0, agent="ag-1"))] == 1
    assert got[("engage_agent_response_seconds_count", at(0, agent="ag-1"))] == 2
    assert got[("engage_sla_responses_total", at(0, source="wa-1", within_sla="true"))] == 1
    assert got[("engage_sla_responses_total", at(0, source="wa-1", within_sla="false"))] == 1
    assert got[("engage_late_contents_total", at(0, source="wa-1"))] == 1
    assert got[("engage_backlog_contents", at(0, **wa))] == 2
    assert got[("engage_backlog_oldest_age_seconds", at(0, **wa))] == 100.0
    # A known source with nothing waiting is exported as 0, not left out.
    mail = {"source": "mb-1", "source_type": "email"}
    assert got[("engage_backlog_contents", at(3, **mail))] == 0
    assert got[("engage_backlog_oldest_age_seconds", at(3, **mail))] == 0
    # ... and so are its late contents and SLA responses: 0 from its first content on.
    assert got[("engage_late_contents_total", at(3, source="mb-1"))] == 0
    assert got[("engage_sla_responses_total", at(3, source="mb-1", within_sla="true"))] == 0
    assert got[("engage_sla_responses_total", at(3, source="mb-1", within_sla="false"))] == 0


def test_only_the_partitions_given_are_exported() -> None:
    states = hand_made_states()
    del states[0]
    text = scrape(states)
    assert 'partition="0"' not in text and 'partition="3"' in text


def scenario_states(seed: int, threads: int) -> tuple[dict[int, PartitionState], Expected]:
    events = generate(ScenarioConfig(seed=seed, threads=threads))
    processor = PartitionProcessor(SlaPolicy(), 10.0, 7 * 86400.0)
    states: dict[int, PartitionState] = {}
    expected = Expected()
    for partition in range(3):
        mine = [e for e in events if zlib.crc32(e.thread_id.encode()) % 3 == partition]
        state, store = PartitionState(), MemoryThreadStore()
        for offset, event in enumerate(mine):
            processor.apply(state, store, offset, encode_event(event))
        processor.release_until(state, store, math.inf)
        states[partition] = state
        expected.add(reference(mine, 10.0))
    return states, expected


def test_the_direct_text_is_the_librarys_to_the_byte() -> None:
    """``render_partitions`` writes exactly what prometheus_client's ``generate_latest``
    writes for the same series: a scenario, and labels and values that need escaping or
    Go's float spelling (quotes, backslashes, newlines, counts past a million)."""
    states, _ = scenario_states(seed=12, threads=80)
    assert render_partitions(states, {}, NOW, TOPIC) == library_scrape(states)
    odd = PartitionState()
    odd_source = ('wa "quoted" \\ back\nslash', "whatsapp")
    for _ in range(3):
        odd.totals.count_content(odd_source, "inbound")
    odd.totals.contents[("big", "email", "inbound")] = 12_345_678
    odd.totals.observe_response(odd_source, 'ag "1"', 1e-7, first=True, within_sla=True)
    odd.totals.observe_response(odd_source, "", 123456.789, first=False, within_sla=False)
    odd.totals.agent_response["ag-big"] = Histogram(
        counts=[2_000_000] * (len(BUCKET_BOUNDS) + 1), sum=1e12, count=30_000_000
    )
    odd.provisional["t1"] = WaitingThread("big", "email", 1, NOW - 5.0)
    live = {7: {odd_source: (4, 12.5), ("big", "email"): (0, 0.0)}}
    assert render_partitions({7: odd}, live, NOW, TOPIC) == library_scrape({7: odd}, live)
    assert render_partitions({}, {}, NOW, TOPIC) == library_scrape({})


def test_scenario_exposition_sums_to_the_reference_totals() -> None:
    states, expected = scenario_states(seed=11, threads=60)
    got = samples(scrape(states))

    def total(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in got.items()
                   if n == name and set(labels.items()) <= ls)  # fmt: skip

    assert total("engage_contents_total") == sum(expected.contents.values())
    assert total("engage_response_seconds_count") == len(expected.observations)
    assert total("engage_response_seconds_sum") == pytest.approx(
        sum(o.seconds for o in expected.observations)
    )
    assert total("engage_sla_responses_total", within_sla="false") == sum(
        n for (_, w), n in expected.sla.items() if w == "false"
    )
    assert total("engage_agent_replies_total") == sum(expected.agent_replies.values())
    assert total("engage_backlog_contents") == sum(n for n, _ in expected.backlog(NOW).values())


def test_the_live_backlog_and_the_reorder_buffer_are_exported() -> None:
    """Issue 10: backlog gauges come from the live backlogs when given (counters still from
    the durable states); threads with buffered contents are a gauge of their own."""
    state = PartitionState()
    state.totals.count_content(WA, "inbound")
    state.provisional["t1"] = WaitingThread("wa-1", "whatsapp", 1, NOW - 5.0)
    live = {0: {WA: (3, 7.0)}}
    got = samples(render_partitions({0: state}, live, NOW, TOPIC))
    wa = {"source": "wa-1", "source_type": "whatsapp"}
    assert got[("engage_contents_total", at(0, **wa, direction="inbound"))] == 1
    assert got[("engage_backlog_contents", at(0, **wa))] == 3
    assert got[("engage_backlog_oldest_age_seconds", at(0, **wa))] == 7.0
    assert got[("engage_reorder_buffer_threads", at(0))] == 1
    # Without live backlogs, the state's own (live) view.
    assert samples(scrape({0: state}))[("engage_backlog_contents", at(0, **wa))] == 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_exposition() -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=scrape(hand_made_states()).encode(),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
