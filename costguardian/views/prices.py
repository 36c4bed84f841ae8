"""Prices: models without a known price, the organization's own prices and
its model aliases."""
from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, g, redirect, request, url_for

from costguardian.authz import current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.forms import apply_errors
from costguardian.forms.prices import ModelAliasForm, PriceOverrideForm
from costguardian.rendering import render, toast
from costguardian.services.usage import catalog, prices
from costguardian.services.errors import ValidationError

bp = Blueprint("prices", __name__, url_prefix="/prices")

PAGE = "prices/index.html"
OVERRIDES, ALIASES = "partials/prices/_overrides.html", "partials/prices/_aliases.html"


def _context(form=None, alias_form=None, editing=None, **extra) -> dict:
    return {"unpriced": prices.unpriced(g.org), "overrides": prices.override_rows(g.org),
            "aliases": prices.aliases_of(g.org), "providers": catalog.known_providers(),
            "form": form or PriceOverrideForm(formdata=None), "alias_form": alias_form or ModelAliasForm(formdata=None),
            "editing": editing, **extra}


def _override_or_404(override_id: int):
    override = prices.get_override(g.org, override_id)
    if override is None:
        abort(404)
    return override


def _done(partial: str, message: str):
    """After a change: the section again (with the unpriced panel out of band)
    for htmx; post/redirect/get otherwise."""
    if not htmx:
        flash(message, "success")
        return redirect(url_for("prices.index"))
    return toast(render(PAGE, partial, **_context(oob=True)), message)


@bp.get("/")
@require_permission("usage:read")
def index():
    return render(PAGE, PAGE, **_context())


@bp.get("/overrides/new")
@require_permission("prices:manage")
def new_override():
    """The override form prefilled from the unpriced panel's "Add a price"."""
    try:
        effective_from = date.fromisoformat(request.args.get("effective_from", ""))
    except ValueError:
        effective_from = None
    form = PriceOverrideForm(formdata=None, data={
        "provider": request.args.get("provider", "")[:64], "model": request.args.get("model", "")[:200],
        "effective_from": effective_from})
    return render(PAGE, OVERRIDES, **_context(form=form))


@bp.post("/overrides")
@require_permission("prices:manage")
def create_override():
    form = PriceOverrideForm()
    if form.validate():
        try:
            row = prices.create_override(g.org, current_actor(), **form.values())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _done(OVERRIDES, f"Price for {row.provider}/{row.model} saved; its usage is being repriced.")
    return render(PAGE, OVERRIDES, status=422, **_context(form=form))


@bp.get("/overrides/<int:override_id>/edit")
@require_permission("prices:manage")
def edit_override(override_id: int):
    override = _override_or_404(override_id)
    form = PriceOverrideForm(formdata=None, data=prices.override_form_data(g.org, override))
    return render(PAGE, OVERRIDES, **_context(form=form, editing=override))


@bp.post("/overrides/<int:override_id>")
@require_permission("prices:manage")
def update_override(override_id: int):
    override = _override_or_404(override_id)
    form = PriceOverrideForm()
    if form.validate():
        try:
            override = prices.update_override(override, current_actor(), **form.values())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _done(OVERRIDES, f"Price for {override.provider}/{override.model} saved; "
                                    "its usage is being repriced.")
    return render(PAGE, OVERRIDES, status=422, **_context(form=form, editing=override))


@bp.post("/overrides/<int:override_id>/delete")
@require_permission("prices:manage")
def delete_override(override_id: int):
    override = _override_or_404(override_id)
    prices.delete_override(override, current_actor())
    return _done(OVERRIDES, f"Price for {override.provider}/{override.model} deleted; "
                            "its usage is being repriced from the catalog.")


@bp.post("/aliases")
@require_permission("prices:manage")
def create_alias():
    form = ModelAliasForm()
    if form.validate():
        try:
            alias = prices.create_alias(g.org, current_actor(), **form.values())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _done(ALIASES, f"'{alias.alias}' now counts as {alias.provider}/{alias.model}.")
    return render(PAGE, ALIASES, status=422, **_context(alias_form=form))


@bp.post("/aliases/<int:alias_id>/delete")
@require_permission("prices:manage")
def delete_alias(alias_id: int):
    alias = prices.get_alias(g.org, alias_id)
    if alias is None:
        abort(404)
    prices.delete_alias(alias, current_actor())
    return _done(ALIASES, f"Alias '{alias.alias}' deleted.")
