"""The stream worker against the real broker: exported numbers equal the reference, exactly.

A generated scenario (duplicates, automatic contents, out-of-order and late arrivals) is
loaded into the contents topic, then real workers (``engage-streams worker``, child
processes, RocksDB state) process it. Every counter, histogram bucket/sum/count and backlog
gauge scraped from ``/metrics`` -- summed over workers, without the ``partition`` label --
must equal the independent reference of ``tests/reference.py``; also after ``kill -9`` of a
worker in the middle of the stream, and with two workers sharing the partitions.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from engage_streams.settings import Settings
from simulator.scenario import ScenarioConfig, generate
from tests.plugins.waiting import wait_for
from tests.plugins.workers import (
    PARTITIONS,
    WINDOW,
    Series,
    WorkerProcess,
    expected_numbers,
    labels,
    lag_total,
    load_scenario,
    parse_series,
    scrape_all,
    sum_series,
    worker_settings,
)
from tests.references.responses import BOUNDS, Expected

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

COUNTERS = (
    "engage_contents_total",
    "engage_agent_replies_total",
    "engage_sla_responses_total",
    "engage_late_contents_total",
)
HISTOGRAMS = (
    "engage_response_seconds",
    "engage_first_response_seconds",
    "engage_agent_response_seconds",
)


def expected_series(expected: Expected) -> Series:
    """The reference as Prometheus samples (the names and labels of CONTRACT.md)."""
    out: Series = {}
    for (source, source_type, direction), n in expected.contents.items():
        out[
            (
                "engage_contents_total",
                labels(source=source, source_type=source_type, direction=direction),
            )
        ] = n
    for agent, n in expected.agent_replies.items():
        out[("engage_agent_replies_total", labels(agent=agent))] = n
    for (source, within), n in expected.sla.items():
        out[("engage_sla_responses_total", labels(source=source, within_sla=within))] = n
    for source, n in expected.late.items():
        out[("engage_late_contents_total", labels(source=source))] = n
    series_of = {
        "engage_response_seconds": (lambda o: o.source, False, ("source", "source_type")),
        "engage_first_response_seconds": (lambda o: o.source, True, ("source", "source_type")),
        "engage_agent_response_seconds": (lambda o: o.agent, False, ("agent",)),
    }
    for name, (pick, first_only, label_names) in series_of.items():
        for key in {pick(o) for o in expected.observations if o.first or not first_only}:
            cumulative, total, count = expected.histogram(pick, key, first_only=first_only)
            values = key if isinstance(key, tuple) else (key,)
            base = dict(zip(label_names, values, strict=True))
            for bound, n in zip([*map(str, BOUNDS), "+Inf"], cumulative, strict=True):
                out[(f"{name}_bucket", labels(**base, le=_le(bound)))] = n
            out[(f"{name}_sum", labels(**base))] = total
            out[(f"{name}_count", labels(**base))] = count
    return out


def _le(bound: str) -> str:
    return bound if bound == "+Inf" else f"{float(bound)}"


def exported(series: Series) -> Series:
    """The counter and histogram samples of the contract (zero-valued samples dropped)."""
    names = set(COUNTERS) | {f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
    return {k: v for k, v in series.items() if k[0] in names and v != 0}


def assert_numbers_equal(actual: Series, expected: Series) -> None:
    want = {k: v for k, v in expected.items() if v != 0}
    got = exported(actual)
    missing = {k: v for k, v in want.items() if k not in got}
    extra = {k: v for k, v in got.items() if k not in want}
    wrong = {
        k: (got[k], v)
        for k, v in want.items()
        if k in got and not math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-6)
    }
    assert not missing and not extra and not wrong, (
        f"missing={list(missing.items())[:5]} extra={list(extra.items())[:5]} "
        f"wrong={list(wrong.items())[:5]}"
    )


def assert_backlog_equal(actual: Series, expected: Expected, scraped_at: float) -> None:
    backlog = expected.backlog(scraped_at)
    got = {
        source: count
        for source, count in _sum_by_source(actual, "engage_backlog_contents").items()
        if count
    }
    assert got == {source: count for (source, _), (count, _) in backlog.items()}
    ages: dict[str, float] = {}
    for (name, label_set), value in actual.items():
        # Kept per partition (an age is a maximum over partitions, never a sum).
        if name == "engage_backlog_oldest_age_seconds" and value:
            source = dict(label_set)["source"]
            ages[source] = max(ages.get(source, 0.0), value)
    want_ages = {source: age for (source, _), (_, age) in backlog.items()}
    # The worker computed the ages at its scrape, a moment before ``scraped_at``.
    assert ages.keys() == want_ages.keys()
    for source, age in want_ages.items():
        assert ages[source] == pytest.approx(age, abs=30.0), (ages, want_ages)


def _sum_by_source(series: Series, name: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (metric, label_set), value in series.items():
        if metric == name:
            out[dict(label_set)["source"]] += value
    return dict(out)


@pytest.fixture
def stream_settings(kafka_settings: Settings, kafka_broker: object) -> Settings:
    from dataclasses import replace

    from engage_streams.topics import create_topics

    suffix = kafka_settings.app_id.rsplit("-", 1)[-1]
    settings = replace(
        kafka_settings,
        topic_partitions=PARTITIONS,
        activity_topic=f"engage.agent-activity.{suffix}",
        summary_topic=f"engage.partition-summaries.{suffix}",
        waiting_topic=f"engage.waiting-runs.{suffix}",
        reorder_window_seconds=WINDOW,
        store="rocksdb://",
    )
    asyncio.run(create_topics(settings.kafka_bootstrap_servers, {settings.topic: PARTITIONS}))
    return settings


def run_until_done(
    workers: list[WorkerProcess], expected_contents: float, timeout: float
) -> Series:
    """Scrape until every owned partition is processed, the contents add up and no reorder
    buffer holds anything (contents count at once, their responses after the window)."""
    state: dict[str, Series] = {}

    def done() -> bool:
        texts = scrape_all(workers)
        if texts is None:
            return False
        series = sum_series(parse_series(t, drop=("partition", "topic")) for t in texts)
        ages = sum_series(parse_series(t, drop=("topic",)) for t in texts)
        age = "engage_backlog_oldest_age_seconds"
        series = {k: v for k, v in series.items() if k[0] != age}
        series.update({k: v for k, v in ages.items() if k[0] == age})
        state["series"] = series
        contents = sum(v for (n, _), v in series.items() if n == "engage_contents_total")
        owned = len(parse_all_lag(texts))
        buffered = sum(v for (n, _), v in series.items() if n == "engage_reorder_buffer_threads")
        return (
            owned == PARTITIONS
            and lag_total(series) == 0
            and contents >= expected_contents
            and buffered == 0
        )

    def log() -> str:
        return "\n---\n".join(w.log_tail() for w in workers)

    wait_for(done, timeout, "the workers to process the whole scenario", log)
    return state["series"]


def parse_all_lag(texts: list[str]) -> list[tuple[str, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: list[tuple[str, float]] = []
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name == "engage_stream_lag_messages":
                out.extend((s.labels["partition"], s.value) for s in family.samples)
    return out


def test_one_worker_exports_exactly_the_reference(stream_settings: Settings, tmp_path: Path):
    events = generate(ScenarioConfig(seed=7, threads=300, agents=10))
    load_scenario(stream_settings, events)
    expected = expected_numbers(events, PARTITIONS)
    worker = WorkerProcess(worker_settings(stream_settings, tmp_path / "w1"), tmp_path / "w1.log")
    worker.start()
    try:
        series = run_until_done([worker], sum(expected.contents.values()), timeout=180)
        scraped_at = time.time()
        assert_numbers_equal(series, expected_series(expected))
        assert_backlog_equal(series, expected, scraped_at)
        assert_promtool_accepts(worker.scrape() or "")
    finally:
        worker.stop()


def assert_promtool_accepts(exposition: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=exposition.encode(), capture_output=True
    )
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), (
        checked.stdout.decode() + checked.stderr.decode()
    )


def flushed_contents(worker: WorkerProcess) -> float:
    text = worker.scrape()
    if text is None:
        return 0.0
    series = parse_series(text, drop=("partition", "topic"))
    return sum(v for (n, _), v in series.items() if n == "engage_contents_total")


def test_kill_9_in_the_middle_changes_nothing(stream_settings: Settings, tmp_path: Path):
    events = generate(ScenarioConfig(seed=11, threads=12_000, agents=40))
    load_scenario(stream_settings, events)
    expected = expected_numbers(events, PARTITIONS)
    total = sum(expected.contents.values())
    settings = worker_settings(stream_settings, tmp_path / "w1")
    worker = WorkerProcess(settings, tmp_path / "w1.log")
    worker.start()
    try:
        wait_for(
            lambda: flushed_contents(worker) >= total * 0.3,
            180,
            "the worker to get a third of the way",
            worker.log_tail,
        )
        progress = flushed_contents(worker)
        assert progress < total, "the stream was over before the kill: make it longer"
        worker.kill9()
        worker.start()  # same data dir, same group: resumes from its durable state
        series = run_until_done([worker], total, timeout=300)
        scraped_at = time.time()
        assert_numbers_equal(series, expected_series(expected))
        assert_backlog_equal(series, expected, scraped_at)
    finally:
        worker.stop()


def test_two_workers_share_the_partitions(stream_settings: Settings, tmp_path: Path):
    events = generate(ScenarioConfig(seed=23, threads=2_000, agents=20))
    load_scenario(stream_settings, events)
    expected = expected_numbers(events, PARTITIONS)
    workers = [
        WorkerProcess(worker_settings(stream_settings, tmp_path / name), tmp_path / f"{name}.log")
        for name in ("w1", "w2")
    ]
    for worker in workers:
        worker.start()
    try:

        def both_own_some() -> bool:
            texts = scrape_all(workers)
            return texts is not None and all(parse_all_lag([t]) for t in texts)

        wait_for(
            both_own_some,
            180,
            "both workers to own partitions",
            lambda: "\n---\n".join(w.log_tail() for w in workers),
        )
        series = run_until_done(workers, sum(expected.contents.values()), timeout=300)
        scraped_at = time.time()
        assert_numbers_equal(series, expected_series(expected))
        assert_backlog_equal(series, expected, scraped_at)
    finally:
        for worker in workers:
            worker.stop()


def test_partitions_move_between_workers_with_their_numbers(
    stream_settings: Settings, tmp_path: Path
):
    """A second worker joins after the first processed everything, then the first dies:
    the state moves through the changelog and the sum over workers stays exact."""
    events = generate(ScenarioConfig(seed=41, threads=1_500, agents=15))
    load_scenario(stream_settings, events)
    expected = expected_numbers(events, PARTITIONS)
    total = sum(expected.contents.values())
    first, second = (
        WorkerProcess(worker_settings(stream_settings, tmp_path / n), tmp_path / f"{n}.log")
        for n in ("w1", "w2")
    )
    try:
        first.start()
        run_until_done([first], total, timeout=180)
        second.start()

        def shared() -> bool:
            texts = scrape_all([first, second])
            return texts is not None and all(parse_all_lag([t]) for t in texts)

        wait_for(shared, 180, "the partitions to be shared", lambda: second.log_tail())
        series = run_until_done([first, second], total, timeout=180)
        assert_numbers_equal(series, expected_series(expected))

        first.kill9()
        # The second worker recovers the first one's partitions from the changelog alone.
        series = run_until_done([second], total, timeout=240)
        scraped_at = time.time()
        assert_numbers_equal(series, expected_series(expected))
        assert_backlog_equal(series, expected, scraped_at)
    finally:
        first.stop()
        second.stop()


#: Threads of the scale test: a reduced profile here; by hand, the heavy one:
#: ``ENGAGE_SCALE_THREADS=1000000 ENGAGE_SCALE_CACHE=25000 .venv/bin/python -m pytest -s -k
#: many_threads tests/streams/worker/test_worker_integration.py`` (about 9 M records; 72 min
#: on the shared machine, see RELIABILITY.md).
SCALE_THREADS = int(os.environ.get("ENGAGE_SCALE_THREADS", "6000"))
#: The thread cache bound, forced far below the number of threads of a partition so that
#: eviction and overlapping flushes happen all the time (the worker's default is 200,000).
SCALE_CACHE = int(os.environ.get("ENGAGE_SCALE_CACHE", "16"))


@pytest.mark.timeout(max(600, SCALE_THREADS // 100))
def test_many_threads_through_a_tiny_cache_export_exactly_the_reference(
    stream_settings: Settings, tmp_path: Path
):
    started = time.monotonic()
    events = generate(
        ScenarioConfig(
            seed=23,
            threads=SCALE_THREADS,
            agents=max(10, SCALE_THREADS // 1000),
            span_seconds=max(8 * 3600.0, SCALE_THREADS * 0.5),
        )
    )
    load_scenario(stream_settings, events)
    expected = expected_numbers(events, PARTITIONS)
    prepared = time.monotonic() - started
    total = sum(expected.contents.values())
    settings = worker_settings(stream_settings, tmp_path / "w1", thread_cache_size=SCALE_CACHE)
    worker = WorkerProcess(settings, tmp_path / "w1.log")
    started = time.monotonic()
    worker.start()
    try:
        series = run_until_done([worker], total, timeout=max(300, SCALE_THREADS / 100))
        processed = time.monotonic() - started
        scraped_at = time.time()
        want = expected_series(expected)
        assert_numbers_equal(series, want)
        assert_backlog_equal(series, expected, scraped_at)
        print(
            f"\nscale: {SCALE_THREADS:,} threads, {len(events):,} records, cache {SCALE_CACHE}"
            f" per partition: {len(exported(series)):,} exported values equal the reference;"
            f" generated+loaded+reference {prepared:.0f} s, worker {processed:.0f} s"
            f" ({len(events) / processed:,.0f} records/s incl. start-up)"
        )
    finally:
        worker.stop()
