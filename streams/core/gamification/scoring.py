"""The rules of the game: how many points an agent content earns, read from a config file.

``ScoringRules`` holds every number (documented defaults below and in
``config/scoring.example.toml``); ``load_scoring_rules(path)`` reads TOML or JSON once at
start and raises ``ScoringConfigError`` naming the key to fix. ``points(activity, rules)`` is
pure. Badge thresholds live here too, so one file describes the whole game. This module must
not know about Kafka, HTTP or Prometheus.

Points of one agent content::

    reply                                    every agent content (answers and proactive)
    + fast_answer_bonus                      an answer within fast_answer_seconds, else
    + within_sla_bonus                       an answer within its channel's SLA
    + first_response_bonus                   the first answer of an intervention
    all multiplied by the channel weight     source_id weight, else source_type weight, else 1

Scores are rounded to milli-points (3 decimals) so that sums are exact integers
(``points_milli``) whatever order activities arrive in.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from streams.core.gamification.activity import AgentActivity


class ScoringConfigError(ValueError):
    """The scoring config cannot be used; the message names the file and the key."""


def _frozen(values: Mapping[str, float] | None = None) -> Mapping[str, float]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True, kw_only=True)
class ScoringRules:
    """Points and badge thresholds. Defaults are the product's documented defaults."""

    reply: float = 1.0
    """Points for every agent content, answer or proactive message."""
    within_sla_bonus: float = 2.0
    """Added for an answer within its channel's SLA (not cumulated with the fast bonus)."""
    fast_answer_bonus: float = 4.0
    """Added instead of ``within_sla_bonus`` for an answer within ``fast_answer_seconds``."""
    fast_answer_seconds: float = 60.0
    first_response_bonus: float = 1.0
    """Added for the first answer of an intervention."""
    source_type_weights: Mapping[str, float] = field(default_factory=_frozen)
    """Multiplier per channel type (``email``, ``twitter``...); missing types weigh 1."""
    source_id_weights: Mapping[str, float] = field(default_factory=_frozen)
    """Multiplier per channel (source id); wins over the type's weight."""
    sla_streaks: tuple[int, ...] = (5, 10, 25)
    """Badge ``sla_streak_N`` for N consecutive answers within SLA in one day."""
    first_to_answer: int = 10
    """Badge ``first_to_N``: the agent whose Nth answer of the day came first."""

    def weight(self, source_id: str | None, source_type: str | None) -> float:
        """The channel multiplier of a content."""
        if source_id is not None and source_id in self.source_id_weights:
            return self.source_id_weights[source_id]
        if source_type is not None and source_type in self.source_type_weights:
            return self.source_type_weights[source_type]
        return 1.0


def points(activity: AgentActivity, rules: ScoringRules) -> float:
    """Points earned by one agent content (rounded to 3 decimals)."""
    return points_milli(activity, rules) / 1000


def points_milli(activity: AgentActivity, rules: ScoringRules) -> int:
    """Points earned by one agent content, in thousandths of a point (exact to sum)."""
    earned = rules.reply
    if activity.response_seconds is not None:
        if activity.response_seconds <= rules.fast_answer_seconds:
            earned += rules.fast_answer_bonus
        elif activity.within_sla:
            earned += rules.within_sla_bonus
        if activity.first_response:
            earned += rules.first_response_bonus
    return round(earned * rules.weight(activity.source_id, activity.source_type) * 1000)


_POINT_KEYS = {
    "reply",
    "within_sla_bonus",
    "fast_answer_bonus",
    "fast_answer_seconds",
    "first_response_bonus",
}
_TOP_KEYS = {"points", "channel_weights", "badges"}
_WEIGHT_KEYS = {"source_type", "source_id"}
_BADGE_KEYS = {"sla_streaks", "first_to_answer"}


def load_scoring_rules(path: str | Path | None) -> ScoringRules:
    """Rules from a ``.toml`` or ``.json`` file; ``None`` gives the defaults."""
    if path is None:
        return ScoringRules()
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ScoringConfigError(f"{file}: cannot read scoring config ({exc.strerror})") from None
    try:
        if file.suffix.lower() == ".json":
            document = json.loads(raw)
        else:
            document = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScoringConfigError(f"{file}: not valid TOML/JSON: {exc}") from None
    return scoring_rules_from_mapping(document, origin=str(file))


def scoring_rules_from_mapping(document: object, *, origin: str = "scoring config") -> ScoringRules:
    """Validate a parsed config document (see ``config/scoring.example.toml``)."""
    top = _table(document, "", origin)
    _no_unknown(top, _TOP_KEYS, "", origin)
    values: dict[str, Any] = {}
    points_table = _table(top.get("points", {}), "points", origin)
    _no_unknown(points_table, _POINT_KEYS, "points.", origin)
    for key, value in points_table.items():
        values[key] = _number(value, f"points.{key}", origin)
    weights = _table(top.get("channel_weights", {}), "channel_weights", origin)
    _no_unknown(weights, _WEIGHT_KEYS, "channel_weights.", origin)
    for kind in ("source_type", "source_id"):
        prefix = f"channel_weights.{kind}"
        table = _table(weights.get(kind, {}), prefix, origin)
        values[f"{kind}_weights"] = _frozen(
            {str(k): _number(v, f"{prefix}.{k}", origin) for k, v in table.items()}
        )
    badges = _table(top.get("badges", {}), "badges", origin)
    _no_unknown(badges, _BADGE_KEYS, "badges.", origin)
    if "sla_streaks" in badges:
        streaks = badges["sla_streaks"]
        if not isinstance(streaks, list):
            raise ScoringConfigError(f"{origin}: badges.sla_streaks must be a list of counts")
        counts = [_count(v, f"badges.sla_streaks[{i}]", origin) for i, v in enumerate(streaks)]
        values["sla_streaks"] = tuple(sorted(set(counts)))
    if "first_to_answer" in badges:
        values["first_to_answer"] = _count(
            badges["first_to_answer"], "badges.first_to_answer", origin
        )
    return ScoringRules(**values)


def _table(value: object, key: str, origin: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        where = key or "the top level"
        raise ScoringConfigError(f"{origin}: {where} must be a table/object")
    return value


def _no_unknown(table: Mapping[str, Any], known: set[str], prefix: str, origin: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ScoringConfigError(
            f"{origin}: unknown key {prefix}{unknown[0]} (expected one of {sorted(known)})"
        )


def _number(value: object, key: str, origin: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoringConfigError(f"{origin}: {key} must be a number (got {value!r})")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ScoringConfigError(f"{origin}: {key} must be a finite number >= 0 (got {value!r})")
    return number


def _count(value: object, key: str, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScoringConfigError(f"{origin}: {key} must be a whole number >= 1 (got {value!r})")
    return value
