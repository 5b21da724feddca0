"""When customers of a channel wait, over the whole cluster: waiting runs and their timeline.

A customer content waits from its event time until the answer that stops it (CONTRACT
"Waiting"). The partition processor, which owns the thread, publishes that as
``WaitingRun`` records: ``until=None`` while the run is open (a customer still waits), then
the same run (same ``thread_id`` and ``since``) with ``until`` set when an answer stops it or
the thread expires. One open run per thread covers its earliest waiting content, so a run is
usually one record when opened and one when closed; a thread whose customers wait and are
answered within one release publishes only the closed run.

``WaitingTimeline`` keeps every run it is given and answers ``clear_at(source_id, t)``: no
customer of that channel waits at ``t`` in any partition (no run with ``since <= t <
until``). A partition that never saw the channel has no run of it, so it counts as clear, and
the partition count never matters: runs belong to threads, not to partitions.

It is a function of the *set* of runs: records of one run (same thread and ``since``) merge
to the greatest of them (closed over open, then the later ``until``, then the greater
channel), so duplicates, replays and arrival order change nothing. Nothing here knows about
Kafka.
"""

from __future__ import annotations

import bisect
import math

import msgspec

#: A run's identity: the thread and the event time its earliest waiting content was sent.
RunKey = tuple[str, float]


class WaitingRun(msgspec.Struct, frozen=True, kw_only=True):
    """Customers of ``thread_id`` (channel ``source_id``) waiting from ``since`` to ``until``.

    ``until`` is ``None`` while they still wait; the interval is half-open: a customer content
    sent at the very time of an answer elsewhere is waiting then; the answer that stops a run
    at ``until`` leaves it not waiting at ``until``.
    """

    thread_id: str
    source_id: str | None
    source_type: str | None
    since: float
    until: float | None = None

    @property
    def key(self) -> RunKey:
        return (self.thread_id, self.since)

    def record_key(self) -> bytes:
        """The Kafka key: one per run, so a compacted topic keeps its latest record."""
        return f"{self.thread_id}\x00{self.since!r}".encode()


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(WaitingRun)


def encode_run(run: WaitingRun) -> bytes:
    """The JSON bytes of ``run``."""
    return _encoder.encode(run)


def decode_run(raw: bytes) -> WaitingRun:
    """Parse JSON bytes; raises ``msgspec.ValidationError``/``DecodeError`` when invalid."""
    return _decoder.decode(raw)


def _rank(run: WaitingRun) -> tuple[bool, float, str]:
    return (run.until is not None, run.until or 0.0, run.source_id or "")


class WaitingTimeline:
    """Every waiting run of the cluster, per channel; answers "was the channel clear at t?".

    Memory: one entry per run kept (open runs, and closed runs not yet ``forget_before``);
    per channel, the merged busy intervals, rebuilt lazily after a change of that channel.
    """

    __slots__ = ("_busy", "_by_channel", "_runs", "_versions")

    def __init__(self) -> None:
        self._runs: dict[RunKey, WaitingRun] = {}
        self._by_channel: dict[str | None, set[RunKey]] = {}
        self._busy: dict[str | None, tuple[list[float], list[float]]] = {}
        self._versions: dict[str | None, int] = {}

    def add(self, run: WaitingRun) -> bool:
        """Take a run record; ``False`` when it changes nothing (a duplicate, or superseded)."""
        key = run.key
        known = self._runs.get(key)
        if known is not None:
            if _rank(run) <= _rank(known):
                return False
            self._detach(key, known.source_id)
        self._runs[key] = run
        self._by_channel.setdefault(run.source_id, set()).add(key)
        self._touch(run.source_id)
        return True

    def clear_at(self, source_id: str | None, when: float) -> bool:
        """True when no customer of the channel waits at ``when`` (in any partition)."""
        busy = self._busy.get(source_id)
        if busy is None:
            keys = self._by_channel.get(source_id)
            if not keys:
                return True
            busy = self._busy[source_id] = self._merge(keys)
        starts, ends = busy
        i = bisect.bisect_right(starts, when) - 1
        return i < 0 or when >= ends[i]

    def version(self, source_id: str | None) -> int:
        """Changes whenever the channel's runs change (for callers that cache answers)."""
        return self._versions.get(source_id, 0)

    def forget_before(self, moment: float) -> int:
        """Drop closed runs that ended at or before ``moment``; how many.

        Only answers at ``moment`` or later may be asked about afterwards. Open runs stay.
        """
        gone = [
            (key, run.source_id)
            for key, run in self._runs.items()
            if run.until is not None and run.until <= moment
        ]
        for key, source_id in gone:
            del self._runs[key]
            self._detach(key, source_id)
        return len(gone)

    def __len__(self) -> int:
        return len(self._runs)

    def _detach(self, key: RunKey, source_id: str | None) -> None:
        keys = self._by_channel.get(source_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_channel[source_id]
        self._touch(source_id)

    def _touch(self, source_id: str | None) -> None:
        self._busy.pop(source_id, None)
        self._versions[source_id] = self._versions.get(source_id, 0) + 1

    def _merge(self, keys: set[RunKey]) -> tuple[list[float], list[float]]:
        intervals = sorted(
            (run.since, math.inf if run.until is None else run.until)
            for run in (self._runs[key] for key in keys)
        )
        starts: list[float] = []
        ends: list[float] = []
        for since, until in intervals:
            if until <= since:
                continue  # empty: nobody waited
            if ends and since <= ends[-1]:
                ends[-1] = max(ends[-1], until)
            else:
                starts.append(since)
                ends.append(until)
        return starts, ends
