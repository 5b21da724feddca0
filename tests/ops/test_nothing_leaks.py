"""Secrets and the customer's words appear nowhere they could leak, end to end.

A real connector (``engage-streams connector``, its own process) and a real worker
(``engage-streams worker``, token set) on a real broker get traffic holding a known webhook
secret, verify token, platform token and worker API token, wrong guesses of each, and
distinctive message bodies: accepted deliveries of both webhooks (customer and agent
contents), events that go to the DLQ, unreadable bodies, forged and oversized requests. Then
every place is searched for each of those strings:

* the captured logs of both processes;
* ``/metrics`` of the connector and of the worker;
* every record (key, value, headers) of every topic of the broker: events, DLQ, the worker's
  changelogs and activity/summary topics, consumer offsets;
* every file of the worker's state directory, raw, and every key and value of its RocksDB
  databases, read back (the files may be compressed);
* every answer of both servers, errors included.

Positive controls keep the search honest: a distinctive thread id is found in the events topic
and in the RocksDB state, and dead-letter lines in the connector's log.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devkit.ports import free_port
from engage_streams.record import ContentEvent
from engage_streams.settings import Settings
from engage_streams.timefmt import utc_iso as iso
from simulator.deliveries import classic_envelope, platform_envelope
from tests.plugins.api_server import assert_schemathesis_finds_nothing
from tests.plugins.waiting import wait_for
from tests.plugins.workers import WorkerProcess, parse_series, worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:8]
SECRET = f"SECRET-dimelo-{RUN}"
VERIFY = f"SECRET-verify-{RUN}"
RC_TOKEN = f"SECRET-rc-{RUN}"
API_TOKEN = f"SECRET-api-{RUN}"
GUESSES = [f"GUESS-{name}-{RUN}" for name in ("dimelo", "verify", "rc", "api")]
BODIES = [f"WORDS-{n}-{RUN} mon colis n'est pas arrivé" for n in "ABCDEFGH"]
CANARY_THREAD = f"canary-thread-{RUN}"
NEEDLES = [SECRET, VERIFY, RC_TOKEN, API_TOKEN, *GUESSES, *BODIES]


def content(n: int, body: str, **fields: Any) -> ContentEvent:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "event_id": f"ev-{RUN}-{n}",
        "event_type": "content.imported",
        "origin": "engage",
        "event_time": now - timedelta(seconds=300 - n),
        "received_at": now,
        "content_id": f"content-{RUN}-{n}",
        "thread_id": CANARY_THREAD,
        "source_id": "source-chat",
        "source_type": "whatsapp",
        "author_id": "identity-customer",
        "direction": "inbound",
        "body": body,
    }
    values.update(fields)
    return ContentEvent(**values)


def deliveries() -> list[tuple[str, dict[str, str], bytes]]:
    """(path, headers, body) of the traffic; every body holds a distinctive word string."""
    engage = {"X-Dimelo-Secret": SECRET, "Content-Type": "application/json"}
    platform = {"Verification-Token": RC_TOKEN, "Content-Type": "application/json"}
    customer = content(1, BODIES[0])
    reply = content(
        2,
        BODIES[1],
        event_type="content.replied",
        direction="outbound",
        agent_id="agent-7",
        author_id="identity-agent-7",
        in_reply_to_id=customer.content_id,
    )
    other_thread = content(3, BODIES[2], thread_id=f"thread-{RUN}-rc", origin="ringcentral")
    nested = {
        "uuid": f"uuid-{RUN}-4",
        "event": "/cx/social-messaging/v1/contents/Imported",
        "timestamp": iso(datetime.now(UTC)),
        "body": {
            "issuedAt": iso(datetime.now(UTC)),
            "resource": {
                "id": f"content-{RUN}-4",
                "threadId": f"thread-{RUN}-nested",
                "body": BODIES[3],
                "creationTime": iso(datetime.now(UTC) - timedelta(seconds=30)),
                "status": "New",
            },
        },
    }
    dead = {
        "id": f"delivery-{RUN}-dead",
        "events": [
            {
                "type": "intervention.opened",
                "id": f"ev-{RUN}-5",
                "resource": {"id": "i-1", "metadata": {"body": BODIES[4], "title": BODIES[4]}},
            },
            {
                "type": "content.imported",
                "id": f"ev-{RUN}-6",
                "issued_at": "yesterday-ish",
                "resource": {
                    "id": "c-6",
                    "metadata": {"thread_id": "t-6", "created_at": "soon", "body": BODIES[5]},
                },
            },
        ],
    }
    return [
        ("/webhooks/engage", engage, classic_envelope([customer, reply], delivery_id="d-1")),
        ("/webhooks/ringcentral", platform, platform_envelope(other_thread)),
        ("/webhooks/ringcentral", platform, orjson.dumps(nested)),
        ("/webhooks/engage", engage, orjson.dumps(dead)),
        # Unreadable, forged, oversized: refused, and the refusal must not echo them.
        ("/webhooks/engage", engage, b'{"events": [{"body": "' + BODIES[6].encode() + b'"'),
        ("/webhooks/engage", {"X-Dimelo-Secret": GUESSES[0]}, BODIES[7].encode()),
        ("/webhooks/ringcentral", {"Verification-Token": GUESSES[2]}, BODIES[7].encode()),
        ("/webhooks/engage", {**engage, "X-Pad": SECRET * 400}, BODIES[7].encode()),
    ]


def process_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def connector_process(kafka_settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    settings = replace(
        kafka_settings,
        connector_port=port,
        webhook_secret=SECRET,
        verify_token=VERIFY,
        ringcentral_verification_token=RC_TOKEN,
        connector_max_header_bytes=4096,
    )
    log_path = tmp_path / "connector.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "engage_streams.cli", "connector"],
            env=process_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 90, "the connector to be ready", lambda: log_path.read_text())
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def answers_of_traffic(url: str, worker: WorkerProcess) -> list[str]:
    """Send all the traffic; every answer (status line, headers, body) as text."""
    seen: list[str] = []

    def keep(response: httpx.Response) -> httpx.Response:
        seen.append(f"{response.status_code} {response.headers!r} {response.text}")
        return response

    with httpx.Client(base_url=url, timeout=30) as client:
        statuses = [
            keep(client.post(path, headers=headers, content=body)).status_code
            for path, headers, body in deliveries()
        ]
        handshake = {"hub.mode": "subscribe", "hub.challenge": "challenge-1"}
        for token in (VERIFY, GUESSES[1]):
            keep(
                client.get(
                    "/webhooks/engage",
                    params={**handshake, "hub.verify_token": token},
                    headers={"X-Dimelo-Secret": SECRET},
                )
            )
    assert statuses == [200, 200, 200, 200, 400, 401, 401, 431], statuses
    # The worker, token set, refuses every request without the right one (probes stay open).
    for headers in ({}, {"Authorization": f"Bearer {GUESSES[3]}"}):
        for path in ("/api/v1/leaderboard?window=all", "/metrics", "/wallboard", "/nope"):
            assert (
                keep(httpx.get(worker.url + path, headers=headers, timeout=10)).status_code == 401
            )
        posted = httpx.post(worker.url + "/api/v1/leaderboard", headers=headers, timeout=10)
        assert keep(posted).status_code == 405
    assert keep(httpx.get(worker.url + f"/wallboard?token={GUESSES[3]}")).status_code == 401
    assert httpx.get(worker.url + "/healthz", timeout=10).status_code == 200
    keep(httpx.get(worker.url + "/api/v1/agents/" + GUESSES[3], headers=bearer(), timeout=10))
    keep(httpx.get(worker.url + "/api/v1/leaderboard?window=" + BODIES[7], headers=bearer()))
    return seen


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


async def every_record(bootstrap: str) -> list[bytes]:
    """Key, value and headers of every record of every topic (internal ones too)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [
            TopicPartition(topic, p)
            for topic in cluster.topics(exclude_internal_topics=False)
            for p in cluster.partitions_for_topic(topic) or ()
        ]
        assert partitions, "the broker lists no topic"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[bytes] = []
        deadline = time.monotonic() + 60
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            assert time.monotonic() < deadline, "could not read every topic to its end"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    found.append(record.key or b"")
                    found.append(record.value or b"")
                    found.extend(value for _, value in record.headers or ())
        return found
    finally:
        await consumer.stop()


def state_contents(data_dir: Path) -> tuple[list[bytes], list[bytes]]:
    """(raw bytes of every file, every key and value of every RocksDB database) under
    ``data_dir``."""
    from rocksdict import AccessType, Options, Rdict

    files = [p for p in data_dir.rglob("*") if p.is_file()]
    raw = [p.read_bytes() for p in files]
    entries: list[bytes] = []
    for current in data_dir.rglob("CURRENT"):
        db = Rdict(str(current.parent), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                entries.extend((key, value))
        finally:
            db.close()
    return raw, entries


def leaks(place: str, texts: list[bytes] | list[str]) -> list[str]:
    found = []
    for needle in NEEDLES:
        for text in texts:
            haystack = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
            if needle.encode() in haystack:
                found.append(f"{needle!r} in {place}")
                break
    return found


def test_no_secret_and_no_words_anywhere(
    kafka_settings: Settings, connector_process: tuple[str, Path], tmp_path: Path
) -> None:
    url, connector_log = connector_process
    worker = WorkerProcess(
        worker_settings(
            replace(kafka_settings, worker_api_token=API_TOKEN),
            tmp_path / "worker-state",
            activity_topic=f"engage.agent-activity.{RUN}",
            summary_topic=f"engage.partition-summaries.{RUN}",
            waiting_topic=f"engage.waiting-runs.{RUN}",
        ),
        tmp_path / "worker.log",
    )
    worker.start()
    try:
        wait_for(worker.serving, 180, "the worker's HTTP server", worker.log_tail)
        seen = answers_of_traffic(url, worker)

        def worker_metrics() -> str:
            try:
                response = httpx.get(worker.url + "/metrics", headers=bearer(), timeout=5)
            except httpx.HTTPError:
                return ""
            return response.text if response.status_code == 200 else ""

        def contents_counted() -> bool:
            series = parse_series(worker_metrics() or "", drop=("partition", "topic"))
            counted = sum(v for (n, _), v in series.items() if n == "engage_contents_total")
            return counted >= 3

        wait_for(contents_counted, 240, "the worker to count the contents", worker.log_tail)
        # Answers after the traffic: the worker API with the right token (after processing).
        seen.append(httpx.get(worker.url + "/api/v1/leaderboard?window=all", headers=bearer()).text)
        metrics = [httpx.get(url + "/metrics", timeout=10).text, worker_metrics()]
        # The real worker's API, token on, fuzzed with every check (it must not leak either).
        (tmp_path / "schemathesis").mkdir()
        assert_schemathesis_finds_nothing(worker.url, tmp_path / "schemathesis", token=API_TOKEN)
    finally:
        worker.stop()

    records = asyncio.run(every_record(kafka_settings.kafka_bootstrap_servers))
    raw_files, db_entries = state_contents(tmp_path / "worker-state")
    logs = [connector_log.read_bytes(), (tmp_path / "worker.log").read_bytes()]

    # Positive controls: the search reads the places where things are.
    assert any(CANARY_THREAD.encode() in r for r in records), "events topic not searched"
    assert any(CANARY_THREAD.encode() in e for e in db_entries), "RocksDB state not searched"
    assert b"event=dead_letter" in logs[0] and b"reason=non_content_event" in logs[0]
    assert 'engage_dlq_events_total{reason="non_content_event"} 1.0' in metrics[0]
    assert "engage_contents_total" in metrics[1]

    found = [
        *leaks("the logs", logs),
        *leaks("the /metrics pages", metrics),
        *leaks("a Kafka record", records),
        *leaks("a state file", raw_files),
        *leaks("the RocksDB state", db_entries),
        *leaks("an HTTP answer", seen),
    ]
    assert found == []
