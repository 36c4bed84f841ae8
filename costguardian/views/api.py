"""The JSON API: authenticated by organization API keys, answering errors as
application/problem+json with a stable `type`."""
from __future__ import annotations

import functools
from datetime import date

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import HTTPException

from costguardian.extensions import csrf, limiter
from costguardian.openapi import spec
from costguardian.services import ingest, keys, usage_queries
from costguardian.services.ingest import BatchError, usd_string

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)

PROBLEM_BASE = "https://costguardian.dev/problems/"


def problem(status: int, kind: str, detail: str, **extensions):
    """An RFC 9457 problem document."""
    body = {"type": PROBLEM_BASE + kind, "title": kind.replace("-", " ").capitalize(), "status": status,
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


def _json_body():
    if not request.is_json:
        raise BatchError("unsupported-media-type", "Send the body as JSON with 'Content-Type: application/json'.")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting
        body = None
    if body is None:
        raise BatchError("malformed-json", "The body is not valid JSON.")
    return body


@bp.get("/openapi.json")
@limiter.exempt
def openapi():
    return jsonify(spec())


@bp.post("/v1/usage")
@api_key_required("ingest")
def ingest_usage():
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


def _date_arg(name: str, default: date) -> date:
    value = request.args.get(name)
    if not value:
        return default
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise BatchError("invalid-parameter", f"'{name}' must be a date like 2026-11-01.",
                         {name: "Not a date (YYYY-MM-DD)."}) from exc
    if not date(2000, 1, 1) <= day <= date(2100, 12, 31):
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
        group_by = request.args.get("group_by") or None
        interval = request.args.get("interval", "total")
        errors = {}
        if end < start:
            errors["to"] = "Must not be before 'from'."
        elif (end - start).days > 366 * 3:
            errors["to"] = "A summary covers at most three years."
        if group_by is not None and group_by not in usage_queries.GROUPS:
            errors["group_by"] = f"One of {', '.join(usage_queries.GROUPS)}."
        if interval not in usage_queries.INTERVALS:
            errors["interval"] = f"One of {', '.join(usage_queries.INTERVALS)}."
        if errors:
            raise BatchError("invalid-parameter", "Some query parameters are not valid; see 'errors'.", errors)
    except BatchError as exc:
        return problem(422, exc.problem, exc.detail, errors=exc.errors)
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
    kinds = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large", 429: "rate-limited"}
    detail = exc.description or ""
    if exc.code == 413:
        detail = "The body is too large; send at most 1,000 events (and 4 MB) per request."
    return problem(exc.code or 500, kinds.get(exc.code, f"http-{exc.code}"), detail)


from costguardian.views import api_team  # noqa: E402,F401
from costguardian.views import api_departments  # noqa: E402,F401
from costguardian.views import api_budgets  # noqa: E402,F401
