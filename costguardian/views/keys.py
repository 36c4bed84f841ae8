"""The organization's API keys: list, create, rotate and revoke. A new key's
full text appears once, in the response that created it, and never again.

Each key has a page (GET /keys/<id>) with its details, its gateway rate
limits and attribution setting, and its gateway traffic: anyone who may read
usage sees it; owners and admins (keys:manage) change the limits there. The
organization's own gateway limits are set on the list page."""
from __future__ import annotations

import uuid

from flask import Blueprint, abort, flash, g, redirect, url_for
from flask_login import current_user

from costguardian import clock
from costguardian.authz import can, current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.forms.keys import GRACE_CHOICES, ApiKeyForm, GatewayLimitsForm, KeyLimitsForm, RotateForm
from costguardian.models import ApiKey, Membership
from costguardian.rendering import external_url, render, toast
from costguardian.services import keys
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.gateway import key_traffic, traffic
from costguardian.services.team import orgs, visibility

bp = Blueprint("keys", __name__, url_prefix="/keys")

PAGE = "keys/index.html"
FORM, TABLE, ROW = "partials/keys/_form.html", "partials/keys/_table.html", "partials/keys/_row.html"
CREATED, ROTATED = "partials/keys/_created.html", "partials/keys/_rotated.html"
DETAIL, LIMITS, ORG_LIMITS = "keys/detail.html", "partials/keys/_limits.html", "partials/keys/_org_limits.html"
LATENCY_PAGE, LATENCY = "keys/latency.html", "partials/keys/_latency.html"
MANAGE, OWN = "keys:manage", "keys:own"


def _event_id() -> str:
    """A fresh event_id for the new key's copy-paste example."""
    return f"first-event-{uuid.uuid4()}"


def _all_keys() -> bool:
    """Owners and admins manage every key; a member only their own (keys:own)."""
    return can(MANAGE)


def _key_or_404(key_id: int, own: bool = False):
    """The organization's key; with `own`, for someone who may manage only
    their own keys, only one bound to them (another's is "not found")."""
    key = keys.get(g.org, key_id)
    if key is None or (own and not _all_keys() and key.user_id != current_user.id):
        abort(404)
    return key


def _visible_key_or_404(key_id: int):
    """A key whose traffic this person may read: a member who sees only their
    own detail (services/team/visibility.py) reads their own keys' and keys
    bound to nobody (services'), not another person's."""
    key = keys.get(g.org, key_id)
    if key is None or not (visibility.sees_everyone(g.org, g.membership.role)
                           or key.user_id in (None, current_user.id)):
        abort(404)
    return key


def _row_context() -> dict:
    """What a row needs: the clock for its status, people for "created by"."""
    creators = ApiKey.in_org(g.org).select(ApiKey.created_by)  # not every member: there may be 10,000
    people = {m.user_id: m.user for m in orgs.members(g.org).where(Membership.user.in_(creators))}
    return {"now": clock.now(), "today": clock.today(g.org), "people": people, "grace_choices": GRACE_CHOICES,
            "SCOPES": keys.SCOPES}


def _org_limits_form(formdata=None) -> GatewayLimitsForm:
    if formdata is not None:
        return GatewayLimitsForm()
    return GatewayLimitsForm(formdata=None, data={"rpm_limit": g.org.gateway_rpm_limit or "",
                                                  "tpm_limit": g.org.gateway_tpm_limit or ""})


def _page_context(form: ApiKeyForm | None = None, revealed: dict | None = None, form_open: bool = False,
                  org_limits_form: GatewayLimitsForm | None = None, org_limits_saved: bool = False) -> dict:
    api_keys = [k for k in keys.keys_of(g.org) if _all_keys() or k.user_id == current_user.id]
    own_only = None if _all_keys() else current_user._get_current_object()
    return {**_row_context(), "keys": api_keys, "form": form or ApiKeyForm(g.org, formdata=None, own_only=own_only),
            "form_open": form_open or not api_keys, "revealed": revealed,
            "ingest_url": external_url("api.ingest_usage"),
            "org_limits_form": org_limits_form or _org_limits_form(), "org_limits_saved": org_limits_saved,
            "may_manage": can(MANAGE)}


@bp.get("/")
@require_permission(OWN)
def index():
    return render(PAGE, TABLE, **_page_context())


@bp.post("/")
@require_permission(OWN)
def create():
    form = ApiKeyForm(g.org, own_only=None if _all_keys() else current_user._get_current_object())
    if form.validate():
        try:
            new = keys.create_key(g.org, current_actor(), form.name.data, form.scopes.data, env=form.env.data,
                                  expires_at=form.expires_at(), user=form.bound_user(),
                                  department=form.bound_department(), personal=not _all_keys())
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            revealed = {"key": new.key, "plaintext": new.plaintext, "action": "created", "event_id": _event_id()}
            response = render(PAGE, CREATED, **_page_context(revealed=revealed))
            return toast(response, f"API key “{new.key.name}” created. Copy it now.")
    return render(PAGE, FORM, status=422, **_page_context(form=form, form_open=True))


@bp.post("/<int:key_id>/rotate")
@require_permission(OWN)
def rotate(key_id: int):
    key = _key_or_404(key_id, own=True)
    form = RotateForm()
    try:
        if not form.validate():
            raise ValidationError({"grace_hours": "Choose how long the old secret keeps working."})
        new = keys.rotate_key(key, current_actor(), form.grace_hours.data)
    except (ValidationError, RuleViolation) as exc:
        return _row_error(key, exc.message)
    revealed = {"key": new.key, "plaintext": new.plaintext, "action": "rotated", "event_id": _event_id()}
    response = render(PAGE, ROTATED, **_page_context(revealed=revealed), k=new.key)
    return toast(response, f"“{key.name}” has a new secret. Copy it now.")


@bp.post("/<int:key_id>/revoke")
@require_permission(OWN)
def revoke(key_id: int):
    key = keys.revoke_key(_key_or_404(key_id, own=True), current_actor())
    message = f"“{key.name}” was revoked; requests with it are refused."
    if htmx:
        return toast(render(PAGE, ROW, k=key, **_row_context()), message)
    flash(message, "success")
    return redirect(url_for("keys.index"))


def _limits_form(key, formdata=None) -> KeyLimitsForm:
    if formdata is not None:
        return KeyLimitsForm()
    return KeyLimitsForm(formdata=None, data={"rpm_limit": key.rpm_limit or "", "tpm_limit": key.tpm_limit or "",
                                              "attribution_override": key.attribution_override})


def _detail_context(key, limits_form: KeyLimitsForm | None = None, limits_saved: bool = False) -> dict:
    found = key_traffic.of_key(g.org, key, clock.now())
    week = found.windows[-1]
    return {**_row_context(), "k": key, "traffic": found, "has_forwarded": week.calls > 0,
            "may_manage": can(MANAGE), "limits_form": limits_form or _limits_form(key),
            "limits_saved": limits_saved}


@bp.get("/<int:key_id>")
@require_permission("usage:read")
def detail(key_id: int):
    return render(DETAIL, DETAIL, **_detail_context(_visible_key_or_404(key_id)))


@bp.get("/<int:key_id>/latency")
@require_permission("usage:read")
def latency(key_id: int):
    """Latency by model over the last 7 days, from the key's latest calls
    (traffic.latency_by_model's sample); the key's page loads it after itself
    so that the page never waits for the percentiles."""
    key = _visible_key_or_404(key_id)
    end = clock.now()
    start = end - key_traffic.WINDOWS[-1][2]
    models = traffic.latency_by_model(g.org, start, end, api_key_id=key.id)
    return render(LATENCY_PAGE, LATENCY, k=key, models=models)


@bp.post("/<int:key_id>/limits")
@require_permission(MANAGE)
def update_limits(key_id: int):
    key = _key_or_404(key_id)
    form = _limits_form(key, formdata=True)
    if form.validate():
        try:
            keys.set_gateway_limits(key, current_actor(), form.rpm_limit.data, form.tpm_limit.data,
                                    form.attribution_override.data)
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            message = f"Gateway limits of “{key.name}” saved."
            if htmx:
                return toast(render(DETAIL, LIMITS, **_detail_context(key, limits_saved=True)), message)
            flash(message, "success")
            return redirect(url_for("keys.detail", key_id=key.id))
    return render(DETAIL, LIMITS, status=422, **_detail_context(key, limits_form=form))


@bp.post("/gateway-limits")
@require_permission(MANAGE)
def update_org_limits():
    form = _org_limits_form(formdata=True)
    if form.validate():
        try:
            keys.set_org_gateway_limits(g.org, current_actor(), form.rpm_limit.data, form.tpm_limit.data)
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            message = "The organization's gateway limits were saved."
            if htmx:
                return toast(render(PAGE, ORG_LIMITS, **_page_context(org_limits_saved=True)), message)
            flash(message, "success")
            return redirect(url_for("keys.index"))
    return render(PAGE, ORG_LIMITS, status=422, **_page_context(org_limits_form=form))


def _row_error(key, message: str):
    if htmx:
        fresh = _key_or_404(key.id, own=True)  # the row as it is now, not as this request found it
        response = render(PAGE, ROW, status=422, k=fresh, error=message, **_row_context())
        return toast(response, message, "error")
    flash(message, "error")
    return redirect(url_for("keys.index"))
