"""Budget screens: the list (sortable, filterable), create/edit/delete forms,
the detail page (status, chart, alerts, contributors, raise, test alert,
previous periods), "which budgets apply?", the department allocation and the
per-period report (page, CSV, print). Every rule lives in services.budgets:
the views only read the request, call it and render."""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from flask import Blueprint, Response, abort, flash, g, request, url_for
from peewee import fn

from costguardian import permissions
from costguardian.authz import current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.models import ApiKey, Budget, BudgetAlert, BudgetIncrease, Department, UsageRollup, utcnow
from costguardian.money import NANOS_PER_USD
from costguardian.rendering import redirect_to, render, toast
from costguardian.services import budget_accounting, budget_periods, budgets, exports, usage_queries
from costguardian.services.errors import RuleViolation, ValidationError

bp = Blueprint("budgets", __name__, url_prefix="/budgets")

INDEX, LIST = "budgets/index.html", "partials/budgets/_list.html"
FORM_PAGE, FORM = "budgets/form.html", "partials/budgets/_form.html"
SHOW, RAISE = "budgets/show.html", "partials/budgets/_raise.html"
EXPLAIN, EXPLAIN_RESULTS = "budgets/explain.html", "partials/budgets/_explain_results.html"
ALLOCATION, ALLOCATION_TABLE = "budgets/allocation.html", "partials/budgets/_allocation.html"
REPORT, REPORT_TABLE = "budgets/report.html", "partials/budgets/_report.html"

SORTS = {"name": "Name", "percent": "Percent used", "spend": "Spend", "limit": "Limit", "state": "Status"}
STATE_ORDER = {"exceeded": 0, "forecast": 1, "warning": 2, "ok": 3}
CALENDAR_PERIODS = {k: v for k, v in budget_periods.PERIODS.items() if k != "custom"}
MAX_OFFSET = 120
ROLE_LABELS = {"owner": "Owners", "admin": "Admins", "billing": "Billing", "member": "Members", "viewer": "Viewers"}


def _budget_or_404(budget_id: int) -> Budget:
    budget = Budget.get_in_org(g.org, budget_id)
    if budget is None:
        abort(404)
    return budget


def _dollars(nanos: int | None) -> str | None:
    if nanos is None:
        return None
    return str((Decimal(nanos) / NANOS_PER_USD).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


# --- the list ---------------------------------------------------------------------

@dataclass
class ListQuery:
    sort: str = "name"
    direction: str = "asc"
    state: str = ""
    period: str = ""
    enforcement: str = ""
    q: str = ""

    @classmethod
    def parse(cls, args) -> "ListQuery":
        sort = args.get("sort", "name")
        direction = args.get("dir", "")
        state, period, enforcement = args.get("state", ""), args.get("period", ""), args.get("enforcement", "")
        return cls(
            sort=sort if sort in SORTS else "name",
            direction=direction if direction in ("asc", "desc") else ("asc" if sort in ("name", "state") else "desc"),
            state=state if state in budgets.STATES else "",
            period=period if period in budget_periods.PERIODS else "",
            enforcement=enforcement if enforcement in budgets.ENFORCEMENT else "",
            q=(args.get("q") or "").strip()[:100],
        )

    def params(self, **changes) -> dict:
        values = {"sort": self.sort, "dir": self.direction, "state": self.state, "period": self.period,
                  "enforcement": self.enforcement, "q": self.q, **changes}
        return {k: v for k, v in values.items() if v and not (k == "sort" and v == "name" and "dir" not in changes
                                                             and values["dir"] == "asc")}

    def sort_params(self, column: str) -> dict:
        """The link of a column header: sort by it, or flip the direction."""
        if column == self.sort:
            return self.params(sort=column, dir="desc" if self.direction == "asc" else "asc")
        return self.params(sort=column, dir="asc" if column in ("name", "state") else "desc")

    @property
    def filtered(self) -> bool:
        return bool(self.state or self.period or self.enforcement or self.q)


def _sort_key(sort: str):
    return {
        "name": lambda s: (s.budget.name.lower(), s.budget.id),
        "percent": lambda s: (s.percent, s.budget.id),
        "spend": lambda s: (s.spend, s.budget.id),
        "limit": lambda s: (s.limit, s.budget.id),
        "state": lambda s: (STATE_ORDER[s.state], -s.percent, s.budget.id),
    }[sort]


def list_rows(org, query: ListQuery) -> tuple[list, int]:
    """(the statuses the filter keeps, in order; how many budgets there are)."""
    all_statuses = budgets.org_statuses(org)
    rows = []
    needle = query.q.lower()
    for st in all_statuses:
        if query.state and st.state != query.state:
            continue
        if query.period and st.budget.period != query.period:
            continue
        if query.enforcement and st.budget.enforcement != query.enforcement:
            continue
        if needle and needle not in st.budget.name.lower() and needle not in budgets.scope_text(st.budget).lower():
            continue
        rows.append(st)
    rows.sort(key=_sort_key(query.sort), reverse=query.direction == "desc")
    return rows, len(all_statuses)


def bar(st) -> dict:
    """Positions (0–100, in SVG user units) of a budget's progress bar: the
    bar's right edge is 100% of the limit, or more when spend, the forecast
    or a threshold goes beyond (up to 200%)."""
    forecast = st.forecast_percent
    thresholds = st.budget.threshold_list
    domain = min(max([100.0, st.percent, forecast or 0.0] + [float(t) for t in thresholds]), 200.0)

    def x(percent: float) -> float:
        return round(min(max(percent, 0.0), domain) * 100 / domain, 2)

    return {"spent": x(st.percent), "limit": x(100), "over_limit": domain > 100,
            "thresholds": [(t, x(t)) for t in thresholds if t <= domain],
            "forecast": x(forecast) if forecast is not None else None, "domain": domain}


@bp.get("/")
@require_permission("budgets:read")
def index():
    query = ListQuery.parse(request.args)
    rows, count = list_rows(g.org, query)
    response = render(INDEX, LIST, query=query, rows=rows, count=count, sorts=SORTS, bar=bar,
                      scope_text=budgets.scope_text, states=budgets.STATES, periods=budget_periods.PERIODS,
                      enforcement=budgets.ENFORCEMENT)
    if htmx and not htmx.boosted:
        response.headers["HX-Push-Url"] = url_for("budgets.index", **query.params())
    return response


# --- create, edit, delete ------------------------------------------------------------

def _choices() -> dict:
    choices = usage_queries.filter_choices(g.org)
    keys = ApiKey.in_org(g.org).select(ApiKey.id, ApiKey.name, ApiKey.env, ApiKey.prefix, ApiKey.revoked_at)
    return {
        "owners": budgets.member_owner_choices(g.org),
        "departments": sorted(usage_queries.department_paths(g.org).items(), key=lambda c: c[1].lower()),
        "keys": sorted(((k.id, f"{k.name}{' (revoked)' if k.revoked_at else ''}") for k in keys),
                       key=lambda c: c[1].lower()),
        "users": choices["user"], "providers": [v for v, _ in choices["provider"]],
        "models": [v for v, _ in choices["model"]], "tags": [v for v, _ in choices["tag"]],
        "periods": budget_periods.PERIODS, "enforcement": budgets.ENFORCEMENT, "roles": permissions.ROLES,
        "role_labels": ROLE_LABELS,
    }


def _values_of(budget: Budget | None) -> dict:
    """The form's fields for a new budget (defaults) or an existing one."""
    if budget is None:
        return {"name": "", "amount_usd": "", "period": "monthly", "custom_start": "", "custom_end": "",
                "thresholds": "50, 80, 100", "enforcement": "soft", "notify_resolved": False,
                "notify_roles": ["owner", "admin"], "owner_id": "", "department_id": "", "user": "",
                "api_key_id": "", "provider": "", "model": "", "tag": ""}
    amount = (Decimal(budget.amount_nanos) / NANOS_PER_USD).normalize()
    return {
        "name": budget.name, "amount_usd": format(amount, "f"), "period": budget.period,
        "custom_start": budget.custom_start.isoformat() if budget.custom_start else "",
        "custom_end": budget.custom_end.isoformat() if budget.custom_end else "",
        "thresholds": ", ".join(str(t) for t in budget.threshold_list), "enforcement": budget.enforcement,
        "notify_resolved": budget.notify_resolved, "notify_roles": budget.role_list,
        "owner_id": str(budget.owner_id or ""), "department_id": str(budget.scope_department_id or ""),
        "user": budget.scope_user or "", "api_key_id": str(budget.scope_api_key_id or ""),
        "provider": budget.scope_provider or "", "model": budget.scope_model or "", "tag": budget.scope_tag or "",
    }


FORM_FIELDS = ("name", "amount_usd", "period", "custom_start", "custom_end", "thresholds", "enforcement",
               "owner_id", "department_id", "user", "api_key_id", "provider", "model", "tag")


def _submitted() -> dict:
    """The posted form as the service's mapping (a list of roles, even empty)."""
    data = {name: request.form.get(name, "") for name in FORM_FIELDS}
    data["notify_resolved"] = request.form.get("notify_resolved", "")
    data["notify_roles"] = request.form.getlist("notify_roles")
    return data


def _form_values(data: dict) -> dict:
    values = dict(data)
    values["notify_resolved"] = str(data.get("notify_resolved") or "").lower() in ("1", "true", "on", "yes")
    return values


def _form(budget: Budget | None, values: dict, errors: dict | None = None, status: int = 200):
    return render(FORM_PAGE, FORM, status=status, budget=budget, values=values, errors=errors or {},
                  **_choices())


@bp.get("/new")
@require_permission("budgets:write")
def new():
    return _form(None, _values_of(None))


@bp.post("/")
@require_permission("budgets:write")
def create():
    data = _submitted()
    try:
        budget = budgets.create(g.org, current_actor(), data)
    except ValidationError as exc:
        return _form(None, _form_values(data), exc.errors, status=422)
    flash(f"Budget “{budget.name}” created.", "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))


@bp.get("/<int:budget_id>/edit")
@require_permission("budgets:write")
def edit(budget_id: int):
    budget = _budget_or_404(budget_id)
    return _form(budget, _values_of(budget))


@bp.post("/<int:budget_id>")
@require_permission("budgets:write")
def update(budget_id: int):
    budget = _budget_or_404(budget_id)
    data = _submitted()
    try:
        budgets.update(budget, current_actor(), data)
    except ValidationError as exc:
        return _form(_budget_or_404(budget_id), _form_values(data), exc.errors, status=422)
    flash(f"Budget “{budget.name}” saved.", "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))


@bp.post("/<int:budget_id>/delete")
@require_permission("budgets:write")
def delete(budget_id: int):
    budget = _budget_or_404(budget_id)
    name = budget.name
    budgets.delete(budget, current_actor())
    flash(f"Budget “{name}” deleted.", "success")
    return redirect_to(url_for("budgets.index"))


# --- the detail page ------------------------------------------------------------------

def chart_data(budget: Budget, st, projection, today: date) -> dict:
    """Cumulative daily spend of the period so far, the limit as a line, and
    the forecast (expected with its low/high band) from today to the end:
    dollar strings for Chart.js, and the same numbers as rows for the table."""
    period = st.period
    last_actual = min(today, period.last_day)
    actual = budgets.daily_spend(budget, period.first_day, last_actual) if last_actual >= period.first_day else []
    cumulative, running = {}, 0
    for day, spend in actual:
        running += spend
        cumulative[day] = running
    path = {day: (expected, low, high) for day, expected, low, high in (projection.path if projection else [])}
    rows = []
    for day in period.days:
        forecast = path.get(day)
        rows.append((day, cumulative.get(day), st.limit, forecast))
    return {
        "kind": "budget",
        "labels": [day.isoformat() for day in period.days],
        "spent": [_dollars(c) for _, c, _, _ in rows],
        "limit": [_dollars(st.limit) for _ in rows],
        "expected": [_dollars(f[0]) if f else None for _, _, _, f in rows],
        "low": [_dollars(f[1]) if f else None for _, _, _, f in rows],
        "high": [_dollars(f[2]) if f else None for _, _, _, f in rows],
        "rows": rows,
    }


def _previous(budget: Budget, count: int = 6) -> list:
    result = []
    periods = budgets.past_periods(budget, count)
    for period in periods[1:]:
        spend, requests = budgets.period_spend_between(budget, period)
        increase = (BudgetIncrease.select(fn.COALESCE(fn.SUM(BudgetIncrease.amount_nanos), 0))
                    .where(BudgetIncrease.budget == budget, BudgetIncrease.period_start == period.start).scalar())
        limit = budget.amount_nanos + int(increase or 0)
        result.append({"period": period, "spend": spend, "requests": requests, "limit": limit,
                       "percent": 100.0 * spend / limit if limit else 0.0})
    return result


def _show_context(budget: Budget, raise_values: dict | None = None, raise_errors: dict | None = None) -> dict:
    now = utcnow()
    st = budgets.status(budget, now)
    projection = None
    today = usage_queries.today(g.org)
    if st.period.first_day <= today <= st.period.last_day or today < st.period.first_day:
        projection = budgets.forecast_for(budget, st, now)
    period = st.period
    return {
        "budget": budget, "st": st, "projection": projection,
        "exceeds_on": (projection.crossing(st.limit) if projection and st.spend < st.limit < projection.total
                       else None),
        "scope_parts": budgets.scope_parts(budget), "scope_text": budgets.scope_text(budget),
        "chart": chart_data(budget, st, projection, today), "bar": bar(st),
        "alerts": budgets.alert_history(budget),
        "top_users": budgets.top_contributors(budget, period, "user"),
        "top_models": budgets.top_contributors(budget, period, "model"),
        "top_keys": budgets.top_contributors(budget, period, "key"),
        "previous": _previous(budget),
        "increases": list(BudgetIncrease.select().where(BudgetIncrease.budget == budget,
                                                        BudgetIncrease.period_start == period.start)
                          .order_by(BudgetIncrease.created_at)),
        "raise_values": raise_values or {"increase_usd": "", "reason": ""}, "raise_errors": raise_errors or {},
        "states": budgets.STATES, "periods": budget_periods.PERIODS, "enforcement": budgets.ENFORCEMENT,
        "owner": budget.owner if budget.owner_id else None,
    }


@bp.get("/<int:budget_id>")
@require_permission("budgets:read")
def show(budget_id: int):
    budget = _budget_or_404(budget_id)
    return render(SHOW, SHOW, **_show_context(budget))


@bp.post("/<int:budget_id>/raise")
@require_permission("budgets:write")
def raise_limit(budget_id: int):
    budget = _budget_or_404(budget_id)
    values = {"increase_usd": request.form.get("increase_usd", ""), "reason": request.form.get("reason", "")}
    try:
        increase = budgets.raise_temporarily(budget, current_actor(), values["increase_usd"], values["reason"])
    except ValidationError as exc:
        return render(SHOW, RAISE, status=422, **_show_context(budget, values, exc.errors))
    except RuleViolation as exc:
        return render(SHOW, RAISE, status=422, **_show_context(budget, values, {"increase_usd": exc.message}))
    flash(f"“{budget.name}” raised by ${_dollars(increase.amount_nanos)} for the rest of this period.", "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))


@bp.post("/<int:budget_id>/test-alert")
@require_permission("budgets:write")
def test_alert(budget_id: int):
    budget = _budget_or_404(budget_id)
    sent = budgets.send_test_alert(budget, current_actor())
    count = len(sent.notifications) if sent is not None and getattr(sent, "notifications", None) else 0
    message = (f"Test alert sent to {count} recipient{'s' if count != 1 else ''}." if sent is not None
               else "Test alert sent.")
    if htmx:
        return toast(Response("", 200), message)
    flash(message, "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))


# --- which budgets apply? -----------------------------------------------------------

def _explain_query(args) -> tuple[dict, dict, dict]:
    """(the form's values, the service's arguments, errors)."""
    values = {name: (args.get(name) or "").strip() for name in ("user", "api_key_id", "department_id",
                                                                 "provider", "model", "tag")}
    kwargs: dict = {"user": values["user"] or None, "provider": values["provider"] or None,
                    "model": values["model"] or None, "tags": [values["tag"]] if values["tag"] else []}
    errors = {}
    for field, model, name in (("api_key_id", ApiKey, "api_key"), ("department_id", Department, "department")):
        kwargs[name] = None
        if values[field]:
            found = model.get_in_org(g.org, int(values[field])) if values[field].isascii() and values[field].isdigit() else None
            if found is None:
                errors[field] = "Choose one from the list."
            else:
                kwargs[name] = found.id
    return values, kwargs, errors


def explain_verdict(results: list) -> tuple[object | None, str]:
    """The budget that would block a call first (None when none would) and
    the sentence that says so."""
    if not results:
        return None, "No budget covers such a call: nothing would block it or alert about it."
    first = results[0]
    if first.blocked:
        return first, (f"A call now would be blocked by “{first.budget.name}”: it is a hard budget and has spent "
                       f"${_dollars(first.spend)} of its ${_dollars(first.limit)} limit.")
    tightest = min(results, key=lambda s: (s.remaining, s.budget.id))
    if first.budget.enforcement == "hard":
        return first, (f"No hard budget would block a call now; “{first.budget.name}” would block first, with "
                       f"${_dollars(first.remaining)} left this period.")
    return None, (f"No hard budget would block a call now; “{tightest.budget.name}” has the least room left "
                  f"(${_dollars(tightest.remaining)}).")


@bp.get("/explain")
@require_permission("budgets:read")
def explain():
    values, kwargs, errors = _explain_query(request.args)
    asked = any(values.values())
    results, first, verdict = [], None, ""
    if asked and not errors:
        results = budgets.budget_status_for(g.org, **kwargs)
        first, verdict = explain_verdict(results)
    response = render(EXPLAIN, EXPLAIN_RESULTS, status=422 if errors else 200, values=values, errors=errors,
                      asked=asked, results=results, first=first, verdict=verdict, scope_text=budgets.scope_text,
                      bar=bar, states=budgets.STATES, **_choices())
    if htmx and not htmx.boosted:
        response.headers["HX-Push-Url"] = url_for("budgets.explain", **{k: v for k, v in values.items() if v})
    return response


# --- department allocation ----------------------------------------------------------

@dataclass
class AllocationRow:
    department: Department
    depth: int
    path: str
    spend: int
    budget: Budget | None
    limit: int | None
    forecast: int | None
    forecast_method: str  # "budget forecast", "run rate" or ""
    spend_share: float | None
    budget_share: float | None


def _run_rate(spend: int, period, now: datetime) -> int | None:
    elapsed = (min(now, period.end) - period.start).total_seconds()
    total = (period.end - period.start).total_seconds()
    if elapsed <= 0:
        return None
    return int(spend * total / elapsed)


def allocation(org, kind: str, chosen_id: int | None = None, now: datetime | None = None) -> dict:
    from costguardian.services import departments as department_service

    now = now or utcnow()
    tz_name = org.time_zone
    period = budget_periods.period_at(kind, tz_name, now)
    org_budgets = list(Budget.in_org(org).where(
        Budget.period == kind, Budget.scope_department.is_null(), Budget.scope_user.is_null(),
        Budget.scope_api_key.is_null(), Budget.scope_provider.is_null(), Budget.scope_model.is_null(),
        Budget.scope_tag.is_null()).order_by(Budget.name, Budget.id))
    org_budget = next((b for b in org_budgets if b.id == chosen_id), org_budgets[0] if org_budgets else None)
    org_status = budgets.status(org_budget, now) if org_budget else None
    own = dict(UsageRollup.select(UsageRollup.department_id, fn.SUM(UsageRollup.cost_nanos))
               .where(UsageRollup.organization == org.id, UsageRollup.hour >= period.start,
                      UsageRollup.hour < period.end).group_by(UsageRollup.department_id).tuples())
    own = {k: int(v or 0) for k, v in own.items()}
    total = sum(own.values())
    parents = dict(Department.select(Department.id, Department.parent).where(Department.organization == org.id)
                   .tuples())
    dept_budgets = {}
    for b in (Budget.in_org(org).where(Budget.period == kind, Budget.scope_department.is_null(False))
              .order_by(Budget.id)):
        if not (b.scope_user or b.scope_api_key_id or b.scope_provider or b.scope_model or b.scope_tag):
            dept_budgets.setdefault(b.scope_department_id, b)  # the department's own budget: no other scope
    dept_statuses = {s.budget.scope_department_id: s for s in budgets.statuses(list(dept_budgets.values()), now)}
    org_limit = org_status.limit if org_status else None
    rows = []
    for node in department_service.tree(org):
        d = node.department
        spend = sum(own.get(i, 0) for i in budget_accounting.descendant_ids(org.id, d.id, parents))
        st = dept_statuses.get(d.id)
        if st is not None and st.forecast is not None:
            forecast, method = st.forecast, "budget forecast"
        else:
            forecast, method = _run_rate(spend, period, now), "run rate"
        rows.append(AllocationRow(
            department=d, depth=node.depth, path=node.path, spend=spend, budget=st.budget if st else None,
            limit=st.limit if st else None, forecast=forecast, forecast_method=method if forecast is not None else "",
            spend_share=100.0 * spend / total if total else None,
            budget_share=100.0 * st.limit / org_limit if st and org_limit else None))
    top_level_limits = sum(r.limit or 0 for r in rows if r.depth == 0)
    # Usage in no department (or in one since deleted): the total minus the top-level departments'.
    unassigned_spend = total - sum(r.spend for r in rows if r.depth == 0)
    return {
        "kind": kind, "period": period, "org_budgets": org_budgets, "org_budget": org_budget,
        "org_status": org_status, "rows": rows, "total": total,
        "org_forecast": (org_status.forecast if org_status and org_status.forecast is not None
                         else _run_rate(total, period, now)),
        "org_forecast_method": ("budget forecast" if org_status and org_status.forecast is not None else "run rate"),
        "allocated": top_level_limits,
        "unallocated": (org_limit - top_level_limits) if org_limit is not None else None,
        "unassigned_spend": unassigned_spend,
        "unassigned_share": 100.0 * unassigned_spend / total if total else None,
        "unassigned_forecast": _run_rate(unassigned_spend, period, now),
    }


@bp.get("/allocation")
@require_permission("budgets:read")
def allocation_view():
    kind = request.args.get("period", "monthly")
    if kind not in CALENDAR_PERIODS:
        kind = "monthly"
    chosen = request.args.get("budget", "")
    context = allocation(g.org, kind, int(chosen) if chosen.isascii() and chosen.isdigit() else None)
    response = render(ALLOCATION, ALLOCATION_TABLE, periods=CALENDAR_PERIODS, **context)
    if htmx and not htmx.boosted:
        params = {"period": kind}
        if context["org_budget"] is not None and chosen.isascii() and chosen.isdigit():
            params["budget"] = context["org_budget"].id
        response.headers["HX-Push-Url"] = url_for("budgets.allocation_view", **params)
    return response


# --- the report ---------------------------------------------------------------------------

@dataclass
class ReportRow:
    budget: Budget
    scope: str
    period: budget_periods.Period
    spend: int
    requests: int
    limit: int
    percent: float
    state: str
    alerts: list


def _report_period(org, kind: str, offset: int, now: datetime) -> budget_periods.Period | None:
    if kind == "custom":
        return None
    period = budget_periods.period_at(kind, org.time_zone, now)
    for _ in range(offset):
        period = budget_periods.period_at(kind, org.time_zone, period.start - timedelta(seconds=1))
    return period


def _alert_label(alert: BudgetAlert) -> str:
    if alert.kind == "threshold":
        return f"{alert.threshold}%"
    if alert.kind == "forecast":
        return "forecast to exceed"
    if alert.kind == "resolved":
        return "back under" + (f" {alert.threshold}%" if alert.threshold else "")
    return alert.kind


def report(org, kind: str, offset: int, now: datetime | None = None) -> dict:
    """Every budget of a period kind for one period (offset periods back): the
    spend (from rollups for past periods, the counter for the current one),
    limit including raises, percent, state and the alerts raised."""
    now = now or utcnow()
    period = _report_period(org, kind, offset, now)
    chosen = list(Budget.in_org(org).where(Budget.period == kind).order_by(Budget.name, Budget.id))
    current = {s.budget.id: s for s in budgets.statuses(chosen, now)} if offset == 0 or kind == "custom" else {}
    rows = []
    for budget in chosen:
        st = current.get(budget.id)
        budget_period = st.period if st is not None else period
        if st is not None:
            spend, requests, limit, state = st.spend, st.requests, st.limit, st.state
        else:
            spend, requests = budgets.period_spend_between(budget, budget_period)
            increase = (BudgetIncrease.select(fn.COALESCE(fn.SUM(BudgetIncrease.amount_nanos), 0))
                        .where(BudgetIncrease.budget == budget, BudgetIncrease.period_start == budget_period.start)
                        .scalar())
            limit = budget.amount_nanos + int(increase or 0)
            crossed = [t for t in budget.threshold_list if limit > 0 and spend * 100 >= t * limit]
            state = "exceeded" if spend >= limit else ("warning" if any(t < 100 for t in crossed) else "ok")
        alerts = list(BudgetAlert.select().where(BudgetAlert.budget == budget,
                                                 BudgetAlert.period_day == budget_period.first_day)
                      .order_by(BudgetAlert.created_at, BudgetAlert.id))
        rows.append(ReportRow(budget, budgets.scope_text(budget), budget_period, spend, requests, limit,
                              100.0 * spend / limit if limit else 0.0, state, alerts))
    return {"kind": kind, "offset": offset, "period": period, "rows": rows,
            "total_spend": sum(r.spend for r in rows), "ended": period is not None and period.end <= now}


def _report_args() -> tuple[str, int]:
    kind = request.args.get("period", "monthly")
    if kind not in budget_periods.PERIODS:
        kind = "monthly"
    offset = request.args.get("offset", "0")
    offset = min(int(offset), MAX_OFFSET) if offset.isascii() and offset.isdigit() else 0
    return kind, offset


@bp.get("/report")
@require_permission("budgets:read")
def report_view():
    kind, offset = _report_args()
    context = report(g.org, kind, offset)
    response = render(REPORT, REPORT_TABLE, periods=budget_periods.PERIODS, states=budgets.STATES,
                      alert_label=_alert_label, enforcement=budgets.ENFORCEMENT, **context)
    if htmx and not htmx.boosted:
        response.headers["HX-Push-Url"] = url_for("budgets.report_view", period=kind, offset=offset)
    return response


REPORT_COLUMNS = ["budget", "scope", "period_start", "period_end", "enforcement", "limit_usd", "spend_usd",
                  "percent", "state", "requests", "alerts"]


@bp.get("/report.csv")
@require_permission("budgets:read")
def report_csv():
    kind, offset = _report_args()
    context = report(g.org, kind, offset)
    buffer = io.StringIO()
    writer = exports._SafeWriter(buffer)
    writer.writerow(REPORT_COLUMNS)
    for row in context["rows"]:
        writer.writerow([row.budget.name, row.scope, row.period.first_day.isoformat(), row.period.last_day.isoformat(),
                         row.budget.enforcement, budgets.usd(row.limit), budgets.usd(row.spend),
                         f"{row.percent:.1f}", budgets.STATES[row.state], row.requests,
                         "; ".join(f"{_alert_label(a)} ({a.created_at.strftime('%Y-%m-%d %H:%M')} UTC)"
                                   for a in row.alerts)])
    label = context["period"].first_day.isoformat() if context["period"] else "custom"
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{g.org.slug}-budgets-{kind}-{label}.csv"'
    return response

