"""Where one partition's thread states live between flushes: a write-back cache over the store.

``ThreadCache`` is the ``ThreadStore`` the partition processor reads and writes: reads fall
through to the partition's local store (RocksDB or memory), writes stay in memory and are
marked dirty until the next flush takes them (``take_dirty``). A deleted thread is cached as
``None`` so the flush writes a tombstone.

``LocalPartition`` is the small key/value view of one partition of the table's store
(``RocksPartition``, ``MemoryPartition``); ``streams.worker.faust_batch.local_partition`` finds
the one of a Faust store, since that needs Faust's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Protocol

from engage_streams.partitioning import partition_for
from streams.core.responses.partition import decode_thread_state
from streams.core.responses.threads import ThreadState

#: Key of the partition record in the table (never a thread id: thread ids are printable).
PARTITION_KEY_PREFIX = b"\x00partition:"


def partition_key(partition: int) -> bytes:
    return PARTITION_KEY_PREFIX + str(partition).encode()


class LocalPartition(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def thread_keys(self) -> Iterator[bytes]: ...
    def set_changelog_offset(self, offset: int) -> None: ...
    def reopen(self) -> None: ...


class RocksPartition:
    """One partition's RocksDB database (rocksdict, raw mode).

    Holds its own handle: the store may drop (not close) it on shutdown or revocation while
    a last flush is still being written. After an I/O error (a full disk) RocksDB refuses
    every write until the database is opened again: ``reopen`` does that through ``opener``.
    """

    def __init__(self, db: Any, offset_key: bytes, opener: Callable[[], Any] | None = None):
        self._db = db
        self._offset_key = offset_key
        self._opener = opener

    def reopen(self) -> None:
        """Open the database again (``opener`` returns None while that cannot work yet)."""
        if self._opener is not None:
            db = self._opener()
            if db is not None:
                self._db = db

    def set_changelog_offset(self, offset: int) -> None:
        """Where the store's recovery resumes reading the changelog (Faust's own key)."""
        self._db.put(self._offset_key, str(offset).encode())

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def delete(self, key: bytes) -> None:
        self._db.delete(key)

    def thread_keys(self) -> Iterator[bytes]:
        for key in self._db.keys():  # noqa: SIM118 -- rocksdict iterates keys only via keys()
            if not key.startswith(b"\x00") and not key.startswith(b"__faust"):
                yield bytes(key)


class MemoryPartition:
    """One partition's view of a memory store (one dict shared by all partitions)."""

    def __init__(self, data: MutableMapping[bytes, bytes], partition: int, partitions: int):
        self._data = data
        self._partition = partition
        self._partitions = partitions

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._data[key] = value

    def delete(self, key: bytes) -> None:
        self._data.pop(key, None)

    def set_changelog_offset(self, offset: int) -> None:
        """Memory stores recover the whole changelog: nothing to remember."""

    def reopen(self) -> None:
        """Nothing to open again."""

    def thread_keys(self) -> Iterator[bytes]:
        for key in list(self._data):
            if key.startswith(b"\x00"):
                continue
            # The partition a producer keyed by thread id picks.
            if partition_for(key, self._partitions) == self._partition:
                yield key


class TakenThreads(dict[str, "ThreadState | None"]):
    """The thread states one flush took (``ThreadCache.take_dirty``), with that flush's number."""

    def __init__(self, flush: int, states: Mapping[str, ThreadState | None]) -> None:
        super().__init__(states)
        self.flush = flush


class ThreadCache:
    """Write-back cache of thread states for one partition (the processor's ``ThreadStore``).

    The processor changes cached states in place, so a state object tells nothing about which
    flush wrote it: each ``take_dirty`` is numbered, and a thread stays readable from memory
    until the *latest* flush that took it is in the store. Only then may eviction drop it and a
    read fall through to the store, which by then holds that latest state.
    """

    def __init__(self, local: LocalPartition, max_clean_entries: int = 200_000) -> None:
        self._local = local
        self._cache: dict[str, ThreadState | None] = {}
        self._dirty: set[str] = set()
        # Taken by a flush that Kafka has not acknowledged yet, so maybe not in the store:
        # thread id -> (number of the latest flush that took it, the state).
        self._unstored: dict[str, tuple[int, ThreadState | None]] = {}
        self._flushes = 0
        self._max_clean = max_clean_entries

    def get(self, thread_id: str) -> ThreadState | None:
        try:
            return self._cache[thread_id]
        except KeyError:
            taken = self._unstored.get(thread_id)
            if taken is not None:
                return taken[1]
            raw = self._local.get(thread_id.encode())
            state = None if raw is None else decode_thread_state(raw)
            self._cache[thread_id] = state
            return state

    def put(self, thread_id: str, state: ThreadState) -> None:
        self._cache[thread_id] = state
        self._dirty.add(thread_id)

    def delete(self, thread_id: str) -> None:
        self._cache[thread_id] = None
        self._dirty.add(thread_id)

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    @property
    def unstored_count(self) -> int:
        """Threads whose latest flush Kafka has not acknowledged yet."""
        return len(self._unstored)

    def take_dirty(self) -> TakenThreads:
        """The states written since the last call (None = deleted); they are clean after."""
        self._flushes += 1
        flush = self._flushes
        taken = TakenThreads(
            flush, {thread_id: self._cache[thread_id] for thread_id in self._dirty}
        )
        self._dirty = set()
        unstored = self._unstored
        for thread_id, state in taken.items():
            unstored[thread_id] = (flush, state)
        return taken

    def stored(self, flushed: TakenThreads) -> None:
        """``flushed`` (what one ``take_dirty`` returned) is in the store now."""
        unstored = self._unstored
        for thread_id in flushed:
            taken = unstored.get(thread_id)
            # A later flush may have taken the thread again: it stays until that one is stored.
            if taken is not None and taken[0] == flushed.flush:
                del unstored[thread_id]
        if len(self._cache) > self._max_clean:
            self._cache = {thread_id: self._cache[thread_id] for thread_id in self._dirty}
