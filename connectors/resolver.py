"""Resolving thin platform notifications, the Kafka way: a topic of them and a resolver.

A platform notification that only names its content (``body.resource.id``) cannot become a
canonical record at once. The webhook does not fetch it inside the request (the platform
wants an answer within seconds, and its API may be down): it writes the notification to
``ENGAGE_UNRESOLVED_TOPIC`` (key: content id) and answers 200 once Kafka acknowledged it.

``Resolver`` runs inside every ``engage-streams connector`` (nothing else to deploy). The
connectors consume that topic in one consumer group (``ENGAGE_RESOLVER_GROUP``), so each
partition -- each notification -- is resolved by one connector at a time. For a batch, it
fetches every content (``ContentLookup.get_content``: ``GET
/cx/social-messaging/v1/contents/{id}``), retrying with exponential backoff
(``ENGAGE_RESOLVER_ATTEMPTS``, ``..._INITIAL_DELAY_SECONDS``, ``..._MAX_DELAY_SECONDS``),
publishes the record the full notification would have given (``envelopes.resolved_record``)
or, after the last attempt, a dead letter ``unresolved_content`` that carries the whole
notification (so ``redrive_unresolved`` can queue it again), and commits the batch's offsets
only after Kafka acknowledged all of it.

Exactly once in normal operation: offsets are committed after the outputs are acknowledged;
when the group rebalances, the revocation waits for the batch in hand to be committed (during
an API outage that can hold the rebalance for the batch's retries: ``rebalance_timeout_ms``
allows for it), and a batch fetched across a revocation is dropped unprocessed (the
partition's next owner reads it from the committed offset; when that owner is this connector
again, it seeks back to the dropped records first). A stop during retries commits
each partition up to its first notification not settled yet. A crash between publishing and
committing re-resolves those notifications (at least once): the copies carry the same event
id and content id, which the workers dedupe.

Without a platform API (``RINGCENTRAL_CLIENT_ID``/``_SECRET``/``_JWT`` unset) thin
notifications are still queued, never dropped: the resolver says it cannot run
(``engage_resolver_ready 0`` and a log line) and exports the group's lag as pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from connectors.envelopes import (
    INVALID_FIELD,
    UNRESOLVED_CONTENT,
    DeadLetter,
    EnvelopeError,
    QueuedNotification,
    dead_letter_value,
    read_unresolved,
    resolved_record,
)
from connectors.metrics import ConnectorMetrics
from connectors.publisher import Message, Publisher, PublishError
from engage_streams.record import encode_event
from engage_streams.settings import Settings
from engage_streams.timefmt import utc_iso

log = logging.getLogger("connectors.resolver")

#: How often the pending gauge is refreshed from Kafka (group lag), at most.
PENDING_REFRESH_SECONDS: Final = 2.0


class ContentLookup(Protocol):
    """Fetches one content by id (``engage_streams.rest.platform.PlatformClient`` is one).

    Raises on failure (``PlatformNotFound`` for a 404, ``PlatformApiError`` otherwise): the
    resolver retries every failure, since a content just imported may not be readable yet.
    """

    async def get_content(self, content_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and exponential backoff between them (seconds)."""

    attempts: int = 8
    initial_delay: float = 1.0
    max_delay: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            attempts=max(1, settings.resolver_attempts),
            initial_delay=max(0.0, settings.resolver_initial_delay_seconds),
            max_delay=max(0.0, settings.resolver_max_delay_seconds),
        )

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt (1-based)."""
        return float(min(self.max_delay, self.initial_delay * 2 ** (failures - 1)))


class Resolver:
    """The resolver of one connector process (see the module docstring).

    >>> # resolver = Resolver(settings, platform_client, publisher, metrics)
    >>> # await resolver.run(stop)   # until stop is set
    """

    def __init__(
        self,
        settings: Settings,
        lookup: ContentLookup | None,
        publisher: Publisher,
        metrics: ConnectorMetrics,
        *,
        agent_ids: Mapping[str, str] | None = None,
        source_types: Mapping[str, str] | None = None,
        client_id: str = "engage-streams-resolver",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.lookup = lookup
        self.publisher = publisher
        self.metrics = metrics
        self.agent_ids: Mapping[str, str] = agent_ids if agent_ids is not None else {}
        self.source_types: Mapping[str, str] = source_types if source_types is not None else {}
        self.policy = RetryPolicy.from_settings(settings)
        self._client_id = client_id
        self._sleep = sleep
        self._batch_lock = asyncio.Lock()
        self._revocations = 0
        self._pending_checked = 0.0

    async def run_supervised(self, stop: asyncio.Event, *, restart_seconds: float = 5.0) -> None:
        """``run`` until ``stop``, starting again after Kafka errors (broker restarts)."""
        while not stop.is_set():
            try:
                await self.run(stop)
            except (KafkaError, OSError) as error:
                self.metrics.resolver_ready.set(0)
                log.warning(
                    "event=resolver_restarting error=%s wait=%.0f",
                    type(error).__name__,
                    restart_seconds,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), restart_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Resolve until ``stop`` is set; without a lookup, only report the pending count."""
        if self.lookup is None:
            self.metrics.resolver_ready.set(0)
            log.warning(
                "event=resolver_cannot_run reason=platform_api_not_configured topic=%s "
                "(thin notifications stay queued; set RINGCENTRAL_CLIENT_ID, "
                "RINGCENTRAL_CLIENT_SECRET and RINGCENTRAL_JWT to resolve them)",
                self.settings.unresolved_topic,
            )
            await self._report_pending_only(stop)
            return
        consumer = self._consumer()
        consumer.subscribe([self.settings.unresolved_topic], listener=_WaitForBatch(self))
        await consumer.start()
        self.metrics.resolver_ready.set(1)
        log.info(
            "event=resolver_started topic=%s group=%s",
            self.settings.unresolved_topic,
            self.settings.resolver_group,
        )
        try:
            while not stop.is_set():
                await self._resolve_next_batch(consumer, stop)
        finally:
            self.metrics.resolver_ready.set(0)
            self.metrics.resolver_partitions.set(0)
            await consumer.stop()

    # -- one batch ---------------------------------------------------------------------

    async def _resolve_next_batch(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        revocations = self._revocations
        batch = await consumer.getmany(
            timeout_ms=500, max_records=max(1, self.settings.resolver_concurrency)
        )
        if batch:
            async with self._batch_lock:
                if revocations != self._revocations:
                    # A rebalance happened while these were fetched: whoever owns the
                    # partitions now reads them again from the committed offsets -- this
                    # consumer too, when it got a partition back (the fetch moved past them).
                    _rewind(consumer, batch)
                    return
                records = [record for part in batch.values() for record in part]
                limit = asyncio.Semaphore(max(1, self.settings.resolver_concurrency))
                done = await asyncio.gather(*(self._resolve_one(r, limit, stop) for r in records))
                settled = {
                    (r.partition, r.offset) for r, ok in zip(records, done, strict=True) if ok
                }
                commits = _settled_offsets(batch, settled)
                if commits:
                    await consumer.commit(commits)
        await self._refresh_pending(consumer)

    async def _resolve_one(
        self, record: ConsumerRecord[bytes, bytes], limit: asyncio.Semaphore, stop: asyncio.Event
    ) -> bool:
        """Settle one notification; False when stopping cut it short (left for the next
        owner of the partition)."""
        async with limit:
            settled = await self._resolution(record, stop)
            if settled is None:
                return False
            message, dead_reason = settled
            try:
                await self._publish(message, stop)
            except PublishError:
                return False  # stopping while Kafka refuses: not settled
            if dead_reason is None:
                self.metrics.unresolved.labels("resolved").inc()
            else:
                self.metrics.unresolved.labels("dead_letter").inc()
                self.metrics.dead_letters.labels(dead_reason).inc()
            return True

    async def _resolution(
        self, record: ConsumerRecord[bytes, bytes], stop: asyncio.Event
    ) -> tuple[Message, str | None] | None:
        """The message that settles ``record``: a record (reason ``None``) or a dead letter
        (with its reason); ``None`` when stopping cut the retries short."""
        assert self.lookup is not None
        settings = self.settings
        value = record.value or b""
        try:
            queued = read_unresolved(value)
        except EnvelopeError as error:
            log.warning(
                "event=unresolved_unreadable partition=%d offset=%d error=%r",
                record.partition,
                record.offset,
                str(error),
            )
            unreadable = DeadLetter(INVALID_FIELD, {"unresolved_record": value.decode("latin-1")})
            dead = dead_letter_value(
                unreadable, endpoint="ringcentral", received_at=datetime.now(UTC)
            )
            return Message(settings.dlq_topic, record.key, dead), INVALID_FIELD
        failures = 0
        last_error = ""
        while True:
            try:
                content = await self.lookup.get_content(queued.content_id)
                break
            except Exception as error:  # every lookup failure is retried, then dead-lettered
                failures += 1
                last_error = _describe(error)
            if stop.is_set():
                return None
            if failures >= self.policy.attempts:
                log.warning(
                    "event=unresolved_dead_letter attempts=%d last_error=%s",
                    failures,
                    last_error,
                )
                return self._dead_letter(queued, failures, last_error), UNRESOLVED_CONTENT
            self.metrics.unresolved.labels("retried").inc()
            await self._sleep(self.policy.delay(failures))
        item = resolved_record(
            queued.notification,
            content,
            received_at=queued.received_at,
            forward_body=settings.forward_body,
            agent_ids=self.agent_ids,
            source_types=self.source_types,
        )
        if isinstance(item, DeadLetter):
            value = dead_letter_value(item, endpoint="ringcentral", received_at=queued.received_at)
            return Message(settings.dlq_topic, queued.content_id.encode(), value), item.reason
        return Message(settings.topic, item.thread_id.encode(), encode_event(item)), None

    def _dead_letter(self, queued: QueuedNotification, attempts: int, last_error: str) -> Message:
        value = dead_letter_value(
            DeadLetter(UNRESOLVED_CONTENT, queued.notification),
            endpoint="ringcentral",
            received_at=queued.received_at,
            detail={"content_id": queued.content_id, "attempts": attempts, "error": last_error},
        )
        return Message(self.settings.dlq_topic, queued.content_id.encode(), value)

    async def _publish(self, message: Message, stop: asyncio.Event) -> None:
        """Publish until Kafka acknowledges (the offset is not committed before)."""
        failures = 0
        while True:
            try:
                await self.publisher.publish(
                    [message], within_seconds=self.settings.publish_timeout_seconds
                )
                return
            except PublishError as error:
                failures += 1
                if stop.is_set():
                    raise
                log.warning("event=resolver_publish_failed error=%r", str(error))
                await self._sleep(self.policy.delay(min(failures, 6)))

    # -- pending -----------------------------------------------------------------------

    def on_revoke(self) -> None:
        self._revocations += 1

    async def _refresh_pending(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._pending_checked < PENDING_REFRESH_SECONDS:
            return
        self._pending_checked = now
        partitions = sorted(consumer.assignment())
        try:
            self.metrics.resolver_pending.set(await _lag(consumer, partitions))
        except KafkaError as error:
            log.info("event=resolver_lag_unknown error=%s", type(error).__name__)

    async def _report_pending_only(self, stop: asyncio.Event) -> None:
        """Export the group's lag over every partition (nothing consumes them here)."""
        consumer = self._consumer()
        await consumer.start()
        partitions: list[TopicPartition] = []
        try:
            while not stop.is_set():
                try:
                    if not partitions:
                        partitions = await topic_partitions(
                            self.settings.kafka_bootstrap_servers, self.settings.unresolved_topic
                        )
                    self.metrics.resolver_pending.set(await _lag(consumer, partitions))
                except KafkaError as error:
                    log.info("event=resolver_lag_unknown error=%s", type(error).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PENDING_REFRESH_SECONDS)
        finally:
            await consumer.stop()

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.resolver_group,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A batch may wait out the backoff of its slowest content before it is
            # committed; the rebalance waits for that (see _WaitForBatch).
            max_poll_interval_ms=max(300_000, int(self._worst_batch_seconds() * 2000)),
            rebalance_timeout_ms=max(60_000, int(self._worst_batch_seconds() * 1000) + 30_000),
        )

    def _worst_batch_seconds(self) -> float:
        waits = sum(self.policy.delay(n) for n in range(1, self.policy.attempts))
        return waits + self.policy.attempts * 30.0  # a lookup may take up to ~30 s


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Revocation waits until the batch in hand is committed, and marks the batch in flight
    (if any is being fetched) stale."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._resolver.on_revoke()
        async with self._resolver._batch_lock:
            self._resolver.metrics.resolver_partitions.set(0)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._resolver.metrics.resolver_partitions.set(len(assigned))
        log.info("event=resolver_assigned partitions=%d", len(assigned))


def _rewind(
    consumer: AIOKafkaConsumer,
    batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
) -> None:
    """Read a dropped batch again: each partition still assigned goes back to its first
    record in the batch (the others are read by their new owners)."""
    owned = consumer.assignment()
    for tp, records in batch.items():
        if records and tp in owned:
            consumer.seek(tp, records[0].offset)


def _settled_offsets(
    batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
    settled: set[tuple[int, int]],
) -> dict[TopicPartition, int]:
    """Per partition, the offset to commit: just after the longest run of settled records
    from the batch's start (a record cut short, and all after it, are read again)."""
    commits: dict[TopicPartition, int] = {}
    for tp, records in batch.items():
        upto: int | None = None
        for record in records:
            if (record.partition, record.offset) not in settled:
                break
            upto = record.offset + 1
        if upto is not None:
            commits[tp] = upto
    return commits


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (none when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code") != 0:
        return []
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def _lag(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> int:
    """Notifications written but not committed by the group, over ``partitions``."""
    if not partitions:
        return 0
    ends = await consumer.end_offsets(list(partitions))
    total = 0
    for tp in partitions:
        committed = await consumer.committed(tp)
        total += max(0, ends.get(tp, 0) - (committed or 0))
    return total


def _describe(error: Exception) -> str:
    """A short, secret-free description of a lookup failure (for the DLQ and the logs)."""
    status = getattr(error, "status", None)
    name = type(error).__name__
    return f"{name} status={status}" if status is not None else name


# -- re-drive -------------------------------------------------------------------------------


async def redrive_unresolved(settings: Settings, *, timeout_seconds: float = 30.0) -> int:
    """Queue the ``unresolved_content`` dead letters again on the unresolved topic.

    Reads the DLQ in its own consumer group (``<ENGAGE_RESOLVER_GROUP>-redrive``) up to the
    end offsets at the start, so a second run re-drives only dead letters written since.
    Returns how many notifications were queued again. Other dead letters are skipped.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.resolver_group}-redrive",
        client_id="engage-streams-redrive",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    queued = 0
    try:
        await consumer.start()
        await producer.start()
        tps = await topic_partitions(settings.kafka_bootstrap_servers, settings.dlq_topic)
        if not tps:
            return 0
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        deadline = time.monotonic() + timeout_seconds
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {settings.dlq_topic} to its end")
            batch = await consumer.getmany(timeout_ms=500)
            acks = []
            for records in batch.values():
                for record in records:
                    if record.offset >= ends[TopicPartition(record.topic, record.partition)]:
                        continue
                    again = _redrive_value(record.value or b"")
                    if again is None:
                        continue
                    key, value = again
                    acks.append(await producer.send(settings.unresolved_topic, value, key=key))
            await asyncio.gather(*acks)
            queued += len(acks)
            commits = {
                TopicPartition(settings.dlq_topic, tp.partition): min(
                    await consumer.position(tp), ends[tp]
                )
                for tp in tps
            }
            await consumer.commit(commits)
    finally:
        await producer.stop()
        await consumer.stop()
    log.info("event=redrive_done queued=%d topic=%s", queued, settings.unresolved_topic)
    return queued


def _redrive_value(raw: bytes) -> tuple[bytes, bytes] | None:
    """(key, unresolved-notification value) of an ``unresolved_content`` dead letter."""
    try:
        dead = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(dead, dict) or dead.get("reason") != UNRESOLVED_CONTENT:
        return None
    notification = dead.get("event")
    content_id = dead.get("content_id")
    received_at = dead.get("received_at")
    if not isinstance(notification, dict) or not isinstance(content_id, str):
        return None
    value = orjson.dumps(
        {
            "schema": 1,
            "content_id": content_id,
            "received_at": received_at
            if isinstance(received_at, str)
            else utc_iso(_now(), timespec="auto"),
            "notification": notification,
        }
    )
    return content_id.encode(), value


def _now() -> datetime:
    return datetime.now(UTC)
