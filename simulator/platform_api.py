"""A fake RingCentral platform API (Advanced / Social Messaging), served by aiohttp on 127.0.0.1.

Just enough of ``platform.ringcentral.com`` for the connector, backfill and ``subscribe`` to run
against something that behaves like the real service, in tests and in the demo:

* ``POST /restapi/oauth/token``: the JWT grant only. Checks HTTP Basic ``client_id:secret`` and
  the JWT, issues short-lived opaque access tokens (``token_lifetime``, default 300 s) so that
  clients must refresh; an expired, unknown or revoked token gets 401 everywhere else.
* ``GET/POST {prefix}/contents``, ``GET {prefix}/contents/{id}``, ``GET {prefix}/identities``:
  the contents and identities given to it (camelCase platform shape), filtered (``source``,
  ``thread``, ``intervention``, ``identity``, ``status``; identities: ``sourceId``, ``userId``,
  ``uuid``), ordered (``orderBy`` ``-creationTime`` default, ``+creationTime``/``creationTime``),
  paged (``perPage`` up to 1000, opaque ``pageToken``, ``paging.nextPageToken``). ``POST``
  creates an agent's content: a reply (``inReplyToContentId``) or a new discussion
  (``sourceId``), written by the token's owner (``creatorId`` = RingCentral extension id).
* ``/restapi/v1.0/subscription``: create / list / get / renew / delete WebHook subscriptions
  that expire (``expiresIn``); an expired subscription is gone (404, not listed).
* ``POST /_simulator/contents`` (``SIMULATOR_CONTENTS_PATH``, not the platform's): the traffic
  simulator hands over the contents it is about to notify, so a thin notification's id can be
  fetched; ``GET /_simulator/healthz`` answers without a token (the demo waits for it).
  ``add_agents`` / ``--agents FILE`` gives every agent of an agents config with an
  ``rc_user_id`` its identity (``userIds`` = the extension id, ``displayName`` = the name).
* ``rate_limit=(requests, window)``: every API answer carries RingCentral's
  ``X-Rate-Limit-Group/Limit/Remaining/Window`` headers, and a request over the limit gets
  429 with ``Retry-After`` until the window ends.
* ``fail(status, times=..., seconds=..., retry_after=...)``: answer 503 or 429 (with
  ``Retry-After`` and RingCentral's ``X-Rate-Limit-*`` headers) for the next N requests or for a
  while, to test retries. ``requests`` logs every ``(method, path?query)`` answered.

It keeps everything in memory and is not safe across processes. ``clock`` (epoch seconds,
default ``time.time``) drives token and subscription expiry and creation times, so tests can
move time forward (``ManualClock``) instead of sleeping. Run it standalone with
``python -m simulator.platform_api --port 8090 [--agents FILE]`` (the demo does).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import itertools
import math
import secrets
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from engage_streams.record import ContentEvent
from simulator.deliveries import platform_content

JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_PREFIX: Final = "/cx/social-messaging/v1"
MAX_PER_PAGE: Final = 1000
MAX_SUBSCRIPTION_SECONDS: Final = 315360000
#: Not the platform's: where the traffic simulator hands the fake the contents it is about to
#: notify (``POST``, a JSON list of contents, with a bearer token like every call), so the
#: fake serves what the notifications name; and an unauthenticated liveness probe.
SIMULATOR_CONTENTS_PATH: Final = "/_simulator/contents"
SIMULATOR_HEALTH_PATH: Final = "/_simulator/healthz"
STATUS_FILTERS: Final = ("New", "Assigned", "Replied", "UserReply", "UserInitiated", "Ignored")


class ManualClock:
    """Epoch seconds that move only when told to (``advance``): time travel for tests."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Failure:
    status: int
    remaining: int | None
    until: float | None
    retry_after: float | None
    path: str
    after: int


@dataclass
class _Token:
    expires_at: float
    owner_id: str


@dataclass
class FakePlatform:
    """The fake's state; ``create_app()`` serves it. Credentials default to the demo's."""

    client_id: str = "simulator-client-id"
    client_secret: str = "simulator-client-secret"  # noqa: S105 - a fake's well-known value
    jwt: str = "simulator-jwt"
    owner_id: str = "400131234008"  # the RingCentral extension the JWT belongs to
    token_lifetime: float = 300.0
    api_prefix: str = DEFAULT_PREFIX
    clock: Callable[[], float] = time.time
    contents: dict[str, dict[str, Any]] = field(default_factory=dict)
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    verification_tokens: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    tokens_issued: int = 0
    rate_limit: tuple[int, float] | None = None  # (requests, window seconds), like "Light"
    _window_start: float = -math.inf
    _window_count: int = 0
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _failures: list[_Failure] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- what tests and the simulator call ---------------------------------------------------
    def add_content(self, content: Mapping[str, Any]) -> dict[str, Any]:
        """Hold ``content`` (camelCase); missing ``id``/times/links get plausible values."""
        stored = dict(content)
        stored.setdefault("id", self._new_id())
        stored.setdefault("creationTime", _iso(self.clock()))
        stored.setdefault("lastModifiedTime", stored["creationTime"])
        stored.setdefault("threadId", stored["id"])
        stored.setdefault("status", "New")
        stored.setdefault("autoSubmitted", False)
        stored.setdefault("createdFrom", "Synchronizer")
        stored.setdefault("creatorId", None)
        stored.setdefault("public", False)
        stored.setdefault("attachments", [])
        self.contents[str(stored["id"])] = stored
        return stored

    def add_contents(self, contents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [self.add_content(content) for content in contents]

    def add_event(
        self, event: ContentEvent, *, creator_ids: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Hold the content of a simulated event, exactly as its platform notification
        (``deliveries.platform_envelope``, same ``creator_ids``) shows it: so what the
        simulator sends thin can be fetched here in full."""
        return self.add_content(served_content(event, creator_ids=creator_ids))

    def add_agents(self, agents: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        """An identity per agent of an agents config (``{"agents": {id: {"name",
        "rc_user_id"}}}``'s ``agents``) that has an extension id: ``userIds`` = that
        extension id, ``displayName`` = the agent's name (how the platform names agents)."""
        held = []
        for entry in agents.values():
            extension_id = entry.get("rc_user_id")
            if not extension_id:
                continue
            identity = {"id": f"identity-{extension_id}", "userIds": [str(extension_id)]}
            if entry.get("name"):
                identity["displayName"] = str(entry["name"])
            held.append(self.add_identity(identity))
        return held

    def add_identity(self, identity: Mapping[str, Any]) -> dict[str, Any]:
        """Hold an identity (``userIds`` non-empty = an agent's identity)."""
        stored = dict(identity)
        stored.setdefault("id", self._new_id())
        stored.setdefault("creationTime", _iso(self.clock()))
        stored.setdefault("lastModifiedTime", stored["creationTime"])
        stored.setdefault("userIds", [])
        self.identities[str(stored["id"])] = stored
        return stored

    def fail(
        self,
        status: int = 503,
        *,
        times: int | None = None,
        seconds: float | None = None,
        retry_after: float | None = None,
        path: str = "/",
        after: int = 0,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests, or to all for ``seconds``, whose
        path starts with ``path`` (e.g. ``/cx/`` to spare the token endpoint), once ``after``
        of them were answered normally."""
        if times is None and seconds is None:
            times = 1
        until = self.clock() + seconds if seconds is not None else None
        self._failures.append(_Failure(status, times, until, retry_after, path, after))

    def revoke_tokens(self) -> None:
        """Every access token issued so far becomes invalid (the next call gets 401)."""
        self._tokens.clear()

    def calls(self, method: str, path_prefix: str) -> int:
        """How many requests ``method`` to paths starting with ``path_prefix`` were answered."""
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    def create_app(self) -> web.Application:
        app = web.Application(middlewares=[self._log_and_fail])
        prefix = "/" + self.api_prefix.strip("/")
        app.router.add_post("/restapi/oauth/token", self._token)
        app.router.add_get(f"{prefix}/contents", self._list_contents)
        app.router.add_post(f"{prefix}/contents", self._create_content)
        app.router.add_get(f"{prefix}/contents/{{content_id}}", self._get_content)
        app.router.add_get(f"{prefix}/identities", self._list_identities)
        app.router.add_get(f"{prefix}/identities/{{identity_id}}", self._get_identity)
        app.router.add_post("/restapi/v1.0/subscription", self._create_subscription)
        app.router.add_get("/restapi/v1.0/subscription", self._list_subscriptions)
        app.router.add_get("/restapi/v1.0/subscription/{sid}", self._get_subscription)
        app.router.add_post("/restapi/v1.0/subscription/{sid}/renew", self._renew_subscription)
        app.router.add_put("/restapi/v1.0/subscription/{sid}", self._renew_subscription)
        app.router.add_delete("/restapi/v1.0/subscription/{sid}", self._delete_subscription)
        app.router.add_post(SIMULATOR_CONTENTS_PATH, self._hold_contents)
        app.router.add_get(SIMULATOR_HEALTH_PATH, self._healthz)
        return app

    # -- middleware ------------------------------------------------------------------------
    @web.middleware
    async def _log_and_fail(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        failure = self._current_failure(request.path)
        if failure is not None:
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            if failure.status == 429:
                headers.update(
                    {
                        "X-Rate-Limit-Group": "Light",
                        "X-Rate-Limit-Limit": "50",
                        "X-Rate-Limit-Remaining": "0",
                        "X-Rate-Limit-Window": "60",
                    }
                )
                return _error(429, "CMN-301", "Request rate exceeded", headers)
            if failure.status == 401:
                return _error(401, "OAU-213", "Token not found or expired", headers)
            return _error(failure.status, "CMN-211", "Service temporarily unavailable", headers)
        if request.path in ("/restapi/oauth/token", SIMULATOR_HEALTH_PATH):
            token_response: web.StreamResponse = await handler(request)
            return token_response
        if self._bearer_owner(request) is None:
            return _error(401, "OAU-213", "Token not found or expired")
        limit_headers, retry_in = self._rate_limit()
        if retry_in is not None:
            limit_headers["Retry-After"] = f"{max(1, math.ceil(retry_in))}"
            return _error(429, "CMN-301", "Request rate exceeded", limit_headers)
        response: web.StreamResponse = await handler(request)
        response.headers.update(limit_headers)
        return response

    def _rate_limit(self) -> tuple[dict[str, str], float | None]:
        """RingCentral's ``X-Rate-Limit-*`` headers when ``rate_limit`` is set, and how long
        to wait when this request is over the limit (fixed windows, one group)."""
        if self.rate_limit is None:
            return {}, None
        limit, window = self.rate_limit
        now = self.clock()
        if now - self._window_start >= window:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        headers = {
            "X-Rate-Limit-Group": "Light",
            "X-Rate-Limit-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(max(0, limit - self._window_count)),
            "X-Rate-Limit-Window": f"{window:g}",
        }
        if self._window_count > limit:
            return headers, self._window_start + window - now
        return headers, None

    def _current_failure(self, path: str) -> _Failure | None:
        now = self.clock()
        self._failures = [f for f in self._failures if f.until is None or now < f.until]
        for failure in self._failures:
            if not path.startswith(failure.path):
                continue
            if failure.after > 0:
                failure.after -= 1
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
            return failure
        return None

    def _bearer_owner(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        known = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if known is None or self.clock() >= known.expires_at:
            return None
        return known.owner_id

    # -- OAuth -------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        if not self._basic_ok(request.headers.get("Authorization", "")):
            return _json(
                {"error": "invalid_client", "errors": [{"errorCode": "OAU-123"}]}, status=401
            )
        form = await request.post()
        if form.get("grant_type") != JWT_GRANT:
            return _json(
                {"error": "unsupported_grant_type", "errors": [{"errorCode": "OAU-250"}]},
                status=400,
            )
        if not secrets.compare_digest(str(form.get("assertion", "")), self.jwt):
            return _json(
                {"error": "invalid_grant", "errors": [{"errorCode": "OAU-140"}]}, status=400
            )
        token = secrets.token_urlsafe(24)
        self._tokens[token] = _Token(self.clock() + self.token_lifetime, self.owner_id)
        self.tokens_issued += 1
        return _json(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(self.token_lifetime),
                "refresh_token": secrets.token_urlsafe(24),
                "refresh_token_expires_in": 604800,
                "scope": "SocialMessaging SubscriptionWebhook",
                "owner_id": self.owner_id,
                "endpoint_id": "simulator",
            }
        )

    def _basic_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, client_secret = decoded.partition(":")
        return secrets.compare_digest(client_id, self.client_id) and secrets.compare_digest(
            client_secret, self.client_secret
        )

    # -- contents and identities -------------------------------------------------------------
    async def _list_contents(self, request: web.Request) -> web.Response:
        query = request.query
        matches = list(self.contents.values())
        if any(name in query for name in _CONTENT_FILTERS):
            matches = [c for c in matches if _content_matches(c, query)]
        return self._page(matches, query)

    async def _get_content(self, request: web.Request) -> web.Response:
        content = self.contents.get(request.match_info["content_id"])
        if content is None:
            return _error(404, "EDI-029", "Resource not found")
        return _json(content)

    async def _create_content(self, request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "EDI-030", "Invalid format")
        if not isinstance(payload, dict):
            return _error(400, "EDI-030", "Invalid format")
        body = payload.get("body")
        if not isinstance(body, str) and "templateName" not in payload:
            return _error(400, "EDI-025", 'Missing required parameter: "body"')
        parent_id = payload.get("inReplyToContentId")
        owner = self._bearer_owner(request) or self.owner_id
        content: dict[str, Any] = {
            "body": body,
            "creatorId": owner,
            "createdFrom": "Api",
            "contentDirection": "Outgoing",
            "autoSubmitted": payload.get("autoSubmitted") is True,
            "public": payload.get("public", True),
            "type": "Message",
            "synchronizationStatus": "pending",
        }
        if parent_id is not None:
            parent = self.contents.get(str(parent_id))
            if parent is None:
                return _error(404, "EDI-029", "Resource not found")
            content.update(
                {
                    "status": "UserReply",
                    "inReplyToContentId": parent["id"],
                    "inReplyToAuthorIdentityId": parent.get("authorIdentityId"),
                    "threadId": parent.get("threadId"),
                    "interventionId": parent.get("interventionId"),
                    "channelId": parent.get("channelId") or parent.get("sourceId"),
                    "channelType": parent.get("channelType") or parent.get("sourceType"),
                }
            )
        else:
            source_id = payload.get("sourceId")
            if not isinstance(source_id, str) or not source_id:
                return _error(400, "EDI-020", "You need a channel to create this message.")
            content.update({"status": "UserInitiated", "channelId": source_id})
            content["threadId"] = self._new_id()
        content["authorIdentityId"] = payload.get("authorIdentityId") or self._agent_identity(
            owner, content.get("channelId")
        )
        for key in ("title", "to", "cc", "bcc", "contextData"):
            if key in payload:
                content[key] = payload[key]
        return _json(self.add_content(content), status=201)

    def _agent_identity(self, owner: str, channel_id: Any) -> str | None:
        for identity in self.identities.values():
            if owner in identity.get("userIds", []) and identity.get("sourceId") in (
                channel_id,
                None,
            ):
                return str(identity["id"])
        return None

    async def _list_identities(self, request: web.Request) -> web.Response:
        query = request.query
        matches = [
            i
            for i in self.identities.values()
            if (not query.get("sourceId") or i.get("sourceId") == query["sourceId"])
            and (not query.get("userId") or query["userId"] in i.get("userIds", []))
            and (not query.get("uuid") or i.get("uuid") == query["uuid"])
        ]
        return self._page(matches, query)

    async def _get_identity(self, request: web.Request) -> web.Response:
        identity = self.identities.get(request.match_info["identity_id"])
        if identity is None:
            return _error(404, "EDI-029", "Resource not found")
        return _json(identity)

    def _page(self, records: list[dict[str, Any]], query: Mapping[str, str]) -> web.Response:
        order = query.get("orderBy", "-creationTime")
        if order not in ("-creationTime", "+creationTime", "creationTime", " creationTime"):
            # " creationTime": a "+" sent unencoded in a query string decodes to a space.
            return _error(400, "EDI-038", '"[orderBy]" param is invalid')
        records = sorted(records, key=lambda r: (str(r.get("creationTime", "")), str(r["id"])))
        if order.startswith("-"):
            records.reverse()
        try:
            per_page = max(1, min(int(query.get("perPage", "100")), MAX_PER_PAGE))
            offset = _offset(query.get("pageToken"))
        except ValueError:
            return _error(400, "EDI-038", '"[pageToken]" param is invalid')
        page = records[offset : offset + per_page]
        paging: dict[str, Any] = {"perPage": per_page}
        if query.get("pageToken"):
            paging["pageToken"] = query["pageToken"]
        if offset + per_page < len(records):
            paging["nextPageToken"] = _token_for(offset + per_page)
        return _json({"records": page, "paging": paging})

    # -- the simulator's own endpoints -------------------------------------------------------
    async def _hold_contents(self, request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "SIM-001", "expected a JSON list of contents")
        if not isinstance(payload, list) or not all(isinstance(c, dict) for c in payload):
            return _error(400, "SIM-001", "expected a JSON list of contents")
        self.add_contents(payload)
        return _json({"held": len(payload), "contents": len(self.contents)})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json(
            {
                "contents": len(self.contents),
                "identities": len(self.identities),
                "subscriptions": len(self.subscriptions),
            }
        )

    # -- subscriptions -----------------------------------------------------------------------
    async def _create_subscription(self, request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "CMN-101", "Parameter [body] value is invalid")
        filters = payload.get("eventFilters") if isinstance(payload, dict) else None
        if not isinstance(filters, list) or not filters:
            return _error(400, "CMN-101", "Parameter [eventFilters] value is invalid")
        mode = payload.get("deliveryMode")
        if not isinstance(mode, dict) or mode.get("transportType") != "WebHook":
            return _error(400, "CMN-101", "Parameter [deliveryMode] value is invalid")
        if not isinstance(mode.get("address"), str) or not mode["address"]:
            return _error(400, "SUB-406", "Parameter [address] value is invalid")
        expires_in = payload.get("expiresIn", 604800)
        if not isinstance(expires_in, int) or not 1 <= expires_in <= MAX_SUBSCRIPTION_SECONDS:
            return _error(400, "CMN-101", "Parameter [expiresIn] value is invalid")
        sid = str(uuid.uuid4())
        now = self.clock()
        self.subscriptions[sid] = {
            "uri": f"{request.url.origin()}/restapi/v1.0/subscription/{sid}",
            "id": sid,
            "eventFilters": [str(f) for f in filters],
            "creationTime": _iso(now),
            "status": "Active",
            "deliveryMode": {
                "transportType": "WebHook",
                "address": mode["address"],
                "encryption": False,
            },
            "expiresIn": expires_in,
            "_lifetime": expires_in,
            "_expires_at": now + expires_in,
        }
        if isinstance(mode.get("verificationToken"), str):
            self.verification_tokens[sid] = mode["verificationToken"]
        return _json(self._subscription_view(sid))

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        self._expire_subscriptions()
        records = [self._subscription_view(sid) for sid in self.subscriptions]
        return _json(
            {"uri": f"{request.url.origin()}/restapi/v1.0/subscription", "records": records}
        )

    async def _get_subscription(self, request: web.Request) -> web.Response:
        self._expire_subscriptions()
        sid = request.match_info["sid"]
        if sid not in self.subscriptions:
            return _error(404, "CMN-102", "Resource for parameter [subscriptionId] is not found")
        return _json(self._subscription_view(sid))

    async def _renew_subscription(self, request: web.Request) -> web.Response:
        self._expire_subscriptions()
        sid = request.match_info["sid"]
        subscription = self.subscriptions.get(sid)
        if subscription is None:
            return _error(404, "CMN-102", "Resource for parameter [subscriptionId] is not found")
        subscription["_expires_at"] = self.clock() + subscription["_lifetime"]
        return _json(self._subscription_view(sid))

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        self._expire_subscriptions()
        sid = request.match_info["sid"]
        if self.subscriptions.pop(sid, None) is None:
            return _error(404, "CMN-102", "Resource for parameter [subscriptionId] is not found")
        self.verification_tokens.pop(sid, None)
        return web.Response(status=204)

    def _expire_subscriptions(self) -> None:
        now = self.clock()
        for sid in [s for s, sub in self.subscriptions.items() if now >= sub["_expires_at"]]:
            del self.subscriptions[sid]
            self.verification_tokens.pop(sid, None)

    def _subscription_view(self, sid: str) -> dict[str, Any]:
        subscription = self.subscriptions[sid]
        view = {k: v for k, v in subscription.items() if not k.startswith("_")}
        remaining = subscription["_expires_at"] - self.clock()
        view["expirationTime"] = _iso(subscription["_expires_at"])
        view["expiresIn"] = max(0, int(remaining))
        return view

    def _new_id(self) -> str:
        # 24 hex digits like the platform's ids, unique within this fake.
        return f"{int(self.clock()):08x}{next(self._ids):016x}"


def served_content(
    event: ContentEvent, *, creator_ids: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The content of a simulated event as the platform API serves it: the notification's
    fields (``deliveries.platform_content``), plus ``channelId``/``channelType`` and
    ``createdFrom``. What the simulator posts to ``SIMULATOR_CONTENTS_PATH``."""
    content = platform_content(event, creator_ids=creator_ids)
    content["channelId"], content["channelType"] = content["sourceId"], content["sourceType"]
    content["createdFrom"] = "Interface" if event.direction == "outbound" else "Synchronizer"
    return content


_CONTENT_FILTERS: Final = ("source", "thread", "intervention", "identity", "status")


def _content_matches(content: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    def listed(name: str) -> set[str] | None:
        raw = query.get(name)
        return {part for part in raw.split(",") if part} if raw else None

    checks = (
        ("source", content.get("channelId") or content.get("sourceId")),
        ("thread", content.get("threadId")),
        ("intervention", content.get("interventionId")),
        ("identity", content.get("authorIdentityId")),
        ("status", content.get("status")),
    )
    for name, value in checks:
        wanted = listed(name)
        if wanted is not None and str(value) not in wanted:
            return False
    return True


def _token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(token) from None
    label, _, number = decoded.partition(":")
    if label != "offset" or not number.isdigit():
        raise ValueError(token)
    return int(number)


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(
    payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json",
    )


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json(
        {"errors": [{"errorCode": code, "message": message}]},
        status=status,
        headers=dict(headers or {}),
    )


@contextlib.asynccontextmanager
async def serving(
    platform: FakePlatform, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``platform`` on ``host:port`` (0 = a free port) while inside; yields its base URL."""
    runner = web.AppRunner(platform.create_app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def serving_in_thread(platform: FakePlatform, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``platform`` from a thread of its own (for code that runs ``asyncio.run``)."""
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[str] = concurrent.futures.Future()
    stopping = asyncio.Event()

    async def serve() -> None:
        try:
            async with serving(platform, host) as url:
                started.set_result(url)
                await stopping.wait()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
            raise

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="fake-platform", daemon=True
    )
    thread.start()
    try:
        yield started.result(timeout=30)
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=30)
        loop.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator.platform_api [--port N] [--contents FILE.json]``."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator.platform_api",
        description="Serve a fake RingCentral platform API (OAuth JWT grant, social-messaging "
        "contents and identities, webhook subscriptions) on 127.0.0.1.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--client-id", default=FakePlatform.client_id)
    parser.add_argument("--client-secret", default=FakePlatform.client_secret)
    parser.add_argument("--jwt", default=FakePlatform.jwt)
    parser.add_argument("--token-lifetime", type=float, default=FakePlatform.token_lifetime)
    parser.add_argument("--contents", type=Path, help="JSON file: a list of contents to hold")
    parser.add_argument("--identities", type=Path, help="JSON file: a list of identities")
    parser.add_argument(
        "--agents",
        type=Path,
        help="an agents config (ENGAGE_AGENTS_CONFIG): an identity for each agent with an "
        "rc_user_id (its RingCentral extension id), named like the agent",
    )
    args = parser.parse_args(argv)
    platform = FakePlatform(
        client_id=args.client_id,
        client_secret=args.client_secret,
        jwt=args.jwt,
        token_lifetime=args.token_lifetime,
    )
    if args.contents:
        platform.add_contents(orjson.loads(args.contents.read_bytes()))
    if args.identities:
        for identity in orjson.loads(args.identities.read_bytes()):
            platform.add_identity(identity)
    if args.agents:
        platform.add_agents(orjson.loads(args.agents.read_bytes()).get("agents", {}))
    print(
        f"fake RingCentral platform API on http://{args.host}:{args.port} "
        f"({len(platform.contents)} contents, {len(platform.identities)} identities)",
        file=sys.stderr,
    )
    web.run_app(platform.create_app(), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
