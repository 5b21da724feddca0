"""Where a backfill stands: a small JSON file written after every page Kafka acknowledged.

Contents are read oldest first, so one point in time says what is done: every content created
before ``watermark``, and the ones created exactly at it whose ids are listed (ties across a
page boundary). For the platform API, which cannot filter by time, ``page_token`` also names
the page holding the first content not done, so a resumed run does not page through the
history again (a token the platform no longer accepts means paging from the start).

A second run starts at the watermark and publishes nothing already done; an interrupted run
(a failure, Ctrl-C) resumes from the last acknowledged page. A crash between
Kafka's acknowledgement and the write repeats at most that page, with the same event ids
(``backfill:<content id>``), which the stream workers deduplicate.

A checkpoint belongs to one backfill (``key``: the API, its address and the filters): using
it for another is refused rather than silently skipping contents. It holds ids and times,
never the customers' words or a credential. Written atomically (temporary file, fsync,
rename), so an interruption never leaves a torn file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

VERSION = 1


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be used (the message names the file and says what to do)."""


@dataclass
class BackfillCheckpoint:
    """The progress of one backfill; ``done``/``advance``/``save`` as pages are published."""

    path: Path
    key: str
    watermark: datetime | None = None
    ids_at_watermark: set[str] = field(default_factory=set)
    published: int = 0
    dead_lettered: int = 0
    page_token: str | None = None  # platform: the page holding the first content not done

    @classmethod
    def load(cls, path: Path, key: str, *, restart: bool = False) -> BackfillCheckpoint:
        """The checkpoint in ``path`` (a fresh one when absent or ``restart``)."""
        if restart or not path.exists():
            return cls(path, key)
        try:
            saved: Any = orjson.loads(path.read_bytes())
            if not isinstance(saved, dict) or saved.get("version") != VERSION:
                raise ValueError("unknown format")
            watermark = saved.get("watermark")
            checkpoint = cls(
                path,
                str(saved["key"]),
                datetime.fromisoformat(watermark) if isinstance(watermark, str) else None,
                {str(i) for i in saved.get("ids_at_watermark", [])},
                int(saved.get("published", 0)),
                int(saved.get("dead_lettered", 0)),
                saved.get("page_token") if isinstance(saved.get("page_token"), str) else None,
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"checkpoint {path} is unreadable ({type(error).__name__}): delete it or run "
                "with --restart"
            ) from None
        if checkpoint.key != key:
            raise CheckpointError(
                f"checkpoint {path} belongs to another backfill ({checkpoint.key}); give "
                "another --checkpoint, or --restart to start this one over"
            )
        return checkpoint

    def done(self, created: datetime, content_id: str) -> bool:
        """True when the content created at ``created`` was published by an earlier page."""
        if self.watermark is None:
            return False
        return created < self.watermark or (
            created == self.watermark and content_id in self.ids_at_watermark
        )

    def advance(self, created: datetime, content_id: str) -> None:
        """Count the content as done (contents come oldest first)."""
        if self.watermark is None or created > self.watermark:
            self.watermark = created
            self.ids_at_watermark = {content_id}
        elif created == self.watermark:
            self.ids_at_watermark.add(content_id)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": VERSION,
            "key": self.key,
            "watermark": self.watermark.astimezone(UTC).isoformat() if self.watermark else None,
            "ids_at_watermark": sorted(self.ids_at_watermark),
            "published": self.published,
            "dead_lettered": self.dead_lettered,
            "page_token": self.page_token,
            "saved_at": datetime.now(UTC).isoformat(),
        }
        fd, temporary = tempfile.mkstemp(prefix=".checkpoint-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
