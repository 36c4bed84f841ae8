"""The audit log as CSV, with the same filters as the page (who, what).
Times are UTC, ISO 8601 (the header says so); text a spreadsheet would run
as a formula is quoted (usage exports' writer)."""
from __future__ import annotations

import json

from costguardian import clock
from costguardian.models import AuditLog
from costguardian.services.team.activity import actor_name, filtered
from costguardian.services.usage.exports import _iso, _Lines, _safe

COLUMNS = ["time (UTC, ISO 8601)", "actor", "actor_email", "action", "target_type", "target_id", "detail", "ip"]
CHUNK = 500


def filename(org) -> str:
    return f"{org.slug}-audit-log-{clock.now().date().isoformat()}.csv"


def rows_csv(org, actor_id: int | None = None, action: str = "", chunk: int = CHUNK):
    """The CSV text, newest first, one piece per chunk read (keyset by id)."""
    lines = _Lines()
    lines.writer.writerow(COLUMNS)
    yield lines.take()
    last_id = None
    while True:
        query = filtered(org, actor_id, action)
        if last_id is not None:
            query = query.where(AuditLog.id < last_id)
        rows = list(query.order_by(AuditLog.id.desc()).limit(chunk))
        for row in rows:
            lines.writer.writerow([
                _iso(row.created_at), _safe(actor_name(row)), _safe(row.actor.email if row.actor_id else ""),
                row.action, row.target_type, _safe(row.target_id),
                _safe(json.dumps(row.detail or {}, ensure_ascii=False, sort_keys=True, default=str)), row.ip or "",
            ])
        yield lines.take()
        if len(rows) < chunk:
            return
        last_id = rows[-1].id
