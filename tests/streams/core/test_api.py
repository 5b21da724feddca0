"""The framework-free API handlers, and schemathesis against a real HTTP server built on them.

The HTTP server is ``tests.plugins.api_server`` (a minimal aiohttp adapter over the handlers).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import pytest

from streams.core.directory import AgentProfile, Directory
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import WaitingRun
from streams.core.responses.channels import ChannelFigures
from streams.core.responses.totals import Histogram
from streams.core.views.api import (
    ChannelSummary,
    agent_view,
    channel_summaries,
    channels_view,
    leaderboard_view,
)
from streams.core.views.openapi import openapi_document
from tests.plugins.api_server import assert_schemathesis_finds_nothing, build_app, serve
from tests.references.leaderboard import reference_leaderboard

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
    # Customers of both channels have waited all along: no answer cleared a backlog.
    for source in ("s-chat", "s-mail"):
        standings.add_waiting_run(
            WaitingRun(thread_id=f"q-{source}", source_id=source, source_type=None, since=0.0)
        )
    return standings


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


def test_schemathesis_finds_no_server_error_or_schema_violation(tmp_path: Path) -> None:
    app = build_app(sample_standings(), DIRECTORY, lambda: CHANNELS, clock=lambda: NOW)
    with serve(app) as server:
        assert_schemathesis_finds_nothing(server.url, tmp_path)
