"""The gateway's request log: each organization's calls through the gateway,
searchable, and — only when the organization turns request logging on — the
bodies of its calls.

Request logging is off by default. When it is on at the time of a call, the
proxy keeps a `Capture`: the request body as the caller sent it, and the
answer as the caller got it (the whole JSON body; for a stream, the
server-sent events relayed, appended as they pass). Each is capped at
BODY_LIMIT bytes (marked truncated beyond). Nothing is written until the
answer was sent: `store` runs in the call's finish (recording). Headers are
never kept, so neither is the caller's key; the provider's key is redacted
from both bodies. Bodies are deleted after the organization's retention
(`sweep_expired`, a periodic task) or at once on request (`delete_bodies`).

Who sees what is the views' business: metadata for whoever may read usage,
bodies only for those who may change the setting (owners and admins).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from peewee import JOIN

from costguardian import clock
from costguardian.models import ApiKey, GatewayRequest, GatewayRequestBody, Organization, UsageEvent
from costguardian.models.org import MAX_ID
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.ops import partitions
from costguardian.services.team import audit

BODY_LIMIT = 256 * 1024  # bytes kept of each body
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 90, 7
BATCH = 1000  # rows per DELETE, so a large purge never holds one long transaction
PER_PAGE = 50
MAX_QUERY = 200
OUTCOMES = {"ok": "OK", "upstream_error": "Provider error", "blocked": "Blocked (budget)", "refused": "Refused",
            "timeout": "Timed out", "unreachable": "Unreachable", "cancelled": "Cancelled"}
ENDPOINTS = ("chat.completions", "completions", "embeddings", "responses", "messages")


# --- the setting ------------------------------------------------------------------------

def validated_days(days) -> int:
    try:
        value = int(str(days).strip())
    except (TypeError, ValueError):
        value = None
    if value is None or not MIN_DAYS <= value <= MAX_DAYS:
        raise ValidationError({"retention_days": f"Enter a whole number of days from {MIN_DAYS} to {MAX_DAYS}."})
    return value


def update_settings(org: Organization, actor: Actor, enabled: bool, days) -> Organization:
    """Turn request logging on or off and set how many days bodies are kept.
    Off stops capture with the next call; bodies already kept stay until
    their retention ends (or `delete_bodies`)."""
    days = validated_days(days)
    if enabled and not org.request_logging:
        from costguardian.services.billing import limits

        refusal = limits.feature_refusal(org, "request_logging")
        if refusal:
            raise ValidationError({"enabled": refusal})
    changes = {}
    if bool(org.request_logging) != bool(enabled):
        changes["request_logging"] = ["on" if org.request_logging else "off", "on" if enabled else "off"]
    if org.request_log_days != days:
        changes["request_log_retention"] = [f"{org.request_log_days} days", f"{days} days"]
    if changes:
        Organization.update(request_logging=bool(enabled), request_log_days=days, updated_at=clock.now()) \
            .where(Organization.id == org.id).execute()
        org.request_logging, org.request_log_days = bool(enabled), days
        audit.record(actor, "org.updated", org=org, target=org, changes=changes)
    return org


def delete_bodies(org: Organization, actor: Actor) -> int:
    """Delete every body the organization keeps, now; returns how many."""
    deleted = _delete_in_batches(GatewayRequestBody.organization == org.id)
    audit.record(actor, "org.request_bodies_deleted", org=org, target=org, count=deleted)
    return deleted


def bodies_kept(org: Organization) -> int:
    return GatewayRequestBody.in_org(org).count()


# --- capture (in the proxy) and storage (after the answer was sent) ---------------------

class Capture:
    """A call's bodies as they pass, each bounded by BODY_LIMIT, so a long
    stream costs at most that much memory and never waits for anything."""

    def __init__(self, limit: int = BODY_LIMIT):
        self.limit = limit
        self.request = b""
        self.request_size = 0
        self.answer = bytearray()
        self.answer_size = 0
        self.secret = ""  # the provider key used: redacted before storing

    def take_request(self, raw: bytes) -> None:
        self.request, self.request_size = bytes(raw[:self.limit]), len(raw)

    def take_answer(self, content: bytes) -> None:
        self.answer, self.answer_size = bytearray(content[:self.limit]), len(content)

    def append(self, data: bytes) -> None:
        """One more piece of a relayed stream."""
        self.answer_size += len(data)
        room = self.limit - len(self.answer)
        if room > 0:
            self.answer += data[:room]


def capture(org: Organization, raw_body: bytes) -> Capture | None:
    """A Capture holding the request body when the organization logs
    requests (read from the organization loaded with the caller's key, so
    turning logging off stops capture with the next call); else None."""
    if not getattr(org, "request_logging", False):
        return None
    kept = Capture()
    kept.take_request(raw_body or b"")
    return kept


def _redacted(data: bytes, secret: str, truncated: bool) -> bytes:
    if len(secret) < 8:  # as the proxy's error bodies: a short "key" would mangle ordinary text
        return bytes(data)
    key = secret.encode()
    data = bytes(data).replace(key, ("…" + secret[-4:]).encode())
    if truncated:  # the cap may have cut through the key: drop the start of it left at the end
        for n in range(min(len(key) - 1, len(data)), 3, -1):
            if data.endswith(key[:n]):
                return data[:-n] + "…".encode()
    return data


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def store(org, request_id: str, kept: Capture) -> None:
    """Keep one call's bodies (once: a second store of the request is ignored)."""
    request_cut, answer_cut = kept.request_size > len(kept.request), kept.answer_size > len(kept.answer)
    GatewayRequestBody.insert(
        organization=org, request_id=request_id, created_at=clock.now(),
        request_body=_text(_redacted(kept.request, kept.secret, request_cut)), request_bytes=kept.request_size,
        request_truncated=request_cut,
        answer_body=_text(_redacted(kept.answer, kept.secret, answer_cut)), answer_bytes=kept.answer_size,
        answer_truncated=answer_cut).on_conflict_ignore().execute()


# --- retention --------------------------------------------------------------------------

def _delete_in_batches(condition, batch: int = BATCH) -> int:
    deleted = 0
    while True:
        # No ORDER BY: any batch will do, and the (organization, created_at) index then stops at `batch`
        # rows instead of sorting every expired row of the organization for each batch.
        ids = [i for i, in GatewayRequestBody.select(GatewayRequestBody.id).where(condition)
               .limit(batch).tuples()]
        if not ids:
            return deleted
        deleted += GatewayRequestBody.delete().where(GatewayRequestBody.id.in_(ids)).execute()
        if len(ids) < batch:
            return deleted


def sweep_expired(batch: int = BATCH) -> int:
    """Delete the bodies older than their organization's retention, in
    batches; returns how many. Running it again deletes nothing more."""
    now, deleted = clock.now(), 0
    holders = GatewayRequestBody.select(GatewayRequestBody.organization).distinct()
    for org_id, days in (Organization.select(Organization.id, Organization.request_log_days)
                         .where(Organization.id.in_(holders)).tuples()):
        days = min(max(days or DEFAULT_DAYS, MIN_DAYS), MAX_DAYS)
        cutoff = now - timedelta(days=days)
        deleted += _delete_in_batches((GatewayRequestBody.organization == org_id)
                                      & (GatewayRequestBody.created_at < cutoff), batch)
    return deleted


# --- the log's pages --------------------------------------------------------------------

@dataclass
class RequestFilter:
    q: str = ""
    outcome: str = ""
    key_id: int | None = None
    model: str = ""
    start: date | None = None  # in the organization's zone, inclusive
    end: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.q or self.outcome or self.key_id or self.model or self.start or self.end)


@dataclass
class Row:
    request: GatewayRequest
    key_name: str
    event: UsageEvent | None

    @property
    def cost_nanos(self) -> int | None:
        return self.event.cost_nanos if self.event is not None else None


@dataclass
class Page:
    rows: list[Row]
    next_cursor: str | None  # the `before` of the next (older) page


def _utc_midnight(org, day: date) -> datetime:
    return datetime.combine(day, time.min, clock.zone(org)).astimezone(timezone.utc).replace(tzinfo=None)


def cursor_of(request: GatewayRequest) -> str:
    return f"{request.started_at:%Y%m%dT%H%M%S%f}.{request.id}"


def _parse_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The (started_at, id) of a cursor; None for one `cursor_of` never
    makes (malformed, or an id beyond the table's INTEGER, which the
    database would refuse to compare)."""
    try:
        moment, _, row_id = (cursor or "")[:64].partition(".")
        parsed = datetime.strptime(moment, "%Y%m%dT%H%M%S%f"), int(row_id)
    except ValueError:
        return None
    return parsed if 0 < parsed[1] <= MAX_ID else None


def search(org, flt: RequestFilter, *, bodies: bool = False, before: str | None = None,
           per_page: int = PER_PAGE) -> Page:
    """One page of the organization's calls, newest first (keyset: `before`
    is the cursor of the last row shown), with their keys and usage events.
    `bodies`: the free text also searches the kept bodies (only for viewers
    allowed to read them)."""
    found = list(listing(org, flt, bodies=bodies, before=before).limit(per_page + 1))
    shown = found[:per_page]
    events = _events(org, [r.request_id for r in shown if r.forwarded])
    rows = [Row(r, r.api_key.name if r.api_key_id and r.api_key else "", events.get(r.request_id))
            for r in shown]
    return Page(rows, cursor_of(shown[-1]) if len(found) > per_page else None)


def listing(org, flt: RequestFilter, *, bodies: bool = False, before: str | None = None):
    """The query behind `search`: newest first on (started_at, id), which the
    (organization, started_at) index serves, so a page costs the same with a
    million calls."""
    R = GatewayRequest
    query = (R.select(R, ApiKey).join(ApiKey, JOIN.LEFT_OUTER, on=(R.api_key == ApiKey.id))
             .where(R.organization == org))
    if flt.outcome:
        query = query.where(R.outcome == flt.outcome)
    if flt.key_id:
        query = query.where(R.api_key == flt.key_id)
    if flt.model:
        query = query.where(R.model == flt.model)
    if flt.start:
        query = query.where(R.started_at >= _utc_midnight(org, flt.start))
    if flt.end:
        query = query.where(R.started_at < _utc_midnight(org, flt.end + timedelta(days=1)))
    if flt.q:
        text = flt.q
        matches = R.request_id.contains(text) | R.model.contains(text) | R.error.contains(text) \
            | R.provider.contains(text) | R.endpoint.contains(text)
        if bodies:
            B = GatewayRequestBody
            matches |= R.request_id.in_(B.select(B.request_id).where(
                (B.organization == org) & (B.request_body.contains(text) | B.answer_body.contains(text))))
        query = query.where(matches)
    after = _parse_cursor(before)
    if after is not None:
        moment, row_id = after
        query = query.where((R.started_at < moment) | ((R.started_at == moment) & (R.id < row_id)))
    return query.order_by(R.started_at.desc(), R.id.desc())


def _events(org, request_ids: list[str]) -> dict[str, UsageEvent]:
    if not request_ids:
        return {}
    return {e.event_id: e for e in UsageEvent.select().where(*partitions.event_id_conditions(org.id, request_ids))}


def keys_of(org) -> list[tuple[int, str]]:
    """(id, name) of the organization's keys, for the filter."""
    return [(k.id, f"{k.name} ({k.prefix})") for k in ApiKey.in_org(org).order_by(ApiKey.name, ApiKey.id)]


@dataclass
class Detail:
    row: Row
    body: GatewayRequestBody | None  # only when asked for and kept

    @property
    def request_text(self) -> str:
        return pretty(self.body.request_body, self.body.request_truncated) if self.body else ""

    @property
    def answer_text(self) -> str:
        return pretty(self.body.answer_body, self.body.answer_truncated) if self.body else ""


def detail(org, request_id: str, *, bodies: bool = False) -> Detail | None:
    """One call of this organization (None for another's or none), its usage
    event, and its bodies when `bodies` and they are kept."""
    request = (GatewayRequest.select(GatewayRequest, ApiKey)
               .join(ApiKey, JOIN.LEFT_OUTER, on=(GatewayRequest.api_key == ApiKey.id))
               .where(GatewayRequest.organization == org, GatewayRequest.request_id == request_id[:40]).first())
    if request is None:
        return None
    event = _events(org, [request.request_id]).get(request.request_id)
    row = Row(request, request.api_key.name if request.api_key_id and request.api_key else "", event)
    body = GatewayRequestBody.in_org(org).where(GatewayRequestBody.request_id == request.request_id).first() \
        if bodies else None
    return Detail(row, body)


def pretty(text: str, truncated: bool) -> str:
    """JSON indented for reading; anything else (a stream's events, a cut
    body) as it was."""
    if truncated or not text.lstrip().startswith(("{", "[")):
        return text
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
