"""The gateway's request log: every call through the gateway, newest first,
searchable and filterable (htmx swaps the table; plain GETs work without
JavaScript), one call's page, and the request-logging setting.

Metadata is for anyone who may read usage; the kept bodies (prompts and
answers can be sensitive) and the setting are for owners and admins, who
hold `org:settings`."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, url_for

from costguardian.authz import can, current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.forms.request_log import DeleteBodiesForm, RequestLoggingForm, filter_args, parse_filter
from costguardian.rendering import render, toast
from costguardian.services.errors import ValidationError
from costguardian.services.gateway import request_log

bp = Blueprint("request_log", __name__, url_prefix="/gateway/requests")

PAGE, TABLE, DETAIL = "gateway/requests.html", "partials/gateway/_requests_table.html", "gateway/request.html"
SETTINGS = "partials/gateway/_requests_settings.html"
BODIES = "org:settings"  # who may read kept bodies, and turn logging on or off


def _context(settings: RequestLoggingForm | None = None, delete: DeleteBodiesForm | None = None,
             settings_saved: bool = False) -> dict:
    flt = parse_filter(g.org, request.args)
    bodies = can(BODIES)
    page = request_log.search(g.org, flt, bodies=bodies, before=request.args.get("before"))
    context = {"flt": flt, "page": page, "outcomes": request_log.OUTCOMES, "endpoints": request_log.ENDPOINTS,
               "keys": request_log.keys_of(g.org), "may_read_bodies": bodies, "settings_saved": settings_saved,
               "first_page": not request.args.get("before"),
               "filter_args": filter_args(request.args)}
    if bodies:
        context.update(settings=settings or RequestLoggingForm.for_org(g.org),
                       delete=delete or DeleteBodiesForm(formdata=None), kept=request_log.bodies_kept(g.org))
    return context


@bp.get("")
@require_permission("usage:read")
def index():
    context = _context()
    return render(PAGE, TABLE, status=422 if context["flt"].errors else 200, **context)


@bp.get("/<request_id>")
@require_permission("usage:read")
def detail(request_id: str):
    found = request_log.detail(g.org, request_id, bodies=can(BODIES))
    if found is None:
        abort(404)
    return render(DETAIL, DETAIL, detail=found, row=found.row, may_read_bodies=can(BODIES),
                  outcomes=request_log.OUTCOMES)


@bp.post("/settings")
@require_permission(BODIES)
def settings():
    form = RequestLoggingForm()
    if form.validate():
        try:
            request_log.update_settings(g.org, current_actor(), form.enabled.data, form.retention_days.data)
        except ValidationError as exc:
            for name, message in exc.errors.items():  # "enabled": the plan does not include request logging
                field = form.enabled if name == "enabled" else form.retention_days
                field.errors = [*field.errors, message]
        else:
            message = (f"Request logging is on: bodies are kept for {g.org.request_log_days} days."
                       if g.org.request_logging else "Request logging is off: no more bodies are kept.")
            if htmx:
                return toast(render(PAGE, SETTINGS, **_context(settings_saved=True)), message)
            flash(message, "success")
            return redirect(url_for("request_log.index"))
    return render(PAGE, SETTINGS, status=422, **_context(settings=form))


@bp.post("/bodies/delete")
@require_permission(BODIES)
def delete_bodies():
    form = DeleteBodiesForm()
    if not form.validate():
        return render(PAGE, SETTINGS, status=422, **_context(delete=form))
    deleted = request_log.delete_bodies(g.org, current_actor())
    message = f"Deleted {deleted} kept bod{'y' if deleted == 1 else 'ies'}."
    if htmx:
        return toast(render(PAGE, SETTINGS, **_context()), message)
    flash(message, "success")
    return redirect(url_for("request_log.index"))
