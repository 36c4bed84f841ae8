"""The usage explorer: spend filtered and grouped any way, per user and per
key history, and its CSV exports. Every view reads the same query string
(forms.usage.parse), so a bookmarked URL, the htmx swap and the download agree."""
from __future__ import annotations

from datetime import timedelta

from flask import (Blueprint, Response, current_app, g, make_response, render_template, request, stream_with_context,
                   url_for)
from flask_login import current_user

from costguardian.authz import require_permission
from costguardian.db import connected
from costguardian.extensions import db, htmx
from costguardian.forms import usage as explorer
from costguardian.money import usd_decimal
from costguardian.rendering import render
from costguardian.services import keys as keys_service
from costguardian.services.gateway import traffic
from costguardian.services.ops import retention
from costguardian.services.usage import exports, queries as usage_queries
from costguardian.services.usage.ingest import usd_string
from costguardian.services.usage.queries import PRESETS, SOURCES, UsageFilter
from costguardian.services.team import members as members_service, visibility

bp = Blueprint("usage", __name__, url_prefix="/usage")

PAGE, RESULTS = "usage/index.html", "partials/usage/_results.html"
LATENCY_PAGE, LATENCY = "usage/latency.html", "partials/usage/_latency.html"
USER_PICKS = "partials/members/_user_picks.html"
CHART_SERIES = 6
FILTER_LABELS = {"preset": "Period", "from": "From", "to": "To", "group_by": "Group by", "provider": "Provider",
                 "model": "Model", "department": "Department", "user": "User", "key": "API key", "tag": "Tag",
                 "source": "Source"}
SOURCE_HEADINGS = {"gateway": "through the gateway", "ingest": "sent to the ingest API"}


def parse_visible(args, events: bool = False) -> explorer.ExplorerQuery:
    """The explorer's query string, with what this person may not see in
    detail (services/team/visibility.py) as field errors; `events` for the
    per-event exports, which name every event's user."""
    query = explorer.parse(g.org, args)
    query.errors.update(visibility.explorer_errors(g.org, g.membership.role, current_user, user_ref=query.user,
                                                   group=query.group, key=query.key, events=events))
    return query


def _choices() -> dict:
    """The filters' options; a member who sees only their own detail is
    offered only their own user and keys."""
    choices = usage_queries.filter_choices(g.org, with_users=False)  # users: a picker (users() below)
    if not visibility.sees_everyone(g.org, g.membership.role):
        own_keys = {k.id for k in keys_service.keys_of(g.org) if k.user_id == current_user.id}
        choices["key"] = [c for c in choices["key"] if c[0] in own_keys]
    return choices


def prices_url() -> str | None:
    """The page where an organization sets its own prices, once it exists."""
    return url_for("prices.index") if "prices.index" in current_app.view_functions else None


def chart_data(org, flt: UsageFilter, stack_by: str | None) -> dict:
    """A stacked daily spend chart: labels, series of dollar strings (for
    Chart.js) and the same numbers as table rows (for everyone else)."""
    return _chart(*usage_queries.daily_series(org, flt, stack_by=stack_by, top=CHART_SERIES))


def _chart(days, series: dict) -> dict:
    names = list(series)
    rows = [(day, [series[name][i] for name in names], sum(series[name][i] for name in names))
            for i, day in enumerate(days)]
    return {
        "labels": [day.isoformat() for day in days],
        "datasets": [{"label": name, "data": [_dollars(v) for v in values]} for name, values in series.items()],
        "names": names, "rows": rows, "series_totals": [sum(series[name]) for name in names],
        "total": sum(r[2] for r in rows),
    }


def _dollars(nanos: int) -> str:
    """Exact chart data ("0.0075"); static/js/charts.js formats it by the money rule."""
    return usd_decimal(nanos)


def _heading(query: explorer.ExplorerQuery) -> str:
    heading = _subject(query)
    return f"{heading}, {SOURCE_HEADINGS[query.source]}" if query.source else heading


def _subject(query: explorer.ExplorerQuery) -> str:
    if query.key is not None:
        return f"Usage of key “{query.key.name}”"
    if query.no_key:
        return "Usage sent without an API key"
    if query.user:
        return f"Usage of {usage_queries.member_names(g.org, [query.user]).get(query.user, query.user)}"
    if query.department is not None:
        return f"Usage of the {query.department.name} department"
    if query.no_department:
        return "Usage without a department"
    parts = [p for p in (query.provider, query.model, f"tag {query.tag}" if query.tag else "") if p]
    return "Usage of " + " · ".join(parts) if parts else "All usage"


def _history(query: explorer.ExplorerQuery) -> list:
    """Month by month for one key or one user (the last three years with
    usage), newest first; each month links to the explorer for that month."""
    if query.key is None and not query.user:
        return []
    today = usage_queries.today(g.org)
    first = (today.replace(day=1) - timedelta(days=usage_queries.MAX_RANGE_DAYS - 31)).replace(day=1)
    flt = UsageFilter(start=first, end=today,
                      api_key_ids=[query.key.id] if query.key is not None else [],
                      users=[query.user] if query.user else [])
    rows = usage_queries.summarize(g.org, flt, interval="month")
    return [(row, usage_queries.month_range(row.period)) for row in reversed(rows)]


def _latency_pending(query: explorer.ExplorerQuery) -> bool:
    """Is there gateway traffic in the range to load latency for (a cheap EXISTS)?"""
    return query.source != "ingest" and traffic.has_traffic(g.org, *usage_queries.exact_bounds(g.org, query.start,
                                                                                               query.end))


def _latency(query: explorer.ExplorerQuery) -> list:
    """Latency per model of the gateway's calls in the range, narrowed by the
    filters the request log knows (key, provider, model); none for ingest."""
    if query.source == "ingest":
        return []
    start, end = usage_queries.exact_bounds(g.org, query.start, query.end)
    key_id = query.key.id if query.key is not None else (usage_queries.NO_KEY if query.no_key else None)
    return traffic.latency_by_model(g.org, start, end, api_key_id=key_id,
                                    providers=[query.provider] if query.provider else None,
                                    models=[query.model] if query.model else None)


def _report(query: explorer.ExplorerQuery) -> dict:
    org, flt = g.org, query.usage_filter()
    report = usage_queries.explorer_report(org, flt, query.service_group, top=CHART_SERIES)
    return {"rows": report.rows, "total": report.total, "chart": _chart(report.days, report.series),
            "history": _history(query), "heading": _heading(query), "latency_pending": _latency_pending(query),
            "events_pruned_before": _pruned_before(org, flt)}


def _pruned_before(org, flt: UsageFilter):
    """When the filter reaches back before the raw events kept: the day the kept
    ones start (the totals are exact; the per-event export covers only these)."""
    days = retention.effective_days(org)
    cutoff = retention.pruned_before(org) if days else None
    if cutoff is None or usage_queries.utc_bounds(org, flt.start, flt.end)[0] >= cutoff:
        return None
    return {"days": days, "since": cutoff}


def _out_of_band() -> set[str]:
    """Parts of the filter form an htmx response also updates: the fields'
    error messages; the dates when a range was picked; the range picker
    ("Custom dates") when a date was typed. Never the control in use, so
    it keeps focus."""
    if not htmx:
        return set()
    parts = {"errors"}
    trigger = htmx.trigger_name
    if trigger == "preset":
        parts.add("dates")
    elif trigger in ("from", "to"):
        parts.add("preset")
    return parts


def _full_page() -> bool:
    """A whole page: a plain GET, or htmx restoring history it has no copy of
    (the explorer keeps none: its selects' state is not in a DOM snapshot)."""
    return not htmx or htmx.history_restore_request


def _render(status: int = 200, **context):
    if _full_page():
        return make_response(render_template(PAGE, **context), status)
    return render(PAGE, RESULTS, status=status, **context)


@bp.get("/")
@require_permission("usage:read")
def index():
    query = parse_visible(request.args)
    full = _full_page()
    context = {"query": query, "presets": PRESETS, "groups": explorer.GROUP_LABELS,
               "oob": set() if full else _out_of_band(), "filter_labels": FILTER_LABELS,
               "usd_string": usd_string, "prices_url": prices_url(), "sources": SOURCES,
               "own_detail_only": not visibility.sees_everyone(g.org, g.membership.role)}
    if full:
        context["choices"] = _choices()
    if query.errors:
        return _render(422, **context)
    context.update(_report(query))
    context["event_exports"] = not visibility.explorer_errors(g.org, g.membership.role, current_user,
                                                              user_ref=query.user, group="", events=True)
    response = _render(**context)
    if not full:  # the address bar shows the clean query, not every empty field of the form
        response.headers["HX-Push-Url"] = url_for("usage.index", **query.params())
    return response


@bp.get("/users")
@require_permission("usage:read")
def users():
    """The user filter's suggestions (partials/members/_picker.html): at most
    20 members and end-user ids matching what is typed in the field named by
    `field`; a member who sees only their own detail is offered only themselves."""
    field = request.args.get("field", "q")
    text = request.args.get(field if field.isidentifier() else "q", "")
    pairs = members_service.user_refs_matching(g.org, text)
    if not visibility.sees_everyone(g.org, g.membership.role):
        pairs = [p for p in pairs if visibility.is_own(current_user, p[0])]
    return render(USER_PICKS, USER_PICKS, pairs=pairs)


@bp.get("/latency")
@require_permission("usage:read")
def latency():
    """The latency table of the explorer's filter: the fragment htmx loads
    into the results, or a page of its own without JavaScript."""
    query = parse_visible(request.args)
    if query.errors:
        return _invalid(query)
    context = {"query": query, "latency": _latency(query),
               "latency_unfiltered": bool(query.user or query.department or query.no_department or query.tag)}
    return render(LATENCY_PAGE, LATENCY, **context)


def _invalid(query):
    """A download link with a bad filter: a page that says what is wrong."""
    detail = "The filter is not valid: " + " ".join(query.errors.values())
    return render_template("errors/error.html", status=422, title="Nothing to export", detail=detail), 422


def _csv(org, kind: str, flt: UsageFilter, body) -> Response:
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{exports.filename(org, kind, flt)}"'
    return response


def _streamed(generator_function, *args):
    """Stream what the generator yields with a database connection of its own:
    the request's connection is closed when the view returns, before the
    body is sent."""

    def body():
        with connected(db):
            yield from generator_function(*args)

    return stream_with_context(body())


@bp.get("/export/events.csv")
@require_permission("usage:read")
def export_events():
    query = parse_visible(request.args, events=True)
    if query.errors:
        return _invalid(query)
    flt = query.usage_filter()
    return _csv(g.org, "events", flt, _streamed(exports.events_csv, g.org, flt))


@bp.get("/export/grouped.csv")
@require_permission("usage:read")
def export_grouped():
    query = parse_visible(request.args)
    if query.errors:
        return _invalid(query)
    flt = query.usage_filter()
    report = usage_queries.explorer_report(g.org, flt, query.service_group)  # the page's own numbers
    return _csv(g.org, f"by-{query.group}", flt, exports.grouped_csv(query.group, report.rows, report.total))


@bp.get("/export/focus.csv")
@require_permission("usage:read")
def export_focus():
    query = parse_visible(request.args, events=True)
    if query.errors:
        return _invalid(query)
    flt = query.usage_filter()
    return _csv(g.org, "focus", flt, _streamed(exports.focus_csv, g.org, flt))

