"""Benchmark: end to end, webhook accepted -> visible in the worker's ``/metrics``. Not a test.

    python benchmarks/latency_bench.py [--probes 40] [--interval 0.5] [--bootstrap HOST:PORT]

Starts (unless ``--bootstrap``) a local Apache Kafka broker, then the real connector
(``engage-streams connector``) and one worker (``engage-streams worker``, reorder window
``--window``, default the product's 10 s) as child processes. Each probe is a new thread on
a source of its own: a customer content is posted to the connector; the moment the
connector answers 200 (every event acknowledged by Kafka) starts the clock, and the probe is
*visible* when ``engage_backlog_contents{source=<its source>}`` reaches 1. One second later
an agent answers it; that answer is visible when ``engage_response_seconds_count`` of the
source reaches 1 (after the reorder window, by design). ``/metrics`` is polled every
``--poll`` seconds; prints p50/p99/max of both, next to the targets (gauges p99 < 1 s,
histograms window + 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.broker import KafkaConfig, LocalKafka  # noqa: E402
from devkit.ports import free_port  # noqa: E402
from engage_streams.record import ContentEvent  # noqa: E402
from engage_streams.settings import Settings  # noqa: E402
from engage_streams.topics import create_topics  # noqa: E402
from simulator.deliveries import classic_envelope  # noqa: E402

SECRET = "latency-bench-secret"


def child(command: str, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engage_streams.cli", command],
        env={**os.environ, **settings.to_env()},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def content(probe: str, n: int, direction: str) -> ContentEvent:
    now = datetime.now(UTC)
    return ContentEvent(
        event_id=f"{probe}-e{n}",
        event_type="content.imported",
        origin="engage",
        event_time=now,
        received_at=now,
        content_id=f"{probe}-c{n}",
        thread_id=f"{probe}-thread",
        source_id=probe,
        source_type="whatsapp",
        author_id=f"{probe}-customer" if direction == "inbound" else "agent-1",
        agent_id="agent-1" if direction == "outbound" else None,
        direction=direction,
        status="new" if direction == "inbound" else "replied",
    )


def per_source(text: str, family_name: str, sample_name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != family_name:
            continue
        for sample in family.samples:
            if sample.name == sample_name:
                source = sample.labels.get("source", "")
                out[source] = out.get(source, 0.0) + sample.value
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run(args: argparse.Namespace, settings: Settings) -> tuple[list[float], list[float]]:
    connector_url = f"http://127.0.0.1:{settings.connector_port}/webhooks/engage"
    metrics_url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    headers = {"X-Dimelo-Secret": SECRET, "Content-Type": "application/json"}
    accepted_question: dict[str, float] = {}
    accepted_answer: dict[str, float] = {}
    seen_question: dict[str, float] = {}
    seen_answer: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10.0) as client:
        deadline = time.monotonic() + 300
        while True:  # the worker is up and owns its partitions
            try:
                text = (await client.get(metrics_url)).text
                if "engage_stream_lag_messages{" in text and "engage_worker_ready 1.0" in text:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not become ready")
            await asyncio.sleep(0.2)

        async def post(event: ContentEvent) -> float:
            body = classic_envelope([event], delivery_id=f"{event.event_id}-delivery")
            response = await client.post(connector_url, content=body, headers=headers)
            response.raise_for_status()
            return time.perf_counter()

        async def probe(index: int) -> None:
            name = f"probe-{uuid.uuid4().hex[:8]}-{index}"
            accepted_question[name] = await post(content(name, 1, "inbound"))
            await asyncio.sleep(1.0)
            accepted_answer[name] = await post(content(name, 2, "outbound"))

        async def poll() -> None:
            end = time.monotonic() + args.probes * args.interval + args.window + 60
            while time.monotonic() < end:
                text = (await client.get(metrics_url)).text
                now = time.perf_counter()
                waiting = per_source(text, "engage_backlog_contents", "engage_backlog_contents")
                for name, n in waiting.items():
                    if n >= 1 and name in accepted_question and name not in seen_question:
                        seen_question[name] = now
                answered = per_source(
                    text, "engage_response_seconds", "engage_response_seconds_count"
                )
                for name, n in answered.items():
                    if n >= 1 and name in accepted_answer and name not in seen_answer:
                        seen_answer[name] = now
                if len(seen_answer) == args.probes:
                    return
                await asyncio.sleep(args.poll)

        polling = asyncio.create_task(poll())
        probes = []
        for i in range(args.probes):
            probes.append(asyncio.create_task(probe(i)))
            await asyncio.sleep(args.interval)
        await asyncio.gather(*probes)
        await polling
    gauges = [seen_question[n] - accepted_question[n] for n in seen_question]
    histograms = [seen_answer[n] - accepted_answer[n] for n in seen_answer]
    missing = args.probes - len(histograms)
    if missing:
        print(f"WARNING: {missing} probes never showed their response")
    return gauges, histograms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between probes")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between scrapes")
    parser.add_argument("--window", type=float, default=10.0, help="reorder window, seconds")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="engage-latency-"))
    broker = None
    bootstrap = args.bootstrap
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if bootstrap is None:
            broker = LocalKafka(
                KafkaConfig(
                    data_dir=workdir / "kafka", port=free_port(), controller_port=free_port()
                )
            )
            broker.start()
            bootstrap = broker.bootstrap_servers
        suffix = uuid.uuid4().hex[:8]
        settings = replace(
            Settings(),
            kafka_bootstrap_servers=bootstrap,
            topic=f"latency.contents.{suffix}",
            dlq_topic=f"latency.contents.{suffix}.dlq",
            activity_topic=f"latency.activity.{suffix}",
            summary_topic=f"latency.summaries.{suffix}",
            waiting_topic=f"latency.waiting-runs.{suffix}",
            topic_partitions=args.partitions,
            app_id=f"latency-{suffix}",
            connector_port=free_port(),
            worker_web_port=free_port(),
            webhook_secret=SECRET,
            reorder_window_seconds=args.window,
            data_dir=str(workdir / "worker"),
        )
        asyncio.run(
            create_topics(bootstrap, {settings.topic: args.partitions, settings.dlq_topic: 1})
        )
        processes.append(child("connector", settings, workdir / "connector.log"))
        processes.append(child("worker", settings, workdir / "worker.log"))
        try:
            gauges, histograms = asyncio.run(run(args, settings))
        except BaseException:
            for log in ("connector.log", "worker.log"):
                print(f"--- {log}\n" + (workdir / log).read_text()[-3000:])
            raise
        print()
        print(f"{len(gauges)} probes, one every {args.interval} s, /metrics polled every "
              f"{args.poll} s, reorder window {args.window} s")  # fmt: skip
        print(f"{'webhook accepted -> visible in /metrics':<44} {'p50':>8} {'p99':>8} {'max':>8}")
        for label, values, target in (
            ("backlog gauge (target p99 < 1 s)", gauges, 1.0),
            (f"response histogram (target < {args.window + 1:g} s)", histograms, args.window + 1),
        ):
            p50, p99 = statistics.median(values), percentile(values, 0.99)
            verdict = "ok" if p99 < target else "MISSED"
            print(f"{label:<44} {p50:>7.2f}s {p99:>7.2f}s {max(values):>7.2f}s  {verdict}")
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
