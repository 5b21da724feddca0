"""Hypothesis strategies for hostile webhook bodies, and the invariant every body must keep.

Bodies are built as JSON *text* by our own renderer, so they can hold what a JSON library would
never write: duplicate keys, lone surrogates (escaped, or as raw invalid UTF-8), numbers past
64 bits, nesting deeper than any parser allows, odd Unicode. Envelope shapes: classic Engage
Digital, and the RingCentral platform notification flat (``body.<field>``), nested
(``body.resource``) and thin (``{"resource": {"id": ...}}``), each field valid or replaced by
something of the wrong type. Used by ``test_envelope_fuzz.py`` and the atheris harness's seed
corpus (``fuzz/``).

The invariant every body must keep is ``delivery_invariant.check_parsed``.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.connectors.delivery_invariant import RECEIVED_AT, WORDS_MARKER, check_parsed

#: How many examples each property test tries (FUZZ_EXAMPLES), and their hypothesis settings.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

__all__ = ["RECEIVED_AT", "WORDS_MARKER", "check_parsed"]


class Obj:
    """A JSON object as written: key/value pairs in order, duplicates allowed."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs

    def __repr__(self) -> str:
        return f"Obj({self.pairs!r})"


class Raw:
    """JSON text inserted verbatim (a lone-surrogate escape, a 400-digit number, ...)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


def render(value: Any, ascii_only: bool = True) -> str:
    """JSON text of ``value`` (``Obj``, ``Raw``, lists, scalars). With ``ascii_only`` every
    non-ASCII character is a ``\\u`` escape (lone surrogates too); without, it is written as is
    (a lone surrogate then needs ``surrogatepass`` to become bytes: invalid UTF-8)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        return (
            "{"
            + ",".join(f"{render(k, ascii_only)}:{render(v, ascii_only)}" for k, v in value.pairs)
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(render(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def to_bytes(value: Any, raw_unicode: bool = False) -> bytes:
    if not raw_unicode:
        return render(value).encode("ascii")
    return render(value, ascii_only=False).encode("utf-8", "surrogatepass")


@functools.cache  # one strategy object: building them is what costs
def _free_text() -> st.SearchStrategy[str]:
    odd = st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\u202e",  # right-to-left override
            "\ufeff",
            "\U0001f600",
            "e\u0301",  # combining accent
            "\ud800",  # lone surrogates (escaped by ``render``): the whole body is then refused
            "Ω" * 50,
            "🏳️‍🌈",
            "null",
            "2026-03-02",
            "content.imported",
            "/cx/social-messaging/v1/contents/Imported",
        ]
    )
    text = st.text(st.characters(codec="utf-8"), max_size=30)  # any character but surrogates
    return st.one_of(text, text, text, odd).filter(lambda s: WORDS_MARKER not in s)


@functools.cache  # one strategy object: building them is what costs
def _number() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([Raw("-0"), Raw("1E-400"), Raw("18446744073709551616"), Raw("0.1e1")]),
    )


# Numbers no parser takes as a double: a body holding one is refused as a whole (``bodies``).
UNREADABLE_NUMBERS = (b"1e400", b"-1e400", b"9" * 400)


@functools.cache  # one strategy object: building them is what costs
def _scalar() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), _number(), _free_text())


@functools.cache  # one strategy object: building them is what costs
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, objects possibly with duplicate keys."""
    return st.recursive(
        _scalar(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(st.tuples(_free_text(), inner), max_size=4).map(Obj),
        ),
        max_leaves=max_leaves,
    )


def deep_value(depth: int, leaf: str = "1") -> Raw:
    """``depth`` nested objects and lists around ``leaf`` (JSON text), written without recursion."""
    opening = "".join('{"k":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return Raw(opening + leaf + closing)


@functools.cache  # one strategy object: building them is what costs
def _deep() -> st.SearchStrategy[Any]:
    return st.integers(min_value=1, max_value=1100).map(deep_value)


@functools.cache  # one strategy object: building them is what costs
def _any() -> st.SearchStrategy[Any]:
    return st.one_of(json_values(), _deep())


@functools.cache  # one strategy object: building them is what costs
def _id() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=24),
        st.integers(min_value=0, max_value=2**64 - 1),
    )


@functools.cache  # one strategy object: building them is what costs
def _timestamp() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.datetimes(
            timezones=st.sampled_from(
                [timezone(timedelta(minutes=m)) for m in (-720, -59, 0, 330, 840)]
            )
        ).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat() + "Z"),
        st.sampled_from(
            [
                "2026-03-02T09:15:27.412Z",
                "2026-03-02",
                "2026-02-30",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
                "9999-12-31T23:59:59.999999-23:59",
                "2026-03-02T09:15:27+99:00",
                "not a time",
                "",
            ]
        ),
    )


@functools.cache  # one strategy object: building them is what costs
def _words() -> st.SearchStrategy[str]:
    return _free_text().map(lambda s: f"{WORDS_MARKER} {s}")


Fields = dict[str, st.SearchStrategy[Any]]


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` nine times in ten, else ``rare`` (``one_of`` would weigh its branches alike)."""
    return st.integers(0, 9).flatmap(lambda i: rare if i == 9 else usual)


def _obj(fields: Fields, junk: float = 0.15) -> st.SearchStrategy[Obj]:
    """An object with some of ``fields`` (each valid, or of a wrong type), shuffled, maybe with a
    duplicate key and unknown extra keys."""

    @st.composite
    def build(draw: st.DrawFn) -> Obj:
        pairs: list[tuple[str, Any]] = []
        for name, valid in fields.items():
            # Large draws are the rare cases (hypothesis favours small values when it starts).
            if draw(st.integers(0, 99)) >= 85:
                continue  # absent
            wrong = draw(st.integers(0, 99)) >= 100 - junk * 100
            pairs.append((name, draw(_any() if wrong else valid)))
        pairs.extend(draw(st.lists(st.tuples(_free_text(), json_values(4)), max_size=2)))
        if pairs and draw(st.booleans()):
            name, _ = draw(st.sampled_from(pairs))
            pairs.append((name, draw(st.one_of(_scalar(), fields.get(name, _scalar())))))
        return Obj(draw(st.permutations(pairs)))

    return build()


CLASSIC_STATUS = st.sampled_from(
    ["new", "assigned", "replied", "ignored", "user_reply", "user_initiated", "pending approval"]
)
PLATFORM_STATUS = st.sampled_from(
    ["New", "Assigned", "Replied", "Ignored", "UserInitiated", "UserReply", "PendingApproval"]
)


@functools.cache  # one strategy object: building them is what costs
def classic_metadata() -> st.SearchStrategy[Obj]:
    return _obj(
        {
            "id": _id(),
            "thread_id": _id(),
            "created_at": _timestamp(),
            "status": st.one_of(CLASSIC_STATUS, _free_text()),
            "creator_id": st.one_of(st.none(), _id()),
            "author_id": _id(),
            "source_id": _id(),
            "source_type": st.sampled_from(["whatsapp", "email", "facebook"]),
            "intervention_id": _id(),
            "in_reply_to_id": st.one_of(st.none(), _id()),
            "auto_submitted": st.one_of(st.booleans(), _scalar()),
            "body": _words(),
            "title": _words(),
        }
    )


@functools.cache  # one strategy object: building them is what costs
def classic_event() -> st.SearchStrategy[Any]:
    resource = _obj(
        {
            "type": st.sampled_from(["answers/private_message", "emails/email"]),
            "id": _id(),
            "metadata": classic_metadata(),
        }
    )
    event = _obj(
        {
            "type": st.one_of(
                st.sampled_from(
                    ["content.imported", "content.replied", "intervention.opened", "task.x"]
                ),
                _free_text(),
            ),
            "id": _id(),
            "issued_at": _timestamp(),
            "user_id": _id(),
            "resource": resource,
        }
    )
    return mostly(event, _any())


@functools.cache  # one strategy object: building them is what costs
def classic_envelopes() -> st.SearchStrategy[Any]:
    envelope = _obj(
        {
            "id": _id(),
            "domain_id": st.one_of(_id(), st.integers()),
            "events": st.lists(classic_event(), max_size=3),
        },
        junk=0.05,
    )
    return mostly(envelope, _any())


@functools.cache  # one strategy object: building them is what costs
def platform_content() -> st.SearchStrategy[Obj]:
    return _obj(
        {
            "id": _id(),
            "threadId": _id(),
            "creationTime": _timestamp(),
            "status": st.one_of(PLATFORM_STATUS, _free_text()),
            "creatorId": st.one_of(st.none(), _id()),
            "authorIdentityId": _id(),
            "sourceId": _id(),
            "channelId": _id(),
            "channelType": st.sampled_from(["WhatsApp", "Email"]),
            "interventionId": _id(),
            "inReplyToContentId": st.one_of(st.none(), _id()),
            "contentDirection": st.sampled_from(["Incoming", "Outgoing"]),
            "autoSubmitted": st.one_of(st.booleans(), _scalar()),
            "createdFrom": st.sampled_from(["Synchronizer", "AutoSurvey", "Interface"]),
            "body": _words(),
            "bodyFormatted": _words(),
        }
    )


@functools.cache  # one strategy object: building them is what costs
def platform_body() -> st.SearchStrategy[Any]:
    flat = platform_content()
    nested = _obj({"issuedAt": _timestamp(), "resource": platform_content()}, junk=0.05)
    thin = _obj({"issuedAt": _timestamp(), "resource": _obj({"id": _id()})}, junk=0.05)
    return st.one_of(flat, nested, thin, thin)


@functools.cache  # one strategy object: building them is what costs
def platform_envelopes() -> st.SearchStrategy[Any]:
    envelope = _obj(
        {
            "uuid": _id(),
            "event": st.one_of(
                st.sampled_from(
                    [
                        "/cx/social-messaging/v1/contents/Imported",
                        "/cx/social-messaging/v1/contents/Exported",
                        "/cx/social-messaging/v1/contents/DiscussionInitiated",
                        "/engage/advanced-messaging/v1/contents/Imported",
                        "/restapi/v1.0/subscription/~?threshold=60",
                    ]
                ),
                _free_text(),
            ),
            "timestamp": _timestamp(),
            "subscriptionId": _id(),
            "ownerId": _id(),
            "body": platform_body(),
        },
        junk=0.05,
    )
    return mostly(envelope, _any())


def bodies(envelopes: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Raw request bodies: rendered envelopes, sometimes with raw invalid UTF-8 or cut short."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        raw = to_bytes(draw(envelopes), raw_unicode=draw(st.booleans()))
        mangle = draw(st.integers(0, 9))  # 0..5: as rendered (hypothesis favours small values)
        if mangle == 6 and raw:
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        elif mangle == 7:
            raw = draw(st.binary(max_size=64))
        elif mangle == 8:
            raw = b"\xef\xbb\xbf" + raw  # a byte-order mark
        elif mangle == 9 and raw.startswith(b"{"):
            raw = b'{"n":' + draw(st.sampled_from(UNREADABLE_NUMBERS)) + b"," + raw[1:]
        return raw

    return build()
