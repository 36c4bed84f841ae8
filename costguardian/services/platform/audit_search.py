"""The audit log across organizations, for the platform console: filters,
keyset pages (newest first, `id < before`) and a streamed CSV export.

Rows are append-only, so id order is time order; each filter maps onto one
of the audit table's indexes ((organization, id), (actor, id),
(impersonator, id), (organization, action, id)) through an IN list of ids,
and a page never counts or skips rows (no OFFSET), so page 1,000 costs what
page 1 does."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from peewee import JOIN, fn

from costguardian.models import AuditLog, Organization, User
from costguardian.services.actor import Actor
from costguardian.services.team import audit
from costguardian.services.usage.exports import _Lines
from costguardian.timefmt import parse_day

PER_PAGE = 50
EXPORT_CHUNK = 1000
MAX_TEXT = 254
DETAIL_SHOWN = 160  # characters of the compact detail on the page (the export has all of it)
CSV_COLUMNS = ["id", "time_utc", "organization_id", "organization", "actor", "impersonator", "action",
               "target_type", "target_id", "detail", "ip", "user_agent"]


@dataclass
class Filters:
    actor: str = ""  # a substring of the email of whoever acted (or impersonated)
    org: str = ""  # an organization's id, slug, or part of its name
    action: str = ""  # exact ("org.updated"), or a prefix ending in "." or "*" ("impersonation.")
    date_from: date | None = None  # UTC, inclusive
    date_to: date | None = None  # UTC, inclusive
    impersonated: bool = False  # only what was done while impersonating
    before: int | None = None  # keyset: rows older than this id
    errors: dict = field(default_factory=dict)

    def query_args(self) -> dict:
        """The filters as URL query arguments (the empty ones left out)."""
        args = {"actor": self.actor, "org": self.org, "action": self.action,
                "date_from": self.date_from.isoformat() if self.date_from else "",
                "date_to": self.date_to.isoformat() if self.date_to else "",
                "impersonated": "1" if self.impersonated else ""}
        return {name: value for name, value in args.items() if value}

    @property
    def any(self) -> bool:
        return bool(self.query_args())


def _date(args, name: str, errors: dict) -> date | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return parse_day(raw)
    except ValueError as exc:
        errors[name] = str(exc)
        return None


def parse_filters(args) -> Filters:
    """Filters from query arguments; `errors` names each field that is wrong."""
    errors: dict[str, str] = {}
    text = {name: (args.get(name) or "").strip()[:MAX_TEXT] for name in ("actor", "org", "action")}
    date_from, date_to = _date(args, "date_from", errors), _date(args, "date_to", errors)
    if date_from and date_to and date_to < date_from:
        errors["date_to"] = "The end date comes before the start date."
    try:
        before = int(args.get("before") or 0) or None
    except (TypeError, ValueError):
        before = None
    if before is not None and not 0 < before < 2**63:
        before = None
    return Filters(actor=text["actor"], org=text["org"], action=text["action"], date_from=date_from,
                   date_to=date_to, impersonated=(args.get("impersonated") or "") in ("1", "on", "true", "yes"),
                   before=before, errors=errors)


def matching_orgs(text: str):
    """The organizations a filter names: by id when it is a number, by
    slug, or by a part of the name (any case)."""
    condition = (Organization.slug == text.lower()) | Organization.name.contains(text)
    if text.isdigit() and len(text) < 12:
        condition = condition | (Organization.id == int(text))
    return Organization.select(Organization.id).where(condition)


def _conditions(filters: Filters) -> list:
    conditions = []
    if filters.actor:
        people = User.select(User.id).where(User.email.contains(filters.actor.lower()))
        conditions.append(AuditLog.actor.in_(people) | AuditLog.impersonator.in_(people))
    if filters.org:
        conditions.append(AuditLog.organization.in_(matching_orgs(filters.org)))
    if filters.action:
        if filters.action.endswith((".", "*")):
            conditions.append(AuditLog.action.startswith(filters.action.rstrip("*")))
        else:
            conditions.append(AuditLog.action == filters.action)
    if filters.date_from:
        conditions.append(AuditLog.created_at >= datetime.combine(filters.date_from, time.min))
    if filters.date_to:
        conditions.append(AuditLog.created_at < datetime.combine(filters.date_to + timedelta(days=1), time.min))
    if filters.impersonated:
        conditions.append(AuditLog.impersonator.is_null(False))
    return conditions


def _query(conditions: list):
    actor, admin = User.alias(), User.alias()
    query = (AuditLog.select(AuditLog, Organization.id, Organization.name, Organization.slug, actor.id, actor.email,
                             actor.name, admin.id, admin.email, admin.name)
             .join(Organization, JOIN.LEFT_OUTER, on=(AuditLog.organization == Organization.id), attr="org")
             .switch(AuditLog)
             .join(actor, JOIN.LEFT_OUTER, on=(AuditLog.actor == actor.id), attr="actor_user")
             .switch(AuditLog)
             .join(admin, JOIN.LEFT_OUTER, on=(AuditLog.impersonator == admin.id), attr="impersonator_user"))
    return query.where(*conditions) if conditions else query


def search(filters: Filters, per_page: int = PER_PAGE) -> tuple[list[AuditLog], int | None]:
    """One page of matching rows, newest first, and the `before` of the next
    page (None when this is the last)."""
    conditions = _conditions(filters)
    if filters.before is not None:
        conditions.append(AuditLog.id < filters.before)
    rows = list(_query(conditions).order_by(AuditLog.id.desc()).limit(per_page + 1))
    more = len(rows) > per_page
    rows = rows[:per_page]
    return rows, (rows[-1].id if more and rows else None)


def compact(detail, limit: int | None = DETAIL_SHOWN) -> str:
    """A row's detail as one line of JSON (cut to `limit` characters with an ellipsis)."""
    if not detail:
        return ""
    text = json.dumps(detail, separators=(",", ":"), ensure_ascii=False, default=str, sort_keys=True)
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def single_org(filters: Filters) -> Organization | None:
    """The organization the filter names when it names exactly one."""
    if not filters.org:
        return None
    found = list(Organization.select().where(Organization.id.in_(matching_orgs(filters.org))).limit(2))
    return found[0] if len(found) == 1 else None


# --- the CSV export -----------------------------------------------------------------

def start_export(filters: Filters, actor: Actor) -> int:
    """Audit-log the export, and return the newest id it covers: rows written
    after this moment (its own audit row included) are not in it, so it is a
    consistent snapshot however long the download takes."""
    upto = AuditLog.select(fn.MAX(AuditLog.id)).scalar() or 0
    audit.record(actor, "platform.audit_exported", org=single_org(filters), filters=filters.query_args(),
                 upto_id=upto)
    return upto


def filename(now: datetime) -> str:
    return f"audit-log-{now.strftime('%Y%m%dT%H%MZ')}.csv"


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


def export_csv(filters: Filters, upto: int, chunk: int = EXPORT_CHUNK):
    """The CSV text of every matching row up to id `upto`, newest first, one
    piece per chunk read (keyset by id, so memory stays constant). Times are
    UTC, ISO 8601 with a Z; no cell can start a spreadsheet formula."""
    conditions = _conditions(filters)
    lines = _Lines()
    lines.writer.writerow(CSV_COLUMNS)
    yield lines.take()
    before = upto + 1
    while True:
        rows = list(_query(conditions + [AuditLog.id < before]).order_by(AuditLog.id.desc()).limit(chunk))
        for row in rows:
            lines.writer.writerow([
                row.id, _iso(row.created_at), row.organization_id or "", row.org.name if row.organization_id else "",
                row.actor_user.email if row.actor_id else "",
                row.impersonator_user.email if row.impersonator_id else "",
                row.action, row.target_type, row.target_id, compact(row.detail, None), row.ip, row.user_agent,
            ])
        yield lines.take()
        if len(rows) < chunk:
            return
        before = rows[-1].id
