"""``engage-streams simulate``: live contact-center traffic, sent as signed webhooks.

Plays ``simulator.scenario`` (customers writing, agents answering after realistic delays,
automatic welcome messages, the same content delivered by several events, redeliveries,
arrival races) against a running connector, in real time compressed by ``--speed``: a
scenario that spans ``--span`` seconds is played in ``span / speed`` seconds, and every time
in it (event times included) is mapped onto the wall clock the same way, so response times
shrink by the same factor. A new round (next seed, new ids) starts every ``span / speed``
seconds until ``--duration`` is over (or after one round with ``--once``).

Most events go as classic Engage deliveries (``X-Dimelo-Secret``), events that arrive in the
same instant share one delivery; ``--platform-share`` of them go as RingCentral platform
notifications when ``RINGCENTRAL_VERIFICATION_TOKEN`` is set: nested (``body.resource``), flat,
and -- with ``--platform-api URL``, the fake platform API (``simulator.platform_api``) that is
handed every content before it is notified -- thin (only the content id, for the connector to
fetch). An agent's platform contents carry the agent's RingCentral extension id as
``creatorId`` (``rc_user_id`` of ``ENGAGE_AGENTS_CONFIG``), as the platform does. Failed
deliveries are retried like Engage does (with back-off). Customers' words are invented here,
never real.
``--no-replies`` plays the customers only (agents stop answering): the backlog grows, for
rehearsing what the dashboards and the backlog alert show then.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import msgspec
import orjson

from engage_streams.agents_config import extension_ids_of_config
from engage_streams.record import ContentEvent
from engage_streams.settings import Settings
from simulator.deliveries import PLATFORM_SHAPES, classic_envelope, platform_envelope
from simulator.platform_api import JWT_GRANT, SIMULATOR_CONTENTS_PATH, FakePlatform, served_content
from simulator.scenario import ScenarioConfig, generate

log = logging.getLogger("simulator.simulate")

CUSTOMER_LINES = (
    "Hi, my order has not arrived yet, can you check?",
    "Is the store open on Sunday?",
    "I was charged twice for the same purchase.",
    "How do I change my delivery address?",
    "Thanks, that helps!",
)
AGENT_LINES = (
    "Hello! Let me check that for you.",
    "I have refunded the second charge, you will see it in 3 days.",
    "Yes, 10:00 to 16:00 on Sundays.",
)


@dataclass(frozen=True, kw_only=True)
class SimulationOptions:
    """How to play the traffic (defaults: the demo's)."""

    url: str
    speed: float = 10.0
    threads: int = 60
    span_seconds: float = 1800.0
    seed: int = 1
    once: bool = False
    duration_seconds: float | None = None
    platform_share: float = 0.2
    concurrency: int = 16
    max_attempts: int = 8
    replies: bool = True  # False: agents stop answering, only customer contents are sent
    #: The fake platform API (``simulator.platform_api``) to hand every content to before it
    #: is notified; with it, platform notifications may be thin (only the content id).
    platform_api_url: str | None = None
    #: Agent id -> RingCentral extension id: the ``creatorId`` of the agent's platform contents.
    creator_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SimulationReport:
    """What was sent: deliveries answered 200, events in them, ids sent, failures, and the
    platform notifications answered 200 by shape (``nested``, ``flat``, ``thin``)."""

    deliveries: int = 0
    events: int = 0
    failed: int = 0
    event_ids: set[str] = field(default_factory=set)
    platform_shapes: collections.Counter[str] = field(default_factory=collections.Counter)
    contents_held: int = 0  # contents handed to the fake platform API


async def simulate(settings: Settings, options: SimulationOptions) -> SimulationReport:
    """Play rounds of the scenario against ``options.url``; returns what was delivered."""
    report = SimulationReport()
    started = time.monotonic()
    stop_at = None if options.duration_seconds is None else started + options.duration_seconds
    round_seconds = options.span_seconds / options.speed
    rng = random.Random(options.seed)
    route = random.Random(options.seed + 1)
    share = options.platform_share
    queue: list[tuple[float, int, ContentEvent]] = []  # (monotonic send time, seq, event)
    order = itertools.count()
    limit = asyncio.Semaphore(options.concurrency)
    sending: set[asyncio.Task[None]] = set()
    use_platform = settings.ringcentral_verification_token is not None
    # Thin notifications only when their content can be fetched from the platform API.
    shapes = PLATFORM_SHAPES if options.platform_api_url else ("nested", "flat")
    async with (
        httpx.AsyncClient(base_url=options.url.rstrip("/"), timeout=30.0) as client,
        _FakeApiFeeder.of(settings, options) as feeder,
    ):
        for round_number in itertools.count():
            round_start = started + round_number * round_seconds
            if stop_at is not None and round_start >= stop_at:
                break
            if round_number == 0 or not options.once:
                for event in _round_events(options, round_number, round_start):
                    send_at = _monotonic_of(event.received_at)
                    heapq.heappush(queue, (send_at, next(order), event))
            next_round = round_start + round_seconds
            while queue and (options.once or queue[0][0] < next_round):
                send_at, _, first = heapq.heappop(queue)
                if stop_at is not None and send_at >= stop_at:
                    queue.clear()
                    break
                await asyncio.sleep(max(0.0, send_at - time.monotonic()))
                batch = [first]  # everything due now travels in one delivery
                while queue and queue[0][0] <= time.monotonic() and len(batch) < 20:
                    batch.append(heapq.heappop(queue)[2])
                batch = [_with_words(e, rng) for e in batch]
                # Which API carries an event is drawn per event (its own generator), so the
                # split does not depend on how many events the clock put in one delivery.
                platform = [e for e in batch if use_platform and route.random() < share]
                classic = [e for e in batch if e not in platform]
                chosen = {e.event_id: route.choice(shapes) for e in platform}
                if feeder is not None and not await feeder.hold(batch, report):
                    chosen = {k: "nested" if v == "thin" else v for k, v in chosen.items()}
                bodies: list[tuple[str, bytes, list[ContentEvent], str | None]] = []
                for e in platform:
                    raw = platform_envelope(
                        e, shape=chosen[e.event_id], creator_ids=options.creator_ids
                    )
                    bodies.append(("ringcentral", raw, [e], chosen[e.event_id]))
                if classic:
                    body = classic_envelope(classic, delivery_id=f"{rng.getrandbits(64):016x}")
                    bodies.append(("engage", body, classic, None))
                for endpoint, raw, events, shape in bodies:
                    await limit.acquire()
                    task = asyncio.create_task(
                        _deliver(client, settings, options, endpoint, raw, events, report, shape)
                    )
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                    task.add_done_callback(lambda _: limit.release())
            if options.once and not queue:
                break
            if not queue:
                await asyncio.sleep(max(0.0, next_round - time.monotonic()))
        if sending:
            await asyncio.gather(*sending)
    return report


def _round_events(
    options: SimulationOptions, round_number: int, round_start: float
) -> list[ContentEvent]:
    """The scenario of one round, its times mapped onto the wall clock from ``round_start``."""
    config = ScenarioConfig(
        seed=options.seed + round_number,
        threads=options.threads,
        span_seconds=options.span_seconds,
    )
    base = config.base_time
    wall_start = time.time() + (round_start - time.monotonic())

    def wall(moment: datetime) -> datetime:
        return datetime.fromtimestamp(wall_start + (moment.timestamp() - base) / options.speed, UTC)

    return [
        msgspec.structs.replace(
            event, event_time=wall(event.event_time), received_at=wall(event.received_at)
        )
        for event in generate(config)
        if options.replies or event.agent_id is None
    ]


def _monotonic_of(moment: datetime) -> float:
    return time.monotonic() + (moment.timestamp() - time.time())


def _with_words(event: ContentEvent, rng: random.Random) -> ContentEvent:
    if event.automatic:
        words = "Welcome! An agent will be with you shortly."
    else:
        words = rng.choice(AGENT_LINES if event.direction == "outbound" else CUSTOMER_LINES)
    return msgspec.structs.replace(event, body=words)


async def _deliver(
    client: httpx.AsyncClient,
    settings: Settings,
    options: SimulationOptions,
    endpoint: str,
    raw: bytes,
    events: list[ContentEvent],
    report: SimulationReport,
    shape: str | None = None,
) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": "engage-streams-simulate"}
    if endpoint == "engage":
        path = "/webhooks/engage"
        if settings.webhook_secret is not None:
            headers["X-Dimelo-Secret"] = settings.webhook_secret
    else:
        path = "/webhooks/ringcentral"
        headers["Verification-Token"] = settings.ringcentral_verification_token or ""
    for attempt in range(options.max_attempts):
        try:
            response = await client.post(path, content=raw, headers=headers)
            if response.status_code == 200:
                report.deliveries += 1
                report.events += len(events)
                report.event_ids.update(e.event_id for e in events)
                if shape is not None:
                    report.platform_shapes[shape] += 1
                return
            if response.status_code in (400, 401, 403, 413):  # retrying will not help
                log.warning("event=delivery_refused code=%d", response.status_code)
                break
        except httpx.HTTPError as error:
            log.info("event=delivery_failed error=%s attempt=%d", type(error).__name__, attempt)
        await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
    report.failed += 1


class _FakeApiFeeder:
    """Hands the fake platform API the contents about to be notified (JWT grant for a token,
    a new one on 401), so what a notification names can be fetched there."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings, creator_ids: Mapping[str, str]):
        self.http = http
        self.credentials = (
            settings.ringcentral_client_id or FakePlatform.client_id,
            settings.ringcentral_client_secret or FakePlatform.client_secret,
        )
        self.jwt = settings.ringcentral_jwt or FakePlatform.jwt
        self.creator_ids = creator_ids
        self.token: str | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def of(
        cls, settings: Settings, options: SimulationOptions
    ) -> AsyncIterator[_FakeApiFeeder | None]:
        if options.platform_api_url is None:
            yield None
            return
        base_url = options.platform_api_url.rstrip("/")
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
            yield cls(http, settings, options.creator_ids)

    async def hold(self, events: list[ContentEvent], report: SimulationReport) -> bool:
        """True once the fake holds the contents of ``events`` (False after a few tries)."""
        contents = [served_content(e, creator_ids=self.creator_ids) for e in events]
        raw = orjson.dumps(contents)
        for attempt in range(4):
            try:
                if self.token is None:
                    self.token = await self._new_token()
                response = await self.http.post(
                    SIMULATOR_CONTENTS_PATH,
                    content=raw,
                    headers={
                        "Authorization": f"Bearer {self.token}",
                        "Content-Type": "application/json",
                    },
                )
                if response.status_code == 200:
                    report.contents_held += len(contents)
                    return True
                if response.status_code == 401:
                    self.token = None
                    continue
                log.warning("event=platform_api_refused code=%d", response.status_code)
            except (httpx.HTTPError, KeyError, ValueError) as error:
                log.info("event=platform_api_failed error=%s attempt=%d", type(error).__name__,
                         attempt)  # fmt: skip
            await asyncio.sleep(0.2 * 2**attempt)
        return False

    async def _new_token(self) -> str:
        response = await self.http.post(
            "/restapi/oauth/token",
            data={"grant_type": JWT_GRANT, "assertion": self.jwt},
            auth=self.credentials,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def main(settings: Settings, args: list[str]) -> int:
    """``engage-streams simulate [--url URL] [--speed 10] [--once] [--duration S]``."""
    parser = argparse.ArgumentParser(
        prog="engage-streams simulate",
        description="Send realistic contact-center traffic as signed webhooks to a connector. "
        "Uses ENGAGE_WEBHOOK_SECRET (X-Dimelo-Secret) and RINGCENTRAL_VERIFICATION_TOKEN.",
    )
    parser.add_argument(
        "--url",
        default=f"http://{settings.connector_host}:{settings.connector_port}",
        help="the connector (default: CONNECTOR_HOST:CONNECTOR_PORT)",
    )
    parser.add_argument("--speed", type=float, default=10.0, help="time compression (10)")
    parser.add_argument("--threads", type=int, default=60, help="conversations per round (60)")
    parser.add_argument("--span", type=float, default=1800.0, help="scenario seconds per round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--once", action="store_true", help="play one round, then exit")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--platform-share",
        type=float,
        default=0.2,
        help="share of events sent as RingCentral platform notifications (0.2), nested and "
        "flat; thin ones too with --platform-api (needs RINGCENTRAL_VERIFICATION_TOKEN)",
    )
    parser.add_argument(
        "--platform-api",
        metavar="URL",
        help="the fake platform API (python -m simulator.platform_api) to hand each content "
        "to before notifying it (RINGCENTRAL_CLIENT_ID/_SECRET/_JWT, else the fake's defaults)",
    )
    parser.add_argument(
        "--no-replies",
        action="store_true",
        help="agents stop answering: send customer contents only (the backlog grows)",
    )
    parsed = parser.parse_args(args)
    if parsed.speed <= 0:
        parser.error("--speed must be positive")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="level=%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    options = SimulationOptions(
        url=parsed.url,
        speed=parsed.speed,
        threads=parsed.threads,
        span_seconds=parsed.span,
        seed=parsed.seed,
        once=parsed.once,
        duration_seconds=parsed.duration,
        platform_share=parsed.platform_share,
        replies=not parsed.no_replies,
        platform_api_url=parsed.platform_api,
        # The agents' extension ids (rc_user_id of ENGAGE_AGENTS_CONFIG): platform creatorIds.
        creator_ids={
            agent: extension
            for extension, agent in extension_ids_of_config(settings.agents_config).items()
        },
    )
    print(f"simulating traffic to {options.url} (speed x{options.speed:g}); Ctrl-C stops")
    try:
        report = asyncio.run(simulate(settings, options))
    except KeyboardInterrupt:
        return 130
    shapes = ", ".join(f"{n} {shape}" for shape, n in sorted(report.platform_shapes.items()))
    print(
        f"sent {report.events} events in {report.deliveries} deliveries, {report.failed} failed"
        f" (platform notifications: {shapes or 'none'})"
    )
    return 0 if report.failed == 0 else 1
