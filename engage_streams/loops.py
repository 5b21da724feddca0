"""The event loop the long-running commands run on (``ENGAGE_EVENT_LOOP``).

``uvloop`` (libuv, in C; the default) or ``asyncio`` (the standard library's loop): the same
semantics, less CPU per socket event and per callback. Measured on 2026-12-07 on a 2-core
machine, both servers of ``benchmarks/connector_bench.py --loop asyncio uvloop`` interleaved in
each round: the empty handler's CPU per request 40-49 us against 56-71 us; the connector's
deliveries/s with uvloop above asyncio's in every run (+1 % to +40 %, the machine drifting by
tens of % between runs). The worker's rate did not change (``benchmarks/worker_bench.py --loop
uvloop asyncio``: 21,900 against 22,400 events/s, within the noise): its time is Python, not
the loop's.

``run(main, loop)`` runs a coroutine to completion on a new loop of that kind (the
connector); ``install(loop)`` makes it the kind every later loop of this process is, for code
that builds its loops itself (Faust's worker and its consumer thread), with ``policy(loop)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

EVENT_LOOPS: Final = ("uvloop", "asyncio")

T = TypeVar("T")


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of new loops of that kind (``None``: the standard library's)."""
    if loop == "asyncio":
        return None
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown event loop {loop!r} (one of {', '.join(EVENT_LOOPS)})")


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """``asyncio.run(main)`` on a loop of kind ``loop``."""
    try:
        factory = loop_factory(loop)
    except ValueError:
        main.close()  # never to run: no "never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def policy(loop: str) -> asyncio.AbstractEventLoopPolicy:
    """The event loop policy whose loops are of kind ``loop``."""
    if loop_factory(loop) is None:
        return asyncio.DefaultEventLoopPolicy()
    import uvloop

    made: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
    return made


def install(loop: str) -> None:
    """Make every loop this process creates from now on one of kind ``loop``."""
    asyncio.set_event_loop_policy(policy(loop))
