"""Budgets: validation and changes, status (O(1) per budget), which budgets
apply to a call, threshold/forecast/resolved alerts (exactly once each), and
the history views (daily spend, top contributors); past periods, the
department allocation and the per-period report are in budgets.reports.

Spend comes from the counters in services.budgets.accounting; forecasts from
services.budgets.forecast, refreshed by the periodic check and kept on the counter
row, so reading a budget's status never scans history.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from flask import g
from peewee import IntegrityError, fn

from costguardian import clock
from costguardian import permissions
from costguardian.extensions import db
from costguardian.models import (ApiKey, Budget, BudgetAlert, BudgetIncrease, BudgetSpend, Department, Membership,
                                 Organization, User, UsageRollup, UsageTagRollup)
from costguardian.money import NANOS_PER_USD, format_usd, percent_of, usd_amount, usd_decimal, whole_percent
from costguardian.services.budgets import accounting as budget_accounting, periods as budget_periods, forecast
from costguardian.services.team import audit
from costguardian.services.usage import catalog, rollups
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.timefmt import parse_day

DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLDS = 10
MAX_AMOUNT_USD = Decimal(1_000_000_000)
ENFORCEMENT = {"soft": "Soft: alert only", "hard": "Hard: block calls beyond the limit (through the gateway)"}
STATES = {"ok": "OK", "warning": "Warning", "forecast": "Forecast to exceed", "exceeded": "Exceeded"}
FORECAST_MAX_AGE = timedelta(minutes=30)


# --- input ------------------------------------------------------------------------

def parse_usd(value, field_name: str = "amount_usd", allow_zero: bool = False) -> int:
    text = str(value if value is not None else "").strip().replace(",", "").lstrip("$")
    if not text:
        raise ValidationError({field_name: "Enter an amount in dollars."})
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValidationError({field_name: "Enter an amount in dollars, like 250 or 99.50."}) from None
    if not amount.is_finite() or amount < 0 or (amount == 0 and not allow_zero):
        raise ValidationError({field_name: "The amount must be more than $0."})
    if amount > MAX_AMOUNT_USD:
        raise ValidationError({field_name: "The amount must be at most $1,000,000,000."})
    nanos = amount * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise ValidationError({field_name: "Use at most 9 decimal places."})
    return int(nanos)


def parse_thresholds(value) -> list[int]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return list(DEFAULT_THRESHOLDS)
    items = value if isinstance(value, (list, tuple)) else str(value).replace(";", ",").replace(" ", ",").split(",")
    result = []
    for item in items:
        text = str(item).strip().rstrip("%")
        if not text:
            continue
        try:
            number = int(text)
        except ValueError:
            raise ValidationError({"thresholds": f"'{item}' is not a whole percent; write e.g. 50, 80, 100."}) from None
        if not 1 <= number <= 1000:
            raise ValidationError({"thresholds": "Each threshold is a percent between 1 and 1000."})
        result.append(number)
    result = sorted(set(result))
    if not result:
        raise ValidationError({"thresholds": "Give at least one threshold, e.g. 50, 80, 100."})
    if len(result) > MAX_THRESHOLDS:
        raise ValidationError({"thresholds": f"At most {MAX_THRESHOLDS} thresholds."})
    return result


def _parse_date(value, name: str, errors: dict) -> date | None:
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    if not text:
        errors[name] = "Choose a date."
        return None
    try:
        return parse_day(text)
    except ValueError as exc:
        errors[name] = str(exc)
        return None


def _int_or_none(value):
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return -1
    return number if 0 < number < 2**31 else -1


def _org_row(value, find, field: str, message: str, errors: dict):
    """The organization's row a form or JSON id names (None when no id is
    given); an id that is not a number or not this organization's is an error."""
    number = _int_or_none(value)
    if number is None:
        return None
    row = find(number) if number > 0 else None
    if row is None:
        errors[field] = message
    return row


def parse(org: Organization, data) -> dict:
    """Clean every field of a budget from a form or JSON mapping; all errors at once."""
    errors: dict[str, str] = {}
    fields: dict = {}
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = "Give the budget a name."
    elif len(name) > 120:
        errors["name"] = "At most 120 characters."
    fields["name"] = name
    try:
        fields["amount_nanos"] = parse_usd(data.get("amount_usd"))
    except ValidationError as exc:
        errors.update(exc.errors)
    period = str(data.get("period") or "monthly")
    if period not in budget_periods.PERIODS:
        errors["period"] = "Choose a period from the list."
    fields["period"] = period
    fields["custom_start"] = fields["custom_end"] = None
    if period == "custom":
        start = _parse_date(data.get("custom_start"), "custom_start", errors)
        end = _parse_date(data.get("custom_end"), "custom_end", errors)
        if start and end:
            if end < start:
                errors["custom_end"] = "The last day cannot be before the first."
            elif (end - start).days > 366 * 5:
                errors["custom_end"] = "A custom period can last at most five years."
        fields["custom_start"], fields["custom_end"] = start, end
    try:
        fields["thresholds"] = ",".join(str(t) for t in parse_thresholds(data.get("thresholds")))
    except ValidationError as exc:
        errors.update(exc.errors)
    enforcement = str(data.get("enforcement") or "soft")
    if enforcement not in ENFORCEMENT:
        errors["enforcement"] = "Choose soft or hard."
    fields["enforcement"] = enforcement
    fields["notify_resolved"] = str(data.get("notify_resolved") or "").lower() in ("1", "true", "on", "yes")
    roles = data.get("notify_roles")
    if roles is None:
        roles = ["owner", "admin"]
    elif isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",") if r.strip()]
    unknown = [r for r in roles if r not in permissions.ROLES]
    if unknown:
        errors["notify_roles"] = f"Unknown role: {', '.join(map(str, unknown))}."
    fields["notify_roles"] = ",".join(r for r in permissions.ROLES if r in roles)
    owner = _org_row(data.get("owner_id"), lambda i: Membership.in_org(org).where(Membership.user == i).first(),
                     "owner_id", "The owner must be a member of this organization.", errors)
    fields["owner"] = owner.user_id if owner else None
    department = _org_row(data.get("department_id"), lambda i: Department.get_in_org(org, i),
                          "department_id", "Choose a department of this organization.", errors)
    fields["scope_department"] = department.id if department else None
    key = _org_row(data.get("api_key_id"), lambda i: ApiKey.get_in_org(org, i),
                   "api_key_id", "Choose an API key of this organization.", errors)
    fields["scope_api_key"] = key.id if key else None
    user = str(data.get("user") or "").strip()
    if len(user) > 200:
        errors["user"] = "At most 200 characters."
    fields["scope_user"] = user.lower() if "@" in user else (user or None)
    provider = str(data.get("provider") or "").strip()
    fields["scope_provider"] = catalog.normalize_provider(provider) if provider else None
    if fields["scope_provider"] and len(fields["scope_provider"]) > 64:
        errors["provider"] = "At most 64 characters."
    model = str(data.get("model") or "").strip()
    if model and len(model) > 128:
        errors["model"] = "At most 128 characters."
    if model:
        model = catalog.resolve_model(fields["scope_provider"] or "", model)[0] if fields["scope_provider"] else model
    fields["scope_model"] = model or None
    tag = str(data.get("tag") or "").strip()
    if len(tag) > 100:
        errors["tag"] = "At most 100 characters."
    fields["scope_tag"] = tag or None
    if errors:
        raise ValidationError(errors)
    return fields


def get(org: Organization, budget_id) -> Budget | None:
    """The organization's budget with this id; None for an unknown id or another tenant's."""
    return Budget.get_in_org(org, budget_id)


# --- changes -----------------------------------------------------------------------

def create(org: Organization, actor: Actor, data) -> Budget:
    fields = parse(org, data)
    budget = Budget.create(organization=org, created_by=actor.user, **fields)
    budget_accounting.rebuild(budget)  # backfill the current period from history
    audit.record(actor, "budget.created", org=org, target=budget, name=budget.name,
                 amount=format_usd(budget.amount_nanos), period=budget.period, scope=scope_text(budget))
    check_thresholds(org, {(budget.id, None)})
    refresh_forecast(budget)  # the list shows a forecast at once, not after the next periodic check
    return budget


_SCOPE_FIELDS = ("period", "custom_start", "custom_end", "scope_department", "scope_user", "scope_api_key",
                 "scope_provider", "scope_model", "scope_tag")


def update(budget: Budget, actor: Actor, data) -> Budget:
    org = budget.organization
    fields = parse(org, data)
    before = {k: _plain(getattr(budget, k + "_id" if k in ("owner", "scope_department", "scope_api_key") else k))
              for k in fields}
    changes = {k: [before[k], _plain(v)] for k, v in fields.items() if before[k] != _plain(v)}
    if not changes:
        return budget
    for key, value in fields.items():
        setattr(budget, key, value)
    budget.updated_at = clock.now()
    budget.save()
    if any(k in changes for k in _SCOPE_FIELDS):
        budget_accounting.rebuild(budget)
    audit.record(actor, "budget.updated", org=org, target=budget, name=budget.name,
                 changes={k: [str(a), str(b)] for k, (a, b) in changes.items()})
    _after_limit_change(budget)
    refresh_forecast(budget)
    return budget


def _plain(value):
    return value.id if hasattr(value, "id") else value


def delete(budget: Budget, actor: Actor) -> None:
    org = budget.organization
    name = budget.name
    budget_accounting.delete_budget(budget)
    audit.record(actor, "budget.deleted", org=org, target=budget, name=name)


def raise_temporarily(budget: Budget, actor: Actor, amount_usd, reason: str = "", now=None) -> BudgetIncrease:
    """More room for the rest of the current period only."""
    amount = parse_usd(amount_usd, "increase_usd")
    reason = (reason or "").strip()
    if len(reason) > 200:
        raise ValidationError({"reason": "At most 200 characters."})
    period = _period(budget, now or clock.now())
    if budget.period == "custom" and not period.contains(now or clock.now()):
        raise RuleViolation("This custom period is not running now; edit the amount instead.")
    raised = (BudgetIncrease.select(fn.COALESCE(fn.SUM(BudgetIncrease.amount_nanos), 0))
              .where(BudgetIncrease.budget == budget, BudgetIncrease.period_start == period.start).scalar())
    if budget.amount_nanos + int(raised or 0) + amount > MAX_AMOUNT_USD * NANOS_PER_USD:
        # Like an amount, a period's limit stays within $1,000,000,000 (and sums of raises within 64 bits).
        raise ValidationError({"increase_usd": "This period's limit (the amount and its raises) can be at most "
                                               "$1,000,000,000."})
    increase = BudgetIncrease.create(organization=budget.organization_id, budget=budget, period_start=period.start,
                                     amount_nanos=amount, reason=reason, created_by=actor.user)
    audit.record(actor, "budget.raised", org=budget.organization, target=budget, name=budget.name,
                 increase=format_usd(amount), period=period.label, reason=reason)
    _after_limit_change(budget)
    return increase


def _after_limit_change(budget: Budget) -> None:
    """A raise may resolve alerts; a lower limit or threshold may cross one."""
    check_thresholds(budget.organization, {(budget.id, None)})
    if budget.notify_resolved:
        _check_resolved(budget, clock.now())


# --- status -----------------------------------------------------------------------

def _tz(org_or_id) -> str:
    if isinstance(org_or_id, Organization):
        return org_or_id.time_zone
    return budget_accounting.time_zone_of(org_or_id)


def _period(budget: Budget, now: datetime, tz_name: str | None = None) -> budget_periods.Period:
    return budget_periods.current_period(budget, tz_name or _tz(budget.organization_id), now)


@dataclass
class Status:
    budget: Budget
    period: budget_periods.Period
    spend: int
    requests: int
    limit: int
    increase: int
    forecast: int | None = None
    forecast_low: int | None = None
    forecast_high: int | None = None
    forecast_exceeds_on: date | None = None
    thresholds_crossed: list[int] = field(default_factory=list)

    @property
    def percent(self) -> Decimal:
        """Exact (from the integers), so every screen and alert rounds the same value the same way."""
        return percent_of(self.spend, self.limit)

    @property
    def forecast_percent(self) -> Decimal | None:
        return percent_of(self.forecast, self.limit) if self.forecast is not None and self.limit > 0 else None

    @property
    def remaining(self) -> int:
        return self.limit - self.spend

    @property
    def state(self) -> str:
        if self.spend >= self.limit:
            return "exceeded"
        if self.forecast is not None and self.forecast > self.limit:
            return "forecast"
        if any(t < 100 for t in self.thresholds_crossed):
            return "warning"
        return "ok"

    @property
    def blocked(self) -> bool:
        """Would the gateway refuse a call under this budget right now?"""
        return self.budget.enforcement == "hard" and self.spend >= self.limit

    def as_json(self) -> dict:
        b = self.budget
        return {
            "id": b.id, "name": b.name, "scope": scope_json(b), "scope_text": scope_text(b),
            "period": {"kind": b.period, "start": self.period.first_day.isoformat(),
                       "end": self.period.last_day.isoformat(), "label": self.period.label},
            "limit_usd": usd(self.limit), "base_limit_usd": usd(b.amount_nanos), "increase_usd": usd(self.increase),
            "spend_usd": usd(self.spend), "requests": self.requests, "percent": float(round(self.percent, 2)),
            "thresholds": b.threshold_list, "thresholds_crossed": self.thresholds_crossed,
            "forecast_usd": usd(self.forecast) if self.forecast is not None else None,
            "forecast_low_usd": usd(self.forecast_low) if self.forecast_low is not None else None,
            "forecast_high_usd": usd(self.forecast_high) if self.forecast_high is not None else None,
            "forecast_exceeds_on": self.forecast_exceeds_on.isoformat() if self.forecast_exceeds_on else None,
            "state": self.state, "enforcement": b.enforcement, "blocked": self.blocked,
        }


def usd(nanos: int) -> str:
    return usd_decimal(nanos)


STATUS_CHUNK = 200


def _any_of(clauses: list):
    """The OR of the clauses as a balanced tree: a left-deep chain of a few
    hundred overflows Python's recursion when peewee writes the SQL."""
    if len(clauses) == 1:
        return clauses[0]
    middle = len(clauses) // 2
    return _any_of(clauses[:middle]) | _any_of(clauses[middle:])


def statuses(budgets: list[Budget], now: datetime | None = None) -> list[Status]:
    """Status of many budgets in three queries, whatever the history size:
    the counters and the raises of their current periods, by primary key."""
    if not budgets:
        return []
    now = now or clock.now()
    tz_name = _tz(budgets[0].organization_id)
    periods = {b.id: _period(b, now, tz_name) for b in budgets}
    keys = [(b.id, periods[b.id].start) for b in budgets]
    counters = {}
    increases: dict[int, int] = {}
    for i in range(0, len(keys), STATUS_CHUNK):  # bounded SQL, however many budgets (10,000 in bench/budget_check.py)
        chunk = keys[i:i + STATUS_CHUNK]
        condition = _any_of([(BudgetSpend.budget == budget_id) & (BudgetSpend.period_start == start)
                             for budget_id, start in chunk])
        for row in BudgetSpend.select().where(condition):
            counters[row.budget_id] = row
        condition = _any_of([(BudgetIncrease.budget == budget_id) & (BudgetIncrease.period_start == start)
                             for budget_id, start in chunk])
        for budget_id, total in (BudgetIncrease.select(BudgetIncrease.budget, fn.SUM(BudgetIncrease.amount_nanos))
                                 .where(condition).group_by(BudgetIncrease.budget).tuples()):
            increases[budget_id] = int(total)
    result = []
    for budget in budgets:
        counter = counters.get(budget.id)
        increase = increases.get(budget.id, 0)
        limit = budget.amount_nanos + increase
        spend = counter.spend_nanos if counter else 0
        status = Status(budget, periods[budget.id], spend, counter.requests if counter else 0, limit, increase)
        # A forecast below what is already spent predates that spend: none until the next refresh.
        if counter is not None and counter.forecast_nanos is not None and counter.forecast_nanos >= spend:
            status.forecast, status.forecast_low = counter.forecast_nanos, counter.forecast_low_nanos
            status.forecast_high, status.forecast_exceeds_on = counter.forecast_high_nanos, counter.forecast_exceeds_on
        status.thresholds_crossed = [t for t in budget.threshold_list if limit > 0 and spend * 100 >= t * limit]
        result.append(status)
    return result


def status(budget: Budget, now: datetime | None = None) -> Status:
    return statuses([budget], now)[0]


def org_statuses(org: Organization, now: datetime | None = None) -> list[Status]:
    return statuses(list(Budget.in_org(org).order_by(Budget.name, Budget.id)), now)


# --- which budgets apply ---------------------------------------------------------------

def applies(scope: budget_accounting.Scope, *, user: str | None, api_key: int | None, department: int | None,
            provider: str | None, model: str | None, tags=()) -> bool:
    """Does a call with these attributes fall under the budget? Attributes
    the caller leaves out (None) are unknown: a budget restricted on one of
    them covers the call only if the call names a matching value."""
    row = {"user_ref": user, "api_key": api_key, "department": department, "provider": provider,
           "model": model, "tags": list(tags or ())}
    return scope.matches(row)


def covering_budgets(org: Organization, *, user: str | None = None, api_key: int | None = None,
                     department: int | None = None, provider: str | None = None, model: str | None = None,
                     tags=()) -> list[Budget]:
    """Every budget covering a call with these attributes (see `applies`)."""
    if provider:
        provider = catalog.normalize_provider(provider)
    if model and provider:
        model = catalog.resolve_model(provider, model)[0]
    if user and "@" in user:
        user = user.lower()
    return [s.budget for s in budget_accounting.org_scopes(org.id)
            if applies(s, user=user, api_key=api_key, department=department, provider=provider, model=model,
                       tags=tags)]


def current_period(budget: Budget, now: datetime, tz_name: str | None = None) -> budget_periods.Period:
    """The budget's period at `now` (in the organization's zone, read unless given)."""
    return _period(budget, now, tz_name)


def budget_status_for(org: Organization, *, user: str | None = None, api_key: int | None = None,
                      department: int | None = None, provider: str | None = None, model: str | None = None,
                      tags=(), now: datetime | None = None) -> list[Status]:
    """Every budget covering a call with these attributes, with its status,
    the one that would block first at the front (blocked hard budgets, then
    hard ones by least room left, then soft ones). The gateway's single call:
    its cost does not depend on history (counters, by primary key)."""
    covering = covering_budgets(org, user=user, api_key=api_key, department=department, provider=provider,
                                model=model, tags=tags)
    result = statuses(covering, now)
    result.sort(key=lambda s: (not s.blocked, s.budget.enforcement != "hard", s.remaining, s.budget.id))
    return result


# --- describing budgets ---------------------------------------------------------------------

def _scope_names(org_id: int) -> tuple[dict, dict]:
    """(department names, key names) of the organization, loaded once per
    app context (a request or a task), so describing many budgets costs two
    queries, not two per budget."""
    cache = g.setdefault("_budget_scope_names", {})
    if org_id not in cache:
        cache[org_id] = (
            dict(Department.select(Department.id, Department.name).where(Department.organization == org_id).tuples()),
            dict(ApiKey.select(ApiKey.id, ApiKey.name).where(ApiKey.organization == org_id).tuples()))
    return cache[org_id]


def scope_parts(budget: Budget) -> list[tuple[str, str]]:
    parts = []
    if budget.scope_department_id or budget.scope_api_key_id:
        departments, keys = _scope_names(budget.organization_id)
    if budget.scope_department_id:
        parts.append(("Department", departments.get(budget.scope_department_id, "?") + " (with sub-departments)"))
    if budget.scope_user:
        parts.append(("User", budget.scope_user))
    if budget.scope_api_key_id:
        parts.append(("API key", keys.get(budget.scope_api_key_id, "?")))
    if budget.scope_provider:
        parts.append(("Provider", budget.scope_provider))
    if budget.scope_model:
        parts.append(("Model", budget.scope_model))
    if budget.scope_tag:
        parts.append(("Tag", budget.scope_tag))
    return parts


def scope_text(budget: Budget) -> str:
    parts = scope_parts(budget)
    return " × ".join(f"{k} {v}" for k, v in parts) if parts else "The whole organization"


def scope_json(budget: Budget) -> dict:
    return {"department_id": budget.scope_department_id, "user": budget.scope_user,
            "api_key_id": budget.scope_api_key_id, "provider": budget.scope_provider,
            "model": budget.scope_model, "tag": budget.scope_tag}


# --- alerts ---------------------------------------------------------------------------------

def _recipients(budget: Budget) -> list[int]:
    roles = budget.role_list
    ids = [m.user_id for m in Membership.in_org(budget.organization_id).where(Membership.role.in_(roles))] if roles else []
    if budget.owner_id:
        ids.append(budget.owner_id)
    return sorted(set(ids))


def _dollars(nanos: int) -> str:
    """An amount by the one money rule without its "$" (the templates add it):
    "1,234.50", "0.0075"; the same text the pages show."""
    return usd_amount(nanos)


def _payload(st: Status, threshold: int | None = None) -> dict:
    b = st.budget
    return {
        "budget": b.name, "budget_id": b.id, "scope": scope_text(b), "spent_usd": _dollars(st.spend),
        "limit_usd": _dollars(st.limit), "percent": whole_percent(st.spend, st.limit), "threshold": threshold,
        "period": st.period.label, "enforcement": b.enforcement,
        "forecast_usd": _dollars(st.forecast) if st.forecast is not None else "",
        "forecast_date": st.forecast_exceeds_on.isoformat() if st.forecast_exceeds_on else "",
    }


def _raise_alert(st: Status, kind: str, threshold: int, event_type: str, message: str = "") -> BudgetAlert | None:
    """Insert the alert row (the unique key decides who sends it) and notify."""
    from costguardian.services.notifications import notify as notifications

    try:
        with db.atomic():
            alert = BudgetAlert.create(organization=st.budget.organization_id, budget=st.budget,
                                       period_start=st.period.start, period_day=st.period.first_day,
                                       kind=kind, threshold=threshold,
                                       spend_nanos=st.spend, limit_nanos=st.limit, forecast_nanos=st.forecast,
                                       message=message)
    except IntegrityError:
        return None  # someone else raised it
    sent = notifications.notify(st.budget.organization, event_type, _payload(st, threshold),
                                recipients=_recipients(st.budget))
    alert.event_id = sent.event_id if sent else ""
    alert.message = sent.notifications[0].body if sent and sent.notifications else message
    alert.save(only=[BudgetAlert.event_id, BudgetAlert.message])
    return alert


def check_thresholds(org: Organization, touched, now: datetime | None = None) -> list[BudgetAlert]:
    """After spend grew (ingest) or a limit changed: raise each crossed
    threshold's alert once per period. `touched` holds (budget id, _)."""
    ids = sorted({budget_id for budget_id, _ in touched})
    if not ids:
        return []
    budgets = list(Budget.select().where(Budget.id.in_(ids), Budget.organization == org.id))
    now = now or clock.now()
    raised = []
    sts = [st for st in statuses(budgets, now) if st.thresholds_crossed and st.period.contains(now)]
    if not sts:
        return raised
    existing = set(BudgetAlert.select(BudgetAlert.budget, BudgetAlert.period_day, BudgetAlert.threshold)
                   .where(BudgetAlert.budget.in_([s.budget.id for s in sts]), BudgetAlert.kind == "threshold")
                   .tuples())
    for st in sts:
        for threshold in st.thresholds_crossed:
            if (st.budget.id, st.period.first_day, threshold) in existing:
                continue
            event_type = "budget.exceeded" if threshold >= 100 else "budget.threshold"
            alert = _raise_alert(st, "threshold", threshold, event_type)
            if alert is not None:
                raised.append(alert)
    return raised


def _check_resolved(budget: Budget, now: datetime) -> BudgetAlert | None:
    """After a raise: back under the highest threshold alerted this period?"""
    st = status(budget, now)
    alerted = [t for (t,) in BudgetAlert.select(BudgetAlert.threshold).where(
        BudgetAlert.budget == budget, BudgetAlert.period_day == st.period.first_day,
        BudgetAlert.kind == "threshold").tuples()]
    if not alerted:
        return None
    highest = max(alerted)
    if st.spend * 100 >= highest * st.limit:
        return None
    return _raise_alert(st, "resolved", highest, "budget.resolved")


def _check_new_period(budget: Budget, st: Status) -> BudgetAlert | None:
    """A new period began after an exceeded one: say it is back under."""
    previous = budget_periods.previous_period(budget, _tz(budget.organization_id), st.period)
    if previous is None or st.spend >= st.limit:
        return None
    exceeded = BudgetAlert.select().where(BudgetAlert.budget == budget, BudgetAlert.period_day == previous.first_day,
                                          BudgetAlert.kind == "threshold", BudgetAlert.threshold >= 100).exists()
    if not exceeded:
        return None
    return _raise_alert(st, "resolved", 0, "budget.resolved", "A new period began.")


def alert_blocked(st: Status, now: datetime | None = None) -> BudgetAlert | None:
    """The gateway refused a call under this hard budget: tell the budget's
    recipients once per period (the alert row's unique key decides who sends
    it, so concurrent refusals send one). Later refusals cost one lookup."""
    now = now or clock.now()
    if not st.period.contains(now):
        return None
    if BudgetAlert.select().where(BudgetAlert.budget == st.budget.id, BudgetAlert.period_day == st.period.first_day,
                                  BudgetAlert.kind == "blocked", BudgetAlert.threshold == 0).exists():
        return None
    return _raise_alert(st, "blocked", 0, "budget.blocked")


# --- forecasts -------------------------------------------------------------------------------

def _within_scope(query, table, scope: budget_accounting.Scope):
    """A rollup query narrowed to the budget's scope (tag rollups for a tag scope)."""
    if scope.tag is not None:
        query = query.where(table.tag == scope.tag)
    if scope.departments is not None:
        query = query.where(table.department_id.in_(sorted(scope.departments)))
    for column, value in ((table.user_ref, scope.user), (table.api_key_id, scope.api_key),
                          (table.provider, scope.provider), (table.model, scope.model)):
        if value is not None:
            query = query.where(column == value)
    return query


def daily_spend(budget: Budget, first_day: date, last_day: date, tz_name: str | None = None) -> list[tuple[date, int]]:
    """The scope's spend per local day, every day in the range (zeros included)."""
    tz_name = tz_name or _tz(budget.organization_id)
    zone = ZoneInfo(tz_name)
    # the buckets starting in those days: exactly the days wherever local midnight is a bucket edge
    aligned_to = rollups.alignment(budget.organization_id)
    start = rollups.bucket_at_or_after(aligned_to, budget_periods._utc(first_day, zone))
    end = rollups.bucket_at_or_after(aligned_to, budget_periods._utc(last_day + timedelta(days=1), zone))
    scope = budget_accounting.Scope.of(budget)
    table = UsageTagRollup if scope.tag is not None else UsageRollup
    query = (table.select(table.hour, fn.SUM(table.cost_nanos))
             .where(table.organization == budget.organization_id, table.hour >= start, table.hour < end)
             .group_by(table.hour))
    query = _within_scope(query, table, scope)
    days = {first_day + timedelta(days=i): 0 for i in range((last_day - first_day).days + 1)}
    for hour, cost in query.tuples():
        day = budget_periods.local_date(hour, zone)
        if day in days:
            days[day] += int(cost or 0)
    return sorted(days.items())


def forecast_for(budget: Budget, st: Status, now: datetime) -> forecast.Forecast | None:
    """The projection for the budget's period, or None while there is nothing
    to project from (no spend in the period and none in the history)."""
    tz_name = _tz(budget.organization_id)
    zone = ZoneInfo(tz_name)
    today = budget_periods.local_date(now, zone)
    history = daily_spend(budget, today - timedelta(days=forecast.HISTORY_DAYS), today - timedelta(days=1), tz_name)
    # Leading days before the scope's first spend are "no data", not zero spend.
    while history and history[0][1] == 0:
        history.pop(0)
    if not history and st.spend == 0:
        return None
    period = st.period
    remaining = [d for d in period.days if d > today]
    local_now = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    fraction_left = 1 - (local_now.hour * 3600 + local_now.minute * 60 + local_now.second) / 86400
    if today < period.first_day:  # a custom period that has not started
        remaining, fraction_left = period.days, 0.0
    if today > period.last_day:
        remaining, fraction_left = [], 0.0
    elapsed = max((now - period.start).total_seconds() / 86400, 0.0)
    return forecast.project(history, today, st.spend, remaining, fraction_left, elapsed)


def refresh_forecast(budget: Budget, now: datetime | None = None) -> Status:
    """Compute the forecast, keep it on the counter row, and raise the
    forecast alert once per period when the projection first exceeds 100%."""
    now = now or clock.now()
    st = status(budget, now)
    projection = forecast_for(budget, st, now)
    # No data yet is "no forecast" (NULL), never a forecast of $0.00.
    total, low, high = (projection.total, projection.low, projection.high) if projection else (None, None, None)
    exceeds_on = projection.crossing(st.limit) if projection and projection.total > st.limit else None
    (BudgetSpend.insert(budget=budget.id, period_start=st.period.start, spend_nanos=0, requests=0, updated_at=now)
     .on_conflict_ignore().execute())
    (BudgetSpend.update(forecast_nanos=total, forecast_low_nanos=low,
                        forecast_high_nanos=high, forecast_exceeds_on=exceeds_on, forecast_at=now)
     .where(BudgetSpend.budget == budget.id, BudgetSpend.period_start == st.period.start).execute())
    st.forecast, st.forecast_low, st.forecast_high, st.forecast_exceeds_on = total, low, high, exceeds_on
    if projection and projection.total > st.limit and st.spend < st.limit and st.period.contains(now):
        _raise_alert(st, "forecast", 100, "budget.forecast")
    return st


def check_all(now: datetime | None = None) -> dict[str, int]:
    """The periodic check: thresholds missed on ingest (e.g. a threshold
    lowered below the spend), forecasts and their alerts, and the "back
    under" notice of a new period. Idempotent: the alert table's unique key
    makes a second run send nothing new. In this process, batch after batch
    (services/budgets/periodic.py, whose `run` the periodic task calls)."""
    from costguardian.services.budgets import periodic

    return periodic.check_all(now)


def _send_unsent_alerts(now: datetime) -> int:
    """Alerts whose row was written but whose notification never went out
    (the sender failed between the two): send them now, once."""
    from costguardian.services.notifications import notify as notifications

    sent = 0
    stale = (BudgetAlert.select().where(BudgetAlert.event_id == "", BudgetAlert.created_at < now - timedelta(minutes=2))
             .order_by(BudgetAlert.id).limit(200))
    for alert in stale:
        budget = Budget.get_or_none(Budget.id == alert.budget_id)
        if budget is None:
            continue
        st = status(budget, now)
        event_type = {"forecast": "budget.forecast", "resolved": "budget.resolved", "blocked": "budget.blocked"}.get(
            alert.kind, "budget.exceeded" if alert.threshold >= 100 else "budget.threshold")
        claimed = BudgetAlert.update(event_id="sending").where(BudgetAlert.id == alert.id,
                                                               BudgetAlert.event_id == "").execute()
        if not claimed:
            continue
        result = notifications.notify(budget.organization, event_type, _payload(st, alert.threshold or None),
                                      recipients=_recipients(budget))
        BudgetAlert.update(event_id=result.event_id if result else "none").where(BudgetAlert.id == alert.id).execute()
        sent += 1
    return sent


def send_test_alert(budget: Budget, actor: Actor):
    """A test through `notify` to the budget's recipients; no alert row."""
    from costguardian.services.notifications import notify as notifications

    st = status(budget)
    payload = _payload(st, 80)
    payload["budget"] = f"[Test] {budget.name}"
    payload["test"] = True  # webhook receivers can tell it from a real alert
    sent = notifications.notify(budget.organization, "budget.threshold", payload, recipients=_recipients(budget))
    audit.record(actor, "budget.test_alert", org=budget.organization, target=budget, name=budget.name)
    return sent


# --- history views -----------------------------------------------------------------------------

def top_contributors(budget: Budget, period: budget_periods.Period, dimension: str, limit: int = 5):
    """[(value, spend, requests)] of the scope in the period, by user, model or key."""
    scope = budget_accounting.Scope.of(budget)
    table = UsageTagRollup if scope.tag is not None else UsageRollup
    column = {"user": table.user_ref, "model": table.model, "key": table.api_key_id,
              "department": table.department_id, "provider": table.provider}[dimension]
    spend = fn.SUM(table.cost_nanos)
    query = (table.select(column, spend, fn.SUM(table.requests))
             .where(table.organization == budget.organization_id, table.hour >= period.start,
                    table.hour < period.end).group_by(column).order_by(spend.desc()).limit(limit))
    query = _within_scope(query, table, scope)
    rows = [(value, int(s or 0), int(r or 0)) for value, s, r in query.tuples()]
    if dimension == "key":
        names = dict(ApiKey.select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_([v for v, _, _ in rows])).tuples())
        rows = [(names.get(v, "(no key)") if v else "(no key)", s, r) for v, s, r in rows]
    if dimension == "user":
        rows = [(v or "(no user)", s, r) for v, s, r in rows]
    return rows


def alert_history(budget: Budget, limit: int = 50) -> list[BudgetAlert]:
    return list(BudgetAlert.select().where(BudgetAlert.budget == budget)
                .order_by(BudgetAlert.created_at.desc(), BudgetAlert.id.desc()).limit(limit))


def period_spend_between(budget: Budget, period: budget_periods.Period) -> tuple[int, int]:
    """(spend, requests) of any period (past ones from the rollups)."""
    return budget_accounting.spend_between(budget_accounting.Scope.of(budget), period.start, period.end)


def past_periods(budget: Budget, count: int, now: datetime | None = None) -> list[budget_periods.Period]:
    """The current period and up to `count - 1` before it, newest first."""
    tz_name = _tz(budget.organization_id)
    period = _period(budget, now or clock.now(), tz_name)
    result = [period]
    while len(result) < count:
        previous = budget_periods.previous_period(budget, tz_name, result[-1])
        if previous is None:
            break
        result.append(previous)
    return result


def member_owner_choices(org: Organization) -> list[tuple[int, str]]:
    return [(m.user_id, m.user.display_name) for m in
            Membership.in_org(org).select(Membership, User).join(User).order_by(fn.LOWER(User.name), User.email)]
