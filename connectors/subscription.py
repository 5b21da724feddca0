"""The RingCentral platform webhook subscription that feeds ``/webhooks/ringcentral``.

Owns two things:

* ``engage-streams subscribe create|list|renew|delete`` (``main``): one WebHook subscription
  per connector address for the Advanced Messaging content events (``Imported``,
  ``Exported``, ``DiscussionInitiated``, plus the platform's renewal reminder), delivering to
  ``--address`` (else ``RINGCENTRAL_WEBHOOK_URL``) with ``RINGCENTRAL_VERIFICATION_TOKEN`` as
  its verification token. ``create`` renews instead of duplicating when the address already
  has one (the platform allows only 20 per user and app).
* ``SubscriptionKeeper``: an asyncio task a running connector uses so the deployment never
  goes deaf: it adopts (or creates) the address's subscription at start, renews it well before
  it expires, renews at once on the platform's renewal reminder (``on_renewal_reminder``),
  and creates a new one when the platform has dropped it. It exports
  ``engage_subscription_expires_in_seconds`` when given a registry.

Several connectors behind one address share one subscription: each keeper adopts it and
renews it (renewing twice is harmless). Nothing here reads or writes Kafka; the verification
token is never printed or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from engage_streams.rest.platform import (
    DEFAULT_API_PREFIX,
    PlatformApiError,
    PlatformClient,
    PlatformNotFound,
)
from engage_streams.settings import Settings, SettingsError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("connectors.subscription")

CONTENT_EVENTS: Final = ("Imported", "Exported", "DiscussionInitiated")
RENEWAL_REMINDER_PREFIX: Final = "/restapi/v1.0/subscription/~"
DEFAULT_EXPIRES_IN: Final = 7 * 24 * 3600
RENEW_MARGIN_SECONDS: Final = 24 * 3600.0


def content_event_filters(api_prefix: str = DEFAULT_API_PREFIX) -> list[str]:
    """The content event filters the connector subscribes to."""
    return [f"/{api_prefix.strip('/')}/contents/{event}" for event in CONTENT_EVENTS]


def renewal_reminder_filter(threshold_seconds: int = 86400, interval_seconds: int = 3600) -> str:
    """The platform's renewal reminder: notified ``threshold`` s before expiry, every
    ``interval`` s until renewed."""
    return f"{RENEWAL_REMINDER_PREFIX}?threshold={threshold_seconds}&interval={interval_seconds}"


def event_filters(api_prefix: str = DEFAULT_API_PREFIX) -> list[str]:
    """Everything ``subscribe create`` asks for: the content events and the reminder."""
    return [*content_event_filters(api_prefix), renewal_reminder_filter()]


def is_renewal_reminder(event: str) -> bool:
    """True for the ``event`` of a platform renewal-reminder notification."""
    return event.startswith(RENEWAL_REMINDER_PREFIX)


def is_ours(subscription: dict[str, Any], address: str | None = None) -> bool:
    """A subscription delivering our content events (to ``address``, when given)."""
    filters = subscription.get("eventFilters")
    if not isinstance(filters, list):
        return False
    if not any(str(f).endswith(f"/contents/{event}") for f in filters for event in CONTENT_EVENTS):
        return False
    if address is None:
        return True
    mode = subscription.get("deliveryMode")
    return isinstance(mode, dict) and mode.get("address") == address


def describe(subscription: dict[str, Any]) -> str:
    """One line for people: id, status, expiry, address, events (never the token)."""
    mode = subscription.get("deliveryMode")
    address = mode.get("address") if isinstance(mode, dict) else None
    events = ",".join(
        "RenewalReminder" if is_renewal_reminder(str(f)) else str(f).rsplit("/", 1)[-1]
        for f in subscription.get("eventFilters", [])
    )
    return (
        f"{subscription.get('id')} {subscription.get('status', '?')} "
        f"expires={subscription.get('expirationTime', '?')} "
        f"(in {subscription.get('expiresIn', '?')} s) address={address} events={events}"
    )


async def find_or_create(
    platform: PlatformClient,
    address: str,
    verification_token: str,
    *,
    filters: Sequence[str] | None = None,
    expires_in: int = DEFAULT_EXPIRES_IN,
) -> tuple[dict[str, Any], bool]:
    """The address's subscription, renewed, or a new one; and whether it was created."""
    for subscription in await platform.list_subscriptions():
        if is_ours(subscription, address) and subscription.get("status", "Active") == "Active":
            with contextlib.suppress(PlatformNotFound):  # expired between list and renew
                return await platform.renew_subscription(str(subscription["id"])), False
    created = await platform.create_subscription(
        address, verification_token, list(filters or event_filters()), expires_in
    )
    return created, True


class SubscriptionKeeper:
    """Keeps the connector's platform subscription alive while the connector runs.

    >>> # keeper = SubscriptionKeeper(platform, address=url, verification_token=token,
    >>> #                             registry=metrics.registry)
    >>> # await keeper.start()      # adopts or creates the subscription, then renews it
    >>> # ... a renewal-reminder notification arrives:
    >>> # await keeper.on_renewal_reminder(envelope["subscriptionId"])
    >>> # await keeper.stop()

    Renews ``min(renew_margin_seconds, lifetime / 3)`` before expiry; a failed renewal is
    retried with backoff (at most ``max_retry_seconds`` apart) and a subscription the platform
    no longer knows is created again.
    """

    def __init__(
        self,
        platform: PlatformClient,
        *,
        address: str,
        verification_token: str,
        filters: Sequence[str] | None = None,
        expires_in: int = DEFAULT_EXPIRES_IN,
        renew_margin_seconds: float = RENEW_MARGIN_SECONDS,
        max_retry_seconds: float = 300.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._platform = platform
        self._address = address
        self._token = verification_token
        self._filters = list(filters or event_filters())
        self._expires_in = expires_in
        self._margin = renew_margin_seconds
        self._max_retry = max_retry_seconds
        self._registry = registry
        self._gauge_registered = False
        self._clock = clock
        self._sleep = sleep
        self._subscription_id: str | None = None
        self._expires_at: float | None = None
        self._lifetime = float(expires_in)
        self._rescheduled = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0
        self.creations = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, platform: PlatformClient, **options: Any
    ) -> SubscriptionKeeper | None:
        """The connector's keeper, or ``None`` when ``RINGCENTRAL_WEBHOOK_URL`` or
        ``RINGCENTRAL_VERIFICATION_TOKEN`` is unset (subscriptions managed by hand)."""
        address = settings.ringcentral_webhook_url
        token = settings.ringcentral_verification_token
        if not address or not token:
            return None
        return cls(platform, address=address, verification_token=token, **options)

    @property
    def subscription_id(self) -> str | None:
        return self._subscription_id

    def expires_in_seconds(self) -> float:
        """Seconds until the subscription expires (NaN before one is known)."""
        if self._expires_at is None:
            return math.nan
        return max(0.0, self._expires_at - self._clock())

    async def start(self) -> None:
        """Adopt or create the subscription (raises ``PlatformApiError``), then keep it."""
        subscription, created = await find_or_create(
            self._platform,
            self._address,
            self._token,
            filters=self._filters,
            expires_in=self._expires_in,
        )
        self._adopt(subscription, created=created)
        self._task = asyncio.create_task(self._keep(), name="platform-subscription-keeper")

    async def stop(self) -> None:
        """Stop renewing (the subscription itself stays: the next start adopts it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def on_renewal_reminder(self, subscription_id: str) -> None:
        """The platform says ``subscription_id`` expires soon: renew it now if it is ours."""
        if subscription_id != self._subscription_id:
            log.info("event=renewal_reminder_ignored reason=not_this_connectors_subscription")
            return
        await self._renew()

    async def _keep(self) -> None:
        failures = 0
        while True:
            await self._wait(self._seconds_to_renewal())
            if self._seconds_to_renewal() > 0:
                continue  # renewed meanwhile (a reminder): sleep again until the new time
            try:
                await self._renew(only_if_due=True)
                failures = 0
            except PlatformApiError as error:
                failures += 1
                wait = min(self._max_retry, 5.0 * 2 ** (failures - 1))
                log.warning("event=subscription_renewal_failed error=%r retry_in=%.0f",
                            str(error), wait)  # fmt: skip
                await self._wait(wait)

    async def _renew(self, *, only_if_due: bool = False) -> None:
        # One renewal at a time: the loop and a reminder racing on a lost subscription must
        # not create two new ones.
        async with self._lock:
            if only_if_due and self._seconds_to_renewal() > 0:
                return
            await self._renew_now()

    async def _renew_now(self) -> None:
        assert self._subscription_id is not None
        try:
            subscription = await self._platform.renew_subscription(self._subscription_id)
            self._adopt(subscription, created=False)
        except PlatformNotFound:
            log.warning("event=subscription_lost id=%s action=create", self._subscription_id)
            subscription = await self._platform.create_subscription(
                self._address, self._token, self._filters, self._expires_in
            )
            self._adopt(subscription, created=True)

    def _adopt(self, subscription: dict[str, Any], *, created: bool) -> None:
        self._subscription_id = str(subscription["id"])
        expires_in = subscription.get("expiresIn")
        seconds = float(expires_in) if isinstance(expires_in, int | float) else None
        if seconds is None:
            seconds = _seconds_until(subscription.get("expirationTime"), self._clock())
        self._expires_at = self._clock() + (seconds if seconds is not None else self._lifetime)
        if seconds:  # a fresh or renewed subscription has its whole lifetime ahead
            self._lifetime = seconds
        if created:
            self.creations += 1
        else:
            self.renewals += 1
        self._rescheduled.set()
        self._register_gauge()
        log.info("event=subscription_%s id=%s expires_in=%.0f",
                 "created" if created else "renewed", self._subscription_id,
                 self.expires_in_seconds())  # fmt: skip

    def _seconds_to_renewal(self) -> float:
        if self._expires_at is None:
            return 0.0
        margin = min(self._margin, self._lifetime / 3)
        return self._expires_at - margin - self._clock()

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the expiry moved (a renewal by the reminder)."""
        self._rescheduled.clear()
        if seconds <= 0:
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._rescheduled.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _register_gauge(self) -> None:
        if self._registry is None or self._gauge_registered:
            return
        from prometheus_client import Gauge

        gauge = Gauge(
            "engage_subscription_expires_in_seconds",
            "Seconds until the RingCentral platform webhook subscription expires.",
            registry=self._registry,
        )
        gauge.set_function(self.expires_in_seconds)
        self._gauge_registered = True


def _seconds_until(value: Any, now: float) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp() - now
    except ValueError:
        return None


# -- the command -----------------------------------------------------------------------------
def main(settings: Settings, args: list[str]) -> int:
    """``engage-streams subscribe create|list|renew|delete``."""
    parser = argparse.ArgumentParser(
        prog="engage-streams subscribe",
        description="Manage the RingCentral platform webhook subscription that delivers "
        "Advanced Messaging content events (Imported, Exported, DiscussionInitiated) to the "
        "connector's /webhooks/ringcentral. Credentials: RINGCENTRAL_CLIENT_ID, "
        "RINGCENTRAL_CLIENT_SECRET, RINGCENTRAL_JWT (server RINGCENTRAL_SERVER_URL).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="subscribe the connector's address (renews it when it exists)",
        description="Create the subscription for --address (or RINGCENTRAL_WEBHOOK_URL) with "
        "RINGCENTRAL_VERIFICATION_TOKEN; when that address already has one, renew it.",
    )
    create.add_argument("--address", help="public URL of the connector's /webhooks/ringcentral")
    create.add_argument(
        "--expires-in", type=int, default=DEFAULT_EXPIRES_IN, help="lifetime in seconds"
    )
    listing = actions.add_parser("list", help="list the connector's subscriptions")
    listing.add_argument("--all", action="store_true", help="every subscription of this app")
    renew = actions.add_parser("renew", help="renew one subscription, or all of the connector's")
    renew.add_argument("id", nargs="?", help="subscription id (default: all of ours)")
    delete = actions.add_parser("delete", help="delete one subscription, or those of an address")
    delete.add_argument("id", nargs="?", help="subscription id")
    delete.add_argument("--address", help="delete every subscription of ours to this address")
    parsed = parser.parse_args(args)
    if getattr(parsed, "address", None):
        settings = replace(settings, ringcentral_webhook_url=parsed.address)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="level=%(levelname)s %(message)s")
    return asyncio.run(_run(settings, parsed))


async def _run(settings: Settings, parsed: argparse.Namespace) -> int:
    platform = PlatformClient.from_settings(settings)
    try:
        async with platform:
            return await _act(settings, platform, parsed)
    except PlatformApiError as error:
        print(f"engage-streams subscribe {parsed.action}: {error}", file=sys.stderr)
        return 1


async def _act(settings: Settings, platform: PlatformClient, parsed: argparse.Namespace) -> int:
    if parsed.action == "create":
        address = settings.ringcentral_webhook_url
        if not address:
            raise SettingsError("set --address or RINGCENTRAL_WEBHOOK_URL (the connector's URL)")
        if not settings.ringcentral_verification_token:
            raise SettingsError(
                "RINGCENTRAL_VERIFICATION_TOKEN is not set (the connector checks it on every "
                "notification: set the same value for both)"
            )
        subscription, created = await find_or_create(
            platform,
            address,
            settings.ringcentral_verification_token,
            expires_in=parsed.expires_in,
        )
        print(f"{'created' if created else 'renewed'} {describe(subscription)}")
        return 0
    subscriptions = await platform.list_subscriptions()
    if parsed.action == "list":
        shown = [s for s in subscriptions if parsed.all or is_ours(s)]
        for subscription in shown:
            print(describe(subscription))
        if not shown:
            print("no subscription", file=sys.stderr)
        return 0
    if parsed.id:
        chosen = [str(parsed.id)]
    else:
        address = getattr(parsed, "address", None)
        if parsed.action == "delete" and not address:
            raise SettingsError("give a subscription id or --address to delete")
        chosen = [str(s["id"]) for s in subscriptions if is_ours(s, address)]
    if not chosen:
        print(f"engage-streams subscribe {parsed.action}: no subscription", file=sys.stderr)
        return 1
    for subscription_id in chosen:
        if parsed.action == "renew":
            print(f"renewed {describe(await platform.renew_subscription(subscription_id))}")
        else:
            await platform.delete_subscription(subscription_id)
            print(f"deleted {subscription_id}")
    return 0
