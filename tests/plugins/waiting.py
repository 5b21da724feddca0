"""Waiting on a condition with a deadline (never sleep-and-hope): the one ``wait_for``.

>>> wait_for(lambda: 42, timeout=1, what="the answer")
42
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 15.0,
    what: str = "",
    on_fail: Callable[[], str] | None = None,
    *,
    tolerate: tuple[type[BaseException], ...] = (),
    interval: float = 0.2,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Exceptions of the ``tolerate`` types count as "not yet" (a server not listening yet, a
    page re-rendering). At the deadline an ``AssertionError`` names ``what``, the last result
    and ``on_fail()`` (e.g. a log tail).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = condition()
        except tolerate as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            detail = on_fail() if on_fail is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{detail}"
            )
        time.sleep(interval)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """``wait_for`` for async checks, without blocking the event loop."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)
