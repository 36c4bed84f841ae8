"""The budgets JSON API: read budgets and their status (scope `read`), change
them (scope `admin`), under the same services and rules as the budget screens
(services.budgets). Like the rest of the API, a key acts with the role its
creator holds now: changes need `budgets:write` (owner, admin, billing)."""
from __future__ import annotations

import functools
import re
from datetime import date

from flask import g, jsonify, request, url_for

from costguardian import clock
from costguardian import permissions
from costguardian.models import Budget
from costguardian.openapi import AMOUNT_PATTERN, THRESHOLDS_PATTERN
from costguardian.services.budgets import budgets, periods as budget_periods, scope_check
from costguardian.services.team import orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, ServiceError, ValidationError
from costguardian.services.usage.ingest import BatchError
from costguardian.views.api import FULL_DATE, _json_body, api_key_required, bp, problem, text_error

# field -> (accepted JSON types, what to say when it is something else)
_TEXT = ((str,), "A string.")
_ID = ((int,), "A whole-number id, or null.")
FIELDS = {
    "name": _TEXT,
    "amount_usd": ((str, int, float), "An amount in dollars, as a string (\"250.00\") or a number."),
    "period": ((str,), "One of daily, weekly, monthly, quarterly, yearly, custom."),
    "custom_start": ((str,), "A date like 2026-12-01, or null."),
    "custom_end": ((str,), "A date like 2026-12-31, or null."),
    "thresholds": ((list, str), "A list of whole percents like [50, 80, 100], or \"50,80,100\"."),
    "enforcement": ((str,), "soft or hard."),
    "notify_resolved": ((bool,), "true or false."),
    "notify_roles": ((list,), "A list of roles, like [\"owner\", \"admin\"]."),
    "owner_id": _ID,
    "department_id": _ID,
    "api_key_id": _ID,
    "user": _TEXT,
    "provider": _TEXT,
    "model": _TEXT,
    "tag": _TEXT,
    "confirm_scope": ((bool,), "true or false."),
}


# What the OpenAPI document states beyond JSON types (openapi._BUDGET_FIELDS);
# the service's own rules (ids of this organization, dates in order, amounts in
# range) still apply after these.
NOT_NULL = ("name", "amount_usd", "period", "thresholds", "enforcement", "notify_resolved", "notify_roles",
            "confirm_scope")
TEXT_LIMITS = {"name": 120, "user": 200, "provider": 64, "model": 128, "tag": 100, "reason": 200}
AMOUNT = re.compile(AMOUNT_PATTERN)
THRESHOLDS = re.compile(THRESHOLDS_PATTERN)


def _value_errors(body: dict) -> dict:
    """Values of the right JSON type that the document still refuses."""
    errors = {}
    for name, value in body.items():
        if value is None:
            continue
        if name in TEXT_LIMITS:
            message = text_error(value, TEXT_LIMITS[name], required=name == "name")
            if message:
                errors[name] = message
        elif name == "amount_usd" and isinstance(value, str) and not AMOUNT.fullmatch(value):
            errors[name] = ("Dollars as digits, like \"250.00\": more than 0, at most 1000000000, with at most "
                            "9 decimal places.")
        elif name == "period" and value not in budget_periods.PERIODS:
            errors[name] = FIELDS[name][1]
        elif name == "enforcement" and value not in budgets.ENFORCEMENT:
            errors[name] = FIELDS[name][1]
        elif name in ("custom_start", "custom_end") and not _is_date(value):
            errors[name] = FIELDS[name][1]
        elif name == "thresholds" and isinstance(value, str) and not THRESHOLDS.fullmatch(value):
            errors[name] = (f"1 to {budgets.MAX_THRESHOLDS} whole percents from 1 to 1000, "
                            "separated by commas, like \"50,80,100\".")
        elif name == "thresholds" and isinstance(value, list) and not (
                1 <= len(value) <= budgets.MAX_THRESHOLDS and all(1 <= t <= 1000 for t in value)):
            errors[name] = f"1 to {budgets.MAX_THRESHOLDS} whole percents from 1 to 1000, like [50, 80, 100]."
    return errors


def _is_date(value: str) -> bool:
    try:
        return bool(FULL_DATE.fullmatch(value)) and bool(date.fromisoformat(value))
    except ValueError:
        return False


def _checked(body: dict, allowed: dict) -> dict:
    """Every problem with a budget body (or a raise's): unknown fields and
    wrong types first; then the values the document refuses, together with
    what the service's rules say about the other fields."""
    errors = _type_errors(body, allowed)
    if errors:
        return errors
    errors = _value_errors(body)
    if errors and allowed is FIELDS:
        try:
            budgets.parse(g.org, {k: v for k, v in body.items() if k not in errors})
        except ValidationError as exc:
            errors = {**exc.errors, **errors}
    return errors


def _actor() -> Actor:
    return Actor(user=None, ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", "")[:512],
                 api_key=g.api_key)


def _invalid(errors: dict):
    return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)


def _service_problem(exc: ServiceError):
    if isinstance(exc, ValidationError):
        return _invalid(exc.errors)
    if isinstance(exc, NotPermitted):
        return problem(403, "not-permitted", exc.message)
    return problem(409, "rule-violation", exc.message)


def _body_problem(exc: BatchError):
    status = 415 if exc.problem == "unsupported-media-type" else 422
    return problem(status, exc.problem, exc.detail, **({"errors": exc.errors} if exc.errors else {}))


def _object_body() -> dict:
    body = _json_body()
    if not isinstance(body, dict):
        raise BatchError("invalid-request", "Send a JSON object.", {"": "Expected a JSON object."})
    return body


def _not_found():
    return problem(404, "not-found", "No budget with this id in this organization.")


def _not_permitted(permission: str):
    """None when the key's creator may do this now; else the 403 answer."""
    acting = orgs.acting_member(g.org, _actor())
    if acting is not None and not permissions.role_can(acting[1] or "", permission):
        verb = "change" if permission == "budgets:write" else "see"
        return problem(403, "not-permitted", f"This API key's creator cannot {verb} budgets.")
    return None


def _guarded(permission: str, *, loads_budget: bool = False):
    """The view runs only if the key's creator may do this now (else 403);
    with `loads_budget`, it gets the organization's budget of the URL
    instead of its id (another organization's id: 404)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            refused = _not_permitted(permission)
            if refused:
                return refused
            if loads_budget:
                budget = Budget.get_in_org(g.org, kwargs.pop("budget_id"))
                if budget is None:
                    return _not_found()
                kwargs["budget"] = budget
            return view(*args, **kwargs)

        return wrapped

    return decorate


def _type_errors(body: dict, allowed: dict) -> dict:
    """Unknown fields and wrong JSON types, before the service sees the values."""
    errors = {}
    for name, value in body.items():
        if name not in allowed:
            errors[name] = "Unknown field."
            continue
        types, message = allowed[name]
        if value is None:
            if name in NOT_NULL:
                errors[name] = message
            continue
        if isinstance(value, bool) and bool not in types:
            errors[name] = message
        elif not isinstance(value, types):
            errors[name] = message
        elif name == "thresholds" and isinstance(value, list) and not all(
                isinstance(t, int) and not isinstance(t, bool) for t in value):
            errors[name] = "Each threshold is a whole percent, like 80."
        elif name == "notify_roles" and not all(isinstance(r, str) for r in value):
            errors[name] = "Each role is a string, like \"admin\"."
    return errors


def _date(value) -> str | None:
    return value.isoformat() if isinstance(value, date) else None


def budget_json(st: budgets.Status) -> dict:
    """A budget's definition (the fields POST and PUT take) and its status."""
    b = st.budget
    return {
        "id": b.id, "name": b.name, "amount_usd": budgets.usd(b.amount_nanos), "period": b.period,
        "custom_start": _date(b.custom_start), "custom_end": _date(b.custom_end),
        "thresholds": b.threshold_list, "enforcement": b.enforcement, "notify_resolved": b.notify_resolved,
        "notify_roles": b.role_list, "owner_id": b.owner_id, "department_id": b.scope_department_id,
        "api_key_id": b.scope_api_key_id, "user": b.scope_user, "provider": b.scope_provider,
        "model": b.scope_model, "tag": b.scope_tag, "scope_text": budgets.scope_text(b),
        "created_at": b.created_at.isoformat() + "Z", "updated_at": b.updated_at.isoformat() + "Z",
        "status": st.as_json(),
    }


def _answer(budget: Budget, status: int = 200):
    response = jsonify(budget_json(budgets.status(Budget.get_by_id(budget.id))))
    response.status_code = status
    return response


# --- reading -----------------------------------------------------------------------

@bp.get("/v1/budgets")
@api_key_required("read")
@_guarded("budgets:read")
def list_budgets():
    return jsonify({"budgets": [budget_json(st) for st in budgets.org_statuses(g.org)]})


@bp.get("/v1/budgets/status")
@api_key_required("read")
@_guarded("budgets:read")
def budgets_status():
    return jsonify({"organization": g.org.slug, "time_zone": g.org.time_zone,
                    "as_of": clock.now().isoformat(timespec="seconds") + "Z",
                    "budgets": [st.as_json() for st in budgets.org_statuses(g.org)]})


@bp.get("/v1/budgets/<int:budget_id>")
@api_key_required("read")
@_guarded("budgets:read", loads_budget=True)
def get_budget(budget: Budget):
    return _answer(budget)


# --- changes -----------------------------------------------------------------------

def _definition_body():
    """(body, None) or (None, problem response)."""
    try:
        body = _object_body()
    except BatchError as exc:
        return None, _body_problem(exc)
    errors = _checked(body, FIELDS)
    if errors:
        return None, _invalid(errors)
    if isinstance(body.get("amount_usd"), float):
        body["amount_usd"] = repr(body["amount_usd"])
    return body, None


API_CONFIRM_HINT = "Send \"confirm_scope\": true to keep it."


def _unknown_scope(body: dict, budget: Budget | None = None):
    """None, or the 422 for a provider or model that matches nothing known
    (see services.budgets.scope_check) when `confirm_scope` is not true."""
    if body.get("confirm_scope") is True:
        return None
    try:
        fields = budgets.parse(g.org, body)
    except ValidationError:
        return None  # the service answers with every field's problem
    errors = scope_check.unknown_scope(g.org, fields, budget, confirm_hint=API_CONFIRM_HINT)
    return _invalid(errors) if errors else None


@bp.post("/v1/budgets")
@api_key_required("admin")
@_guarded("budgets:write")
def create_budget():
    body, failed = _definition_body()
    if failed:
        return failed
    refused = _unknown_scope(body)
    if refused:
        return refused
    try:
        budget = budgets.create(g.org, _actor(), body)
    except ServiceError as exc:
        return _service_problem(exc)
    response = _answer(budget, 201)
    response.headers["Location"] = url_for("api.get_budget", budget_id=budget.id)
    return response


@bp.put("/v1/budgets/<int:budget_id>")
@api_key_required("admin")
@_guarded("budgets:write", loads_budget=True)
def replace_budget(budget: Budget):
    body, failed = _definition_body()
    if failed:
        return failed
    refused = _unknown_scope(body, budget)
    if refused:
        return refused
    try:
        budget = budgets.update(budget, _actor(), body)
    except ServiceError as exc:
        return _service_problem(exc)
    return _answer(budget)


@bp.delete("/v1/budgets/<int:budget_id>")
@api_key_required("admin")
@_guarded("budgets:write", loads_budget=True)
def delete_budget(budget: Budget):
    budgets.delete(budget, _actor())
    return "", 204


@bp.post("/v1/budgets/<int:budget_id>/test-alert")
@api_key_required("admin")
@_guarded("budgets:write", loads_budget=True)
def test_budget_alert(budget: Budget):
    sent = budgets.send_test_alert(budget, _actor())
    response = jsonify({"event_id": sent.event_id if sent else None,
                        "notifications": len(sent.notifications) if sent else 0})
    response.status_code = 202
    return response


RAISE_FIELDS = {"amount_usd": FIELDS["amount_usd"], "reason": ((str,), "A string (at most 200 characters).")}


@bp.post("/v1/budgets/<int:budget_id>/raise")
@api_key_required("admin")
@_guarded("budgets:write", loads_budget=True)
def raise_budget(budget: Budget):
    try:
        body = _object_body()
    except BatchError as exc:
        return _body_problem(exc)
    errors = _checked(body, RAISE_FIELDS)
    if "amount_usd" not in body:
        errors["amount_usd"] = "How much to add for the rest of this period, in dollars."
    if errors:
        return _invalid(errors)
    amount = body["amount_usd"]
    try:
        increase = budgets.raise_temporarily(budget, _actor(), repr(amount) if isinstance(amount, float) else amount,
                                             body.get("reason") or "")
    except ValidationError as exc:
        return _invalid({"amount_usd" if k == "increase_usd" else k: v for k, v in exc.errors.items()})
    except ServiceError as exc:
        return _service_problem(exc)
    response = jsonify({"increase": {"id": increase.id, "amount_usd": budgets.usd(increase.amount_nanos),
                                     "reason": increase.reason,
                                     "period_start": increase.period_start.isoformat() + "Z"},
                        "budget": budget_json(budgets.status(Budget.get_by_id(budget.id)))})
    response.status_code = 201
    return response
