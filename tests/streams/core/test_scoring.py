"""Points per content and the scoring config file (defaults, example file, clear errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.scoring import (
    ScoringConfigError,
    ScoringRules,
    load_scoring_rules,
    points,
    points_milli,
    scoring_rules_from_mapping,
)
from tests.references.leaderboard import reference_points_milli

CONFIG = Path(__file__).resolve().parents[3] / "config"


def act(
    response: float | None,
    *,
    first: bool = False,
    sla: bool | None = None,
    source_id: str | None = "s1",
    source_type: str | None = "messaging",
) -> AgentActivity:
    return AgentActivity(
        agent_id="a",
        content_id="c",
        thread_id="t",
        source_id=source_id,
        source_type=source_type,
        event_time=0.0,
        response_seconds=response,
        first_response=first,
        within_sla=sla,
    )


DEFAULTS = ScoringRules()


@pytest.mark.parametrize(
    ("activity", "expected"),
    [
        (act(None), 1.0),  # proactive: the reply point only
        (act(600.0, sla=False), 1.0),  # late answer
        (act(120.0, sla=True), 3.0),  # 1 + SLA bonus 2
        (act(60.0, sla=True), 5.0),  # 1 + fast bonus 4 (at the threshold), no SLA bonus on top
        (act(30.0, sla=True, first=True), 6.0),  # 1 + 4 + first response 1
        (act(900.0, sla=False, first=True), 2.0),  # first response bonus without SLA
        (act(None, first=True), 1.0),  # "first" without an answer earns nothing more
        (act(120.0, sla=True, source_type="email"), 3.0),  # unweighted by default
    ],
)
def test_default_points(activity: AgentActivity, expected: float) -> None:
    assert points(activity, DEFAULTS) == expected


def test_channel_weights_source_id_wins_over_type() -> None:
    rules = scoring_rules_from_mapping(
        {"channel_weights": {"source_type": {"email": 1.5}, "source_id": {"vip": 3}}}
    )
    assert points(act(120.0, sla=True, source_type="email"), rules) == 4.5
    assert points(act(120.0, sla=True, source_id="vip", source_type="email"), rules) == 9.0
    assert points(act(120.0, sla=True, source_id=None, source_type=None), rules) == 3.0


def test_points_are_rounded_to_thousandths() -> None:
    rules = ScoringRules(reply=1.0, source_type_weights={"x": 1 / 3})
    assert points_milli(act(None, source_type="x"), rules) == 333
    assert points(act(None, source_type="x"), rules) == 0.333


@given(
    response=st.one_of(st.none(), st.integers(0, 5000)),
    first=st.booleans(),
    sla=st.booleans(),
    weight=st.sampled_from([0, 0.25, 0.5, 1, 1.5, 2, 3]),
    reply=st.sampled_from([0, 0.5, 1, 2]),
    bonus=st.sampled_from([0, 1, 2.5]),
)
def test_points_match_the_reference(
    response: int | None, first: bool, sla: bool, weight: float, reply: float, bonus: float
) -> None:
    rules = ScoringRules(
        reply=reply,
        within_sla_bonus=bonus,
        fast_answer_bonus=bonus * 2,
        fast_answer_seconds=90,
        first_response_bonus=bonus / 2,
        source_type_weights={"email": weight},
    )
    activity = act(
        None if response is None else float(response),
        first=first,
        sla=sla if response is not None else None,
        source_type="email",
    )
    assert points_milli(activity, rules) == reference_points_milli(activity, rules)


def test_example_config_loads_with_documented_values() -> None:
    rules = load_scoring_rules(CONFIG / "scoring.example.toml")
    assert rules.reply == 1.0 and rules.within_sla_bonus == 2.0
    assert rules.fast_answer_bonus == 4.0 and rules.fast_answer_seconds == 60.0
    assert rules.first_response_bonus == 1.0
    assert dict(rules.source_type_weights) == {"email": 1.5}
    assert rules.sla_streaks == (5, 10, 25) and rules.first_to_answer == 10


def test_no_config_gives_defaults_and_json_is_accepted(tmp_path: Path) -> None:
    assert load_scoring_rules(None) == ScoringRules()
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"points": {"reply": 2}, "badges": {"sla_streaks": [3, 3, 1]}}))
    rules = load_scoring_rules(path)
    assert rules.reply == 2.0 and rules.sla_streaks == (1, 3)
    assert rules.within_sla_bonus == ScoringRules().within_sla_bonus


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[points]\nrepyl = 1\n", "unknown key points.repyl"),
        ("[points]\nreply = 'one'\n", "points.reply must be a number"),
        ("[points]\nfast_answer_seconds = -5\n", "points.fast_answer_seconds must be a finite"),
        ("[points]\nreply = true\n", "points.reply must be a number"),
        ("[channel_weights.source_type]\nemail = 'x'\n", "channel_weights.source_type.email"),
        ("[channel_weights]\nchannel = {}\n", "unknown key channel_weights.channel"),
        ("[badges]\nsla_streaks = 5\n", "badges.sla_streaks must be a list"),
        ("[badges]\nsla_streaks = [5, 0]\n", "badges.sla_streaks[1] must be a whole number"),
        ("[badges]\nfirst_to_answer = 2.5\n", "badges.first_to_answer must be a whole number"),
        ("points = 3\n", "points must be a table"),
        ("[extra]\n", "unknown key extra"),
        ("not toml = = =", "not valid TOML/JSON"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scoring.toml"
    path.write_text(text)
    with pytest.raises(ScoringConfigError) as caught:
        load_scoring_rules(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScoringConfigError, match="cannot read scoring config"):
        load_scoring_rules(tmp_path / "absent.toml")
