"""Throughput of the stream-processing core: ``PartitionProcessor.apply`` events per second.

Generates a scenario (default ~200k events), encodes every event as the connector would,
then applies them all, in arrival order, to one partition with an in-memory dict
``ThreadStore`` -- the worker's per-event cost without Kafka and without the table store.
Also reports the encoded sizes of thread states and of the partition state.

    /work/venv-dev/bin/python benchmarks/core_bench.py [--events 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engage_streams.record import encode_event
from simulator.scenario import ScenarioConfig, generate
from streams.core.responses.partition import (
    PartitionProcessor,
    PartitionState,
    encode_partition_state,
    encode_thread_state,
)
from streams.core.responses.sla import SlaPolicy
from tests.plugins.stores import MemoryThreadStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    threads = max(1, args.events // 8)
    t0 = time.perf_counter()
    events = generate(ScenarioConfig(seed=args.seed, threads=threads, span_seconds=86400.0))
    values = [encode_event(e) for e in events]
    print(f"scenario: {len(values)} events, {threads} threads "
          f"(generated in {time.perf_counter() - t0:.1f} s)")  # fmt: skip

    processor = PartitionProcessor(SlaPolicy(), 10.0, 7 * 86400.0)
    rates: list[float] = []
    cpu_rates: list[float] = []
    for _ in range(args.repeat):
        state, store = PartitionState(), MemoryThreadStore()
        activities = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for offset, value in enumerate(values):
            activities += len(processor.apply(state, store, offset, value))
        activities += len(processor.release_until(state, store, math.inf))
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        rates.append(len(values) / elapsed)
        cpu_rates.append(len(values) / cpu)
        print(f"apply: {len(values) / elapsed:,.0f} events/s "
              f"({elapsed / len(values) * 1e6:.2f} us/event wall, "
              f"{cpu / len(values) * 1e6:.2f} us/event CPU, {activities} activities)")  # fmt: skip
    print(f"best {max(rates):,.0f} events/s, median {statistics.median(rates):,.0f} events/s; "
          f"per CPU second (robust to other load): "
          f"median {statistics.median(cpu_rates):,.0f}")  # fmt: skip

    sizes = sorted(len(encode_thread_state(s)) for s in store.data.values())
    median, p99 = sizes[len(sizes) // 2], sizes[int(len(sizes) * 0.99)]
    print(f"thread state bytes: median {median}, p99 {p99}, max {sizes[-1]} ({len(sizes)} threads)")
    print(f"partition state bytes (after final release): {len(encode_partition_state(state))}")

    # Outside the timed runs: how big the partition record gets while contents are buffered.
    state, store = PartitionState(), MemoryThreadStore()
    peak_heap = peak_bytes = 0
    for offset, value in enumerate(values):
        processor.apply(state, store, offset, value)
        peak_heap = max(peak_heap, len(state.pending_threads))
        if offset % 5000 == 0:
            peak_bytes = max(peak_bytes, len(encode_partition_state(state)))
    print(f"pending-thread heap peak {peak_heap} entries; partition state peak ~{peak_bytes} B")


if __name__ == "__main__":
    main()
