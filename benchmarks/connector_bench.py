"""Connector throughput and latency against the real broker, next to an empty-handler ceiling.

Not a test. Starts (unless ``--bootstrap`` is given) a LocalKafka broker in a temporary dir,
then, one after the other, two servers in their own process on free ports:

* ``ceiling``: an aiohttp app whose POST handler answers 200 at once (what HTTP alone costs);
* ``connector``: the real ``create_app`` with the Kafka publisher (acks=all, idempotence).

``--concurrency`` senders (aiohttp client, keep-alive) post signed one-event classic deliveries
for ``--seconds`` after a warm-up; prints deliveries/s and p50/p99 latency side by side with the
ratio, and the server's CPU time per delivery (robust to other load on the machine). Rounds
alternate ceiling/connector; medians are reported.
Run: ``.venv/bin/python benchmarks/connector_bench.py [--seconds 10 --rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.ports import free_port  # noqa: E402
from engage_streams.record import ContentEvent  # noqa: E402
from simulator.deliveries import classic_envelope  # noqa: E402

SECRET = "bench-secret"
TOPIC = "bench.contents"
DLQ = "bench.contents.dlq"


# --- servers (run in a child process) --------------------------------------------------------


def serve(kind: str, port: int, bootstrap: str) -> None:
    from aiohttp import web

    async def run() -> None:
        publisher = None
        if kind == "ceiling":

            async def nothing(request: web.Request) -> web.Response:
                return web.Response(text="ok")

            app = web.Application()
            app.router.add_post("/webhooks/engage", nothing)
        else:
            from connectors.publisher import KafkaPublisher
            from connectors.server import create_app
            from engage_streams.settings import Settings

            settings = Settings(
                kafka_bootstrap_servers=bootstrap,
                topic=TOPIC,
                dlq_topic=DLQ,
                webhook_secret=SECRET,
            )
            publisher = KafkaPublisher(bootstrap)
            await publisher.start()
            app = create_app(settings, publisher)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            if publisher is not None:
                await publisher.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


# --- load ------------------------------------------------------------------------------------


def deliveries(count: int) -> list[bytes]:
    """Distinct one-event deliveries spread over many threads (so over every partition)."""
    base = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    out = []
    for i in range(count):
        event = ContentEvent(
            event_id=f"bench-event-{i}",
            event_type="content.imported",
            origin="engage",
            event_time=base + timedelta(seconds=i),
            received_at=base,
            content_id=f"bench-content-{i}",
            thread_id=f"bench-thread-{i % 997}",
            source_id="bench-source",
            source_type="whatsapp",
            author_id=f"customer-{i % 997}",
            direction="inbound",
            status="new",
            body="Hello, where is my parcel? It should have arrived yesterday.",
        )
        out.append(classic_envelope([event], delivery_id=f"bench-delivery-{i}"))
    return out


async def load(
    url: str, concurrency: int, warmup: float, seconds: float, rate: float | None = None
) -> dict[str, float]:
    bodies = deliveries(4096)
    headers = {"X-Dimelo-Secret": SECRET, "Content-Type": "application/json"}
    latencies: list[float] = []
    failures = 0
    answered = 0
    measuring = False
    stop_at = time.monotonic() + warmup + seconds

    async def sender(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal failures, answered
        i = index
        interval = concurrency / rate if rate else 0.0
        next_at = time.monotonic() + interval * index / concurrency
        while time.monotonic() < stop_at:
            if interval:  # paced: each sender sends at its own steady rate
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            body = bodies[i % len(bodies)]
            i += concurrency
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                ok = response.status == 200
            answered += ok
            if measuring:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(sender(i, session)) for i in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring = True
        began = time.monotonic()
        await asyncio.sleep(seconds)
        measuring = False
        elapsed = time.monotonic() - began
        await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
        "failures": failures,
        "answered": answered,
    }


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, bootstrap: str, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--bootstrap", bootstrap],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != b"ready":
            raise SystemExit(f"{kind} server did not start")
        url = f"http://127.0.0.1:{port}/webhooks/engage"
        cpu_before = cpu_seconds(child.pid)
        result = asyncio.run(load(url, args.concurrency, args.warmup, args.seconds, args.rate))
        # CPU the server spent per answered delivery: robust to other load on the machine
        result["cpu_us"] = (cpu_seconds(child.pid) - cpu_before) / result["answered"] * 1e6
        return result
    finally:
        child.terminate()
        child.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument(
        "--rate", type=float, help="offered deliveries/s in all (default: as fast as answered)"
    )
    parser.add_argument("--serve", choices=["ceiling", "connector"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.bootstrap or "")
        return 0

    from devkit.broker import KafkaConfig, LocalKafka
    from engage_streams.topics import create_topics

    kafka = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        data_dir = Path(tempfile.mkdtemp(prefix="connector-bench-kafka-"))
        kafka = LocalKafka(KafkaConfig(data_dir=data_dir, port=free_port()))
        kafka.start()
        bootstrap = kafka.bootstrap_servers
    try:
        asyncio.run(create_topics(bootstrap, {TOPIC: 8, DLQ: 1}))
        rounds: dict[str, list[dict[str, float]]] = {"ceiling": [], "connector": []}
        for number in range(args.rounds):  # interleaved: both see the same background load
            for kind in ("ceiling", "connector"):
                r = measure(kind, bootstrap, args)
                rounds[kind].append(r)
                print(
                    f"round {number + 1} {kind:10} {r['rate']:6.0f}/s p50 {r['p50_ms']:6.2f} ms "
                    f"p99 {r['p99_ms']:6.2f} ms cpu {r['cpu_us']:4.0f} us",
                    flush=True,
                )
        ceiling, real = median_of(rounds["ceiling"]), median_of(rounds["connector"])
    finally:
        if kafka is not None:
            kafka.stop()
    offered = f"offered {args.rate:g}/s" if args.rate else "closed loop"
    print(
        f"{args.concurrency} concurrent senders ({offered}), {args.seconds:g} s x "
        f"{args.rounds} rounds (medians), 1 event per delivery"
    )
    print(
        f"{'':12}{'deliveries/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'failures':>10}"
        f"{'server CPU us/delivery':>24}"
    )
    for name, r in (("ceiling", ceiling), ("connector", real)):
        print(
            f"{name:12}{r['rate']:>14.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            f"{r['failures']:>10.0f}{r['cpu_us']:>24.0f}"
        )
    print(f"connector / ceiling = {real['rate'] / ceiling['rate']:.0%} (acks=all, idempotent)")
    print(f"CPU per delivery: connector / ceiling = {real['cpu_us'] / ceiling['cpu_us']:.2f}x")
    print(f"cpus={os.cpu_count()} load average={os.getloadavg()[0]:.1f} bootstrap={bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
