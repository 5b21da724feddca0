"""Benchmark: sustained events/s of one stream worker against the real broker, next to a
raw aiokafka consume-and-decode loop on the same data (the ceiling). Not a test.

    python benchmarks/worker_bench.py [--events 200000] [--partitions 4] [--bootstrap HOST:PORT]

Without ``--bootstrap`` it starts a local Apache Kafka broker (``devkit.broker``)
on free ports in a temporary directory. Steps:

1. generate a scenario (``simulator.scenario``) of about ``--events`` events and load it into a
   fresh topic (keyed by thread id);
2. ceiling: one aiokafka consumer reads every record and decodes it (``decode_event``);
3. worker: ``engage-streams worker`` (a child process, RocksDB state, durable flushes)
   processes the same topic while its ``/metrics`` is scraped every ``--scrape`` seconds
   (default 1 s, as a Prometheus would, only faster); the rate is the steady one between the
   first scrape that saw work done and the last that saw work left, both read from
   ``engage_stream_lag_messages`` (start-up, rebalance and the final flush excluded, no
   rounding to a scrape interval); with ``--loop uvloop asyncio`` once on each
   ``ENGAGE_EVENT_LOOP`` in every round (default: one worker, on the setting's default);
4. live: while the worker runs, ``--live-events`` more events are produced at
   ``--live-rate`` per second; the end-to-end lag is the time from the last produced
   event to the moment the worker has processed (and made durable) everything;
5. with ``--peer quix``: a Quix Streams implementation of the same per-thread response
   metrics (``benchmarks/peers/quix_metrics.py``, in a venv of its own, ``.venv-quix``,
   made on first use) processes the same topic, timed the same way, and its contents totals
   are compared with the worker's ``engage_contents_total``;
6. steps 2, 3 and 5 run ``--rounds`` times (default 3; the live step in the first round only,
   its events stay in the topic for the later rounds): the script prints each round, then
   the medians and ranges, the ratios taken within each round (same machine state) and
   their median. Single runs vary by 20-40 % here (the ceiling from 174k to 222k events/s
   within one run), so only same-round ratios compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.broker import KafkaConfig, LocalKafka
from devkit.ports import free_port
from engage_streams.loops import EVENT_LOOPS
from engage_streams.record import decode_event, encode_event
from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from simulator.scenario import ScenarioConfig, generate


async def load(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def ceiling(bootstrap: str, topic: str, partitions: int, total: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    decode_event(record.value)
                seen += len(records)
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def lag_of(port: int, timeout: float = 2.0) -> tuple[int, float] | None:
    """(partitions reported, total lag) from the worker's /metrics, None when not up."""
    reading = scrape_lag(port, timeout)
    return None if reading is None else reading[:2]


LAG_FAMILY = "engage_stream_lag_messages"


def scrape_lag(port: int, timeout: float = 2.0) -> tuple[int, float, float] | None:
    """(partitions reported, total lag, seconds the worker took to answer) from one scrape of
    the worker's whole /metrics, None when not up. Only the lag family's lines are parsed:
    parsing all ~15,000 lines with prometheus_client's parser takes this process ~0.8 s of
    CPU, which the worker would lose on a 2-core machine (a real Prometheus runs elsewhere)."""
    began = time.perf_counter()
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
    except httpx.HTTPError:
        return None
    answered = time.perf_counter() - began
    if response.status_code != 200:  # 503 "starting": the start-up answerer, not the worker
        return None
    lines = [line for line in response.text.splitlines() if line.startswith(LAG_FAMILY)]
    text = f"# TYPE {LAG_FAMILY} gauge\n" + "\n".join(lines) + "\n"
    owned, lag = 0, 0.0
    for family in text_string_to_metric_families(text):
        if family.name == LAG_FAMILY:
            for sample in family.samples:
                owned += 1
                lag += sample.value
    return owned, lag, answered


def bench_settings(bootstrap: str, topic: str, suffix: str, partitions: int) -> Settings:
    """A bench worker's settings on ``topic``: its own output topics, named after ``suffix``."""
    return replace(
        Settings(),
        kafka_bootstrap_servers=bootstrap,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        activity_topic=f"bench.activity.{suffix}",
        summary_topic=f"bench.summaries.{suffix}",
        waiting_topic=f"bench.waiting-runs.{suffix}",
        topic_partitions=partitions,
    )


def run_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "engage_streams.cli", "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )


REPO = Path(__file__).resolve().parent.parent
QUIX_VENV = REPO / ".venv-quix"
QUIX_REQUIREMENT = "quixstreams>=3.28,<4"


def quix_python() -> Path:
    """The peer's interpreter, its venv made (and Quix Streams installed) on first use."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {QUIX_VENV} for the Quix Streams peer ({QUIX_REQUIREMENT})")
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT], check=True)
    return python


def run_quix_peer(bootstrap: str, topic: str, total: int, state_dir: Path) -> dict[str, Any]:
    """The Quix peer's figures (its JSON line) on ``topic``."""
    done = subprocess.run(
        [
            str(quix_python()),
            str(REPO / "benchmarks" / "peers" / "quix_metrics.py"),
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--events",
            str(total),
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the Quix peer failed ({done.returncode}): {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def contents_of(port: int) -> dict[str, int]:
    """The worker's ``engage_contents_total`` as ``source|source_type|direction -> n``."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0).text
    out: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "engage_contents":
            for sample in family.samples:
                if sample.name == "engage_contents_total" and sample.value:
                    labels = sample.labels
                    key = f"{labels['source']}|{labels['source_type']}|{labels['direction']}"
                    out[key] = out.get(key, 0) + int(sample.value)
    return out


def settled_contents(port: int, patience: float = 120.0) -> dict[str, int]:
    """``contents_of`` once two scrapes 2 s apart agree: the totals are exported from the
    flushed state, which can trail the processed offsets by a flush or two under load."""
    deadline = time.monotonic() + patience
    last = contents_of(port)
    while time.monotonic() < deadline:
        time.sleep(2.0)
        now = contents_of(port)
        if now == last:
            return now
        last = now
    return last


@dataclass
class WorkerRun:
    """One timed round of the worker: steady rate, scrape answer times, contents totals."""

    rate: float
    scrapes: list[float]
    contents: dict[str, int]


def steady_rate(samples: list[tuple[float, float]], total: int) -> float | None:
    """Events/s between the first scrape that saw work done and the last that saw work left:
    both ends are readings (no start-up, no final flush, no scrape-interval rounding)."""
    working = [(t, total - lag) for t, lag in samples if 0 < lag < total]
    if len(working) < 2 or working[-1][0] - working[0][0] <= 0:
        return None
    (t0, done0), (t1, done1) = working[0], working[-1]
    return (done1 - done0) / (t1 - t0)


def time_worker(
    settings: Settings, log: Path, total: int, partitions: int, scrape: float
) -> tuple[subprocess.Popen[bytes], float, list[float]]:
    """Start the worker on ``settings`` and time it through ``total`` records (its lag read
    from ``/metrics`` every ``scrape`` s); returns it still running, its rate, the scrapes'
    answer times."""
    worker = run_worker(settings, log)
    port = settings.worker_web_port
    first = last = None
    samples: list[tuple[float, float]] = []
    scrapes: list[float] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        scrape_began = time.perf_counter()
        reading = scrape_lag(port)
        if first is not None and reading is not None:
            scrapes.append(reading[2])
        now = time.perf_counter()
        if reading is not None and reading[0] == partitions:
            _, lag, _ = reading
            samples.append((now, lag))
            if first is None and lag < total:
                first = now
            if lag == 0:
                last = now
                break
        time.sleep(max(0.0, scrape - (time.perf_counter() - scrape_began)))
    if first is None or last is None:
        worker.terminate()
        raise RuntimeError(f"the worker did not finish; log: {log.read_text()[-3000:]}")
    rate = steady_rate(samples, total)
    if rate is None:
        worker.terminate()
        raise RuntimeError(
            "too few scrapes saw the worker working to time it (done within a scrape or two): "
            "use more events"
        )
    if last - first < 5 * scrape:
        print("few scrapes timed the worker (done within five): use more events for a steady rate")
    return worker, rate, scrapes


def live_phase(
    bootstrap: str, topic: str, port: int, live_records: list[tuple[bytes, bytes]], rate: float
) -> tuple[float, float, float]:
    """Produce ``live_records`` at ``rate``/s to the running worker: (median lag, max lag
    while producing, seconds from the last acknowledged event to the worker caught up)."""

    async def produce_live() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            t0 = time.perf_counter()
            futures = []
            for i, (key, value) in enumerate(live_records):
                futures.append(await producer.send(topic, value=value, key=key))
                ahead = t0 + (i + 1) / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await asyncio.gather(*futures)
            return time.perf_counter()
        finally:
            await producer.stop()

    lags_during: list[float] = []

    async def run() -> tuple[float, float]:
        producing = asyncio.create_task(produce_live())
        while not producing.done():
            reading = await asyncio.to_thread(lag_of, port)
            if reading is not None:
                lags_during.append(reading[1])
            await asyncio.sleep(0.1)
        produced_at = producing.result()
        while True:
            reading = await asyncio.to_thread(lag_of, port)
            if reading is not None and reading[1] == 0:
                return produced_at, time.perf_counter()
            await asyncio.sleep(0.02)

    produced_at, caught_up_at = asyncio.run(run())
    return (
        statistics.median(lags_during or [0]),
        max(lags_during or [0]),
        caught_up_at - produced_at,
    )


def _spread(values: list[float], fmt: str, unit: str = "") -> str:
    """The median, then the range: ``1.46x  (1.33x .. 1.50x)``."""
    low, mid, high = (
        f"{v:{fmt}}{unit}" for v in (min(values), statistics.median(values), max(values))
    )
    return f"{mid:>12}  ({low} .. {high})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--live-events", type=int, default=30_000)
    parser.add_argument("--live-rate", type=float, default=5_000.0)
    parser.add_argument("--scrape", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument(
        "--peer", choices=["none", "quix"], default="none", help="also run a peer's pipeline"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of ceiling, worker (and peer): medians"
    )
    parser.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        nargs="+",
        default=[Settings().event_loop],
        help="the worker's ENGAGE_EVENT_LOOP (default: its default); several: each in every "
        "round, the live step on the first",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="engage-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = LocalKafka(
            KafkaConfig(data_dir=workdir / "kafka", port=free_port(), controller_port=free_port())
        )
        broker.start()
        bootstrap = broker.bootstrap_servers
    worker = None
    try:
        suffix = uuid.uuid4().hex[:8]
        topic = f"bench.contents.{suffix}"
        asyncio.run(create_topics(bootstrap, {topic: args.partitions}))
        threads = max(100, args.events // 9)
        events = generate(ScenarioConfig(seed=5, threads=threads, agents=200))[: args.events]
        live = generate(
            ScenarioConfig(
                seed=6,
                threads=max(50, args.live_events // 9),
                agents=200,
                base_time=time.time() - 3600,
            )
        )[: args.live_events]
        records = [(e.thread_id.encode(), encode_event(e)) for e in events]
        live_records = [(e.thread_id.encode(), encode_event(e)) for e in live]
        started = time.perf_counter()
        asyncio.run(load(bootstrap, topic, records))
        print(f"loaded {len(records)} events into {topic} in {time.perf_counter() - started:.1f} s")

        in_topic = len(records)
        ceilings: list[float] = []
        runs: dict[str, list[WorkerRun]] = {loop: [] for loop in args.loop}
        peers: list[dict[str, Any]] = []
        live_figures: tuple[float, float, float] | None = None  # median lag, max lag, e2e
        for round_ in range(args.rounds):
            ceilings.append(asyncio.run(ceiling(bootstrap, topic, args.partitions, in_topic)))
            for loop in args.loop:  # several kinds of loop: each in every round
                run_id = f"{suffix}-{round_}-{loop}"
                settings = replace(
                    bench_settings(bootstrap, topic, run_id, args.partitions),
                    app_id=f"bench-{run_id}",
                    worker_web_port=free_port(),
                    data_dir=str(workdir / f"worker-{round_}-{loop}"),
                    event_loop=loop,
                )
                log = workdir / f"worker-{round_}-{loop}.log"
                worker, rate, scrapes = time_worker(
                    settings, log, in_topic, args.partitions, args.scrape
                )
                port = settings.worker_web_port
                if round_ == 0 and loop == args.loop[0] and live_records:
                    # Live once (it adds its events to the topic: later runs read them too).
                    live_figures = live_phase(bootstrap, topic, port, live_records, args.live_rate)
                    in_topic += len(live_records)
                runs[loop].append(WorkerRun(rate, scrapes, settled_contents(port)))
                # The worker is stopped first: the peer gets the machine the worker had.
                worker.terminate()
                worker.wait(timeout=60)
                worker = None
            if args.peer == "quix":
                state_dir = workdir / f"quix-{round_}"
                peers.append(run_quix_peer(bootstrap, topic, in_topic, state_dir))
            print(
                f"round {round_ + 1}: ceiling {ceilings[-1]:,.0f}, "
                + ", ".join(f"worker ({loop}) {runs[loop][-1].rate:,.0f}" for loop in args.loop)
                + (f", Quix peer {peers[-1]['rate']:,.0f}" if peers else "")
                + " events/s"
            )

        print()
        print(f"medians of {args.rounds} rounds (min .. max)")
        print(f"{'pipeline':<48} {'events/s':>12}")
        print(
            f"{'raw aiokafka getmany + msgspec decode (ceiling)':<48} {_spread(ceilings, ',.0f')}"
        )
        peer_rates = [peer["rate"] for peer in peers]
        if peers:
            quix = "Quix Streams peer (RocksDB state + changelog)"
            print(f"{quix:<48} {_spread(peer_rates, ',.0f')}")
            peer_to_ceiling = [p / c for p, c in zip(peer_rates, ceilings, strict=True)]
            print(f"{'ratio Quix peer / ceiling':<48} {_spread(peer_to_ceiling, '.1%')}")
        for loop, loop_runs in runs.items():
            rates = [run.rate for run in loop_runs]
            print(
                f"{f'engage-streams worker (durable, exact), {loop}':<48} {_spread(rates, ',.0f')}"
            )
            # Ratios of the same round (same machine state), then their median.
            to_ceiling = [r / c for r, c in zip(rates, ceilings, strict=True)]
            print(f"{f'ratio worker ({loop}) / ceiling':<48} {_spread(to_ceiling, '.1%')}")
            if peers:
                to_peer = [r / p for r, p in zip(rates, peer_rates, strict=True)]
                print(f"{f'ratio worker ({loop}) / Quix peer':<48} {_spread(to_peer, '.2f', 'x')}")
                for round_, (run, peer) in enumerate(zip(loop_runs, peers, strict=True)):
                    same = peer["contents"] == run.contents
                    print(
                        f"round {round_ + 1}: contents by source and direction, worker ({loop}) "
                        f"vs peer: {'equal' if same else 'DIFFERENT'} "
                        f"({sum(run.contents.values()):,} contents)"
                    )
                    if not same:
                        for key in sorted(set(peer["contents"]) | set(run.contents))[:20]:
                            theirs = peer["contents"].get(key, 0)
                            print(f"  {key}: worker {run.contents.get(key, 0)}, peer {theirs}")
        scrapes = [s for loop_runs in runs.values() for run in loop_runs for s in run.scrapes]
        if scrapes:
            print(
                f"/metrics scraped every {args.scrape:g} s during the runs: {len(scrapes)} "
                f"scrapes, the worker answered in median "
                f"{statistics.median(scrapes) * 1000:,.0f} ms, max {max(scrapes) * 1000:,.0f} ms"
            )
        if live_figures is not None:
            median_lag, max_lag, e2e = live_figures
            print()
            print(
                f"live: {len(live_records)} events at {args.live_rate:,.0f}/s; worker lag while "
                f"producing: median {median_lag:,.0f} messages, max {max_lag:,.0f}; caught "
                f"up {e2e * 1000:,.0f} ms after the last event was acknowledged "
                "(end-to-end lag, durable state included)"
            )
        return 0
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
