"""The invariant every webhook body must keep, whatever it holds (no hypothesis here: the
atheris harness in ``fuzz/`` uses it too).

``check_parsed``: a body either raises ``EnvelopeError`` with a reason, or every one of its
events becomes a record, a dead letter (or an unresolved notification, once the platform
resolver lands), all of them encodable for Kafka, none holding the customer's words (marked
``WORDS_MARKER`` by the generators) unless forwarding is on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from connectors.envelopes import (
    DEAD_LETTER_REASONS,
    Delivery,
    EnvelopeError,
    dead_letter_value,
)
from engage_streams.record import decode_event, encode_event

# The customer's words in generated bodies carry this marker; nothing else can.
WORDS_MARKER = "QWZX-words"
RECEIVED_AT = datetime(2026, 3, 2, 9, 15, 30, tzinfo=UTC)

Parser = Callable[..., Delivery]


def events_in(raw: bytes, endpoint: str) -> int:
    """How many events a body that parsed holds (classic: ``events``; platform: one)."""
    if endpoint == "ringcentral":
        return 1
    envelope = orjson.loads(raw)
    return len(envelope["events"])


def check_parsed(parse: Parser, raw: bytes, endpoint: str, forward_body: bool) -> Delivery | None:
    """Parse ``raw`` and assert the invariant; the delivery, or None when refused (400)."""
    try:
        delivery = parse(raw, received_at=RECEIVED_AT, forward_body=forward_body)
    except EnvelopeError as error:
        assert str(error), "a refusal must say why"
        return None
    unresolved = list(getattr(delivery, "unresolved", ()))
    outcomes = len(delivery.records) + len(delivery.dead_letters) + len(unresolved)
    assert outcomes == events_in(raw, endpoint), (delivery, raw)
    for record in delivery.records:
        value = encode_event(record)
        assert decode_event(value) == record
        record.thread_id.encode()  # the Kafka key
        if not forward_body:
            assert record.body is None
            assert WORDS_MARKER.encode() not in value
    for item in delivery.dead_letters:
        assert item.reason in DEAD_LETTER_REASONS, item.reason
        value = dead_letter_value(item, endpoint=endpoint, received_at=RECEIVED_AT)  # type: ignore[arg-type]
        loaded = orjson.loads(value)
        assert loaded["reason"] == item.reason
        if not forward_body:
            assert WORDS_MARKER.encode() not in value, value
    return delivery
