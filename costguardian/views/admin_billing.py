"""Billing health for superadmins: meter reports Stripe has not accepted yet
(with "Retry now"), the latest Stripe events, accounts the nightly sync has
not read lately and each metered account's reconciliation. Platform-wide: it
spans every organization."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, flash, url_for
from peewee import JOIN

from costguardian import clock
from costguardian.authz import platform_required
from costguardian.models import BillingAccount, MeterReport, Organization, StripeEvent
from costguardian.rendering import redirect_to, render
from costguardian.services import billing
from costguardian.services.billing import meter

bp = Blueprint("admin_billing", __name__, url_prefix="/admin/billing")

PAGE = "admin/billing.html"
STALE_SYNC = timedelta(hours=36)  # the nightly sync missed a night and more
EVENTS_SHOWN = 50


def health(now) -> dict:
    """What the page shows, read from the database only (no call to Stripe)."""
    unsent = (MeterReport.select(MeterReport, Organization).join(Organization)
              .where(MeterReport.status != "sent")
              .order_by(MeterReport.status, Organization.name, MeterReport.day, MeterReport.revision))
    events = (StripeEvent.select(StripeEvent, Organization).join(Organization, JOIN.LEFT_OUTER)
              .order_by(StripeEvent.received_at.desc(), StripeEvent.id.desc()).limit(EVENTS_SHOWN))
    with_customer = (BillingAccount.select(BillingAccount, Organization).join(Organization)
                     .where(BillingAccount.stripe_customer_id.is_null(False)).order_by(Organization.name))
    stale = with_customer.where(BillingAccount.synced_at.is_null() | (BillingAccount.synced_at < now - STALE_SYNC))
    # The accounts the hourly report covers (meter.report_usage).
    metered = with_customer.where(BillingAccount.metered_item_id.is_null(False),
                                  BillingAccount.status.in_(("trialing", "active", "past_due")))
    return {
        "enabled": billing.enabled(), "unsent": list(unsent), "events": list(events), "stale": list(stale),
        "reconciled": [(account, meter.reconcile(account, now)) for account in metered],
        "stale_hours": int(STALE_SYNC.total_seconds() // 3600), "events_shown": EVENTS_SHOWN,
    }


@bp.get("/")
@platform_required("read")
def index():
    return render(PAGE, PAGE, **health(clock.now()))


@bp.post("/retry/<int:org_id>")
@platform_required("write")
def retry(org_id: int):
    """Send the organization's pending and failed meter reports now."""
    account = BillingAccount.select().where(BillingAccount.organization == org_id).first()
    if not billing.enabled():
        flash("Billing is off on this installation: nothing is sent to Stripe.", "error")
    elif account is None or not account.stripe_customer_id:
        flash("That organization has no Stripe customer: it has nothing to report.", "error")
    else:
        sent, failed = meter.send_pending(account, billing.client(), clock.now())
        if failed:
            flash(f"{sent} report(s) sent, {failed} failed again; the error is in the table.", "error")
        else:
            flash(f"{sent} report(s) sent to Stripe." if sent else "Nothing was waiting to be sent.", "success")
    return redirect_to(url_for("admin_billing.index"))
