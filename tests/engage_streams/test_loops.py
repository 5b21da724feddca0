"""The event loop kinds of ENGAGE_EVENT_LOOP: each runs a coroutine on a loop of its kind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from engage_streams import loops
from engage_streams.settings import Settings


async def running_loop() -> asyncio.AbstractEventLoop:
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


@pytest.fixture
def restore_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


def test_the_default_is_uvloop() -> None:
    assert Settings().event_loop == "uvloop"
    assert Settings.from_env({"ENGAGE_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"


def test_run_uses_a_loop_of_the_kind_named() -> None:
    assert isinstance(loops.run(running_loop(), "uvloop"), uvloop.Loop)
    standard = loops.run(running_loop(), "asyncio")
    assert not isinstance(standard, uvloop.Loop)
    assert isinstance(standard, asyncio.BaseEventLoop)


def test_run_returns_what_the_coroutine_returns_and_closes_its_loop() -> None:
    loop = loops.run(running_loop(), "uvloop")
    assert loop.is_closed()


def test_install_sets_the_kind_of_every_later_loop(restore_policy: None) -> None:
    loops.install("uvloop")
    made = asyncio.new_event_loop()
    try:
        assert isinstance(made, uvloop.Loop)
    finally:
        made.close()
    loops.install("asyncio")
    made = asyncio.new_event_loop()
    try:
        assert not isinstance(made, uvloop.Loop)
    finally:
        made.close()


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        loops.run(running_loop(), "trio")
