"""The per-thread rules: dedupe, reorder buffer, waiting customer contents, answers.

A ``ThreadState`` is everything the stream worker remembers about one conversation thread,
kept small because one is stored per thread (table ``threads``) and re-encoded each time the
thread changes. Measured with ``encode_thread_state`` on the benchmark scenario
(``benchmarks/core_bench.py``, 25k threads): median 141 bytes, p99 291, max 403. The bounds
below cap the dedupe and intervention sets (worst case ~6 KiB); the waiting list costs 9
bytes per customer content waiting.

What it holds, and why:

* ``source_id``/``source_type`` -- the thread's channel, from the first event that has one;
  every number of the thread is labelled with it.
* ``seen`` -- 8-byte hashes of the content ids already seen (oldest first, at most
  ``MAX_SEEN``): the first event of a content defines it, later ones change nothing. A
  redelivery of a content older than the thread's ``MAX_SEEN`` newest would count again.
* ``pending`` -- the reorder buffer: compact contents (never the body) received but not yet
  released, sorted by the release order key (event time, inbound before outbound, content
  id). Contents are released in that order once the reorder window has passed; each is
  counted in the volumes on arrival already (``counted``) when the thread's source is known.
* ``waiting`` -- event times of the customer contents waiting for an answer (sorted). Only
  an agent's content (outbound *with* an agent id, ``PendingContent.by_agent``) answers.
* ``answered`` -- hashes of the intervention ids whose first answer was seen (``0`` = no
  intervention id), at most ``MAX_ANSWERED``.
* the release order key of the last released content, to tell late contents.
* ``last_event_time`` -- the latest event time seen, for the idle horizon.
* ``open_runs`` -- event times of the waiting contents whose open ``WaitingRun`` was published
  (sorted, a subset of ``waiting``; usually none or one), so that the answer that stops them
  closes exactly those runs (``streams.core.gamification.waiting``).

Pure: no framework imports, no clock.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from hashlib import blake2b

import msgspec

#: Content-id hashes kept per thread for dedupe (8 bytes each; oldest dropped first).
MAX_SEEN = 512
#: Intervention-id hashes kept per thread for first-response detection.
MAX_ANSWERED = 128

OrderKey = tuple[float, bool, str]  # (event_time, outbound, content_id)


def id_hash(value: str) -> int:
    """A stable 64-bit hash of an id (stable across processes, unlike ``hash``)."""
    return int.from_bytes(blake2b(value.encode(), digest_size=8).digest(), "little") or 1


class PendingContent(msgspec.Struct, array_like=True):
    """A content in the reorder buffer: only what its release needs (no body)."""

    received_at: float
    event_time: float
    outbound: bool
    content_id: str
    agent_id: str | None
    intervention_id: str | None
    #: Already in the partition's volumes (counted on arrival when the thread's source was
    #: known); False for records written before volumes were live, counted on release.
    counted: bool = False

    @property
    def order_key(self) -> OrderKey:
        return (self.event_time, self.outbound, self.content_id)

    @property
    def by_agent(self) -> bool:
        """An outbound content with an agent: only those can answer. An outbound content
        with no agent at all (a system or unattributed message) never counts as an answer:
        no response time, no SLA observation, no first response, no agent reply; it counts
        only in the contents volumes, and the customers it follows keep waiting."""
        return self.outbound and bool(self.agent_id)


class ThreadState(msgspec.Struct, array_like=True):
    """What is remembered about one thread (see the module docstring)."""

    source_id: str | None = None
    source_type: str | None = None
    seen: list[int] = msgspec.field(default_factory=list)
    pending: list[PendingContent] = msgspec.field(default_factory=list)
    waiting: list[float] = msgspec.field(default_factory=list)
    answered: list[int] = msgspec.field(default_factory=list)
    released_time: float | None = None
    released_outbound: bool = False
    released_content_id: str = ""
    last_event_time: float = 0.0
    open_runs: list[float] = msgspec.field(default_factory=list)

    def remember(self, content_id: str) -> bool:
        """Mark ``content_id`` seen; False when it was already (a later event of it)."""
        h = id_hash(content_id)
        seen = self.seen
        if h in seen:
            return False
        seen.append(h)
        if len(seen) > MAX_SEEN:
            del seen[: len(seen) - MAX_SEEN]
        return True

    def buffer(self, content: PendingContent) -> bool:
        """Add a content to the reorder buffer; True when it has the earliest ``received_at``
        of the buffer (so the caller schedules the thread's release at that time)."""
        pending = self.pending
        earliest = not pending or content.received_at < _earliest_received(pending)
        if not pending or pending[-1].order_key < content.order_key:
            pending.append(content)  # the usual case: contents arrive in order
        else:
            insort(pending, content, key=_order_key)
        return earliest

    def take_releasable(self, watermark: float, window: float) -> list[PendingContent]:
        """Remove and return the contents to release now, in release order.

        A content is released when the window has passed since it was received
        (``received_at + window <= watermark``), and so is every buffered content ordered
        before it or before the last released content: nothing received later than that can
        be put back in order anyway, so holding them would only make them late.
        """
        pending = self.pending
        if not pending:
            return []
        limit: OrderKey | None = None
        if self.released_time is not None:
            limit = (self.released_time, self.released_outbound, self.released_content_id)
        for content in pending:
            if content.received_at + window <= watermark:
                key = content.order_key
                if limit is None or key > limit:
                    limit = key
        if limit is None:
            return []
        n = 0
        for content in pending:
            if content.order_key > limit:
                break
            n += 1
        if n == 0:
            return []
        released = pending[:n]
        del pending[:n]
        return released

    def mark_released(self, content: PendingContent) -> bool:
        """Record ``content`` as released; True when it is late (a content ordered after it
        was released before it)."""
        key = content.order_key
        if self.released_time is not None and key < (
            self.released_time,
            self.released_outbound,
            self.released_content_id,
        ):
            return True
        self.released_time, self.released_outbound, self.released_content_id = key
        return False

    def earliest_pending_received(self) -> float | None:
        return _earliest_received(self.pending) if self.pending else None

    def provisional_waiting(self) -> tuple[int, float]:
        """``(customer contents waiting, time of the oldest)`` as if every buffered content
        were released now (``0.0`` when none waits): the live view of the thread's backlog.

        Only a view for gauges: it changes nothing, and the released state (answers,
        response observations) still waits for the reorder window.
        """
        waiting = self.waiting
        pending = self.pending
        for content in pending:
            if content.outbound:
                break
        else:  # the usual case: questions only
            oldest = pending[0].event_time if pending else 0.0
            if waiting and (not pending or waiting[0] < oldest):
                oldest = waiting[0]
            return (len(waiting) + len(pending), oldest)
        times = list(waiting)
        for content in pending:  # release order, as a release of all of them would go
            if content.by_agent:
                del times[: bisect_right(times, content.event_time)]
            elif not content.outbound:
                insort(times, content.event_time)
        return (len(times), times[0] if times else 0.0)

    def wait(self, event_time: float) -> None:
        """A customer content starts waiting."""
        waiting = self.waiting
        if not waiting or waiting[-1] <= event_time:
            waiting.append(event_time)
        else:
            insort(waiting, event_time)

    def answer(self, event_time: float, intervention_id: str | None) -> tuple[float, bool, int]:
        """An agent content at ``event_time``: ``(response_seconds, first_response, n)``
        where ``n`` customer contents stop waiting; ``n == 0`` means proactive (the first two
        values are then meaningless)."""
        waiting = self.waiting
        n = bisect_right(waiting, event_time)
        if n == 0:
            return (0.0, False, 0)
        response = event_time - waiting[0]
        del waiting[:n]
        key = 0 if intervention_id is None else id_hash(intervention_id)
        answered = self.answered
        first = key not in answered
        if first:
            answered.append(key)
            if len(answered) > MAX_ANSWERED:
                del answered[0]
        return (response, first, n)


def _earliest_received(pending: list[PendingContent]) -> float:
    """The earliest ``received_at`` of a non-empty buffer (a loop: the buffer is short, and
    ``min`` over a generator costs ~1 us even for one content, once or twice per event)."""
    earliest = pending[0].received_at
    for content in pending:
        if content.received_at < earliest:
            earliest = content.received_at
    return earliest


def _order_key(content: PendingContent) -> OrderKey:
    return content.order_key


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ThreadState)


def encode_thread_state(state: ThreadState) -> bytes:
    return _encoder.encode(state)


def decode_thread_state(raw: bytes) -> ThreadState:
    return _decoder.decode(raw)
