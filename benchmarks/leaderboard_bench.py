"""How long a leaderboard question takes, and what feeding the standings costs.

Feeds ``Standings`` with ``--activities`` random activities of ``--agents`` agents over eight
days (three sources, 80% answers, each answer with the closed waiting run it ends), then asks
every window, all sources and one, ``--repeat`` times -- a new waiting run arriving before
each question, as live, so ``cleared_backlog`` is re-decided for a channel each time -- and
prints the median and worst time per question, the feeding rate (CPU time per activity) and
the memory the standings took (RSS before and after feeding). Every worker keeps the whole
cluster's standings (``streams.worker.cluster``): the cluster pays these figures once a
worker. It was a wall-clock assertion in the unit tests (< 100 ms for 1,000 agents and 100k
activities); timings are measured here, not asserted.

    .venv/bin/python benchmarks/leaderboard_bench.py --agents 10000 --activities 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.recovery_bench import rss_bytes
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.leaderboard import WINDOWS, Standings
from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import WaitingRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--zone", default="Europe/Paris")
    args = parser.parse_args()
    rng = random.Random(7)
    now = datetime(2024, 10, 27, 20, tzinfo=ZoneInfo(args.zone)).timestamp()
    standings = Standings(ScoringRules(), args.zone)
    rss_before = rss_bytes(os.getpid()) / 2**20
    cpu_started = time.process_time()
    started = time.perf_counter()
    for i in range(args.activities):
        answer = rng.random() < 0.8
        response = float(rng.randrange(1, 3000)) if answer else None
        source = rng.choice(["s0", "s1", "s2"])
        when = now - rng.uniform(0, 8 * 86400) if i % 10 else now - rng.uniform(0, 3600)
        if response is not None:
            standings.add_waiting_run(
                WaitingRun(
                    thread_id=f"t{i}",
                    source_id=source,
                    source_type="messaging",
                    since=when - response,
                    until=when,
                )
            )
        standings.add(
            AgentActivity(
                agent_id=f"agent-{rng.randrange(args.agents)}",
                content_id=f"c{i}",
                thread_id=f"t{i}",
                source_id=source,
                source_type="messaging",
                event_time=when,
                response_seconds=response,
                first_response=rng.random() < 0.3,
                within_sla=None if response is None else response <= 300,
            )
        )
    fed = time.perf_counter() - started
    cpu_micros = (time.process_time() - cpu_started) / args.activities * 1e6
    print(
        f"fed {args.activities:,} activities of {args.agents:,} agents in {fed:.2f} s "
        f"({args.activities / fed:,.0f} activities/s, {cpu_micros:.0f} µs CPU "
        f"each with its waiting run), {len(standings.waiting):,} waiting runs"
    )
    rss_after = rss_bytes(os.getpid()) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"memory: RSS {rss_before:,.0f} MB before feeding, {rss_after:,.0f} MB after "
        f"(+{rss_after - rss_before:,.0f} MB, peak {peak:,.0f} MB); "
        f"at 1 M activities a day one worker's replica spends {cpu_micros:.0f} s "
        "of CPU a day taking them in"
    )
    for window in WINDOWS:
        for source in (None, "s1"):
            standings.leaderboard(window, now, source=source)  # warm caches once
            times = []
            for n in range(args.repeat):
                since = now - rng.uniform(0, 3600)
                standings.add_waiting_run(
                    WaitingRun(
                        thread_id=f"live-{window}-{source}-{n}",
                        source_id="s1",
                        source_type="messaging",
                        since=since,
                        until=since + 30,
                    )
                )
                t0 = time.perf_counter()
                entries = standings.leaderboard(window, now, source=source, limit=10)
                times.append(time.perf_counter() - t0)
            print(
                f"leaderboard window={window:<5} source={source or 'all':<3} "
                f"median {statistics.median(times) * 1000:7.2f} ms  "
                f"max {max(times) * 1000:7.2f} ms  entries={len(entries)}"
            )


if __name__ == "__main__":
    main()
