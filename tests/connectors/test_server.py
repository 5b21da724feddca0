"""The webhook receiver against the real Kafka broker: what reaches the topic, what does not."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from aiohttp.test_utils import TestServer

from connectors.envelopes import DEAD_LETTER_REASONS, parse_classic
from connectors.metrics import ANSWER_CODES, ConnectorMetrics
from connectors.publisher import KafkaPublisher
from connectors.server import create_app, main
from engage_streams.record import decode_event
from engage_streams.settings import Settings, SettingsError
from tests.plugins.topics import read_all
from tests.plugins.waiting import eventually

pytestmark = pytest.mark.kafka

SAMPLES = Path(__file__).resolve().parents[2] / "devkit" / "data" / "samples"
SECRET = "s3cr3t-Engage-webhook"
VERIFY = "verify-me"
RC_TOKEN = "rc-verification-token"


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(sample_bytes(name))
    return loaded


@dataclass
class Running:
    settings: Settings
    client: httpx.AsyncClient
    url: str
    metrics: ConnectorMetrics
    bootstrap: str

    async def deliver(self, body: bytes, secret: str | None = SECRET) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Dimelo-Secret"] = secret
        return await self.client.post("/webhooks/engage", content=body, headers=headers)

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def connector(kafka_broker: Any) -> AsyncIterator[Running]:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"test.connector.{suffix}",
        dlq_topic=f"test.connector.{suffix}.dlq",
        webhook_secret=SECRET,
        verify_token=VERIFY,
        ringcentral_verification_token=RC_TOKEN,
        publish_timeout_seconds=2.0,
        max_body_bytes=64 * 1024,
    )
    await asyncio.to_thread(kafka_broker.create_topic, settings.topic, 3)
    await asyncio.to_thread(kafka_broker.create_topic, settings.dlq_topic, 1)
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers, request_timeout_seconds=10.0)
    await publisher.start()
    metrics = ConnectorMetrics()
    server = TestServer(create_app(settings, publisher, metrics=metrics), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield Running(settings, client, url, metrics, settings.kafka_bootstrap_servers)
    finally:
        await server.close()
        await publisher.stop()
    # Whatever a test made the connector answer was exported at 0 from the start.
    answered = {
        (s.labels["endpoint"], int(s.labels["code"]))
        for family in metrics.registry.collect()
        if family.name == "engage_webhook_requests"
        for s in family.samples
        if s.name == "engage_webhook_requests_total"
    }
    declared = {(e, code) for e, codes in ANSWER_CODES.items() for code in codes}
    assert answered == declared, f"answered but not in ANSWER_CODES: {answered - declared}"


async def test_signed_delivery_is_readable_from_the_topic(connector: Running) -> None:
    raw = sample_bytes("classic-agent-reply-batch.json")
    response = await connector.deliver(raw)
    assert response.status_code == 200, response.text
    assert response.json() == {"published": 2, "dead_lettered": 0}

    records = await read_all(connector.bootstrap, connector.settings.topic)
    assert len(records) == 2
    decoded = [decode_event(value) for _, value in records]
    assert [key for key, _ in records] == [b"65e2f3a1c9d8e70012ab3300"] * 2
    expected = parse_classic(raw, received_at=decoded[0].received_at, forward_body=False)
    assert decoded == expected.records
    for _, value in records:  # the customer's words never reach Kafka by default
        assert b"tracking link" not in value and b"Great, thanks" not in value
    assert connector.metric("engage_events_published_total", event_type="content.replied") == 1
    assert connector.metric("engage_webhook_requests_total", endpoint="engage", code="200") == 1
    assert connector.metric("engage_publish_latency_seconds_count") == 1


async def test_forged_and_unsigned_deliveries_publish_nothing(
    connector: Running, caplog: pytest.LogCaptureFixture
) -> None:
    raw = sample_bytes("classic-customer-message.json")
    forged = await connector.deliver(raw, secret="not-the-secret")
    unsigned = await connector.deliver(raw, secret=None)
    assert (forged.status_code, unsigned.status_code) == (401, 401)
    assert "X-Dimelo-Secret" in forged.json()["error"]
    # A signed delivery afterwards is the only thing on the topic.
    assert (await connector.deliver(sample_bytes("classic-auto-welcome.json"))).status_code == 200
    records = await read_all(connector.bootstrap, connector.settings.topic)
    assert [decode_event(v).event_id for _, v in records] == ["e6b4f2a50d7c4c4b1a3f8d9e0b1c2345"]
    assert connector.metric("engage_webhook_requests_total", endpoint="engage", code="401") == 2
    assert "not-the-secret" not in caplog.text and SECRET not in caplog.text


async def test_platform_validation_verification_and_delivery(connector: Running) -> None:
    handshake = await connector.client.post(
        "/webhooks/ringcentral", headers={"Validation-Token": "abc-123"}
    )
    assert handshake.status_code == 200
    assert handshake.headers["Validation-Token"] == "abc-123"

    raw = sample_bytes("platform-imported.json")
    wrong = await connector.client.post(
        "/webhooks/ringcentral", content=raw, headers={"Verification-Token": "nope"}
    )
    missing = await connector.client.post("/webhooks/ringcentral", content=raw)
    assert (wrong.status_code, missing.status_code) == (401, 401)
    right = await connector.client.post(
        "/webhooks/ringcentral", content=raw, headers={"Verification-Token": RC_TOKEN}
    )
    assert right.status_code == 200, right.text
    ((key, value),) = await read_all(connector.bootstrap, connector.settings.topic)
    record = decode_event(value)
    assert key == b"65e3117ec9d8e70012ab5a00"
    assert (record.origin, record.event_id, record.direction) == (
        "ringcentral",
        "2f9d1c7e-4b3a-4e6f-9a0b-8c7d6e5f4a3b",
        "inbound",
    )


async def test_registration_handshake(connector: Running) -> None:
    query = {"hub.mode": "subscribe", "hub.challenge": "ch4llenge", "hub.verify_token": VERIFY}
    ok = await connector.client.get(
        "/webhooks/engage", params=query, headers={"X-Dimelo-Secret": SECRET}
    )
    assert (ok.status_code, ok.text) == (200, "ch4llenge")
    wrong_token = await connector.client.get(
        "/webhooks/engage",
        params={**query, "hub.verify_token": "guess"},
        headers={"X-Dimelo-Secret": SECRET},
    )
    assert wrong_token.status_code == 403
    assert "ch4llenge" not in wrong_token.text
    no_secret = await connector.client.get("/webhooks/engage", params=query)
    assert no_secret.status_code == 401


async def test_unreadable_event_goes_to_the_dlq_and_the_delivery_succeeds(
    connector: Running,
) -> None:
    envelope = sample("classic-agent-reply-batch.json")
    del envelope["events"][1]["resource"]["metadata"]["thread_id"]
    response = await connector.deliver(orjson.dumps(envelope))
    assert response.status_code == 200, response.text
    assert response.json() == {"published": 1, "dead_lettered": 1}

    ((_, dead),) = await read_all(connector.bootstrap, connector.settings.dlq_topic)
    letter = orjson.loads(dead)
    assert letter["reason"] == "missing_thread_id"
    assert letter["endpoint"] == "engage"
    assert letter["received_at"].endswith("Z")
    assert letter["event"]["id"] == "d5a3e1f49c6b4b3a0f2e7c8d9a0b1234"
    assert "body" not in letter["event"]["resource"]["metadata"]
    assert b"Great, thanks" not in dead
    ((_, good),) = await read_all(connector.bootstrap, connector.settings.topic)
    assert decode_event(good).event_id == "c4f2d0e38b5a4a2f9e1d6b7c8f9a0123"
    assert connector.metric("engage_dlq_events_total", reason="missing_thread_id") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<xml/>", "body is not valid UTF-8 JSON"),
        (b'"just a string"', "body must be a JSON object"),
        (b'{"id": "x", "events": "nope"}', "field 'events' must be a list"),
        (b'{"id": "x", "domain_id": [1], "events": []}', "field 'domain_id'"),
    ],
)
async def test_not_an_envelope_is_400_saying_why(
    connector: Running, body: bytes, message: str
) -> None:
    response = await connector.deliver(body)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_platform_not_an_envelope_is_400(connector: Running) -> None:
    response = await connector.client.post(
        "/webhooks/ringcentral",
        content=orjson.dumps(sample("classic-customer-message.json")),
        headers={"Verification-Token": RC_TOKEN},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "field 'event' must be a string"


async def test_oversized_bodies_are_413_while_reading(connector: Running) -> None:
    limit = connector.settings.max_body_bytes
    declared = await connector.deliver(b"x" * (limit + 1))
    assert declared.status_code == 413

    # A chunked body that goes over the limit and then never ends: the answer can only come
    # if the limit is enforced while reading.
    never = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        yield b"[" + b" " * limit
        await never.wait()
        yield b"]"

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            connector.url + "/webhooks/engage",
            data=endless(),
            headers={"X-Dimelo-Secret": SECRET},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as response,
    ):
        assert response.status == 413
    exactly = await connector.deliver(b'{"events": []' + b" " * (limit - 14) + b"}")
    assert exactly.status_code == 200  # the limit itself is allowed
    assert connector.metric("engage_webhook_requests_total", endpoint="engage", code="413") == 2


async def test_operations_endpoints(connector: Running) -> None:
    assert (await connector.client.get("/healthz")).status_code == 200
    assert (await connector.client.get("/readyz")).status_code == 200
    await connector.deliver(b"{}")
    page = await connector.client.get("/metrics")
    assert page.status_code == 200
    assert 'engage_webhook_requests_total{code="400",endpoint="engage"} 1.0' in page.text
    for name in ("engage_events_published_total", "engage_dlq_events_total"):
        assert f"# TYPE {name} counter" in page.text
    assert "# TYPE engage_publish_latency_seconds histogram" in page.text
    # Every answer code of each endpoint is there from the start, 0 until answered once.
    assert 'engage_webhook_requests_total{code="503",endpoint="engage"} 0.0' in page.text
    assert 'engage_webhook_requests_total{code="401",endpoint="ringcentral"} 0.0' in page.text
    # Every dead-letter reason is there from the start, so alerts on increase() see the first.
    for reason in DEAD_LETTER_REASONS:
        assert f'engage_dlq_events_total{{reason="{reason}"}} 0.0' in page.text
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=page.content, capture_output=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_stopped_broker_is_503_then_the_same_delivery_is_accepted(
    connector: Running, kafka_broker: Any
) -> None:
    raw = sample_bytes("classic-customer-message.json")
    assert (await connector.deliver(sample_bytes("classic-auto-welcome.json"))).status_code == 200
    await asyncio.to_thread(kafka_broker.stop)
    try:
        refused = await connector.deliver(raw)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await connector.client.get("/readyz")).status_code == 503
    finally:
        await asyncio.to_thread(kafka_broker.start)

    async def ready() -> bool:
        return (await connector.client.get("/readyz")).status_code == 200

    await eventually(ready, 60, "the connector to see the broker again")

    async def accepted() -> bool:  # Engage redelivers until it gets a 200
        return (await connector.deliver(raw)).status_code == 200

    await eventually(accepted, 60, "the redelivery to be accepted")
    records = await read_all(connector.bootstrap, connector.settings.topic)
    ids = {decode_event(v).event_id for _, v in records}
    assert "b3e1c9d27a4f4f1e8d0c5a6b7e8f9012" in ids
    assert connector.metric("engage_webhook_requests_total", endpoint="engage", code="503") >= 1


class Unreachable:
    async def publish(self, messages: Any, *, within_seconds: float) -> None:
        raise AssertionError("nothing may be published")

    async def ready(self) -> bool:
        return False


@pytest.mark.filterwarnings("ignore")
def test_refuses_to_start_without_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    open_settings = Settings(webhook_secret=None)
    with pytest.raises(SettingsError, match="ENGAGE_WEBHOOK_SECRET"):
        create_app(open_settings, Unreachable())
    assert main(open_settings, []) == 2
    assert "ENGAGE_ALLOW_UNAUTHENTICATED=1" in capsys.readouterr().err
    # explicitly allowed: it builds
    create_app(replace(open_settings, allow_unauthenticated=True), Unreachable())


class Recording:
    """Stands in for Kafka only where authentication is under test (no broker involved)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def publish(self, messages: Any, *, within_seconds: float) -> None:
        self.messages.extend(messages)

    async def ready(self) -> bool:
        return True


async def serve_app(settings: Settings, publisher: Any) -> tuple[TestServer, httpx.AsyncClient]:
    server = TestServer(create_app(settings, publisher), host="127.0.0.1")
    await server.start_server()
    return server, httpx.AsyncClient(base_url=str(server.make_url("")).rstrip("/"))


async def test_platform_endpoint_without_a_configured_token_refuses_everything() -> None:
    publisher = Recording()
    server, client = await serve_app(Settings(webhook_secret=SECRET), publisher)
    try:
        response = await client.post(
            "/webhooks/ringcentral",
            content=sample_bytes("platform-imported.json"),
            headers={"Verification-Token": ""},
        )
        assert response.status_code == 401
        assert publisher.messages == []
    finally:
        await client.aclose()
        await server.close()


async def test_explicitly_unauthenticated_connector_accepts_unsigned_deliveries() -> None:
    publisher = Recording()
    settings = Settings(webhook_secret=None, allow_unauthenticated=True)
    server, client = await serve_app(settings, publisher)
    try:
        response = await client.post(
            "/webhooks/engage", content=sample_bytes("classic-customer-message.json")
        )
        assert response.status_code == 200
        assert [m.topic for m in publisher.messages] == [settings.topic]
    finally:
        await client.aclose()
        await server.close()
