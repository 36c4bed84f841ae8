"""The platform admin JSON API (/api/v1/admin/…): users, organizations and
system-wide usage across every organization, for scripts run by platform
administrators. Authenticated by a personal platform token (created on the
account page, `Authorization: Bearer cgp_…`), never by a session cookie or an
organization's API key. Reads need `platform:read`; writes `platform:write`
and an owner who is a superadmin now. The same services as the console do the
work, so the same rules (and audit rows, naming the token) apply."""
from __future__ import annotations

import functools
from datetime import date, datetime, timedelta

from flask import Blueprint, g, jsonify, request

from costguardian import clock
from costguardian.extensions import csrf
from costguardian.models.org import MAX_ID
from costguardian.services import keys
from costguardian.services.errors import NotPermitted, ServiceError, ValidationError
from costguardian.services.billing import plans
from costguardian.services.platform import api_usage, orgs, tokens, users
from costguardian.services.team.orgs import time_zones
from costguardian.services.usage.ingest import BatchError, storable, usd_string
from costguardian.views.api import FULL_DATE, _json_body, enum_arg, int_arg, problem, text_error

bp = Blueprint("api_admin", __name__, url_prefix="/api/v1/admin")
csrf.exempt(bp)

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 50
MAX_PAGE = 10**6
MAX_QUERY = 200  # characters of a search
MAX_NAME = 120  # User.name
MAX_EMAIL = 254
ORG_MAX_NAME = 120
USER_ROLES = ("none", "support", "superadmin")  # the `role` filter; "none": no platform role
PLATFORM_ROLES = ("", "support", "superadmin")  # User.platform_role as the body sets it
ORG_STATUSES = tuple(orgs.STATUSES)  # active, suspended, deletion (scheduled)
MAX_ACTIVE_DAYS = 3650
USAGE_DAYS = 30  # the default range: the last 30 UTC days, today included
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
BOOLEANS = ("true", "false")


def platform_token_required(scope: str):
    """The view needs a platform token with `scope` whose owner holds that
    power now: g.platform_token is set."""
    if scope not in tokens.SCOPES:
        raise KeyError(f"unknown platform scope {scope!r}")

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            try:
                g.platform_token = tokens.authenticate(request.headers.get("Authorization"), scope)
            except keys.ApiKeyError as exc:
                response = problem(exc.status, exc.problem, exc.detail)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="cost-guardian-platform"'
                return response
            return view(*args, **kwargs)

        wrapped.required_scope = scope
        wrapped.api_key_auth = True  # the sign-in guard lets it through; the token authenticates it
        wrapped.platform_api = True
        return wrapped

    return decorate


def _actor():
    return tokens.actor_for(g.platform_token, request.remote_addr or "", request.headers.get("User-Agent", ""))


def _iso(value):
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _jsonable(value):
    """Datetimes as RFC 3339 (UTC, "Z"), through dicts and lists."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return _iso(value)


def _service_problem(exc: ServiceError):
    if isinstance(exc, ValidationError):
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=exc.errors)
    if isinstance(exc, NotPermitted):
        return problem(403, "not-permitted", exc.message)
    return problem(409, "rule-violation", exc.message)


def _body_problem(exc: BatchError):
    status = 415 if exc.problem == "unsupported-media-type" else 422
    return problem(status, exc.problem, exc.detail, **({"errors": exc.errors} if exc.errors else {}))


def _parameter_problem(errors: dict):
    return problem(422, "invalid-parameter", "Some query parameters are not valid; see 'errors'.", errors=errors)


def _object_body(fields: tuple[str, ...]) -> dict:
    body = _json_body()
    if not isinstance(body, dict):
        raise BatchError("invalid-request", "Send a JSON object.", {"": "Expected a JSON object."})
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BatchError("invalid-request", "Some fields are not valid; see 'errors'.",
                         {name: "Unknown field." for name in unknown})
    return body


def _paging(errors: dict) -> tuple[int, int]:
    return (int_arg("page", 1, 1, MAX_PAGE, errors),
            int_arg("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE, errors))


def _query_text(errors: dict) -> str:
    q = request.args.get("q", "")
    if len(q) > MAX_QUERY:
        errors["q"] = f"At most {MAX_QUERY} characters."
    elif not storable(q):
        errors["q"] = "Contains characters that cannot be stored (NUL or an unpaired surrogate)."
    return q.strip()


def _bool_arg(name: str, errors: dict) -> bool | None:
    value = enum_arg(name, BOOLEANS, errors)
    return None if not value else value == "true"


def _page_json(name: str, rows: list, page: int, per_page: int, total: int) -> dict:
    return {name: rows, "page": page, "per_page": per_page, "total": total}


# --- users ----------------------------------------------------------------------

def _user_or_404(user_id: int):
    user = users.get(user_id)
    if user is None:
        return None, problem(404, "not-found", "No user with this id.")
    return user, None


@bp.get("/users")
@platform_token_required(tokens.READ)
def list_users():
    errors: dict[str, str] = {}
    page, per_page = _paging(errors)
    filters = {"q": _query_text(errors), "role": enum_arg("role", USER_ROLES, errors) or None,
               "disabled": _bool_arg("disabled", errors), "unconfirmed": _bool_arg("unconfirmed", errors) or False}
    active = request.args.get("active_days")
    if active is not None:
        if active == "never":
            filters["active_days"] = "never"
        elif active.isascii() and active.isdigit() and 1 <= int(active) <= MAX_ACTIVE_DAYS:
            filters["active_days"] = int(active)
        else:
            errors["active_days"] = f"A whole number of days from 1 to {MAX_ACTIVE_DAYS:,}, or never."
    org_id = int_arg("org", 0, 1, MAX_ID, errors)
    if org_id:
        filters["org"] = org_id
    if errors:
        return _parameter_problem(errors)
    rows, total = users.search(filters, page, per_page)
    return jsonify(_page_json("users", [_jsonable(users.as_dict(u)) for u in rows], page, per_page, total))


@bp.put("/users/<int:user_id>")
@platform_token_required(tokens.WRITE)
def update_user(user_id: int):
    """Change a user's name, email (they confirm the new address) or platform role."""
    user, missing = _user_or_404(user_id)
    if missing:
        return missing
    try:
        body = _object_body(("name", "email", "platform_role"))
    except BatchError as exc:
        return _body_problem(exc)
    errors: dict[str, str] = {}
    changes = {}
    for field, limit in (("name", MAX_NAME), ("email", MAX_EMAIL)):
        if field in body:
            error = text_error(body[field], limit, required=field == "email")
            if error:
                errors[field] = error
            else:
                changes[field] = body[field]
    if "platform_role" in body:
        if not isinstance(body["platform_role"], str) or body["platform_role"] not in PLATFORM_ROLES:
            errors["platform_role"] = "One of \"\" (no platform role), support, superadmin."
        else:
            changes["platform_role"] = body["platform_role"]
    if errors:
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)
    try:
        user = users.update_user(user, _actor(), **changes)
    except ServiceError as exc:
        return _service_problem(exc)
    return jsonify(_jsonable(users.as_dict(user)))


@bp.delete("/users/<int:user_id>")
@platform_token_required(tokens.WRITE)
def delete_user(user_id: int):
    """Delete a user for good; `confirm` must be their email (as the console asks)."""
    user, missing = _user_or_404(user_id)
    if missing:
        return missing
    confirm = request.args.get("confirm")
    if confirm is None or not confirm.strip():
        return _parameter_problem({"confirm": "Type the user's email address to confirm the deletion."})
    if len(confirm) > MAX_EMAIL or not storable(confirm):
        return _parameter_problem({"confirm": "This is not the user's email address."})
    try:
        users.delete_user(user, _actor(), confirm)
    except ServiceError as exc:
        return _service_problem(exc)
    return "", 204


# --- organizations ------------------------------------------------------------

def _org_json(row: dict) -> dict:
    body = {name: row[name] for name in ("id", "name", "slug", "plan", "plan_code", "members", "events_month",
                                         "status")}
    body["spend_month_usd"] = usd_string(int(row["spend_nanos_month"] or 0))
    body["created_at"] = _iso(row["created_at"])
    body["delete_after"] = _iso(row.get("delete_after"))
    return body


@bp.get("/organizations")
@platform_token_required(tokens.READ)
def list_organizations():
    errors: dict[str, str] = {}
    page, per_page = _paging(errors)
    filters = {"q": _query_text(errors), "status": enum_arg("status", ORG_STATUSES, errors) or None}
    plan = request.args.get("plan")
    if plan is not None:
        if not plans.CODE.fullmatch(plan):
            errors["plan"] = "A plan's code, e.g. team."
        else:
            filters["plan"] = plan  # a plan nobody has (or that does not exist) matches nothing
    if errors:
        return _parameter_problem(errors)
    rows, total = orgs.search(filters, page, per_page)
    return jsonify(_page_json("organizations", [_org_json(r) for r in rows], page, per_page, total))


@bp.post("/organizations")
@platform_token_required(tokens.WRITE)
def create_organization():
    """Create an organization owned by an existing user (also at POST /api/organizations)."""
    try:
        body = _object_body(("name", "owner_email", "time_zone"))
    except BatchError as exc:
        return _body_problem(exc)
    errors: dict[str, str] = {}
    for field, limit in (("name", ORG_MAX_NAME), ("owner_email", MAX_EMAIL)):
        error = text_error(body[field], limit, required=True) if field in body else "Required."
        if error:
            errors[field] = error
    time_zone = body.get("time_zone", "UTC")
    if not isinstance(time_zone, str) or time_zone not in time_zones():
        errors["time_zone"] = "An IANA time zone, e.g. Europe/Berlin."
    if errors:
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)
    try:
        org = orgs.create(body["name"], body["owner_email"], _actor(), time_zone=time_zone)
    except ServiceError as exc:
        return _service_problem(exc)
    response = jsonify({"id": org.id, "name": org.name, "slug": org.slug, "time_zone": org.time_zone,
                        "created_at": _iso(org.created_at)})
    response.status_code = 201
    return response


# The seed's `POST /api/organizations`: the same operation, authenticated the same way.
bp.record_once(lambda state: state.app.add_url_rule(
    "/api/organizations", endpoint="api_admin.create_organization_alias", view_func=create_organization,
    methods=["POST"]))


# --- usage --------------------------------------------------------------------

def _day_arg(name: str, default: date, errors: dict) -> date:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        if not FULL_DATE.fullmatch(value):
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        errors[name] = "Not a date (YYYY-MM-DD)."
        return default
    if not FIRST_DAY <= day <= LAST_DAY:
        errors[name] = "Between 2000-01-01 and 2100-12-31."
    return day


def _usage_json(row: api_usage.UsageRow) -> dict:
    body = {"key": row.key, "label": row.label} if row.key is not None else {}
    if row.provider is not None:
        body["provider"] = row.provider
    if row.slug is not None:
        body["slug"] = row.slug
    body.update(requests=row.requests, input_tokens=row.input_tokens, cache_read_tokens=row.cache_read_tokens,
                cache_write_tokens=row.cache_write_tokens, output_tokens=row.output_tokens,
                cost_usd=usd_string(row.cost_nanos), unpriced_requests=row.unpriced_requests)
    return body


@bp.get("/usage")
@platform_token_required(tokens.READ)
def usage():
    """System-wide usage per UTC day, provider, model or organization, from the rollups."""
    errors: dict[str, str] = {}
    today = clock.now().date()
    start = _day_arg("start", today - timedelta(days=USAGE_DAYS - 1), errors)
    end = _day_arg("end", today, errors)
    group_by = enum_arg("group_by", api_usage.GROUPS, errors) or "day"
    page, per_page = _paging(errors)
    if not errors:
        if end < start:
            errors["end"] = "Must not be before 'start'."
        elif (end - start).days >= api_usage.MAX_DAYS:
            errors["end"] = "A range covers at most three years."
    if errors:
        return _parameter_problem(errors)
    rows, total, overall = api_usage.summary(start, end, group_by, page, per_page)
    return jsonify({"start": start.isoformat(), "end": end.isoformat(), "group_by": group_by, "currency": "USD",
                    "time_zone": "UTC", "rows": [_usage_json(r) for r in rows], "page": page, "per_page": per_page,
                    "total": total, "totals": _usage_json(overall)})
