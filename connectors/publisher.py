"""Getting a delivery's records into Kafka, durably, within a deadline.

``KafkaPublisher`` wraps one aiokafka producer (acks=all, idempotent, bounded request
timeout). ``publish`` hands every message to the producer first and then waits for all the
acknowledgements together (never one send-and-wait after another), so concurrent deliveries
share produce requests. The HTTP layer depends only on the ``Publisher`` protocol, so tests and
the benchmark can swap the producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger("connectors.publisher")


class Message(NamedTuple):
    """One Kafka record to write."""

    topic: str
    key: bytes | None
    value: bytes


class PublishError(Exception):
    """Kafka did not acknowledge every message in time (the delivery must be retried)."""


class Publisher(Protocol):
    """What the webhook server needs from Kafka."""

    async def publish(self, messages: Sequence[Message], *, within_seconds: float) -> None:
        """Return once Kafka acknowledged every message; raise ``PublishError`` otherwise."""

    async def ready(self) -> bool:
        """True when the producer runs and the brokers answer a metadata request."""


class KafkaPublisher:
    """The real publisher: one idempotent aiokafka producer, acks from all in-sync replicas."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        request_timeout_seconds: float = 15.0,
        linger_ms: int = 0,
        client_id: str = "engage-streams-connector",
    ) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            # aiokafka retries retriable errors until a batch is this old, then fails it.
            request_timeout_ms=int(request_timeout_seconds * 1000),
            retry_backoff_ms=100,
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
        )
        self._started = False

    async def start(self) -> None:
        """Connect to the brokers (raises ``KafkaError`` when none answers)."""
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        """Flush what is pending and close."""
        if self._started:
            self._started = False
            await self._producer.stop()

    async def publish(self, messages: Sequence[Message], *, within_seconds: float) -> None:
        if not self._started:
            raise PublishError("producer is not running")
        acks: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(within_seconds):
                for message in messages:
                    acks.append(
                        await self._producer.send(message.topic, message.value, key=message.key)
                    )
                if acks:
                    # asyncio.wait (not gather): a timeout must not cancel the sends, they may
                    # still land and the redelivery is deduplicated downstream by event id.
                    await asyncio.wait(acks)
        except TimeoutError:
            raise PublishError(f"Kafka did not acknowledge within {within_seconds:g} s") from None
        except KafkaError as error:
            raise PublishError(f"Kafka refused the records: {type(error).__name__}") from None
        for ack in acks:
            failure = ack.exception()
            if failure is not None:
                raise PublishError(f"Kafka refused the records: {type(failure).__name__}")

    async def ready(self) -> bool:
        if not self._started:
            return False
        try:
            async with asyncio.timeout(2.0):
                await self._producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError):
            return False
        return True
