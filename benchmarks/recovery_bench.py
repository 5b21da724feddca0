"""Benchmark: cold recovery of one stream worker from the ``threads`` changelog. Not a test
(``tests/streams/worker/test_recovery.py`` runs a reduced profile and checks what it prints).

    python benchmarks/recovery_bench.py [--threads 1000000] [--partitions 4]
        [--bootstrap HOST:PORT] [--max-poll-records N] [--json] [--profile-recovery FILE]

Without ``--bootstrap`` it starts a local Apache Kafka broker (``devkit.broker``) on free
ports in a temporary directory. Steps:

1. generate ``--threads`` threads of scenario (``simulator.scenario``, ~9 events a thread, in
   chunks of 50,000 threads with consecutive 8-hour spans, so memory stays small) and
   produce them to a fresh contents topic while one worker (``engage-streams worker``, a
   child process, RocksDB) processes them; wait until it has processed and flushed all;
2. scrape its exported numbers ("before"), stop it (SIGTERM), delete its state directory;
3. start it again on the same group: it restores the table from the changelog. Poll
   ``/healthz``, ``/readyz`` and ``/metrics`` all along;
4. once ready and caught up, scrape the numbers again ("after") and compare.

Prints: time to the first ``/healthz`` 200 and to ``/readyz`` 200, changelog records restored
and per second, peak RSS of the worker while processing and while recovering, the readiness
answers seen during the recovery, and whether the numbers after equal those before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.broker import KafkaConfig, LocalKafka
from devkit.ports import free_port
from engage_streams.record import encode_event
from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from simulator.scenario import DEFAULT_BASE_TIME, ScenarioConfig, generate

CHUNK_THREADS = 50_000
SPAN_SECONDS = 8 * 3600.0
#: Exported series that must be the same before and after the recovery (the backlog ages
#: and lag move with the clock and the worker's position).
COMPARED = (
    "engage_contents_total",
    "engage_agent_replies_total",
    "engage_sla_responses_total",
    "engage_late_contents_total",
    "engage_backlog_contents",
    "engage_response_seconds",
    "engage_first_response_seconds",
    "engage_agent_response_seconds",
)

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# -- the worker process ------------------------------------------------------------------


class Worker:
    """``engage-streams worker`` as a child process, with its peak RSS sampled."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._sampling = False
        self._sampler: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.worker_web_port}"

    def start(self) -> None:
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engage_streams.cli", "worker"],
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )
        self.peak_rss = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._sampler.start()

    def _sample_rss(self) -> None:
        while self._sampling and self.process is not None:
            self.peak_rss = max(self.peak_rss, rss_bytes(self.process.pid))
            time.sleep(0.2)

    def take_peak_rss(self) -> int:
        """The peak RSS since the last call (or the start), and start again from now."""
        peak = max(self.peak_rss, rss_bytes(self.process.pid) if self.process else 0)
        self.peak_rss = 0
        return peak

    def stop(self) -> None:
        self._sampling = False
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=2.0)
        except httpx.HTTPError:
            return None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# -- numbers ------------------------------------------------------------------------------


def parse(text: str) -> Series:
    """Samples summed over ``partition`` (and ``topic``)."""
    out: Series = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(
                sorted((k, v) for k, v in sample.labels.items() if k not in ("partition", "topic"))
            )
            out[(sample.name, labels)] += sample.value
    return dict(out)


def compared(series: Series) -> Series:
    return {
        key: value
        for key, value in series.items()
        if any(key[0] == name or key[0].startswith(name + "_") for name in COMPARED)
    }


def owned_and_lag(text: str) -> tuple[int, float]:
    """(partitions the worker reports, their total lag)."""
    lags = [
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "engage_stream_lag_messages"
        for sample in family.samples
    ]
    return len(lags), sum(lags)


def contents_total(series: Series) -> float:
    return sum(v for (name, _), v in series.items() if name == "engage_contents_total")


def settled_numbers(
    worker: Worker, partitions: int, want_contents: float, timeout: float
) -> Series:
    """Scrape until every partition is owned, caught up and two scrapes agree."""
    deadline = time.monotonic() + timeout
    previous: Series | None = None
    while time.monotonic() < deadline:
        response = worker.get("/metrics")
        if response is not None and response.status_code == 200:
            series = parse(response.text)
            owned, lag = owned_and_lag(response.text)
            if owned == partitions and lag == 0 and contents_total(series) >= want_contents:
                numbers = compared(series)
                if numbers == previous:
                    return numbers
                previous = numbers
                time.sleep(1.5)  # a flush later: the exported state is the flushed one
                continue
        time.sleep(0.5)
    raise TimeoutError("the worker did not settle; log:\n" + worker.log_tail())


# -- loading ------------------------------------------------------------------------------


async def produce_scenario(bootstrap: str, topic: str, threads: int, seed: int) -> int:
    """Produce ``threads`` threads of scenario, a chunk at a time; returns the contents count
    the worker will export at least (non-automatic contents are counted, so: a lower bound)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    events_total = 0
    try:
        for index, start in enumerate(range(0, threads, CHUNK_THREADS)):
            count = min(CHUNK_THREADS, threads - start)
            config = ScenarioConfig(
                seed=seed + index,
                threads=count,
                agents=200,
                base_time=DEFAULT_BASE_TIME + index * SPAN_SECONDS,
            )
            events = await asyncio.to_thread(generate, config)
            futures = [
                await producer.send(topic, key=e.thread_id.encode(), value=encode_event(e))
                for e in events
            ]
            await asyncio.gather(*futures)
            events_total += len(events)
    finally:
        await producer.stop()
    return events_total


async def changelog_records(bootstrap: str, topic: str, partitions: int) -> int:
    """Records (offsets) in the changelog topic now: what a cold recovery reads at most."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


# -- the benchmark ------------------------------------------------------------------------


@dataclass
class RecoveryRun:
    """What the restarted worker answered, and when (seconds since its start)."""

    first_healthz: float | None = None
    ready: float | None = None
    readiness: list[dict[str, Any]] = field(default_factory=list)
    metrics_during_recovery: int = 0
    recovering_metric_seen: bool = False
    healthz_while_recovering: int = 0


def watch_recovery(worker: Worker, started: float, timeout: float) -> RecoveryRun:
    run = RecoveryRun()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        healthz = worker.get("/healthz")
        now = time.monotonic() - started
        if healthz is not None and healthz.status_code == 200 and run.first_healthz is None:
            run.first_healthz = now
        readyz = worker.get("/readyz")
        if readyz is not None:
            body = readyz.json()
            recovering = "recovering" in body.get("reasons", {})
            run.readiness.append(
                {
                    "at": round(now, 3),
                    "status": readyz.status_code,
                    "reasons": sorted(body.get("reasons", {})),
                    "progress": body.get("recovery_progress"),
                }
            )
            if recovering:
                if healthz is not None and healthz.status_code == 200:
                    run.healthz_while_recovering += 1
                metrics = worker.get("/metrics") if run.metrics_during_recovery < 3 else None
                if metrics is not None and metrics.status_code == 200:
                    run.metrics_during_recovery += 1
                    series = parse(metrics.text)
                    if series.get(("engage_worker_recovering", ())) == 1.0:
                        run.recovering_metric_seen = True
            if readyz.status_code == 200:
                if run.first_healthz is None:
                    run.first_healthz = now  # the same server answered: it was alive
                run.ready = now
                return run
        time.sleep(0.02)
    raise TimeoutError("the worker did not get ready; log:\n" + worker.log_tail())


def bench(
    bootstrap: str,
    threads: int,
    partitions: int,
    workdir: Path,
    seed: int,
    max_poll: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    topic = f"bench.recovery.contents.{suffix}"
    asyncio.run(create_topics(bootstrap, {topic: partitions}))
    settings = replace(
        Settings(),
        kafka_bootstrap_servers=bootstrap,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        activity_topic=f"bench.recovery.activity.{suffix}",
        summary_topic=f"bench.recovery.summaries.{suffix}",
        topic_partitions=partitions,
        app_id=f"bench-recovery-{suffix}",
        worker_web_port=free_port(),
        data_dir=str(workdir / "worker-state"),
    )
    worker = Worker(settings, workdir / "worker.log")
    result: dict[str, Any] = {"threads": threads, "partitions": partitions}
    try:
        started = time.monotonic()
        worker.start()
        events = asyncio.run(produce_scenario(bootstrap, topic, threads, seed))
        result["events"] = events
        before = settled_numbers(worker, partitions, 1, timeout=3600)
        result["processing_seconds"] = round(time.monotonic() - started, 1)
        result["peak_rss_processing_mb"] = round(worker.take_peak_rss() / 2**20)
        worker.stop()
        changelog = f"{settings.app_id}-threads-changelog"
        result["changelog_records"] = asyncio.run(
            changelog_records(bootstrap, changelog, partitions)
        )
        shutil.rmtree(settings.data_dir)

        worker.settings = replace(settings, worker_max_poll_records=max_poll)
        started = time.monotonic()
        worker.start()
        profiler = None
        if profile is not None and worker.process is not None:
            profiler = subprocess.Popen(
                [
                    shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                    *("record", "--pid", str(worker.process.pid), "--format", "raw"),
                    *("--rate", "50", "--output", str(profile), "--nonblocking"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        run = watch_recovery(worker, started, timeout=3600)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        result["peak_rss_recovering_mb"] = round(worker.take_peak_rss() / 2**20)
        result["first_healthz_seconds"] = run.first_healthz
        result["ready_seconds"] = run.ready
        restored_per_second = result["changelog_records"] / max(run.ready or 0.0, 1e-6)
        result["changelog_records_per_second"] = round(restored_per_second)
        result["readiness"] = run.readiness
        result["healthz_while_recovering"] = run.healthz_while_recovering
        result["metrics_during_recovery"] = run.metrics_during_recovery
        result["recovering_metric_seen"] = run.recovering_metric_seen
        after = settled_numbers(worker, partitions, contents_total(before), timeout=600)
        differ = {
            f"{name}{dict(labels)}": (before.get((name, labels)), after.get((name, labels)))
            for name, labels in set(before) | set(after)
            if not math.isclose(
                before.get((name, labels), math.nan), after.get((name, labels), math.nan)
            )
        }
        result["series_compared"] = len(before)
        result["contents_total"] = contents_total(before)
        result["numbers_equal"] = not differ
        result["differences"] = dict(list(differ.items())[:10])
        return result
    finally:
        worker.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # A SIGTERM (a timeout) must still stop the broker and the worker (``finally`` below).
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument(
        "--max-poll-records",
        type=int,
        default=Settings().worker_max_poll_records,
        help="ENGAGE_WORKER_MAX_POLL_RECORDS of the recovering worker",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument(
        "--profile-recovery",
        type=Path,
        default=None,
        help="record the recovering worker with py-spy (pip install py-spy), collapsed stacks",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="engage-recovery-bench-"))
    broker = None
    bootstrap = args.bootstrap
    try:
        if bootstrap is None:
            broker = LocalKafka(
                KafkaConfig(
                    data_dir=workdir / "kafka", port=free_port(), controller_port=free_port()
                )
            )
            broker.start()
            bootstrap = broker.bootstrap_servers
        result = bench(
            bootstrap,
            args.threads,
            args.partitions,
            workdir,
            args.seed,
            args.max_poll_records,
            args.profile_recovery,
        )
        if args.json:
            print(json.dumps(result))
        else:
            report(result)
        return 0 if result["numbers_equal"] else 1
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(result: dict[str, Any]) -> None:
    recovering = [r for r in result["readiness"] if "recovering" in r["reasons"]]
    progress = [r["progress"] for r in recovering if r["progress"] is not None]
    print(
        f"{result['threads']:,} threads, {result['events']:,} events, "
        f"{result['partitions']} partitions; processed in {result['processing_seconds']} s"
    )
    print(f"changelog records to restore       {result['changelog_records']:>12,}")
    print(f"first /healthz 200 after           {result['first_healthz_seconds']:>12.2f} s")
    print(f"/readyz 200 after                  {result['ready_seconds']:>12.2f} s")
    print(f"restored                      {result['changelog_records_per_second']:>12,} records/s")
    print(f"peak RSS while processing          {result['peak_rss_processing_mb']:>12,} MB")
    print(f"peak RSS while recovering          {result['peak_rss_recovering_mb']:>12,} MB")
    print(
        f"/readyz 'recovering' answers       {len(recovering):>12,} "
        f"(progress {min(progress, default=0):.2f}..{max(progress, default=0):.2f}); "
        f"/healthz 200 meanwhile {result['healthz_while_recovering']}, "
        f"/metrics meanwhile {result['metrics_during_recovery']}"
    )
    verdict = "equal" if result["numbers_equal"] else f"DIFFER: {result['differences']}"
    print(f"numbers after vs before ({result['series_compared']:,} series)  {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
