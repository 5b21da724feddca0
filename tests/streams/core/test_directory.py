"""The agents config behind names and teams (``streams.core.directory``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.directory import DirectoryError, load_directory

REPO = Path(__file__).resolve().parents[3]


def test_agents_example_config_loads() -> None:
    config = REPO / "config" / "agents.example.json"
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
        ('{"sources": {"s1": "WhatsApp"}}', 'sources.s1 must be {"name": "..."}'),
        ('{"sources": {"s1": {"name": 1}}}', "sources.s1.name must be a string"),
        ('{"sources": []}', "sources must be an object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_agents_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "agents.json"
    path.write_text(text)
    with pytest.raises(DirectoryError) as caught:
        load_directory(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_channel_names_come_from_the_sources_key(tmp_path: Path) -> None:
    path = tmp_path / "agents.json"
    path.write_text('{"sources": {"src-wa": {"name": "WhatsApp Sales"}}}')
    directory = load_directory(path)
    assert dict(directory.sources) == {"src-wa": "WhatsApp Sales"}
    assert dict(load_directory(None).sources) == {}


def test_an_agents_extension_id_names_the_agent_but_is_not_a_second_agent(tmp_path: Path) -> None:
    path = tmp_path / "agents.json"
    path.write_text(
        '{"agents": {"agent-1": {"name": "Ada", "team": "Care", "rc_user_id": "400131234001"},'
        ' "agent-2": {"name": "Bo"}}}'
    )
    directory = load_directory(path)
    assert dict(directory.aliases) == {"400131234001": "agent-1"}
    assert directory.name("400131234001") == "Ada" and directory.team("400131234001") == "Care"
    assert list(directory) == ["agent-1", "agent-2"]


@pytest.mark.parametrize(
    "agents",
    [
        '{"a1": {"rc_user_id": "x"}, "a2": {"rc_user_id": "x"}}',  # two agents, one extension
        '{"a1": {"rc_user_id": "a2"}, "a2": {}}',  # an extension id that is an agent id
    ],
)
def test_an_extension_id_names_one_agent_only(tmp_path: Path, agents: str) -> None:
    path = tmp_path / "agents.json"
    path.write_text(f'{{"agents": {agents}}}')
    with pytest.raises(DirectoryError, match="names another agent too"):
        load_directory(path)
