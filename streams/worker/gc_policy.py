"""The worker's garbage-collector policy: fewer, cheaper collections of its long-lived heap.

CPython's cyclic collector runs a young collection every 700 net allocations and a full one
each time the tracked heap has grown by a quarter; a full collection walks every tracked
object. A busy worker allocates a few objects per event (fetched records, produce futures,
waiting runs) and keeps many (tens of thousands of thread states with their lists, the
leaderboard replica, and the modules and classes of Faust and its dependencies), so with the
defaults the collector took 1.0-1.4 s of the 6.2 s of CPU the worker spent on 200,000 events
(``benchmarks/worker_bench.py``, ``gc.callbacks`` timing), and a full collection stalls the
event loop -- ``/metrics``, the API -- for ~0.1 s each time.

``tune_collector``, once the app is built:

- ``gc.collect()`` then ``gc.freeze()``: the garbage of start-up is collected, then
  everything still alive (imports, the app) moves to the permanent
  generation, which no collection walks; it is never garbage anyway.
- ``gc.set_threshold(YOUNG_THRESHOLD, 10, 10)``: a young collection every 10,000 net
  allocations instead of 700, so the short-lived objects of a fetched batch die before a
  collection promotes them, and the older generations (whose triggers count young
  collections) fill 14x more slowly. Cycles are still collected; only later.

Measured with the same bench, interleaved with the old code: the collector's time fell from
1.29-1.40 s to 0.53-0.64 s for the same events.
"""

from __future__ import annotations

import gc

#: Net allocations of tracked objects between two young collections (CPython's default: 700).
YOUNG_THRESHOLD = 10_000
#: Young collections per middle one, middle ones per full one (CPython's defaults).
OLDER_THRESHOLDS = (10, 10)


def tune_collector() -> tuple[int, int, int]:
    """Freeze what exists now and collect the young generation every ``YOUNG_THRESHOLD``
    allocations; the thresholds in force before (to restore them)."""
    before = gc.get_threshold()
    gc.collect()  # frozen objects are never collected: freeze no garbage
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return before
