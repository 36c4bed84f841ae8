"""The organization's API keys: list, create, rotate and revoke. A new key's
full text appears once, in the response that created it, and never again."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, url_for

from costguardian import clock
from costguardian.authz import current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.forms.keys import GRACE_CHOICES, ApiKeyForm, RotateForm
from costguardian.rendering import external_url, render, toast
from costguardian.services import keys
from costguardian.services.team import orgs
from costguardian.services.errors import RuleViolation, ValidationError

bp = Blueprint("keys", __name__, url_prefix="/keys")

PAGE = "keys/index.html"
FORM, TABLE, ROW = "partials/keys/_form.html", "partials/keys/_table.html", "partials/keys/_row.html"
CREATED, ROTATED = "partials/keys/_created.html", "partials/keys/_rotated.html"


def _key_or_404(key_id: int):
    key = keys.get(g.org, key_id)
    if key is None:
        abort(404)
    return key


def _row_context() -> dict:
    """What a row needs: the clock for its status, people for "created by"."""
    people = {m.user_id: m.user for m in orgs.members(g.org)}
    return {"now": clock.now(), "today": clock.today(g.org), "people": people, "grace_choices": GRACE_CHOICES,
            "SCOPES": keys.SCOPES}


def _page_context(form: ApiKeyForm | None = None, revealed: dict | None = None, form_open: bool = False) -> dict:
    api_keys = list(keys.keys_of(g.org))
    return {**_row_context(), "keys": api_keys, "form": form or ApiKeyForm(g.org, formdata=None),
            "form_open": form_open or not api_keys, "revealed": revealed,
            "ingest_url": external_url("api.ingest_usage")}


@bp.get("/")
@require_permission("keys:manage")
def index():
    return render(PAGE, TABLE, **_page_context())


@bp.post("/")
@require_permission("keys:manage")
def create():
    form = ApiKeyForm(g.org)
    if form.validate():
        try:
            new = keys.create_key(g.org, current_actor(), form.name.data, form.scopes.data, env=form.env.data,
                                  expires_at=form.expires_at(), user=form.bound_user(),
                                  department=form.bound_department())
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            revealed = {"key": new.key, "plaintext": new.plaintext, "action": "created"}
            response = render(PAGE, CREATED, **_page_context(revealed=revealed))
            return toast(response, f"API key “{new.key.name}” created. Copy it now.")
    return render(PAGE, FORM, status=422, **_page_context(form=form, form_open=True))


@bp.post("/<int:key_id>/rotate")
@require_permission("keys:manage")
def rotate(key_id: int):
    key = _key_or_404(key_id)
    form = RotateForm()
    try:
        if not form.validate():
            raise ValidationError({"grace_hours": "Choose how long the old secret keeps working."})
        new = keys.rotate_key(key, current_actor(), form.grace_hours.data)
    except (ValidationError, RuleViolation) as exc:
        return _row_error(key, exc.message)
    revealed = {"key": new.key, "plaintext": new.plaintext, "action": "rotated"}
    response = render(PAGE, ROTATED, **_page_context(revealed=revealed), k=new.key)
    return toast(response, f"“{key.name}” has a new secret. Copy it now.")


@bp.post("/<int:key_id>/revoke")
@require_permission("keys:manage")
def revoke(key_id: int):
    key = keys.revoke_key(_key_or_404(key_id), current_actor())
    message = f"“{key.name}” was revoked; requests with it are refused."
    if htmx:
        return toast(render(PAGE, ROW, k=key, **_row_context()), message)
    flash(message, "success")
    return redirect(url_for("keys.index"))


def _row_error(key, message: str):
    if htmx:
        fresh = _key_or_404(key.id)  # the row as it is now, not as this request found it
        response = render(PAGE, ROW, status=422, k=fresh, error=message, **_row_context())
        return toast(response, message, "error")
    flash(message, "error")
    return redirect(url_for("keys.index"))
