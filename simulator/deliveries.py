"""Canonical events rendered back as the webhook deliveries Engage would send.

The inverse of ``envelopes``: ``classic_event``/``classic_envelope`` build the classic Engage
Digital JSON, ``platform_envelope`` the RingCentral platform notification (nested, flat or
thin; ``platform_content`` is the content itself, as the platform API serves it). Used by the
traffic simulator, the benchmark and the tests (a rendered event parses back to the same record).
Pure: no HTTP, no Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import orjson

from engage_streams.record import ContentEvent
from engage_streams.timefmt import utc_iso

PLATFORM_CONTENTS_PATH = "/cx/social-messaging/v1/contents/"


def classic_event(event: ContentEvent, *, issued_at: datetime | None = None) -> dict[str, Any]:
    """One classic event (``{"type", "id", "issued_at", "user_id", "resource"}``)."""
    source_type = event.source_type or "engage_messaging"
    metadata: dict[str, Any] = {
        "author_id": event.author_id,
        "body": event.body,
        "creator_id": event.agent_id if event.direction == "outbound" else None,
        "created_at": utc_iso(event.event_time),
        "date": event.event_time.date().isoformat(),
        "intervention_id": event.intervention_id,
        "in_reply_to_id": event.in_reply_to_id,
        "source_id": event.source_id,
        "source_type": event.source_type,
        "status": event.status or _default_status(event),
        "thread_id": event.thread_id,
        "auto_submitted": event.automatic,
        "created_from": "interface" if event.direction == "outbound" else "synchronizer",
        "private": True,
    }
    rendered: dict[str, Any] = {
        "type": event.event_type,
        "id": event.event_id,
        "issued_at": utc_iso(issued_at or event.event_time),
        "resource": {
            "type": f"{source_type}/message",
            "id": event.content_id,
            "metadata": metadata,
        },
    }
    if event.agent_id is not None and event.direction == "outbound":
        rendered["user_id"] = event.agent_id
    return rendered


def classic_envelope(
    events: Sequence[ContentEvent], *, delivery_id: str, domain_id: str | int = "engage-demo"
) -> bytes:
    """A classic delivery body holding ``events``."""
    return orjson.dumps(
        {"id": delivery_id, "domain_id": domain_id, "events": [classic_event(e) for e in events]}
    )


def platform_event_path(event_type: str) -> str:
    """``content.discussion_initiated`` -> ``.../contents/DiscussionInitiated`` (platform)."""
    if event_type.startswith("/"):
        return event_type
    suffix = event_type.removeprefix("content.")
    return PLATFORM_CONTENTS_PATH + "".join(part.capitalize() for part in suffix.split("_"))


PlatformShape = Literal["nested", "flat", "thin"]
#: How platform notifications look: the content under ``body.resource`` (as the platform
#: sends it now), the older flat ``body``, or only ``body.resource.id`` (to be fetched).
PLATFORM_SHAPES: tuple[PlatformShape, ...] = ("nested", "flat", "thin")


def platform_content(
    event: ContentEvent, *, creator_ids: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The camelCase platform content of ``event``. ``creator_ids`` (agent id -> RingCentral
    extension id) gives an agent's content the ``creatorId`` the platform uses for that agent;
    an agent it does not name keeps the agent id."""
    status = event.status or _default_status(event)
    creator = event.agent_id if event.direction == "outbound" else None
    if creator is not None and creator_ids:
        creator = creator_ids.get(creator, creator)
    return {
        "id": event.content_id,
        "creationTime": utc_iso(event.event_time),
        "authorIdentityId": event.author_id,
        "creatorId": creator,
        "body": event.body,
        "status": "".join(part.capitalize() for part in status.split("_")),
        "threadId": event.thread_id,
        "interventionId": event.intervention_id,
        "inReplyToContentId": event.in_reply_to_id,
        "sourceId": event.source_id,
        "sourceType": platform_source_type(event.source_type),
        "autoSubmitted": event.automatic,
        "contentDirection": "Outgoing" if event.direction == "outbound" else "Incoming",
    }


#: How the platform spells the channel types whose brand has an inner capital.
_PLATFORM_BRANDS = {"whatsapp": "WhatsApp", "linkedin": "LinkedIn", "youtube": "YouTube"}


def platform_source_type(source_type: str | None) -> str | None:
    """A classic source type as the platform names channel types (``whatsapp`` ->
    ``WhatsApp``, ``google_my_business`` -> ``GoogleMyBusiness``), so the simulated platform
    traffic makes the connector spell it back the classic way."""
    if source_type is None:
        return None
    return "".join(_PLATFORM_BRANDS.get(word, word.capitalize()) for word in source_type.split("_"))


def platform_envelope(
    event: ContentEvent,
    *,
    subscription_id: str = "engage-demo",
    shape: PlatformShape = "flat",
    creator_ids: Mapping[str, str] | None = None,
) -> bytes:
    """A platform notification body for ``event`` in ``shape`` (camelCase content)."""
    content = platform_content(event, creator_ids=creator_ids)
    issued_at = utc_iso(event.event_time)
    body: dict[str, Any]
    if shape == "nested":
        body = {"issuedAt": issued_at, "resource": content}
    elif shape == "thin":
        body = {"issuedAt": issued_at, "resource": {"id": event.content_id}}
    else:
        body = content
    return orjson.dumps(
        {
            "uuid": event.event_id,
            "event": platform_event_path(event.event_type),
            "timestamp": issued_at,
            "subscriptionId": subscription_id,
            "body": body,
        }
    )


def _default_status(event: ContentEvent) -> str:
    return "user_reply" if event.direction == "outbound" else "new"
