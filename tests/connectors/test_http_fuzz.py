"""The connector's HTTP layer fuzzed in-process: the real app and HTTP limits, a publisher double.

Hostile bodies (``hostile_deliveries``) at both webhook endpoints: every answer is a 200 whose
counts equal what was handed to Kafka (records decodable, dead letters with a known reason,
no customer's words), or a 4xx with a JSON reason and nothing handed over; never a 5xx.
Random methods, paths and header values (a forged secret among them) never get a 5xx either,
and only the configured secret gets a delivery through. ``FUZZ_EXAMPLES`` as in
``test_envelope_fuzz.py``. The same over a real broker: ``test_http_fuzz_kafka.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.envelopes import DEAD_LETTER_REASONS
from engage_streams.record import decode_event
from engage_streams.settings import Settings
from tests.connectors.hostile_deliveries import (
    FUZZ,
    WORDS_MARKER,
    bodies,
    classic_envelopes,
    platform_envelopes,
)
from tests.connectors.in_process import MemoryPublisher, Served, connector_in_thread

pytestmark = pytest.mark.timeout(1800)  # the machine may be shared; FUZZ_EXAMPLES sets the work
SECRET = "fuzz-secret-5e1f"
RC_TOKEN = "fuzz-rc-token-77"
SETTINGS = Settings(
    webhook_secret=SECRET,
    ringcentral_verification_token=RC_TOKEN,
    verify_token="fuzz-verify",
    max_body_bytes=256 * 1024,
)
AUTH = {"engage": {"X-Dimelo-Secret": SECRET}, "ringcentral": {"Verification-Token": RC_TOKEN}}


@pytest.fixture(scope="module")
def connector() -> Iterator[tuple[Served, httpx.Client]]:
    with (
        connector_in_thread(SETTINGS, MemoryPublisher()) as served,
        httpx.Client(base_url=served.url, timeout=30) as client,
    ):
        yield served, client


def assert_accounted_for(
    served: Served, endpoint: str, response: httpx.Response, before: int
) -> None:
    handed = served.publisher.messages[before:]
    assert response.status_code < 500, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    answer = orjson.loads(response.content)
    if response.status_code != 200:
        assert 400 <= response.status_code < 500 and answer["error"], answer
        assert handed == [], "a refused delivery must publish nothing"
        return
    records = [m for m in handed if m.topic == SETTINGS.topic]
    dead = [m for m in handed if m.topic == SETTINGS.dlq_topic]
    queued = [m for m in handed if m.topic == SETTINGS.unresolved_topic]  # thin notifications
    assert len(records) + len(dead) + len(queued) == len(handed)
    expected = {"published": len(records), "dead_lettered": len(dead)}
    if queued:
        assert endpoint == "ringcentral"
        expected["queued_unresolved"] = len(queued)
    assert answer == expected
    for message in records:
        record = decode_event(message.value)
        assert message.key == record.thread_id.encode()
        assert record.body is None
    for message in dead:
        assert orjson.loads(message.value)["reason"] in DEAD_LETTER_REASONS
    for message in handed:
        assert WORDS_MARKER.encode() not in message.value


@FUZZ
@given(raw=bodies(classic_envelopes()))
def test_classic_endpoint_answers_every_body(
    connector: tuple[Served, httpx.Client], raw: bytes
) -> None:
    served, client = connector
    before = len(served.publisher.messages)
    response = client.post("/webhooks/engage", content=raw, headers=AUTH["engage"])
    assert_accounted_for(served, "engage", response, before)


@FUZZ
@given(raw=bodies(platform_envelopes()))
def test_platform_endpoint_answers_every_body(
    connector: tuple[Served, httpx.Client], raw: bytes
) -> None:
    served, client = connector
    before = len(served.publisher.messages)
    response = client.post("/webhooks/ringcentral", content=raw, headers=AUTH["ringcentral"])
    assert_accounted_for(served, "ringcentral", response, before)


header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.one_of(
        st.sampled_from(
            ["/webhooks/engage", "/webhooks/ringcentral", "/healthz", "/readyz", "/metrics"]
        ),
        st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), max_size=30).map(
            lambda p: "/" + p
        ),
    ),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-Dimelo-Secret",
                "Verification-Token",
                "Validation-Token",
                "Content-Type",
                "Content-Encoding",
                "Transfer-Encoding-X",
                "X-Forwarded-For",
            ]
        ),
        header_values,
        max_size=4,
    ),
    query=st.dictionaries(
        st.sampled_from(["hub.mode", "hub.challenge", "hub.verify_token", "x"]),
        st.text(max_size=40),
        max_size=3,
    ),
    raw=st.binary(max_size=200),
)
def test_random_requests_never_get_a_server_error_nor_through_without_the_secret(
    connector: tuple[Served, httpx.Client],
    method: str,
    path: str,
    headers: dict[str, str],
    query: dict[str, str],
    raw: bytes,
) -> None:
    served, client = connector
    before = len(served.publisher.messages)
    response = client.request(
        method,
        path,
        params=query,
        headers={k: v.strip(" \t").encode("latin-1") for k, v in headers.items()},
        content=raw if method != "GET" else None,
    )
    assert response.status_code < 500 or path == "/readyz", (response.status_code, response.text)
    authentic = headers.get("X-Dimelo-Secret") == SECRET or (
        headers.get("Verification-Token") == RC_TOKEN
    )
    if not authentic:
        assert served.publisher.messages[before:] == []
        assert SECRET not in response.text and RC_TOKEN not in response.text
