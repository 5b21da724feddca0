"""The canonical event: one Engage content event, as published on ``ENGAGE_TOPIC``.

Defined once, here; the connector encodes it and the stream workers decode it. The value is
JSON (see ``record_json_schema()``), the key is the thread id as UTF-8. Field meanings are in
``shared/CONTRACT.md`` ("Canonical event"). Nothing here knows about HTTP or Kafka.

``body`` (the customer's words) is ``None`` unless the operator switched forwarding on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

SCHEMA_VERSION = 1

Direction = Literal["inbound", "outbound"]
Origin = Literal["engage", "ringcentral", "backfill"]


class ContentEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """One content event: who wrote what, where, when (never the words, unless enabled)."""

    schema: int = SCHEMA_VERSION
    event_id: str
    event_type: str
    origin: Origin
    event_time: datetime
    received_at: datetime
    content_id: str
    thread_id: str
    intervention_id: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    author_id: str | None = None
    agent_id: str | None = None
    in_reply_to_id: str | None = None
    direction: Direction
    automatic: bool = False
    status: str | None = None
    body: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ContentEvent)


def encode_event(event: ContentEvent) -> bytes:
    """The JSON bytes of ``event`` (timestamps as RFC 3339 UTC)."""
    return _encoder.encode(event)


def decode_event(raw: bytes) -> ContentEvent:
    """Parse a record value; raises ``msgspec.ValidationError``/``DecodeError`` when invalid."""
    return _decoder.decode(raw)


def record_json_schema() -> dict[str, Any]:
    """The JSON schema of the record value (documented in ``docs/record.schema.json``)."""
    schema: dict[str, Any] = msgspec.json.schema(ContentEvent)
    return schema
