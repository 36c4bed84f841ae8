"""The organization's AI provider keys (the gateway's vault): list, add
(checked with the provider first), change settings, replace the key, make
default, enable or disable, delete. A key is never shown again after it is
saved: pages carry only its last four characters."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, url_for

from costguardian.authz import current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.forms.providers import CredentialForm, CredentialSettingsForm, ReplaceSecretForm
from costguardian.rendering import redirect_to, render, toast
from costguardian.services.errors import ValidationError
from costguardian.services.gateway import providers, vault

bp = Blueprint("providers", __name__, url_prefix="/providers")

INDEX, EDIT = "providers/index.html", "providers/edit.html"
FORM, TABLE, CREATED = "partials/providers/_form.html", "partials/providers/_table.html", "partials/providers/_created.html"
SETTINGS, REPLACE = "partials/providers/_settings_form.html", "partials/providers/_replace_form.html"


def _credential_or_404(credential_id: int):
    credential = vault.get(g.org, credential_id)
    if credential is None:
        abort(404)
    return credential


def _index_context(form: CredentialForm | None = None, form_open: bool = False) -> dict:
    credentials = vault.credentials_of(g.org)
    return {"credentials": credentials, "form": form or CredentialForm(formdata=None), "catalogue": providers.PROVIDERS,
            "form_open": form_open or not credentials}


def _edit_context(credential, settings: CredentialSettingsForm | None = None,
                  replace: ReplaceSecretForm | None = None) -> dict:
    entry = vault.provider_of(credential)
    return {"credential": credential, "entry": entry, "calls_go_to": providers.base_url_for(entry, credential.base_url),
            "settings": settings or CredentialSettingsForm.for_credential(credential),
            "replace": replace or ReplaceSecretForm.for_credential(credential)}


def _after_change(message: str):
    """The refreshed table and a toast for htmx; post/redirect/get otherwise."""
    if htmx:
        return toast(render(INDEX, TABLE, **_index_context()), message)
    flash(message, "success")
    return redirect(url_for("providers.index"))


@bp.get("/")
@require_permission("providers:manage")
def index():
    return render(INDEX, TABLE, **_index_context())


@bp.post("/")
@require_permission("providers:manage")
def create():
    form = CredentialForm()
    if form.validate():
        try:
            credential = vault.add(g.org, current_actor(), form.provider.data, form.label.data, form.secret.data,
                                   base_url=form.base_url.data, api_version=form.api_version.data,
                                   deployments=form.deployments.data, allowed_models=form.allowed_models.data,
                                   make_default=form.is_default.data, enabled=form.is_enabled.data)
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            message = f"{providers.PROVIDERS[credential.provider].label} key “{credential.label}” saved."
            if htmx:
                return toast(render(INDEX, CREATED, **_index_context()), message)
            flash(message, "success")
            return redirect(url_for("providers.index"))
    return render(INDEX, FORM, status=422, **_index_context(form=form, form_open=True))


@bp.get("/<int:credential_id>")
@require_permission("providers:manage")
def edit(credential_id: int):
    return render(EDIT, SETTINGS, **_edit_context(_credential_or_404(credential_id)))


@bp.post("/<int:credential_id>")
@require_permission("providers:manage")
def update(credential_id: int):
    credential = _credential_or_404(credential_id)
    form = CredentialSettingsForm()
    if form.validate():
        try:
            vault.update(credential, current_actor(), label=form.label.data, allowed_models=form.allowed_models.data,
                         deployments=form.deployments.data, make_default=form.is_default.data,
                         enabled=form.is_enabled.data)
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            flash(f"“{credential.label}” saved.", "success")
            return redirect_to(url_for("providers.index"))
    return render(EDIT, SETTINGS, status=422, **_edit_context(_credential_or_404(credential_id), settings=form))


@bp.post("/<int:credential_id>/secret")
@require_permission("providers:manage")
def replace_secret(credential_id: int):
    credential = _credential_or_404(credential_id)
    form = ReplaceSecretForm()
    custom = vault.provider_of(credential).custom_base_url
    if form.validate():
        try:
            vault.replace_secret(credential, current_actor(), form.secret.data,
                                 base_url=form.base_url.data if custom else None,
                                 api_version=form.api_version.data if custom else None)
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            ends = f"; it ends in …{credential.secret_last4}" if credential.secret_last4 else ""
            what = "replaced" if form.secret.data.strip() else "checked: the provider accepts it"
            flash(f"The key of “{credential.label}” was {what}{ends}.", "success")
            return redirect_to(url_for("providers.index"))
    return render(EDIT, REPLACE, status=422, **_edit_context(_credential_or_404(credential_id), replace=form))


@bp.post("/<int:credential_id>/default")
@require_permission("providers:manage")
def make_default(credential_id: int):
    credential = vault.make_default(_credential_or_404(credential_id), current_actor())
    return _after_change(f"“{credential.label}” is now the default {vault.provider_of(credential).label} key.")


@bp.post("/<int:credential_id>/enabled")
@require_permission("providers:manage")
def set_enabled(credential_id: int):
    enabled = request.form.get("enabled") == "1"
    credential = vault.set_enabled(_credential_or_404(credential_id), current_actor(), enabled)
    return _after_change(f"“{credential.label}” is {'enabled' if enabled else 'disabled'}.")


@bp.post("/<int:credential_id>/delete")
@require_permission("providers:manage")
def delete(credential_id: int):
    credential = _credential_or_404(credential_id)
    successor = vault.delete(credential, current_actor())
    message = f"“{credential.label}” deleted."
    if successor is not None:
        message += f" “{successor.label}” is now the default {vault.provider_of(successor).label} key."
    return _after_change(message)
