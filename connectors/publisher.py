"""Getting a delivery's records into Kafka, durably, within a deadline.

``KafkaPublisher`` wraps one aiokafka producer (acks=all, idempotent, bounded request
timeout). ``publish`` hands every message to the producer first and then waits for all the
acknowledgements together (never one send-and-wait after another), so concurrent deliveries
share produce requests. When the broker has lost track of the producer (after a broker
restart: ``engage_streams.producers``), the delivery fails (503, Engage sends it again) and
a new producer replaces the old one in the background; ``renewals`` counts them. The HTTP
layer depends only on the ``Publisher`` protocol, so tests and the benchmark can swap the
producer.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engage_streams.partitioning import partition_for
from engage_streams.producers import close_quietly, needs_new_producer, sender_stopped

log = logging.getLogger("connectors.publisher")


def key_partitioner(
    key: bytes | None, all_partitions: list[int], available: list[int] | None
) -> int:
    """Kafka's default partitioning (``engage_streams.partitioning``) as aiokafka's hook."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[partition_for(key, len(all_partitions))]


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
    """The real publisher: one idempotent aiokafka producer, acks from all in-sync replicas,
    replaced by a new one when the broker lost track of it."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        request_timeout_seconds: float = 15.0,
        linger_ms: int = 0,
        client_id: str = "engage-streams-connector",
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        on_renewed: Callable[[], object] | None = None,
    ) -> None:
        def new_producer() -> AIOKafkaProducer:
            return AIOKafkaProducer(
                bootstrap_servers=bootstrap_servers,
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
                # aiokafka retries retriable errors until a batch is this old, then fails it.
                request_timeout_ms=int(request_timeout_seconds * 1000),
                retry_backoff_ms=100,
                # No lingering: aiokafka keeps one produce request in flight per broker, and
                # the deliveries that arrive meanwhile share the next one anyway (~22 records a
                # request at 64 senders, ~7 at 16). A 2 ms linger only added latency: at 16
                # senders it held the connector to 32-34 % of the empty handler, 45-52 % without
                # (benchmarks/connector_bench.py --concurrency 16); at 64 both gave 63-70 %.
                linger_ms=linger_ms,
                max_batch_size=256 * 1024,
                partitioner=key_partitioner,
            )

        self._new_producer = producer_factory or new_producer
        self._on_renewed = on_renewed
        self._producer = self._new_producer()
        self._started = False
        self._renewing: asyncio.Task[None] | None = None
        #: Producers replaced because the broker lost track of them (see the module docstring).
        self.renewals = 0

    async def start(self) -> None:
        """Connect to the brokers (raises ``KafkaError`` when none answers)."""
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        """Flush what is pending and close."""
        if self._renewing is not None:
            self._renewing.cancel()
            await asyncio.gather(self._renewing, return_exceptions=True)
            self._renewing = None
        if self._started:
            self._started = False
            await self._producer.stop()

    def _renew(self, broken: AIOKafkaProducer) -> None:
        """Replace ``broken`` (once, in the background) if it is still the current producer."""
        if broken is not self._producer or not self._started:
            return
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._replace(broken), name="producer-renewal")

    async def _replace(self, broken: AIOKafkaProducer) -> None:
        failures = 0
        while True:
            fresh = self._new_producer()
            try:
                await fresh.start()
                break
            except KafkaError as error:
                failures += 1
                log.warning("event=producer_renewal_failed attempt=%d error=%r", failures, error)
                await close_quietly(fresh)
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))
        self._producer = fresh
        self.renewals += 1
        if self._on_renewed is not None:
            self._on_renewed()
        log.warning("event=producer_renewed renewals=%d", self.renewals)
        await close_quietly(broken)

    async def publish(self, messages: Sequence[Message], *, within_seconds: float) -> None:
        if not self._started:
            raise PublishError("producer is not running")
        if self._renewing is not None and not self._renewing.done():
            raise PublishError("the Kafka producer is being replaced")
        producer = self._producer
        # A bare timer instead of asyncio.timeout(): the same semantics for this one await
        # chain at a fraction of the per-delivery cost (it runs for every webhook).
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(within_seconds, expire)
        send = producer.send
        try:
            acks = [await send(m.topic, m.value, key=m.key) for m in messages]
            # Cancelling an acknowledgement (on timeout) does not stop its record: it may
            # still land, and the redelivery is deduplicated downstream by event id.
            if len(acks) == 1:
                await acks[0]
            elif acks:
                await asyncio.gather(*acks)
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            raise PublishError(f"Kafka did not acknowledge within {within_seconds:g} s") from None
        except KafkaError as error:
            if needs_new_producer(error):
                self._renew(producer)
            raise PublishError(f"Kafka refused the records: {type(error).__name__}") from None
        finally:
            timer.cancel()
            if sender_stopped(producer):
                self._renew(producer)

    async def ready(self) -> bool:
        if not self._started or (self._renewing is not None and not self._renewing.done()):
            return False
        if sender_stopped(self._producer):
            self._renew(self._producer)
            return False
        try:
            async with asyncio.timeout(2.0):
                await self._producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError):
            return False
        return True
