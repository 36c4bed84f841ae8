"""The onboarding wizard at /onboarding/<step> (owners and admins:
`org:settings`), and the welcome page other members see.

Each step is a partial inside the wizard page. With htmx, Next, Back and Skip
swap `#wizard` (the progress list and the step) and push the step's URL, so
Back/Forward and reload work; without JavaScript every step is a plain form
post answered with a redirect. Every step validates on the server: 422 and
the step with its field errors, nothing saved."""
from __future__ import annotations

from flask import Blueprint, abort, g, make_response, redirect, request, url_for
from flask_login import current_user

from costguardian import permissions
from costguardian.authz import can, current_actor, org_required, personal, require_permission
from costguardian.extensions import htmx
from costguardian.forms import apply_errors
from costguardian.forms.billing import PlanForm
from costguardian.forms.onboarding import (USES, BudgetStepForm, DomainStepForm, FirstCallForm,
                                           NotificationsStepForm, OrganizationStepForm, ProviderStepForm,
                                           TeamStepForm)
from costguardian.models import Organization
from costguardian.rendering import external_url, render
from costguardian.services import billing, onboarding
from costguardian.services.errors import NotPermitted, RuleViolation, ServiceError, ValidationError
from costguardian.services.onboarding import first_call, organization
from costguardian.services.usage import ingest

bp = Blueprint("onboarding", __name__, url_prefix="/onboarding")


@bp.after_request
def _allow_stripe_redirects(response):
    """The plan step's form redirects to Stripe Checkout (views.billing)."""
    from costguardian.views.billing import _allow_stripe_redirects as allow

    return allow(response) if billing.enabled() else response

PAGE, WIZARD = "onboarding/wizard.html", "partials/onboarding/_wizard.html"
MANAGE = "org:settings"


def _step_or_404(key: str) -> onboarding.Step:
    steps = {s.key: s for s in onboarding.steps_for(g.org)}
    if key not in steps:
        abort(404)
    return steps[key]


def _context(step: onboarding.Step, **extra) -> dict:
    progress = onboarding.progress_for(g.org)
    previous, following = onboarding.neighbours(g.org, step.key)
    return {"step": step, "steps": onboarding.steps_for(g.org), "progress": progress,
            "status_of": lambda key: onboarding.status(progress, key),
            "percent": onboarding.percent(g.org, progress), "previous": previous, "following": following,
            "step_data": onboarding.data(progress, step.key), **extra}


def _show(step: onboarding.Step, status: int = 200, **extra):
    context = _context(step, **_defaults(step, extra))
    response = render(PAGE, WIZARD, status=status, **context)
    if htmx and status == 200:
        response.headers["HX-Push-Url"] = url_for("onboarding.step", key=step.key)
    return response


def _go(step: onboarding.Step | None):
    """After a step: the next one (htmx: its partial, with its URL pushed)."""
    target = step or onboarding.current(g.org)
    if htmx:
        return _show(target)
    return redirect(url_for("onboarding.step", key=target.key), code=303)


# --- entry points ---------------------------------------------------------------

@bp.get("/")
@org_required
@personal
def start():
    """Owners and admins go to the first open step; everyone else to the welcome page."""
    if not can(MANAGE):
        return redirect(url_for("onboarding.welcome"))
    return redirect(url_for("onboarding.step", key=onboarding.current(g.org).key))


@bp.get("/welcome")
@require_permission("usage:read")
def welcome():
    role = g.membership.role
    granted = [(p, text) for p, text in permissions.PERMISSIONS.items() if permissions.role_can(role, p)]
    return render("onboarding/welcome.html", "onboarding/welcome.html", role=role,
                  role_text=permissions.ROLES[role], granted=granted)


@bp.get("/<key>")
@require_permission(MANAGE)
def step(key: str):
    return _show(_step_or_404(key))


@bp.post("/<key>/skip")
@require_permission(MANAGE)
def skip(key: str):
    step = _step_or_404(key)
    if not step.skippable:
        abort(400, "This step cannot be skipped.")
    onboarding.mark(g.org, current_actor(), key, onboarding.SKIPPED)
    return _go(onboarding.neighbours(g.org, key)[1])


@bp.post("/dismiss")
@require_permission(MANAGE)
def dismiss():
    onboarding.dismiss(g.org, current_actor())
    if htmx:
        return make_response("", 200)
    return redirect(url_for("dashboard.index"), code=303)


@bp.get("/slug-check")
@require_permission(MANAGE)
def slug_check():
    """Live availability of an address while typing (step 1)."""
    slug = request.args.get("slug", "").strip().lower()
    problem = organization.slug_problem(slug, g.org)
    text = problem or f"“{slug}” is available."
    css = "field-error" if problem else "field-ok"
    return make_response(f'<small id="slug-status" class="{css}" role="status">{_escape(text)}</small>')


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


# --- each step's form -------------------------------------------------------------------

def _defaults(step: onboarding.Step, extra: dict) -> dict:
    """The step's form (as posted, or prefilled) and what its template needs."""
    org = g.org
    key = step.key
    if key == "organization" and "form" not in extra:
        form = OrganizationStepForm(obj=org, formdata=None)
        form.slug.data = org.slug
        form.uses.data = onboarding.data(onboarding.progress_for(org), "organization").get("uses", [])
        extra["form"] = form
    elif key == "domain" and "form" not in extra:
        extra["form"] = DomainStepForm(formdata=None)
        extra.update(_domain_context(org))
    elif key == "domain":
        extra.update(_domain_context(org))
    elif key == "provider":
        uses = onboarding.data(onboarding.progress_for(org), "organization").get("uses", [])
        if "form" not in extra:
            form = ProviderStepForm(formdata=None)
            offered = {choice.value for choice in form.provider.choices}
            first = next((u for u in uses if u in offered), None)
            form.provider.data = first or "openai"
            extra["form"] = form
        # What the organization said it uses comes first in the list (step 1).
        extra["form"].provider.choices = sorted(
            extra["form"].provider.choices, key=lambda c: (uses.index(c.value) if c.value in uses else len(uses)))
        from costguardian.services.gateway import vault

        extra["credentials"] = vault.credentials_of(org)
    elif key == "first-call":
        extra.setdefault("form", FirstCallForm(formdata=None))
        extra.update(_first_call_context(org, extra))
    elif key == "plan":
        extra.update(_plan_context(org, extra))
    elif key == "budget" and "form" not in extra:
        form = BudgetStepForm(formdata=None)
        form.amount_usd.data = _suggested_budget(org)
        extra["form"] = form
        extra["suggested"] = form.amount_usd.data != "100"
    elif key == "notifications":
        from costguardian.services.notifications import notify as notifications, types as notification_types

        extra.setdefault("form", NotificationsStepForm(formdata=None))
        from costguardian.services.billing import limits

        extra.update(rows=notifications.preference_table(org, g.membership),
                     channels=notification_types.CHANNELS, webhook=_wizard_webhook(org),
                     webhooks_refused=limits.feature_refusal(org, "webhooks"))
    elif key == "team":
        from costguardian.services.team import members as team_members

        extra.setdefault("form", TeamStepForm(formdata=None))
        extra["form"].with_departments(team_members.departments(org))
    elif key == "done":
        extra["summary"] = _summary(org)
    return extra


@bp.post("/<key>")
@require_permission(MANAGE)
def submit(key: str):
    step = _step_or_404(key)
    handler = SUBMIT.get(key)
    if handler is None:  # "done": finishing the wizard
        onboarding.mark(g.org, current_actor(), key, onboarding.DONE)
        return redirect(url_for("dashboard.index"), code=303) if not htmx else _hx_redirect(url_for("dashboard.index"))
    return handler(step)


def _hx_redirect(url: str):
    response = make_response("", 204)
    response.headers["HX-Redirect"] = url
    return response


def _submit_organization(step):
    form = OrganizationStepForm()
    if form.validate():
        try:
            organization.save(g.org, current_actor(), form.name.data, form.slug.data, form.time_zone.data,
                              form.currency.data, form.uses.data or [])
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            uses = [u for u in (form.uses.data or []) if u in dict(USES)]
            onboarding.mark(g.org, current_actor(), step.key, onboarding.DONE, {"uses": uses})
            if htmx:  # the header shows the name too: load the next step as a whole page
                return _hx_redirect(url_for("onboarding.step", key=_next(step).key))
            return _go(_next(step))
    return _show(step, 422, form=form)


def _domain_context(org: Organization) -> dict:
    from costguardian.services.team import domain_verification

    pending = domain_verification.latest(org)
    record = domain_verification.record(pending) if pending is not None else None
    return {"verification": pending, "record": record}


def _submit_domain(step):
    from costguardian.services.team import domain_verification

    form = DomainStepForm()
    action = request.form.get("action", "start")
    if form.validate():
        domain = (form.domain.data or "").strip()
        try:
            if action == "check":
                verification = domain_verification.check(g.org, current_actor(), domain)
                if verification.verified_at is not None:
                    onboarding.mark(g.org, current_actor(), step.key, onboarding.DONE, {"domain": verification.domain})
                    return _go(_next(step))
                form.domain.errors = [verification.last_error or "The record is not there yet."]
                return _show(step, 422, form=form)
            domain_verification.start(g.org, current_actor(), domain)
            return _show(step, form=form)
        except ValidationError as exc:
            apply_errors(form, exc)
        except RuleViolation as exc:
            form.domain.errors = [exc.message]
    return _show(step, 422, form=form)


def _submit_provider(step):
    from costguardian.services.gateway import vault

    form = ProviderStepForm()
    if not form.validate():
        return _show(step, 422, form=form)
    return _once_then_next(step, form, lambda: {"credential_id": vault.add(
        g.org, current_actor(), form.provider.data, "", form.secret.data, base_url=form.base_url.data or "").id})


def _once_then_next(step, form, apply):
    """The step's side effect once per form token (a resent form moves on
    without doing it again), then the next step; the form with the service's
    field errors (422) when it refuses."""
    try:
        result = onboarding.once(g.org, step.key, form.token.data, apply)
    except onboarding.AlreadyApplied:
        return _go(_next(step))
    except ValidationError as exc:
        apply_errors(form, exc)
        return _show(step, 422, form=form)
    onboarding.mark(g.org, current_actor(), step.key, onboarding.DONE, result)
    return _go(_next(step))


def _next(step: onboarding.Step) -> onboarding.Step | None:
    return onboarding.neighbours(g.org, step.key)[1]


def _first_call_context(org: Organization, extra: dict) -> dict:
    from costguardian.views.gateway_setup import KEY_PLACEHOLDER, gateway_base_url, snippet_models

    data = onboarding.data(onboarding.progress_for(org), "first-call")
    key = first_call.key_of(org, data.get("key_id"))
    base = gateway_base_url()
    plaintext = extra.get("plaintext")
    return {"key": key, "plaintext": plaintext, "shown_key": plaintext or KEY_PLACEHOLDER, "base": base,
            "openai_url": f"{base}/v1", "anthropic_url": f"{base}/anthropic", "models": snippet_models(org),
            "first": first_call.first_event(org), "usd_string": ingest.usd_string}


def _submit_first_call(step):
    """Create the gateway key (once per submission) and show it."""
    form = FirstCallForm()
    if not form.validate():
        return _show(step, 422, form=form)
    try:
        created = {}

        def make():
            new = first_call.create_key(g.org, current_actor())
            created["plaintext"] = new.plaintext
            return {"key_id": new.key.id}

        result = onboarding.once(g.org, step.key + ":key", form.token.data, make)
    except onboarding.AlreadyApplied:
        return _show(step)  # the key was made by the first submission; its secret was shown there
    progress = onboarding.progress_for(g.org)
    steps = dict(progress.steps or {})
    steps.setdefault(step.key, {}).setdefault("data", {})["key_id"] = result["key_id"]
    progress.steps = steps
    progress.save()
    return _show(step, form=FirstCallForm(formdata=None), plaintext=created.get("plaintext"))


@bp.get("/first-call/status")
@require_permission(MANAGE)
def first_call_status():
    """Polled every 2 s until the first event arrives; 286 stops htmx polling."""
    first = first_call.first_event(g.org)
    response = render("partials/onboarding/_first_event.html", "partials/onboarding/_first_event.html",
                      first=first, usd_string=ingest.usd_string)
    if first is not None:
        response.status_code = 286
        progress = onboarding.progress_for(g.org)
        if onboarding.status(progress, "first-call") is None:
            onboarding.mark(g.org, current_actor(), "first-call", onboarding.DONE,
                            {"event_id": first.event.id, "model": first.event.model})
    return response


@bp.post("/first-call/test")
@require_permission(MANAGE)
def first_call_test():
    """Send one small call through the gateway with the onboarding key."""
    step = _step_or_404("first-call")
    data = onboarding.data(onboarding.progress_for(g.org), "first-call")
    key = first_call.key_of(g.org, data.get("key_id"))
    from costguardian.views.gateway_setup import snippet_models

    models = snippet_models(g.org)
    error = None
    if key is None:
        error = "Create the gateway key first."
    elif not (models.get("openai") or models.get("anthropic")):
        error = "Connect a provider first (the previous step): the test call needs a provider key."
    else:
        wire, model = ("openai", models["openai"]) if models.get("openai") else ("anthropic", models["anthropic"])
        try:
            first_call.test_call(g.org, key, model, wire)
        except ServiceError as exc:
            error = exc.message
    return _show(step, 422 if error else 200, test_error=error)


def _plan_context(org: Organization, extra: dict) -> dict:
    from costguardian.services.billing import accounts, plans, subscriptions

    listed = plans.listed(active_only=True)
    form = extra.get("form")
    if form is None:
        form = PlanForm(plans.paid_choices(), formdata=None)
        paid = next((p for p in listed if not p.is_free), None)
        if paid is not None:
            form.plan.data, form.seats.data = paid.code, subscriptions.default_seats(org, paid)
    account = accounts.account_for(org)
    return {"form": form, "plans": listed, "account": account, "access": accounts.access(org, account)}


def _submit_plan(step):
    from costguardian.services.billing import plans, subscriptions

    from costguardian.services.billing import accounts

    choice = request.form.get("choice", "")
    if choice in ("free", "continue"):
        subscribed = accounts.access(g.org).subscribed
        onboarding.mark(g.org, current_actor(), step.key, onboarding.DONE,
                        {"plan": subscribed.code if subscribed else "free"})
        return _go(_next(step))
    if not can("billing:manage"):  # an admin sets up the organization, but the subscription is billing's
        abort(403, "Only owners and billing members can subscribe; choose Free for now or ask them.")
    form = PlanForm(plans.paid_choices())
    if form.validate():
        try:
            url = subscriptions.start_checkout(
                g.org, current_actor(), form.plan.data, form.interval.data, form.seats.data,
                success_url=external_url("onboarding.plan_return") + "?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=external_url("onboarding.step", key="plan"))
        except ValidationError as exc:
            apply_errors(form, exc)
        except (RuleViolation, billing.BillingUnavailable, billing.BillingDisabled) as exc:
            form.form_errors.append(exc.message)
        else:
            if htmx:
                return _hx_redirect(url)
            return redirect(url, code=303)
    return _show(step, 422, form=form)


@bp.get("/plan/return")
@require_permission(MANAGE)
def plan_return():
    """Back from Checkout: the plan step is done; the billing webhook activates the plan."""
    if not billing.enabled():
        abort(404)
    if not can("billing:manage"):
        abort(403, "Only owners and billing members can subscribe.")
    onboarding.mark(g.org, current_actor(), "plan", onboarding.DONE,
                    {"checkout": request.args.get("session_id", "")[:80]})
    return redirect(url_for("onboarding.step", key=onboarding.current(g.org).key))


def _suggested_budget(org: Organization) -> str:
    """Today's spend scaled to a month and doubled, rounded up to a round amount; else 100."""
    from costguardian.services.usage import queries

    first = first_call.first_event(org)
    if first is None:
        return "100"
    spent = queries.month_to_date(org).today.cost_nanos
    if not spent:
        return "100"
    monthly = spent * 30 * 2 / 1_000_000_000
    for nice in (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000):
        if monthly <= nice:
            return str(nice)
    return str(int(monthly))


def _submit_budget(step):
    from costguardian.services.budgets import budgets

    form = BudgetStepForm()
    if form.validate():
        payload = {"name": form.name.data, "amount_usd": form.amount_usd.data, "period": form.period.data,
                   "thresholds": form.thresholds.data, "enforcement": form.enforcement.data,
                   "notify_roles": ["owner", "admin", "billing"]}
        return _once_then_next(step, form, lambda: {"budget_id": budgets.create(g.org, current_actor(), payload).id})
    return _show(step, 422, form=form)


def _submit_notifications(step):
    from costguardian.services.notifications import notify as notifications, webhooks

    form = NotificationsStepForm()
    if form.validate():
        try:
            result = {}
            if form.slack_url.data:  # first: a refused URL saves nothing at all
                result = onboarding.once(g.org, step.key, form.token.data, lambda: {
                    "webhook_id": webhooks.create_endpoint(g.org, current_actor(), "Slack alerts",
                                                           form.slack_url.data.strip(), kind="slack").endpoint.id})
            notifications.save_preferences(g.org, g.membership, request.form,
                                           notifications.digest_choice(g.org, current_user._get_current_object()))
        except onboarding.AlreadyApplied:
            return _go(_next(step))
        except ValidationError as exc:
            for name, message in exc.errors.items():
                field = form.slack_url if name in ("url", "") else getattr(form, name, form.slack_url)
                field.errors = [*field.errors, message]
        else:
            onboarding.mark(g.org, current_actor(), step.key, onboarding.DONE, result)
            if result.get("webhook_id"):  # stay: the webhook can be tried before moving on
                return _show(step, form=NotificationsStepForm(formdata=None), saved=True)
            return _go(_next(step))
    return _show(step, 422, form=form)


@bp.post("/notifications/test-webhook")
@require_permission(MANAGE)
def notifications_test_webhook():
    """Send the wizard's Slack webhook a test message now."""
    from costguardian.services.notifications import webhooks

    step = _step_or_404("notifications")
    endpoint = _wizard_webhook(g.org)
    if endpoint is None:
        return _show(step, 422, webhook_error="Add a webhook URL first.")
    delivery = webhooks.send_test(endpoint, current_actor())
    return _show(step, webhook_sent=delivery)


def _wizard_webhook(org: Organization):
    from costguardian.models import WebhookEndpoint

    webhook_id = onboarding.data(onboarding.progress_for(org), "notifications").get("webhook_id")
    return WebhookEndpoint.get_in_org(org, webhook_id) if webhook_id else None


def _submit_team(step):
    from costguardian.services.billing import limits
    from costguardian.services.team import invitations

    from costguardian.services.team import departments as team_departments

    form = TeamStepForm()
    if form.validate():
        department = team_departments.get(g.org, form.department.data) if form.department.data else None
        if form.department.data and department is None:
            form.department.errors = ["Choose a department of this organization."]
            return _show(step, 422, form=form)
        try:
            results = invitations.invite(g.org, form.emails.data, form.role.data, current_actor(),
                                         department=department)
        except limits.SeatLimit as exc:
            form.emails.errors = [*form.emails.errors, exc.message]
        except ValidationError as exc:
            apply_errors(form, exc)
        except NotPermitted as exc:
            form.role.errors = [*form.role.errors, exc.message]
        else:
            sent = [r for r in results if r.ok]
            if sent and len(sent) == len(results):
                onboarding.mark(g.org, current_actor(), step.key, onboarding.DONE,
                                {"invited": [r.invitation.email for r in sent]})
                return _go(_next(step))
            if sent:
                onboarding.mark(g.org, current_actor(), step.key, onboarding.DONE,
                                {"invited": [r.invitation.email for r in sent]})
            fresh = TeamStepForm(formdata=None)
            fresh.emails.data = "\n".join(r.address for r in results if not r.ok)
            fresh.role.data, fresh.department.data = form.role.data, form.department.data
            return _show(step, 200 if sent else 422, form=fresh, results=results)
    return _show(step, 422, form=form)


def _summary(org: Organization) -> list[tuple[onboarding.Step, str | None, str]]:
    """Each step, its status and where to do it later."""
    progress = onboarding.progress_for(org)
    later = {"organization": url_for("settings.index"), "domain": url_for("settings.index"),
             "provider": url_for("providers.index"), "first-call": url_for("gateway_setup.index"),
             "plan": url_for("billing.index") if billing.enabled() else "",
             "budget": url_for("budgets.index"), "notifications": url_for("notifications.preferences"),
             "team": url_for("invitations.index")}
    return [(s, onboarding.status(progress, s.key), later.get(s.key, ""), _detail(org, s.key,
                                                                                 onboarding.data(progress, s.key)))
            for s in onboarding.steps_for(org) if s.key != "done"]


def _detail(org: Organization, key: str, data: dict) -> str:
    """What a finished step set up, in a few words."""
    from costguardian.models import Budget, ProviderCredential

    if key == "organization":
        return f"{org.name}, {org.time_zone.replace('_', ' ')}, {org.currency}"
    if key == "domain" and data.get("domain"):
        return f"{data['domain']} verified"
    if key == "provider" and data.get("credential_id"):
        credential = ProviderCredential.get_in_org(org, data["credential_id"])
        return f"{credential.provider} key •••• {credential.secret_last4}" if credential else ""
    if key == "first-call" and data.get("model"):
        return f"first call: {data['model']}"
    if key == "plan" and data.get("plan"):
        return str(data["plan"]).title()
    if key == "plan" and data.get("checkout"):
        from costguardian.services.billing import accounts

        subscribed = accounts.access(org).subscribed
        return subscribed.name if subscribed else "Checkout done; activating"
    if key == "notifications" and data.get("webhook_id"):
        return "preferences saved, Slack webhook added"
    if key == "notifications":
        return "preferences saved"
    if key == "budget" and data.get("budget_id"):
        budget = Budget.get_in_org(org, data["budget_id"])
        return f"{budget.name}, ${ingest.usd_string(budget.amount_nanos)} {budget.period}" if budget else ""
    if key == "team" and data.get("invited"):
        return f"{len(data['invited'])} invitation{'s' if len(data['invited']) != 1 else ''} sent"
    return ""


SUBMIT = {"organization": _submit_organization, "domain": _submit_domain, "provider": _submit_provider,
          "first-call": _submit_first_call, "plan": _submit_plan, "budget": _submit_budget,
          "notifications": _submit_notifications, "team": _submit_team}
