"""Property-based fuzzing of envelope parsing and classification (``connectors.envelopes``).

For hostile bodies of both endpoints (``hostile_deliveries``: both envelope styles, the
platform's flat, nested and thin shapes, deep nesting, huge numbers, odd Unicode and lone
surrogates, wrong types, duplicate keys) no exception but ``EnvelopeError`` escapes, and every
event of a readable body becomes a record or a dead letter that Kafka can take, without the
customer's words unless forwarding is on. ``FUZZ_EXAMPLES`` sets the examples per test
(default 100; the heavy profile in RELIABILITY.md uses 20000). Crashes the fuzzers found are
kept below as regression cases (``REGRESSIONS``), as are the atheris ones (``fuzz/crashes``).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connectors.envelopes import backfill_record, parse_classic, parse_platform
from tests.connectors.hostile_deliveries import (
    FUZZ,
    RECEIVED_AT,
    WORDS_MARKER,
    Obj,
    bodies,
    check_parsed,
    classic_envelopes,
    deep_value,
    json_values,
    platform_envelopes,
    to_bytes,
)

pytestmark = pytest.mark.timeout(1800)  # the machine may be shared; FUZZ_EXAMPLES sets the work
CRASHES = Path(__file__).resolve().parents[2] / "fuzz" / "crashes"


def deep_dead_letter(depth: int) -> bytes:
    event = Obj([("type", "intervention.opened"), ("id", "e-1"), ("resource", deep_value(depth))])
    return to_bytes(Obj([("events", [event])]))


# Bodies that once crashed the parser or the DLQ encoding (found by these fuzzers).
REGRESSIONS: list[tuple[str, bytes]] = [
    # A dead letter nested deeper than orjson.dumps allows (255) raised TypeError -> 500.
    ("engage", deep_dead_letter(300)),
    # ... and deeper than Python's recursion limit in strip_words -> RecursionError.
    ("engage", deep_dead_letter(1020)),
    ("ringcentral", to_bytes(Obj([("event", "x"), ("uuid", "u"), ("body", deep_value(700))]))),
    # A moment that exists in its own offset but not in UTC: OverflowError in astimezone.
    (
        "engage",
        orjson.dumps(
            {
                "events": [
                    {
                        "type": "content.imported",
                        "id": "e-2",
                        "issued_at": "0001-01-01T00:00:00+01:00",
                        "resource": {"id": "c", "metadata": {"thread_id": "t"}},
                    }
                ]
            }
        ),
    ),
    (
        "ringcentral",
        orjson.dumps(
            {
                "event": "/cx/social-messaging/v1/contents/Imported",
                "uuid": "u",
                "body": {"id": "c", "threadId": "t", "creationTime": "9999-12-31T23:59:59-01:00"},
            }
        ),
    ),
    # An unsigned 64-bit id and a float id (numbers past the signed range).
    (
        "engage",
        b'{"events":[{"type":"content.x","id":18446744073709551615,"resource":{"id":1e300}}]}',
    ),
]


def parser_of(endpoint: str):  # type: ignore[no-untyped-def]
    return parse_classic if endpoint == "engage" else parse_platform


@pytest.mark.parametrize(("endpoint", "raw"), REGRESSIONS)
@pytest.mark.parametrize("forward_body", [False, True])
def test_regressions(endpoint: str, raw: bytes, forward_body: bool) -> None:
    check_parsed(parser_of(endpoint), raw, endpoint, forward_body)


def saved_crashes() -> list[Path]:
    return sorted(p for p in CRASHES.glob("*") if p.name != "README") if CRASHES.is_dir() else []


@pytest.mark.parametrize("path", saved_crashes(), ids=lambda p: p.name)
def test_atheris_crashes_stay_fixed(path: Path) -> None:
    raw = path.read_bytes()
    for endpoint in ("engage", "ringcentral"):
        for forward_body in (False, True):
            check_parsed(parser_of(endpoint), raw, endpoint, forward_body)


@FUZZ
@given(raw=bodies(classic_envelopes()), forward_body=st.booleans())
def test_classic_bodies_are_refused_or_fully_accounted_for(raw: bytes, forward_body: bool) -> None:
    check_parsed(parse_classic, raw, "engage", forward_body)


@FUZZ
@given(raw=bodies(platform_envelopes()), forward_body=st.booleans())
@example(
    raw=(
        Path(__file__).parents[2] / "devkit" / "data" / "samples" / "platform-imported.json"
    ).read_bytes(),
    forward_body=False,
)
def test_platform_bodies_are_refused_or_fully_accounted_for(raw: bytes, forward_body: bool) -> None:
    check_parsed(parse_platform, raw, "ringcentral", forward_body)


@FUZZ
@given(raw=bodies(platform_envelopes()))
def test_platform_bodies_at_the_classic_endpoint_and_back(raw: bytes) -> None:
    # The wrong endpoint for the shape: refused or accounted for, never a crash.
    check_parsed(parse_classic, raw, "engage", False)
    check_parsed(parse_platform, to_bytes(Obj([("events", [])])) + raw[:0], "ringcentral", False)


@FUZZ
@given(content=json_values(), forward_body=st.booleans())
def test_backfill_contents_become_a_record_or_a_dead_letter(
    content: object, forward_body: bool
) -> None:
    loaded = orjson.loads(to_bytes(content)) if _loads(content) else None
    outcome = backfill_record(loaded, received_at=RECEIVED_AT, forward_body=forward_body)
    if not forward_body:
        assert WORDS_MARKER not in repr(outcome)


def _loads(content: object) -> bool:
    try:
        orjson.loads(to_bytes(content))
    except orjson.JSONDecodeError:
        return False
    return True
