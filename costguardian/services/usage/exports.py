"""CSV exports of usage: the raw events, the explorer's grouped table, and
FinOps FOCUS rows (one per rollup hour × dimension).

The event and FOCUS exports are generators that read in keyset chunks by
(time, id), oldest first, so memory stays constant at any size;
the caller streams what they yield and keeps a database connection open
while it does. Amounts are exact decimal strings of the stored nano-dollars,
so a column's sum equals the dashboard's total for the same filter.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from genai_prices.data_snapshot import find_provider_by_id, get_snapshot
from peewee import Tuple

from costguardian.models import NO_DEPARTMENT, NO_KEY, NO_USER, ApiKey, UsageEvent, UsageRollup, UsageTagRollup
from costguardian.services.usage.ingest import usd_string
from costguardian.services.usage.queries import (GATEWAY_TAG, Row, SourceWithTag, Totals, UsageFilter,
                                                 department_paths, department_subtree, rollup_conditions, utc_bounds)

CHUNK = 1000
EVENT_COLUMNS = ["occurred_at_utc", "event_id", "provider", "model", "model_raw", "api_key", "user", "department",
                 "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "cost_usd",
                 "priced_by", "batch", "service_tier", "tags"]
MEASURE_COLUMNS = ["requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
                   "cost_usd", "unpriced_requests"]
FOCUS_COLUMNS = [
    "BillingAccountId", "BillingAccountName", "BillingPeriodStart", "BillingPeriodEnd",
    "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "ChargeFrequency", "ChargeDescription",
    "BilledCost", "EffectiveCost", "ListCost", "BillingCurrency",
    "ServiceName", "ServiceCategory", "ProviderName", "PublisherName",
    "ResourceId", "ResourceName", "ResourceType", "SkuId", "ConsumedQuantity", "ConsumedUnit", "Tags",
    "x_Model", "x_User", "x_Department", "x_Requests", "x_UnpricedRequests", "x_InputTokens",
    "x_CacheReadTokens", "x_CacheWriteTokens", "x_OutputTokens",
]
FOCUS_SERVICE_CATEGORY = "AI and Machine Learning"


def filename(org, kind: str, flt: UsageFilter) -> str:
    """e.g. acme-usage-events-2026-11-01-to-2026-11-30.csv"""
    return f"{org.slug}-usage-{kind}-{flt.start.isoformat()}-to-{flt.end.isoformat()}.csv"


def _safe(text: str) -> str:
    """Text a spreadsheet will not run as a formula (OWASP CSV injection)."""
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


class _SafeWriter:
    """csv.writer whose every text cell goes through _safe: no cell of any
    export can start a formula, whichever column it is in."""

    def __init__(self, buffer):
        self._writer = csv.writer(buffer, lineterminator="\r\n")

    def writerow(self, row) -> None:
        self._writer.writerow([_safe(cell) if isinstance(cell, str) else cell for cell in row])


class _Lines:
    """A safe csv writer into a buffer that is emptied on each take()."""

    def __init__(self):
        self.buffer = io.StringIO()
        self.writer = _SafeWriter(self.buffer)

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def _key_names(org) -> dict[int, str]:
    return {k.id: k.name for k in ApiKey.in_org(org).select(ApiKey.id, ApiKey.name)}


def _in_or_null(column, ids: list[int], sentinel: int):
    """column IN (ids), where the rollups' sentinel means NULL on events."""
    real = [i for i in ids if i != sentinel]
    condition = column.in_(real) if real else None
    if sentinel in ids:
        condition = column.is_null() if condition is None else (condition | column.is_null())
    return condition


def event_conditions(org, flt: UsageFilter) -> list:
    """The filter on raw events, except tags (checked per row): the same events
    the rollups of `flt` count."""
    start, end = utc_bounds(org, flt.start, flt.end)
    conditions = [UsageEvent.organization == org, UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end]
    if flt.providers:
        conditions.append(UsageEvent.provider.in_(flt.providers))
    if flt.models:
        conditions.append(UsageEvent.model.in_(flt.models))
    if flt.users:
        conditions.append(UsageEvent.user_ref.in_(flt.users))
    if flt.api_key_ids:
        conditions.append(_in_or_null(UsageEvent.api_key, flt.api_key_ids, NO_KEY))
    if flt.department_ids:
        conditions.append(_in_or_null(UsageEvent.department, department_subtree(org, flt.department_ids),
                                      NO_DEPARTMENT))
    return conditions


def _keyset(model, order: list, conditions: list, chunk: int):
    """The rows matching `conditions`, page after page in `order` (columns
    that identify a row): each page starts after the last row of the one
    before (a keyset, compared as a row value), so a page costs the same
    wherever it is, and only one is in memory. The (organization, time)
    indexes and the rollups' primary keys serve both the filter and the order.
    Rows are named tuples (foreign keys as ids): cheaper than models."""
    last = None
    names = [column.name for column in order]
    while True:
        query = model.select().where(*conditions).namedtuples()
        if last is not None:
            # the first column's bound lets the index do the work; the row value is exact
            query = query.where(order[0] >= last[0], Tuple(*order) > Tuple(*last))
        rows = list(query.order_by(*order).limit(chunk))
        yield from rows
        if len(rows) < chunk:
            return
        last = [getattr(rows[-1], name) for name in names]


def events_csv(org, flt: UsageFilter, chunk: int = CHUNK):
    """The CSV text of the filtered events, one piece per chunk read."""
    keys, departments = _key_names(org), department_paths(org)
    wanted_tags = set(flt.tags)
    wanted_gateway = {"gateway": True, "ingest": False}.get(flt.source)  # None: every source
    conditions = event_conditions(org, flt)
    lines = _Lines()
    lines.writer.writerow(EVENT_COLUMNS)
    yield lines.take()

    written = 0
    for event in _keyset(UsageEvent, [UsageEvent.occurred_at, UsageEvent.id], conditions, chunk):
        if wanted_tags and not wanted_tags.intersection(event.tags or ()):
            continue
        if wanted_gateway is not None and (GATEWAY_TAG in (event.tags or ())) != wanted_gateway:
            continue
        lines.writer.writerow([
            _iso(event.occurred_at), _safe(event.event_id), event.provider, _safe(event.model),
            _safe(event.model_raw), _safe(keys.get(event.api_key, "") if event.api_key else ""),
            _safe(event.user_ref), _safe(departments.get(event.department, "") if event.department else ""),
            event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens,
            usd_string(event.cost_nanos) or "", event.priced_by, "true" if event.batch else "false",
            event.service_tier, json.dumps(event.tags or [], ensure_ascii=False),
        ])
        written += 1
        if written % chunk == 0:
            yield lines.take()
    yield lines.take()


def _share(part: int, whole: int) -> str:
    if not whole:
        return ""
    return str((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01")))


def grouped_csv(group: str, rows: list[Row], total: Totals):
    """The explorer's table: one line per group with its id and readable name."""
    lines = _Lines()
    lines.writer.writerow([group, "name", *MEASURE_COLUMNS, "cost_share_percent"])
    for row in rows:
        key = row.key.isoformat() if group == "day" else row.key
        lines.writer.writerow([_safe(str(key)), _safe(row.label), row.requests, row.input_tokens,
                               row.cache_read_tokens, row.cache_write_tokens, row.output_tokens,
                               usd_string(row.cost_nanos), row.unpriced_requests,
                               _share(row.cost_nanos, total.cost_nanos)])
    yield lines.take()


@lru_cache(maxsize=512)
def provider_name(provider: str) -> str:
    """The catalog's display name of a provider ("OpenAI"), else its id."""
    found = find_provider_by_id(get_snapshot().providers, provider)
    return found.name if found is not None else provider


def _month_bounds(moment: datetime) -> tuple[datetime, datetime]:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first, (first + timedelta(days=32)).replace(day=1)


def _focus_rows(org, flt: UsageFilter, table, chunk: int):
    """The rollup rows of `flt`, in key order. For the ingest source: each
    chunk of rows minus the gateway's share of the same keys (its
    `source:gateway` tag rows, one range read per chunk); rows left empty
    are skipped."""
    if flt.source and flt.tags:
        raise SourceWithTag("a source cannot be combined with a tag filter")
    conditions = rollup_conditions(org, table, flt)
    if flt.source == "gateway":
        conditions.append(table.tag == GATEWAY_TAG)
    rows = _keyset(table, [getattr(table, name) for name in table.KEY], conditions, chunk)
    if flt.source != "ingest":
        yield from rows
        return
    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            yield from _minus_gateway(org, batch)
            batch = []
    yield from _minus_gateway(org, batch)


def _minus_gateway(org, rows: list):
    if not rows:
        return
    tag = UsageTagRollup
    key_names = UsageRollup.KEY
    gateway = {tuple(getattr(r, name) for name in key_names): r for r in
               tag.select().where(tag.organization == org, tag.tag == GATEWAY_TAG, tag.hour >= rows[0].hour,
                                  tag.hour <= rows[-1].hour).namedtuples()}
    for row in rows:
        share = gateway.get(tuple(getattr(row, name) for name in key_names))
        if share is not None:
            row = row._replace(**{m: getattr(row, m) - getattr(share, m) for m in UsageRollup.MEASURES})
        if row.requests:
            yield row


def focus_csv(org, flt: UsageFilter, chunk: int = CHUNK):
    """FOCUS 1.x cost and usage rows: one per rollup hour × provider × model ×
    key × user × department (× tag when filtering by tag), in UTC."""
    table = UsageTagRollup if flt.tags or flt.source == "gateway" else UsageRollup
    keys, departments = _key_names(org), department_paths(org)
    lines = _Lines()
    lines.writer.writerow(FOCUS_COLUMNS)
    yield lines.take()

    for count, row in enumerate(_focus_rows(org, flt, table, chunk), start=1):
        billing_start, billing_end = _month_bounds(row.hour)
        cost = usd_string(row.cost_nanos)
        provider = provider_name(row.provider)
        key_name = keys.get(row.api_key_id, "") if row.api_key_id != NO_KEY else ""
        department = departments.get(row.department_id, "") if row.department_id != NO_DEPARTMENT else ""
        tags = {"provider": row.provider, "model": row.model}
        if row.user_ref != NO_USER:
            tags["user"] = row.user_ref
        if department:
            tags["department"] = department
        if key_name:
            tags["api_key"] = key_name
        if table is UsageTagRollup:
            tags["tag"] = row.tag
        lines.writer.writerow([
            org.slug, _safe(org.name), _iso(billing_start), _iso(billing_end),
            _iso(row.hour), _iso(row.hour + timedelta(hours=1)), "Usage", "Usage-Based",
            _safe(f"{row.requests} request{'s' if row.requests != 1 else ''} to {row.provider}/{row.model}"),
            cost, cost, cost, "USD",
            provider, FOCUS_SERVICE_CATEGORY, provider, provider,
            f"apikey/{row.api_key_id}" if row.api_key_id != NO_KEY else "", _safe(key_name),
            "API key" if row.api_key_id != NO_KEY else "",
            _safe(f"{row.provider}/{row.model}"), row.input_tokens + row.output_tokens, "Tokens",
            json.dumps(tags, ensure_ascii=False, sort_keys=True),
            _safe(row.model), _safe(row.user_ref), _safe(department), row.requests, row.unpriced_requests,
            row.input_tokens, row.cache_read_tokens, row.cache_write_tokens, row.output_tokens,
        ])
        if count % chunk == 0:
            yield lines.take()
    yield lines.take()
