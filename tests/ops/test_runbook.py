"""prometheus/RUNBOOK.md: every alert links to its own section, and every section is complete.

A section is the heading ``## <AlertName>`` (anchor: the name in lower case, as Markdown
renderers make it) with the three parts an on-call engineer needs: what it means, what to
check, what to do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "prometheus" / "alerts.yml"
RUNBOOK = REPO / "prometheus" / "RUNBOOK.md"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def sections() -> dict[str, str]:
    """Anchor -> text of each ``## `` section of the runbook."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.M)
    return {
        re.sub(r"[^\w-]", "", title.strip().lower().replace(" ", "-")): body
        for title, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_alert_points_at_its_section_of_the_runbook() -> None:
    anchors = sections()
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert (REPO / path).resolve() == RUNBOOK, rule["alert"]
        assert anchor == rule["alert"].lower(), (rule["alert"], url)
        assert anchor in anchors, f"{rule['alert']}: no section '## {rule['alert']}'"


def test_every_section_says_what_it_means_what_to_check_what_to_do() -> None:
    alerts = {rule["alert"].lower() for rule in alert_rules()}
    for anchor, body in sections().items():
        assert anchor in alerts, f"runbook section for an alert that does not exist: {anchor}"
        for part in ("**Means.**", "**Check.**", "**Do.**"):
            assert part in body, (anchor, part)
