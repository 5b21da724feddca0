"""The real connector app served in-process on 127.0.0.1, with its HTTP limits, over a
publisher test double that keeps what it was given (for tests that are about HTTP, not Kafka).

``MemoryPublisher`` acknowledges at once (or raises ``PublishError`` when ``failing``);
``running_connector(settings)`` serves ``create_app`` through ``connector_runner`` on a free
port and yields a ``Served`` with its URL, metrics and publisher.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from connectors.metrics import ConnectorMetrics
from connectors.publisher import Message, PublishError
from connectors.server import connector_runner, create_app
from engage_streams.settings import Settings


@dataclass
class MemoryPublisher:
    """Keeps every message it is asked to publish; ``failing`` makes it refuse (503)."""

    messages: list[Message] = field(default_factory=list)
    failing: bool = False

    async def publish(self, messages: Sequence[Message], *, within_seconds: float) -> None:
        if self.failing:
            raise PublishError("the test double refuses")
        self.messages.extend(messages)

    async def ready(self) -> bool:
        return not self.failing

    async def stop(self) -> None:
        return None


@dataclass
class Served:
    url: str
    host: str
    port: int
    metrics: ConnectorMetrics
    publisher: MemoryPublisher

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def rejected(self, reason: str) -> float:
        return self.metric("engage_webhook_rejected_total", reason=reason)


@asynccontextmanager
async def running_connector(
    settings: Settings, publisher: MemoryPublisher | None = None
) -> AsyncIterator[Served]:
    publisher = publisher or MemoryPublisher()
    metrics = ConnectorMetrics()
    runner = connector_runner(settings, create_app(settings, publisher, metrics=metrics))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield Served(f"http://127.0.0.1:{port}", "127.0.0.1", port, metrics, publisher)
    finally:
        await runner.cleanup()
