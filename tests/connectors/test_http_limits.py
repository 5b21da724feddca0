"""The connector's HTTP limits, each provoked by a raw-socket client on 127.0.0.1.

Header size and count, header and body time, open connections, keep-alive: each refusal gets
its answer (431/408/400/503) and its ``engage_webhook_rejected_total{reason}``, and a
well-formed delivery is still accepted afterwards. The limits are settings, listed by
``engage-streams connector --help`` and in the README's settings table.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import httpx
import orjson
import pytest

from connectors.http_limits import REJECTION_REASONS, HttpLimits
from engage_streams import loops
from engage_streams.loops import EVENT_LOOPS
from engage_streams.settings import Settings, SettingsError
from tests.connectors.in_process import Served, running_connector

ROOT = Path(__file__).resolve().parents[2]
SECRET = "limits-secret-Zq81"
SETTINGS = Settings(
    webhook_secret=SECRET,
    connector_max_header_bytes=2048,
    connector_max_headers=20,
    connector_header_timeout_seconds=0.5,
    connector_body_timeout_seconds=0.5,
    connector_keepalive_timeout_seconds=1.0,
    connector_max_connections=4,
)
DELIVERY = orjson.dumps(
    {
        "id": "d-1",
        "events": [
            {
                "type": "content.imported",
                "id": "ev-1",
                "issued_at": "2026-03-02T09:15:27.412Z",
                "resource": {"id": "c-1", "metadata": {"thread_id": "t-1"}},
            }
        ],
    }
)


# pytest-asyncio's replacement (its loop-factories hook) would parametrize every async test of
# the suite; this module alone needs both loops.
pytestmark = pytest.mark.filterwarnings(
    'ignore:Overriding the "event_loop_policy" fixture is deprecated'
)


@pytest.fixture(params=EVENT_LOOPS)
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test here on each ENGAGE_EVENT_LOOP: the limits work at the transport level,
    where uvloop's classes are not asyncio's (its transports subclass none of them)."""
    return loops.policy(request.param)


def request_head(length: int, extra: str = "") -> bytes:
    return (
        "POST /webhooks/engage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Dimelo-Secret: {SECRET}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def answer_of(served: Served, *parts: bytes, pause: float = 0.0) -> tuple[int, bytes]:
    """Send ``parts`` (pausing between them) and read the answer until the server closes
    (it may close while we are still sending: that is the point of some limits)."""
    reader, writer = await asyncio.open_connection(served.host, served.port)

    async def send() -> None:
        try:
            for part in parts:
                writer.write(part)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
        except ConnectionError:
            pass

    sender = asyncio.create_task(send())
    try:
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        sender.cancel()
        writer.close()
    status = int(raw.split(b" ", 2)[1]) if raw.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0
    return status, raw


async def delivered(served: Served) -> int:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        response = await client.post(
            "/webhooks/engage", content=DELIVERY, headers={"X-Dimelo-Secret": SECRET}
        )
    return response.status_code


async def test_oversized_header_is_431_counted_and_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_connector(SETTINGS) as served:
        huge = "X-Padding: " + "a" * 4000 + "\r\n"
        status, raw = await answer_of(served, request_head(len(DELIVERY), huge) + DELIVERY)
        assert status == 431 and b"headers over the limit" in raw
        assert served.rejected("header_too_large") == 1
        many = "".join(f"X-H{i}: v\r\n" for i in range(30))
        status, _ = await answer_of(served, request_head(len(DELIVERY), many) + DELIVERY)
        assert status == 431 and served.rejected("too_many_headers") == 1
        assert await delivered(served) == 200
        assert len(served.publisher.messages) == 1
    assert SECRET not in caplog.text and "aaaaaaaa" not in caplog.text


async def test_garbage_is_400_malformed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_connector(SETTINGS) as served:
        status, raw = await answer_of(served, b"\x16\x03\x01 not http at all " + SECRET.encode())
        assert status == 400 and orjson.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]
        assert served.rejected("malformed_request") == 1
        assert await delivered(served) == 200
    assert SECRET not in caplog.text


async def test_slow_headers_are_cut_at_the_header_deadline() -> None:
    async with running_connector(SETTINGS) as served:
        head = request_head(len(DELIVERY))
        # One byte every 0.1 s: the headers would take far longer than the 0.5 s allowed.
        status, raw = await answer_of(served, *(head[i : i + 1] for i in range(60)), pause=0.1)
        assert status == 408 and b"headers too slow" in raw
        assert served.rejected("header_timeout") == 1
        assert served.publisher.messages == []
        assert await delivered(served) == 200


async def test_slow_body_is_408_and_nothing_is_published() -> None:
    async with running_connector(SETTINGS) as served:
        status, raw = await answer_of(
            served, request_head(len(DELIVERY)) + DELIVERY[:10], pause=0.0
        )
        assert status == 408 and b"body not received within" in raw
        assert served.rejected("body_timeout") == 1
        assert served.metric("engage_webhook_requests_total", endpoint="engage", code="408") == 1
        assert served.publisher.messages == []


async def test_oversized_body_is_413_and_counted() -> None:
    settings = replace(SETTINGS, max_body_bytes=100)
    async with running_connector(settings) as served:
        status, _ = await answer_of(served, request_head(5000) + b"{" * 5000)
        assert status == 413 and served.rejected("body_too_large") == 1


async def test_connections_beyond_the_limit_are_refused_then_admitted_again() -> None:
    async with running_connector(SETTINGS) as served:
        held = [await asyncio.open_connection(served.host, served.port) for _ in range(4)]
        status, raw = await answer_of(served, b"")
        assert status == 503 and b"Retry-After: 1" in raw
        assert served.rejected("too_many_connections") == 1
        for _, writer in held:
            writer.close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the closes: a delivery gets through again
            try:
                if await delivered(served) == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "connections were never released"
            await asyncio.sleep(0.05)


async def test_idle_kept_alive_connection_is_closed() -> None:
    async with running_connector(SETTINGS) as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(request_head(len(DELIVERY)) + DELIVERY)
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"}"), timeout=10)
        assert first.startswith(b"HTTP/1.1 200")
        # Then nothing: the server closes the idle connection (EOF), it does not keep it.
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        writer.close()


def test_every_reason_is_exported_from_the_start() -> None:
    from connectors.metrics import ConnectorMetrics

    text = ConnectorMetrics().exposition().decode()
    for reason in REJECTION_REASONS:
        assert f'engage_webhook_rejected_total{{reason="{reason}"}} 0.0' in text


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CONNECTOR_MAX_CONNECTIONS", "0"), ("CONNECTOR_BODY_TIMEOUT_SECONDS", "-1")],
)
def test_unusable_limit_names_the_setting(variable: str, value: str) -> None:
    settings = Settings.from_env({variable: value})
    with pytest.raises(SettingsError, match=variable):
        HttpLimits.of(settings)


LIMIT_SETTINGS = (
    "CONNECTOR_MAX_HEADER_BYTES",
    "CONNECTOR_MAX_HEADERS",
    "CONNECTOR_HEADER_TIMEOUT_SECONDS",
    "CONNECTOR_BODY_TIMEOUT_SECONDS",
    "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS",
    "CONNECTOR_MAX_CONNECTIONS",
    "ENGAGE_MAX_BODY_BYTES",
)


def test_connector_help_lists_the_limits() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "engage_streams.cli", "connector", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    ).stdout
    for variable in LIMIT_SETTINGS:
        assert re.search(rf"^\s+{variable}\s+\S+\s+\w", shown, re.MULTILINE), variable


def test_readme_settings_table_lists_every_setting() -> None:
    rows = [
        line
        for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    ]
    for f in fields(Settings):
        variable = f"`{f.metadata['env']}`"
        assert any(variable in row.split(" | ")[0] for row in rows), variable
