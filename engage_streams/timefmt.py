"""How the product writes a moment: RFC 3339 in UTC with a ``Z``, as Engage writes it.

The one definition, used by the API's answers, the dead-letter records and the deliveries the
simulator renders.

>>> from datetime import UTC, datetime
>>> utc_iso(datetime(2026, 3, 2, 9, 15, 27, 412000, tzinfo=UTC))
'2026-03-02T09:15:27.412Z'
>>> utc_iso(0.0)
'1970-01-01T00:00:00.000Z'
>>> utc_iso(datetime(2026, 3, 2, 12, tzinfo=UTC), timespec="auto")
'2026-03-02T12:00:00Z'
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc_iso"]


def utc_iso(moment: datetime | float, timespec: str = "milliseconds") -> str:
    """``moment`` (an aware datetime, or epoch seconds) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

    ``timespec`` as for ``datetime.isoformat`` (``"auto"``: as precise as the moment is).
    """
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
