"""The connector's Prometheus metrics, in their own registry (served on ``/metrics``).

Names are the public contract (shared/CONTRACT.md, and the names agreed in the team brief for
the resolver); labels hold only bounded values: endpoint names, HTTP codes, event types,
dead-letter, rejection and resolver outcomes. Never ids of people or words.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from connectors.envelopes import DEAD_LETTER_REASONS, PLATFORM_SHAPES
from connectors.http_limits import REJECTION_REASONS

#: Every HTTP code ``connectors.server`` answers on each webhook endpoint. Each pair is
#: exported at 0 from the start, so "5xx per second" or "401 share" read 0, never "no data",
#: until the first such answer (and ``increase()`` sees that first one). A new answer code
#: belongs here too: the connector tests fail on a code counted but not declared.
ANSWER_CODES: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        "engage": (200, 400, 401, 403, 413, 503),
        "ringcentral": (200, 400, 401, 413, 503),
    }
)

#: Outcomes of thin notifications (``engage_unresolved_notifications_total{outcome}``):
#: queued by the webhook, resolved into a record, retried (one failed fetch), dead-lettered.
UNRESOLVED_OUTCOMES = ("queued", "resolved", "retried", "dead_letter")

# Kafka acknowledgements on one machine take a few ms; the SLO is p99 < 50 ms.
PUBLISH_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


_CLASSIC_TYPES = (
    "content.imported", "content.replied", "content.discussion_initiated", "content.approved",
    "content.exported", "content.update_exported", "content.thread_closed",
    "content.thread_opened", "content.thread_auto_closed",
)  # fmt: skip
_PLATFORM_EVENTS = (
    "Imported", "Exported", "DiscussionInitiated", "Replied", "Approved", "UpdateExported",
    "ThreadClosed", "ThreadOpened", "ThreadAutoClosed",
)  # fmt: skip
KNOWN_EVENT_TYPES = frozenset(
    (
        *_CLASSIC_TYPES,
        *(
            f"{prefix}/contents/{name}"
            for prefix in ("/cx/social-messaging/v1", "/engage/advanced-messaging/v1")
            for name in _PLATFORM_EVENTS
        ),
    )
)
OTHER_EVENT_TYPE = "other"


def event_type_label(event_type: str) -> str:
    """The ``event_type`` label of a published event: the type when it is one Engage or the
    platform documents, else ``other`` (an event type is sender-chosen text: as a label it
    could grow the series without bound or carry anything)."""
    return event_type if event_type in KNOWN_EVENT_TYPES else OTHER_EVENT_TYPE


class ConnectorMetrics:
    """Counters and the publish-latency histogram of one connector process.

    >>> metrics = ConnectorMetrics()
    >>> metrics.requests.labels(endpoint="engage", code="200").inc()
    >>> b"engage_webhook_requests_total" in metrics.exposition()
    True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "engage_webhook_requests",
            "Webhook requests answered, by endpoint and HTTP status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        for endpoint, codes in ANSWER_CODES.items():
            for code in codes:
                self.requests.labels(endpoint=endpoint, code=str(code))
        self.published = Counter(
            "engage_events_published",
            "Canonical events acknowledged by Kafka, by event type.",
            ["event_type"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "engage_dlq_events",
            "Authentic events written to the dead-letter topic, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in DEAD_LETTER_REASONS:
            # Every reason exported from the start at 0, so increase() sees the first one.
            self.dead_letters.labels(reason=reason)
        self.unresolved = Counter(
            "engage_unresolved_notifications",
            "Thin platform notifications (to be resolved by fetching the content), by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in UNRESOLVED_OUTCOMES:
            self.unresolved.labels(outcome=outcome)
        self.platform_notifications = Counter(
            "engage_platform_notifications",
            "Platform notifications accepted (200), by shape: nested (body.resource), flat "
            "(the content is body) or thin (queued to be resolved by fetching the content).",
            ["shape"],
            registry=self.registry,
        )
        for shape in PLATFORM_SHAPES:
            self.platform_notifications.labels(shape=shape)
        self.resolver_pending = Gauge(
            "engage_resolver_pending_notifications",
            "Unresolved notifications not resolved yet: the resolver group's lag on the "
            "partitions this connector resolves (all partitions when it cannot resolve).",
            registry=self.registry,
        )
        self.resolver_ready = Gauge(
            "engage_resolver_ready",
            "1 when this connector resolves thin notifications, 0 when it cannot (platform API "
            "not configured, or its consumer is not running).",
            registry=self.registry,
        )
        self.resolver_partitions = Gauge(
            "engage_resolver_assigned_partitions",
            "Partitions of the unresolved-notifications topic this connector resolves now.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "engage_webhook_rejected",
            "Requests or connections refused by the connector's HTTP limits, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason=reason)
        self.producer_renewals = Counter(
            "engage_connector_producer_renewals",
            "Kafka producers replaced because the broker lost track of them (after a restart).",
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "engage_publish_latency_seconds",
            "Time from handing a delivery's records to the producer to Kafka's acknowledgement.",
            buckets=PUBLISH_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric here."""
        return generate_latest(self.registry)
