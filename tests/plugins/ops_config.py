"""What operators look at, as the tests read it: alert rules, dashboards, PromQL helpers.

Shared by ``tests/ops/test_ops_config.py`` (structure, promtool, a Prometheus on a synthetic
exporter) and ``tests/ops/test_live_pipeline.py`` (a Prometheus on the live product). The
contract's metric names are kept here as a list: CI has no guaranteed copy of shared/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
LOCAL_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
COMPOSE_CONFIG = PROMETHEUS_DIR / "prometheus.compose.yml"
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
PROVISIONING = REPO / "grafana" / "provisioning"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

# The metric table of shared/CONTRACT.md (name -> type), plus the connector's publish latency.
CONTRACT_METRICS = {
    "engage_webhook_requests_total": "counter",
    "engage_events_published_total": "counter",
    "engage_contents_total": "counter",
    "engage_first_response_seconds": "histogram",
    "engage_response_seconds": "histogram",
    "engage_agent_replies_total": "counter",
    "engage_agent_response_seconds": "histogram",
    "engage_sla_responses_total": "counter",
    "engage_backlog_contents": "gauge",
    "engage_backlog_oldest_age_seconds": "gauge",
    "engage_leaderboard_score": "gauge",
    "engage_leaderboard_rank": "gauge",
    "engage_source_info": "gauge",
    "engage_agent_info": "gauge",
    "engage_stream_lag_messages": "gauge",
    "engage_late_contents_total": "counter",
    "engage_dlq_events_total": "counter",
    "engage_publish_latency_seconds": "histogram",
}
# The metric names agreed across issues 8, 9 and 11 (the team brief), which dashboards use.
AGREED_METRICS = {
    "engage_unresolved_notifications_total": "counter",
    "engage_resolver_pending_notifications": "gauge",
    "engage_platform_api_requests_total": "counter",
    "engage_subscription_expires_in_seconds": "gauge",
    "engage_webhook_rejected_total": "counter",
    "engage_worker_ready": "gauge",
    "engage_worker_not_ready_info": "gauge",
    "engage_worker_recovery_progress_ratio": "gauge",
    "engage_worker_recovering": "gauge",
    "engage_consumer_rebalances_total": "counter",
    "engage_kafka_commit_failures_total": "counter",
}
CONTRACT_METRICS |= AGREED_METRICS
KNOWN_SERIES = {"up"} | {
    f"{name}{suffix}"
    for name, kind in CONTRACT_METRICS.items()
    for suffix in (("_bucket", "_sum", "_count", "") if kind == "histogram" else ("",))
}

# Units a panel may use: seconds, ratios, plain counts, and per-minute / per-second rates.
PANEL_UNITS = {"s", "percentunit", "short", "cpm", "reqps", "ops"}
# Range windows a dashboard may use besides $__rate_interval: the dashboard's time range (stat
# panels) and the rolling hour of the SLA definition.
DASHBOARD_WINDOWS = {"$__rate_interval", "$__range", "1h"}
# What the dashboard variables stand for when a query is sent to a real Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$source": ".*",
    "$team": ".*",
    "$window": "today",
}

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables allowed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values may look like names
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # range and subquery windows
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", "", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", s):
        name, call = m.group(1), m.group(2)
        if not call and name not in _KEYWORDS:
            names.add(name)
    return names


def selectors(expr: str) -> set[str]:
    """The vector selectors (name and matchers) of a PromQL expression, range windows dropped."""
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    s = re.sub(r"\[[^\]]*\]", "", s)
    found = set()
    for m in re.finditer(r"(?<![\w.\"])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?", s):
        name, matchers, call = m.groups()
        if (call and not matchers) or name in _KEYWORDS:
            continue  # a function or a keyword
        found.add(name + (matchers or ""))
    return found


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "record" in r}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)


# ------------------------------------------------------------------ the metric-name checker


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr
