"""The worker API is read-only, optionally behind a bearer token, and sends CORS headers only
to the configured origin (``streams.worker.access``), over real HTTP servers.

The app is the API adapter of ``tests/plugins/api_server.py`` (the handlers of
``streams/worker/web.py``)
with the worker's access middleware and its ``/healthz``, ``/readyz`` and ``/metrics``; the
real worker, token on, is checked by ``tests/ops/test_nothing_leaks.py``. schemathesis runs
with every check with the token off and on; the wallboard works in headless Chromium after
``/wallboard?token=`` once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from streams.worker.access import TOKEN_COOKIE, AccessPolicy, access_middleware
from tests.plugins.api_server import assert_schemathesis_finds_nothing, build_app, serve
from tests.plugins.browser import MISSING, available, chromium
from tests.plugins.waiting import wait_for
from tests.streams.core.test_api import CHANNELS, DIRECTORY, NOW, sample_standings

TOKEN = "wallboard-token-9c2e"
ORIGIN = "https://wallboard.example"
API = "/api/v1/leaderboard"


def worker_app(policy: AccessPolicy) -> web.Application:
    app = build_app(
        sample_standings(),
        DIRECTORY,
        lambda: CHANNELS,
        clock=lambda: NOW,
        bearer_token=policy.token is not None,
    )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="engage_agent_replies_total 3\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/metrics", metrics)
    app.middlewares.append(access_middleware(policy))
    return app


async def client_for(policy: AccessPolicy) -> AsyncIterator[httpx.AsyncClient]:
    server = TestServer(worker_app(policy), host="127.0.0.1")
    await server.start_server()
    try:
        async with httpx.AsyncClient(
            base_url=str(server.make_url("")).rstrip("/"), timeout=10, follow_redirects=False
        ) as client:
            yield client
    finally:
        await server.close()


@pytest.fixture
async def open_api() -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(AccessPolicy()):
        yield client


@pytest.fixture
async def closed_api() -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(AccessPolicy(token=TOKEN, cors_origin=ORIGIN)):
        yield client


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", [API, "/metrics", "/healthz", "/wallboard", "/no/such/path"])
async def test_only_get_and_head(open_api: httpx.AsyncClient, method: str, path: str) -> None:
    response = await open_api.request(method, path, content=b"{}")
    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == "GET, HEAD"
    assert "read-only" in response.json()["error"]


async def test_open_api_answers_and_sends_no_cors_headers(open_api: httpx.AsyncClient) -> None:
    for path in (API, "/api/v1/channels", "/wallboard", "/metrics", "/healthz"):
        response = await open_api.get(path, headers={"Origin": ORIGIN})
        assert response.status_code == 200, path
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert (await open_api.head(API)).status_code == 200


@pytest.mark.parametrize("path", [API, "/api/v1/channels", "/api/v1/openapi.json", "/metrics"])
async def test_token_required(closed_api: httpx.AsyncClient, path: str) -> None:
    for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}, bearer(TOKEN[:-1])):
        refused = await closed_api.get(path, headers=headers)
        assert refused.status_code == 401, (path, headers)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in refused.text
    in_query = await closed_api.get(path, params={"token": TOKEN})
    assert in_query.status_code == 401  # only the wallboard takes the token in its URL
    assert (await closed_api.get(path, headers=bearer())).status_code == 200
    assert (await closed_api.get(path, headers={"authorization": f"bearer {TOKEN}"})).is_success


async def test_probes_stay_open(closed_api: httpx.AsyncClient) -> None:
    assert (await closed_api.get("/healthz")).status_code == 200
    assert (await closed_api.get("/readyz")).status_code == 200
    assert (await closed_api.post("/healthz")).status_code == 405


async def test_wallboard_token_once_then_a_cookie(closed_api: httpx.AsyncClient) -> None:
    page = await closed_api.get("/wallboard")
    assert page.status_code == 401 and "/wallboard?token=" in page.text
    wrong = await closed_api.get("/wallboard", params={"token": "guess", "window": "week"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    login = await closed_api.get("/wallboard", params={"token": TOKEN, "window": "week"})
    assert login.status_code == 303
    assert login.headers["Location"] == "/wallboard?window=week"  # the token leaves the URL
    cookie = login.headers["Set-Cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    jar = {TOKEN_COOKIE: TOKEN}
    assert (await closed_api.get("/wallboard", cookies=jar)).status_code == 200
    assert (await closed_api.get(API, cookies=jar)).status_code == 200
    assert (await closed_api.get(API, cookies={TOKEN_COOKIE: "guess"})).status_code == 401


async def test_cors_only_for_the_configured_origin(closed_api: httpx.AsyncClient) -> None:
    ours = await closed_api.get(API, headers={"Origin": ORIGIN, **bearer()})
    assert ours.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert ours.headers["Vary"] == "Origin"
    refused = await closed_api.get(API, headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN  # the page can read why
    other = await closed_api.get(API, headers={"Origin": "https://evil.example", **bearer()})
    assert other.status_code == 200
    assert not [h for h in other.headers if h.lower().startswith("access-control-")]
    preflight = await closed_api.options(
        API, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Headers"] == "Authorization"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    stranger = await closed_api.options(API, headers={"Origin": "https://evil.example"})
    assert stranger.status_code == 405


def test_policy_from_settings() -> None:
    from engage_streams.settings import Settings

    policy = AccessPolicy.of(
        Settings.from_env({"WORKER_API_TOKEN": TOKEN, "WORKER_CORS_ORIGIN": ORIGIN + "/"})
    )
    assert policy == AccessPolicy(token=TOKEN, cors_origin=ORIGIN)
    assert AccessPolicy.of(Settings()) == AccessPolicy()
    assert Settings(worker_api_token=TOKEN).describe()["WORKER_API_TOKEN"] == "***"


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_schemathesis_every_check(tmp_path: Path, token: str | None) -> None:
    with serve(worker_app(AccessPolicy(token=token))) as server:
        assert_schemathesis_finds_nothing(server.url, tmp_path, token=token)
        if token:
            refused = httpx.get(server.url + API, timeout=10)
            assert refused.status_code == 401


@pytest.mark.browser
def test_wallboard_on_a_tv_with_the_token_in_its_url_once() -> None:
    if not available():
        pytest.skip(MISSING)
    from selenium.webdriver.common.by import By

    with serve(worker_app(AccessPolicy(token=TOKEN))) as server, chromium() as driver:

        def rows() -> list[str]:
            return [
                str(row.get_attribute("data-agent-id"))
                for row in driver.find_elements(By.CSS_SELECTOR, "#leaders tr[data-agent-id]")
            ]

        driver.get(f"{server.url}/wallboard?token={TOKEN}&window=all")
        wait_for(lambda: len(rows()) >= 2, 30, "the wallboard's leaders", lambda: str(rows()))
        assert "token=" not in driver.current_url and "window=all" in driver.current_url
        # Reloaded later (no token in the URL any more), it still shows the leaders.
        driver.get(f"{server.url}/wallboard?window=all")
        wait_for(lambda: len(rows()) >= 2, 30, "the leaders after a reload", lambda: str(rows()))
