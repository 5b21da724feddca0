"""Deterministic contact-center traffic: ``generate(config)`` -> canonical events, arrival order.

Used by the traffic simulator, the tests and the benchmark. The same ``ScenarioConfig``
(seed included) always gives the same events. What it makes, per thread:

* one channel (``CHANNELS``: WhatsApp, email, Facebook, Instagram, Twitter, Apple Messages
  for Business, Google reviews) -- email and reviews are answered in hours, the rest in
  minutes;
* one to three interventions, each with customer messages, answers by one agent, and
  follow-ups; some threads start with a proactive agent message
  (``content.discussion_initiated``); some get an automatic welcome (``automatic=True``);
* the deliveries Engage really makes: customer contents as ``content.imported``, agent
  contents as ``content.replied`` and often again as ``content.exported`` (same content,
  another event id); some events re-delivered (same event id, received again later);
* arrival races: an answer received before the question it answers (both within ~3 s of
  each other, inside the reorder window), and a few contents received well after the window
  (``late_rate``), which may come late for their thread.

Pure: no I/O, no clock; randomness only from ``random.Random(config.seed)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from engage_streams.record import ContentEvent

#: (source_id, source_type, answered in hours) of the generated channels.
CHANNELS: tuple[tuple[str, str, bool], ...] = (
    ("src-whatsapp-sales", "whatsapp", False),
    ("src-whatsapp-care", "whatsapp", False),
    ("src-email-support", "email", True),
    ("src-facebook-page", "facebook", False),
    ("src-instagram", "instagram", False),
    ("src-twitter", "twitter", False),
    ("src-apple-business", "apple_business_chat", False),
    ("src-google-reviews", "google_my_business", True),
)

#: 2026-03-02 08:00:00 UTC, a Monday morning.
DEFAULT_BASE_TIME = 1772438400.0


@dataclass(frozen=True, kw_only=True)
class ScenarioConfig:
    """What to generate. Rates are probabilities per thread, content or event."""

    seed: int = 1
    threads: int = 200
    agents: int = 12
    base_time: float = DEFAULT_BASE_TIME
    span_seconds: float = 8 * 3600.0
    reorder_window_seconds: float = 10.0
    race_rate: float = 0.15  # answer received before its question (per exchange)
    late_rate: float = 0.01  # content received long after the window (per content)
    exported_rate: float = 0.6  # agent content delivered again as content.exported
    redelivery_rate: float = 0.03  # event delivered twice, same event id
    welcome_rate: float = 0.3  # automatic welcome message (per thread)
    proactive_rate: float = 0.1  # thread opened by an agent (per thread)
    follow_up_rate: float = 0.4  # customer writes again after an answer (per exchange)


@dataclass
class _Content:
    content_id: str
    thread_id: str
    intervention_id: str | None
    source_id: str
    source_type: str
    outbound: bool
    agent_id: str | None
    automatic: bool
    event_time: float
    received_at: float
    event_type: str


class _Builder:
    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.agents = [f"agent-{i:03d}" for i in range(1, config.agents + 1)]
        self.contents: list[_Content] = []

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(96):024x}"

    def delay(self) -> float:
        """How long a delivery takes to reach the connector."""
        if self.rng.random() < self.config.late_rate:
            return self.config.reorder_window_seconds + self.rng.uniform(5.0, 300.0)
        return self.rng.uniform(0.05, 1.0)

    def add(
        self,
        thread: tuple[str, str, str],
        intervention_id: str | None,
        at: float,
        *,
        agent_id: str | None = None,
        automatic: bool = False,
        event_type: str | None = None,
        received_at: float | None = None,
    ) -> _Content:
        thread_id, source_id, source_type = thread
        outbound = agent_id is not None or automatic
        if event_type is None:
            event_type = "content.replied" if agent_id is not None else "content.imported"
        content = _Content(
            content_id=self.new_id(),
            thread_id=thread_id,
            intervention_id=intervention_id,
            source_id=source_id,
            source_type=source_type,
            outbound=outbound,
            agent_id=agent_id,
            automatic=automatic,
            event_time=round(at, 3),
            received_at=round(at + self.delay() if received_at is None else received_at, 3),
            event_type=event_type,
        )
        self.contents.append(content)
        return content

    def thread(self) -> None:
        rng = self.rng
        source_id, source_type, slow = rng.choice(CHANNELS)
        thread = (self.new_id(), source_id, source_type)
        at = self.config.base_time + rng.uniform(0.0, self.config.span_seconds)
        if rng.random() < self.config.proactive_rate:
            agent = rng.choice(self.agents)
            self.add(thread, self.new_id(), at, agent_id=agent,
                     event_type="content.discussion_initiated")  # fmt: skip
            at += rng.uniform(60.0, 3600.0)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            self.intervention(thread, at, slow)
            at = max(c.event_time for c in self.contents[-3:]) + rng.uniform(3600.0, 86400.0)

    def intervention(self, thread: tuple[str, str, str], at: float, slow: bool) -> None:
        rng = self.rng
        # Some contents carry no intervention id (the thread's first answer counts then).
        intervention_id = self.new_id() if rng.random() < 0.9 else None
        agent = rng.choice(self.agents)
        first = True
        for _ in range(rng.choice((1, 1, 2, 3))):  # exchanges: question(s), then answer(s)
            last = None
            for _ in range(rng.choice((1, 1, 2, 4))):
                last = self.add(thread, intervention_id, at)
                if first and rng.random() < self.config.welcome_rate:
                    self.add(thread, None, at + 1.0, automatic=True)
                first = False
                at += rng.uniform(60.0, 1800.0) if slow else rng.uniform(2.0, 90.0)
            assert last is not None
            if rng.random() < self.config.race_rate:
                # The answer comes within 2 s and is received before the question.
                at = last.event_time + rng.uniform(0.0, 2.0)
                last.received_at = round(last.event_time + rng.uniform(2.5, 3.0), 3)
                answer = self.add(thread, intervention_id, at, agent_id=agent,
                                  received_at=last.event_time + rng.uniform(2.1, 2.4))  # fmt: skip
            else:
                at = last.event_time + (
                    rng.expovariate(1 / 2400.0) if slow else rng.expovariate(1 / 120.0)
                )
                answer = self.add(thread, intervention_id, at, agent_id=agent)
            if rng.random() < 0.3:
                at += rng.uniform(5.0, 60.0)
                self.add(thread, intervention_id, at, agent_id=agent)
            if rng.random() >= self.config.follow_up_rate:
                break
            at = answer.event_time + (rng.uniform(600.0, 7200.0) if slow else rng.uniform(10, 300))

    def events(self) -> list[ContentEvent]:
        rng = self.rng
        out: list[ContentEvent] = []
        for content in self.contents:
            deliveries = [(content.event_type, content.received_at)]
            if content.agent_id is not None and rng.random() < self.config.exported_rate:
                deliveries.append(("content.exported", content.received_at + rng.uniform(0.5, 30)))
            for event_type, received_at in deliveries:
                event = self.event(content, event_type, received_at)
                out.append(event)
                if rng.random() < self.config.redelivery_rate:
                    again = received_at + rng.uniform(30.0, 900.0)
                    out.append(_with_received(event, again))
        out.sort(key=lambda e: e.received_at)  # stable: ties keep generation order
        return out

    def event(self, content: _Content, event_type: str, received_at: float) -> ContentEvent:
        return ContentEvent(
            event_id=self.new_id(),
            event_type=event_type,
            origin="engage",
            event_time=_utc(content.event_time),
            received_at=_utc(received_at),
            content_id=content.content_id,
            thread_id=content.thread_id,
            intervention_id=content.intervention_id,
            source_id=content.source_id,
            source_type=content.source_type,
            author_id=None if content.outbound else f"identity-{content.thread_id[:8]}",
            agent_id=content.agent_id,
            direction="outbound" if content.outbound else "inbound",
            automatic=content.automatic,
            status=("user_reply" if content.agent_id else None) if content.outbound else "new",
        )


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(round(epoch, 3), UTC)


def _with_received(event: ContentEvent, received_at: float) -> ContentEvent:
    fields = {f: getattr(event, f) for f in event.__struct_fields__}
    fields["received_at"] = _utc(received_at)
    return ContentEvent(**fields)


def generate(config: ScenarioConfig) -> list[ContentEvent]:
    """The scenario's events in arrival order (``received_at`` non-decreasing)."""
    builder = _Builder(config)
    for _ in range(config.threads):
        builder.thread()
    return builder.events()
