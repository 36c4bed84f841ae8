"""The team area: analytics (spend by member and department over a period),
the activity feed (the audit log as sentences), a member's page, and the
role × permission matrix."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, make_response, render_template, request, url_for
from flask_login import current_user

from costguardian import permissions
from costguardian.authz import can, require_permission
from costguardian.extensions import htmx
from costguardian.forms import usage as explorer
from costguardian.rendering import render
from costguardian.services.team import activity as activity_service
from costguardian.services.team import analytics as team_analytics
from costguardian.services.team import departments, members, visibility
from costguardian.services.usage import queries as usage_queries
from costguardian.services.usage.queries import PRESETS, UsageFilter
from costguardian.views.usage import chart_data

bp = Blueprint("team", __name__, url_prefix="/team")

INDEX, RESULTS = "team/index.html", "partials/team/_results.html"
ACTIVITY, FEED = "team/activity.html", "partials/team/_feed.html"
MEMBER, ROLES = "team/member.html", "team/roles.html"
MAX_PAGE = 100_000


def _period():
    """The period of the query string (preset, or from/to), read exactly as
    the usage explorer reads it."""
    return explorer.parse(g.org, {name: request.args.get(name, "") for name in ("preset", "from", "to")})


def _period_params(query) -> dict:
    return {k: v for k, v in query.params().items() if k in ("preset", "from", "to")}


def _render(template: str, partial: str, /, status: int = 200, **context):
    """The whole page, or the partial for an htmx request."""
    if not htmx or htmx.history_restore_request:
        return make_response(render_template(template, **context), status)
    return render(template, partial, status=status, **context)


@bp.get("/")
@require_permission("usage:read")
def index():
    query = _period()
    context = {"query": query, "presets": PRESETS}
    if query.errors:
        return _render(INDEX, RESULTS, status=422, **context)
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)
    report = team_analytics.report(g.org, query.start, query.end, page=page)
    limited = not visibility.sees_everyone(g.org, g.membership.role)
    member_counts = (report.members_with_usage, report.member_total)
    if limited:  # their own row only, no pages; departments' totals stay
        own = team_analytics.own_row(g.org, query.start, query.end, current_user.id)
        report.members = [own] if own is not None else []
    params = _period_params(query)
    pager = {"previous": url_for("team.index", **params, **({"page": report.page - 1} if report.page > 2 else {}))
             if report.page > 1 and not limited else None,
             "next": url_for("team.index", **params, page=report.page + 1)
             if report.page < report.pages and not limited else None}
    context.update(report=report, limited=limited, member_counts=member_counts, limited_note=visibility.LIMITED,
                   chart=chart_data(g.org, UsageFilter(query.start, query.end), "department"),
                   period_params=params, pager=pager)
    response = _render(INDEX, RESULTS, **context)
    if htmx and not htmx.history_restore_request:
        response.headers["HX-Push-Url"] = url_for("team.index", **params, **({"page": page} if page > 1 else {}))
    return response


def _links(kind: str, target_id):
    """Where an activity entry's target lives, if the viewer may go there."""
    views = current_app.view_functions
    if kind == "membership" and can("members:read"):
        return url_for("team.member", membership_id=int(target_id))
    if kind == "department" and can("members:read"):
        return url_for("departments.show", department_id=int(target_id))
    if kind == "key" and can("keys:manage"):
        return url_for("keys.index")
    if kind == "org" and can("org:settings"):
        return url_for("settings.index")
    if kind == "prices" and "prices.index" in views and can("usage:read"):
        return url_for("prices.index")
    if kind == "provider_credential" and "providers.edit" in views and can("providers:manage"):
        return url_for("providers.edit", credential_id=int(target_id))
    if kind == "webhook" and "webhooks.show" in views and can("notifications:manage"):
        return url_for("webhooks.show", endpoint_id=int(target_id))
    budget_id = str(target_id) if target_id is not None else ""
    if kind == "budget" and budget_id.isascii() and budget_id.isdigit() and can("budgets:read"):
        for endpoint in ("budgets.show", "budgets.detail"):
            if endpoint in views:
                return url_for(endpoint, budget_id=int(budget_id))
        return None
    if kind == "reconciliation" and target_id in ("openai", "anthropic") and can("usage:read"):
        return url_for("reconciliation.provider", provider=target_id)
    if kind == "billing" and current_app.config.get("BILLING_ENABLED") and can("billing:manage"):
        return url_for("billing.index")
    if kind == "invitations" and can("members:read"):
        for endpoint in ("invitations.index", "members.invitations"):
            if endpoint in views:
                return url_for(endpoint)
        return url_for("members.index")
    return None


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, type=int)
    return value if value is not None and 0 < value <= 2**31 - 1 else None


@bp.get("/activity")
@require_permission("audit:read")
def activity():
    actor_id = _int_arg("member")
    action = (request.args.get("action") or "").strip()[:64]
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)
    rows, has_next = activity_service.feed(g.org, actor_id=actor_id, action=action, page=page)
    params = {k: v for k, v in (("member", actor_id), ("action", action)) if v}
    newer = url_for("team.activity", **params, **({"page": page - 1} if page > 2 else {})) if page > 1 else None
    older = url_for("team.activity", **params, page=page + 1) if has_next else None
    context = {"entries": activity_service.describe(g.org, rows, _links), "page": page, "newer": newer, "older": older,
               "params": params, "actor_id": actor_id, "action": action, "families": activity_service.FAMILIES}
    if not htmx or htmx.history_restore_request:  # the filter's choices: only the whole page shows them
        context.update(actors=activity_service.actors(g.org), actions=activity_service.actions(g.org))
    response = _render(ACTIVITY, FEED, **context)
    if htmx and not htmx.history_restore_request:
        response.headers["HX-Push-Url"] = url_for("team.activity", **params, **({"page": page} if page > 1 else {}))
    return response


@bp.get("/members/<int:membership_id>")
@require_permission("members:read")
def member(membership_id: int):
    membership = members.get(g.org, membership_id)
    if membership is None:
        abort(404)
    department = departments.get(g.org, membership.department_id) if membership.department_id else None
    query = _period()
    if query.errors:
        query = explorer.parse(g.org, {})
    spend = models = None
    if can("usage:read") and visibility.may_see_member(g.org, g.membership.role, current_user, membership):
        flt = UsageFilter(query.start, query.end, users=[membership.user.email])
        spend = usage_queries.total(g.org, flt)
        models = usage_queries.summarize(g.org, flt, group_by="model")[:5]
    entries, more = [], False
    if can("audit:read"):
        rows, more = activity_service.feed(g.org, membership=membership, per_page=15)
        entries = activity_service.describe(g.org, rows, _links)
    return render(MEMBER, MEMBER, m=membership, department=department, query=query, presets=PRESETS,
                  spend=spend, models=models, entries=entries, more=more,
                  department_path=usage_queries.department_paths(g.org).get(membership.department_id, ""))


@bp.get("/roles")
@require_permission("members:read")
def roles():
    return render(ROLES, ROLES, roles=permissions.ROLES, permissions=permissions.PERMISSIONS,
                  granted=permissions.ROLE_PERMISSIONS)
