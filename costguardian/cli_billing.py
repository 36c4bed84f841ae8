"""Operator commands for billing: `flask --app app billing <command>`.

The plans (list, edit), their Stripe products and prices, the nightly sync
and the hourly meter report run by hand, and each organization's state."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from costguardian.db import connected
from costguardian.extensions import db
from costguardian.models.billing import FEATURES
from costguardian.money import format_usd
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError

billing_cli = AppGroup("billing", help="Billing: plans, Stripe set-up, sync, meter reports, status.")


def register(app: Flask) -> None:
    app.cli.add_command(billing_cli)


def _fail(message: str):
    raise click.ClickException(message)


def _require_stripe() -> None:
    """Refuse commands that talk to Stripe when this installation cannot."""
    from costguardian.services import billing

    if not billing.enabled():
        _fail("billing is off on this installation (BILLING_ENABLED); turn it on, with STRIPE_SECRET_KEY and "
              "STRIPE_WEBHOOK_SECRET set, before talking to Stripe")
    missing = [name for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET") if not current_app.config.get(name)]
    if missing:
        _fail(" and ".join(missing) + " not set; see docs/BILLING.md")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    for line in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


@billing_cli.command("plans")
def list_plans():
    """The plans (prices per seat), their limits, features and Stripe prices."""
    from costguardian.services.billing import plans

    with connected(db.obj):
        listed = plans.listed()
    rows = []
    for plan in listed:
        overage = (f"metered {format_usd(plan.overage_nanos_per_1000)}/1,000" if plan.overage == "metered"
                   else plan.overage)
        prices = " ".join(f"{label}={price}" for label, price in (
            ("month", plan.stripe_monthly_price), ("year", plan.stripe_yearly_price),
            ("metered", plan.stripe_metered_price)) if price) or "-"
        rows.append([plan.code, plan.name, "yes" if plan.is_active else "no",
                     format_usd(plan.monthly_nanos), format_usd(plan.yearly_nanos),
                     f"{plan.seats_included:,}" + (" (+extra)" if plan.extra_seats else ""),
                     f"{plan.events_included:,}", overage, str(plan.trial_days), f"{plan.retention_days} days",
                     ",".join(name for name in FEATURES if plan.has(name)) or "-", prices])
    _table(["CODE", "NAME", "ACTIVE", "MONTHLY/SEAT", "YEARLY/SEAT", "SEATS", "EVENTS/PERIOD", "OVERAGE", "TRIAL",
            "RETENTION", "FEATURES", "STRIPE PRICES"], rows)


@billing_cli.command("plan-set")
@click.argument("code")
@click.argument("assignments", nargs=-1, required=True, metavar="NAME=VALUE...")
def plan_set(code: str, assignments: tuple[str, ...]):
    """Change a plan's fields, e.g. `plan-set team monthly_usd=25 feature.sso=true`.
    Every value is checked first; nothing is saved unless all are good."""
    from costguardian.services.billing import plans

    changes: dict[str, str] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name.strip():
            _fail(f"{assignment!r} is not NAME=VALUE; fields: " + ", ".join(plans.EDITABLE))
        changes[name.strip()] = value
    try:
        with connected(db.obj):
            plan = plans.update(code, changes, Actor.system())
    except ValidationError as exc:
        for field, message in exc.errors.items():
            click.echo(f"{field}: {message}", err=True)
        click.get_current_context().exit(1)
    click.echo(f"updated {plan.code}: " + ", ".join(sorted(changes)))


@billing_cli.command("stripe-setup")
def stripe_setup():
    """Create in Stripe the products, prices and meter the plans lack (safe to run again)."""
    import stripe

    from costguardian.services import billing
    from costguardian.services.billing import plans

    _require_stripe()
    try:
        with connected(db.obj):
            done = plans.setup_stripe(billing.client(), current_app.config["STRIPE_METER_EVENT_NAME"],
                                      Actor.system())
    except stripe.StripeError as exc:
        _fail(f"Stripe refused the set-up: {billing.stripe_message(exc)} What was created before stays; run it again.")
    for line in done:
        click.echo(line)
    click.echo("Stripe has every product, price and meter the plans need" + ("" if done else "; nothing to create"))


@billing_cli.command("sync")
def sync():
    """Re-read every subscription, payment method and invoice from Stripe now (the nightly task)."""
    from costguardian.services.billing import sync as billing_sync

    _require_stripe()
    with connected(db.obj):
        done, failed = billing_sync.sync_all()
    click.echo(f"accounts synced: {done}, failed: {failed}")
    if failed:
        _fail(f"{failed} account(s) could not be read from Stripe; the log has the details")


@billing_cli.command("report-usage")
def report_usage():
    """Report tracked events beyond metered plans' allowances to Stripe's meter now (the hourly task)."""
    from costguardian.services.billing import meter

    _require_stripe()
    with connected(db.obj):
        run = meter.report_usage()
    click.echo(f"reports created: {run.created}, sent: {run.sent}, failed: {run.failed}")
    if run.failed:
        _fail(f"{run.failed} report(s) failed; they stay failed and are sent again by the next run "
              "(see /admin/billing/)")


@billing_cli.command("status")
def status():
    """Each organization with a billing account: plan, status, seats, failed meter reports, last sync."""
    from peewee import JOIN, fn

    from costguardian.models import BillingAccount, MeterReport, Organization, Plan
    from costguardian.services import billing

    with connected(db.obj):
        failed = dict(MeterReport.select(MeterReport.organization, fn.COUNT(MeterReport.id))
                      .where(MeterReport.status == "failed").group_by(MeterReport.organization).tuples())
        accounts = list(BillingAccount.select(BillingAccount, Organization, Plan)
                        .join(Organization).switch(BillingAccount).join(Plan, JOIN.LEFT_OUTER)
                        .order_by(Organization.name, Organization.id))
        enabled = billing.enabled()
    if not enabled:
        click.echo("billing is off on this installation: no limit applies (states below as last stored)")
    if not accounts:
        click.echo("no organization has a billing account yet")
        return
    _table(["ORGANIZATION", "PLAN", "STATUS", "SEATS", "FAILED REPORTS", "LAST SYNC"], [
        [f"{a.organization.name} ({a.organization.slug})", a.plan.code if a.plan_id else "free",
         a.status or "-", str(a.seats), str(failed.get(a.organization_id, 0)), _when(a.synced_at)]
        for a in accounts])
