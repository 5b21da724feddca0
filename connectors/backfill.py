"""``engage-streams backfill``: past contents from either API, published like webhooks.

Sources (``--api``):

* ``classic``: the Engage Digital REST API (``ENGAGE_API_URL``, ``ENGAGE_API_TOKEN``),
  ``GET /contents`` oldest first (``order:created_at.asc``, optional ``--q`` filter such as
  ``source:<id>``); records from ``envelopes.backfill_record``.
* ``platform``: the RingCentral platform API (``RINGCENTRAL_*``),
  ``GET /cx/social-messaging/v1/contents`` oldest first (``+creationTime``, optional
  ``--source``/``--filter``); records from ``envelopes.platform_backfill_record``, the same
  mapping as the platform webhook, with the connector's agent ids (``connectors.agents``:
  ``ENGAGE_AGENTS_CONFIG``'s ``rc_user_id``, the classic ``GET /users`` when configured), so
  a ``creatorId`` becomes the Engage user id there too.

Either way a content becomes the canonical record the live webhook gives for it, with origin
``backfill`` and event id ``backfill:<content id>`` (so the workers' dedupe recognises it);
one that cannot goes to the DLQ with its reason. ``--since``/``--until`` bound the creation
time (``since`` inclusive, ``until`` exclusive). Records are published with the connector's
publisher (acks=all, idempotent) a page at a time, and after each acknowledged page the
checkpoint (``connectors.checkpoint``) is saved: a second run publishes nothing the first
did, an interrupted run resumes. Progress goes to stderr (``connectors.progress``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from aiokafka.errors import KafkaError

from connectors.agents import agent_ids_for
from connectors.checkpoint import BackfillCheckpoint, CheckpointError
from connectors.envelopes import (
    DeadLetter,
    backfill_record,
    dead_letter_value,
    platform_backfill_record,
)
from connectors.progress import ProgressBar
from connectors.publisher import KafkaPublisher, Message, Publisher, PublishError
from connectors.sources import source_types_for
from engage_streams.record import ContentEvent, encode_event
from engage_streams.rest.classic import EngageApiError, EngageRestClient
from engage_streams.rest.platform import PageMark, PlatformApiError, PlatformClient
from engage_streams.settings import Settings
from engage_streams.topics import TopicError, ensure_topics

log = logging.getLogger("connectors.backfill")

Api = Literal["classic", "platform"]
PAGE_SIZE: Final = 500
RecordMaker = Callable[..., ContentEvent | DeadLetter]


@dataclass
class BackfillReport:
    """How many contents were published as records, went to the DLQ, or were already done."""

    published: int = 0
    dead_lettered: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class ContentSource:
    """Contents of one API, oldest first, and how they become records."""

    api: Api
    key: str  # which backfill this is (API, address, filters): names its checkpoint
    # (since, resume page token, on_page) -> contents oldest first, from `since` on
    read: Callable[
        [datetime | None, str | None, Callable[[PageMark], None]], AsyncIterator[dict[str, Any]]
    ]
    created_field: str
    make_record: RecordMaker

    def created(self, content: Mapping[str, Any]) -> datetime | None:
        return parse_time(content.get(self.created_field))


def classic_source(api: EngageRestClient, *, base_url: str, q: str | None = None) -> ContentSource:
    """The classic API's contents (it cannot start at a time: ``since`` is applied here)."""

    def read(
        since: datetime | None, page_token: str | None, on_page: Callable[[PageMark], None]
    ) -> AsyncIterator[dict[str, Any]]:
        return api.contents(q, oldest_first=True)

    key = f"classic {base_url.rstrip('/')} q={q or ''}"
    return ContentSource("classic", key, read, "created_at", backfill_record)


def platform_source(
    platform: PlatformClient,
    *,
    server_url: str,
    filters: Mapping[str, str] | None = None,
    agent_ids: Mapping[str, str] | None = None,
    source_types: Mapping[str, str] | None = None,
) -> ContentSource:
    """The platform API's contents matching ``filters`` (``source``, ``thread``, ...);
    ``agent_ids`` (extension id -> Engage user id, ``connectors.agents``) names the agents
    and ``source_types`` (``connectors.sources``) the channels' types as the connector does."""
    chosen: dict[str, Any] = dict(filters or {})  # query parameters, never since/until

    async def read(
        since: datetime | None, page_token: str | None, on_page: Callable[[PageMark], None]
    ) -> AsyncIterator[dict[str, Any]]:
        listing = {"since": since, "order_by": "+creationTime", "per_page": 1000, **chosen}
        started = False
        try:
            async for content in platform.list_contents(
                page_token=page_token, on_page=on_page, **listing
            ):
                started = True
                yield content
        except PlatformApiError as error:
            if page_token is None or started or error.status not in (400, 404, 422):
                raise
            # An old page token the platform no longer takes: page from the start instead.
            log.warning("event=backfill_page_token_refused status=%s", error.status)
            async for content in platform.list_contents(on_page=on_page, **listing):
                yield content

    shown = ",".join(f"{k}={v}" for k, v in sorted(chosen.items()))
    key = f"platform {server_url.rstrip('/')} {shown}".rstrip()
    make_record = functools.partial(
        platform_backfill_record,
        agent_ids=dict(agent_ids or {}),
        source_types=dict(source_types or {}),
    )
    return ContentSource("platform", key, read, "creationTime", make_record)


async def backfill_contents(
    settings: Settings,
    source: ContentSource,
    publisher: Publisher,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    checkpoint: BackfillCheckpoint | None = None,
    limit: int | None = None,
    progress: ProgressBar | None = None,
) -> BackfillReport:
    """Publish ``source``'s contents created in ``[since, until)`` not done yet (oldest first),
    at most ``limit`` of them, saving ``checkpoint`` after every acknowledged page."""
    report = BackfillReport()
    start = since
    if checkpoint is not None and checkpoint.watermark is not None:
        start = checkpoint.watermark if start is None else max(start, checkpoint.watermark)
    page: list[Message] = []
    done: list[tuple[datetime, str]] = []
    counts = BackfillReport()
    # The listing page of the latest content, and how many of its contents are still to come.
    mark: PageMark | None = None
    left_in_page = 0

    def on_page(new_mark: PageMark) -> None:
        nonlocal mark, left_in_page
        mark, left_in_page = new_mark, new_mark.records

    async def flush() -> None:
        await publisher.publish(page, within_seconds=settings.publish_timeout_seconds * 4)
        if checkpoint is not None:
            for created, content_id in done:
                checkpoint.advance(created, content_id)
            checkpoint.published += counts.published
            checkpoint.dead_lettered += counts.dead_lettered
            if mark is not None:  # resume on the page of the first content not yet done
                finished = left_in_page == 0 and mark.next_token is not None
                checkpoint.page_token = mark.next_token if finished else mark.token
            checkpoint.save()
        report.published += counts.published
        report.dead_lettered += counts.dead_lettered
        if progress is not None:
            progress.update(
                published=counts.published,
                dead_lettered=counts.dead_lettered,
                reached=done[-1][0] if done else None,
            )
        page.clear()
        done.clear()
        counts.published = counts.dead_lettered = 0

    taken = 0
    resume_token = checkpoint.page_token if checkpoint is not None else None
    async for content in source.read(start, resume_token, on_page):
        left_in_page -= 1
        created = source.created(content)
        content_id = str(content.get("id"))
        if created is not None:
            if until is not None and created >= until:
                break  # oldest first: nothing later can be in range
            if since is not None and created < since:
                continue
            if checkpoint is not None and checkpoint.done(created, content_id):
                report.skipped += 1
                if progress is not None:
                    progress.update(skipped=1)
                continue
        if limit is not None and taken >= limit:
            break
        taken += 1
        received_at = datetime.now(UTC)
        item = source.make_record(
            content, received_at=received_at, forward_body=settings.forward_body
        )
        if isinstance(item, DeadLetter):
            value = dead_letter_value(item, endpoint="backfill", received_at=received_at)
            page.append(Message(settings.dlq_topic, None, value))
            counts.dead_lettered += 1
            log.info("event=dead_letter endpoint=backfill reason=%s", item.reason)
        else:
            page.append(Message(settings.topic, item.thread_id.encode(), encode_event(item)))
            counts.published += 1
        if created is not None:
            done.append((created, content_id))
        if len(page) >= PAGE_SIZE:
            await flush()
    if page:
        await flush()
    elif checkpoint is not None:
        checkpoint.save()
    return report


async def backfill(
    settings: Settings,
    api: EngageRestClient,
    publisher: Publisher,
    *,
    q: str | None = None,
    limit: int | None = None,
) -> BackfillReport:
    """Publish the classic API's contents matching ``q`` (oldest first), without checkpoint."""
    source = classic_source(api, base_url=settings.engage_api_url or "", q=q)
    return await backfill_contents(settings, source, publisher, limit=limit)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 moment as aware UTC; ``None`` when absent, date-only or unreadable."""
    if not isinstance(value, str) or len(value) <= 10:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def moment_argument(text: str) -> datetime:
    """``--since``/``--until``: ISO-8601 (a date = its midnight UTC) or an age like ``7d``."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ISO-8601 (2026-03-01, 2026-03-01T09:00:00Z) or an "
            "age (30m, 12h, 7d, 2w)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def default_checkpoint(settings: Settings, source: ContentSource) -> Path:
    """``<ENGAGE_DATA_DIR>/backfill/<api>-<hash of the source>.json``."""
    digest = hashlib.sha256(source.key.encode()).hexdigest()[:12]
    return Path(settings.data_dir).expanduser() / "backfill" / f"{source.api}-{digest}.json"


def main(settings: Settings, args: list[str]) -> int:
    """``engage-streams backfill [--api classic|platform] [--since T] [--until T] ...``."""
    parsed = _parser().parse_args(args)
    if parsed.api_url:
        settings = replace(settings, engage_api_url=parsed.api_url)
    if parsed.server_url:
        settings = replace(settings, ringcentral_server_url=parsed.server_url)
    if parsed.checkpoint:
        settings = replace(settings, backfill_checkpoint=parsed.checkpoint)
    api: Api = parsed.api or (
        "platform" if settings.ringcentral_client_id and not settings.engage_api_url else "classic"
    )
    if api == "classic" and (not settings.engage_api_url or not settings.engage_api_token):
        print(
            "engage-streams backfill: set ENGAGE_API_URL (or --api-url) and ENGAGE_API_TOKEN "
            "(an Engage Digital API access token), or use --api platform",
            file=sys.stderr,
        )
        return 2
    filters = dict(parsed.filter or [])
    if parsed.source:
        filters["source"] = parsed.source
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="level=%(levelname)s %(message)s")
    platform = PlatformClient.from_settings(settings) if api == "platform" else None  # 2 if unset
    return asyncio.run(_run(settings, parsed, platform, filters))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engage-streams backfill",
        description="Publish past contents (oldest first) as canonical records with origin "
        "'backfill', from the classic Engage REST API or the RingCentral platform API. "
        "Resumable: a checkpoint is saved after every page Kafka acknowledged.",
    )
    parser.add_argument(
        "--api",
        choices=["classic", "platform"],
        help="classic (ENGAGE_API_*) or platform (RINGCENTRAL_*); default: platform when "
        "only RINGCENTRAL_CLIENT_ID is set, else classic",
    )
    parser.add_argument("--since", type=moment_argument, help="created at or after (7d, ISO)")
    parser.add_argument("--until", type=moment_argument, help="created before (ISO, 1d)")
    parser.add_argument("--source", help="only this channel (source id)")
    parser.add_argument("--q", help="classic: Engage search filter, e.g. 'thread:ID'")
    parser.add_argument(
        "--filter",
        action="append",
        type=_filter_argument,
        metavar="NAME=VALUE",
        help="platform: a contents filter (source, thread, intervention, identity, status)",
    )
    parser.add_argument("--limit", type=int, help="publish at most this many contents")
    parser.add_argument(
        "--checkpoint",
        help="checkpoint file (default: ENGAGE_BACKFILL_CHECKPOINT, else "
        "<ENGAGE_DATA_DIR>/backfill/<api>-<hash>.json)",
    )
    parser.add_argument("--restart", action="store_true", help="ignore the checkpoint's progress")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--api-url", help="classic: https://ACCOUNT.api.digital.ringcentral.com/1.0"
    )
    parser.add_argument("--server-url", help="platform: e.g. https://platform.ringcentral.com")
    return parser


def _filter_argument(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=VALUE, e.g. status=New")
    return name, value


async def _run(
    settings: Settings,
    parsed: argparse.Namespace,
    platform: PlatformClient | None,
    filters: dict[str, str],
) -> int:
    classic: EngageRestClient | None = None
    try:
        if platform is not None:
            # The connector's mapping (agents config file, classic GET /users when configured):
            # a backfilled creatorId names the agent as the live webhook's record does.
            agent_ids = await agent_ids_for(settings)
            source = platform_source(
                platform,
                server_url=settings.ringcentral_server_url,
                filters=filters,
                agent_ids=agent_ids,
                source_types=await source_types_for(settings),
            )
        else:
            assert settings.engage_api_url is not None and settings.engage_api_token is not None
            classic = EngageRestClient(settings.engage_api_url, settings.engage_api_token)
            terms = [parsed.q, f"source:{parsed.source}" if parsed.source else None]
            q = " ".join(term for term in terms if term) or None
            source = classic_source(classic, base_url=settings.engage_api_url, q=q)
        path = Path(settings.backfill_checkpoint or default_checkpoint(settings, source))
        try:
            checkpoint = BackfillCheckpoint.load(path, source.key, restart=parsed.restart)
        except CheckpointError as error:
            print(f"engage-streams backfill: {error}", file=sys.stderr)
            return 2
        return await _publish(settings, parsed, source, checkpoint)
    finally:
        if classic is not None:
            await classic.aclose()
        if platform is not None:
            await platform.aclose()


async def _publish(
    settings: Settings,
    parsed: argparse.Namespace,
    source: ContentSource,
    checkpoint: BackfillCheckpoint,
) -> int:
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers)
    progress = None if parsed.no_progress else ProgressBar(f"backfill {source.api}")
    try:
        await publisher.start()
        await ensure_topics(settings)
        report = await backfill_contents(
            settings,
            source,
            publisher,
            since=parsed.since,
            until=parsed.until,
            checkpoint=checkpoint,
            limit=parsed.limit,
            progress=progress,
        )
    except (KafkaError, TopicError, PublishError) as error:
        print(f"engage-streams backfill: Kafka: {error} (check KAFKA_BOOTSTRAP_SERVERS)",
              file=sys.stderr)  # fmt: skip
        return 1
    except (EngageApiError, PlatformApiError) as error:
        print(f"engage-streams backfill: {error} (resume: run the same command again)",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        if progress is not None:
            progress.close()
        await publisher.stop()
    print(
        f"backfill: {report.published} records published, {report.dead_lettered} to the DLQ, "
        f"{report.skipped} already done (checkpoint {checkpoint.path})"
    )
    return 0
