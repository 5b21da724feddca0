"""Thin platform notifications resolved the Kafka way, against the real broker and a real
HTTP server playing the platform's contents API (``GET /cx/social-messaging/v1/contents/{id}``).

Each test runs whole connectors (``connectors.server.serve``: webhook, unresolved topic,
resolver in its consumer group) on 127.0.0.1 and checks what reaches the topics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import msgspec
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer

from connectors.envelopes import UNRESOLVED_CONTENT, parse_platform
from connectors.metrics import ConnectorMetrics
from connectors.publisher import KafkaPublisher
from connectors.resolver import Resolver, redrive_unresolved
from connectors.server import serve
from devkit.ports import free_port
from engage_streams.record import decode_event
from engage_streams.settings import Settings
from simulator.platform_api import FakePlatform, serving
from tests.plugins.topics import read_topic

pytestmark = pytest.mark.kafka

RC_TOKEN = "rc-verification-token"
CONTENTS_PATH = "/cx/social-messaging/v1/contents/"


@dataclass
class FakeContents:
    """The platform's contents API: serves ``contents``; 503 for the first ``fail_first``
    requests; 404 for unknown ids. Counts the contents it served (200) by id."""

    contents: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_first: int = 0
    requests: int = 0
    served: Counter[str] = field(default_factory=Counter)

    async def get(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.fail_first:
            return web.json_response({"errorCode": "CMN-211"}, status=503)
        content = self.contents.get(request.match_info["content_id"])
        if content is None:
            return web.json_response({"errorCode": "CMN-102"}, status=404)
        self.served[content["id"]] += 1
        return web.json_response(content)


class LookupFailed(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class HttpLookup:
    """A minimal ``ContentLookup`` over HTTP (the product uses the platform client)."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def get_content(self, content_id: str) -> dict[str, Any]:
        answer = await self._client.get(CONTENTS_PATH + content_id)
        if answer.status_code != 200:
            raise LookupFailed(answer.status_code)
        content: dict[str, Any] = answer.json()
        return content

    async def aclose(self) -> None:
        await self._client.aclose()


@pytest.fixture
async def platform_api() -> AsyncIterator[tuple[FakeContents, HttpLookup]]:
    fake = FakeContents()
    app = web.Application()
    app.router.add_get(CONTENTS_PATH + "{content_id}", fake.get)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    lookup = HttpLookup(str(server.make_url("")).rstrip("/"))
    try:
        yield fake, lookup
    finally:
        await lookup.aclose()
        await server.close()


@pytest.fixture
def base_settings(kafka_broker: Any) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"test.resolver.{suffix}",
        dlq_topic=f"test.resolver.{suffix}.dlq",
        unresolved_topic=f"test.resolver.{suffix}.unresolved",
        resolver_group=f"test-resolver-{suffix}",
        webhook_secret="engage-secret",
        ringcentral_verification_token=RC_TOKEN,
        topic_partitions=4,
        publish_timeout_seconds=5.0,
        resolver_attempts=1000,
        resolver_initial_delay_seconds=0.02,
        resolver_max_delay_seconds=0.2,
        resolver_concurrency=8,
    )


@dataclass
class Connector:
    url: str
    stop: asyncio.Event
    task: asyncio.Task[int]
    client: httpx.AsyncClient

    async def notify(self, envelope: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            "/webhooks/ringcentral",
            content=orjson.dumps(envelope),
            headers={"Content-Type": "application/json", "Verification-Token": RC_TOKEN},
        )

    async def metric(self, name: str, **labels: str) -> float:
        text = (await self.client.get("/metrics")).text
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}")
        for line in text.splitlines():
            if labels and line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
            if not labels and line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
async def start_connector() -> AsyncIterator[Callable[..., Awaitable[Connector]]]:
    running: list[Connector] = []

    async def start(settings: Settings, lookup: HttpLookup | None) -> Connector:
        settings = replace(settings, connector_port=free_port())
        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings, stop=stop, lookup=lookup, signals=False))
        url = f"http://127.0.0.1:{settings.connector_port}"
        client = httpx.AsyncClient(base_url=url, timeout=30)
        connector = Connector(url, stop, task, client)
        running.append(connector)

        async def up() -> bool:
            if task.done():
                raise AssertionError(f"connector exited with {task.result()}")
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, 120, "the connector to listen")
        return connector

    try:
        yield start
    finally:
        for connector in running:
            connector.stop.set()
        for connector in running:
            assert await asyncio.wait_for(connector.task, 60) == 0
            await connector.client.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def content(n: int) -> dict[str, Any]:
    """A full platform content (what ``GET .../contents/{id}`` answers)."""
    return {
        "id": f"content-{n:04d}",
        "creationTime": f"2026-03-02T09:{n // 60:02d}:{n % 60:02d}.000Z",
        "authorIdentityId": f"identity-{n % 7}",
        "creatorId": None if n % 2 else "63311250008",
        "status": "New" if n % 2 else "UserReply",
        "threadId": f"thread-{n % 11}",
        "sourceId": "5f0a1b2c3d4e5f0011226666",
        "sourceType": "WhatsApp",
        "contentDirection": "Incoming" if n % 2 else "Outgoing",
        "body": "words that never reach Kafka",
    }


def thin(content_id: str) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "event": "/cx/social-messaging/v1/contents/Imported",
        "timestamp": "2026-03-02T12:05:40.002Z",
        "subscriptionId": "a1b2c3d4",
        "ownerId": "400131234008",
        "body": {"issuedAt": "2026-03-02T12:05:39.000Z", "resource": {"id": content_id}},
    }


async def notify_all(connector: Connector, notifications: list[dict[str, Any]]) -> None:
    for notification in notifications:
        answer = await connector.notify(notification)
        assert answer.status_code == 200, answer.text
        assert answer.json()["queued_unresolved"] == 1


async def settled(connectors: list[Connector], resolved: int, dead: int = 0) -> bool:
    """Every connector's resolver is done: the outcomes add up and nothing is pending."""
    totals = Counter[str]()
    pending = 0.0
    for c in connectors:
        for outcome in ("resolved", "dead_letter"):
            totals[outcome] += int(
                await c.metric("engage_unresolved_notifications_total", outcome=outcome)
            )
        pending += await c.metric("engage_resolver_pending_notifications")
    return totals["resolved"] == resolved and totals["dead_letter"] == dead and pending == 0


async def test_thin_notifications_survive_an_api_outage_and_resolve_exactly_once(
    base_settings: Settings,
    platform_api: tuple[FakeContents, HttpLookup],
    start_connector: Callable[..., Awaitable[Connector]],
) -> None:
    fake, lookup = platform_api
    fake.contents = {c["id"]: c for c in map(content, range(30))}
    fake.fail_first = 60  # the API answers 503 for a while
    connector = await start_connector(base_settings, lookup)
    notifications = [thin(cid) for cid in fake.contents]
    await notify_all(connector, notifications)  # 200 at once: queued, not fetched

    records = await read_topic(base_settings.kafka_bootstrap_servers, base_settings.topic, 30, 90)
    await eventually(lambda: settled([connector], 30), 120, "the resolver to settle")
    assert fake.requests > fake.fail_first  # the outage was really met
    assert await connector.metric("engage_unresolved_notifications_total", outcome="retried") > 0
    assert await connector.metric("engage_unresolved_notifications_total", outcome="queued") == 30

    records = await read_topic(base_settings.kafka_bootstrap_servers, base_settings.topic, 0)
    events = [decode_event(r.value) for r in records]
    assert sorted(e.content_id for e in events) == sorted(fake.contents)  # each exactly once
    assert set(fake.served.values()) == {1}
    by_uuid = {n["uuid"]: n["body"]["resource"]["id"] for n in notifications}
    for record, event in zip(records, events, strict=True):
        full = fake.contents[event.content_id]
        assert by_uuid[event.event_id] == event.content_id  # the notification's event id
        assert record.key == full["threadId"].encode()
        assert event.thread_id == full["threadId"]
        assert event.direction == ("inbound" if full["creatorId"] is None else "outbound")
        assert event.agent_id == full["creatorId"]
        assert event.event_time.isoformat().startswith(full["creationTime"][:19])
        assert event.body is None and b"words" not in record.value
    dlq = await read_topic(base_settings.kafka_bootstrap_servers, base_settings.dlq_topic, 0)
    assert dlq == []


async def test_two_connectors_share_the_resolving_without_doing_one_twice(
    base_settings: Settings,
    platform_api: tuple[FakeContents, HttpLookup],
    start_connector: Callable[..., Awaitable[Connector]],
) -> None:
    fake, lookup = platform_api
    fake.contents = {c["id"]: c for c in map(content, range(80))}
    fake.fail_first = 20
    ids = list(fake.contents)
    first = await start_connector(base_settings, lookup)
    await notify_all(first, [thin(cid) for cid in ids[:40]])
    second = await start_connector(base_settings, lookup)  # joins the group: a rebalance

    async def shared() -> bool:
        owned = [await c.metric("engage_resolver_assigned_partitions") for c in (first, second)]
        return all(owned) and sum(owned) == base_settings.topic_partitions

    await eventually(shared, 180, "the two resolvers to share the partitions")
    await notify_all(second, [thin(cid) for cid in ids[40:]])

    await eventually(lambda: settled([first, second], 80), 180, "both resolvers to settle")
    records = await read_topic(base_settings.kafka_bootstrap_servers, base_settings.topic, 0)
    assert sorted(decode_event(r.value).content_id for r in records) == sorted(ids)
    assert fake.served == Counter(ids)  # each content fetched successfully exactly once
    shares = [
        await c.metric("engage_unresolved_notifications_total", outcome="resolved")
        for c in (first, second)
    ]
    assert sum(shares) == 80 and all(shares)  # both did part of the work


class _RebalancedWhileFetching:
    """The resolver's consumer, whose next ``getmany`` answers after a rebalance that gave
    this consumer its partitions back (the revocation is reported while it waits)."""

    def __init__(self, consumer: AIOKafkaConsumer, resolver: Resolver) -> None:
        self._consumer = consumer
        self._resolver = resolver
        self.rebalances = 1

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Any:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        if batch and self.rebalances:
            self.rebalances -= 1
            self._resolver.on_revoke()
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


async def test_a_batch_dropped_for_a_rebalance_is_read_again_by_its_owner(
    base_settings: Settings,
    platform_api: tuple[FakeContents, HttpLookup],
    start_connector: Callable[..., Awaitable[Connector]],
) -> None:
    # Two connectors sharing the resolving lost a notification now and then: a batch fetched
    # across a rebalance was dropped, and when the same connector got the partition back its
    # fetch position was already past the dropped records -- the next commit skipped them.
    fake, lookup = platform_api
    fake.contents = {c["id"]: c for c in map(content, range(12))}
    queueing = await start_connector(base_settings, None)  # queues; resolves nothing
    await notify_all(queueing, [thin(cid) for cid in fake.contents])
    publisher = KafkaPublisher(base_settings.kafka_bootstrap_servers)
    await publisher.start()
    metrics = ConnectorMetrics()
    resolver = Resolver(base_settings, lookup, publisher, metrics)
    consumer = resolver._consumer()
    consumer.subscribe([base_settings.unresolved_topic])
    await consumer.start()
    rebalanced = _RebalancedWhileFetching(consumer, resolver)
    stop = asyncio.Event()
    try:
        deadline = time.monotonic() + 60
        while sum(fake.served.values()) < 12 and time.monotonic() < deadline:
            await resolver._resolve_next_batch(cast(AIOKafkaConsumer, rebalanced), stop)
        assert rebalanced.rebalances == 0  # a batch was dropped
        # Whatever the dropped batch held was read again, resolved and committed.
        assert fake.served == Counter(list(fake.contents))  # each exactly once
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        assert {tp: await consumer.committed(tp) for tp in partitions} == ends
    finally:
        await consumer.stop()
        await publisher.stop()
    records = await read_topic(base_settings.kafka_bootstrap_servers, base_settings.topic, 12)
    assert sorted(decode_event(r.value).content_id for r in records) == sorted(fake.contents)


async def test_unresolvable_goes_to_the_dlq_after_the_retries_and_is_redriven(
    base_settings: Settings,
    platform_api: tuple[FakeContents, HttpLookup],
    start_connector: Callable[..., Awaitable[Connector]],
) -> None:
    fake, lookup = platform_api
    settings = replace(base_settings, resolver_attempts=3)
    connector = await start_connector(settings, lookup)
    notification = thin("content-late")
    await notify_all(connector, [notification])

    (dead,) = await read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic, 1, 60)
    letter = orjson.loads(dead.value)
    assert letter["reason"] == UNRESOLVED_CONTENT
    assert letter["content_id"] == "content-late" and letter["attempts"] == 3
    assert letter["error"] == "LookupFailed status=404"
    assert letter["event"] == notification  # enough to re-drive
    assert dead.key == b"content-late"
    await eventually(lambda: settled([connector], 0, dead=1), 30, "the dead letter to count")
    assert await connector.metric("engage_dlq_events_total", reason=UNRESOLVED_CONTENT) == 1

    fake.contents["content-late"] = {**content(1), "id": "content-late"}  # readable now
    assert await redrive_unresolved(settings) == 1
    (record,) = await read_topic(settings.kafka_bootstrap_servers, settings.topic, 1, 60)
    event = decode_event(record.value)
    assert (event.content_id, event.event_id) == ("content-late", notification["uuid"])
    assert await redrive_unresolved(settings) == 0  # a second run re-drives nothing again
    await eventually(lambda: settled([connector], 1, dead=1), 30, "the resolver to settle")
    assert fake.served == Counter({"content-late": 1})


async def test_without_a_platform_api_thin_notifications_stay_queued(
    base_settings: Settings,
    start_connector: Callable[..., Awaitable[Connector]],
) -> None:
    connector = await start_connector(base_settings, None)
    await notify_all(connector, [thin(f"c{n}") for n in range(3)])
    queued = await read_topic(
        base_settings.kafka_bootstrap_servers, base_settings.unresolved_topic, 3
    )
    assert sorted(r.key for r in queued) == [b"c0", b"c1", b"c2"]

    async def reported() -> bool:
        return await connector.metric("engage_resolver_pending_notifications") == 3

    await eventually(reported, 30, "the pending notifications to be reported")
    assert await connector.metric("engage_resolver_ready") == 0
    assert await read_topic(base_settings.kafka_bootstrap_servers, base_settings.topic, 0) == []


async def test_a_platform_api_it_has_never_seen_nested_flat_and_thin_alike(
    base_settings: Settings,
    start_connector: Callable[..., Awaitable[Connector]],
) -> None:
    """The real platform client (``RINGCENTRAL_*`` settings) against the simulator's fake
    platform API, failing for a while: every shape gives the record of the full content."""
    platform = FakePlatform()
    contents = [platform.add_content({**content(n), "id": f"shape-{n}"}) for n in range(24)]
    platform.fail(503, times=15, path="/cx/", after=2)
    shapes = []
    for n, full in enumerate(contents):
        notification = thin(full["id"])
        if n % 3 == 1:
            notification["body"]["resource"] = dict(full)  # nested, full
        elif n % 3 == 2:
            notification["body"] = dict(full)  # flat, full
        shapes.append(notification)
    async with serving(platform) as url:
        settings = replace(
            base_settings,
            ringcentral_server_url=url,
            ringcentral_client_id=platform.client_id,
            ringcentral_client_secret=platform.client_secret,
            ringcentral_jwt=platform.jwt,
        )
        connector = await start_connector(settings, None)
        for notification in shapes:
            answer = await connector.notify(notification)
            assert answer.status_code == 200, answer.text
        records = await read_topic(settings.kafka_bootstrap_servers, settings.topic, 24, 120)
        await eventually(lambda: settled([connector], 8), 120, "the thin ones to be resolved")
        assert platform.calls("GET", "/cx/social-messaging/v1/contents/") >= 8 + 15 - 2
    by_content = {decode_event(r.value).content_id: decode_event(r.value) for r in records}
    assert len(records) == 24 and set(by_content) == {c["id"] for c in contents}
    for notification, full in zip(shapes, contents, strict=True):
        expected = nested_record(notification["uuid"], full)
        got = by_content[full["id"]]
        assert msgspec.structs.replace(got, received_at=expected.received_at) == expected


def nested_record(uuid_: str, full: dict[str, Any]) -> Any:
    envelope = thin(full["id"])
    envelope["uuid"] = uuid_
    envelope["body"]["resource"] = full
    (record,) = parse_platform(
        orjson.dumps(envelope), received_at=datetime.now(UTC), forward_body=False
    ).records
    return record
