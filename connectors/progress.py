"""The backfill's progress bar on stderr: counts, how far back in time, rate.

On a terminal it redraws one line (at most ~10 times a second, a bar when the total is
known); elsewhere (CI, logs) it writes a plain line every ``every_seconds``. It shows counts
and times only, never a content.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO


class ProgressBar:
    """``update(...)`` as contents are published, ``close()`` once at the end."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        total: int | None = None,
        every_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self.total = total
        self._every = 0.1 if self._tty else every_seconds
        self._clock = clock
        self._started = clock()
        self._last = -1e9
        self._line = ""
        self.published = self.dead_lettered = self.skipped = 0
        self.reached: datetime | None = None

    def update(
        self,
        *,
        published: int = 0,
        dead_lettered: int = 0,
        skipped: int = 0,
        reached: datetime | None = None,
    ) -> None:
        self.published += published
        self.dead_lettered += dead_lettered
        self.skipped += skipped
        if reached is not None:
            self.reached = reached
        if self._clock() - self._last >= self._every:
            self._draw()

    def close(self) -> None:
        self._draw()
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def render(self) -> str:
        done = self.published + self.dead_lettered + self.skipped
        elapsed = max(self._clock() - self._started, 1e-9)
        pieces = []
        if self.total:
            share = min(1.0, done / self.total)
            filled = int(share * 24)
            bar = "#" * filled + "." * (24 - filled)
            pieces.append(f"[{bar}] {share:4.0%} {done}/{self.total}")
        pieces.append(f"{self.published} published, {self.dead_lettered} to the DLQ")
        if self.skipped:
            pieces.append(f"{self.skipped} already done")
        if self.reached is not None:
            pieces.append(f"up to {self.reached.isoformat(timespec='seconds')}")
        pieces.append(f"{done / elapsed:.0f}/s")
        return f"{self._label}: " + ", ".join(pieces)

    def _draw(self) -> None:
        self._last = self._clock()
        line = self.render()
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._line)))
        else:
            self._stream.write(line + "\n")
        self._line = line
        self._stream.flush()
