"""The framework-free API handlers, and schemathesis against a real HTTP server built on them.

``SCHEMATHESIS_CLI`` may name another ``st`` executable (default: the one beside Python).

``build_app``/``serve`` are also used by ``test_wallboard_browser.py``: a minimal aiohttp
adapter over the handlers (like ``streams/web.py``), served from a background thread so that
blocking clients (schemathesis, selenium) can call it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pytest
from aiohttp import web
from leaderboard_reference import reference_leaderboard

from streams.activity import AgentActivity
from streams.api import (
    ChannelSummary,
    agent_view,
    channel_summaries,
    channels_view,
    leaderboard_view,
)
from streams.channels import ChannelFigures
from streams.directory import AgentProfile, Directory, DirectoryError, load_directory
from streams.leaderboard import Standings
from streams.openapi import openapi_document
from streams.scoring import ScoringRules
from streams.totals import Histogram

T = TypeVar("T")
NOW = 1_718_193_600.0  # 2024-06-12T12:00:00Z, a Wednesday
DIRECTORY = Directory(
    MappingProxyType(
        {
            "agent-1": AgentProfile(name="Ada Lovelace", team="billing"),
            "agent-2": AgentProfile(name="Grace Hopper", team="support"),
            "agent-9": AgentProfile(name="Never Active", team="support"),
        }
    )
)
RULES = ScoringRules()


def activity(
    agent: str, content: str, when: float, response: float | None, source: str = "s-chat"
) -> AgentActivity:
    return AgentActivity(
        agent_id=agent,
        content_id=content,
        thread_id="t-" + content,
        source_id=source,
        source_type="messaging" if source == "s-chat" else "email",
        event_time=when,
        response_seconds=response,
        first_response=response is not None,
        within_sla=None if response is None else response <= 300,
        cleared_backlog=False,
    )


SAMPLE = [
    activity("agent-1", "c1", NOW - 60, 30.0),
    activity("agent-1", "c2", NOW - 7200, 500.0, source="s-mail"),
    activity("agent-2", "c3", NOW - 120, 200.0),
    activity("agent-2", "c4", NOW - 130, None),
    activity("agent-3", "c5", NOW - 3 * 86400, 20.0, source="s-mail"),
]

CHANNELS = [
    ChannelSummary(
        source_id="s-mail",
        source_type="email",
        source_name="Support mailbox",
        contents_inbound=10,
        contents_outbound=4,
        responses=4,
        response_seconds_sum=4000.0,
        first_responses=2,
        first_response_seconds_sum=3000.0,
        within_sla=3,
        outside_sla=1,
        backlog_contents=6,
        backlog_oldest_age_seconds=5400.0,
    ),
    ChannelSummary(
        source_id="s-chat",
        source_type="messaging",
        contents_inbound=3,
        contents_outbound=0,
        responses=0,
        response_seconds_sum=0.0,
        first_responses=0,
        first_response_seconds_sum=0.0,
        within_sla=0,
        outside_sla=0,
        backlog_contents=0,
        backlog_oldest_age_seconds=None,
    ),
]


def sample_standings() -> Standings:
    standings = Standings(RULES, "UTC", DIRECTORY)
    for item in SAMPLE:
        standings.add(item)
    return standings


# -- a minimal web adapter over the handlers, served from a thread ---------------------------


def build_app(
    standings: Standings,
    directory: Directory,
    channels: Callable[[], Sequence[ChannelSummary]],
    clock: Callable[[], float] = time.time,
    *,
    bearer_token: bool = False,
) -> web.Application:
    def reply(result: tuple[int, dict[str, Any]]) -> web.Response:
        return web.json_response(result[1], status=result[0])

    async def leaderboard(request: web.Request) -> web.Response:
        return reply(leaderboard_view(standings, directory, request.query, clock()))

    async def agent(request: web.Request) -> web.Response:
        return reply(agent_view(standings, directory, request.match_info["agent_id"], clock()))

    async def channel_list(request: web.Request) -> web.Response:
        return reply(channels_view(channels(), clock()))

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(bearer_token=bearer_token))

    async def wallboard(request: web.Request) -> web.Response:
        page = resources.files("streams").joinpath("wallboard.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/v1/leaderboard", leaderboard),
            web.get("/api/v1/agents/{agent_id}", agent),
            web.get("/api/v1/channels", channel_list),
            web.get("/api/v1/openapi.json", openapi),
            web.get("/wallboard", wallboard),
        ]
    )
    return app


class Served:
    """A running server: its base URL, and a way to run code on its event loop thread."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self._loop = loop

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the server's loop (no request is being served meanwhile)."""

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)


@contextmanager
def serve(app: web.Application) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="api-test-server", daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{port}", loop)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# -- leaderboard -------------------------------------------------------------------------------


def test_leaderboard_defaults_to_today_top_10_with_names() -> None:
    status, body = leaderboard_view(sample_standings(), DIRECTORY, {}, NOW)
    assert status == 200
    assert body["window"] == "today"
    assert body["generated_at"] == "2024-06-12T12:00:00.000Z"
    want = reference_leaderboard(SAMPLE, RULES, NOW, "UTC", "today")
    assert [e["agent_id"] for e in body["entries"]] == [r["agent_id"] for r in want]
    assert [e["score"] for e in body["entries"]] == [r["score"] for r in want]
    assert [e["name"] for e in body["entries"]] == ["Ada Lovelace", "Grace Hopper"]
    # Hand-checked: agent-1 today = fast first answer (1+4+1) + late answer (1+0+1) = 8.
    assert body["entries"][0] == {
        "rank": 1,
        "agent_id": "agent-1",
        "name": "Ada Lovelace",
        "score": 8.0,
        "replies": 2,
        "median_response_seconds": 265.0,
        "badges": [],
    }


@pytest.mark.parametrize(
    ("query", "window", "source", "team", "limit"),
    [
        ({"window": "hour"}, "hour", None, None, None),
        ({"window": "all", "limit": "2"}, "all", None, None, 2),
        ({"window": "week", "source": "s-mail"}, "week", "s-mail", None, None),
        ({"window": "all", "team": "support"}, "all", None, "support", None),
        ({"window": "all", "source": "", "team": ""}, "all", None, None, None),
    ],
)
def test_leaderboard_filters(
    query: dict[str, str], window: str, source: str | None, team: str | None, limit: int | None
) -> None:
    status, body = leaderboard_view(sample_standings(), DIRECTORY, query, NOW)
    teams = {a: p.team for a, p in DIRECTORY.profiles.items() if p.team}
    want = reference_leaderboard(
        SAMPLE, RULES, NOW, "UTC", window, source=source, team=team, teams=teams, limit=limit
    )
    assert status == 200 and body["window"] == window
    assert [(e["rank"], e["agent_id"], e["score"], e["replies"]) for e in body["entries"]] == [
        (r["rank"], r["agent_id"], r["score"], r["replies"]) for r in want
    ]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ({"window": "month"}, "window"),
        ({"window": ""}, "window"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-3"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"windows": "hour"}, "'windows'"),
    ],
)
def test_leaderboard_rejects_bad_parameters_naming_them(query: dict[str, str], names: str) -> None:
    status, body = leaderboard_view(sample_standings(), DIRECTORY, query, NOW)
    assert status == 400
    assert set(body) == {"error"}
    assert names in body["error"]
    for value in query.values():
        if len(value) > 1:
            assert repr(value) not in body["error"]


# -- agents --------------------------------------------------------------------------------------


def test_agent_view() -> None:
    standings = sample_standings()
    status, body = agent_view(standings, DIRECTORY, "agent-2", NOW)
    assert status == 200
    assert (body["name"], body["team"]) == ("Grace Hopper", "support")
    assert set(body["windows"]) == {"hour", "today", "week", "all"}
    # agent-2: a within-SLA first answer (1+2+1) and a proactive message (1), both this hour.
    assert body["windows"]["hour"] == {
        "rank": 2,
        "score": 5.0,
        "replies": 2,
        "median_response_seconds": 200.0,
        "badges": [],
    }
    # All time, agent-3's fast first answer three days ago (1+4+1 = 6) ranks above its 5.
    assert body["windows"]["all"]["rank"] == 3


def test_unknown_agent_is_404_but_a_configured_agent_has_zeros() -> None:
    standings = sample_standings()
    status, body = agent_view(standings, DIRECTORY, "nobody", NOW)
    # Says what is wrong without echoing the id (errors never reflect a client's values).
    assert status == 404 and "unknown agent" in body["error"] and "nobody" not in body["error"]
    status, body = agent_view(standings, DIRECTORY, "agent-9", NOW)
    assert status == 200 and body["windows"]["week"]["replies"] == 0
    assert body["windows"]["week"]["rank"] is None


# -- channels -----------------------------------------------------------------------------------


def test_channels_view_sorted_with_averages() -> None:
    status, body = channels_view(CHANNELS, NOW)
    assert status == 200
    assert [c["source_id"] for c in body["channels"]] == ["s-chat", "s-mail"]
    mail = body["channels"][1]
    assert mail["avg_response_seconds"] == 1000.0 and mail["avg_first_response_seconds"] == 1500.0
    assert mail["backlog_contents"] == 6 and mail["source_name"] == "Support mailbox"
    assert body["channels"][0]["avg_response_seconds"] is None


def test_channel_summaries_from_cluster_figures() -> None:
    response = Histogram()
    for seconds in (10.0, 50.0):
        response.observe(seconds)
    figures = ChannelFigures(
        source_id="s1",
        source_type="email",
        contents_inbound=5,
        contents_outbound=2,
        response=response,
        within_sla=2,
        backlog_contents=3,
        backlog_oldest_time=NOW - 90,
    )
    empty = ChannelFigures(source_id="s2", source_type="sms", backlog_oldest_time=None)
    (summary, other) = channel_summaries([figures, empty], NOW, names={"s1": "Mail"})
    assert (summary.responses, summary.response_seconds_sum) == (2, 60.0)
    assert summary.backlog_oldest_age_seconds == 90.0 and summary.source_name == "Mail"
    assert other.backlog_oldest_age_seconds is None and other.responses == 0


# -- the whole API over HTTP, checked by schemathesis against the OpenAPI document ----------------


def test_openapi_document_names_exactly_the_endpoints() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/v1/leaderboard",
        "/api/v1/agents/{agent_id}",
        "/api/v1/channels",
    }
    json.dumps(document)  # serializable as served


def assert_schemathesis_finds_nothing(
    base_url: str, workdir: Path, token: str | None = None
) -> None:
    """Fuzz the API described by ``{base_url}/api/v1/openapi.json`` with schemathesis (every
    check, positive and negative data): no server error, no answer that breaks the schema.
    With ``token``, every request carries ``Authorization: Bearer <token>`` (schemathesis's
    ``ignored_auth`` check also sends some without it, and expects them refused)."""
    # We send the real token; schemathesis must not also generate (negative) values for the
    # security header, which our -H then overrides: 3.x reports those as accepted bad data.
    auth = (
        ["-H", f"Authorization: Bearer {token}", "--generation-with-security-parameters=false"]
        if token
        else []
    )
    command = [
        os.environ.get("SCHEMATHESIS_CLI", str(Path(sys.executable).parent / "st")),
        "run",
        f"{base_url}/api/v1/openapi.json",
        *auth,
        "--checks",
        "all",
        "--data-generation-method",
        "all",
        "--hypothesis-max-examples=50",
        "--hypothesis-derandomize",
        "--no-color",
    ]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(workdir)}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=workdir,
        env=environment,
    )
    output = result.stdout + result.stderr
    if "object has no attribute 'more'" in output:
        pytest.fail(
            "hypothesis >= 6.170.10 removed an internal that hypothesis-jsonschema 0.23.1 (used "
            "by schemathesis) needs: pin hypothesis<6.170.10 in the dev dependencies"
        )
    assert result.returncode == 0, output
    # Every operation was exercised, and passed.
    assert len(re.findall(r"PASSED", output)) >= 3, output


def test_schemathesis_finds_no_server_error_or_schema_violation(tmp_path: Path) -> None:
    app = build_app(sample_standings(), DIRECTORY, lambda: CHANNELS, clock=lambda: NOW)
    with serve(app) as server:
        assert_schemathesis_finds_nothing(server.url, tmp_path)


# -- the agents config behind names and teams ------------------------------------------------


def test_agents_example_config_loads() -> None:
    config = Path(__file__).resolve().parent.parent / "config" / "agents.example.json"
    directory = load_directory(config)
    assert directory.name("agent-1") == "Ada Lovelace" and directory.team("agent-1") == "Billing"
    assert directory.team("agent-4") is None
    assert directory.name("stranger") == "stranger" and directory.team("stranger") is None
    assert load_directory(None).name("x") == "x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"agents": {"a1": {"name": 3}}}', "agents.a1.name must be a string"),
        ('{"agents": {"a1": {"nom": "x"}}}', "unknown key agents.a1.nom"),
        ('{"agents": {"a1": "Ada"}}', "agents.a1 must be an object"),
        ('{"agents": []}', "agents must be an object"),
        ('{"people": {}}', "unknown key people"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_agents_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "agents.json"
    path.write_text(text)
    with pytest.raises(DirectoryError) as caught:
        load_directory(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
