"""A peer for the worker benchmark: the same per-thread response metrics in Quix Streams.

Run by ``benchmarks/worker_bench.py --peer quix`` in a venv of its own (``.venv-quix``, made
by that script: ``quixstreams`` is not a dependency of the product), on the same topic of
canonical records as the worker. Written the way a Quix user would write it, independently of
``streams`` (it imports nothing of this project):

- a ``StreamingDataFrame`` over the topic (JSON values, thread id keys), one stateful
  ``update`` per record with the thread's state in Quix's RocksDB state store (changelogged to
  Kafka, at-least-once, commits every second);
- per thread: its channel (the first record that names one), contents deduplicated by id
  (the last 512; automatic messages and thread events are not counted), customer contents
  waiting for an answer, the interventions already answered; an agent's content (outbound
  with an agent id) answers every waiting customer content: one response time per answer, the
  first answer of an intervention is its first response time, answers within the channel's
  SLA (300 s; 3600 s for email and reviews) are counted as met;
- totals in process memory, by channel and by agent (as a Prometheus exporter would hold
  them): contents by source and direction, responses (count, sum, SLA met), first responses.

What it leaves out against the worker: the reorder window (records are applied in offset
order), durable totals (the worker's survive ``kill -9`` exactly; these restart from zero),
idle-thread expiry, activities and the leaderboard. All of it makes the peer's job lighter.

It prints one JSON line: ``{"events": N, "seconds": S, "rate": N/S, "contents": {...}}``,
the time running from the first record processed to the last (start-up excluded), as the
worker's figure is taken.

    .venv-quix/bin/python benchmarks/peers/quix_metrics.py --bootstrap HOST:PORT \
        --topic TOPIC --events N --state-dir DIR
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from quixstreams import Application, State

ASYNC_CHANNELS = {"email", "google_business_reviews", "GoogleBusinessReviews", "Email"}
MAX_SEEN = 512


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class Totals:
    def __init__(self) -> None:
        self.contents: Counter[str] = Counter()
        self.responses: Counter[tuple[str, str]] = Counter()
        self.response_seconds: Counter[tuple[str, str]] = Counter()
        self.sla_met: Counter[tuple[str, str]] = Counter()
        self.first_responses: Counter[tuple[str, str]] = Counter()
        self.first_response_seconds: Counter[tuple[str, str]] = Counter()

    def apply(self, content: dict[str, Any], state: State) -> None:
        source = state.get("source")
        if source is None and content.get("source_id"):
            source = [content["source_id"], content.get("source_type") or ""]
            state.set("source", source)
        seen: list[str] = state.get("seen", [])
        if content["content_id"] in seen:
            return
        seen.append(content["content_id"])
        state.set("seen", seen[-MAX_SEEN:])
        if content.get("automatic") or content["event_type"].startswith("content.thread_"):
            return  # automatic messages and thread events are no contents of a conversation
        source_id, source_type = source or ["unknown", ""]
        self.contents[f"{source_id}|{source_type}|{content['direction']}"] += 1
        at = seconds(content["event_time"])
        if content["direction"] == "inbound":
            waiting: list[float] = state.get("waiting", [])
            waiting.append(at)
            state.set("waiting", waiting)
            return
        agent = content.get("agent_id")
        if agent is None:
            return
        waiting = state.get("waiting", [])
        if not waiting:
            return
        target = 3600.0 if source_type in ASYNC_CHANNELS else 300.0
        for asked in waiting:
            waited = max(0.0, at - asked)
            key = (source_id, agent)
            self.responses[key] += 1
            self.response_seconds[key] += waited
            self.sla_met[key] += waited <= target
        intervention = content.get("intervention_id") or ""
        answered: list[str] = state.get("answered", [])
        if intervention not in answered:
            answered.append(intervention)
            state.set("answered", answered[-128:])
            waited = max(0.0, at - waiting[0])
            self.first_responses[(source_id, agent)] += 1
            self.first_response_seconds[(source_id, agent)] += waited
        state.set("waiting", [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()

    totals = Totals()
    progress = {"processed": 0, "first": 0.0, "last": 0.0}

    def processed(topic: str, partition: int, offset: int) -> None:
        if progress["processed"] == 0:
            progress["first"] = time.perf_counter()
        progress["processed"] += 1
        if progress["processed"] >= args.events:
            progress["last"] = time.perf_counter()
            app.stop()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"quix-peer-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=args.state_dir,
        loglevel="WARNING",
        on_message_processed=processed,
    )
    topic = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    sdf = app.dataframe(topic)
    sdf = sdf.update(totals.apply, stateful=True)
    app.run()

    elapsed = max(progress["last"] - progress["first"], 1e-6)
    print(
        json.dumps(
            {
                "events": progress["processed"],
                "seconds": elapsed,
                "rate": progress["processed"] / elapsed,
                "contents": dict(totals.contents),
                "responses": sum(totals.responses.values()),
                "first_responses": sum(totals.first_responses.values()),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
