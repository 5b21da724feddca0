"""A real connector process and an Engage-like sender, for tests that stream live traffic.

``ConnectorProcess`` runs ``engage-streams connector`` in a child process (``kill9`` for
fault tests). ``EngageSender`` delivers a fixed list of canonical events to it as classic
webhooks at a steady rate from a background thread, retrying every failed delivery (503,
connection refused, reset mid-request) with back-off as Engage does, and records which
events the connector acknowledged with 200. ``expected_contents`` is what the workers'
``engage_contents_total`` must then say: each acknowledged, non-automatic content once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import httpx
import msgspec

from devkit.ports import free_port
from engage_streams.record import ContentEvent
from engage_streams.settings import Settings
from simulator.deliveries import classic_envelope
from simulator.scenario import ScenarioConfig, generate
from tests.plugins.processes import CliProcess

SECRET = "fault-secret"
ContentKey = tuple[str, str, str]  # (source, source_type, direction) as exported


@dataclass
class ConnectorProcess(CliProcess):
    command: ClassVar[str] = "connector"

    @classmethod
    def of(cls, base: Settings, log_path: Path) -> ConnectorProcess:
        settings = replace(base, connector_port=free_port(), webhook_secret=SECRET)
        return cls(settings, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.connector_port}"

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


def recent_events(seed: int, threads: int, agents: int = 12) -> list[ContentEvent]:
    """A scenario whose times lie in the last hour (so nothing in it is idle or stale)."""
    span = 3600.0
    config = ScenarioConfig(
        seed=seed, threads=threads, agents=agents, base_time=time.time() - span, span_seconds=span
    )
    return generate(config)


def deliveries_of(
    events: Sequence[ContentEvent], per_delivery: int = 2
) -> list[list[ContentEvent]]:
    return [list(events[i : i + per_delivery]) for i in range(0, len(events), per_delivery)]


@dataclass
class SenderReport:
    """What the sender saw; read it while the sender runs (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: list[ContentEvent] = field(default_factory=list)
    delivered: int = 0
    attempts: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # "503", "ConnectError", ...
    given_up: int = 0
    in_flight: int = 0  # requests sent and not answered yet

    def acknowledged_events(self) -> list[ContentEvent]:
        with self.lock:
            return list(self.acknowledged)


class EngageSender:
    """Delivers ``deliveries`` to ``url`` at ``rate`` per second from a background thread.

    Every delivery is retried until the connector answers 200 (or ``give_up_after``
    seconds): 503 and connection errors with back-off (0.5 s doubling, at most 4 s), like
    Engage's redelivery. At most ``concurrency`` requests are in flight.
    """

    def __init__(
        self,
        url: str,
        deliveries: Sequence[Sequence[ContentEvent]],
        *,
        rate: float = 25.0,
        concurrency: int = 32,
        give_up_after: float = 240.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.deliveries = deliveries
        self.rate = rate
        self.concurrency = concurrency
        self.give_up_after = give_up_after
        self.report = SenderReport()
        self._thread = threading.Thread(target=self._run, name="engage-sender", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the sender did not finish in time"

    @property
    def progress(self) -> float:
        """Share of the deliveries acknowledged so far."""
        with self.report.lock:
            return self.report.delivered / max(1, len(self.deliveries))

    def _run(self) -> None:
        asyncio.run(self._send_all())

    async def _send_all(self) -> None:
        limit = asyncio.Semaphore(self.concurrency)
        headers = {"Content-Type": "application/json", "X-Dimelo-Secret": SECRET}
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with httpx.AsyncClient(base_url=self.url, timeout=timeout) as client:
            tasks = []
            for number, events in enumerate(self.deliveries):
                await asyncio.sleep(max(0.0, self._started + number / self.rate - time.monotonic()))
                await limit.acquire()
                body = classic_envelope(events, delivery_id=f"fault-{number}")
                task = asyncio.create_task(self._deliver(client, headers, body, events))
                task.add_done_callback(lambda _: limit.release())
                tasks.append(task)
            await asyncio.gather(*tasks)

    async def _deliver(
        self,
        client: httpx.AsyncClient,
        headers: dict[str, str],
        body: bytes,
        events: Sequence[ContentEvent],
    ) -> None:
        report = self.report
        first = time.monotonic()
        for attempt in range(10_000):
            with report.lock:
                report.attempts += 1
                report.in_flight += 1
            try:
                response = await client.post("/webhooks/engage", content=body, headers=headers)
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            else:
                if response.status_code == 200:
                    with report.lock:
                        report.delivered += 1
                        report.acknowledged.extend(events)
                    return
                outcome = str(response.status_code)
                if response.status_code in (400, 401, 403, 413):
                    raise AssertionError(f"delivery refused {outcome}: {response.text}")
            finally:
                with report.lock:
                    report.in_flight -= 1
            with report.lock:
                report.refused[outcome] += 1
            if time.monotonic() - first > self.give_up_after:
                break
            await asyncio.sleep(min(4.0, 0.5 * 2**attempt))
        with report.lock:
            report.given_up += 1


def expected_contents(events: Iterable[ContentEvent]) -> Counter[ContentKey]:
    """``engage_contents_total`` of these events: each non-automatic content once."""
    seen: set[str] = set()
    out: Counter[ContentKey] = Counter()
    for event in events:
        if event.automatic or event.content_id in seen:
            continue
        seen.add(event.content_id)
        out[(event.source_id or "", event.source_type or "", event.direction)] += 1
    return out


def decode_events(raw: Iterable[bytes]) -> list[ContentEvent]:
    decoder = msgspec.json.Decoder(ContentEvent)
    return [decoder.decode(value) for value in raw]
