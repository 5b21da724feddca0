"""Agent and channel names from the Engage REST API (pure mapping + a real HTTP round trip)."""

from __future__ import annotations

from streams.core.directory import AgentProfile
from streams.worker.enrichment import (
    EngageReference,
    agent_profiles,
    fetch_reference,
    merge_reference,
    source_names,
)
from tests.plugins.fake_engage import TOKEN, FakeEngage


def test_agent_names_and_first_known_team() -> None:
    users = [
        {"id": "u1", "firstname": "Ada", "lastname": "Lovelace", "team_ids": ["t9", "t1"]},
        {"id": 42, "nickname": "bo", "team_ids": []},
        {"id": "u3", "email": "cy@example.com"},
        {"firstname": "no id"},
    ]
    teams = [{"id": "t1", "name": "Care"}, {"id": "t2", "name": "Sales"}]
    assert agent_profiles(users, teams) == {
        "u1": AgentProfile(name="Ada Lovelace", team="Care"),
        "42": AgentProfile(name="bo", team=None),
        "u3": AgentProfile(name="cy", team=None),
    }


def test_source_names_skip_unnamed_sources() -> None:
    assert source_names([{"id": "s1", "name": "WhatsApp"}, {"id": "s2"}]) == {"s1": "WhatsApp"}


async def test_fetch_reference_reads_users_teams_and_sources(
    fake: tuple[FakeEngage, str],
) -> None:
    engage, url = fake
    engage.collections["users"] = [{"id": "u1", "firstname": "Ada", "team_ids": ["t1"]}]
    reference = await fetch_reference(url, TOKEN)
    assert reference.agents == {"u1": AgentProfile(name="Ada", team="Care")}
    assert reference.sources == {"s1": "WhatsApp"}


def test_the_agents_config_file_wins_over_the_api() -> None:
    profiles = {"u1": AgentProfile(name="Ada (from the file)", team="Night shift")}
    names: dict[str, str] = {}
    reference = EngageReference(
        agents={"u1": AgentProfile(name="Ada", team="Care"), "u2": AgentProfile(name="Bo")},
        sources={"s1": "WhatsApp"},
    )
    merge_reference(profiles, names, reference, frozenset({"u1"}))
    assert profiles == {
        "u1": AgentProfile(name="Ada (from the file)", team="Night shift"),
        "u2": AgentProfile(name="Bo"),
    }
    assert names == {"s1": "WhatsApp"}
