"""The one way dates and times read on screens and in emails.

Dates are ISO (`2026-12-06`); times are `2026-12-06 14:05 CET`: in the
organization's zone with the zone named, or in UTC named "UTC" where no
organization applies (the platform console, account pages). Seconds only
where they matter (`precision="second"`: audit log, deliveries, request log).
Calendar days (budget periods, price dates, explorer ranges) are `date`
objects and are never shifted by a zone. Date inputs take the same ISO form
(`parse_day`). CSV and JSON keep UTC ISO 8601 and do not come through here.
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime

from costguardian import clock

DAY = "%Y-%m-%d"
PATTERNS = {"day": DAY, "minute": f"{DAY} %H:%M", "second": f"{DAY} %H:%M:%S"}

DATE_FORMAT_HINT = "YYYY-MM-DD"
DATE_MESSAGE = "Enter a date as YYYY-MM-DD."
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def format_time(value: datetime | None, zone=None, precision: str = "minute") -> str:
    """A stored (naive UTC) time read in `zone` (an organization, a zone
    name, or None for UTC), the zone named after it unless only the day is
    asked for: `2026-12-06 14:05 CET`, `2026-12-06 14:05:09 UTC`, `2026-12-06`."""
    if not value:
        return ""
    if precision not in PATTERNS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PATTERNS)}")
    if not isinstance(value, datetime):  # a calendar day: no zone to shift it by
        return value.isoformat()
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    local = aware.astimezone(clock.zone(zone))
    text = local.strftime(PATTERNS[precision])
    return text if precision == "day" else f"{text} {local.strftime('%Z')}"


def format_day(value: date | None) -> str:
    """A calendar day, ISO: `2026-12-06` ("" for none)."""
    return value.isoformat() if value else ""


def parse_day(raw: str | None) -> date | None:
    """A typed date, strictly YYYY-MM-DD (date.fromisoformat alone also takes
    `20261206` and week dates); None when empty, ValueError(DATE_MESSAGE) when
    it is not a real day in that form."""
    text = (raw or "").strip()
    if not text:
        return None
    if not _ISO_DAY.fullmatch(text):
        raise ValueError(DATE_MESSAGE)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(DATE_MESSAGE) from None
