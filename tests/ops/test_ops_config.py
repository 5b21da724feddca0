"""What operators look at: Prometheus config and alert rules, Grafana dashboards, docker-compose.

Checked with the real tools: ``promtool`` (config, rules, rule unit tests in
``prometheus/alerts_test.yml``) and a real ``prometheus`` that loads the rules, scrapes a
synthetic exporter shaped like the contract, and answers every dashboard query. Grafana's
``dashboard-linter`` runs when it is installed. Dashboards and alerts may only use the metric
names of the contract (kept here as a list: CI has no guaranteed copy of shared/).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.ports import free_port
from engage_streams.settings import Settings
from tests.plugins.ops_config import (
    ALERTS,
    ALERTS_TEST,
    COMPOSE,
    COMPOSE_CONFIG,
    DASHBOARD_DIR,
    DASHBOARD_WINDOWS,
    DASHBOARDS,
    DOCKERFILE,
    KNOWN_SERIES,
    LOCAL_CONFIG,
    PANEL_UNITS,
    PROVISIONING,
    REPO,
    alert_rules,
    dashboard_exprs,
    grafana_to_promql,
    load_dashboard,
    load_yaml,
    panels,
    promql_metric_names,
    promtool,
    recorded_names,
    run,
    selectors,
)
from tests.plugins.waiting import wait_for


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (le, source) (rate(engage_response_seconds_bucket"
        '{source=~"$source", job="engage_x"}[$__rate_interval]))) > 1e3'
        " and on (source) engage_bogus offset 10m or up * on (agent) group_left (agent_name)"
        ' max by (agent, agent_name) (engage_agent_info{team=~"$team"})'
    )
    assert promql_metric_names(expr) == {
        "engage_response_seconds_bucket",
        "engage_bogus",
        "up",
        "engage_agent_info",
    }


def test_selectors_keep_matchers_and_skip_functions() -> None:
    expr = (
        'sum by (endpoint) (rate(engage_webhook_requests_total{code=~"5.."}[5m])) / '
        "sum by (endpoint) (rate(engage_webhook_requests_total[5m])) > 0.05 and on (job) "
        'absent(up{job="engage-worker"} == 1) or source:x:sum offset 10m'
    )
    assert selectors(expr) == {
        'engage_webhook_requests_total{code=~"5.."}',
        "engage_webhook_requests_total",
        'up{job="engage-worker"}',
        "source:x:sum",
    }


# ------------------------------------------------------------------ Prometheus


@pytest.mark.prometheus
@pytest.mark.parametrize("config", [LOCAL_CONFIG, COMPOSE_CONFIG], ids=lambda p: p.name)
def test_promtool_accepts_config(config: Path) -> None:
    result = run(promtool(), "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


@pytest.mark.prometheus
def test_promtool_accepts_rules() -> None:
    result = run(promtool(), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_alert_unit_tests_pass() -> None:
    result = run(promtool(), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerts_are_labelled_and_explained() -> None:
    rules = alert_rules()
    assert len(rules) >= 8
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_each_alert_has_a_unit_test_that_makes_it_fire() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    untested = {r["alert"] for r in alert_rules()} - fired - {"EngageLateContents"}
    assert not untested
    # the key alerts are also shown to stay silent at some point of their test
    assert {
        "EngageBacklogGrowing",
        "EngageCustomerWaitingTooLong",
        "EngageDeadLetters",
        "EngageStreamLagHigh",
        "EngageTargetDown",
        "EngageWebhooksSilent",
        "EngageWorkerNotReady",
        "EngageWorkerRecoveringTooLong",
        "EngageResolverQueueGrowing",
    } <= quiet


def test_alerts_use_only_contract_metrics() -> None:
    allowed = KNOWN_SERIES | recorded_names()
    for group in load_yaml(ALERTS)["groups"]:
        for rule in group["rules"]:
            unknown = promql_metric_names(rule["expr"]) - allowed
            assert not unknown, (rule.get("alert") or rule.get("record"), unknown)


def test_local_config_scrapes_the_default_ports() -> None:
    settings = Settings()
    config = load_yaml(LOCAL_CONFIG)
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["engage-connector"] == [f"127.0.0.1:{settings.connector_port}"]
    assert targets["engage-worker"] == [f"127.0.0.1:{settings.worker_web_port}"]
    assert config["rule_files"] == ["alerts.yml"]


# ------------------------------------------------------------------ Grafana


def test_there_are_dashboards() -> None:
    assert {p.name for p in DASHBOARDS} >= {
        "engage-overview.json",
        "engage-agents.json",
        "engage-pipeline.json",
    }


def test_every_dashboard_links_to_every_other() -> None:
    uids = {load_dashboard(path)["uid"] for path in DASHBOARDS}
    for path in DASHBOARDS:
        dashboard = load_dashboard(path)
        links = {link["url"] for link in dashboard["links"] if link["type"] == "link"}
        others = {f"/d/{uid}" for uid in uids - {dashboard["uid"]}}
        assert links == others, path.name
        assert all(link["keepTime"] for link in dashboard["links"]), path.name


def test_pipeline_dashboard_shows_the_pipeline_on_call_needs() -> None:
    dashboard = load_dashboard(DASHBOARD_DIR / "engage-pipeline.json")
    assert dashboard["description"].strip()
    used = set().union(*(promql_metric_names(e) for e in dashboard_exprs(dashboard)))
    assert {
        "engage_webhook_requests_total",  # deliveries by code
        "engage_publish_latency_seconds_bucket",
        "engage_stream_lag_messages",
        "engage_resolver_pending_notifications",  # resolve queue
        "engage_unresolved_notifications_total",
        "engage_dlq_events_total",
        "engage_worker_ready",  # readiness and recovery of each worker
        "engage_worker_recovery_progress_ratio",
        "engage_worker_recovering",
        "engage_consumer_rebalances_total",
        "up",
    } <= used
    by_title = {p["title"]: p for p in panels(dashboard)}
    # per worker, not summed away
    for title in ("Worker readiness", "Table recovery progress", "Recovering", "Rebalances"):
        assert "by (instance)" in by_title[title]["targets"][0]["expr"], title
    assert by_title["Deliveries by code"]["targets"][0]["expr"].startswith(
        "sum by (endpoint, code) ("
    )
    assert by_title["Table recovery progress"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    # the first row is what on-call reads first: every stat sits in it
    first_row = [p for p in dashboard["panels"] if p["type"] != "row" and p["gridPos"]["y"] < 5]
    assert {p["type"] for p in first_row} == {"stat"} and len(first_row) >= 5


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_alerts_named_in_panel_descriptions_exist(path: Path) -> None:
    alerts = {r["alert"] for r in alert_rules()}
    for panel in panels(load_dashboard(path)):
        named = set(re.findall(r"\bEngage[A-Z]\w+", panel.get("description", "")))
        assert named <= alerts, (panel["title"], named - alerts)


def test_grafana_opens_the_pipeline_dashboard_first() -> None:
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/etc/grafana/dashboards/engage-pipeline.json"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == path.stem
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        where = f"{path.name}: {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel.get("description"), where
        assert panel["fieldConfig"]["defaults"].get("unit") in PANEL_UNITS, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where
            expr = target["expr"]
            for window in re.findall(r"\[([^\]]+)\]", expr):
                assert window in DASHBOARD_WINDOWS, (where, window)
            for quantile in re.finditer(
                r"histogram_quantile\(\s*[\d.]+\s*,\s*(\w+ by \(\w+)", expr
            ):
                assert quantile.group(1) == "sum by (le", (where, expr)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_do_not_overlap(path: Path) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(load_dashboard(path)):
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_use_only_contract_metrics(path: Path) -> None:
    dashboard = load_dashboard(path)
    for expr in dashboard_exprs(dashboard):
        assert not promql_metric_names(expr) - KNOWN_SERIES, expr
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
            assert m and m.group(1) in KNOWN_SERIES, variable["definition"]


def test_overview_shows_the_contract() -> None:
    dashboard = load_dashboard(DASHBOARD_DIR / "engage-overview.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["source"]["definition"] == "label_values(engage_contents_total, source)"
    used = set().union(*(promql_metric_names(e) for e in dashboard_exprs(dashboard)))
    assert {
        "engage_contents_total",
        "engage_backlog_contents",
        "engage_backlog_oldest_age_seconds",
        "engage_first_response_seconds_bucket",
        "engage_response_seconds_bucket",
        "engage_sla_responses_total",
        "engage_agent_replies_total",
        "engage_agent_response_seconds_bucket",
        "engage_leaderboard_score",
        "engage_agent_info",
        "engage_webhook_requests_total",
        "engage_publish_latency_seconds_bucket",
        "engage_dlq_events_total",
        "engage_stream_lag_messages",
    } <= used


def dashboard_linter() -> str | None:
    found = shutil.which("dashboard-linter")
    if found:
        return found
    gobin = Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "dashboard-linter"
    return str(gobin) if gobin.exists() else None


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_linter(path: Path) -> None:
    linter = dashboard_linter()
    if linter is None:
        pytest.skip(
            "dashboard-linter not on PATH or in ~/go/bin "
            "(go install github.com/grafana/dashboard-linter@latest)"
        )
    result = run(linter, "lint", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    compose = load_yaml(COMPOSE)["services"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1)
        for v in compose["grafana"]["volumes"]
        if v.startswith("./")
    )
    provider = load_yaml(PROVISIONING / "dashboards" / "engage.yml")["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    source = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"][0]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


# ------------------------------------------------------------------ docker-compose, Dockerfile


def test_compose_services_and_settings() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert set(services) >= {
        "kafka",
        "connector",
        "worker",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    known = {name for name in Settings().describe()}
    for name in ("connector", "worker"):
        env = services[name]["environment"]
        assert not set(env) - known, (name, set(env) - known)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["connector"]["command"] == ["connector"]
    assert services["worker"]["command"] == ["worker"]
    assert services["connector"]["environment"]["ENGAGE_WEBHOOK_SECRET"].startswith(
        "${ENGAGE_WEBHOOK_SECRET:?"
    )
    # `--scale worker=N`: no fixed name and no fixed host port
    worker = services["worker"]
    assert "container_name" not in worker
    for port in worker.get("ports", []):
        parts = str(port).split(":")  # [ip:][host port:]container port
        assert len(parts) in (1, 3) and parts[-2:-1] in ([], [""]), port
    # the scrape targets are the services and the ports they listen on
    scrape = {j["job_name"]: j for j in load_yaml(COMPOSE_CONFIG)["scrape_configs"]}
    assert scrape["engage-connector"]["static_configs"][0]["targets"] == [
        f"connector:{services['connector']['environment']['CONNECTOR_PORT']}"
    ]
    worker_sd = scrape["engage-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == int(worker["environment"]["WORKER_WEB_PORT"])
    prometheus = services["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.compose.yml" in prometheus["command"]


def test_dockerfile_installs_the_app_and_runs_the_cli() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert re.search(r"pip install \.", text)
    assert 'ENTRYPOINT ["engage-streams"]' in text
    copied = set(re.findall(r"^COPY (\w+) ", text, re.M))
    packages = {"engage_streams", "connectors", "streams", "simulator", "devkit"}
    assert copied == packages | {"prometheus"}  # the demo's alert rules are package data
    for package in packages:
        assert (REPO / package / "__init__.py").exists()
    scripts = load_toml_scripts()
    assert scripts["engage-streams"] == "engage_streams.cli:main"


def load_toml_scripts() -> dict[str, str]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


# ------------------------------------------------------------------ a real Prometheus

EXPOSITION = """\
# TYPE engage_backlog_contents gauge
engage_backlog_contents{source="s1",source_type="whatsapp",partition="0"} 3
engage_backlog_contents{source="s1",source_type="whatsapp",partition="1"} 4
# TYPE engage_backlog_oldest_age_seconds gauge
engage_backlog_oldest_age_seconds{source="s1",source_type="whatsapp",partition="0"} 120
# TYPE engage_leaderboard_score gauge
engage_leaderboard_score{window="today",agent="a1"} 120
engage_leaderboard_score{window="today",agent="a2"} 80
engage_leaderboard_score{window="week",agent="a2"} 900
# TYPE engage_leaderboard_rank gauge
engage_leaderboard_rank{window="today",agent="a1"} 1
engage_leaderboard_rank{window="today",agent="a2"} 2
# TYPE engage_agent_info gauge
engage_agent_info{agent="a1",agent_name="Alice",team="t1"} 1
# TYPE engage_source_info gauge
engage_source_info{source="s1",source_name="WhatsApp",source_type="whatsapp"} 1
# TYPE engage_stream_lag_messages gauge
engage_stream_lag_messages{topic="engage.contents",partition="0"} 5
engage_stream_lag_messages{topic="engage.contents",partition="1"} 7
"""


class _Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = EXPOSITION.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # 400/422: Prometheus says what is wrong with a query
        raise AssertionError(f"{path} {params}: {exc.code} {exc.read().decode()}") from None


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`)")
    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    tmp = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "engage-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2),
            60,
            "prometheus ready",
            tolerate=(OSError,),
        )
        wait_for(
            lambda: api(base, "/api/v1/query", query="engage_backlog_contents")["data"]["result"],
            60,
            "the synthetic exporter scraped",
            tolerate=(OSError,),
        )
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        exporter.shutdown()


@pytest.mark.prometheus
def test_prometheus_loads_and_evaluates_every_rule(prometheus: str) -> None:
    expected = {g["name"]: len(g["rules"]) for g in load_yaml(ALERTS)["groups"]}

    def evaluated() -> dict[str, list[str]] | None:
        groups = api(prometheus, "/api/v1/rules")["data"]["groups"]
        health = {g["name"]: [r["health"] for r in g["rules"]] for g in groups}
        done = all(h != "unknown" for hs in health.values() for h in hs)
        return health if done and set(health) == set(expected) else None

    health = wait_for(evaluated, 60, "every rule evaluated", tolerate=(OSError,))
    assert {name: len(h) for name, h in health.items()} == expected
    assert all(h == "ok" for hs in health.values() for h in hs), health


@pytest.mark.prometheus
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_prometheus_answers_every_dashboard_query(prometheus: str, path: Path) -> None:
    for expr in dashboard_exprs(load_dashboard(path)):
        answer = api(prometheus, "/api/v1/query", query=grafana_to_promql(expr))
        assert answer["status"] == "success", (expr, answer)


@pytest.mark.prometheus
def test_dashboard_queries_sum_partitions_and_name_agents(prometheus: str) -> None:
    overview = load_dashboard(DASHBOARD_DIR / "engage-overview.json")
    by_title = {p["title"]: p for p in panels(overview)}

    def query(title: str, index: int = 0) -> list[dict[str, Any]]:
        expr = grafana_to_promql(by_title[title]["targets"][index]["expr"])
        answer = api(prometheus, "/api/v1/query", query=expr)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    backlog = query("Backlog per channel")
    assert [(r["metric"], r["value"][1]) for r in backlog] == [({"source": "s1"}, "7")]
    lag = query("Stream lag")
    assert [(r["metric"], r["value"][1]) for r in lag] == [({"topic": "engage.contents"}, "12")]
    # named agents get their name and team; an agent without engage_agent_info still shows
    leaders = {
        r["metric"]["agent"]: (r["metric"], r["value"][1]) for r in query("Leaderboard today")
    }
    assert leaders == {
        "a1": ({"agent": "a1", "agent_name": "Alice", "team": "t1"}, "120"),
        "a2": ({"agent": "a2"}, "80"),
    }
    ranks = {r["metric"]["agent"]: r["value"][1] for r in query("Leaderboard today", 1)}
    assert ranks == {"a1": "1", "a2": "2"}
