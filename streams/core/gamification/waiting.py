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
from collections.abc import Iterable

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


def merged_runs(runs: Iterable[WaitingRun]) -> list[WaitingRun]:
    """The records of each run merged to the greatest of them, as every reader merges them
    (module docstring), in the order the runs first appear: what one write needs to carry.

    A run opened and closed between two flushes is then one record, not two: while a worker
    catches up (hours of contents a second) that is half the waiting-run records written,
    read back by every leaderboard replica and kept by the compacted topic until compaction.
    """
    best: dict[RunKey, WaitingRun] = {}
    for run in runs:
        key = run.key
        known = best.get(key)
        if known is None or _rank(run) > _rank(known):
            best[key] = run
    return list(best.values())


class _ChannelRuns:
    """One channel's runs as intervals: open runs by start, closed runs sorted by start with
    the running maximum of their ends (kept valid up to ``valid``), so "does any closed run
    hold t" is one bisection. Runs mostly arrive in start order: appends keep it valid."""

    __slots__ = ("ends", "keys", "open", "peak", "starts", "valid")

    def __init__(self) -> None:
        self.keys: set[RunKey] = set()
        self.open: list[float] = []  # starts of open runs, sorted
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.peak: list[float] = []  # peak[i] = max(ends[: i + 1]) for i < valid
        self.valid = 0

    def insert(self, run: WaitingRun) -> None:
        self.keys.add(run.key)
        if run.until is None:
            bisect.insort(self.open, run.since)
            return
        if run.until <= run.since:
            return  # empty: nobody waited
        i = bisect.bisect_right(self.starts, run.since)
        self.starts.insert(i, run.since)
        self.ends.insert(i, run.until)
        self.valid = min(self.valid, i)

    def remove(self, run: WaitingRun) -> None:
        self.keys.discard(run.key)
        if run.until is None:
            del self.open[bisect.bisect_left(self.open, run.since)]
            return
        if run.until <= run.since:
            return
        i = bisect.bisect_left(self.starts, run.since)
        while self.ends[i] != run.until:
            i += 1
        del self.starts[i]
        del self.ends[i]
        self.valid = min(self.valid, i)

    def busy_at(self, when: float) -> bool:
        if self.open and self.open[0] <= when:
            return True
        i = bisect.bisect_right(self.starts, when) - 1
        if i < 0:
            return False
        if self.valid <= i:
            peak, ends = self.peak, self.ends
            del peak[self.valid :]
            top = peak[-1] if peak else -math.inf
            for n in range(self.valid, len(ends)):
                top = max(top, ends[n])
                peak.append(top)
            self.valid = len(ends)
        return self.peak[i] > when


class WaitingTimeline:
    """Every waiting run of the cluster, per channel; answers "was the channel clear at t?".

    Memory: one entry per run kept (open runs, and closed runs not yet ``forget_before``),
    and per channel its runs' starts and ends. ``add`` and ``clear_at`` cost a bisection (plus
    a catch-up of the running maximum after a run is slotted in before others).
    """

    __slots__ = ("_channels", "_runs", "_versions")

    def __init__(self) -> None:
        self._runs: dict[RunKey, WaitingRun] = {}
        self._channels: dict[str | None, _ChannelRuns] = {}
        self._versions: dict[str | None, int] = {}

    def add(self, run: WaitingRun) -> bool:
        """Take a run record; ``False`` when it changes nothing (a duplicate, or superseded)."""
        key = run.key
        known = self._runs.get(key)
        if known is not None:
            if _rank(run) <= _rank(known):
                return False
            self._detach(known)
        self._runs[key] = run
        channel = self._channels.get(run.source_id)
        if channel is None:
            channel = self._channels[run.source_id] = _ChannelRuns()
        channel.insert(run)
        self._touch(run.source_id)
        return True

    def clear_at(self, source_id: str | None, when: float) -> bool:
        """True when no customer of the channel waits at ``when`` (in any partition)."""
        channel = self._channels.get(source_id)
        return channel is None or not channel.busy_at(when)

    def version(self, source_id: str | None) -> int:
        """Changes whenever the channel's runs change (for callers that cache answers)."""
        return self._versions.get(source_id, 0)

    def forget_before(self, moment: float) -> int:
        """Drop closed runs that ended at or before ``moment``; how many.

        Only answers at ``moment`` or later may be asked about afterwards. Open runs stay.
        """
        gone = [
            key for key, run in self._runs.items() if run.until is not None and run.until <= moment
        ]
        if not gone:
            return 0
        for key in gone:
            del self._runs[key]
        # Rebuilt at once: removing runs one by one from the sorted lists is quadratic.
        self._channels = {}
        for run in sorted(self._runs.values(), key=lambda r: r.since):
            channel = self._channels.get(run.source_id)
            if channel is None:
                channel = self._channels[run.source_id] = _ChannelRuns()
            channel.insert(run)
        for source_id in list(self._versions):
            self._touch(source_id)
        return len(gone)

    def __len__(self) -> int:
        return len(self._runs)

    def _detach(self, run: WaitingRun) -> None:
        channel = self._channels[run.source_id]
        channel.remove(run)
        if not channel.keys:
            del self._channels[run.source_id]
        self._touch(run.source_id)

    def _touch(self, source_id: str | None) -> None:
        self._versions[source_id] = self._versions.get(source_id, 0) + 1
