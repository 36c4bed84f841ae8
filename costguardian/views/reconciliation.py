"""Reconciliation: connect the providers' admin APIs, and compare what they
report with what Cost Guardian recorded (services/provider_sync)."""
from __future__ import annotations

from datetime import date, timedelta

from flask import Blueprint, Response, abort, flash, g, jsonify, redirect, request, url_for

from costguardian import clock
from costguardian.authz import current_actor, require_permission
from costguardian.extensions import csrf
from costguardian.rendering import render
from costguardian.services.errors import ValidationError
from costguardian.services.provider_sync import connections, price_fix, reconcile, reconcile_keys, sync
from costguardian.services.queue import enqueue
from costguardian.timefmt import parse_day
from costguardian.views.api import api_key_required, problem

bp = Blueprint("reconciliation", __name__, url_prefix="/reconciliation")
api_bp = Blueprint("reconciliation_api", __name__, url_prefix="/api/v1/reconciliation")
csrf.exempt(api_bp)

INDEX, PAGE = "reconciliation/index.html", "reconciliation/provider.html"
HOURS = "partials/reconciliation/_hours.html"
MAX_DAYS = 92


def _range(org, source=None) -> tuple[date, date, dict]:
    errors, today = {}, clock.today(org)
    values = {}
    source = request.args if source is None else source
    for name, default in (("from", today - timedelta(days=13)), ("to", today)):
        raw = source.get(name, "")
        try:
            values[name] = parse_day(raw) or default
        except ValueError as exc:
            errors[name] = str(exc)
            values[name] = default
    if values["from"] > values["to"] or (values["to"] - values["from"]).days >= MAX_DAYS:
        errors["from"] = f"Choose a range of 1 to {MAX_DAYS} days."
        values["from"], values["to"] = today - timedelta(days=13), today
    return values["from"], values["to"], errors


def _connection_or_404(provider: str):
    conn = connections.get(g.org, provider)
    if conn is None:
        abort(404)
    return conn


@bp.get("/")
@require_permission("usage:read")
def index():
    return render(INDEX, INDEX, connections=connections.of(g.org), labels=connections.LABELS,
                  hints=connections.KEY_HINTS, errors={})


@bp.post("/connections")
@require_permission("providers:manage")
def connect():
    provider = request.form.get("provider", "")
    try:
        conn = connections.connect(g.org, current_actor(), provider, request.form.get("secret", ""))
    except ValidationError as exc:
        return render(INDEX, INDEX, status=422, connections=connections.of(g.org), labels=connections.LABELS,
                      hints=connections.KEY_HINTS, errors={provider: exc.errors})
    enqueue("sync_provider_connection", conn.id)
    flash(f"{connections.LABELS[provider]} connected; the last 30 days are being pulled.", "success")
    return redirect(url_for("reconciliation.provider", provider=provider), 303)


@bp.post("/<provider>/disconnect")
@require_permission("providers:manage")
def disconnect(provider):
    connections.disconnect(g.org, current_actor(), provider)
    flash("Admin key removed. The reported history stays.", "success")
    return redirect(url_for("reconciliation.index"), 303)


@bp.post("/<provider>/sync")
@require_permission("providers:manage")
def sync_now(provider):
    enqueue("sync_provider_connection", _connection_or_404(provider).id)
    flash("Sync started.", "success")
    return redirect(url_for("reconciliation.provider", provider=provider), 303)


@bp.post("/<provider>/settings")
@require_permission("providers:manage")
def settings(provider):
    conn = _connection_or_404(provider)
    try:
        connections.update_settings(conn, current_actor(), tolerance_pct=request.form.get("tolerance_pct", ""),
                                    shadow_alert_usd=request.form.get("shadow_alert_usd", ""))
    except ValidationError as exc:
        first, last, _ = _range(g.org)
        return _page(conn, first, last, {}, status=422, settings_errors=exc.errors)
    return redirect(url_for("reconciliation.provider", provider=provider), 303)


@bp.post("/<provider>/keys")
@require_permission("providers:manage")
def mark_known(provider):
    _connection_or_404(provider)
    try:
        connections.mark_known(g.org, current_actor(), provider, request.form.get("key_id", ""),
                               request.form.get("label", ""))
    except ValidationError as exc:
        flash(" ".join(exc.errors.values()), "error")
    return redirect(url_for("reconciliation.provider", provider=provider), 303)


def _page(conn, first, last, errors, status=200, fix_errors=None, settings_errors=None):
    by_key = reconcile_keys.by_key(g.org, conn, first, last)
    return render(PAGE, PAGE, status=status, conn=conn, label=connections.LABELS[conn.provider], first=first,
                  last=last, errors=errors, days=reconcile.by_day(g.org, conn, first, last),
                  by_key=by_key, key_totals=reconcile_keys.totals(by_key),
                  checks=reconcile.cost_check(g.org, conn, first, last), progress=sync.progress(conn),
                  fixes=price_fix.suggestions(g.org, conn, first, last), fix_errors=fix_errors or {},
                  settings_errors=settings_errors or {})


@bp.get("/<provider>")
@require_permission("usage:read")
def provider(provider):
    conn = _connection_or_404(provider)
    first, last, errors = _range(g.org)
    return _page(conn, first, last, errors)


@bp.post("/<provider>/price-fix")
@require_permission("prices:manage")
def apply_price_fix(provider):
    """The cost check's one-click organization price override."""
    conn = _connection_or_404(provider)
    first, last, errors = _range(g.org, request.form)
    model = request.form.get("model", "")[:200]
    try:
        if errors:
            raise ValidationError(errors)
        row = price_fix.apply(g.org, current_actor(), conn, model, first, last)
    except ValidationError as exc:
        return _page(conn, first, last, {}, status=422, fix_errors={model: " ".join(exc.errors.values())})
    flash(f"Price for {row.provider}/{row.model} saved; its usage is being repriced.", "success")
    return redirect(url_for("reconciliation.provider", provider=provider, **{"from": first.isoformat(),
                                                                             "to": last.isoformat()}), 303)


@bp.get("/<provider>/hours")
@require_permission("usage:read")
def hours(provider):
    conn = _connection_or_404(provider)
    try:
        day = date.fromisoformat(request.args.get("day", ""))
    except ValueError:
        abort(404)
    model = request.args.get("model") or None
    return render(HOURS, HOURS, conn=conn, day=day, model=model, hours=reconcile.by_hour(g.org, conn, day, model))


@bp.get("/<provider>.csv")
@require_permission("usage:read")
def export(provider):
    conn = _connection_or_404(provider)
    first, last, _ = _range(g.org)
    by_key = request.args.get("by") == "key"
    name = f"reconciliation-{provider}{'-by-key' if by_key else ''}-{first.isoformat()}-{last.isoformat()}.csv"
    lines = (reconcile_keys.csv_lines if by_key else reconcile.csv_lines)(g.org, conn, first, last)
    return Response(lines, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@api_bp.get("/<provider>")
@api_key_required("read")
def api_report(provider):
    conn = connections.get(g.org, provider)
    if conn is None:
        return problem(404, "not-found", f"No {provider} admin key is connected.")
    first, last, errors = _range(g.org)
    if errors:
        return problem(422, "invalid-parameters", "; ".join(errors.values()), errors=errors)
    return jsonify(reconcile.report(g.org, conn, first, last))
