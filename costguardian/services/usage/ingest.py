"""Ingest: a batch of raw usage events becomes priced, attributed, stored events
and hourly rollups, in one transaction.

Per event the answer is accepted (with its cost), duplicate (the event_id is
already stored: a retried batch never double-counts) or rejected with the
reasons; one bad event never rejects the good ones beside it. The batch is
aggregated in memory first, so it costs one INSERT of events and one upsert
per distinct rollup row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flask import current_app

from costguardian import clock, settings_cache
from costguardian.models import NO_DEPARTMENT, NO_USER, Department, ModelAlias
from costguardian.models.org import caseless
from costguardian.money import usd_decimal
from costguardian.observability import metrics
from costguardian.prepared import Prepared
from costguardian.services.ops import retention
from costguardian.services.usage import catalog, rollups
from costguardian.services.usage.pricing import OrgPrices, Tokens
from costguardian.services.usage.usage_objects import UsageObjectError, tokens_from_usage_object

MAX_EVENTS = 1000
MAX_TOKENS = 10**9  # per field: far beyond any context window
MAX_EVENT_COST_NANOS = 10**14  # $100,000 for one call: anything above is a unit mistake, and it keeps sums within 64 bits
MAX_FUTURE = timedelta(minutes=5)
EARLIEST = datetime(2015, 1, 1)
MAX_TAGS = 20
MAX_TAG_LENGTH = 100  # a list item, or an object's "key:value"
# The keys of the tags the gateway sets on the calls it records (source:gateway, status:error,
# usage:estimated, …): the explorer trusts them, so events a client sends may not carry them.
RESERVED_TAG_KEYS = ("source", "status", "usage")
# An RFC 3339 date-time, whose offset may be left out (then it is UTC): what the API document
# states. datetime.fromisoformat alone would also take a date without a time, "2026-11-20 10:15",
# basic formats (20261120T1015) and ISO week dates.
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
                       r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
EVENT_FIELDS = {"event_id", "provider", "model", "occurred_at", "user", "department", "tags", "usage",
                "batch", "service_tier", *TOKEN_FIELDS}


class BatchError(Exception):
    """The request as a whole is unusable (not the events in it)."""

    def __init__(self, problem: str, detail: str, errors: dict | None = None):
        super().__init__(detail)
        self.problem, self.detail, self.errors = problem, detail, errors or {}


class EventRejected(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class EventResult:
    index: int
    event_id: str | None
    status: str  # accepted, duplicate, rejected
    cost_nanos: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    provider: str = ""
    model: str = ""

    def as_json(self) -> dict:
        body = {"index": self.index, "event_id": self.event_id, "status": self.status}
        if self.status == "accepted":
            body.update(provider=self.provider, model=self.model, cost_usd=usd_string(self.cost_nanos),
                        priced=self.cost_nanos is not None)
        elif self.status == "rejected":
            body["errors"] = self.errors
        return body


@dataclass
class BatchResult:
    results: list[EventResult]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def as_json(self) -> dict:
        return {"accepted": self.count("accepted"), "duplicates": self.count("duplicate"),
                "rejected": self.count("rejected"), "results": [r.as_json() for r in self.results]}


def usd_string(nanos: int | None) -> str | None:
    """Nano-dollars as a plain decimal string ("0.00325"), None when unknown."""
    return usd_decimal(nanos)


def events_from_body(body) -> tuple[list, bool]:
    """(the raw events, whether the body was a single event) or BatchError."""
    if isinstance(body, dict) and "events" in body:
        extra = set(body) - {"events"}
        if extra:
            raise BatchError("invalid-body", "A batch holds only 'events'.",
                             {name: "Unknown field." for name in sorted(extra)})
        events = body["events"]
        if not isinstance(events, list):
            raise BatchError("invalid-body", "'events' must be a list of event objects.")
        if not events:
            raise BatchError("invalid-body", "'events' is empty; send between 1 and 1,000 events.")
        if len(events) > MAX_EVENTS:
            raise BatchError("too-many-events", f"A batch holds at most {MAX_EVENTS:,} events; this one has "
                                                f"{len(events):,}. Split it.")
        return events, False
    if isinstance(body, dict):
        return [body], True
    raise BatchError("invalid-body", "Send one event object, or {\"events\": [...]}.")


# --- validation ---------------------------------------------------------------

@dataclass
class _Context:
    """What validating one organization's batch needs, loaded once."""

    now: datetime
    departments: dict[str, int]  # lower-case name -> id
    aliases: dict[tuple[str, str], str]  # (provider, lower-case alias) -> model
    key_user: str
    key_department: int
    gateway_tags: bool = False  # the gateway's own recording: its reserved tags are allowed
    keep_from: datetime | None = None  # raw events before this are pruned (services/ops/retention.py)


def _string(raw: dict, name: str, errors: dict, required: bool, limit: int) -> str:
    value = raw.get(name)
    if value is None:
        if required:
            errors[name] = "Required."
        return ""
    if not isinstance(value, str):
        errors[name] = "Must be a string."
        return ""
    if len(value) > limit:  # as sent: the limit the API document states, before trimming
        errors[name] = f"At most {limit} characters."
    elif not storable(value):
        errors[name] = "Contains characters that cannot be stored (NUL or an unpaired surrogate)."
    value = value.strip()
    if required and not value and name not in errors:
        errors[name] = "Must not be empty."
    return value


def storable(text: str) -> bool:
    """No NUL (PostgreSQL refuses it) and valid UTF-8 (no lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _count(raw: dict, name: str, errors: dict) -> int:
    value = raw.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = "Must be a whole number."
        return 0
    if value < 0:
        errors[name] = "Must not be negative."
    elif value > MAX_TOKENS:
        errors[name] = f"Must be at most {MAX_TOKENS:,}."
    return value


def _timestamp(raw: dict, errors: dict, now: datetime, keep_from: datetime | None = None) -> datetime:
    value = raw.get("occurred_at")
    if value is None:
        return now
    if not isinstance(value, str):
        errors["occurred_at"] = "Must be an ISO 8601 timestamp string, e.g. 2026-11-26T14:03:00Z."
        return now
    if not TIMESTAMP.fullmatch(value):
        errors["occurred_at"] = "Not an ISO 8601 timestamp, e.g. 2026-11-26T14:03:00Z."
        return now
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00").replace("t", "T"))
    except ValueError:
        errors["occurred_at"] = "Not a moment on the calendar (such as February 30, 24:00 or a 60th second)."
        return now
    if not EARLIEST.year <= moment.year <= now.year + 1:
        errors["occurred_at"] = f"Must be between {EARLIEST.year} and now."
        return now
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    if moment > now + MAX_FUTURE:
        errors["occurred_at"] = "Is in the future (more than 5 minutes ahead of the server's clock)."
    elif keep_from is not None and moment < keep_from:
        # Its event id may be one already pruned: accepted again, it would be counted twice.
        errors["occurred_at"] = (f"Is older than this organization keeps raw usage events (since "
                                 f"{keep_from:%Y-%m-%d %H:%M} UTC), so it cannot be told apart from one already "
                                 "counted; it was not recorded.")
    elif moment < EARLIEST:
        errors["occurred_at"] = f"Is before {EARLIEST.year}."
    return moment


def reserved(tag: str) -> bool:
    """Is this a tag only the gateway may set (`source:…`, `status:…`,
    `usage:…`, whatever the case or spaces around the key)?"""
    key, colon, _ = tag.partition(":")
    return bool(colon) and key.strip().lower() in RESERVED_TAG_KEYS


def _tags(raw: dict, errors: dict, gateway_tags: bool = False) -> list[str]:
    value = raw.get("tags")
    if value is None:
        return []
    # Counts and lengths are those of the tags as sent (before trimming and
    # removing duplicates), as the API document states them.
    if isinstance(value, dict):
        sent = []
        for k, v in value.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif not isinstance(v, (str, int, float)):
                errors["tags"] = "Tag values must be strings, numbers or booleans."
                return []
            sent.append((str(k), str(v)))
        raw_tags = [f"{k}:{v}" for k, v in sent]
        items = [f"{k.strip()}:{v.strip()}" for k, v in sent]
    elif isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            errors["tags"] = "A list of tags must hold strings."
            return []
        raw_tags = value
        items = [v.strip() for v in value]
    else:
        errors["tags"] = "Must be an object of key/value strings or a list of strings."
        return []
    if len(raw_tags) > MAX_TAGS:
        errors["tags"] = f"At most {MAX_TAGS} tags."
    elif any(len(t) > MAX_TAG_LENGTH for t in raw_tags):
        errors["tags"] = f"Each tag is at most {MAX_TAG_LENGTH} characters."
    elif not all(storable(t) for t in raw_tags):
        errors["tags"] = "A tag contains characters that cannot be stored (NUL or an unpaired surrogate)."
    elif not gateway_tags and any(reserved(t) for t in items):
        tag = next(t for t in items if reserved(t))
        errors["tags"] = (f"'{tag[:40]}': the {', '.join(k + ':' for k in RESERVED_TAG_KEYS)} tags are set by "
                          "the gateway on the calls it records; use another key.")
    return [t for t in dict.fromkeys(items) if t]


def validate_event(raw, ctx: _Context) -> dict:
    """The stored row for one raw event, or EventRejected with every problem."""
    if not isinstance(raw, dict):
        raise EventRejected({"": "Each event must be a JSON object."})
    errors: dict[str, str] = {}
    for name in sorted(set(raw) - EVENT_FIELDS):
        errors[name] = "Unknown field."
    event_id = _string(raw, "event_id", errors, True, 128)
    provider_raw = _string(raw, "provider", errors, True, 64)
    model_raw = _string(raw, "model", errors, True, 200)
    occurred_at = _timestamp(raw, errors, ctx.now, ctx.keep_from)
    user = _string(raw, "user", errors, False, 200)
    if user and "@" in user:
        user = user.lower()  # an email names one person however it is capitalised
    department_name = _string(raw, "department", errors, False, 120)
    service_tier = _string(raw, "service_tier", errors, False, 16)
    batch = raw.get("batch", False)
    if not isinstance(batch, bool):
        errors["batch"] = "Must be true or false."
    tags = _tags(raw, errors, ctx.gateway_tags)
    provider = catalog.normalize_provider(provider_raw) if provider_raw else ""

    if "usage" in raw:
        given = [name for name in TOKEN_FIELDS if name in raw]
        if given:
            errors["usage"] = f"Send either 'usage' or token counts ({', '.join(given)}), not both."
            tokens = Tokens()
        else:
            try:
                tokens = tokens_from_usage_object(raw["usage"], provider)
            except UsageObjectError as exc:
                errors["usage"] = str(exc)
                tokens = Tokens()
    else:
        tokens = Tokens(input=_count(raw, "input_tokens", errors), cache_read=_count(raw, "cache_read_tokens", errors),
                        cache_write=_count(raw, "cache_write_tokens", errors),
                        output=_count(raw, "output_tokens", errors))
    if not any(name in errors for name in TOKEN_FIELDS) and tokens.cache_read + tokens.cache_write > tokens.input:
        errors["input_tokens"] = ("Must include the cached tokens: input_tokens counts every prompt token, so "
                                  "cache_read_tokens + cache_write_tokens cannot exceed it.")

    department_id = ctx.key_department
    if department_name:
        department_id = ctx.departments.get(caseless(" ".join(department_name.split())), -1)
        if department_id == -1:
            errors["department"] = f"No department named '{department_name}' in this organization."
    if errors:
        raise EventRejected(errors)

    model = ctx.aliases.get((provider, model_raw.lower()))
    if model is None:
        model, _ = catalog.resolve_model(provider, model_raw)
    return {
        "event_id": event_id, "occurred_at": occurred_at, "provider": provider, "model": model,
        "model_raw": model_raw, "user_ref": user or ctx.key_user, "department": department_id or None,
        "input_tokens": tokens.input, "cache_read_tokens": tokens.cache_read,
        "cache_write_tokens": tokens.cache_write, "output_tokens": tokens.output,
        "batch": batch, "service_tier": service_tier, "tags": tags,
    }


# --- the batch ------------------------------------------------------------------

_ALIASES = Prepared(lambda org_id: ModelAlias.select(ModelAlias.provider, ModelAlias.alias, ModelAlias.model)
                    .where(ModelAlias.organization == org_id).tuples())


def ingest(org, api_key, raw_events: list, now: datetime | None = None, *, gateway_tags: bool = False,
           credential_id: int | None = None) -> BatchResult:
    """Validate, price and store a batch for `org`, sent with `api_key` (or None
    for internal callers such as the demo seeder). The tags reserved for the
    gateway's recording (RESERVED_TAG_KEYS) are refused unless `gateway_tags`
    (only the gateway's recording passes it, with the vault `credential_id`
    that served the call)."""
    batch = price(org, api_key, raw_events, now, gateway_tags=gateway_tags, credential_id=credential_id)
    touched = store(org, [batch])
    after_store(org, [batch], touched)
    return batch.result


@dataclass
class Priced:
    """A batch validated and priced but not stored yet (ingest's first half;
    `store` writes it, `after_store` tells people about it)."""

    result: BatchResult
    rows: list[dict]  # the accepted events, as stored
    row_results: list[EventResult]  # their results, in the same order
    source: str  # for the metrics: gateway, api or internal


def price(org, api_key, raw_events: list, now: datetime | None = None, *, gateway_tags: bool = False,
          credential_id: int | None = None) -> Priced:
    """Validate and price a batch (reads only)."""
    ctx = _Context(
        now=now or clock.now(),
        departments=(settings_cache.cached("departments", org.id, None, lambda: dict(
            Department.in_org(org).select(Department.name_key, Department.id).tuples()))
                     if any(isinstance(raw, dict) and raw.get("department") for raw in raw_events) else {}),
        aliases=settings_cache.cached("aliases", org.id, None, lambda: {
            (provider, alias.lower()): model for provider, alias, model in _ALIASES.execute(org.id)}),
        key_user=(api_key.user.email if api_key is not None and api_key.user_id else NO_USER),
        key_department=(api_key.department_id or NO_DEPARTMENT) if api_key is not None else NO_DEPARTMENT,
        gateway_tags=gateway_tags,
    )
    ctx.keep_from = retention.pruned_before(org, ctx.now)
    prices = OrgPrices.for_org(org)
    results: list[EventResult] = []
    rows: list[dict] = []
    row_results: list[EventResult] = []
    seen: set[str] = set()
    received_at = ctx.now
    for index, raw in enumerate(raw_events):
        event_id = raw.get("event_id") if isinstance(raw, dict) and isinstance(raw.get("event_id"), str) else None
        try:
            row = validate_event(raw, ctx)
        except EventRejected as exc:
            results.append(EventResult(index, event_id, "rejected", errors=exc.errors))
            continue
        if row["event_id"] in seen:
            results.append(EventResult(index, row["event_id"], "duplicate"))
            continue
        cost, priced_by = prices.price(
            row["provider"], row["model"], row["occurred_at"],
            Tokens(row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"], row["output_tokens"]),
            row["batch"], row["service_tier"])
        if cost is not None and cost > MAX_EVENT_COST_NANOS:
            results.append(EventResult(index, row["event_id"], "rejected", errors={
                "cost": f"One call would cost ${usd_string(cost)}, over the $100,000 limit; check the token counts."}))
            continue
        seen.add(row["event_id"])
        row.update(organization=org.id, api_key=api_key.id if api_key is not None else None,
                   cost_nanos=cost, priced_by=priced_by, received_at=received_at, credential_id=credential_id)
        result = EventResult(index, row["event_id"], "accepted", cost, provider=row["provider"], model=row["model"])
        results.append(result)
        rows.append(row)
        row_results.append(result)
    source = "gateway" if gateway_tags else "api" if api_key is not None else "internal"
    return Priced(BatchResult(results), rows, row_results, source)


def store(org, batches: list[Priced]) -> set:
    """Store priced batches of `org` in one transaction (a savepoint of the
    caller's, when it has one): events whose id is already stored turn
    duplicate. Returns the (budget id, period start) pairs for `after_store`."""
    rows = [row for batch in batches for row in batch.rows]
    touched: set = set()
    if not rows:
        return touched
    inserted = rollups.store_events(org.id, rows, touched)
    for batch in batches:
        for row, result in zip(batch.rows, batch.row_results):
            if row["event_id"] not in inserted:
                result.status, result.cost_nanos = "duplicate", None
    return touched


def after_store(org, batches: list[Priced], touched: set) -> None:
    """After the commit: unpriced-model notices, budget thresholds, metrics.
    The events are stored: whatever happens while telling people about them
    must not turn the answer into an error (the periodic budget check and the
    next batch catch up on anything missed here)."""
    try:
        _tell_about_unpriced(org, [r for batch in batches for r in batch.row_results
                                   if r.status == "accepted" and r.cost_nanos is None])
        if touched:
            from costguardian.services.budgets import budgets

            budgets.check_thresholds(org, touched)
            metrics.budgets_checked("ingest", len({budget_id for budget_id, _ in touched}))
    except Exception:
        current_app.logger.exception("notifying after an ingest batch of organization %s failed", org.id)
    for batch in batches:
        result = batch.result
        metrics.ingested(batch.source, result.count("accepted"), result.count("duplicate"), result.count("rejected"))


def _tell_about_unpriced(org, unpriced: list) -> None:
    """Admins hear once per model that calls to it cannot be priced."""
    from costguardian.services.notifications import notify as notifications

    counts: dict[tuple[str, str], int] = {}
    for result in unpriced:
        counts[(result.provider, result.model)] = counts.get((result.provider, result.model), 0) + 1
    for (provider, model), requests in counts.items():
        notifications.notify(org, "usage.unpriced_model", {"provider": provider, "model": model, "requests": requests},
                             once=f"usage.unpriced_model:{provider}/{model}")
