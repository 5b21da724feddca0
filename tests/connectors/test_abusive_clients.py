"""The reduced profile of ``benchmarks/abusive_clients.py``: the real connector (own process,
real Kafka) keeps answering well-formed deliveries while malformed, oversized, slowloris,
slow-body, slow-reader and many-connection clients attack it on 127.0.0.1.

Asserts behaviour only (every well-formed delivery answered 200, during the attack too; each
attack refused for its reason and counted in ``engage_webhook_rejected_total``); the latency
ratio the issue judges (attack p99 within twice the quiet p99) is printed here and asserted by
the benchmark, which RELIABILITY.md runs with its full profile.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from benchmarks.abusive_clients import REDUCED, run_profile, start_connector, wait_ready

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def test_well_formed_deliveries_are_answered_through_the_abuse(
    kafka_broker: Any, tmp_path: Path
) -> None:
    log_path = tmp_path / "connector.log"
    process, port = start_connector(kafka_broker.bootstrap_servers, REDUCED, log_path)
    try:
        asyncio.run(wait_ready(port))
        outcome = asyncio.run(run_profile(port, REDUCED))
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(outcome.report())
    assert not outcome.failures, outcome.report()
    assert outcome.quiet and outcome.attack, outcome.report()
    for reason in (
        "malformed_request",
        "header_too_large",
        "body_too_large",
        "header_timeout",
        "body_timeout",
        "too_many_connections",
    ):
        assert outcome.rejected.get(reason, 0) > 0, (reason, outcome.report())
    assert outcome.attackers["many_connections 503"] > 0, outcome.report()
    log = log_path.read_text()
    assert "Traceback" not in log and "event=handler_failed" not in log, log[-3000:]
