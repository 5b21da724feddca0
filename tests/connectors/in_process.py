"""The real connector app served in-process on 127.0.0.1, with its HTTP limits, over a
publisher test double that keeps what it was given (for tests that are about HTTP, not Kafka).

``MemoryPublisher`` acknowledges at once (or raises ``PublishError`` when ``failing``);
``running_connector(settings)`` serves ``create_app`` through ``connector_runner`` on a free
port and yields a ``Served`` with its URL, metrics and publisher; ``connector_in_thread`` does
the same on a background event loop, for blocking clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.metrics import ConnectorMetrics
from connectors.publisher import Message, Publisher, PublishError
from connectors.server import connector_runner, create_app
from engage_streams.settings import Settings


@dataclass
class MemoryPublisher:
    """Keeps every message it is asked to publish; ``failing`` makes it refuse (503)."""

    messages: list[Message] = field(default_factory=list, repr=False)
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
    publisher: MemoryPublisher  # or another Publisher (see connector_in_thread)

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


@contextmanager
def connector_in_thread(
    settings: Settings,
    publisher: MemoryPublisher | None = None,
    start_publisher: Callable[[], Awaitable[Publisher]] | None = None,
) -> Iterator[Served]:
    """``running_connector`` on its own event loop thread, for blocking clients (hypothesis
    tests call it with httpx). ``start_publisher`` starts another publisher (a real Kafka one)
    on that loop instead of the double; it is stopped at the end."""
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[Served] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def run() -> None:
        chosen: Any = await start_publisher() if start_publisher else publisher
        try:
            async with running_connector(settings, chosen) as served:
                started.set_result(served)
                await stop.wait()
        except BaseException as error:  # surfaced to the caller by started.result()
            if not started.done():
                started.set_exception(error)
            raise
        finally:
            if start_publisher is not None:
                await chosen.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    try:
        yield started.result(timeout=30)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
