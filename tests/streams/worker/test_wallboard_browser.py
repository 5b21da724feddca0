"""The TV wallboard in headless Chromium: shows the API's leaders and follows live changes.

Serves ``streams/wallboard.html`` and the API handlers (``test_api.build_app``) over a
``Standings`` fed here. ``WALLBOARD_SCREENSHOT`` may name where to save the screenshot
(default: the test's temp dir).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pytest

from streams.core.directory import AgentProfile, Directory
from streams.core.gamification.activity import AgentActivity
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.scoring import ScoringRules
from streams.core.gamification.waiting import WaitingRun
from streams.core.views.api import ChannelSummary
from tests.plugins.api_server import Served, build_app, serve
from tests.plugins.browser import MISSING, available, chromium
from tests.plugins.waiting import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason=MISSING),
]

T = TypeVar("T")
NOW = 1_718_193_600.0  # the server's fixed clock: 2024-06-12T12:00:00Z, so "today" is stable
DIRECTORY = Directory(
    MappingProxyType(
        {
            "agent-ada": AgentProfile(name="Ada Lovelace", team="billing"),
            "agent-grace": AgentProfile(name="Grace Hopper", team="support"),
            "agent-alan": AgentProfile(name="Alan Turing", team="support"),
            "agent-kat": AgentProfile(name="Katherine Johnson", team="billing"),
        }
    )
)


def wait_for_page(condition: Callable[[], T | None], timeout: float = 15.0, what: str = "") -> T:
    """``wait_for`` while the DOM may change under us (the page re-renders)."""
    return wait_for(condition, timeout, what, tolerate=(Exception,))  # type: ignore[return-value]


def answer(
    agent: str, content: str, ago: float, response: float | None, **kw: Any
) -> AgentActivity:
    return AgentActivity(
        agent_id=agent,
        content_id=content,
        thread_id="t-" + content,
        source_id=kw.get("source", "chat"),
        source_type="messaging",
        event_time=NOW - ago,
        response_seconds=response,
        first_response=kw.get("first", False),
        within_sla=None if response is None else response <= 300,
    )


def channel(source_id: str, name: str | None, backlog: int, oldest: float | None) -> ChannelSummary:
    return ChannelSummary(
        source_id=source_id,
        source_type="messaging" if source_id == "chat" else "email",
        source_name=name,
        contents_inbound=40,
        contents_outbound=30,
        responses=25,
        response_seconds_sum=2500.0,
        first_responses=10,
        first_response_seconds_sum=900.0,
        within_sla=20,
        outside_sla=5,
        backlog_contents=backlog,
        backlog_oldest_age_seconds=oldest,
    )


def api(served: Served, path: str) -> Any:
    with urllib.request.urlopen(served.url + path, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def shown_rows(driver: Any) -> list[dict[str, str]]:
    from selenium.webdriver.common.by import By

    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, "#leaders tr[data-agent-id]"):
        fields = {
            cell.get_attribute("data-field"): cell.text
            for cell in row.find_elements(By.CSS_SELECTOR, "td[data-field]")
        }
        rows.append(
            {
                "agent_id": row.get_attribute("data-agent-id"),
                "rank": row.get_attribute("data-rank"),
                "score": row.get_attribute("data-score"),
                **fields,
            }
        )
    return rows


def test_wallboard_shows_the_api_leaders_and_follows_changes(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    standings = Standings(ScoringRules(sla_streaks=(3,), first_to_answer=3), "UTC", DIRECTORY)
    for i in range(4):
        standings.add(answer("agent-ada", f"ada{i}", 300 + i * 60, 65.0, first=i == 0))
    standings.add(answer("agent-grace", "grace0", 200, 30.0))
    # Chat customers wait all along, except around Grace's answer: only she cleared it.
    for thread, since, until in (("q1", NOW - 20000, NOW - 201), ("q2", NOW - 199, None)):
        standings.add_waiting_run(
            WaitingRun(
                thread_id=thread,
                source_id="chat",
                source_type="messaging",
                since=since,
                until=until,
            )
        )
    standings.add(answer("agent-grace", "grace1", 100, None))
    standings.add(answer("agent-alan", "alan0", 50, 4000.0))
    channels = [channel("chat", "Web chat", 3, 125.0), channel("mail", None, 0, None)]
    app = build_app(standings, DIRECTORY, lambda: list(channels), clock=lambda: NOW)

    with serve(app) as served:
        browser.get(served.url + "/wallboard?window=today")
        want = api(served, "/api/v1/leaderboard?window=today")["entries"]
        assert [e["agent_id"] for e in want] == ["agent-ada", "agent-grace", "agent-alan"]
        rows = wait_for_page(lambda: shown_rows(browser), what="leader rows")
        assert [r["agent_id"] for r in rows] == [e["agent_id"] for e in want]
        assert [r["name"] for r in rows] == [e["name"] for e in want]
        assert [r["rank"] for r in rows] == [str(e["rank"]) for e in want]
        assert [float(r["score"]) for r in rows] == [e["score"] for e in want]
        assert [r["replies"] for r in rows] == [str(e["replies"]) for e in want]
        # Human times: 65 s -> "1m 05s", 4000 s -> "1h 06m"; Ada's streak of 3 in SLA.
        assert rows[0]["median"] == "1m 05s" and rows[2]["median"] == "1h 06m"
        assert "Streak 3" in rows[0]["badges"] and "First to 3" in rows[0]["badges"]
        assert "Cleared backlog" in rows[1]["badges"]
        assert "Cleared backlog" not in rows[0]["badges"] + rows[2]["badges"]
        chat = browser.find_element(By.CSS_SELECTOR, "li[data-source-id=chat]")
        assert chat.find_element(By.CSS_SELECTOR, "[data-field=backlog]").text == "3"
        assert chat.find_element(By.CSS_SELECTOR, "[data-field=oldest]").text == "oldest 2m 05s"
        assert "Web chat" in chat.text

        screenshot = Path(os.environ.get("WALLBOARD_SCREENSHOT", tmp_path / "wallboard.png"))
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

        # Live: Katherine answers fast six times; the page shows her on top without a reload.
        marker = browser.execute_script("window.__notReloaded = true; return true;")
        assert marker is True

        def kat_answers() -> None:
            for i in range(6):
                standings.add(answer("agent-kat", f"kat{i}", 10 + i, 12.0, first=True))
            channels[0] = channel("chat", "Web chat", 0, None)

        served.call(kat_answers)
        rows = wait_for_page(
            lambda: (r := shown_rows(browser)) and r[0]["agent_id"] == "agent-kat" and r,
            what="Katherine on top",
        )
        assert rows[0]["name"] == "Katherine Johnson"
        assert [r["agent_id"] for r in rows] == [
            e["agent_id"] for e in api(served, "/api/v1/leaderboard?window=today")["entries"]
        ]
        wait_for_page(
            lambda: (
                browser.find_element(
                    By.CSS_SELECTOR, "li[data-source-id=chat] [data-field=backlog]"
                ).text
                == "0"
            ),
            what="chat backlog cleared",
        )
        assert browser.execute_script("return window.__notReloaded === true;")

        # The window buttons switch the board (and the URL) to another window.
        served.call(lambda: standings.add(answer("agent-alan", "alan-old", 3 * 3600, 20.0)))
        browser.find_element(By.CSS_SELECTOR, "button[data-window=hour]").click()
        hour = [e["agent_id"] for e in api(served, "/api/v1/leaderboard?window=hour")["entries"]]
        wait_for_page(
            lambda: [r["agent_id"] for r in shown_rows(browser)] == hour,
            what="the hour leaderboard",
        )
        title = browser.find_element(By.CSS_SELECTOR, "[data-testid=window-title]").text
        assert title == "Last hour"
        assert "window=hour" in browser.current_url
