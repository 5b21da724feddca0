"""The thread cache between flushes: a read always returns the latest state, whatever flushes
are in flight, whichever are acknowledged, and however small the cache bound is.

The processor changes cached states in place, flushes overlap (one is written while the
next is taken), and clean entries are evicted once the cache is over its bound; a read that
falls through to the store must then find the latest state there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.responses.threads import ThreadState, decode_thread_state, encode_thread_state
from streams.worker.thread_store import ThreadCache

if TYPE_CHECKING:
    from streams.worker.thread_store import TakenThreads


class DictPartition:
    """A ``LocalPartition`` in a dict."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def thread_keys(self) -> Iterator[bytes]:
        return iter(list(self.data))

    def set_changelog_offset(self, offset: int) -> None:
        pass


def write(local: DictPartition, encoded: dict[str, bytes | None]) -> None:
    """What ``apply_locally`` does with an acknowledged flush."""
    for thread_id, value in encoded.items():
        if value is None:
            local.delete(thread_id.encode())
        else:
            local.put(thread_id.encode(), value)


def encode(taken: TakenThreads) -> dict[str, bytes | None]:
    """What ``prepare_flush`` does when it takes the dirty states (encoded at once)."""
    return {k: None if v is None else encode_thread_state(v) for k, v in taken.items()}


def test_overlapping_flushes_never_serve_an_older_state() -> None:
    # ../shared/repro/thread_cache_stale.py: flush 1 acknowledged while flush 2 (which took
    # the same, mutated-in-place state) is still in flight, then clean entries are evicted.
    local = DictPartition()
    cache = ThreadCache(local, max_clean_entries=1)
    for i in range(3):
        cache.put(f"other-{i}", ThreadState())
    thread = cache.get("T") or ThreadState()
    thread.last_event_time = 1.0
    cache.put("T", thread)
    flush1 = cache.take_dirty()
    encoded1 = encode(flush1)
    again = cache.get("T")
    assert again is thread  # the same object, changed in place as the processor does
    again.last_event_time = 2.0
    cache.put("T", again)
    flush2 = cache.take_dirty()
    encoded2 = encode(flush2)
    write(local, encoded1)
    cache.stored(flush1)
    got = cache.get("T")
    assert got is not None and got.last_event_time == 2.0
    write(local, encoded2)
    cache.stored(flush2)
    assert cache.unstored_count == 0
    got = cache.get("T")
    assert got is not None and got.last_event_time == 2.0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("change"), st.integers(0, 2)),
        st.tuples(st.just("drop"), st.integers(0, 2)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("ack"), st.just(0)),
        st.tuples(st.just("read"), st.integers(0, 2)),
    ),
    max_size=80,
)


@settings(max_examples=500, deadline=None)
@given(operations, st.integers(0, 3))
def test_reads_equal_the_latest_writes_under_any_interleaving(
    ops: list[tuple[str, int]], bound: int
) -> None:
    local = DictPartition()
    cache = ThreadCache(local, max_clean_entries=bound)
    latest: dict[str, float | None] = {}  # the model: what each thread is now
    in_flight: list[tuple[TakenThreads, dict[str, bytes | None]]] = []
    clock = 0.0
    for op, n in ops:
        thread_id = f"t{n}"
        if op == "change":
            clock += 1.0
            state = cache.get(thread_id) or ThreadState()
            state.last_event_time = clock  # in place, as the processor does
            cache.put(thread_id, state)
            latest[thread_id] = clock
        elif op == "drop":
            cache.delete(thread_id)
            latest[thread_id] = None
        elif op == "flush":
            taken = cache.take_dirty()
            in_flight.append((taken, encode(taken)))
        elif op == "ack" and in_flight:
            taken, encoded = in_flight.pop(0)  # flushes complete in order
            write(local, encoded)
            cache.stored(taken)
        for tid, want in latest.items():
            got = cache.get(tid)
            assert (None if got is None else got.last_event_time) == want, (tid, op)
    taken = cache.take_dirty()
    in_flight.append((taken, encode(taken)))
    for taken, encoded in in_flight:
        write(local, encoded)
        cache.stored(taken)
    # Everything acknowledged: the store alone holds the latest states.
    for tid, want in latest.items():
        raw = local.get(tid.encode())
        assert (None if raw is None else decode_thread_state(raw).last_event_time) == want
