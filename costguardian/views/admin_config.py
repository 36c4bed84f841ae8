"""Platform console: Configuration (superadmins only, reading included).
Every platform setting with its value in effect and where that comes from
(an environment variable wins where set), one form per setting or group,
and the global price overrides. Every change is audit-logged by the services."""
from __future__ import annotations

from flask import Blueprint, abort, flash, request, url_for

from costguardian import clock
from costguardian.authz import current_actor, platform_required
from costguardian.extensions import htmx
from costguardian.forms import apply_errors
from costguardian.forms.prices import PriceOverrideForm
from costguardian.rendering import redirect_to, render, toast
from costguardian.services.billing import plans
from costguardian.services.errors import ValidationError
from costguardian.services.platform import global_prices, settings
from costguardian.services.usage import catalog

bp = Blueprint("admin_config", __name__, url_prefix="/admin/config")

PAGE = "admin/config.html"
SECTIONS = {
    "maintenance_banner": "partials/admin/config/_banner.html",
    "signups": "partials/admin/config/_signups.html",
    "default_plan": "partials/admin/config/_default_plan.html",
    "impersonation_enabled": "partials/admin/config/_impersonation.html",
    "mail_from": "partials/admin/config/_mail_from.html",
    "prices": "partials/admin/config/_prices.html",
}
PRICE_DATE_HELP = "From midnight UTC; earlier calls keep the catalog's price (or their organization's own)."


def _price_form(**kwargs) -> PriceOverrideForm:
    form = PriceOverrideForm(**kwargs)
    form.effective_from.description = PRICE_DATE_HELP
    return form


def _context(**extra) -> dict:
    return {"items": {item["setting"].key: item for item in settings.overview()}, "plans": plans.listed(),
            "levels": settings.BANNER_LEVELS, "modes": settings.SIGNUP_MODES, "price_rows": global_prices.rows(),
            "providers": catalog.known_providers(), "price_form": _price_form(formdata=None), "editing": None,
            "errors": {}, "submitted": {}, "now_minute": clock.now().isoformat(timespec="minutes"), **extra}


def _done(section: str, message: str):
    """After a change: the section again with a toast (htmx), else post/redirect/get."""
    if not htmx:
        flash(message, "success")
        return redirect_to(url_for("admin_config.index") + f"#config-{section}")
    return toast(render(PAGE, SECTIONS[section], **_context()), message)


def _invalid(section: str, **extra):
    return render(PAGE, SECTIONS[section], status=422, **_context(**extra))


def _save(section: str, values: dict, message: str):
    """Validate every submitted setting of the section, then store them all
    (or none, with 422 and each field's message)."""
    errors, cleaned = {}, {}
    for key, value in values.items():
        try:
            cleaned[key] = settings.validate(key, value)
        except ValidationError as exc:
            errors.update(exc.errors)
    if errors:
        return _invalid(section, errors=errors, submitted=request.form)
    for key, value in cleaned.items():
        settings.put(key, value, current_actor())
    overridden = [settings.SETTINGS[key].env for key in values if settings.source(key) == "environment"]
    if overridden:
        message += f" The environment variable {', '.join(overridden)} still wins while it is set."
    return _done(section, message)


@bp.get("/")
@platform_required("write")
def index():
    return render(PAGE, PAGE, **_context())


@bp.post("/banner")
@platform_required("write")
def save_banner():
    banner = {name: request.form.get(name, "") for name in ("text", "level", "starts_at", "ends_at")}
    return _save("maintenance_banner", {"maintenance_banner": banner}, "Maintenance banner saved.")


@bp.post("/banner/clear")
@platform_required("write")
def clear_banner():
    settings.put("maintenance_banner", None, current_actor())
    return _done("maintenance_banner", "Maintenance banner cleared.")


@bp.post("/signups")
@platform_required("write")
def save_signups():
    # A field the environment sets is read-only (disabled), so the browser leaves it out.
    values = {key: request.form[key] for key in ("signups", "signup_domains") if key in request.form}
    return _save("signups", values, "Sign-up policy saved.")


@bp.post("/default-plan")
@platform_required("write")
def save_default_plan():
    return _save("default_plan", {"default_plan": request.form.get("default_plan", "")}, "Default plan saved.")


@bp.post("/impersonation")
@platform_required("write")
def save_impersonation():
    raw = request.form.get("impersonation_enabled", "")
    value = {"on": True, "off": False}.get(raw, raw)
    return _save("impersonation_enabled", {"impersonation_enabled": value},
                 "Impersonation " + ("allowed." if value is True else "switched off." if value is False else "saved."))


@bp.post("/mail-from")
@platform_required("write")
def save_mail_from():
    return _save("mail_from", {"mail_from": request.form.get("mail_from", "")}, "Email sender saved.")


# --- global price overrides --------------------------------------------------------

def _price_or_404(row_id: int):
    row = global_prices.get(row_id)
    if row is None:
        abort(404)
    return row


@bp.post("/prices")
@platform_required("write")
def create_price():
    form = _price_form()
    if form.validate():
        try:
            row = global_prices.create(current_actor(), **form.values())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _done("prices", f"Global price for {row.provider}/{row.model} saved; usage is being repriced.")
    return _invalid("prices", price_form=form)


@bp.get("/prices/<int:row_id>/edit")
@platform_required("write")
def edit_price(row_id: int):
    row = _price_or_404(row_id)
    form = _price_form(formdata=None, data=global_prices.form_data(row))
    return render(PAGE, SECTIONS["prices"], **_context(price_form=form, editing=row))


@bp.post("/prices/<int:row_id>")
@platform_required("write")
def update_price(row_id: int):
    row = _price_or_404(row_id)
    form = _price_form()
    if form.validate():
        try:
            row = global_prices.update(row, current_actor(), **form.values())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _done("prices", f"Global price for {row.provider}/{row.model} saved; usage is being repriced.")
    return _invalid("prices", price_form=form, editing=row)


@bp.post("/prices/<int:row_id>/delete")
@platform_required("write")
def delete_price(row_id: int):
    row = _price_or_404(row_id)
    global_prices.delete(row, current_actor())
    return _done("prices", f"Global price for {row.provider}/{row.model} deleted; usage is being repriced.")
