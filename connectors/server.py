"""The webhook receiver: Engage deliveries in, canonical records acknowledged by Kafka out.

Thin HTTP shell over ``envelopes`` (what a delivery means) and ``publisher`` (Kafka). Order
of checks on a delivery: the connection's HTTP limits (``http_limits``: header size and time,
connection count), authenticity (401, before reading the body), size and time of the body
(413 / 408, enforced while reading), envelope (400, says what is wrong), Kafka (503 +
Retry-After when it does not acknowledge every record in ``ENGAGE_PUBLISH_TIMEOUT_SECONDS``),
else 200. A thin platform notification is written to ``ENGAGE_UNRESOLVED_TOPIC`` under the
same rule (200 only once Kafka acknowledged it); ``connectors.resolver`` turns it into a
record later. Logs are ``key=value`` lines that never hold message bodies or secrets.

``create_app(settings, publisher)`` builds the aiohttp app (tests run it in-process);
``connector_runner(settings, app)`` is the runner that applies the HTTP limits;
``serve(settings)`` runs it with the resolver, the agent-id refresher and the subscription
keeper; ``main(settings, argv)`` is ``engage-streams connector`` (``--redrive-dlq`` re-queues
the ``unresolved_content`` dead letters and exits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hmac
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, Counter

from connectors.agents import AgentIds, config_agent_ids, keep_agent_ids_fresh
from connectors.envelopes import (
    Delivery,
    Endpoint,
    EnvelopeError,
    dead_letter_value,
    parse_classic,
    parse_platform,
    unresolved_value,
)
from connectors.http_limits import (
    BODY_TIMEOUT,
    BODY_TOO_LARGE,
    HttpLimits,
    LimitedAppRunner,
)
from connectors.metrics import ConnectorMetrics, event_type_label
from connectors.publisher import KafkaPublisher, Message, Publisher, PublishError
from connectors.resolver import ContentLookup, Resolver, redrive_unresolved
from connectors.sources import SourceTypes, keep_source_types_fresh
from connectors.subscription import SubscriptionKeeper, renewal_reminder_of
from engage_streams import loops
from engage_streams.record import encode_event
from engage_streams.rest.platform import PlatformApiError, PlatformClient
from engage_streams.settings import Settings, SettingsError
from engage_streams.topics import TopicError, ensure_topics

log = logging.getLogger("connectors.server")

METRICS: Final = web.AppKey("metrics", ConnectorMetrics)
MAX_VALIDATION_TOKEN_CHARS: Final = 1024
METRICS_CACHE_SECONDS: Final = 0.5
Parser = Callable[..., Delivery]


def check_authentication(settings: Settings) -> None:
    """Refuse to run an open receiver by accident (the message names the setting)."""
    if settings.webhook_secret is None and not settings.allow_unauthenticated:
        raise SettingsError(
            "ENGAGE_WEBHOOK_SECRET is not set: set it to the secret configured on the Engage "
            "webhook (sent as X-Dimelo-Secret), or set ENGAGE_ALLOW_UNAUTHENTICATED=1 to accept "
            "unsigned deliveries (development only)"
        )


def create_app(
    settings: Settings,
    publisher: Publisher,
    *,
    metrics: ConnectorMetrics | None = None,
    agent_ids: AgentIds | None = None,
    source_types: SourceTypes | None = None,
    on_renewal_reminder: Callable[[str], Coroutine[Any, Any, None]] | None = None,
) -> web.Application:
    """The connector's aiohttp application (routes only; the publisher is started by the
    caller). ``agent_ids`` maps platform extension ids to Engage user ids (see
    ``connectors.agents``), ``source_types`` source ids to classic source types (see
    ``connectors.sources``); both may grow while the app runs."""
    check_authentication(settings)
    HttpLimits.of(settings)  # refuse unusable limits before serving anything
    receiver = _Receiver(
        settings,
        publisher,
        metrics or ConnectorMetrics(),
        # Not `agent_ids or ...`: the connector's mapping may be empty now and grow later.
        AgentIds() if agent_ids is None else agent_ids,
        SourceTypes() if source_types is None else source_types,
    )
    receiver.on_renewal_reminder = on_renewal_reminder
    app = web.Application()
    app[METRICS] = receiver.metrics
    app.router.add_get("/webhooks/engage", receiver.engage_handshake)
    app.router.add_post("/webhooks/engage", receiver.engage_delivery)
    app.router.add_post("/webhooks/ringcentral", receiver.ringcentral_delivery)
    app.router.add_get("/healthz", receiver.healthz)
    app.router.add_get("/readyz", receiver.readyz)
    app.router.add_get("/metrics", receiver.metrics_page)
    return app


def connector_runner(settings: Settings, app: web.Application) -> web.AppRunner:
    """The runner serving ``app`` (from ``create_app``) within the settings' HTTP limits."""
    metrics = app[METRICS]
    return LimitedAppRunner(
        app,
        HttpLimits.of(settings),
        lambda reason: metrics.rejected.labels(reason).inc(),
        access_log=None,
    )


class _Receiver:
    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        metrics: ConnectorMetrics,
        agent_ids: AgentIds,
        source_types: SourceTypes,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.metrics = metrics
        self.source_types = source_types
        self.parse_platform: Parser = functools.partial(
            parse_platform, agent_ids=agent_ids, source_types=source_types
        )
        #: Set by ``serve`` when a ``SubscriptionKeeper`` runs: the platform's renewal
        #: reminders renew the subscription (in the background) instead of going to the DLQ.
        self.on_renewal_reminder: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._reminders: set[asyncio.Task[None]] = set()
        self._retry_after = str(max(1, math.ceil(settings.publish_timeout_seconds)))
        # label children, looked up once (prometheus_client's labels() takes a lock)
        self._request_counters: dict[tuple[str, int], Counter] = {}
        self._published_counters: dict[str, Counter] = {}
        self._exposition: tuple[float, bytes] | None = None

    # --- Engage classic -------------------------------------------------------------------
    async def engage_handshake(self, request: web.Request) -> web.Response:
        if not self._engage_secret_ok(request):
            return self._refuse("engage", 401, "missing or wrong X-Dimelo-Secret")
        query = request.query
        challenge = query.get("hub.challenge")
        if query.get("hub.mode") != "subscribe" or not challenge:
            return self._refuse("engage", 400, "expected hub.mode=subscribe and a hub.challenge")
        expected = self.settings.verify_token
        if expected is None or not _same(query.get("hub.verify_token"), expected):
            return self._refuse("engage", 403, "hub.verify_token does not match")
        self._count("engage", 200)
        return web.Response(text=challenge, content_type="text/plain")

    async def engage_delivery(self, request: web.Request) -> web.Response:
        if not self._engage_secret_ok(request):
            return self._refuse("engage", 401, "missing or wrong X-Dimelo-Secret")
        return await self._accept("engage", request, self._parse_classic)

    def _parse_classic(self, raw: bytes, *, received_at: datetime, forward_body: bool) -> Delivery:
        delivery = parse_classic(raw, received_at=received_at, forward_body=forward_body)
        self.source_types.note(delivery.records)  # the classic spelling of their channels
        return delivery

    def _engage_secret_ok(self, request: web.Request) -> bool:
        expected = self.settings.webhook_secret
        if expected is None:
            return self.settings.allow_unauthenticated
        return _same(request.headers.get("X-Dimelo-Secret"), expected)

    # --- RingCentral platform -------------------------------------------------------------
    async def ringcentral_delivery(self, request: web.Request) -> web.Response:
        validation = request.headers.get("Validation-Token")
        if validation is not None:
            if len(validation) > MAX_VALIDATION_TOKEN_CHARS:
                return self._refuse("ringcentral", 400, "Validation-Token is too long")
            self._count("ringcentral", 200)
            return web.Response(
                status=200,
                body=b"{}",
                content_type="application/json",
                headers={"Validation-Token": validation},
            )
        expected = self.settings.ringcentral_verification_token
        if expected is None:
            allowed = self.settings.allow_unauthenticated
        else:
            allowed = _same(request.headers.get("Verification-Token"), expected)
        if not allowed:
            return self._refuse("ringcentral", 401, "missing or wrong Verification-Token")
        return await self._accept("ringcentral", request, self._parse_platform_or_reminder)

    def _parse_platform_or_reminder(
        self, raw: bytes, *, received_at: datetime, forward_body: bool
    ) -> Delivery:
        renew = self.on_renewal_reminder
        if renew is not None:
            subscription_id = renewal_reminder_of(raw)
            if subscription_id is not None:
                task = asyncio.create_task(renew(subscription_id), name="renewal-reminder")
                self._reminders.add(task)
                task.add_done_callback(self._reminders.discard)
                return Delivery(records=[], dead_letters=[])
        return self.parse_platform(raw, received_at=received_at, forward_body=forward_body)

    # --- shared delivery path -------------------------------------------------------------
    async def _accept(
        self, endpoint: Endpoint, request: web.Request, parse: Parser
    ) -> web.Response:
        body_timeout = self.settings.connector_body_timeout_seconds
        limit = self.settings.max_body_bytes
        try:
            # A small body usually came with the headers: taken at once, with no deadline
            # to arm (a timer per delivery is ~4 % of the connector's CPU).
            complete, raw = _complete_body(request, limit)
            if not complete:
                async with asyncio.timeout(body_timeout):
                    raw = await _read_bounded(request, limit)
        except TimeoutError:
            self.metrics.rejected.labels(BODY_TIMEOUT).inc()
            response = self._refuse(endpoint, 408, f"body not received within {body_timeout} s")
            response.force_close()
            # Answer, then close at once: aiohttp would otherwise wait (lingering) for the rest
            # of a body that the client is only trickling.
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()
            return response
        if raw is None:
            self.metrics.rejected.labels(BODY_TOO_LARGE).inc()
            response = self._refuse(
                endpoint, 413, f"body larger than {self.settings.max_body_bytes} bytes"
            )
            response.force_close()  # do not read the rest of an oversized body
            return response
        received_at = datetime.now(UTC)
        try:
            delivery: Delivery = parse(
                raw, received_at=received_at, forward_body=self.settings.forward_body
            )
        except EnvelopeError as error:
            return self._refuse(endpoint, 400, str(error))
        topic = self.settings.topic
        messages = [
            Message(topic, record.thread_id.encode(), encode_event(record))
            for record in delivery.records
        ]
        dlq_topic = self.settings.dlq_topic
        messages.extend(
            Message(
                dlq_topic, None, dead_letter_value(item, endpoint=endpoint, received_at=received_at)
            )
            for item in delivery.dead_letters
        )
        unresolved_topic = self.settings.unresolved_topic
        messages.extend(
            Message(
                unresolved_topic,
                item.content_id.encode(),
                unresolved_value(item, received_at=received_at),
            )
            for item in delivery.unresolved
        )
        if messages:
            started = time.perf_counter()
            try:
                await self.publisher.publish(
                    messages, within_seconds=self.settings.publish_timeout_seconds
                )
            except PublishError as error:
                self._count(endpoint, 503)
                log.warning(
                    "event=publish_failed endpoint=%s events=%d error=%r",
                    endpoint,
                    len(messages),
                    str(error),
                )
                return _json(
                    503,
                    {"error": "Kafka is unavailable, retry later"},
                    headers={"Retry-After": self._retry_after},
                )
            self.metrics.publish_latency.observe(time.perf_counter() - started)
        for record in delivery.records:
            self._published(record.event_type).inc()
        for item in delivery.dead_letters:
            self.metrics.dead_letters.labels(item.reason).inc()
            log.info("event=dead_letter endpoint=%s reason=%s", endpoint, item.reason)
        if delivery.unresolved:
            self.metrics.unresolved.labels("queued").inc(len(delivery.unresolved))
        if delivery.platform_shape is not None:
            self.metrics.platform_notifications.labels(delivery.platform_shape).inc()
        self._count(endpoint, 200)
        return web.Response(
            body=_accepted_body(
                len(delivery.records), len(delivery.dead_letters), len(delivery.unresolved)
            ),
            content_type="application/json",
        )

    # --- operations -----------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if await self.publisher.ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: Kafka is unreachable\n")

    async def metrics_page(self, request: web.Request) -> web.Response:
        # Rendered at most once per METRICS_CACHE_SECONDS: a client pipelining /metrics (a
        # slow reader) must not turn into CPU taken from the deliveries.
        now = time.monotonic()
        if self._exposition is None or now - self._exposition[0] >= METRICS_CACHE_SECONDS:
            self._exposition = (now, self.metrics.exposition())
        return web.Response(body=self._exposition[1], headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _count(self, endpoint: Endpoint, code: int) -> None:
        child = self._request_counters.get((endpoint, code))
        if child is None:
            child = self._request_counters[endpoint, code] = self.metrics.requests.labels(
                endpoint, str(code)
            )
        child.inc()

    def _published(self, event_type: str) -> Counter:
        label = event_type_label(event_type)  # a bounded set of values
        child = self._published_counters.get(label)
        if child is None:
            child = self._published_counters[label] = self.metrics.published.labels(label)
        return child

    def _refuse(self, endpoint: Endpoint, code: int, message: str) -> web.Response:
        self._count(endpoint, code)
        log.warning("event=request_refused endpoint=%s code=%d reason=%r", endpoint, code, message)
        return _json(code, {"error": message})


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the configured one."""
    if given is None:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _complete_body(request: web.Request, limit: int) -> tuple[bool, bytes | None]:
    """``(True, body)`` when the body is known without waiting (``None`` when it is over
    ``limit``: declared so, or complete and longer), else ``(False, None)``."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return True, None
    content = request.content
    if content.is_eof():  # small bodies arrive with the headers: already complete
        whole = content.read_nowait()
        return True, (whole if len(whole) <= limit else None)
    return False, None


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The body that ``_complete_body`` found incomplete, or ``None`` as soon as it is known
    to exceed ``limit`` bytes (the caller bounds the time: a client trickling its body must
    not hold a connection for ever)."""
    content = request.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


@functools.lru_cache(maxsize=1024)
def _accepted_body(published: int, dead_lettered: int, queued: int) -> bytes:
    answer = {"published": published, "dead_lettered": dead_lettered}
    if queued:
        answer["queued_unresolved"] = queued
    return orjson.dumps(answer)


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


# --- process entry point ------------------------------------------------------------------


def main(settings: Settings, argv: list[str]) -> int:
    """``engage-streams connector``: serve the webhooks until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="engage-streams connector",
        description="Receive Engage Digital / RingCentral webhooks and publish them to Kafka.",
        epilog="settings (environment, current value):\n"
        + "\n".join(
            f"  {k}={v}" for k, v in settings.describe().items() if k in CONNECTOR_SETTINGS
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="listen address (CONNECTOR_HOST)")
    parser.add_argument("--port", type=int, help="listen port (CONNECTOR_PORT)")
    parser.add_argument("--bootstrap-servers", help="Kafka brokers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument(
        "--redrive-dlq",
        action="store_true",
        help="queue the unresolved_content dead letters again for the resolver, then exit",
    )
    args = parser.parse_args(argv)
    if args.host:
        settings = replace(settings, connector_host=args.host)
    if args.port is not None:
        settings = replace(settings, connector_port=args.port)
    if args.bootstrap_servers:
        settings = replace(settings, kafka_bootstrap_servers=args.bootstrap_servers)
    if args.redrive_dlq:
        return _redrive(settings)
    try:
        check_authentication(settings)
        HttpLimits.of(settings)
    except SettingsError as error:
        print(f"engage-streams connector: {error}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        )
        # One line per platform API request (each resolved notification) is noise; the
        # platform client logs retries and failures itself.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    return loops.run(serve(settings), settings.event_loop)


def _redrive(settings: Settings) -> int:
    try:
        queued = asyncio.run(redrive_unresolved(settings))
    except (KafkaError, OSError, TimeoutError) as error:
        print(
            f"engage-streams connector --redrive-dlq: Kafka failed ({type(error).__name__}); "
            "check KAFKA_BOOTSTRAP_SERVERS",
            file=sys.stderr,
        )
        return 1
    print(f"queued {queued} unresolved notification(s) again on {settings.unresolved_topic}")
    return 0


CONNECTOR_SETTINGS: Final = (
    "KAFKA_BOOTSTRAP_SERVERS", "ENGAGE_TOPIC", "ENGAGE_DLQ_TOPIC", "ENGAGE_UNRESOLVED_TOPIC",
    "ENGAGE_RESOLVER_GROUP", "ENGAGE_RESOLVER_ATTEMPTS", "ENGAGE_RESOLVER_INITIAL_DELAY_SECONDS",
    "ENGAGE_RESOLVER_MAX_DELAY_SECONDS", "ENGAGE_RESOLVER_CONCURRENCY", "CONNECTOR_HOST",
    "CONNECTOR_PORT", "ENGAGE_WEBHOOK_SECRET", "ENGAGE_ALLOW_UNAUTHENTICATED",
    "ENGAGE_VERIFY_TOKEN", "RINGCENTRAL_VERIFICATION_TOKEN", "ENGAGE_FORWARD_BODY",
    "ENGAGE_MAX_BODY_BYTES", "ENGAGE_PUBLISH_TIMEOUT_SECONDS", "ENGAGE_TOPIC_PARTITIONS",
    "ENGAGE_TOPIC_REPLICATION", "CONNECTOR_MAX_HEADER_BYTES", "CONNECTOR_MAX_HEADERS",
    "CONNECTOR_HEADER_TIMEOUT_SECONDS", "CONNECTOR_BODY_TIMEOUT_SECONDS",
    "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS", "CONNECTOR_MAX_CONNECTIONS", "ENGAGE_AGENTS_CONFIG",
    "ENGAGE_EVENT_LOOP",
)  # fmt: skip


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    lookup: ContentLookup | None = None,
    signals: bool = True,
) -> int:
    """Run the connector until ``stop`` is set (or a termination signal arrives).

    ``lookup`` fetches contents for the resolver; by default the platform client built from
    the ``RINGCENTRAL_*`` settings (none when they are unset: thin notifications then stay
    queued and the resolver says so).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    metrics = ConnectorMetrics()
    try:
        publisher = await _start_publisher(
            settings, deadline_seconds=30.0, stop=stop, on_renewed=metrics.producer_renewals.inc
        )
    except (KafkaError, OSError) as error:
        log.error(
            "event=kafka_unreachable bootstrap=%s error=%s (check KAFKA_BOOTSTRAP_SERVERS)",
            settings.kafka_bootstrap_servers,
            type(error).__name__,
        )
        return 1
    try:
        await ensure_topics(settings, {settings.unresolved_topic: settings.topic_partitions})
    except (KafkaError, OSError, TopicError) as error:
        log.error(
            "event=kafka_unreachable bootstrap=%s error=%s (check KAFKA_BOOTSTRAP_SERVERS)",
            settings.kafka_bootstrap_servers,
            type(error).__name__,
        )
        await publisher.stop()
        return 1
    try:
        agent_ids = AgentIds(config_agent_ids(settings.agents_config))
    except SettingsError as error:
        log.error("event=agents_config_unusable error=%r", str(error))
        await publisher.stop()
        return 2
    log.info("event=agent_ids_configured agents=%d", len(agent_ids))
    platform_client: PlatformClient | None = None
    if lookup is None:
        platform_client = _platform_client(settings, metrics)
        lookup = platform_client
    source_types = SourceTypes()
    resolver = Resolver(
        settings, lookup, publisher, metrics, agent_ids=agent_ids, source_types=source_types
    )
    keeper = await _start_keeper(settings, platform_client, metrics)
    runner = connector_runner(
        settings,
        create_app(
            settings,
            publisher,
            metrics=metrics,
            agent_ids=agent_ids,
            source_types=source_types,
            on_renewal_reminder=None if keeper is None else keeper.on_renewal_reminder,
        ),
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.connector_host, settings.connector_port)
    background = [
        asyncio.create_task(resolver.run_supervised(stop), name="resolver"),
        asyncio.create_task(keep_agent_ids_fresh(settings, agent_ids, stop), name="agent-ids"),
        asyncio.create_task(
            keep_source_types_fresh(settings, source_types, stop), name="source-types"
        ),
    ]
    try:
        await site.start()
        log.info(
            "event=connector_started url=http://%s:%d topic=%s dlq=%s forward_body=%s",
            settings.connector_host,
            settings.connector_port,
            settings.topic,
            settings.dlq_topic,
            settings.forward_body,
        )
        await _wait_or_fail(stop, background)
    finally:
        stop.set()
        await runner.cleanup()
        await _finish(background, grace_seconds=5.0)
        if keeper is not None:
            await keeper.stop()
        if platform_client is not None:
            await platform_client.aclose()
        await publisher.stop()
        if signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    log.info("event=connector_stopped")
    return 0


async def _wait_or_fail(stop: asyncio.Event, background: list[asyncio.Task[None]]) -> None:
    """Wait for ``stop``. A background task that dies (a bug) is logged, never silently: the
    connector keeps serving webhooks, since thin notifications stay queued in Kafka whatever
    happens to the resolver (which restarts by itself after Kafka errors)."""
    stopping = asyncio.create_task(stop.wait())
    waiting: set[asyncio.Future[Any]] = {stopping, *background}
    try:
        while not stop.is_set():
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopping or task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    log.error(
                        "event=background_task_failed task=%s error=%s",
                        getattr(task, "get_name", lambda: "?")(),
                        type(error).__name__,
                        exc_info=error,
                    )
    finally:
        stopping.cancel()


async def _finish(tasks: list[asyncio.Task[None]], *, grace_seconds: float) -> None:
    """Let background tasks end by themselves (``stop`` is set), then cancel the rest."""
    _, late = await asyncio.wait(tasks, timeout=grace_seconds)
    for task in late:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _start_keeper(
    settings: Settings, platform: PlatformClient | None, metrics: ConnectorMetrics
) -> SubscriptionKeeper | None:
    """Keep the platform webhook subscription alive while the connector runs, when the
    platform API and ``RINGCENTRAL_WEBHOOK_URL`` are configured. A platform that cannot be
    reached now is logged: webhooks keep being served, subscriptions can be made by hand."""
    if platform is None:
        return None
    keeper = SubscriptionKeeper.from_settings(settings, platform, registry=metrics.registry)
    if keeper is None:
        return None
    try:
        await keeper.start()
    except PlatformApiError as error:
        log.warning("event=subscription_not_kept error=%r (engage-streams subscribe)", str(error))
        return None
    log.info("event=subscription_kept subscription=%s", keeper.subscription_id)
    return keeper


def _platform_client(settings: Settings, metrics: ConnectorMetrics) -> PlatformClient | None:
    """The platform REST client for the resolver, or ``None`` (with the reason logged) when
    its ``RINGCENTRAL_*`` settings are incomplete."""
    try:
        return PlatformClient.from_settings(settings, registry=metrics.registry)
    except SettingsError as error:
        log.info("event=platform_api_not_configured reason=%r", str(error))
        return None


async def _start_publisher(
    settings: Settings,
    *,
    deadline_seconds: float,
    stop: asyncio.Event,
    on_renewed: Callable[[], object] | None = None,
) -> KafkaPublisher:
    """A started publisher; retries while the broker is still coming up (e.g. in the demo)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        publisher = KafkaPublisher(
            settings.kafka_bootstrap_servers,
            request_timeout_seconds=max(15.0, settings.publish_timeout_seconds),
            on_renewed=on_renewed,
        )
        try:
            await publisher.start()
            return publisher
        except KafkaError:
            await publisher.stop()
            if time.monotonic() > deadline or stop.is_set():
                raise
            await asyncio.sleep(1.0)
