"""Bounded load test of the connector under abusive clients, all on 127.0.0.1.

The real connector (``engage-streams connector``, its own process, real Kafka) serves
well-formed signed deliveries from a few kept-alive connections (as Engage sends them) for a
quiet phase, then the same while these clients attack it, each bounded in count and time:

* ``malformed``: bytes that are not HTTP, and HTTP whose body is not JSON;
* ``oversized``: bodies over ``ENGAGE_MAX_BODY_BYTES`` and headers over the header limit;
* ``slowloris``: connections trickling their request headers a byte at a time;
* ``slow_body``: complete headers, then the body a byte at a time;
* ``slow_reader``: pipelined ``GET /metrics`` requests whose answers are never read;
* ``many_connections``: idle connections opened until the connection limit refuses them.

Prints the well-formed deliveries' p50/p99 latency in each phase, their failures, what the
attackers got, and ``engage_webhook_rejected_total`` by reason; exits 1 unless every
well-formed delivery was answered 200 and the attack p99 is within twice the quiet p99.
``tests/connectors/test_abusive_clients.py`` runs the reduced profile (and asserts behaviour,
not timing). Run (starts its own broker unless ``--bootstrap`` is given)::

    .venv/bin/python benchmarks/abusive_clients.py [--quiet-seconds 10 --attack-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.broker import KafkaConfig, LocalKafka  # noqa: E402
from devkit.ports import free_port  # noqa: E402

SECRET = "abuse-bench-secret"


@dataclass(frozen=True)
class Profile:
    """How long and how hard: the counts bound every attacker."""

    quiet_seconds: float = 10.0
    attack_seconds: float = 20.0
    senders: int = 4
    max_connections: int = 128
    slowloris: int = 40
    slow_body: int = 20
    slow_readers: int = 10
    many_connections: int = 160
    malformed_per_second: float = 50.0
    oversized_per_second: float = 10.0
    max_body_bytes: int = 64 * 1024


REDUCED = Profile(
    quiet_seconds=3.0,
    attack_seconds=6.0,
    senders=2,
    max_connections=48,
    slowloris=10,
    slow_body=6,
    slow_readers=3,
    many_connections=60,
    malformed_per_second=20.0,
    oversized_per_second=5.0,
)


@dataclass
class Outcome:
    quiet: list[float] = field(default_factory=list)
    attack: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    attackers: Counter[str] = field(default_factory=Counter)
    rejected: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def ratio(self) -> float:
        return self.p(self.attack, 0.99) / self.p(self.quiet, 0.99)

    def phase(self, name: str, values: list[float]) -> str:
        p50, p99 = self.p(values, 0.5) * 1000, self.p(values, 0.99) * 1000
        return f"well-formed deliveries, {name}: n={len(values)} p50={p50:.1f} ms p99={p99:.1f} ms"

    def report(self) -> str:
        return "\n".join(
            [
                self.phase("quiet", self.quiet),
                self.phase("attack", self.attack),
                f"p99 attack / quiet = {self.ratio:.2f} (must be <= 2)",
                f"well-formed failures: {dict(self.failures) or 'none'}",
                f"attackers got: {dict(sorted(self.attackers.items()))}",
                f"engage_webhook_rejected_total: {self.rejected}",
            ]
        )


def delivery() -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps(
        {
            "id": uuid.uuid4().hex,
            "events": [
                {
                    "type": "content.imported",
                    "id": uuid.uuid4().hex,
                    "issued_at": now,
                    "resource": {
                        "id": uuid.uuid4().hex,
                        "metadata": {"thread_id": uuid.uuid4().hex[:8], "created_at": now},
                    },
                }
            ],
        }
    )


def start_connector(
    bootstrap: str, profile: Profile, log_path: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ENGAGE_TOPIC": f"abuse.contents.{suffix}",
        "ENGAGE_DLQ_TOPIC": f"abuse.contents.dlq.{suffix}",
        "ENGAGE_TOPIC_PARTITIONS": "4",
        "CONNECTOR_PORT": str(port),
        "ENGAGE_WEBHOOK_SECRET": SECRET,
        "ENGAGE_MAX_BODY_BYTES": str(profile.max_body_bytes),
        "CONNECTOR_MAX_CONNECTIONS": str(profile.max_connections),
        "CONNECTOR_HEADER_TIMEOUT_SECONDS": "2",
        "CONNECTOR_BODY_TIMEOUT_SECONDS": "2",
        "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS": "5",
        "CONNECTOR_MAX_HEADER_BYTES": "8190",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "engage_streams.cli", "connector"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    return process, port


async def wait_ready(port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("the connector did not become ready")
            await asyncio.sleep(0.2)


async def run_profile(port: int, profile: Profile) -> Outcome:
    """The quiet phase, then the attack phase, against the connector on ``port``."""
    outcome = Outcome()
    url = f"http://127.0.0.1:{port}"
    headers = {"X-Dimelo-Secret": SECRET, "Content-Type": "application/json"}
    phase = {"name": "quiet"}
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=profile.senders, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Open the senders' connections before anything else (as Engage keeps its own).
        await asyncio.gather(*(post(session, url, headers) for _ in range(profile.senders)))

        async def sender() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    status = await post(session, url, headers)
                except (aiohttp.ClientError, OSError) as error:
                    outcome.failures[type(error).__name__] += 1
                    continue
                elapsed = time.perf_counter() - started
                if status != 200:
                    outcome.failures[f"HTTP {status}"] += 1
                (outcome.quiet if phase["name"] == "quiet" else outcome.attack).append(elapsed)
                await asyncio.sleep(0.01)

        senders = [asyncio.create_task(sender()) for _ in range(profile.senders)]
        await asyncio.sleep(profile.quiet_seconds)
        phase["name"] = "attack"
        attack_over = asyncio.Event()
        attackers = [
            asyncio.create_task(attacker(port, profile, outcome, attack_over))
            for attacker in (
                malformed,
                oversized,
                slowloris,
                slow_body,
                slow_reader,
                many_connections,
            )
        ]
        await asyncio.sleep(profile.attack_seconds)
        stop.set()
        attack_over.set()
        await asyncio.gather(*senders)
        for task in attackers:
            task.cancel()
        await asyncio.gather(*attackers, return_exceptions=True)
        async with session.get(url + "/metrics") as response:
            text = await response.text()
    for line in text.splitlines():
        if line.startswith("engage_webhook_rejected_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            outcome.rejected[reason] = float(line.rsplit(" ", 1)[1])
    return outcome


async def post(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with session.post(url + "/webhooks/engage", data=delivery(), headers=headers) as answer:
        await answer.read()
        return answer.status


# --- attackers (each bounded by the profile, each stops when the attack phase ends) ---------


async def exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_of(raw: bytes) -> str:
    return raw.split(b" ", 2)[1].decode() if raw.startswith(b"HTTP/1.") else "closed"


def head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /webhooks/engage HTTP/1.1\r\nHost: x\r\nX-Dimelo-Secret: {SECRET}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def malformed(port: int, profile: Profile, outcome: Outcome, over: asyncio.Event) -> None:
    payloads = [
        b"\x16\x03\x01\x02\x00 not http\r\n\r\n",
        head(9, "Connection: close\r\n") + b"not json!",
    ]
    n = 0
    while not over.is_set():
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            raw = await exchange(port, payloads[n % 2])
            outcome.attackers[f"malformed {status_of(raw)}"] += 1
        n += 1
        await asyncio.sleep(1 / profile.malformed_per_second)


async def oversized(port: int, profile: Profile, outcome: Outcome, over: asyncio.Event) -> None:
    big = profile.max_body_bytes * 4
    payloads = [head(big) + b"[" * big, head(2, "X-Pad: " + "a" * 20_000 + "\r\n") + b"{}"]
    n = 0
    while not over.is_set():
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            raw = await exchange(port, payloads[n % 2])
            outcome.attackers[f"oversized {status_of(raw)}"] += 1
        n += 1
        await asyncio.sleep(1 / profile.oversized_per_second)


async def trickle(
    port: int, payload: bytes, outcome: Outcome, kind: str, over: asyncio.Event
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        outcome.attackers[f"{kind} refused"] += 1
        return
    try:
        for byte in payload:
            if over.is_set() or reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)
        raw = await asyncio.wait_for(reader.read(), 5)
        outcome.attackers[f"{kind} {status_of(raw)}"] += 1
    except (TimeoutError, OSError):
        outcome.attackers[f"{kind} cut"] += 1
    finally:
        writer.close()


async def slowloris(port: int, profile: Profile, outcome: Outcome, over: asyncio.Event) -> None:
    payload = head(2) + b"{}"
    await asyncio.gather(
        *(trickle(port, payload, outcome, "slowloris", over) for _ in range(profile.slowloris))
    )


async def slow_body(port: int, profile: Profile, outcome: Outcome, over: asyncio.Event) -> None:
    body = delivery()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            outcome.attackers["slow_body refused"] += 1
            return
        writer.write(head(len(body)))
        await writer.drain()
        await trickle_existing(reader, writer, body, outcome, "slow_body", over)

    await asyncio.gather(*(one() for _ in range(profile.slow_body)))


async def trickle_existing(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    payload: bytes,
    outcome: Outcome,
    kind: str,
    over: asyncio.Event,
) -> None:
    try:
        for byte in payload:
            if over.is_set() or reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)
        raw = await asyncio.wait_for(reader.read(), 5)
        outcome.attackers[f"{kind} {status_of(raw)}"] += 1
    except (TimeoutError, OSError):
        outcome.attackers[f"{kind} cut"] += 1
    finally:
        writer.close()


async def slow_reader(port: int, profile: Profile, outcome: Outcome, over: asyncio.Event) -> None:
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200
    writers = []
    for _ in range(profile.slow_readers):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            outcome.attackers["slow_reader refused"] += 1
            continue
        writer.write(request)  # and never read the answers
        writers.append(writer)
        outcome.attackers["slow_reader connected"] += 1
    try:
        await over.wait()
    finally:
        for writer in writers:
            writer.close()


async def many_connections(
    port: int, profile: Profile, outcome: Outcome, over: asyncio.Event
) -> None:
    held = []
    for _ in range(profile.many_connections):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            outcome.attackers["many_connections refused"] += 1
            continue
        held.append((reader, writer))
    await asyncio.sleep(0.5)
    for reader, _ in held:
        if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
            outcome.attackers["many_connections 503"] += 1
        else:
            outcome.attackers["many_connections held"] += 1
    try:
        await over.wait()
    finally:
        for _, writer in held:
            writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="an existing broker (else a LocalKafka is started)")
    parser.add_argument("--quiet-seconds", type=float, default=Profile.quiet_seconds)
    parser.add_argument("--attack-seconds", type=float, default=Profile.attack_seconds)
    parser.add_argument("--reduced", action="store_true", help="the test's reduced profile")
    args = parser.parse_args(argv)
    profile = (
        REDUCED
        if args.reduced
        else Profile(quiet_seconds=args.quiet_seconds, attack_seconds=args.attack_seconds)
    )
    with tempfile.TemporaryDirectory(prefix="abuse-bench-") as tmp:
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = LocalKafka(
                KafkaConfig(
                    data_dir=Path(tmp) / "kafka", port=free_port(), controller_port=free_port()
                )
            )
            broker.start()
            bootstrap = broker.bootstrap_servers
        process, port = start_connector(bootstrap, profile, Path(tmp) / "connector.log")
        try:
            asyncio.run(wait_ready(port))
            outcome = asyncio.run(run_profile(port, profile))
        finally:
            process.terminate()
            process.wait(timeout=30)
            if broker is not None:
                broker.stop()
    print(outcome.report())
    return 0 if not outcome.failures and outcome.ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
