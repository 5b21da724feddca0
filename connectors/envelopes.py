"""What a webhook delivery means: envelope bytes -> canonical records + dead letters.

Pure and fast (runs once per HTTP request): no HTTP, no Kafka, no logging. Two shapes:

* classic Engage Digital: ``{"id", "domain_id", "events": [{"type", "id", "issued_at",
  "user_id", "resource": {"type", "id", "metadata": {...snake_case content...}}}]}``;
* RingCentral platform: ``{"uuid", "event", "timestamp", "body": {"issuedAt", "resource":
  {...camelCase content...}}}`` (nested, as the platform sends it now) or the older flat
  ``{"uuid", "event", "timestamp", "body": {...camelCase content...}}``: both are read.

An envelope we cannot read at all raises ``EnvelopeError`` (the HTTP 400 message). Inside a
readable envelope, every event becomes one ``ContentEvent``, one ``DeadLetter`` or (platform
only) one ``UnresolvedNotification`` (the delivery is authentic, so nothing is dropped):

* ``event_type`` is kept as delivered: ``content.imported`` (classic) or the full event path
  ``/cx/social-messaging/v1/contents/Imported`` (platform).
* Only content events become records (the record needs a content id and a thread id). Other
  families (``intervention.*``, ``task.*``, ...) go to the DLQ as ``non_content_event``,
  kept for later use without misleading the stream workers.
* A platform notification that names its content (``resource.id``) but is too thin to make
  a record (no ``threadId``, or nothing that tells who wrote it: ``status``,
  ``contentDirection``, ``creatorId``) is an ``UnresolvedNotification``, not a dead letter:
  the connector queues it on ``ENGAGE_UNRESOLVED_TOPIC`` and ``connectors.resolver`` fetches
  the content and calls ``resolved_record``, which gives the record the full notification
  would have given (same event id, type, received_at).
* ``event_time`` = the content's ``created_at``/``creationTime``, else the event's
  ``issued_at`` / ``body.issuedAt`` / ``timestamp`` (a date-only ``created_at`` counts as
  absent). A timestamp present but unreadable sends the event to the DLQ (``invalid_timestamp``).
* ``automatic`` = ``auto_submitted``/``autoSubmitted`` is true, or ``created_from`` /
  ``createdFrom`` names an automatic origin (``AutoSurvey``, ``AutoResponseTrigger``,
  ``AutoRequestEmail``, ``auto_...``: any value starting with "auto").
* ``agent_ids`` maps a platform ``creatorId`` (a RingCentral extension id) to the Engage user
  id a classic ``creator_id`` carries, so one agent is one ``agent_id`` whichever webhook
  reported the content (built from the classic ``GET /users`` ``rc_user_id``; see
  ``connectors.agents``). An extension id it does not know is kept as it is.
* ``source_type`` is spelt as the classic API spells it, so a channel has one label whichever
  webhook reported the content: a platform ``sourceType``/``channelType`` takes the classic
  type of its source when the connector knows it (``source_types``: source id -> classic
  type, from ``GET /content_sources`` and from classic records; see ``connectors.sources``),
  else ``classic_source_type`` spells it (``WhatsApp`` -> ``whatsapp``, ``GoogleMyBusiness``
  -> ``google_my_business``, ``FacebookMessenger`` -> ``facebook_messenger``).
* ``status`` is normalised to snake_case (``UserReply`` -> ``user_reply``) so both origins
  read alike; ``direction``/``agent_id``/``automatic`` follow shared/engage/README.md.
* The customer's words (``body``, ``title``...) are copied only when ``forward_body`` is on,
  and stripped from dead letters unless forwarding is on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec
import orjson

from engage_streams.record import ContentEvent, Direction
from engage_streams.timefmt import utc_iso

Endpoint = Literal["engage", "ringcentral", "backfill"]

# Dead-letter reasons: a small fixed set (they are metric label values).
NOT_AN_OBJECT: Final = "event_not_object"
MISSING_EVENT_ID: Final = "missing_event_id"
MISSING_EVENT_TYPE: Final = "missing_event_type"
NON_CONTENT_EVENT: Final = "non_content_event"
MISSING_CONTENT_ID: Final = "missing_content_id"
MISSING_THREAD_ID: Final = "missing_thread_id"
MISSING_TIMESTAMP: Final = "missing_timestamp"
INVALID_TIMESTAMP: Final = "invalid_timestamp"
INVALID_FIELD: Final = "invalid_field"
#: A thin platform notification whose content could not be fetched after the retries.
UNRESOLVED_CONTENT: Final = "unresolved_content"
DEAD_LETTER_REASONS: Final = (
    NOT_AN_OBJECT,
    MISSING_EVENT_ID,
    MISSING_EVENT_TYPE,
    NON_CONTENT_EVENT,
    MISSING_CONTENT_ID,
    MISSING_THREAD_ID,
    MISSING_TIMESTAMP,
    INVALID_TIMESTAMP,
    INVALID_FIELD,
    UNRESOLVED_CONTENT,
)

AGENT_STATUSES: Final = frozenset({"user_reply", "user_initiated", "pending_approval"})
# Dead letters keep this many levels of nesting (orjson.dumps refuses more than 255).
MAX_DEAD_LETTER_DEPTH: Final = 32
TRUNCATED: Final = "<nested deeper than 32 levels: dropped>"
# Keys holding someone's words: dropped from dead letters unless forwarding is on.
WORDS_KEYS: Final = frozenset(
    {"body", "body_formatted", "bodyFormatted", "title", "thread_title", "threadTitle", "subject"}
)


PlatformShape = Literal["nested", "flat", "thin"]
PLATFORM_SHAPES: Final[tuple[PlatformShape, ...]] = ("nested", "flat", "thin")


class EnvelopeError(ValueError):
    """The request body is not an envelope of this endpoint; the message says why (HTTP 400)."""


class DeadLetter(msgspec.Struct, frozen=True):
    """An authentic event that could not become a record, with the reason why."""

    reason: str
    event: Any


class UnresolvedNotification(msgspec.Struct, frozen=True):
    """An authentic platform notification too thin to be a record: resolved later by id.

    ``notification`` is the envelope as received (words stripped unless forwarding is on).
    """

    content_id: str
    notification: dict[str, Any]


class Delivery(msgspec.Struct, frozen=True):
    """One webhook request, understood: the records to publish, the dead letters, and the
    thin notifications to resolve."""

    records: list[ContentEvent]
    dead_letters: list[DeadLetter]
    unresolved: list[UnresolvedNotification] = msgspec.field(default_factory=list)
    #: A platform notification's shape: ``nested`` (``body.resource``), ``flat`` (the
    #: content is ``body``) or ``thin`` (to be resolved); ``None`` for classic deliveries.
    platform_shape: PlatformShape | None = None


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Thin(Exception):
    """The notification names its content but cannot make a record without fetching it."""

    def __init__(self, content_id: str) -> None:
        super().__init__(content_id)
        self.content_id = content_id


def parse_classic(raw: bytes, *, received_at: datetime, forward_body: bool) -> Delivery:
    """Read a classic Engage Digital delivery (one or many events)."""
    envelope = _load_object(raw)
    events = envelope.get("events")
    if not isinstance(events, list):
        raise EnvelopeError("field 'events' must be a list")
    domain_id = envelope.get("domain_id")
    if domain_id is not None and (
        isinstance(domain_id, bool) or not isinstance(domain_id, str | int)
    ):
        raise EnvelopeError("field 'domain_id' must be a string or an integer")
    records: list[ContentEvent] = []
    dead: list[DeadLetter] = []
    for event in events:
        try:
            records.append(_classic_record(event, received_at, forward_body))
        except _Rejected as rejected:
            dead.append(DeadLetter(rejected.reason, _redacted(event, forward_body)))
    return Delivery(records, dead)


def parse_platform(
    raw: bytes,
    *,
    received_at: datetime,
    forward_body: bool,
    agent_ids: Mapping[str, str] | None = None,
    source_types: Mapping[str, str] | None = None,
) -> Delivery:
    """Read a RingCentral platform notification (exactly one event, nested or flat)."""
    envelope = _load_object(raw)
    if not isinstance(envelope.get("event"), str):
        raise EnvelopeError("field 'event' must be a string")
    body = envelope.get("body")
    if not isinstance(body, dict):
        raise EnvelopeError("field 'body' must be an object")
    shape: PlatformShape = "nested" if "resource" in body else "flat"
    try:
        record = _platform_record(
            envelope, received_at, forward_body, agent_ids or {}, source_types or {}
        )
    except _Thin as thin:
        notification = _redacted(envelope, forward_body)
        unresolved = [UnresolvedNotification(thin.content_id, notification)]
        return Delivery([], [], unresolved, platform_shape="thin")
    except _Rejected as rejected:
        dead = [DeadLetter(rejected.reason, _redacted(envelope, forward_body))]
        return Delivery([], dead, platform_shape=shape)
    return Delivery([record], [], platform_shape=shape)


def resolved_record(
    notification: dict[str, Any],
    content: Any,
    *,
    received_at: datetime,
    forward_body: bool,
    agent_ids: Mapping[str, str] | None = None,
    source_types: Mapping[str, str] | None = None,
) -> ContentEvent | DeadLetter:
    """The record of a thin ``notification`` once its ``content`` was fetched by id.

    The fetched content (``GET .../contents/{id}``) completes the notification's resource
    (fetched fields win): the result is the record a full notification would have given. A
    content that is still unusable is a dead letter with the reason why.
    """
    if not isinstance(content, dict):
        return DeadLetter(INVALID_FIELD, _redacted(notification, forward_body))
    body = notification.get("body")
    body = body if isinstance(body, dict) else {}
    resource = body.get("resource")
    resource = resource if isinstance(resource, dict) else body
    merged = {**resource, **content}
    full = {**notification, "body": {"issuedAt": body.get("issuedAt"), "resource": merged}}
    try:
        return _platform_record(
            full, received_at, forward_body, agent_ids or {}, source_types or {}
        )
    except _Thin:
        return DeadLetter(MISSING_THREAD_ID, _redacted(full, forward_body))
    except _Rejected as rejected:
        return DeadLetter(rejected.reason, _redacted(full, forward_body))


def unresolved_value(item: UnresolvedNotification, *, received_at: datetime) -> bytes:
    """The value of an unresolved-notification record (key: the content id)."""
    return orjson.dumps(
        {
            "schema": 1,
            "content_id": item.content_id,
            "received_at": utc_iso(received_at, timespec="auto"),
            "notification": item.notification,
        }
    )


class QueuedNotification(msgspec.Struct, frozen=True):
    """An unresolved-notification record, read back by the resolver."""

    content_id: str
    received_at: datetime
    notification: dict[str, Any]


_queued_decoder = msgspec.json.Decoder(QueuedNotification)


def read_unresolved(raw: bytes) -> QueuedNotification:
    """Parse an unresolved-notification value; ``EnvelopeError`` says what is wrong."""
    try:
        queued = _queued_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise EnvelopeError(f"not an unresolved notification: {error}") from None
    if queued.received_at.tzinfo is None:
        queued = msgspec.structs.replace(queued, received_at=queued.received_at.replace(tzinfo=UTC))
    return queued


def backfill_record(
    content: Any, *, received_at: datetime, forward_body: bool
) -> ContentEvent | DeadLetter:
    """A content read from the REST API (snake_case, like webhook metadata) as a record.

    Origin ``backfill``, type ``content.imported``, event id ``backfill:<content id>`` (so a
    second backfill of the same content is recognisably the same event).
    """
    if not isinstance(content, dict):
        return DeadLetter(NOT_AN_OBJECT, _redacted(content, forward_body))
    content_id = content.get("id")
    event = {
        "type": "content.imported",
        "id": f"backfill:{content_id}",
        "issued_at": content.get("created_at"),
        "resource": {"id": content_id, "metadata": content},
    }
    try:
        record = _classic_record(event, received_at, forward_body)
    except _Rejected as rejected:
        return DeadLetter(rejected.reason, _redacted(content, forward_body))
    return msgspec.structs.replace(record, origin="backfill")


def dead_letter_value(
    item: DeadLetter,
    *,
    endpoint: Endpoint,
    received_at: datetime,
    detail: Mapping[str, object] | None = None,
) -> bytes:
    """The DLQ record value: ``{reason, endpoint, received_at, event}`` as JSON, plus
    ``detail`` (e.g. the content id and attempts of an ``unresolved_content`` dead letter)."""
    return orjson.dumps(
        {
            **(detail or {}),
            "reason": item.reason,
            "endpoint": endpoint,
            "received_at": utc_iso(received_at, timespec="auto"),
            "event": item.event,
        }
    )


def strip_words(value: Any, *, keep_words: bool = False, depth: int = 0) -> Any:
    """``value`` without the text fields that may hold a customer's words (recursive), and
    with whatever is nested deeper than ``MAX_DEAD_LETTER_DEPTH`` replaced by ``TRUNCATED``
    (so that no hostile nesting exhausts the stack or the JSON encoder of the DLQ record).
    ``keep_words`` (body forwarding on) keeps the words but still bounds the depth."""
    if isinstance(value, dict | list) and depth >= MAX_DEAD_LETTER_DEPTH:
        return TRUNCATED
    if isinstance(value, dict):
        return {
            k: strip_words(v, keep_words=keep_words, depth=depth + 1)
            for k, v in value.items()
            if keep_words or k not in WORDS_KEYS or isinstance(v, dict | list)
        }
    if isinstance(value, list):
        return [strip_words(v, keep_words=keep_words, depth=depth + 1) for v in value]
    return value


def snake_status(status: str) -> str:
    """``UserReply`` / ``user_reply`` / ``pending approval`` -> ``user_reply`` style."""
    if len(status) > 64:  # not a status anyone sends: do not let it take a cache slot
        return _snake(status)
    return _cached_snake(status)


def _snake(status: str) -> str:
    return _SEPARATORS.sub("_", _CAMEL_BOUNDARY.sub(r"\1_\2", status)).lower()


_cached_snake = functools.lru_cache(maxsize=256)(_snake)


def classic_source_type(platform_type: str | None) -> str | None:
    """A platform channel type spelt as the classic API spells source types: snake_case,
    with brand names kept whole (``WhatsApp`` -> ``whatsapp``, ``LinkedIn`` -> ``linkedin``,
    ``GoogleMyBusiness`` -> ``google_my_business``). A classic value is returned as it is.

    >>> [classic_source_type(t) for t in ("WhatsApp", "FacebookMessenger", "whatsapp")]
    ['whatsapp', 'facebook_messenger', 'whatsapp']
    """
    if platform_type is None or _CLASSIC_TYPE.fullmatch(platform_type):
        return platform_type
    if len(platform_type) > 64:  # not a type anyone sends: do not let it take a cache slot
        return _spelt(platform_type)
    return _cached_spelt(platform_type)


def _spelt(platform_type: str) -> str:
    return _snake(_BRANDS.sub(lambda m: m.group(0).lower().capitalize(), platform_type))


#: Brand names whose inner capital is not a word boundary (``WhatsApp`` is one word).
_BRANDS = re.compile(r"WhatsApp|LinkedIn|YouTube|TikTok|WeChat|iMessage|GitHub|PayPal")
_CLASSIC_TYPE = re.compile(r"[a-z0-9_]+(?:/[a-z0-9_]+)?")
_cached_spelt = functools.lru_cache(maxsize=256)(_spelt)


_CAMEL_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[\s\-]+")


PLATFORM_IMPORTED: Final = "/cx/social-messaging/v1/contents/Imported"


def platform_backfill_record(
    content: Any,
    *,
    received_at: datetime,
    forward_body: bool,
    agent_ids: Mapping[str, str] | None = None,
    source_types: Mapping[str, str] | None = None,
) -> ContentEvent | DeadLetter:
    """A content read from the platform REST API (camelCase) as a record.

    Read by ``parse_platform`` itself, as the notification of that content, with the same
    ``agent_ids`` (``creatorId`` -> Engage user id) and ``source_types`` as the connector,
    so the record is the
    one the platform webhook gives (direction, agent, automatic, status); then origin
    ``backfill`` and event id ``backfill:<content id>``, like ``backfill_record``.
    """
    if not isinstance(content, dict):
        return DeadLetter(NOT_AN_OBJECT, content)
    notification = {
        "uuid": f"backfill:{content.get('id')}",
        "event": PLATFORM_IMPORTED,
        "timestamp": content.get("creationTime"),
        "body": content,
    }
    delivery = parse_platform(
        orjson.dumps(notification),
        received_at=received_at,
        forward_body=forward_body,
        agent_ids=agent_ids,
        source_types=source_types,
    )
    if delivery.records:
        return msgspec.structs.replace(delivery.records[0], origin="backfill")
    # A dead letter says why; a notification the webhook would resolve by fetching the
    # content cannot be resolved here (this is the fetched content): it lacks its thread.
    reason = delivery.dead_letters[0].reason if delivery.dead_letters else MISSING_THREAD_ID
    return DeadLetter(reason, _redacted(content, forward_body))


def _load_object(raw: bytes) -> dict[str, Any]:
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise EnvelopeError("body is not valid UTF-8 JSON") from None
    if not isinstance(envelope, dict):
        raise EnvelopeError("body must be a JSON object")
    return envelope


def _redacted(event: Any, forward_body: bool) -> Any:
    return strip_words(event, keep_words=forward_body)


def _classic_record(event: Any, received_at: datetime, forward_body: bool) -> ContentEvent:
    if not isinstance(event, dict):
        raise _Rejected(NOT_AN_OBJECT)
    event_type = _text(event, "type", MISSING_EVENT_TYPE)
    event_id = _text(event, "id", MISSING_EVENT_ID)
    if not event_type.startswith("content."):
        raise _Rejected(NON_CONTENT_EVENT)
    resource = event.get("resource")
    if not isinstance(resource, dict):
        raise _Rejected(MISSING_CONTENT_ID)
    metadata = resource.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise _Rejected(INVALID_FIELD)
    content_id = _optional_text(resource, "id") or _optional_text(metadata, "id")
    if content_id is None:
        raise _Rejected(MISSING_CONTENT_ID)
    thread_id = _text(metadata, "thread_id", MISSING_THREAD_ID)
    event_time = _content_time(metadata.get("created_at"), event.get("issued_at"))
    status = _optional_text(metadata, "status")
    status = snake_status(status) if status is not None else None
    creator_id = _optional_text(metadata, "creator_id")
    direction: Direction = (
        "outbound" if creator_id is not None or status in AGENT_STATUSES else "inbound"
    )
    agent_id = creator_id
    if agent_id is None and direction == "outbound":
        agent_id = _optional_text(event, "user_id")
    return ContentEvent(
        event_id=event_id,
        event_type=event_type,
        origin="engage",
        event_time=event_time,
        received_at=received_at,
        content_id=content_id,
        thread_id=thread_id,
        intervention_id=_optional_text(metadata, "intervention_id"),
        source_id=_optional_text(metadata, "source_id"),
        source_type=_optional_text(metadata, "source_type"),
        author_id=_optional_text(metadata, "author_id"),
        agent_id=agent_id,
        in_reply_to_id=_optional_text(metadata, "in_reply_to_id"),
        direction=direction,
        automatic=_automatic(metadata.get("auto_submitted"), metadata.get("created_from")),
        status=status,
        body=_words(metadata.get("body")) if forward_body else None,
    )


def _platform_record(
    envelope: dict[str, Any],
    received_at: datetime,
    forward_body: bool,
    agent_ids: Mapping[str, str],
    source_types: Mapping[str, str],
) -> ContentEvent:
    event_type: str = envelope["event"]
    body: dict[str, Any] = envelope["body"]
    resource = body.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise _Rejected(INVALID_FIELD)
    # Nested (body.resource, as the platform sends it now) or flat (body is the content).
    content: dict[str, Any] = resource if resource is not None else body
    event_id = _text(envelope, "uuid", MISSING_EVENT_ID)
    if "/contents/" not in event_type:
        raise _Rejected(NON_CONTENT_EVENT)
    content_id = _text(content, "id", MISSING_CONTENT_ID)
    thread_id = _optional_text(content, "threadId")
    status = _optional_text(content, "status")
    creator_id = _optional_text(content, "creatorId")
    direction_known = status is not None or creator_id is not None or "contentDirection" in content
    if thread_id is None or not direction_known:
        raise _Thin(content_id)
    issued = body.get("issuedAt") or envelope.get("timestamp")
    event_time = _content_time(content.get("creationTime"), issued)
    status = snake_status(status) if status is not None else None
    outgoing = content.get("contentDirection") == "Outgoing"
    direction: Direction = (
        "outbound" if outgoing or creator_id is not None or status in AGENT_STATUSES else "inbound"
    )
    agent_id = agent_ids.get(creator_id, creator_id) if creator_id is not None else None
    source_id = _optional_text(content, "sourceId") or _optional_text(content, "channelId")
    source_type = source_types.get(source_id) if source_id is not None else None
    if source_type is None:
        source_type = classic_source_type(
            _optional_text(content, "sourceType") or _optional_text(content, "channelType")
        )
    return ContentEvent(
        event_id=event_id,
        event_type=event_type,
        origin="ringcentral",
        event_time=event_time,
        received_at=received_at,
        content_id=content_id,
        thread_id=thread_id,
        intervention_id=_optional_text(content, "interventionId"),
        source_id=source_id,
        source_type=source_type,
        author_id=_optional_text(content, "authorIdentityId"),
        agent_id=agent_id,
        in_reply_to_id=_optional_text(content, "inReplyToContentId"),
        direction=direction,
        automatic=_automatic(content.get("autoSubmitted"), content.get("createdFrom")),
        status=status,
        body=_words(content.get("body")) if forward_body else None,
    )


def _automatic(auto_submitted: Any, created_from: Any) -> bool:
    """Automatic content: flagged so, or created by an automatic origin (``AutoSurvey``,
    ``AutoResponseTrigger``, ``AutoRequestEmail``, ``auto_...``)."""
    if auto_submitted is True:
        return True
    return isinstance(created_from, str) and created_from[:4].lower() == "auto"


def _optional_text(obj: dict[str, Any], key: str) -> str | None:
    """An id-like field: string (empty = absent) or integer, as a string."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Rejected(INVALID_FIELD)


def _words(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _text(obj: dict[str, Any], key: str, missing_reason: str) -> str:
    value = _optional_text(obj, key)
    if value is None:
        raise _Rejected(missing_reason)
    return value


def _content_time(created: Any, issued: Any) -> datetime:
    created_time = _timestamp(created)
    if created_time is not None:
        return created_time
    issued_time = _timestamp(issued)
    if issued_time is None:
        raise _Rejected(MISSING_TIMESTAMP)
    return issued_time


def _timestamp(value: Any) -> datetime | None:
    """ISO-8601 -> aware UTC datetime; ``None`` when absent or date-only; rejects garbage."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Rejected(INVALID_TIMESTAMP)
    if len(value) == 10 and "T" not in value:  # a day ("date" style), not a moment
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            raise _Rejected(INVALID_TIMESTAMP) from None
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:  # Engage writes UTC; a missing offset means UTC
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (
        ValueError,
        OverflowError,
    ):  # overflow: e.g. 0001-01-01T00:00+01:00 is before UTC's year 1
        raise _Rejected(INVALID_TIMESTAMP) from None
