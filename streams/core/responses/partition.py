"""One partition of ``engage.contents`` -> its durable numbers, waiting index and activities.

``PartitionProcessor.apply`` takes one record (offset, value) at a time, in offset order, and
updates the partition's ``PartitionState`` and the thread states (through a ``ThreadStore``).
It is deterministic: no wall clock; the same records from the same state give the same
result, so a replay after a crash (offsets ``<= applied_offset`` are skipped) changes nothing.

Release rule (CONTRACT "Out of order"): each thread's new contents wait in its reorder
buffer until the partition's watermark (the largest ``received_at`` seen, in offset order)
reaches ``received_at + reorder_window``; they are then released in event-time order (ties:
inbound first, then content id), together with every buffered content of the thread ordered
before them. ``release_until(now)`` does the same against the clock (the shell calls it only
while caught up). A content released after a content of its thread ordered after it is late:
counted in ``late``, and in volumes and backlog; released observations are never retracted.

The waiting index (thread id -> source, waiting count, oldest waiting time) changes with
every release, so ``backlog(state, now)`` costs O(waiting threads), never a scan of threads.

Live view (issue 10): a content's release waits for the window, but a supervisor must see a
new waiting customer at once. So volumes count a content on arrival (``totals.contents``)
when its thread's source is known -- else on release, so that a content never moves from one
series to another and counters never go back -- and the state keeps, per thread with
buffered contents, its backlog as if they were all released now (``provisional``).
``backlog`` reads released + provisional, so it equals at every step the released backlog of
"release everything now". Response observations, SLA, late and activities are released only
(the reorder-window guarantee). The view is a function of the records applied, kept in the
state (flushed with it), so it is deterministic and replay-safe like the rest.

Waiting runs (for the cluster-wide ``cleared_backlog`` badge): when a release leaves a thread
with customers waiting and its earliest waiting content has no open run yet, an open
``WaitingRun`` (``since`` = that content's time) is added to the caller's ``runs`` list; the
answer that stops waiting contents closes their open runs (``until`` = its time) and, when
its earliest stopped content had none, adds the closed run ``[earliest, answer)``; an idle
thread that expires closes its open runs at ``last_event_time + idle horizon``; a thread that
learns its channel after a run opened publishes that open run again, with the channel. The union of
a thread's runs is exactly the union of its customers' waiting intervals, and the runs are a
function of the records applied (the thread remembers its open runs), so a replay emits the
same runs.
Pure: imports no faust/aiokafka/aiohttp/prometheus_client.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right, insort
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from engage_streams.record import decode_event
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.waiting import WaitingRun
from streams.core.responses.sla import SlaPolicy
from streams.core.responses.threads import (
    PendingContent,
    ThreadState,
    decode_thread_state,
    encode_thread_state,
)
from streams.core.responses.totals import ContentsKey, PartitionTotals, SourceKey

__all__ = [
    "PartitionProcessor",
    "PartitionState",
    "ThreadStore",
    "UnreadableRecord",
    "WaitingThread",
    "backlog",
    "decode_partition_state",
    "decode_thread_state",
    "encode_partition_state",
    "encode_thread_state",
    "volumes",
]

#: Content-family events that are about the thread, not about a content: never counted.
THREAD_EVENT_TYPES = frozenset(
    {"content.thread_closed", "content.thread_opened", "content.thread_auto_closed"}
)


class UnreadableRecord(Exception):
    """A record value that is not a canonical event; the message says why (never the body)."""


class ThreadStore(Protocol):
    """Where thread states live (the shell's table cache; a dict in tests)."""

    def get(self, thread_id: str) -> ThreadState | None: ...
    def put(self, thread_id: str, state: ThreadState) -> None: ...
    def delete(self, thread_id: str) -> None: ...


class WaitingThread(msgspec.Struct, array_like=True):
    """A thread with customer contents waiting: its source, how many, since when."""

    source_id: str
    source_type: str
    count: int
    oldest: float


class PartitionState(msgspec.Struct):
    """The durable state of one partition besides its threads (flushed atomically).

    ``pending_threads`` is a heap of ``(received_at, thread_id)``: when each thread with
    buffered contents is next due (stale entries are harmless, they release nothing), so
    releases visit only those threads. ``provisional`` is the live backlog of threads with
    buffered contents (module docstring); a ``provisional`` entry with ``count == 0`` says
    "this thread's buffer clears its backlog".
    """

    applied_offset: int = -1
    watermark: float = 0.0
    totals: PartitionTotals = msgspec.field(default_factory=PartitionTotals)
    waiting: dict[str, WaitingThread] = msgspec.field(default_factory=dict)
    pending_threads: list[tuple[float, str]] = msgspec.field(default_factory=list)
    provisional: dict[str, WaitingThread] = msgspec.field(default_factory=dict)


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(PartitionState)


def encode_partition_state(state: PartitionState) -> bytes:
    return _state_encoder.encode(state)


def decode_partition_state(raw: bytes) -> PartitionState:
    return _state_decoder.decode(raw)


def backlog(state: PartitionState, now: float) -> dict[SourceKey, tuple[int, float]]:
    """``(source_id, source_type) -> (waiting customer contents, age of the oldest, s)``,
    live: buffered contents count as if released now (module docstring)."""
    counts: dict[SourceKey, int] = {}
    oldest: dict[SourceKey, float] = {}
    provisional = state.provisional

    def add(entry: WaitingThread) -> None:
        key = (entry.source_id, entry.source_type)
        counts[key] = counts.get(key, 0) + entry.count
        if key not in oldest or entry.oldest < oldest[key]:
            oldest[key] = entry.oldest

    for thread_id, entry in state.waiting.items():
        if thread_id not in provisional:
            add(entry)
    for entry in provisional.values():
        if entry.count:
            add(entry)
    return {key: (n, now - oldest[key]) for key, n in counts.items()}


def volumes(state: PartitionState) -> dict[ContentsKey, int]:
    """``engage_contents_total`` of the partition, live: every content counted on arrival
    (on release when its thread's source was not known yet)."""
    return state.totals.contents


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:  # RFC 3339 requires an offset; read a missing one as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class PartitionProcessor:
    """Applies records of one partition at a time to its ``PartitionState`` (see module doc).

    One processor serves every partition of a worker: it holds only configuration.
    """

    def __init__(
        self, sla: SlaPolicy, reorder_window_seconds: float, idle_horizon_seconds: float
    ) -> None:
        self.sla = sla
        self.window = float(reorder_window_seconds)
        self.idle_horizon = float(idle_horizon_seconds)

    def apply(
        self,
        state: PartitionState,
        threads: ThreadStore,
        offset: int,
        value: bytes,
        *,
        runs: list[WaitingRun] | None = None,
    ) -> list[AgentActivity]:
        """Apply the record at ``offset``; returns the agent activities it released.

        The waiting runs it opened or closed are appended to ``runs`` when given (the state
        changes the same either way). Offsets ``<= state.applied_offset`` were applied
        before: nothing happens. A value that is not a canonical event raises
        ``UnreadableRecord`` after its offset is marked applied, so a replay skips it too.
        """
        if offset <= state.applied_offset:
            return []
        try:
            event = decode_event(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            state.applied_offset = offset
            raise UnreadableRecord(f"offset {offset}: not a canonical event: {exc}") from None
        received_at, event_time = event.received_at, event.event_time
        if received_at.tzinfo is None or event_time.tzinfo is None:
            received, when = _epoch(received_at), _epoch(event_time)
        else:
            received, when = received_at.timestamp(), event_time.timestamp()
        watermark = state.watermark
        if received > watermark:
            state.watermark = watermark = received
        thread_id = event.thread_id
        thread = threads.get(thread_id)
        if thread is None:
            thread = ThreadState()
        changed = False
        if thread.source_id is None and event.source_id is not None:
            thread.source_id = event.source_id
            thread.source_type = event.source_type
            for buffered in thread.pending:  # buffered before the source was known
                self._count_on_arrival(state, thread, buffered)
            changed = bool(thread.pending)
            if runs is not None and thread.open_runs:
                # Runs opened before the channel was known: again, under it (of two records of
                # one run the greater channel wins), so its customers wait in their channel.
                runs.extend(_runs_of(thread_id, thread, thread.open_runs))
        if when > thread.last_event_time:
            thread.last_event_time = when
        if (
            thread.remember(event.content_id)
            and not event.automatic
            and event.event_type not in THREAD_EVENT_TYPES
        ):
            content = PendingContent(
                received, when, event.direction == "outbound", event.content_id,
                event.agent_id, event.intervention_id,
            )  # fmt: skip
            if thread.source_id is not None:
                self._count_on_arrival(state, thread, content)
            if thread.buffer(content):
                heapq.heappush(state.pending_threads, (received, thread_id))
            changed = True
        activities: list[AgentActivity] = []
        out = _Released(activities, [] if runs is None else runs)
        heap = state.pending_threads
        if heap and heap[0][0] + self.window <= watermark:
            self._release_due(state, threads, watermark, out, thread_id, thread)
        pending = thread.pending
        released_time = thread.released_time
        if pending and released_time is not None and pending[0].event_time <= released_time:
            # A late content (ordered before what the thread already released) goes at once.
            self._release(state, thread_id, thread, watermark, out)
        if changed or thread_id in state.provisional:
            self._provision(state, thread_id, thread)
        threads.put(thread_id, thread)
        state.applied_offset = offset
        return activities

    def release_until(
        self,
        state: PartitionState,
        threads: ThreadStore,
        now: float,
        *,
        runs: list[WaitingRun] | None = None,
    ) -> list[AgentActivity]:
        """Release every buffered content with ``received_at + window <= now`` (waiting runs
        appended to ``runs`` when given)."""
        activities: list[AgentActivity] = []
        out = _Released(activities, [] if runs is None else runs)
        self._release_due(state, threads, max(now, state.watermark), out, None, None)
        return activities

    def expire_idle(
        self,
        state: PartitionState,
        threads: ThreadStore,
        thread_ids: Iterable[str],
        now: float,
        *,
        runs: list[WaitingRun] | None = None,
    ) -> int:
        """Delete the threads (of ``thread_ids``) idle longer than the horizon; how many.

        Idle: the latest event time seen in the thread is more than the horizon before
        ``now``, and nothing is buffered. Their waiting contents leave the backlog; their open
        waiting runs close at ``last_event_time + horizon`` (appended to ``runs`` when given:
        an event time, so a replay closes them the same).
        """
        expired = 0
        for thread_id in thread_ids:
            thread = threads.get(thread_id)
            if thread is None or thread.pending:
                continue
            if now - thread.last_event_time <= self.idle_horizon:
                continue
            threads.delete(thread_id)
            state.provisional.pop(thread_id, None)
            state.waiting.pop(thread_id, None)
            if runs is not None:
                until = thread.last_event_time + self.idle_horizon
                runs.extend(_runs_of(thread_id, thread, thread.open_runs, until))
            expired += 1
        return expired

    # -- releasing ---------------------------------------------------------------------

    def _release_due(
        self,
        state: PartitionState,
        threads: ThreadStore,
        watermark: float,
        out: _Released,
        current_id: str | None,
        current: ThreadState | None,
    ) -> None:
        heap = state.pending_threads
        window = self.window
        while heap and heap[0][0] + window <= watermark:
            _, thread_id = heapq.heappop(heap)
            thread = current if thread_id == current_id else threads.get(thread_id)
            if thread is None or not thread.pending:
                continue
            released = self._release(state, thread_id, thread, watermark, out)
            if released and thread is not current:
                self._provision(state, thread_id, thread)
                threads.put(thread_id, thread)

    def _release(
        self,
        state: PartitionState,
        thread_id: str,
        thread: ThreadState,
        watermark: float,
        out: _Released,
    ) -> bool:
        released = thread.take_releasable(watermark, self.window)
        if not released:
            return False
        source = (thread.source_id or "", thread.source_type or "")
        entry = state.waiting.get(thread_id)
        totals = state.totals
        for content in released:
            late = thread.mark_released(content)
            if late:
                totals.count_late(source[0])
            if not content.outbound:
                if not content.counted:
                    totals.count_content(source, "inbound")
                thread.wait(content.event_time)
                continue
            if not content.counted:
                totals.count_content(source, "outbound")
            if content.by_agent:  # no agent: a volume only, never an answer
                totals.count_reply(content.agent_id)
                out.activities.append(self._answer(state, thread_id, thread, source, content, out))
        waiting = thread.waiting
        open_runs = thread.open_runs
        if waiting and (not open_runs or open_runs[0] != waiting[0]):
            # Customers wait and their earliest has no open run: publish one.
            insort(open_runs, waiting[0])
            out.runs.extend(_runs_of(thread_id, thread, waiting[:1]))
        if thread.waiting:
            state.waiting[thread_id] = WaitingThread(
                source[0], source[1], len(thread.waiting), thread.waiting[0]
            )
        elif entry is not None:
            del state.waiting[thread_id]
        earliest = thread.earliest_pending_received()
        if earliest is not None:
            heapq.heappush(state.pending_threads, (earliest, thread_id))
        return True

    def _answer(
        self,
        state: PartitionState,
        thread_id: str,
        thread: ThreadState,
        source: SourceKey,
        content: PendingContent,
        out: _Released,
    ) -> AgentActivity:
        earliest = thread.waiting[0] if thread.waiting else None
        response, first, stopped = thread.answer(content.event_time, content.intervention_id)
        response_seconds: float | None = None
        within_sla: bool | None = None
        if stopped:
            response_seconds = response
            within_sla = response <= self.sla.seconds_for(thread.source_id, thread.source_type)
            state.totals.observe_response(source, content.agent_id, response, first, within_sla)
            assert earliest is not None
            self._close_runs(thread_id, thread, earliest, content.event_time, out.runs)
        return AgentActivity(
            agent_id=content.agent_id or "",
            content_id=content.content_id,
            thread_id=thread_id,
            source_id=thread.source_id,
            source_type=thread.source_type,
            event_time=content.event_time,
            response_seconds=response_seconds,
            first_response=first and stopped > 0,
            within_sla=within_sla,
        )

    # -- the live view -----------------------------------------------------------------------

    @staticmethod
    def _provision(state: PartitionState, thread_id: str, thread: ThreadState) -> None:
        """Bring the thread's provisional backlog up to date with its buffer."""
        if not thread.pending:
            state.provisional.pop(thread_id, None)
            return
        count, oldest = thread.provisional_waiting()
        entry = state.provisional.get(thread_id)
        if entry is None:
            state.provisional[thread_id] = WaitingThread(
                thread.source_id or "", thread.source_type or "", count, oldest
            )
        else:
            entry.source_id, entry.source_type = thread.source_id or "", thread.source_type or ""
            entry.count, entry.oldest = count, oldest

    @staticmethod
    def _count_on_arrival(
        state: PartitionState, thread: ThreadState, content: PendingContent
    ) -> None:
        if not content.counted:
            content.counted = True
            source = (thread.source_id or "", thread.source_type or "")
            state.totals.count_content(source, "outbound" if content.outbound else "inbound")

    @staticmethod
    def _close_runs(
        thread_id: str,
        thread: ThreadState,
        earliest: float,
        answered_at: float,
        runs: list[WaitingRun],
    ) -> None:
        """An answer at ``answered_at`` stopped every waiting content up to it, the earliest
        sent at ``earliest``: close their open runs, and cover ``[earliest, answered_at)``."""
        open_runs = thread.open_runs
        n = bisect_right(open_runs, answered_at)
        closing = open_runs[:n]
        del open_runs[:n]
        if not closing or closing[0] != earliest:
            closing.insert(0, earliest)
        runs.extend(_runs_of(thread_id, thread, closing, answered_at))


class _Released:
    """What one call releases: activities (returned) and waiting runs (the caller's list)."""

    __slots__ = ("activities", "runs")

    def __init__(self, activities: list[AgentActivity], runs: list[WaitingRun]) -> None:
        self.activities = activities
        self.runs = runs


def _runs_of(
    thread_id: str, thread: ThreadState, starts: Iterable[float], until: float | None = None
) -> Iterator[WaitingRun]:
    """The thread's waiting runs that began at ``starts``, in its channel (still open while
    ``until`` is None)."""
    for since in starts:
        yield WaitingRun(
            thread_id=thread_id,
            source_id=thread.source_id,
            source_type=thread.source_type,
            since=since,
            until=until,
        )
