"""The product's Kafka topics: created at start-up when missing (the broker creates none itself).

Used by the connector, the worker, backfill and the development broker alike, so every part
creates a topic the same way, with the partition counts and replication of ``Settings``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from engage_streams.settings import Settings


class TopicError(RuntimeError):
    """A topic could not be created or did not appear in time; the message says which."""


async def create_topics(
    bootstrap_servers: str,
    partitions_by_topic: Mapping[str, int],
    *,
    replication: int = 1,
    timeout_seconds: float = 30.0,
) -> list[str]:
    """Create the missing topics and wait until the broker lists them; returns those created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_seconds * 1000)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, replication)
            for name, partitions in partitions_by_topic.items()
            if name not in existing
        ]
        created: list[str] = []
        if wanted:
            response = await admin.create_topics(wanted)
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                error = for_code(code) if code else None
                if error is None:
                    created.append(name)
                elif error is not TopicAlreadyExistsError:
                    raise TopicError(f"could not create topic {name}: {error.__name__}")
        deadline = time.monotonic() + timeout_seconds
        while not set(partitions_by_topic) <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TopicError(f"topics {sorted(partitions_by_topic)} did not appear")
            await asyncio.sleep(0.1)
        return created
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, extra: Mapping[str, int] | None = None) -> list[str]:
    """Create the product's topics (events and DLQ, plus ``extra``) when they are missing.

    Used at connector and worker start-up: the broker never creates topics by itself.
    """
    wanted = {settings.topic: settings.topic_partitions, settings.dlq_topic: 1, **(extra or {})}
    return await create_topics(
        settings.kafka_bootstrap_servers, wanted, replication=settings.topic_replication
    )
