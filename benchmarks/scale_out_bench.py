"""Benchmark: events/s of a cluster of 1, 2 and 4 workers on one 8-partition topic. Not a test.

    python benchmarks/scale_out_bench.py [--events 200000] [--partitions 8] [--workers 1,2,4]

Without ``--bootstrap`` it starts a local Apache Kafka broker (``devkit.broker``). The same
events (a scenario of ``--events`` events, keyed by thread) are processed once per cluster
size by a new consumer group of ``engage-streams worker`` processes (RocksDB state, durable
flushes, ``/metrics`` polled every second). Once the group is settled -- every partition
owned, each worker owning some -- the events are loaded into a fresh topic of that cluster;
the rate runs from the start of the load to the moment the group has committed the last
record, so a slow rebalance neither flatters nor penalises a size (the load itself is faster
than any cluster here). It prints events/s per size, the speed-up against one worker and the
share of the ideal (linear) speed-up. On a 2-core machine two workers can use both cores,
four share them with the broker: the figure per added core is the 1 -> 2 step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_bench import bench_settings, lag_of, load, run_worker

from devkit.broker import KafkaConfig, LocalKafka
from devkit.ports import free_port
from engage_streams.record import encode_event
from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from simulator.scenario import ScenarioConfig, generate


async def committed_and_end(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """(offsets committed by ``group``, end offsets) summed over ``topic``'s partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        done = sum(meta.offset for tp, meta in committed.items() if tp.topic == topic)
        return done, sum(ends.values())
    finally:
        await consumer.stop()
        await admin.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc``; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ClusterRun:
    rate: float  # events/s of the cluster
    settle_seconds: float  # until every partition was owned
    worker_cpu: float  # CPU seconds of all its workers, from the load to the last commit
    broker_cpu: float  # CPU seconds of the broker meanwhile (0 with --bootstrap)


def run_cluster(
    size: int,
    base: Settings,
    workdir: Path,
    partitions: int,
    records: list[tuple[bytes, bytes]],
    broker_pid: int | None,
) -> ClusterRun:
    """``size`` workers: they start on an empty topic, the records are loaded once the group
    is settled, and the time (and the CPU of the workers and the broker) runs from the start
    of the load until the group has committed the last record."""
    group = f"scale-{size}-{uuid.uuid4().hex[:6]}"
    topic = f"{base.topic}.{size}"
    asyncio.run(create_topics(base.kafka_bootstrap_servers, {topic: partitions}))
    ports = [free_port() for _ in range(size)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        for n, port in enumerate(ports):
            settings = replace(
                base,
                app_id=group,
                topic=topic,
                dlq_topic=f"{topic}.dlq",
                # Each cluster its own side topics: its replica reads only its activities.
                activity_topic=f"{base.activity_topic}.{group}",
                summary_topic=f"{base.summary_topic}.{group}",
                waiting_topic=f"{base.waiting_topic}.{group}",
                worker_web_port=port,
                data_dir=str(workdir / group / f"w{n}"),
            )
            processes.append(run_worker(settings, workdir / f"{group}-w{n}.log"))
        settled = 0
        deadline = time.monotonic() + 300
        while settled < 3:  # every partition owned, each worker some, for 3 polls in a row
            if time.monotonic() > deadline:
                raise RuntimeError(f"{size} workers never settled; see {workdir}")
            readings = [lag_of(port, timeout=5.0) for port in ports]
            owned = [r[0] if r is not None else 0 for r in readings]
            settled = settled + 1 if sum(owned) == partitions and min(owned) > 0 else 0
            time.sleep(1.0)
        settle_seconds = time.monotonic() - started
        pids = [process.pid for process in processes]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0
        began = time.perf_counter()
        asyncio.run(load(base.kafka_bootstrap_servers, topic, records))
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done, end = asyncio.run(committed_and_end(base.kafka_bootstrap_servers, group, topic))
            if end >= len(records) and done >= end:
                elapsed = time.perf_counter() - began
                worker_cpu = sum(cpu_seconds(p) - c for p, c in zip(pids, cpu_before, strict=True))
                broker_cpu = cpu_seconds(broker_pid) - broker_before if broker_pid else 0.0
                return ClusterRun(len(records) / elapsed, settle_seconds, worker_cpu, broker_cpu)
            time.sleep(0.5)
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
        events = generate(ScenarioConfig(seed=5, threads=max(100, args.events // 9), agents=200))
        records = [(e.thread_id.encode(), encode_event(e)) for e in events[: args.events]]
        print(f"{len(records):,} events, {args.partitions} partitions, a topic per cluster size")
        base = bench_settings(bootstrap, topic, suffix, args.partitions)
        broker_pid = broker.pid if broker is not None else None
        results: dict[int, ClusterRun] = {}
        for size in sizes:
            run = results[size] = run_cluster(
                size, base, workdir, args.partitions, records, broker_pid
            )
            print(
                f"{size} worker(s): {run.rate:,.0f} events/s "
                f"(the group settled in {run.settle_seconds:.1f} s)"
            )
        one = results.get(1, results[sizes[0]]).rate
        print()
        print(
            f"{'workers':>8} {'events/s':>12} {'speed-up':>9} {'of linear':>10} "
            f"{'worker CPU/event':>17} {'events/s per worker core':>25} {'broker CPU/event':>17}"
        )
        for size in sizes:
            run = results[size]
            n, speed_up = len(records), run.rate / one
            print(
                f"{size:>8} {run.rate:>12,.0f} {speed_up:>8.2f}x {speed_up / size:>10.0%} "
                f"{run.worker_cpu / n * 1e6:>14.1f} us {n / run.worker_cpu:>25,.0f} "
                f"{run.broker_cpu / n * 1e6:>14.1f} us"
            )
        print(
            "\nevents/s per worker core = events / CPU seconds of all workers: what each added "
            "core brings\nwhen cores are not shared (the broker on its own machine); it falls "
            "as workers are added\nby each worker's own share of the cluster-wide work (its "
            "leaderboard replica reads\nevery worker's activities and waiting runs)."
        )
        return 0
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
