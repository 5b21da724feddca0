"""A client of the RingCentral platform REST API: Advanced (Social) Messaging and subscriptions.

What it covers (paths as RingCentral publishes them):

* ``POST /restapi/oauth/token`` -- the JWT grant
  (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``, ``assertion=<JWT>``, HTTP Basic
  ``client_id:client_secret``). The access token is kept and fetched again shortly before it
  expires (60 s early, or a tenth of a short lifetime), and once more when a call answers 401.
* ``{api_prefix}/contents`` -- list (filters such as ``source``, ``thread``, ``status``;
  ``orderBy``; paged by ``perPage``/``pageToken`` and ``paging.nextPageToken``), get one
  (``/contents/{id}``), create one (a reply with ``inReplyToContentId`` or a new discussion
  with ``sourceId``). ``{api_prefix}/identities`` -- list. ``api_prefix`` defaults to
  ``/cx/social-messaging/v1`` (older accounts: ``/engage/advanced-messaging/v1``).
  The platform has no time filter on contents: ``since``/``until`` are applied here, and
  paging stops as soon as the order guarantees nothing more can match.
* ``/restapi/v1.0/subscription`` -- create (WebHook delivery with a verification token),
  list, renew, delete.

Rate limits: a 429 waits as long as ``Retry-After`` says, else the platform's
``X-Rate-Limit-Window``; a 503 (and 502/504, and network failures of reads) waits
``Retry-After`` or backs off exponentially (bounded); at most ``max_retries`` times. When a
response says ``X-Rate-Limit-Remaining: 0``, the next request waits for the window first.

Errors (the message names the call and the HTTP status, never the client secret, the JWT or
an access token)::

    RuntimeError
     └── PlatformApiError        a call failed (.call, .status, .error_code)
          └── PlatformNotFound   404: the content / subscription does not exist

Prometheus is optional: pass ``registry=`` to count requests in
``engage_platform_api_requests_total{call,code}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import httpx

from engage_streams.rest.retry_after import retry_after_seconds, seconds_header
from engage_streams.settings import Settings, SettingsError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("engage_streams.rest.platform")

JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH: Final = "/restapi/oauth/token"  # noqa: S105 - a path, not a password
SUBSCRIPTION_PATH: Final = "/restapi/v1.0/subscription"
DEFAULT_API_PREFIX: Final = "/cx/social-messaging/v1"
MAX_PER_PAGE: Final = 1000
REFRESH_MARGIN_SECONDS: Final = 60.0
RETRIED_STATUSES: Final = frozenset({429, 502, 503, 504})
# Metric label values of ``call`` (fixed set, agreed across issues).
CALLS: Final = (
    "token",
    "get_content",
    "list_contents",
    "create_content",
    "list_identities",
    "subscription",
)


class PlatformApiError(RuntimeError):
    """A platform call failed; the message names the call and the status, never a secret."""

    def __init__(
        self,
        call: str,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(f"RingCentral platform {call}: {message}")
        self.call = call
        self.status = status
        self.error_code = error_code


class PlatformNotFound(PlatformApiError):
    """The platform answered 404: the content (or subscription) does not exist (any more)."""


@dataclass(frozen=True)
class PageMark:
    """Where a page of a listing is: its own token (``None`` for the first page), the next
    page's (``None`` after the last) and how many records it holds."""

    token: str | None
    next_token: str | None
    records: int


class PlatformClient:
    """Async client of one RingCentral account's platform API.

    >>> # async with PlatformClient.from_settings(settings) as platform:
    >>> #     content = await platform.get_content("65e3163bc9d8e70012ab5c21")
    >>> #     async for content in platform.list_contents(since=yesterday, source="<channel>"):
    >>> #         ...
    """

    def __init__(
        self,
        server_url: str,
        client_id: str,
        client_secret: str,
        jwt: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        api_prefix: str = DEFAULT_API_PREFIX,
        max_wait_seconds: float = 60.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=server_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "engage-streams"},
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._jwt = jwt
        self._max_retries = max(0, max_retries)
        self._prefix = "/" + api_prefix.strip("/")
        self._max_wait = max_wait_seconds
        self._clock = clock
        self._sleep = sleep
        self._requests = _requests_counter(registry) if registry is not None else None
        self._access_token: str | None = None
        self._refresh_at = 0.0
        self._token_lock = asyncio.Lock()
        self._not_before = 0.0  # rate-limit window: no request before this clock value

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> PlatformClient:
        """A client from ``RINGCENTRAL_*`` settings; ``SettingsError`` names what is missing."""
        missing = [
            name
            for name, value in (
                ("RINGCENTRAL_CLIENT_ID", settings.ringcentral_client_id),
                ("RINGCENTRAL_CLIENT_SECRET", settings.ringcentral_client_secret),
                ("RINGCENTRAL_JWT", settings.ringcentral_jwt),
            )
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{', '.join(missing)} not set (the RingCentral platform app's credentials "
                "and the JWT of the user the connector acts as)"
            )
        assert settings.ringcentral_client_id and settings.ringcentral_client_secret
        assert settings.ringcentral_jwt
        return cls(
            settings.ringcentral_server_url,
            settings.ringcentral_client_id,
            settings.ringcentral_client_secret,
            settings.ringcentral_jwt,
            **options,
        )

    def __repr__(self) -> str:
        return f"PlatformClient({str(self._http.base_url)!r}, prefix={self._prefix!r})"

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- contents and identities ---------------------------------------------------------
    async def get_content(self, content_id: str) -> dict[str, Any]:
        """One content (camelCase platform shape); ``PlatformNotFound`` when it does not exist."""
        answer = await self._call("get_content", "GET", f"{self._prefix}/contents/{content_id}")
        return _object(answer, "get_content")

    async def list_contents(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        order_by: str = "creationTime",
        per_page: int = 100,
        page_token: str | None = None,
        on_page: Callable[[PageMark], None] | None = None,
        **filters: str,
    ) -> AsyncIterator[dict[str, Any]]:
        """Contents with ``since <= creationTime < until`` matching ``filters``, every page.

        ``order_by`` is the platform's: ``+creationTime``/``creationTime`` oldest first,
        ``-creationTime`` newest first. Filters are the platform's query parameters
        (``source``, ``thread``, ``intervention``, ``identity``, ``status``, ``text``).
        ``page_token`` starts at that page (of the same query); ``on_page(PageMark)`` is told
        each page before its contents are yielded, so a caller can resume there.
        """
        ascending = not order_by.startswith("-")
        params: dict[str, str] = {"orderBy": order_by, **filters}
        path = f"{self._prefix}/contents"
        pages = self._paged("list_contents", path, params, per_page, page_token, on_page)
        async for content in pages:
            created = _creation_time(content)
            if created is not None:
                if since is not None and created < since:
                    if ascending:
                        continue
                    return  # newest first: everything further is older still
                if until is not None and created >= until:
                    if ascending:
                        return
                    continue
            yield content

    async def create_content(
        self,
        body: str,
        *,
        in_reply_to_content_id: str | None = None,
        source_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create a content: a reply (``in_reply_to_content_id``) or a new discussion on a
        channel (``source_id``); the platform pushes it to the channel asynchronously."""
        payload: dict[str, Any] = {"body": body, **fields}
        if in_reply_to_content_id is not None:
            payload["inReplyToContentId"] = in_reply_to_content_id
        if source_id is not None:
            payload["sourceId"] = source_id
        answer = await self._call(
            "create_content", "POST", f"{self._prefix}/contents", json=payload, idempotent=False
        )
        return _object(answer, "create_content")

    def list_identities(self, **filters: str) -> AsyncIterator[dict[str, Any]]:
        """Identities (customers' and agents'; ``userIds`` non-empty = an agent's), every page.

        Filters are the platform's: ``sourceId``, ``userId``, ``identityGroupIds``, ``uuid``.
        """
        return self._paged("list_identities", f"{self._prefix}/identities", dict(filters), 1000)

    # -- webhook subscriptions -----------------------------------------------------------
    async def create_subscription(
        self,
        address: str,
        verification_token: str,
        event_filters: Sequence[str],
        expires_in: int = 604800,
    ) -> dict[str, Any]:
        """A WebHook subscription delivering ``event_filters`` to ``address``."""
        payload = {
            "eventFilters": list(event_filters),
            "deliveryMode": {
                "transportType": "WebHook",
                "address": address,
                "verificationToken": verification_token,
            },
            "expiresIn": expires_in,
        }
        answer = await self._call(
            "subscription", "POST", SUBSCRIPTION_PATH, json=payload, idempotent=False
        )
        return _object(answer, "subscription")

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """The subscriptions of this app and user."""
        answer = _object(await self._call("subscription", "GET", SUBSCRIPTION_PATH), "subscription")
        records = answer.get("records")
        if not isinstance(records, list):
            raise PlatformApiError("subscription", "field 'records' of the answer is not a list")
        return [record for record in records if isinstance(record, dict)]

    async def renew_subscription(self, subscription_id: str) -> dict[str, Any]:
        """Extend the subscription's life (``PlatformNotFound`` when it is gone)."""
        answer = await self._call(
            "subscription", "POST", f"{SUBSCRIPTION_PATH}/{subscription_id}/renew"
        )
        return _object(answer, "subscription")

    async def delete_subscription(self, subscription_id: str) -> None:
        """Cancel the subscription (``PlatformNotFound`` when it is gone)."""
        await self._call("subscription", "DELETE", f"{SUBSCRIPTION_PATH}/{subscription_id}")

    # -- transport -------------------------------------------------------------------------
    async def _paged(
        self,
        call: str,
        path: str,
        params: Mapping[str, str],
        per_page: int,
        page_token: str | None = None,
        on_page: Callable[[PageMark], None] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        query: dict[str, str] = {**params, "perPage": str(max(1, min(per_page, MAX_PER_PAGE)))}
        if page_token:
            query["pageToken"] = page_token
        seen_tokens: set[str] = set()
        while True:
            page = _object(await self._call(call, "GET", path, params=query), call)
            records = page.get("records")
            if not isinstance(records, list):
                raise PlatformApiError(call, "field 'records' of the answer is not a list")
            paging = page.get("paging")
            token = paging.get("nextPageToken") if isinstance(paging, dict) else None
            records = [record for record in records if isinstance(record, dict)]
            if on_page is not None:
                next_token = token if isinstance(token, str) and token else None
                on_page(PageMark(query.get("pageToken"), next_token, len(records)))
            for record in records:
                yield record
            if not isinstance(token, str) or not token or not records:
                return
            if token in seen_tokens:
                raise PlatformApiError(call, "the platform repeated a page token")
            seen_tokens.add(token)
            query["pageToken"] = token

    async def _call(
        self,
        call: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> Any:
        """One API call with a bearer token: waits out rate limits, refreshes on 401 once."""
        refreshed = False
        attempt = 0
        while True:
            token = await self._token()
            response = await self._send(
                call,
                attempt,
                method,
                path,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {token}"},
                idempotent=idempotent,
            )
            if response is None:  # a retriable failure: wait and try again
                attempt += 1
                continue
            if response.status_code == 401 and not refreshed:
                # Revoked, or expired early: one new token, then the same call once more.
                refreshed = True
                self._forget_token(token)
                continue
            return self._answer(call, method, response)

    async def _send(
        self,
        call: str,
        attempt: int,
        method: str,
        path: str,
        *,
        idempotent: bool,
        **request: Any,
    ) -> httpx.Response | None:
        """The response, or ``None`` after waiting when it should be tried again."""
        await self._wait_for_window()
        try:
            response = await self._http.request(method, path, **request)
        except httpx.TransportError as error:
            self._count(call, "error")
            # A write that may have reached the platform is not repeated (no duplicate reply).
            safe = idempotent or isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
            if not safe or attempt >= self._max_retries:
                raise PlatformApiError(
                    call, f"{method} {path}: {type(error).__name__} (network)"
                ) from None
            await self._backoff(call, attempt, None, f"{type(error).__name__}")
            return None
        self._count(call, str(response.status_code))
        self._note_rate_limit(response)
        if response.status_code in RETRIED_STATUSES:
            if attempt >= self._max_retries:
                raise PlatformApiError(
                    call,
                    f"{method} {path}: HTTP {response.status_code} after "
                    f"{self._max_retries + 1} attempts (rate-limited or unavailable)",
                    status=response.status_code,
                    error_code=_error_code(response),
                )
            await self._backoff(call, attempt, response, f"HTTP {response.status_code}")
            return None
        return response

    def _answer(self, call: str, method: str, response: httpx.Response) -> Any:
        status = response.status_code
        path = response.request.url.path
        if status == 204:
            return None
        if 200 <= status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise PlatformApiError(
                    call, f"{method} {path}: the answer is not JSON", status=status
                ) from None
        code = _error_code(response)
        detail = f" ({code})" if code else ""
        if status == 404:
            raise PlatformNotFound(
                call, f"{method} {path}: HTTP 404{detail}", status=status, error_code=code
            )
        hint = ""
        if status in (401, 403):
            hint = (
                ": the platform refused this app or user (check RINGCENTRAL_CLIENT_ID, "
                "RINGCENTRAL_CLIENT_SECRET, RINGCENTRAL_JWT and the app's permissions)"
            )
        raise PlatformApiError(
            call, f"{method} {path}: HTTP {status}{detail}{hint}", status=status, error_code=code
        )

    # -- the access token ------------------------------------------------------------------
    async def _token(self) -> str:
        if self._access_token is not None and self._clock() < self._refresh_at:
            return self._access_token
        async with self._token_lock:  # concurrent calls share one token request
            if self._access_token is not None and self._clock() < self._refresh_at:
                return self._access_token
            self._access_token = None
            answer = await self._token_grant()
            token = answer.get("access_token")
            if not isinstance(token, str) or not token:
                raise PlatformApiError("token", "the answer carries no access_token")
            lifetime = answer.get("expires_in")
            seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
            margin = min(REFRESH_MARGIN_SECONDS, seconds / 10)
            self._access_token = token
            self._refresh_at = self._clock() + seconds - margin
            log.info("event=platform_token_issued expires_in=%.0f", seconds)
            return token

    def _forget_token(self, token: str) -> None:
        if self._access_token == token:
            self._access_token = None

    async def _token_grant(self) -> dict[str, Any]:
        attempt = 0
        while True:
            response = await self._send(
                "token",
                attempt,
                "POST",
                TOKEN_PATH,
                data={"grant_type": JWT_GRANT, "assertion": self._jwt},
                auth=(self._client_id, self._client_secret),
                idempotent=True,
            )
            if response is None:
                attempt += 1
                continue
            if response.status_code in (400, 401, 403):
                code = _error_code(response)
                raise PlatformApiError(
                    "token",
                    f"POST {TOKEN_PATH}: HTTP {response.status_code}"
                    f"{f' ({code})' if code else ''}: the JWT grant was refused (check "
                    "RINGCENTRAL_CLIENT_ID, RINGCENTRAL_CLIENT_SECRET and RINGCENTRAL_JWT)",
                    status=response.status_code,
                    error_code=code,
                )
            return _object(self._answer("token", "POST", response), "token")

    # -- waiting -----------------------------------------------------------------------------
    def _note_rate_limit(self, response: httpx.Response) -> None:
        # The last request of the window went through: the next one waits for the window
        # (a 429 itself waits in ``_backoff``).
        if response.status_code != 429 and response.headers.get("X-Rate-Limit-Remaining") == "0":
            window = seconds_header(response.headers.get("X-Rate-Limit-Window"))
            if window:
                self._not_before = max(
                    self._not_before, self._clock() + min(window, self._max_wait)
                )

    async def _wait_for_window(self) -> None:
        wait = self._not_before - self._clock()
        self._not_before = 0.0
        if wait > 0:
            log.info("event=platform_rate_limit_pause wait=%.1f", wait)
            await self._sleep(wait)

    async def _backoff(
        self, call: str, attempt: int, response: httpx.Response | None, why: str
    ) -> None:
        wait: float | None = None
        if response is not None:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is None and response.status_code == 429:
                wait = seconds_header(response.headers.get("X-Rate-Limit-Window"))
        if wait is None:
            wait = 0.5 * 2**attempt
        wait = min(self._max_wait, wait)
        log.info("event=platform_api_retry call=%s why=%s attempt=%d wait=%.1f",
                 call, why.replace(" ", "_"), attempt + 1, wait)  # fmt: skip
        await self._sleep(wait)

    def _count(self, call: str, code: str) -> None:
        if self._requests is not None:
            self._requests.labels(call=call, code=code).inc()


_COUNTERS: weakref.WeakKeyDictionary[Any, Counter] = weakref.WeakKeyDictionary()


def _requests_counter(registry: CollectorRegistry) -> Counter:
    """``engage_platform_api_requests_total`` in ``registry`` (one per registry, shared)."""
    counter = _COUNTERS.get(registry)
    if counter is None:
        from prometheus_client import Counter  # optional: only when metrics are wanted

        counter = Counter(
            "engage_platform_api_requests",
            "Requests to the RingCentral platform API, by call and HTTP status code "
            "(code 'error' = no answer).",
            ["call", "code"],
            registry=registry,
        )
        _COUNTERS[registry] = counter
    return counter


def _object(answer: Any, call: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise PlatformApiError(call, "the answer is not a JSON object")
    return answer


def _error_code(response: httpx.Response) -> str | None:
    """The platform's short error code (``errorCode`` / OAuth ``error``), never its prose."""
    try:
        answer = response.json()
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    errors = answer.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("errorCode")
    else:
        code = answer.get("errorCode") or answer.get("error")
    if (
        isinstance(code, str)
        and len(code) <= 64
        and code.replace("-", "").replace("_", "").isalnum()
    ):
        return code
    return None


def _creation_time(content: dict[str, Any]) -> datetime | None:
    value = content.get("creationTime")
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
