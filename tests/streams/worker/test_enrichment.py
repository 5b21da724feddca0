"""Agent and channel names from the Engage REST API (pure mapping + a real HTTP round trip)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import orjson

from connectors.envelopes import parse_classic, parse_platform
from engage_streams.record import encode_event
from engage_streams.rest.classic import extension_ids
from streams.core.directory import AgentProfile, Directory
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.scoring import ScoringRules
from streams.core.responses.partition import PartitionProcessor, PartitionState
from streams.core.responses.sla import SlaPolicy
from streams.worker.enrichment import (
    EngageReference,
    agent_profiles,
    fetch_reference,
    identity_profiles,
    merge_reference,
    source_names,
)
from tests.plugins.fake_engage import TOKEN, FakeEngage
from tests.plugins.stores import MemoryThreadStore


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


# --- /content_sources, independent collections, one agent whichever webhook ---------------
SAMPLES = Path(__file__).resolve().parents[3] / "devkit" / "data" / "samples"
ADA = {"id": "5e9f8a7b6c5d4e0099887766", "firstname": "Ada", "rc_user_id": "63311250008"}


async def test_channels_come_from_content_sources_and_each_collection_stands_alone(
    fake: tuple[FakeEngage, str],
) -> None:
    engage, url = fake
    engage.collections["users"] = [ADA | {"team_ids": ["t1"]}]
    del engage.collections["teams"]  # GET /teams fails (404): users and channels still count
    reference = await fetch_reference(url, TOKEN)
    assert reference.sources == {"s1": "WhatsApp"}  # read from /content_sources
    assert reference.agents == {ADA["id"]: AgentProfile(name="Ada", team=None)}
    assert reference.aliases == {"63311250008": ADA["id"]}
    assert reference.missing == frozenset({"teams"})


def test_a_missing_teams_answer_keeps_the_teams_already_known() -> None:
    profiles = {"u1": AgentProfile(name="Ada", team="Care")}
    reference = EngageReference(
        agents={"u1": AgentProfile(name="Ada L.")}, sources={}, missing=frozenset({"teams"})
    )
    merge_reference(profiles, {}, reference, frozenset())
    assert profiles == {"u1": AgentProfile(name="Ada L.", team="Care")}


def test_extension_ids_name_the_same_agent_but_list_it_once() -> None:
    aliases = extension_ids([ADA, {"id": "u2", "rc_user_id": ""}, {"rc_user_id": "x"}])
    assert aliases == {"63311250008": ADA["id"]}
    directory = Directory(
        MappingProxyType({ADA["id"]: AgentProfile(name="Ada", team="Care")}),
        aliases=MappingProxyType(aliases),
    )
    assert directory.name("63311250008") == "Ada" and directory.team("63311250008") == "Care"
    assert "63311250008" in directory
    assert list(directory) == [ADA["id"]]  # one _info row per agent
    assert directory.name("unknown") == "unknown"


def test_platform_identities_name_agents_by_extension_id() -> None:
    identities = [
        {"id": "i1", "displayName": "Ada Lovelace", "userIds": ["63311250008"]},
        {"id": "i2", "firstName": "Bo", "lastName": "Ng", "userIds": ["63311250009"]},
        {"id": "i3", "displayName": "A customer", "userIds": []},
        {"id": "i4", "screenName": "cy", "userId": "63311250010"},
        {"id": "i5", "displayName": "Ada (WhatsApp)", "userIds": ["63311250008"]},
    ]
    assert identity_profiles(identities) == {
        "63311250008": AgentProfile(name="Ada Lovelace"),
        "63311250009": AgentProfile(name="Bo Ng"),
        "63311250010": AgentProfile(name="cy"),
    }


def test_an_identity_of_a_known_agent_is_not_a_second_agent() -> None:
    """Platform identities name agents by extension id; where the config file (or GET /users)
    already knows that extension id as an agent's, no second profile is made."""
    profiles = {"agent-1": AgentProfile(name="Ada", team="Care")}
    aliases = {"400131234001": "agent-1"}  # the config file's rc_user_id
    identities = [
        {"id": "i1", "displayName": "Ada L.", "userIds": ["400131234001"]},
        {"id": "i2", "displayName": "Bo", "userIds": ["400131234002"]},
    ]
    reference = EngageReference(
        agents=identity_profiles(identities),
        sources={},
        aliases={"400131234001": "someone-else"},  # the file wins
    )
    merge_reference(profiles, {}, reference, frozenset({"agent-1"}), aliases)
    assert profiles == {
        "agent-1": AgentProfile(name="Ada", team="Care"),
        "400131234002": AgentProfile(name="Bo"),  # an agent only the platform knows
    }
    assert aliases == {"400131234001": "agent-1"}


def test_one_agent_answering_through_both_webhooks_is_one_leaderboard_row() -> None:
    """A classic reply (creator_id = Engage user id) and a platform reply (creatorId =
    extension id) by Ada: one agent id in the records, one row, with her name."""
    received = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    agent_ids = extension_ids([ADA])
    classic = parse_classic(
        (SAMPLES / "classic-agent-reply-batch.json").read_bytes(),
        received_at=received,
        forward_body=False,
    ).records
    platform_raw = orjson.loads((SAMPLES / "platform-agent-reply.json").read_bytes())
    platform = parse_platform(
        orjson.dumps(platform_raw), received_at=received, forward_body=False, agent_ids=agent_ids
    ).records
    customer = orjson.loads((SAMPLES / "platform-imported.json").read_bytes())
    asked = parse_platform(orjson.dumps(customer), received_at=received, forward_body=False)
    processor = PartitionProcessor(SlaPolicy(), 0.0, 86400.0)
    state, store = PartitionState(), MemoryThreadStore()
    activities = []
    customer_first = parse_classic(
        (SAMPLES / "classic-customer-message.json").read_bytes(),
        received_at=received,
        forward_body=False,
    ).records
    for offset, record in enumerate([*customer_first, *asked.records, *classic, *platform]):
        activities += processor.apply(state, store, offset, encode_event(record))
    activities += processor.release_until(state, store, float("inf"))
    assert state.totals.agent_replies == {ADA["id"]: 2}
    directory = Directory(MappingProxyType({ADA["id"]: AgentProfile(name="Ada", team="Care")}))
    standings = Standings(ScoringRules(), "UTC", directory)
    for activity in activities:
        standings.add(activity)
    rows = standings.leaderboard("all", received.timestamp())
    assert [(row.agent_id, row.name, row.replies) for row in rows] == [(ADA["id"], "Ada", 2)]
