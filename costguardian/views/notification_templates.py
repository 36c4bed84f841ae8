"""Organizations' own email templates: the list of event types, the editor
with its live preview, save, reset to the default, and a test send."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from flask_login import current_user

from costguardian.authz import current_actor, require_permission
from costguardian.forms import apply_errors
from costguardian.forms.notification_templates import TemplateOverrideForm
from costguardian.rendering import redirect_to, render
from costguardian.services.notifications import templates as email_templates, email as notification_email
from costguardian.services.notifications import types
from costguardian.services.errors import ValidationError
from costguardian.views.admin_outbox import sandboxed_html

bp = Blueprint("notification_templates", __name__, url_prefix="/notifications/templates")

EDIT, PREVIEW = "notification_templates/edit.html", "partials/notification_templates/_preview.html"


def _type_or_404(key: str) -> types.EventType:
    if key not in types.REGISTRY:
        abort(404)
    return types.REGISTRY[key]


def _preview(etype, subject: str, body: str) -> dict:
    """The preview's context: the rendered email, or the errors."""
    try:
        return {"preview": email_templates.preview(g.org, etype, subject, body, user=current_user),
                "errors": {}, "subject": subject, "body": body}
    except ValidationError as exc:
        return {"preview": None, "errors": exc.errors, "subject": subject, "body": body}


def _edit_context(etype, form=None) -> dict:
    override = email_templates.override_of(g.org, etype.key)
    if form is None:
        source = override or email_templates.defaults(etype)
        form = TemplateOverrideForm(formdata=None, data={"subject": source.subject, "body": source.body})
    return {"etype": etype, "override": override, "form": form, "defaults": email_templates.defaults(etype),
            "variables": email_templates.variables(etype),
            **_preview(etype, form.subject.data or "", form.body.data or "")}


@bp.get("/")
@require_permission("notifications:manage")
def index():
    return render_template("notification_templates/index.html", rows=email_templates.rows(g.org))


@bp.get("/<key>")
@require_permission("notifications:manage")
def edit(key: str):
    return render(EDIT, EDIT, **_edit_context(_type_or_404(key)))


@bp.post("/<key>/preview")
@require_permission("notifications:manage")
def preview(key: str):
    etype = _type_or_404(key)
    form = TemplateOverrideForm()
    context = _preview(etype, form.subject.data or "", form.body.data or "")
    return render(PREVIEW, PREVIEW, status=422 if context["errors"] else 200, etype=etype, **context)


@bp.post("/<key>/preview.html")
@require_permission("notifications:manage")
def preview_html(key: str):
    """The HTML part alone, for the preview's sandboxed iframe."""
    etype = _type_or_404(key)
    form = TemplateOverrideForm()
    context = _preview(etype, form.subject.data or "", form.body.data or "")
    if context["errors"]:
        return sandboxed_html("<p>Fix the template's errors to see the HTML part.</p>", status=422)
    return sandboxed_html(context["preview"].html)


@bp.post("/<key>")
@require_permission("notifications:manage")
def save(key: str):
    etype = _type_or_404(key)
    form = TemplateOverrideForm()
    if form.validate():
        try:
            email_templates.save(g.org, etype, form.subject.data or "", form.body.data or "", current_actor())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            flash(f"Saved: {etype.label} emails now use your template.", "success")
            return redirect(url_for("notification_templates.edit", key=key))
    return render(EDIT, EDIT, status=422, **_edit_context(etype, form))


@bp.post("/<key>/reset")
@require_permission("notifications:manage")
def reset(key: str):
    etype = _type_or_404(key)
    if email_templates.reset(g.org, etype, current_actor()):
        flash(f"{etype.label} emails use the default template again.", "success")
    return redirect_to(url_for("notification_templates.edit", key=key))


@bp.post("/<key>/test")
@require_permission("notifications:manage")
def send_test(key: str):
    etype = _type_or_404(key)
    notification_email.send_test(g.org, etype, current_user._get_current_object())
    flash(f"A test email with the example values is on its way to {current_user.email}; it uses the saved "
          "template (save your changes first to test them).", "success")
    return redirect(url_for("notification_templates.edit", key=key))
