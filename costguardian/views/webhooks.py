"""The organization's webhook endpoints: list, create (the signing secret
shown once), edit, roll the secret, delete, send a test event, and each
endpoint's delivery log with manual redelivery."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, url_for

from costguardian.authz import current_actor, require_permission
from costguardian.extensions import htmx
from costguardian.forms.webhooks import WebhookForm
from costguardian.models import Delivery, WebhookEndpoint
from costguardian.rendering import redirect_to, render, toast, trigger
from costguardian.services.notifications import webhooks
from costguardian.services.errors import RuleViolation, ValidationError

bp = Blueprint("webhooks", __name__, url_prefix="/notifications/webhooks")

INDEX, SHOW, EDIT = "webhooks/index.html", "webhooks/show.html", "webhooks/edit.html"
FORM, TABLE = "partials/webhooks/_form.html", "partials/webhooks/_table.html"
CREATED, SECRET = "partials/webhooks/_created.html", "partials/webhooks/_secret.html"
LOG, SENT = "partials/webhooks/_log.html", "partials/webhooks/_sent.html"


def _endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.get_in_org(g.org, endpoint_id)
    if endpoint is None:
        abort(404)
    return endpoint


def _index_context(form: WebhookForm | None = None, revealed=None, form_open: bool = False) -> dict:
    endpoints = webhooks.endpoints_of(g.org)
    return {"endpoints": endpoints, "form": form or WebhookForm(formdata=None), "revealed": revealed,
            "form_open": form_open or not endpoints, "kinds": webhooks.KINDS}


def _log_context(endpoint: WebhookEndpoint, args=None) -> dict:
    args = request.args if args is None else args
    status = args.get("status", "")
    status = status if status in webhooks.LOG_STATUSES else ""
    try:
        page = min(max(int(args.get("page", 1)), 1), 100_000)
    except ValueError:
        page = 1
    rows, has_more = webhooks.log(endpoint, status, page)
    return {"endpoint": endpoint, "deliveries": rows, "has_more": has_more, "status_filter": status, "page": page,
            "statuses": webhooks.LOG_STATUSES, "redeliverable": webhooks.REDELIVERABLE,
            "pending": webhooks.has_pending(endpoint), "kinds": webhooks.KINDS}


@bp.get("/")
@require_permission("notifications:manage")
def index():
    return render(INDEX, TABLE, **_index_context())


@bp.post("/")
@require_permission("notifications:manage")
def create():
    form = WebhookForm()
    if form.validate():
        try:
            new = webhooks.create_endpoint(g.org, current_actor(), form.name.data, form.url.data, form.kind.data,
                                           form.chosen_types(), form.is_active.data)
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            revealed = {"endpoint": new.endpoint, "secret": new.secret, "action": "created"}
            response = render(INDEX, CREATED, **_index_context(revealed=revealed))
            return toast(response, f"Webhook “{new.endpoint.name}” created.")
    return render(INDEX, FORM, status=422, **_index_context(form=form, form_open=True))


@bp.get("/<int:endpoint_id>")
@require_permission("notifications:manage")
def show(endpoint_id: int):
    """The endpoint and its delivery log; htmx asks for the log alone (filters,
    pages, the refresh while deliveries are in flight)."""
    endpoint = _endpoint_or_404(endpoint_id)
    return render(SHOW, LOG, **_log_context(endpoint), revealed=None)


@bp.get("/<int:endpoint_id>/edit")
@require_permission("notifications:manage")
def edit(endpoint_id: int):
    endpoint = _endpoint_or_404(endpoint_id)
    return render(EDIT, FORM, endpoint=endpoint, form=WebhookForm.for_endpoint(endpoint), kinds=webhooks.KINDS)


@bp.post("/<int:endpoint_id>/edit")
@require_permission("notifications:manage")
def update(endpoint_id: int):
    endpoint = _endpoint_or_404(endpoint_id)
    form = WebhookForm()
    if form.validate():
        try:
            webhooks.update_endpoint(endpoint, current_actor(), form.name.data, form.url.data, form.kind.data,
                                     form.chosen_types(), form.is_active.data)
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            flash(f"Webhook “{endpoint.name}” saved.", "success")
            return redirect_to(url_for("webhooks.show", endpoint_id=endpoint.id))
    return render(EDIT, FORM, status=422, endpoint=_endpoint_or_404(endpoint_id), form=form, kinds=webhooks.KINDS)


@bp.post("/<int:endpoint_id>/secret")
@require_permission("notifications:manage")
def roll_secret(endpoint_id: int):
    new = webhooks.roll_secret(_endpoint_or_404(endpoint_id), current_actor())
    revealed = {"endpoint": new.endpoint, "secret": new.secret, "action": "rolled"}
    response = render(SHOW, SECRET, **_log_context(new.endpoint), revealed=revealed)
    return toast(response, f"“{new.endpoint.name}” has a new signing secret. Copy it now.")


@bp.post("/<int:endpoint_id>/delete")
@require_permission("notifications:manage")
def delete(endpoint_id: int):
    endpoint = _endpoint_or_404(endpoint_id)
    webhooks.delete_endpoint(endpoint, current_actor())
    flash(f"Webhook “{endpoint.name}” deleted.", "success")
    return redirect_to(url_for("webhooks.index"))


@bp.post("/<int:endpoint_id>/test")
@require_permission("notifications:manage")
def send_test(endpoint_id: int):
    endpoint = _endpoint_or_404(endpoint_id)
    delivery = webhooks.send_test(endpoint, current_actor())
    return _after_send(endpoint, delivery, "Test event")


@bp.post("/<int:endpoint_id>/deliveries/<int:delivery_id>/redeliver")
@require_permission("notifications:manage")
def redeliver(endpoint_id: int, delivery_id: int):
    endpoint = _endpoint_or_404(endpoint_id)
    delivery = Delivery.get_in_org(g.org, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        abort(404)
    try:
        copy = webhooks.redeliver(delivery, current_actor())
    except RuleViolation as exc:
        if htmx:
            return toast(render(SHOW, LOG, status=422, **_log_context(endpoint), revealed=None), exc.message, "error")
        flash(exc.message, "error")
        return redirect(url_for("webhooks.show", endpoint_id=endpoint.id))
    return _after_send(endpoint, copy, "Redelivery")


def _after_send(endpoint: WebhookEndpoint, delivery: Delivery, what: str):
    """The log with the new delivery on top (it may already be sent when the
    queue runs tasks at once), and a toast that says how it went."""
    delivery = Delivery.get_by_id(delivery.id)
    endpoint = _endpoint_or_404(endpoint.id)  # its failure count may have changed
    if delivery.status == "sent":
        message, level = f"{what} delivered (HTTP {delivery.response_code}).", "success"
    elif delivery.status in ("failed", "retrying", "disabled"):
        message, level = f"{what} failed: {delivery.last_error or delivery.status}.", "error"
        if endpoint.disabled_reason and not endpoint.is_active and delivery.status == "disabled":
            message += " The endpoint was disabled."
    else:
        message, level = f"{what} queued; the log below shows when it is delivered.", "success"
    if htmx:
        # The log starts again from its first page, unfiltered, so the new delivery shows.
        response = render(SHOW, SENT, **_log_context(endpoint, args={}), revealed=None)
        return trigger(toast(response, message, level), "webhookDeliveriesChanged")
    flash(message, level)
    return redirect(url_for("webhooks.show", endpoint_id=endpoint.id))
