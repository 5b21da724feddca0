"""How long a ``Retry-After`` header says to wait, for both REST clients.

>>> retry_after_seconds("2.5")
2.5
>>> retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT")  # a date long past
0.0
>>> retry_after_seconds("-1") is None and retry_after_seconds("soon") is None
True
"""

from __future__ import annotations

import email.utils
import time


def seconds_header(value: str | None) -> float | None:
    """A header holding a number of seconds (``None`` when absent, negative or not a number)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); ``None`` when
    it says nothing usable (the caller backs off on its own)."""
    seconds = seconds_header(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
