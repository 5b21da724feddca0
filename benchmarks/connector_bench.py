"""Connector throughput and latency against the real broker, next to an empty-handler ceiling.

Not a test. Starts (unless ``--bootstrap`` is given) a LocalKafka broker in a temporary dir,
then, one after the other, two servers in their own process on free ports:

* ``ceiling``: an aiohttp app whose POST handler answers 200 at once (what HTTP alone costs);
* ``connector``: the real ``create_app`` and ``connector_runner`` (with its HTTP limits) with
  the Kafka publisher (acks=all, idempotence).

``--concurrency`` senders (aiohttp client, keep-alive) post signed one-event classic deliveries
for ``--seconds`` after a warm-up; prints deliveries/s and p50/p99 latency side by side with the
ratio, and the CPU time per delivery of the server (robust to other load on the machine), of
the senders and of the broker: on a 2-core machine the three share the cores, so a connector
that costs the broker CPU leaves less to itself. Each round runs every setup once, one after
the other; medians are reported, ratios are taken within a round. Both servers run on
``--loop`` (default: the connector's ``ENGAGE_EVENT_LOOP``).
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
from typing import NamedTuple

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.ports import free_port  # noqa: E402
from engage_streams.loops import EVENT_LOOPS  # noqa: E402
from engage_streams.record import ContentEvent  # noqa: E402
from engage_streams.settings import Settings  # noqa: E402
from simulator.deliveries import classic_envelope  # noqa: E402

SECRET = "bench-secret"
TOPIC = "bench.contents"
DLQ = "bench.contents.dlq"


# --- servers (run in a child process) --------------------------------------------------------


def serve(kind: str, port: int, bootstrap: str, loop: str, linger_ms: int) -> None:
    from aiohttp import web

    from engage_streams import loops

    async def run() -> None:
        publisher = None
        if kind == "ceiling":

            async def nothing(request: web.Request) -> web.Response:
                return web.Response(text="ok")

            app = web.Application()
            app.router.add_post("/webhooks/engage", nothing)
            runner = web.AppRunner(app, access_log=None)
        else:
            from connectors.publisher import KafkaPublisher
            from connectors.server import connector_runner, create_app
            from engage_streams.settings import Settings

            settings = Settings(
                kafka_bootstrap_servers=bootstrap,
                topic=TOPIC,
                dlq_topic=DLQ,
                webhook_secret=SECRET,
            )
            publisher = KafkaPublisher(bootstrap, linger_ms=linger_ms)
            await publisher.start()
            app = create_app(settings, publisher)
            runner = connector_runner(settings, app)  # the connector's own: with its limits
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
        loops.run(run(), loop)


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


def measure(
    kind: str,
    bootstrap: str,
    args: argparse.Namespace,
    broker_pid: int | None,
    variant: Variant,
) -> dict[str, float]:
    port = free_port()
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--port",
            str(port),
            "--bootstrap",
            bootstrap,
            "--loop",
            variant.loop,
            "--linger-ms",
            str(variant.linger_ms),
        ],
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
        client_before = time.process_time()
        broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0
        result = asyncio.run(load(url, args.concurrency, args.warmup, args.seconds, args.rate))
        answered = result["answered"]
        # CPU the server spent per answered delivery: robust to other load on the machine
        result["cpu_us"] = (cpu_seconds(child.pid) - cpu_before) / answered * 1e6
        # ... and the senders and the broker: on a 2-core machine the three share two cores
        result["client_us"] = (time.process_time() - client_before) / answered * 1e6
        broker = cpu_seconds(broker_pid) - broker_before if broker_pid else float("nan")
        result["broker_us"] = broker / answered * 1e6
        return result
    finally:
        child.terminate()
        child.wait(timeout=30)


class Variant(NamedTuple):
    """One server setup: the event loop (both servers) and the connector's linger."""

    loop: str
    linger_ms: int

    def name(self, kind: str) -> str:
        if kind == "ceiling":
            return f"ceiling {self.loop}"
        return f"connector {self.loop} linger {self.linger_ms} ms"


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
    parser.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        nargs="+",
        default=[Settings().event_loop],
        help="the servers' event loop, both the empty handler's and the connector's (default: "
        "the connector's, ENGAGE_EVENT_LOOP's default); several: each in every round",
    )
    parser.add_argument(
        "--linger-ms",
        type=int,
        nargs="+",
        default=[0],
        help="the connector's producer linger (default 0, the connector's); several: each in "
        "every round",
    )
    parser.add_argument("--serve", choices=["ceiling", "connector"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.bootstrap or "", args.loop[0], args.linger_ms[0])
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
    broker_pid = kafka.status().pid if kafka is not None else None
    try:
        asyncio.run(create_topics(bootstrap, {TOPIC: 8, DLQ: 1}))
        # Every setup once per round, interleaved: the machine drifts by tens of % within
        # minutes here, so only figures taken in one round compare; ratios are per round.
        ceilings = [Variant(loop, 0) for loop in args.loop]
        connectors = [Variant(loop, linger) for loop in args.loop for linger in args.linger_ms]
        setups = [("ceiling", v) for v in ceilings] + [("connector", v) for v in connectors]
        results: dict[str, list[dict[str, float]]] = {v.name(k): [] for k, v in setups}
        # A fresh broker compiles its hot paths (JIT) in its first seconds: not in round 1.
        measure("connector", bootstrap, args, broker_pid, connectors[0])
        for number in range(args.rounds):
            for kind, variant in setups:
                name = variant.name(kind)
                r = measure(kind, bootstrap, args, broker_pid, variant)
                results[name].append(r)
                print(
                    f"round {number + 1} {name:32} {r['rate']:6.0f}/s p50 {r['p50_ms']:6.2f} ms "
                    f"p99 {r['p99_ms']:6.2f} ms cpu {r['cpu_us']:4.0f} us "
                    f"(senders {r['client_us']:4.0f} us, broker {r['broker_us']:4.0f} us)",
                    flush=True,
                )
    finally:
        if kafka is not None:
            kafka.stop()
    offered = f"offered {args.rate:g}/s" if args.rate else "closed loop"
    print(
        f"{args.concurrency} concurrent senders ({offered}), {args.seconds:g} s x "
        f"{args.rounds} rounds (medians), 1 event per delivery, acks=all + idempotence"
    )
    print(
        f"{'':34}{'deliveries/s':>13}{'p50 ms':>8}{'p99 ms':>8}{'fails':>6}"
        f"{'  CPU us/delivery: server + senders + broker':>44}"
    )
    for name, rs in results.items():
        r = median_of(rs)
        print(
            f"{name:34}{r['rate']:>13.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
            f"{r['failures']:>6.0f}{r['cpu_us']:>18.0f} + {r['client_us']:.0f} + "
            f"{r['broker_us']:.0f}"
        )
    for variant in connectors:
        name = variant.name("connector")
        its_ceiling = results[Variant(variant.loop, 0).name("ceiling")]
        ratios = [r["rate"] / c["rate"] for r, c in zip(results[name], its_ceiling, strict=True)]
        ceiling_cpu = median_of(its_ceiling)["cpu_us"]
        cpu = median_of(results[name])["cpu_us"]
        per_round = ", ".join(f"{x:.0%}" for x in ratios)
        print(
            f"{name} / ceiling {variant.loop} = {statistics.median(ratios):.0%} "
            f"(median of the rounds' ratios: {per_round}); server CPU {cpu / ceiling_cpu:.2f}x"
        )
    load_average = os.getloadavg()[0]
    print(f"cpus={os.cpu_count()} load average={load_average:.1f} bootstrap={bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
