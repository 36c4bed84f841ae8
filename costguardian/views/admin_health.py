"""Platform console: System health — the database, the task queue and its
consumer's heartbeat, periodic tasks, failed deliveries (with retry for
superadmins), server errors per route in the last hour, version and uptime."""
from __future__ import annotations

from flask import Blueprint, abort, flash, url_for

from costguardian import clock
from costguardian.authz import current_actor, platform_required
from costguardian.rendering import redirect_to, render
from costguardian.services.platform import health

bp = Blueprint("admin_health", __name__, url_prefix="/admin/health")

PAGE = "admin/health.html"


@bp.get("/")
@platform_required("read")
def index():
    return render(PAGE, PAGE, **health.report(clock.now()))


@bp.post("/deliveries/<int:delivery_id>/retry")
@platform_required("write")
def retry_delivery(delivery_id: int):
    """Send a failed delivery again (a new delivery; the failed one keeps its history)."""
    delivery = health.retryable(delivery_id)
    if delivery is None:
        abort(404, "No failed delivery with this id (it may have been sent again already).")
    copy = health.retry(delivery, current_actor())
    flash(f"Delivery {delivery.id} queued again as delivery {copy.id}.", "success")
    return redirect_to(url_for("admin_health.index") + "#failed-deliveries")
