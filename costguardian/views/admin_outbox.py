"""The platform outbox (superadmins): every stored email, its status and both parts."""
from __future__ import annotations

from flask import Blueprint, abort, make_response, request

from costguardian.authz import superadmin_required
from costguardian.rendering import render
from costguardian.services.notifications import outbox

bp = Blueprint("admin_outbox", __name__, url_prefix="/admin/outbox")

PAGE, ROWS = "admin/outbox.html", "partials/admin/_outbox_rows.html"

# An email's HTML is shown in a sandboxed iframe, from its own response: no
# scripts, no requests, no access to the app's origin; inline styles allowed
# there (emails need them) while the app's pages keep their strict policy.
SANDBOXED_HTML_POLICY = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                         "frame-ancestors 'self'")


def sandboxed_html(html: str, status: int = 200):
    response = make_response(html, status)
    response.mimetype = "text/html"
    response.headers["Content-Security-Policy"] = SANDBOXED_HTML_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.get("/")
@superadmin_required
def index():
    filters = outbox.parse_filters(request.args)
    messages, has_next = outbox.search(filters)
    return render(PAGE, ROWS, messages=messages, has_next=has_next, filters=filters, statuses=outbox.STATUSES)


@bp.get("/<int:message_id>")
@superadmin_required
def show(message_id: int):
    message = outbox.get(message_id)
    if message is None:
        abort(404)
    return render("admin/outbox_message.html", "admin/outbox_message.html", message=message,
                  headers=outbox.headers_of(message))


@bp.get("/<int:message_id>/html")
@superadmin_required
def html(message_id: int):
    message = outbox.get(message_id)
    if message is None or not message.html_body:
        abort(404)
    return sandboxed_html(message.html_body)
