"""The bell, the notification center, a member's preferences, and the
organization's delivery log."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, request, url_for
from flask_login import current_user

from costguardian.authz import org_required, personal, require_permission
from costguardian.extensions import htmx
from costguardian.rendering import render, toast, trigger
from costguardian.services.notifications import deliveries, notify as notifications
from costguardian.services.notifications import types
from costguardian.services.errors import ValidationError

bp = Blueprint("notifications", __name__, url_prefix="/notifications")

PAGE, LIST = "notifications/index.html", "partials/notifications/_list.html"
BADGE, MENU = "partials/notifications/_badge.html", "partials/notifications/_menu.html"
PREFS, PREFS_FORM = "notifications/preferences.html", "partials/notifications/_preferences_form.html"
DELIVERIES, DELIVERY_ROWS = "notifications/deliveries.html", "partials/notifications/_deliveries.html"


def _me():
    return current_user._get_current_object()


def _list_context():
    filters = notifications.parse_filters(request.args)
    rows, has_next = notifications.search(g.org, _me(), filters)
    return dict(rows=rows, has_next=has_next, filters=filters, types=types.REGISTRY,
                severities=types.SEVERITIES, unread=notifications.unread_count(g.org, _me()))


@bp.get("/")
@personal
@org_required
def index():
    return render(PAGE, LIST, **_list_context())


@bp.get("/badge")
@personal
@org_required
def badge():
    """Polled every few seconds by every open page: one indexed COUNT, and
    204 (htmx swaps nothing) while the count the page shows is still right."""
    count = notifications.unread_count(g.org, _me())
    known = request.args.get("known", type=int)
    if known == count:
        return "", 204
    response = render(BADGE, BADGE, unread=count, refresh_menu=known is not None)
    if known is not None and count > known:
        trigger(response, "notificationsArrived", {"unread": count})
    return response


@bp.get("/menu")
@personal
@org_required
def menu():
    return render(MENU, MENU, latest=notifications.latest(g.org, _me()),
                  unread=notifications.unread_count(g.org, _me()))


def _after_change(message: str | None = None):
    """The list again, the badge by an out-of-band swap, and an event that
    tells the bell's menu to reload."""
    context = _list_context()
    response = render(LIST, LIST, oob_badge=True, **context)
    trigger(response, "notificationsChanged", {"unread": context["unread"]})
    return toast(response, message) if message else response


@bp.post("/read")
@personal
@org_required
def mark():
    read = request.form.get("read", "1") != "0"
    ids = request.form.getlist("ids")
    changed = notifications.set_read(g.org, _me(), ids, read=read)
    if not ids:
        return toast(_after_change(), "Select at least one notification.", "error")
    return _after_change(f"{changed} marked {'read' if read else 'unread'}.")


@bp.post("/read-all")
@personal
@org_required
def mark_all():
    changed = notifications.mark_all_read(g.org, _me())
    if not request.headers.get("HX-Request"):
        return redirect(url_for(".index"))
    return _after_change(f"{changed} marked read." if changed else "Everything was already read.")


@bp.get("/<int:notification_id>/open")
@personal
@org_required
def open_one(notification_id: int):
    """Mark it read and go to what it is about."""
    notification = notifications.get_own(g.org, _me(), notification_id)
    if notification is None:
        abort(404)
    notifications.set_read(g.org, _me(), [notification.id])
    link = notification.link or ""
    # Only paths inside this app: a stored link never sends anyone elsewhere.
    if not link.startswith("/") or link.startswith("//") or "\\" in link:
        link = url_for(".index")
    return redirect(link)


@bp.post("/test")
@personal
@org_required
def send_test():
    """Send the signed-in member a test notification through their own channels."""
    notifications.notify(g.org, "system.test", {"sender": _me().display_name,
                                                "message": "If you can read this, it works."},
                         recipients=[_me()], webhooks=False)
    response = render(BADGE, BADGE, unread=notifications.unread_count(g.org, _me()), refresh_menu=True)
    trigger(response, "notificationsChanged")
    return toast(response, "Test notification sent: it appears in the bell, and by email if you chose email.")


# --- preferences ----------------------------------------------------------------

def _prefs_context(**extra):
    return dict(rows=notifications.preference_table(g.org, g.membership), channels=types.CHANNELS,
                digest=notifications.digest_choice(g.org, _me()), digest_choices=notifications.DIGEST_CHOICES,
                **extra)


@bp.get("/preferences")
@personal
@org_required
def preferences():
    return render(PREFS, PREFS_FORM, **_prefs_context())


@bp.post("/preferences")
@personal
@org_required
def save_preferences():
    try:
        notifications.save_preferences(g.org, g.membership, request.form, request.form.get("digest", ""))
    except ValidationError as exc:
        return render(PREFS, PREFS_FORM, status=422, errors=exc.errors, **_prefs_context())
    return toast(render(PREFS, PREFS_FORM, saved=True, **_prefs_context()), "Preferences saved.")


# --- the organization's deliveries (admins) ----------------------------------------

DELIVERIES_PER_PAGE = 50


def _delivery_filters():
    channel = request.args.get("channel", "")
    status = request.args.get("status", "")
    event_type = request.args.get("type", "")
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), 100_000)
    return {"channel": channel if channel in ("email", "webhook") else "",
            "status": status if status in deliveries.STATUSES else "",
            "type": event_type if event_type in types.REGISTRY or event_type == "digest.daily" else "",
            "page": page}


def _delivery_or_404(delivery_id: int):
    delivery = deliveries.get(g.org, delivery_id)
    if delivery is None:
        abort(404)
    return delivery


@bp.get("/deliveries")
@require_permission("notifications:manage")
def delivery_log():
    filters = _delivery_filters()
    rows, has_next = deliveries.log(g.org, filters["channel"], filters["status"], filters["type"], filters["page"],
                                    per_page=DELIVERIES_PER_PAGE)
    return render(DELIVERIES, DELIVERY_ROWS, rows=rows, has_next=has_next, filters=filters,
                  statuses=deliveries.STATUSES, types=types.REGISTRY)


@bp.get("/deliveries/<int:delivery_id>")
@require_permission("notifications:manage")
def delivery_detail(delivery_id: int):
    delivery = _delivery_or_404(delivery_id)
    return render("notifications/delivery.html", "partials/notifications/_attempts.html",
                  delivery=delivery, attempts=deliveries.attempts_of(delivery))


@bp.post("/deliveries/<int:delivery_id>/redeliver")
@require_permission("notifications:manage")
def redeliver(delivery_id: int):
    delivery = _delivery_or_404(delivery_id)
    plain_form = not htmx or htmx.boosted  # no JavaScript: post/redirect/get, the result in a flash
    if delivery.status not in ("sent", "failed", "disabled"):
        if plain_form:
            flash("This delivery is still in progress; wait until it is sent or has failed.", "error")
            return redirect(_back_to_delivery_log())
        response = render(DELIVERY_ROWS, "partials/notifications/_delivery_row.html", status=422, d=delivery,
                          error="Still in progress; wait until it is sent or has failed.")
        return toast(response, "This delivery is still in progress.", "error")
    copy = deliveries.get(g.org, deliveries.redeliver(delivery).id)  # reloaded: the row as stored
    if plain_form:
        flash("Queued again as a new delivery.", "success")
        return redirect(_back_to_delivery_log())
    response = render(DELIVERY_ROWS, "partials/notifications/_delivery_row.html", d=copy, fresh=True)
    return toast(response, "Queued again as a new delivery.")


def _back_to_delivery_log() -> str:
    """The delivery log page the form was on (its filters and page, from the
    same-origin Referer), else the log's first page."""
    log = url_for("notifications.delivery_log")
    came_from = urlsplit(request.referrer or "")
    if came_from.netloc == request.host and came_from.path == log and came_from.query:
        return f"{log}?{came_from.query}"
    return log
