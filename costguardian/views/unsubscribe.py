"""The unsubscribe link of every notification email: public, because the
signed token in the URL is the authorization (no sign-in, no CSRF token:
mail clients POST to it themselves, RFC 8058 one-click)."""
from __future__ import annotations

from flask import Blueprint, make_response, render_template, request

from costguardian.extensions import csrf
from costguardian.services.notifications import email as notification_email
from costguardian.services.actor import Actor

bp = Blueprint("unsubscribe", __name__, url_prefix="/notifications/unsubscribe")


def _invalid(exc: notification_email.InvalidLink):
    return make_response(render_template("unsubscribe/invalid.html", reason=str(exc)), 400)


@bp.get("/<token>")
def confirm(token: str):
    try:
        unsubscription = notification_email.read_unsubscribe_token(token)
    except notification_email.InvalidLink as exc:
        return _invalid(exc)
    return render_template("unsubscribe/confirm.html", u=unsubscription, token=token)


@bp.post("/<token>")
@csrf.exempt
def apply(token: str):
    try:
        unsubscription = notification_email.read_unsubscribe_token(token)
    except notification_email.InvalidLink as exc:
        return _invalid(exc)
    actor = Actor(user=unsubscription.user, ip=request.remote_addr or "",
                  user_agent=request.headers.get("User-Agent", "")[:512])
    notification_email.apply_unsubscribe(unsubscription, actor)
    return render_template("unsubscribe/done.html", u=unsubscription)
