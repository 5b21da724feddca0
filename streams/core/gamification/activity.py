"""One released agent content, as the gamification core sees it.

The partition processor turns each agent content it releases (in event-time order per thread)
into an ``AgentActivity`` and publishes it to ``engage.agent-activity`` keyed by agent id.
Every agent content yields exactly one activity, but a crash may deliver the same activity
twice: consumers deduplicate by ``content_id``. Records written before ``cleared_backlog``
left this struct still decode (unknown fields are ignored). Nothing here knows about Kafka.
"""

from __future__ import annotations

import msgspec


class AgentActivity(msgspec.Struct, frozen=True, kw_only=True):
    """An agent content: who wrote it, where, when, and whether it answered in time.

    ``response_seconds`` is ``None`` for a proactive message (nothing was waiting), and so is
    ``within_sla``. Whether an answer cleared its channel's backlog is not known here (other
    partitions have customers of the channel too): the standings decide it from the waiting
    runs of the whole cluster (``streams.core.gamification.waiting``).
    """

    agent_id: str
    content_id: str
    thread_id: str
    source_id: str | None
    source_type: str | None
    event_time: float
    response_seconds: float | None
    first_response: bool
    within_sla: bool | None

    @property
    def is_answer(self) -> bool:
        """True when a customer was waiting for this content (it has a response time)."""
        return self.response_seconds is not None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AgentActivity)


def encode_activity(activity: AgentActivity) -> bytes:
    """The JSON bytes of ``activity``."""
    return _encoder.encode(activity)


def decode_activity(raw: bytes) -> AgentActivity:
    """Parse JSON bytes; raises ``msgspec.ValidationError``/``DecodeError`` when invalid."""
    return _decoder.decode(raw)
