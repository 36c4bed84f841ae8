"""Pulling what the providers report, incrementally and idempotently.

Each connection keeps a cursor per stream (OpenAI's six usage endpoints and
its costs; Anthropic's messages usage and costs): the start of the first
bucket not yet known to be final. A run asks from the cursor to now, page by
page (`next_page`), upserts every bucket on its unique key (a bucket pulled
twice is stored once, with the provider's latest numbers) and moves the
cursor after each page, never past the settle window (the last hours and
days, which providers still revise, are pulled again next time). A run
stopped mid-way (a consumer killed, the provider down) resumes where the
last stored page ended: that is also how the 30-day backfill resumes.

After the streams, each run pulls the provider's key list and matches the
vault's credentials to it (key_match.py), with the same retries; a run whose
streams failed skips it (the provider is down or refuses the key)."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from costguardian import clock
from costguardian.db import write_transaction
from costguardian.models import ProviderCostBucket, ProviderSyncConnection, ProviderUsageBucket
from costguardian.services.provider_sync import admin_api, connections, key_match

log = logging.getLogger(__name__)
SETTLE_HOURS = 3  # usage hours pulled again on every run
SETTLE_DAYS = 2  # cost days pulled again on every run
MAX_PAGES_PER_RUN = 200


def sync_all() -> None:
    """The periodic task: every connection, one after the other; one
    connection's failure is recorded on it and never stops the others."""
    for conn_id in [c.id for c in ProviderSyncConnection.select(ProviderSyncConnection.id)]:
        conn = ProviderSyncConnection.get_or_none(ProviderSyncConnection.id == conn_id)
        if conn is not None:
            sync_connection(conn)


def sync_by_id(conn_id: int) -> None:
    conn = ProviderSyncConnection.get_or_none(ProviderSyncConnection.id == conn_id)
    if conn is not None:
        sync_connection(conn)


def sync_connection(conn: ProviderSyncConnection, max_pages: int = MAX_PAGES_PER_RUN) -> bool:
    """Pull every stream of one connection; True when all are up to date.
    Afterwards, checks the recent days for shadow usage."""
    from costguardian.services.provider_sync import reconcile

    secret = connections.secret_of(conn)
    now = clock.now()
    done, error = True, ""
    for stream in admin_api.streams(conn.provider):
        try:
            finished, max_pages = _sync_stream(conn, secret, stream, now, max_pages)
        except admin_api.AdminApiError as exc:
            error = f"{stream}: {exc}"
            log.warning("provider sync of organization %s, %s failed: %s", conn.organization_id, conn.provider, exc)
            done = False
            break
        done = done and finished
        if max_pages <= 0:
            done = False
            break
    if not error:
        try:
            key_match.refresh(conn)
        except admin_api.AdminApiError as exc:
            error = f"keys: {exc}"
            log.warning("provider key list of organization %s, %s failed: %s", conn.organization_id, conn.provider,
                        exc)
            done = False
    conn.last_sync_at, conn.last_error = now, error
    conn.save(only=[ProviderSyncConnection.last_sync_at, ProviderSyncConnection.last_error])
    reconcile.check_shadow_alerts(conn)
    return done


def _sync_stream(conn, secret: str, stream: str, now: datetime, pages_left: int) -> tuple[bool, int]:
    costs = stream == "costs"
    if costs:
        today = datetime(now.year, now.month, now.day)
        end, settled = today + timedelta(days=1), today - timedelta(days=SETTLE_DAYS)
    else:
        hour = now.replace(minute=0, second=0, microsecond=0)
        end, settled = hour + timedelta(hours=1), hour - timedelta(hours=SETTLE_HOURS)
    start = cursor_of(conn, stream)
    if costs:
        start = datetime(start.year, start.month, start.day)
    page_token = None
    while pages_left > 0:
        page = admin_api.fetch(conn.provider, secret, stream, start, end, page_token)
        pages_left -= 1
        with write_transaction():
            (_store_costs if costs else _store_usage)(conn, page.rows)
            if page.bucket_ends:
                _advance(conn, stream, min(max(page.bucket_ends), settled))
        if not page.has_more or not page.next_page:
            return True, pages_left
        page_token = page.next_page
    return False, pages_left


def cursor_of(conn, stream: str) -> datetime:
    value = conn.cursor_map.get(stream)
    return datetime.fromisoformat(value) if value else conn.backfill_from


def _advance(conn, stream: str, until: datetime) -> None:
    cursors = conn.cursor_map
    if until > cursor_of(conn, stream):
        cursors[stream] = until.isoformat()
        conn.cursors = json.dumps(cursors, sort_keys=True)
        ProviderSyncConnection.update(cursors=conn.cursors).where(ProviderSyncConnection.id == conn.id).execute()


def _store_usage(conn, rows) -> None:
    merged: dict[tuple, admin_api.UsageRow] = {}
    for row in rows:
        key = (row.source, row.hour, row.model, row.key_id, row.project_id, row.tier)
        if key in merged:  # two raw model names that normalise to one model
            m = merged[key]
            for name in ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"):
                setattr(m, name, getattr(m, name) + getattr(row, name))
        else:
            merged[key] = admin_api.UsageRow(**row.__dict__)
    if not merged:
        return
    now = clock.now()
    values = [{"organization": conn.organization_id, "provider": conn.provider, "source": r.source, "hour": r.hour,
               "model": r.model[:128], "model_raw": r.model_raw[:200], "key_id": r.key_id[:128],
               "project_id": r.project_id[:128], "tier": r.tier[:32], "requests": r.requests,
               "input_tokens": r.input_tokens, "cache_read_tokens": r.cache_read_tokens,
               "cache_write_tokens": r.cache_write_tokens, "output_tokens": r.output_tokens, "pulled_at": now}
              for r in merged.values()]
    B = ProviderUsageBucket
    for chunk in _chunks(values, 200):
        B.insert_many(chunk).on_conflict(
            conflict_target=[B.organization, B.provider, B.source, B.hour, B.model, B.key_id, B.project_id, B.tier],
            update={B.requests: _excluded(B.requests), B.input_tokens: _excluded(B.input_tokens),
                    B.cache_read_tokens: _excluded(B.cache_read_tokens),
                    B.cache_write_tokens: _excluded(B.cache_write_tokens),
                    B.output_tokens: _excluded(B.output_tokens), B.model_raw: _excluded(B.model_raw),
                    B.pulled_at: _excluded(B.pulled_at)}).execute()


def _store_costs(conn, rows) -> None:
    merged: dict[tuple, admin_api.CostRow] = {}
    for row in rows:
        key = (row.day, row.line_item[:200], row.project_id[:128])
        if key in merged:
            merged[key].amount_nanos += row.amount_nanos
        else:
            merged[key] = admin_api.CostRow(**row.__dict__)
    if not merged:
        return
    now = clock.now()
    values = [{"organization": conn.organization_id, "provider": conn.provider, "day": r.day,
               "line_item": r.line_item[:200], "model": r.model[:128], "project_id": r.project_id[:128],
               "amount_nanos": r.amount_nanos, "pulled_at": now} for r in merged.values()]
    C = ProviderCostBucket
    for chunk in _chunks(values, 200):
        C.insert_many(chunk).on_conflict(
            conflict_target=[C.organization, C.provider, C.day, C.line_item, C.project_id],
            update={C.amount_nanos: _excluded(C.amount_nanos), C.model: _excluded(C.model),
                    C.pulled_at: _excluded(C.pulled_at)}).execute()


def _excluded(field):
    from peewee import EXCLUDED

    return getattr(EXCLUDED, field.column_name)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def progress(conn: ProviderSyncConnection) -> dict:
    """How far the backfill has got: the streams' cursors between the
    backfill start and the settle window, as one percentage."""
    now = clock.now()
    settled = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=SETTLE_HOURS)
    span = (settled - conn.backfill_from).total_seconds()
    usage = [cursor_of(conn, s) for s in admin_api.streams(conn.provider) if s != "costs"]
    complete = all(c >= settled for c in usage)
    if complete or span <= 0:
        pct = 100
    else:
        done = sum(min(span, max(0.0, (c - conn.backfill_from).total_seconds())) for c in usage)
        pct = min(99, int(done * 100 / (span * len(usage))))
    return {"percent": pct, "complete": complete, "reached": min(usage) if usage else now,
            "last_sync_at": conn.last_sync_at, "last_error": conn.last_error}
