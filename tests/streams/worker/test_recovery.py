"""A cold worker (state directory gone) comes back from the changelog: alive at once, says it
is recovering and how far, then ready with the same numbers as before.

Runs the reduced profile of ``benchmarks/recovery_bench.py`` against the test broker and
checks what it reports; no timing is asserted (the figures are printed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devkit.broker import LocalKafka

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[3]


def run_bench(bootstrap: str, threads: int) -> dict[str, Any]:
    # Tiny batches make the restore of 10k threads take ~8,000 batches (about a second), so
    # several answers fall inside it (at 20 a batch it lasted ~0.2 s: one or two answers).
    bench = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "recovery_bench.py"),
            *("--threads", str(threads), "--bootstrap", bootstrap),
            *("--max-poll-records", "2", "--json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        stdout, stderr = bench.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the bench stops its worker
        stdout, stderr = bench.communicate(timeout=60)
    lines = stdout.decode().strip().splitlines()
    assert lines, stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def timeline(readiness: list[dict[str, Any]]) -> str:
    """Every answer, runs of the same status and reasons merged: first-last time, count."""
    runs: list[list[Any]] = []
    for answer in readiness:
        what = (answer["status"], answer["reasons"])
        if runs and runs[-1][0] == what:
            runs[-1][2] = answer["at"]
            runs[-1][3] += 1
        else:
            runs.append([what, answer["at"], answer["at"], 1])
    return "; ".join(f"{a}-{b} s: {w[0]} {w[1]} x{n}" for w, a, b, n in runs)


def test_a_cold_worker_is_alive_recovering_then_ready_with_the_same_numbers(
    kafka_broker: LocalKafka,
) -> None:
    result = run_bench(kafka_broker.bootstrap_servers, threads=10_000)
    print(
        {k: v for k, v in result.items() if k not in ("readiness", "differences")},
    )
    readiness = result["readiness"]
    print(timeline(readiness))
    recovering = [r for r in readiness if "recovering" in r["reasons"]]
    assert recovering, f"never saw /readyz say recovering: {timeline(readiness)}"
    assert all(r["status"] == 503 for r in recovering)
    progress = [r["progress"] for r in recovering]
    assert all(p is not None and 0.0 <= p <= 1.0 for p in progress), progress
    assert any(0.0 < p < 1.0 for p in progress), f"no progress in between seen: {progress}"
    assert progress == sorted(progress), "progress went back"
    # Alive and scrapeable while recovering, then ready.
    assert result["healthz_while_recovering"] > 0
    assert result["metrics_during_recovery"] > 0 and result["recovering_metric_seen"]
    assert readiness[-1]["status"] == 200
    assert result["numbers_equal"], result["differences"]
    assert result["series_compared"] > 100 and result["contents_total"] > 0
