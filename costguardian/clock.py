"""The one clock. Every "now" and "today" in the product comes from here, so
that tests can move it (time-machine) and a period, a forecast or an expiry
never depends on which machine or database asked.

Stored times are naive UTC (every DateTimeField); `now()` returns that form.
"""
from __future__ import annotations

import time
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo


def now() -> datetime:
    """The current instant in UTC, naive, as stored."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def monotonic() -> float:
    """Seconds on a clock that never jumps, for measuring durations (a
    call's latency); never stored or shown as a time of day."""
    return time.monotonic()


def timestamp() -> float:
    """Now as seconds since the epoch: the `limits` library's clock (it
    measures its windows with time.time()), for a storage that must agree
    with it (costguardian/ratelimit_storage.py)."""
    return time.time()


def now_aware() -> datetime:
    """The current instant in UTC, time-zone aware (for signatures, headers)."""
    return datetime.now(timezone.utc)


def zone(org_or_name) -> ZoneInfo:
    """An organization's zone (or a zone named directly); UTC when unset."""
    name = org_or_name if isinstance(org_or_name, str) or org_or_name is None else org_or_name.time_zone
    return ZoneInfo(name or "UTC")


def today(org_or_name=None) -> date:
    """Today's date in an organization's time zone (UTC when none is given)."""
    return now_aware().astimezone(zone(org_or_name)).date()
