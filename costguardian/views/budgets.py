"""Budget screens: the list (sortable, filterable), the create/edit/delete
forms and "which budgets apply?". The detail page is in budget_detail, the
department allocation and the per-period report in budget_reports; all
three register on this blueprint. Every rule lives in services.budgets: the
views only read the request, call it and render."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from flask import Blueprint, abort, flash, g, request, url_for

from costguardian import permissions
from costguardian.authz import current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.money import NANOS_PER_USD, format_usd, usd_decimal
from costguardian.rendering import redirect_to, render
from costguardian.services import keys
from costguardian.services.budgets import periods as budget_periods, budgets, scope_check
from costguardian.services.team import departments, members
from costguardian.services.usage import catalog, queries as usage_queries
from costguardian.services.errors import ValidationError

bp = Blueprint("budgets", __name__, url_prefix="/budgets")

INDEX, LIST = "budgets/index.html", "partials/budgets/_list.html"
FORM_PAGE, FORM = "budgets/form.html", "partials/budgets/_form.html"
EXPLAIN, EXPLAIN_RESULTS = "budgets/explain.html", "partials/budgets/_explain_results.html"

SORTS = {"name": "Name", "percent": "Percent used", "spend": "Spend", "limit": "Limit", "state": "Status"}
STATE_ORDER = {"exceeded": 0, "forecast": 1, "warning": 2, "ok": 3}
ROLE_LABELS = {"owner": "Owners", "admin": "Admins", "billing": "Billing", "member": "Members", "viewer": "Viewers"}


def budget_or_404(budget_id: int):
    budget = budgets.get(g.org, budget_id)
    if budget is None:
        abort(404)
    return budget


def dollars(nanos: int | None) -> str | None:
    """The exact amount for chart data ("0.0075"); the chart formats it by the money rule."""
    return usd_decimal(nanos)


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
    forecast = float(st.forecast_percent) if st.forecast_percent is not None else None
    percent = float(st.percent)
    thresholds = st.budget.threshold_list
    domain = min(max([100.0, percent, forecast or 0.0] + [float(t) for t in thresholds]), 200.0)

    def x(percent: float) -> float:
        return round(min(max(percent, 0.0), domain) * 100 / domain, 2)

    return {"spent": x(percent), "limit": x(100), "over_limit": domain > 100,
            "thresholds": [(t, x(t)) for t in thresholds if t <= domain],
            "forecast": x(forecast) if forecast is not None else None, "domain": domain}


@bp.get("/")
@require_permission("budgets:read")
def index():
    query = ListQuery.parse(request.args)
    rows, count = list_rows(g.org, query)
    response = render(INDEX, LIST, query=query, rows=rows, count=count, sorts=SORTS, bar=bar,
                      quiet=scope_check.quiet_budgets([st.budget for st in rows]),
                      scope_text=budgets.scope_text, states=budgets.STATES, periods=budget_periods.PERIODS,
                      enforcement=budgets.ENFORCEMENT)
    if htmx and not htmx.boosted:
        response.headers["HX-Push-Url"] = url_for("budgets.index", **query.params())
    return response



# --- create, edit, delete ------------------------------------------------------------

def _choices(values: dict | None = None) -> dict:
    # owner and user are pickers fed by members.pick and usage.users: no list of every member
    choices = usage_queries.filter_choices(g.org, with_users=False)
    provider = catalog.normalize_provider((values or {}).get("provider") or "") or None
    return {
        "departments": sorted(usage_queries.department_paths(g.org).items(), key=lambda c: c[1].lower()),
        "keys": keys.key_choices(g.org),
        "providers": scope_check.provider_choices(g.org),
        "models": scope_check.model_choices(g.org, provider), "tags": [v for v, _ in choices["tag"]],
        "periods": budget_periods.PERIODS, "enforcement": budgets.ENFORCEMENT, "roles": permissions.ROLES,
        "role_labels": ROLE_LABELS,
    }


def _values_of(budget) -> dict:
    """The form's fields for a new budget (defaults) or an existing one."""
    if budget is None:
        return {"name": "", "amount_usd": "", "period": "monthly", "custom_start": "", "custom_end": "",
                "thresholds": "50, 80, 100", "enforcement": "soft", "notify_resolved": False,
                "notify_roles": ["owner", "admin"], "owner_id": "", "owner": "", "department_id": "", "user": "",
                "api_key_id": "", "provider": "", "model": "", "tag": ""}
    amount = (Decimal(budget.amount_nanos) / NANOS_PER_USD).normalize()
    return {
        "name": budget.name, "amount_usd": format(amount, "f"), "period": budget.period,
        "custom_start": budget.custom_start.isoformat() if budget.custom_start else "",
        "custom_end": budget.custom_end.isoformat() if budget.custom_end else "",
        "thresholds": ", ".join(str(t) for t in budget.threshold_list), "enforcement": budget.enforcement,
        "notify_resolved": budget.notify_resolved, "notify_roles": budget.role_list,
        "owner_id": str(budget.owner_id or ""), "owner": budget.owner.email if budget.owner_id else "",
        "department_id": str(budget.scope_department_id or ""),
        "user": budget.scope_user or "", "api_key_id": str(budget.scope_api_key_id or ""),
        "provider": budget.scope_provider or "", "model": budget.scope_model or "", "tag": budget.scope_tag or "",
    }


FORM_FIELDS = ("name", "amount_usd", "period", "custom_start", "custom_end", "thresholds", "enforcement",
               "owner_id", "department_id", "user", "api_key_id", "provider", "model", "tag", "confirm_scope")


def _submitted() -> dict:
    """The posted form as the service's mapping (a list of roles, even empty)."""
    data = {name: request.form.get(name, "") for name in FORM_FIELDS}
    data["notify_resolved"] = request.form.get("notify_resolved", "")
    data["notify_roles"] = request.form.getlist("notify_roles")
    if "owner" in request.form:  # the owner picker: its email wins over a stale hidden id; none matching is 422
        owner, asked = members.picked(g.org, request.form["owner"], data["owner_id"])
        data["owner"] = request.form["owner"]
        data["owner_id"] = str(owner.user_id) if owner is not None else ("0" if asked else "")
    return data


def _form_values(data: dict) -> dict:
    values = dict(data)
    values["notify_resolved"] = str(data.get("notify_resolved") or "").lower() in ("1", "true", "on", "yes")
    return values


def _form(budget, values: dict, errors: dict | None = None, status: int = 200):
    return render(FORM_PAGE, FORM, status=status, budget=budget, values=values, errors=errors or {},
                  **_choices(values))


def check_scope(data: dict, budget=None) -> None:
    """Refuse a provider or model that matches nothing known (with a
    suggestion) unless the form's "Use it anyway" box is ticked."""
    if scope_check.confirmed(data):
        return
    errors = scope_check.unknown_scope(g.org, budgets.parse(g.org, data), budget)
    if errors:
        raise ValidationError(errors)


@bp.get("/new")
@require_permission("budgets:write")
def new():
    return _form(None, _values_of(None))


@bp.post("/")
@require_permission("budgets:write")
def create():
    data = _submitted()
    try:
        check_scope(data)
        budget = budgets.create(g.org, current_actor(), data)
    except ValidationError as exc:
        return _form(None, _form_values(data), exc.errors, status=422)
    flash(f"Budget “{budget.name}” created.", "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))


@bp.get("/<int:budget_id>/edit")
@require_permission("budgets:write")
def edit(budget_id: int):
    budget = budget_or_404(budget_id)
    return _form(budget, _values_of(budget))


@bp.post("/<int:budget_id>")
@require_permission("budgets:write")
def update(budget_id: int):
    budget = budget_or_404(budget_id)
    data = _submitted()
    try:
        check_scope(data, budget)
        budgets.update(budget, current_actor(), data)
    except ValidationError as exc:
        return _form(budget_or_404(budget_id), _form_values(data), exc.errors, status=422)
    flash(f"Budget “{budget.name}” saved.", "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))


@bp.post("/<int:budget_id>/delete")
@require_permission("budgets:write")
def delete(budget_id: int):
    budget = budget_or_404(budget_id)
    name = budget.name
    budgets.delete(budget, current_actor())
    flash(f"Budget “{name}” deleted.", "success")
    return redirect_to(url_for("budgets.index"))



# --- which budgets apply? -----------------------------------------------------------

def _explain_query(args) -> tuple[dict, dict, dict]:
    """(the form's values, the service's arguments, errors)."""
    values = {name: (args.get(name) or "").strip() for name in ("user", "api_key_id", "department_id",
                                                                 "provider", "model", "tag")}
    kwargs: dict = {"user": values["user"] or None, "provider": values["provider"] or None,
                    "model": values["model"] or None, "tags": [values["tag"]] if values["tag"] else []}
    errors = {}
    for field, lookup, name in (("api_key_id", keys.get, "api_key"),
                                ("department_id", departments.get, "department")):
        kwargs[name] = None
        if values[field]:
            found = lookup(g.org, int(values[field])) if values[field].isascii() and values[field].isdigit() else None
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
                       f"{format_usd(first.spend)} of its {format_usd(first.limit)} limit.")
    tightest = min(results, key=lambda s: (s.remaining, s.budget.id))
    if first.budget.enforcement == "hard":
        return first, (f"No hard budget would block a call now; “{first.budget.name}” would block first, with "
                       f"{format_usd(first.remaining)} left this period.")
    return None, (f"No hard budget would block a call now; “{tightest.budget.name}” has the least room left "
                  f"({format_usd(tightest.remaining)}).")


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


# The detail page and the reports are pages of this area, on this blueprint.
from costguardian.views import budget_detail, budget_reports  # noqa: E402,F401
