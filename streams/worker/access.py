"""Who may use the worker's HTTP server, how, and from which browser origin.

The worker API faces the office network, so its HTTP server (``streams.web``) is wrapped by
``access_middleware(AccessPolicy.of(settings))``:

* **Read-only.** Only ``GET`` and ``HEAD``; any other method is ``405`` with ``Allow: GET,
  HEAD`` (whatever the path), except a CORS preflight ``OPTIONS`` from the configured origin.
* **Bearer token** (``WORKER_API_TOKEN``, unset = open). Every path but ``/healthz`` and
  ``/readyz`` (probes of the process, they hold nothing) requires ``Authorization: Bearer
  <token>``, compared in constant time; else ``401`` with ``WWW-Authenticate: Bearer``. That
  includes ``/metrics`` (Prometheus sends it: ``authorization: {credentials_file: ...}`` in
  the scrape config), the OpenAPI document and ``/wallboard``.
* **The wallboard on a TV** cannot send a header: open ``/wallboard?token=<token>`` once. The
  worker answers with a cookie holding the token (``HttpOnly``, ``SameSite=Strict``) and a
  redirect to the same URL without the token (so it stays out of the address bar and the
  history); the page's own requests then carry the cookie, which is accepted like the header.
  Only ``/wallboard`` reads a token from the query string.
* **CORS.** No ``Access-Control-*`` header at all unless ``WORKER_CORS_ORIGIN`` names one
  origin; then requests from exactly that origin get ``Access-Control-Allow-Origin: <origin>``
  and its preflights (``Authorization`` allowed) are answered ``204``.

No part of the token, cookie or request is logged or echoed in an answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from engage_streams.settings import Settings

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
READ_METHODS: Final = frozenset({"GET", "HEAD"})
TOKEN_COOKIE: Final = "engage_worker_token"  # noqa: S105 (the cookie's name, not a secret)
WALLBOARD: Final = "/wallboard"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AccessPolicy:
    """The worker's access rules, from ``WORKER_API_TOKEN`` and ``WORKER_CORS_ORIGIN``."""

    token: str | None = None
    cors_origin: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> AccessPolicy:
        return cls(
            token=settings.worker_api_token or None,
            cors_origin=(settings.worker_cors_origin or "").rstrip("/") or None,
        )

    def accepts(self, presented: str | None) -> bool:
        """Is ``presented`` the token? (constant time; always True when no token is set)"""
        if self.token is None:
            return True
        if presented is None:
            return False
        return hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self.token.encode("utf-8")
        )


def access_middleware(policy: AccessPolicy) -> Middleware:
    """The aiohttp middleware enforcing ``policy`` (see the module docstring)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        cors = policy.cors_origin is not None and origin == policy.cors_origin
        if request.method == "OPTIONS" and cors:
            return _with_cors(_preflight(), policy)
        if request.method not in READ_METHODS:
            return _refusal(
                405, "the worker API is read-only: use GET or HEAD", {"Allow": "GET, HEAD"}
            )
        if policy.token is not None and request.path not in OPEN_PATHS:
            if request.path == WALLBOARD and "token" in request.query:
                return _wallboard_login(request, policy)
            if not policy.accepts(_presented(request)):
                return _unauthorized(request, cors, policy)
        try:
            response = await handler(request)
        except web.HTTPException as error:  # 404 & co. get the CORS header too
            if cors:
                _with_cors(error, policy)
            raise
        return _with_cors(response, policy) if cors else response

    return guard


def _presented(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else None
    return request.cookies.get(TOKEN_COOKIE)


def _wallboard_login(request: web.Request, policy: AccessPolicy) -> web.StreamResponse:
    if not policy.accepts(request.query.get("token")):
        return _unauthorized(request, False, policy)
    kept = request.rel_url.with_query({k: v for k, v in request.query.items() if k != "token"})
    response = web.HTTPSeeOther(location=str(kept))
    assert policy.token is not None
    response.set_cookie(
        TOKEN_COOKIE, policy.token, httponly=True, samesite="Strict", path="/", max_age=400 * 86400
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _unauthorized(request: web.Request, cors: bool, policy: AccessPolicy) -> web.StreamResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="engage-streams worker"'}
    if request.path == WALLBOARD:
        response: web.StreamResponse = web.Response(
            status=401,
            text="This wallboard needs the worker's API token: open /wallboard?token=<token> "
            "once on this screen.\n",
            headers=headers,
        )
    else:
        response = _refusal(401, "missing or wrong bearer token (Authorization header)", headers)
    return _with_cors(response, policy) if cors else response


def _preflight() -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD",
            "Access-Control-Allow-Headers": "Authorization",
            "Access-Control-Max-Age": "600",
        },
    )


def _with_cors(response: web.StreamResponse, policy: AccessPolicy) -> web.StreamResponse:
    assert policy.cors_origin is not None
    response.headers["Access-Control-Allow-Origin"] = policy.cors_origin
    response.headers["Vary"] = "Origin"
    return response


def _refusal(status: int, message: str, headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message}),
        content_type="application/json",
        headers=headers,
    )
