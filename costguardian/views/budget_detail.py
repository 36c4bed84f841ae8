"""A budget's detail page: status, the daily chart with the forecast, alerts,
top contributors, previous periods and this period's raises; raising the
limit for the rest of the period and sending a test alert. Routes on the
budgets blueprint (views.budgets)."""
from __future__ import annotations

import dataclasses
from datetime import date

from flask import Response, flash, g, request, url_for

from costguardian import clock
from costguardian.authz import current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.money import format_usd
from costguardian.rendering import redirect_to, render, toast
from costguardian.services.budgets import periods as budget_periods, budgets, reports, scope_check
from costguardian.services.usage import queries as usage_queries
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.views.budgets import bar, bp, budget_or_404, dollars

SHOW, RAISE = "budgets/show.html", "partials/budgets/_raise.html"


def chart_data(budget, st, projection, today: date) -> dict:
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
        "spent": [dollars(c) for _, c, _, _ in rows],
        "limit": [dollars(st.limit) for _ in rows],
        "expected": [dollars(f[0]) if f else None for _, _, _, f in rows],
        "low": [dollars(f[1]) if f else None for _, _, _, f in rows],
        "high": [dollars(f[2]) if f else None for _, _, _, f in rows],
        "rows": rows,
    }


def _as_stored(projection, st):
    """The page shows the forecast the list, the header and the alerts show:
    the one stored on the counter (refreshed by the periodic check), not a
    second projection a few minutes later that rounds a cent apart. The
    fresh projection only draws the chart's path, ending on the stored figures."""
    if projection is None or st.forecast is None:
        return projection
    path = list(projection.path)
    if path:
        path[-1] = (path[-1][0], st.forecast, st.forecast_low, st.forecast_high)
    return dataclasses.replace(projection, total=st.forecast, low=st.forecast_low, high=st.forecast_high, path=path)


def _show_context(budget, raise_values: dict | None = None, raise_errors: dict | None = None) -> dict:
    now = clock.now()
    st = budgets.status(budget, now)
    projection = None
    today = usage_queries.today(g.org)
    if st.period.first_day <= today <= st.period.last_day or today < st.period.first_day:
        projection = _as_stored(budgets.forecast_for(budget, st, now), st)
    period = st.period
    if projection is not None and st.forecast is not None:
        exceeds_on = st.forecast_exceeds_on if st.spend < st.limit else None
    else:
        exceeds_on = projection.crossing(st.limit) if projection and st.spend < st.limit < projection.total else None
    return {
        "budget": budget, "st": st, "projection": projection, "exceeds_on": exceeds_on,
        "scope_quiet": budget.id in scope_check.quiet_budgets([budget], now),
        "scope_parts": budgets.scope_parts(budget), "scope_text": budgets.scope_text(budget),
        "chart": chart_data(budget, st, projection, today), "bar": bar(st),
        "alerts": budgets.alert_history(budget),
        "top_users": budgets.top_contributors(budget, period, "user"),
        "top_models": budgets.top_contributors(budget, period, "model"),
        "top_keys": budgets.top_contributors(budget, period, "key"),
        "previous": reports.previous_periods(budget),
        "increases": reports.increases_for(budget, period),
        "raise_values": raise_values or {"increase_usd": "", "reason": ""}, "raise_errors": raise_errors or {},
        "states": budgets.STATES, "periods": budget_periods.PERIODS, "enforcement": budgets.ENFORCEMENT,
        "owner": budget.owner if budget.owner_id else None,
    }


@bp.get("/<int:budget_id>")
@require_permission("budgets:read")
def show(budget_id: int):
    budget = budget_or_404(budget_id)
    return render(SHOW, SHOW, **_show_context(budget))


@bp.post("/<int:budget_id>/raise")
@require_permission("budgets:write")
def raise_limit(budget_id: int):
    budget = budget_or_404(budget_id)
    values = {"increase_usd": request.form.get("increase_usd", ""), "reason": request.form.get("reason", "")}
    try:
        increase = budgets.raise_temporarily(budget, current_actor(), values["increase_usd"], values["reason"])
    except ValidationError as exc:
        return render(SHOW, RAISE, status=422, **_show_context(budget, values, exc.errors))
    except RuleViolation as exc:
        return render(SHOW, RAISE, status=422, **_show_context(budget, values, {"increase_usd": exc.message}))
    flash(f"“{budget.name}” raised by {format_usd(increase.amount_nanos)} for the rest of this period.", "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))


@bp.post("/<int:budget_id>/test-alert")
@require_permission("budgets:write")
def test_alert(budget_id: int):
    budget = budget_or_404(budget_id)
    sent = budgets.send_test_alert(budget, current_actor())
    count = len(sent.notifications) if sent is not None and getattr(sent, "notifications", None) else 0
    message = (f"Test alert sent to {count} recipient{'s' if count != 1 else ''}." if sent is not None
               else "Test alert sent.")
    if htmx:
        return toast(Response("", 200), message)
    flash(message, "success")
    return redirect_to(url_for("budgets.show", budget_id=budget.id))

