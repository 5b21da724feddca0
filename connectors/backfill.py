"""``engage-streams backfill``: past contents from the Engage REST API, published like webhooks.

Pages ``GET /contents`` oldest first (``order:created_at.asc``, optional ``--q`` filter such
as ``source:<id>``), turns each content into a canonical record with origin ``backfill``
(``envelopes.backfill_record``) and publishes them with the connector's publisher (acks=all,
idempotent), a page at a time; contents that cannot become records go to the DLQ with their
reason, like webhook events. Needs ``ENGAGE_API_URL`` and ``ENGAGE_API_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from connectors.envelopes import DeadLetter, backfill_record, dead_letter_value
from connectors.publisher import KafkaPublisher, Message, Publisher, PublishError
from engage_streams.record import encode_event
from engage_streams.rest.classic import MAX_PAGE_SIZE, EngageApiError, EngageRestClient
from engage_streams.settings import Settings
from engage_streams.topics import TopicError, ensure_topics

log = logging.getLogger("connectors.backfill")


@dataclass
class BackfillReport:
    """How many contents were published as records, and how many went to the DLQ."""

    published: int = 0
    dead_lettered: int = 0


async def backfill(
    settings: Settings,
    api: EngageRestClient,
    publisher: Publisher,
    *,
    q: str | None = None,
    limit: int | None = None,
) -> BackfillReport:
    """Publish the contents matching ``q`` (oldest first), at most ``limit`` of them."""
    report = BackfillReport()
    page: list[Message] = []
    seen = 0
    async for content in api.contents(q, oldest_first=True):
        if limit is not None and seen >= limit:
            break
        seen += 1
        received_at = datetime.now(UTC)
        item = backfill_record(content, received_at=received_at, forward_body=settings.forward_body)
        if isinstance(item, DeadLetter):
            value = dead_letter_value(item, endpoint="backfill", received_at=received_at)
            page.append(Message(settings.dlq_topic, None, value))
            report.dead_lettered += 1
            log.info("event=dead_letter endpoint=backfill reason=%s", item.reason)
        else:
            page.append(Message(settings.topic, item.thread_id.encode(), encode_event(item)))
            report.published += 1
        if len(page) >= MAX_PAGE_SIZE:
            await publisher.publish(page, within_seconds=settings.publish_timeout_seconds * 4)
            page = []
    if page:
        await publisher.publish(page, within_seconds=settings.publish_timeout_seconds * 4)
    return report


def main(settings: Settings, args: list[str]) -> int:
    """``engage-streams backfill [--q FILTER] [--limit N] [--api-url URL]``."""
    parser = argparse.ArgumentParser(
        prog="engage-streams backfill",
        description="Publish past contents from the Engage REST API (oldest first) as "
        "canonical records with origin 'backfill'. Token from ENGAGE_API_TOKEN.",
    )
    parser.add_argument("--api-url", help="e.g. https://ACCOUNT.api.digital.ringcentral.com/1.0")
    parser.add_argument("--q", help="Engage search filter, e.g. 'source:ID' or 'thread:ID'")
    parser.add_argument("--limit", type=int, help="publish at most this many contents")
    parsed = parser.parse_args(args)
    if parsed.api_url:
        settings = replace(settings, engage_api_url=parsed.api_url)
    if not settings.engage_api_url or not settings.engage_api_token:
        print(
            "engage-streams backfill: set ENGAGE_API_URL (or --api-url) and ENGAGE_API_TOKEN "
            "(an Engage Digital API access token)",
            file=sys.stderr,
        )
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="level=%(levelname)s %(message)s")
    return asyncio.run(_run(settings, parsed.q, parsed.limit))


async def _run(settings: Settings, q: str | None, limit: int | None) -> int:
    assert settings.engage_api_url is not None and settings.engage_api_token is not None
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers)
    try:
        await publisher.start()
        await ensure_topics(settings)
        async with EngageRestClient(settings.engage_api_url, settings.engage_api_token) as api:
            report = await backfill(settings, api, publisher, q=q, limit=limit)
    except (KafkaError, TopicError, PublishError) as error:
        print(f"engage-streams backfill: Kafka: {error} (check KAFKA_BOOTSTRAP_SERVERS)",
              file=sys.stderr)  # fmt: skip
        return 1
    except EngageApiError as error:
        print(f"engage-streams backfill: Engage API: {error}", file=sys.stderr)
        return 1
    finally:
        await publisher.stop()
    print(f"backfill: {report.published} records published, {report.dead_lettered} to the DLQ")
    return 0
