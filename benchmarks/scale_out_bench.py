"""Benchmark: events/s of a cluster of 1, 2 and 4 workers on one 8-partition topic. Not a test.

    python benchmarks/scale_out_bench.py [--events 200000] [--partitions 8] [--workers 1,2,4]

Without ``--bootstrap`` it starts a local Apache Kafka broker (``devkit.broker``). The same
topic (a scenario of ``--events`` events, keyed by thread) is processed once per cluster
size, each time by a new consumer group of ``engage-streams worker`` processes (RocksDB
state, durable flushes, ``/metrics`` scraped every second). The rate is taken from the moment
the group is settled -- every partition owned, each worker owning some -- to the moment no
record is left (records processed before the group settled are not counted, so a slow
rebalance does not flatter or penalise a size). It prints events/s per size, the speed-up
against one worker and the share of the ideal (linear) speed-up. On a 2-core machine two
workers can use both cores, four share them with the broker: the figure per added core is
the 1 -> 2 step.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_bench import load, run_worker

from devkit.broker import KafkaConfig, LocalKafka
from devkit.ports import free_port
from engage_streams.record import encode_event
from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from simulator.scenario import ScenarioConfig, generate


def owned_and_lag(port: int) -> tuple[int, float] | None:
    """(partitions owned, records waiting) of one worker, None while it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return None
    owned, lag = 0, 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "engage_stream_lag_messages":
            for sample in family.samples:
                owned += 1
                lag += sample.value
    return owned, lag


def run_cluster(
    size: int, base: Settings, workdir: Path, partitions: int, total: int
) -> tuple[float, float, int]:
    """(events/s once settled, seconds until settled, events counted) for ``size`` workers."""
    group = f"scale-{size}-{uuid.uuid4().hex[:6]}"
    ports = [free_port() for _ in range(size)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        for n, port in enumerate(ports):
            settings = replace(
                base,
                app_id=group,
                # Each cluster its own side topics: its replica reads only its activities.
                activity_topic=f"{base.activity_topic}.{group}",
                summary_topic=f"{base.summary_topic}.{group}",
                waiting_topic=f"{base.waiting_topic}.{group}",
                worker_web_port=port,
                data_dir=str(workdir / group / f"w{n}"),
            )
            processes.append(run_worker(settings, workdir / f"{group}-w{n}.log"))
        settled_at: float | None = None
        lag_at_settle = 0.0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            readings = [owned_and_lag(port) for port in ports]
            now = time.perf_counter()
            if all(r is not None for r in readings):
                owned = [r[0] for r in readings if r is not None]
                lag = sum(r[1] for r in readings if r is not None)
                if settled_at is None and sum(owned) == partitions and min(owned) > 0:
                    settled_at, lag_at_settle = now, lag
                    settle_seconds = time.monotonic() - started
                if settled_at is not None and lag == 0 and sum(owned) == partitions:
                    seconds = max(now - settled_at, 1e-6)
                    return lag_at_settle / seconds, settle_seconds, int(lag_at_settle)
            time.sleep(1.0)
        raise RuntimeError(f"{size} workers did not finish; see {workdir}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    sizes = [int(n) for n in args.workers.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="engage-scale-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = LocalKafka(
            KafkaConfig(data_dir=workdir / "kafka", port=free_port(), controller_port=free_port())
        )
        broker.start()
        bootstrap = broker.bootstrap_servers
    try:
        suffix = uuid.uuid4().hex[:8]
        topic = f"bench.contents.{suffix}"
        asyncio.run(create_topics(bootstrap, {topic: args.partitions}))
        events = generate(ScenarioConfig(seed=5, threads=max(100, args.events // 9), agents=200))
        records = [(e.thread_id.encode(), encode_event(e)) for e in events[: args.events]]
        asyncio.run(load(bootstrap, topic, records))
        print(f"loaded {len(records):,} events into {topic} ({args.partitions} partitions)")
        base = replace(
            Settings(),
            kafka_bootstrap_servers=bootstrap,
            topic=topic,
            dlq_topic=f"{topic}.dlq",
            activity_topic=f"bench.activity.{suffix}",
            summary_topic=f"bench.summaries.{suffix}",
            waiting_topic=f"bench.waiting-runs.{suffix}",
            topic_partitions=args.partitions,
        )
        results: dict[int, tuple[float, float, int]] = {}
        for size in sizes:
            results[size] = run_cluster(size, base, workdir, args.partitions, len(records))
            rate, settle, counted = results[size]
            print(
                f"{size} worker(s): {rate:,.0f} events/s ({counted:,} events after the group "
                f"settled in {settle:.1f} s)"
            )
        one = results.get(1, results[sizes[0]])[0]
        print()
        print(f"{'workers':>8} {'events/s':>12} {'speed-up':>9} {'of linear':>10}")
        for size in sizes:
            rate = results[size][0]
            print(f"{size:>8} {rate:>12,.0f} {rate / one:>8.2f}x {rate / one / size:>10.0%}")
        return 0
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
