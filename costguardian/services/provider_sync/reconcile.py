"""Reconciliation: what Cost Guardian recorded against what the provider
reported, by local day (the organization's zone) and model, with drill-down
to the hours; shadow usage (provider keys nobody told us about); and the
cost check (the provider's billed cost against our pricing of its own token
counts).

Mapping hours to days: the providers' buckets are UTC hours, and an hour
belongs to the local day it starts in, so the comparison is exact in every
zone, including a half-hour zone where a UTC hour straddles local midnight:
both sides put that hour in the same day. Our rollups are local hours there
(30 past the UTC hour in Kolkata, 15 in Kathmandu); `_recorded_hours` maps them to UTC
hours, reading the raw events of the bucket that straddles local midnight."""
from __future__ import annotations

import csv
import io
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import reduce

from peewee import fn

from costguardian import clock
from costguardian.models import KnownProviderKey, ProviderCostBucket, ProviderUsageBucket, UsageEvent, UsageRollup
from costguardian.services.provider_sync import key_match
from costguardian.services.usage import rollups
from costguardian.services.usage.pricing import OrgPrices, Tokens

MEASURES = ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")


@dataclass
class Side:
    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    unpriced: int = 0  # buckets (reported) or requests (recorded) without a price

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: "Side") -> None:
        for name in MEASURES + ("cost_nanos", "unpriced"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Row:
    label: str  # a day (ISO) or an hour
    model: str
    recorded: Side = field(default_factory=Side)
    reported: Side = field(default_factory=Side)
    tolerance_bp: int = 100

    @property
    def token_drift(self) -> int:
        return self.recorded.tokens - self.reported.tokens

    @property
    def token_drift_pct(self) -> Decimal | None:
        return _pct(self.token_drift, self.reported.tokens)

    @property
    def cost_drift_nanos(self) -> int:
        return self.recorded.cost_nanos - self.reported.cost_nanos

    @property
    def cost_drift_pct(self) -> Decimal | None:
        return _pct(self.cost_drift_nanos, self.reported.cost_nanos)

    @property
    def flagged(self) -> bool:
        limit = Decimal(self.tolerance_bp) / 100
        for drift, base in ((self.token_drift, self.reported.tokens), (self.cost_drift_nanos,
                                                                       self.reported.cost_nanos)):
            if drift and (base == 0 or abs(Decimal(drift) * 100 / base) > limit):
                return True
        return False


def _pct(drift: int, base: int) -> Decimal | None:
    if base == 0:
        return None if drift else Decimal(0)
    return (Decimal(drift) * 100 / base).quantize(Decimal("0.01"))


def utc_range(org, first: date, last: date) -> tuple[datetime, datetime]:
    """The UTC hours whose start falls in the local days first..last."""
    zone = clock.zone(org)

    def start_of(day: date) -> datetime:
        local = datetime.combine(day, time(0), zone).astimezone(timezone.utc).replace(tzinfo=None)
        # the first UTC hour starting at or after local midnight
        floor = local.replace(minute=0, second=0, microsecond=0)
        return floor if floor == local else floor + timedelta(hours=1)

    return start_of(first), start_of(last + timedelta(days=1))


def local_day(org, hour: datetime) -> date:
    return hour.replace(tzinfo=timezone.utc).astimezone(clock.zone(org)).date()


def _reported_hours(org, provider: str, start: datetime, end: datetime, model: str | None = None):
    """(hour, model, key unit, Side) per stored bucket, priced with the
    organization's prices at the bucket's hour."""
    B = ProviderUsageBucket
    query = B.in_org(org).where(B.provider == provider, B.hour >= start, B.hour < end)
    if model is not None:
        query = query.where(B.model == model)
    prices = OrgPrices.for_org(org)
    for b in query.order_by(B.hour):
        side = Side(**{m: getattr(b, m) for m in MEASURES})
        cost, _ = prices.price(provider, b.model, b.hour, Tokens(b.input_tokens, b.cache_read_tokens,
                                                                  b.cache_write_tokens, b.output_tokens),
                               batch=b.tier == "batch", service_tier="" if b.tier == "batch" else b.tier)
        if cost is None:
            side.unpriced = 1 if b.input_tokens or b.output_tokens else 0
        else:
            side.cost_nanos = cost
        yield b.hour, b.model, key_unit(b.key_id, b.project_id), side


def _recorded_hours(org, provider: str, start: datetime, end: datetime, model: str | None = None,
                    per_hour: bool = False):
    """(UTC hour, model, Side) of our usage in the UTC hours [start, end).

    The rollups' buckets are local hours (usage.rollups), which in a half-hour
    zone start 30 (15 in Kathmandu) minutes past a UTC hour, so a bucket holds parts of
    two UTC hours. Where both of them start on one local day, the bucket is
    yielded whole under the first (a day's total is exact); the one bucket a
    day whose UTC hours start on two days (local midnight), and every bucket
    with `per_hour`, is read from its raw events instead (a pruned event is
    then missing from that hour)."""
    R = UsageRollup
    aligned_to = rollups.alignment(org)
    query = (R.select(R.hour, R.model, *[fn.SUM(getattr(R, m)).alias(m) for m in MEASURES],
                      fn.SUM(R.cost_nanos).alias("cost_nanos"), fn.SUM(R.unpriced_requests).alias("unpriced"))
             .where(R.organization == org, R.provider == provider, R.hour >= rollups.bucket_start(aligned_to, start),
                    R.hour < end))
    if model is not None:
        query = query.where(R.model == model)
    split: set[datetime] = set()
    for r in query.group_by(R.hour, R.model).dicts():
        hour = r["hour"] if isinstance(r["hour"], datetime) else datetime.fromisoformat(str(r["hour"]))
        side = Side(**{k: int(r[k] or 0) for k in MEASURES + ("cost_nanos", "unpriced")})
        first = hour.replace(minute=0, second=0, microsecond=0)
        if first == hour:
            yield hour, r["model"], side
        elif per_hour or local_day(org, first) != local_day(org, first + timedelta(hours=1)):
            split.add(hour)
        elif start <= first < end:
            yield first, r["model"], side
    if split:
        yield from _raw_hours(org, provider, sorted(split), start, end, model)


def _raw_hours(org, provider: str, buckets: list[datetime], start: datetime, end: datetime, model: str | None):
    """Our events of these (one-hour) buckets, summed per UTC hour in [start, end) and model."""
    E = UsageEvent
    sums: dict[tuple, Side] = defaultdict(Side)
    for offset in range(0, len(buckets), 200):
        windows = [(E.occurred_at >= b) & (E.occurred_at < b + timedelta(hours=1))
                   for b in buckets[offset:offset + 200]]
        query = (E.select(E.occurred_at, E.model, *[getattr(E, m) for m in MEASURES if m != "requests"],
                          E.cost_nanos)
                 .where(E.organization == org, E.provider == provider, E.occurred_at >= start, E.occurred_at < end,
                        reduce(operator.or_, windows)))
        if model is not None:
            query = query.where(E.model == model)
        for event in query.iterator():
            side = sums[(event.occurred_at.replace(minute=0, second=0, microsecond=0), event.model)]
            side.add(Side(1, event.input_tokens, event.cache_read_tokens, event.cache_write_tokens,
                          event.output_tokens, event.cost_nanos or 0, 1 if event.cost_nanos is None else 0))
    for (hour, model_name), side in sorted(sums.items()):
        yield hour, model_name, side


def key_unit(key_id: str, project_id: str) -> str:
    """What shadow usage is counted by: the provider key, else its project
    (usage from the provider's console has no key)."""
    return key_id or (f"project:{project_id}" if project_id else "(no key)")


def by_day(org, conn, first: date, last: date) -> list[Row]:
    start, end = utc_range(org, first, last)
    rows: dict[tuple, Row] = {}

    def row(day: date, model: str) -> Row:
        return rows.setdefault((day, model), Row(day.isoformat(), model, tolerance_bp=conn.tolerance_bp))

    for hour, model, _, side in _reported_hours(org, conn.provider, start, end):
        row(local_day(org, hour), model).reported.add(side)
    for hour, model, side in _recorded_hours(org, conn.provider, start, end):
        row(local_day(org, hour), model).recorded.add(side)
    return [rows[k] for k in sorted(rows)]


def by_hour(org, conn, day: date, model: str | None = None) -> list[Row]:
    start, end = utc_range(org, day, day)
    rows: dict[tuple, Row] = {}
    zone = clock.zone(org)

    def row(hour: datetime, model: str) -> Row:
        label = hour.replace(tzinfo=timezone.utc).astimezone(zone).strftime("%H:%M")
        return rows.setdefault((hour, model), Row(label, model, tolerance_bp=conn.tolerance_bp))

    for hour, m, _, side in _reported_hours(org, conn.provider, start, end, model):
        row(hour, m).reported.add(side)
    for hour, m, side in _recorded_hours(org, conn.provider, start, end, model, per_hour=True):
        row(hour, m).recorded.add(side)
    return [rows[k] for k in sorted(rows)]


@dataclass
class KeyUsage:
    unit: str
    known: bool  # ours: matched to a vault credential or marked as known
    label: str
    matched: bool = False
    tokens: int = 0
    cost_nanos: int = 0
    last_hour: datetime | None = None
    days: dict = field(default_factory=lambda: defaultdict(int))  # local day -> cost nanos


def keys(org, conn, first: date, last: date) -> list[KeyUsage]:
    """Every provider key (or project) the provider reported in the range,
    known ones and shadow ones, the biggest spender first. Known: matched to
    a vault credential (key_match.py) or marked by a manager."""
    start, end = utc_range(org, first, last)
    known = {k.key_id: k for k in KnownProviderKey.in_org(org).where(KnownProviderKey.provider == conn.provider)}
    matched = set(key_match.matches(org, conn.provider).values())
    out: dict[str, KeyUsage] = {}
    for hour, _, unit, side in _reported_hours(org, conn.provider, start, end):
        k = out.get(unit)
        if k is None:
            k = out[unit] = KeyUsage(unit, unit in known or unit in matched, known[unit].label if unit in known else "",
                                     matched=unit in matched)
        k.tokens += side.tokens
        k.cost_nanos += side.cost_nanos
        k.days[local_day(org, hour)] += side.cost_nanos
        k.last_hour = hour if k.last_hour is None or hour > k.last_hour else k.last_hour
    return sorted(out.values(), key=lambda k: (k.known, -k.cost_nanos, k.unit))


def shadow_spend(org, conn, day: date) -> tuple[int, list[KeyUsage]]:
    shadow = [k for k in keys(org, conn, day, day) if not k.known and k.cost_nanos > 0]
    return sum(k.cost_nanos for k in shadow), shadow


def check_shadow_alerts(conn) -> list[date]:
    """After a sync: for today and yesterday (local), tell the managers once
    per day when shadow spend is over the connection's threshold. Older days
    (a backfill) never alert."""
    from costguardian.money import usd_amount
    from costguardian.services.notifications.notify import notify

    org = conn.organization
    today = clock.today(org)
    alerted = []
    for day in (today - timedelta(days=1), today):
        total, shadow = shadow_spend(org, conn, day)
        if total <= conn.shadow_alert_nanos or not shadow:
            continue
        sent = notify(org, "provider.shadow_usage", {
            "provider": conn.provider, "day": day.isoformat(), "spent_usd": usd_amount(total),
            "threshold_usd": usd_amount(conn.shadow_alert_nanos), "keys": ", ".join(k.unit for k in shadow[:5]),
            "count": len(shadow)}, once=f"provider.shadow_usage:{conn.provider}:{day.isoformat()}")
        if sent is not None:
            alerted.append(day)
    return alerted


@dataclass
class CostCheck:
    day: date
    model: str
    billed_nanos: int
    priced_nanos: int
    tolerance_bp: int

    @property
    def ratio(self) -> Decimal | None:
        return None if not self.priced_nanos else (Decimal(self.billed_nanos) / self.priced_nanos)

    @property
    def drift_pct(self) -> Decimal | None:
        return _pct(self.billed_nanos - self.priced_nanos, self.priced_nanos)

    @property
    def flagged(self) -> bool:
        pct = self.drift_pct
        return pct is None or abs(pct) > Decimal(self.tolerance_bp) / 100


def cost_check(org, conn, first_utc: date, last_utc: date) -> list[CostCheck]:
    """Per UTC day (the providers bill by UTC day) and model: what the provider
    billed against our pricing of its own token counts."""
    C = ProviderCostBucket
    billed: dict[tuple, int] = defaultdict(int)
    for c in C.in_org(org).where(C.provider == conn.provider, C.day >= first_utc, C.day <= last_utc, C.model != ""):
        day = c.day if isinstance(c.day, date) else date.fromisoformat(str(c.day))
        billed[(day, c.model)] += c.amount_nanos
    priced: dict[tuple, int] = defaultdict(int)
    start = datetime.combine(first_utc, time(0))
    end = datetime.combine(last_utc + timedelta(days=1), time(0))
    for hour, model, _, side in _reported_hours(org, conn.provider, start, end):
        priced[(hour.date(), model)] += side.cost_nanos
    return [CostCheck(day, model, billed[(day, model)], priced.get((day, model), 0), conn.tolerance_bp)
            for day, model in sorted(billed)]


def report(org, conn, first: date, last: date) -> dict:
    """The JSON form (the API and tests)."""
    from costguardian.services.provider_sync import reconcile_keys

    def side(s: Side) -> dict:
        return {"requests": s.requests, "input_tokens": s.input_tokens, "cache_read_tokens": s.cache_read_tokens,
                "cache_write_tokens": s.cache_write_tokens, "output_tokens": s.output_tokens,
                "cost_usd": _usd(s.cost_nanos)}

    return {
        "provider": conn.provider, "time_zone": org.time_zone or "UTC", "from": first.isoformat(),
        "to": last.isoformat(), "tolerance_pct": str(Decimal(conn.tolerance_bp) / 100),
        "days": [{"day": r.label, "model": r.model, "recorded": side(r.recorded), "reported": side(r.reported),
                  "token_drift": r.token_drift, "token_drift_pct": _str(r.token_drift_pct),
                  "cost_drift_usd": _usd(r.cost_drift_nanos), "cost_drift_pct": _str(r.cost_drift_pct),
                  "flagged": r.flagged} for r in by_day(org, conn, first, last)],
        "keys": [{"key": k.unit, "known": k.known, "matched": k.matched, "label": k.label, "tokens": k.tokens,
                  "cost_usd": _usd(k.cost_nanos)} for k in keys(org, conn, first, last)],
        "by_key": reconcile_keys.as_json(reconcile_keys.by_key(org, conn, first, last)),
    }


def csv_lines(org, conn, first: date, last: date):
    header = ["day", "model", "recorded_tokens", "reported_tokens", "token_drift", "token_drift_pct",
              "recorded_cost_usd", "reported_cost_usd", "cost_drift_usd", "cost_drift_pct", "flagged"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for r in by_day(org, conn, first, last):
        writer.writerow([r.label, _safe_cell(r.model), r.recorded.tokens, r.reported.tokens, r.token_drift,
                         _str(r.token_drift_pct), _usd(r.recorded.cost_nanos), _usd(r.reported.cost_nanos),
                         _usd(r.cost_drift_nanos), _str(r.cost_drift_pct), "yes" if r.flagged else "no"])
    yield buffer.getvalue()


def _safe_cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _usd(nanos: int) -> str:
    return f"{Decimal(nanos) / 10**9:.9f}"


def _str(value) -> str | None:
    return None if value is None else str(value)
