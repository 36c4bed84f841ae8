"""The JSON API: authenticated by organization API keys, answering errors as
application/problem+json with a stable `type`."""
from __future__ import annotations

import functools
import json
import re
from datetime import date
from decimal import Decimal

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import HTTPException

from costguardian import openapi_gateway
from costguardian.extensions import csrf, limiter
from costguardian.openapi import spec
from costguardian.problems import type_url
from costguardian.web import PROBLEM_KINDS
from costguardian.services import keys
from costguardian.services.platform import orgs as platform_orgs
from costguardian.services.team import visibility
from costguardian.services.usage import ingest, queries as usage_queries
from costguardian.services.usage.ingest import BatchError, storable, usd_string

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)


def problem(status: int, kind: str, detail: str, **extensions):
    """An RFC 9457 problem document."""
    body = {"type": type_url(kind), "title": kind.replace("-", " ").capitalize(), "status": status,
            "detail": detail}
    body.update(extensions)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def api_key_required(scope: str):
    """The view needs an API key with `scope`: g.api_key and g.org are set."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            try:
                key = keys.authenticate(request.headers.get("Authorization"), scope)
            except keys.ApiKeyError as exc:
                response = problem(exc.status, exc.problem, exc.detail)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="cost-guardian"'
                return response
            g.api_key, g.org = key, key.organization
            return view(*args, **kwargs)

        wrapped.required_scope = scope
        wrapped.api_key_auth = True
        return wrapped

    return decorate


def text_error(value, max_length: int, *, required: bool = False) -> str | None:
    """What is wrong with a text field of a JSON body, as the OpenAPI document
    states it (openapi.text): a string of at most `max_length` characters as
    sent (before any trimming), storable, and with `required`, not blank."""
    if not isinstance(value, str):
        return "Must be a string."
    if len(value) > max_length:
        return f"At most {max_length} characters."
    if not storable(value):
        return "Contains characters that cannot be stored (NUL or an unpaired surrogate)."
    if required and not value.strip():
        return "Must not be empty."
    return None


def int_arg(name: str, default: int, low: int, high: int, errors: dict) -> int:
    """A whole-number query parameter within [low, high]: ASCII digits only
    (int() would also take ' 5', '+5', '5_0' and other scripts' digits)."""
    value = request.args.get(name)
    if value is None:
        return default
    if value.isascii() and value.isdigit() and low <= int(value) <= high:
        return int(value)
    errors[name] = f"A whole number from {low:,} to {high:,}."
    return default


def enum_arg(name: str, choices, errors: dict) -> str:
    """An optional query parameter that is one of `choices` (present but
    empty is not one of them); "" when absent."""
    value = request.args.get(name)
    if value is None:
        return ""
    if value not in choices:
        errors[name] = f"One of {', '.join(choices)}."
        return ""
    return value


def _json_number(text: str):
    """A JSON number written with a fraction or an exponent: an int when it is
    a whole number (JSON Schema's "integer" includes 4.0 and 1e3, so fields the
    document types as integers take them), else a float."""
    number = Decimal(text)
    if number == number.to_integral_value() and number.adjusted() < 30:
        return int(number)
    return float(text)


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json would take them


def _json_body():
    if not request.is_json:
        raise BatchError("unsupported-media-type", "Send the body as JSON with 'Content-Type: application/json'.")
    try:
        body = json.loads(request.get_data(cache=True), parse_float=_json_number, parse_constant=_not_json)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or absurdly deep nesting
        body = None
    if body is None:
        raise BatchError("malformed-json", "The body is not valid JSON.")
    return body


@bp.get("/openapi.json")
@limiter.exempt
def openapi():
    return jsonify(spec())


@bp.get("/gateway-openapi.json")
@limiter.exempt
def gateway_openapi():
    """The gateway's own document (costguardian/openapi_gateway.py)."""
    return jsonify(openapi_gateway.spec())


@bp.post("/v1/usage")
@api_key_required("ingest")
def ingest_usage():
    if g.org.suspended_at is not None:  # the organization row came with the key
        return problem(403, "organization-suspended", platform_orgs.suspension_detail(g.org))
    try:
        events, single = ingest.events_from_body(_json_body())
    except BatchError as exc:
        status = 415 if exc.problem == "unsupported-media-type" else 422
        return problem(status, exc.problem, exc.detail, **({"errors": exc.errors} if exc.errors else {}))
    result = ingest.ingest(g.org, g.api_key, events)
    body = result.as_json()
    if single and result.results[0].status == "rejected":
        return problem(422, "invalid-event", "The event was rejected; see 'errors'.",
                       errors=result.results[0].errors, **body)
    return jsonify(body)


FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # RFC 3339 full-date; fromisoformat also takes 20261101
SUMMARY_FIRST_DAY, SUMMARY_LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
SUMMARY_MAX_DAYS = 366 * 3  # a summary covers at most three years


def _date_arg(name: str, default: date) -> date:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        if not FULL_DATE.fullmatch(value):
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise BatchError("invalid-parameter", f"'{name}' must be a date like 2026-11-01.",
                         {name: "Not a date (YYYY-MM-DD)."}) from exc
    if not SUMMARY_FIRST_DAY <= day <= SUMMARY_LAST_DAY:
        raise BatchError("invalid-parameter", f"'{name}' must be between 2000 and 2100.",
                         {name: "Between 2000-01-01 and 2100-12-31."})
    return day


@bp.get("/v1/usage/summary")
@api_key_required("read")
def usage_summary():
    org = g.org
    first, last = usage_queries.month_range(usage_queries.today(org))
    try:
        start, end = _date_arg("from", first), _date_arg("to", last)
        errors = {}
        group_by = enum_arg("group_by", usage_queries.GROUPS, errors) or None
        interval = enum_arg("interval", usage_queries.INTERVALS, errors) or "total"
        if end < start:
            errors["to"] = "Must not be before 'from'."
        elif (end - start).days > SUMMARY_MAX_DAYS:
            errors["to"] = "A summary covers at most three years."
        if errors:
            raise BatchError("invalid-parameter", "Some query parameters are not valid; see 'errors'.", errors)
    except BatchError as exc:
        return problem(422, exc.problem, exc.detail, errors=exc.errors)
    if group_by in ("user", "api_key") and not visibility.sees_everyone(org, visibility.key_holder_role(g.api_key)):
        return problem(403, "not-permitted", f"This key belongs to a member, who sees only totals by department "
                                             f"and their own usage: group_by={group_by} is not available. "
                                             + visibility.LIMITED)
    flt = usage_queries.UsageFilter(start=start, end=end)
    rows = usage_queries.summarize(org, flt, group_by=group_by, interval=interval)
    overall = usage_queries.total(org, flt)
    return jsonify({
        "organization": org.slug, "time_zone": org.time_zone, "from": start.isoformat(), "to": end.isoformat(),
        "group_by": group_by, "interval": interval, "currency": "USD",
        "rows": [_row_json(r, group_by) for r in rows],
        "total": _totals_json(overall),
    })


def _totals_json(t) -> dict:
    return {"requests": t.requests, "input_tokens": t.input_tokens, "cache_read_tokens": t.cache_read_tokens,
            "cache_write_tokens": t.cache_write_tokens, "output_tokens": t.output_tokens,
            "cost_usd": usd_string(t.cost_nanos), "unpriced_requests": t.unpriced_requests}


def _row_json(row, group_by) -> dict:
    body = {}
    if group_by is not None:
        body.update(key=row.key, label=row.label)
    if row.period is not None:
        body["period"] = row.period.isoformat()
    body.update(_totals_json(row))
    return body


@bp.errorhandler(HTTPException)
def _api_http_error(exc: HTTPException):
    detail = exc.description or ""
    if exc.code == 413:
        detail = "The body is too large; send at most 1,000 events (and 4 MB) per request."
    return problem(exc.code or 500, PROBLEM_KINDS.get(exc.code, f"http-{exc.code}"), detail)


from costguardian.views import api_team  # noqa: E402,F401
from costguardian.views import api_departments  # noqa: E402,F401
from costguardian.views import api_budgets  # noqa: E402,F401
from costguardian.views import api_billing  # noqa: E402,F401
