"""The registry of things Cost Guardian tells people about.

Each event type has a default severity, who gets it when the sender names no
one (by role), which channels a member gets by default (by role), and the
templates of its title, body and link. Templates are Jinja, rendered in a
sandbox with the payload as their variables (plus `org`); an organization may
override the email subject and body (services.notifications.email).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from costguardian.permissions import ADMIN, BILLING, MEMBER, OWNER, VIEWER

INFO, WARNING, CRITICAL = "info", "warning", "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)
IN_APP, EMAIL = "in_app", "email"
CHANNELS = {IN_APP: "In the app", EMAIL: "Email"}

_MANAGERS = (OWNER, ADMIN)
_MONEY = (OWNER, ADMIN, BILLING)
_EVERYONE = (OWNER, ADMIN, BILLING, MEMBER, VIEWER)


@dataclass(frozen=True)
class EventType:
    key: str
    label: str
    description: str
    severity: str
    roles: tuple[str, ...]  # default recipients when `notify` is given none
    email_roles: tuple[str, ...]  # roles that get email by default (everyone gets in-app)
    title: str
    body: str
    link: str = ""
    example: dict = field(default_factory=dict)  # a payload for previews and test sends

    @property
    def group(self) -> str:
        return self.key.split(".", 1)[0]


_BUDGET_EXAMPLE = {
    "budget": "Engineering monthly", "budget_id": 1, "scope": "Department Engineering",
    "spent_usd": "812.40", "limit_usd": "1000.00", "percent": 81, "threshold": 80,
    "period": "2026-11-01 – 2026-11-30", "forecast_usd": "1,041.00", "forecast_date": "2026-11-28",
}

REGISTRY: dict[str, EventType] = {t.key: t for t in (
    EventType(
        "budget.threshold", "Budget threshold reached", "Spend crossed one of a budget's alert thresholds.",
        WARNING, _MONEY, _MONEY,
        "{{ budget }} reached {{ threshold }}% of its limit",
        "{{ budget }} ({{ scope }}) has spent ${{ spent_usd }} of ${{ limit_usd }} ({{ percent }}%) "
        "for {{ period }}.{% if forecast_usd %} Forecast for the period: ${{ forecast_usd }}.{% endif %}",
        "/budgets/{{ budget_id }}", _BUDGET_EXAMPLE),
    EventType(
        "budget.exceeded", "Budget exceeded", "Spend went over a budget's limit.",
        CRITICAL, _MONEY, _MONEY,
        "{{ budget }} is over its limit",
        "{{ budget }} ({{ scope }}) has spent ${{ spent_usd }}, over its limit of ${{ limit_usd }}, "
        "for {{ period }}.",
        "/budgets/{{ budget_id }}", {**_BUDGET_EXAMPLE, "spent_usd": "1,012.10", "percent": 101}),
    EventType(
        "budget.forecast", "Budget forecast to exceed", "A budget is projected to go over its limit this period.",
        WARNING, _MONEY, _MONEY,
        "{{ budget }} is projected to exceed its limit on {{ forecast_date }}",
        "At the current rate {{ budget }} ({{ scope }}) will spend about ${{ forecast_usd }} against a limit "
        "of ${{ limit_usd }} for {{ period }}; so far ${{ spent_usd }}.",
        "/budgets/{{ budget_id }}", _BUDGET_EXAMPLE),
    EventType(
        "budget.resolved", "Budget back under its limit", "Spend is back under a threshold after a raise or a new period.",
        INFO, _MONEY, _MONEY,
        "{{ budget }} is back under {{ threshold }}%",
        "{{ budget }} ({{ scope }}) is at ${{ spent_usd }} of ${{ limit_usd }} for {{ period }}.",
        "/budgets/{{ budget_id }}", {**_BUDGET_EXAMPLE, "spent_usd": "412.00", "percent": 41}),
    EventType(
        "budget.blocked", "Gateway calls blocked by a budget",
        "The gateway refused a call because a hard budget had no room left for it.",
        CRITICAL, _MONEY, _MONEY,
        "{{ budget }} is blocking gateway calls",
        "The gateway refused a call under {{ budget }} ({{ scope }}): ${{ spent_usd }} of ${{ limit_usd }} spent "
        "for {{ period }}, with no room left for the call. Calls under it stay blocked until the period resets "
        "or someone raises the budget.",
        "/budgets/{{ budget_id }}", {**_BUDGET_EXAMPLE, "spent_usd": "998.70", "percent": 99, "threshold": 0,
                                     "enforcement": "hard"}),
    EventType(
        "usage.unpriced_model", "Usage of a model without a price", "Calls were recorded for a model Cost Guardian cannot price.",
        WARNING, _MANAGERS, _MANAGERS,
        "No price for {{ provider }}/{{ model }}",
        "The first {{ requests }} call(s) to {{ provider }}/{{ model }} have no cost because the model has no known "
        "price; later calls are counted on the dashboard and in the usage explorer. Add a price so they are counted.",
        "/prices/", {"provider": "acme-ai", "model": "rocket-1", "requests": 12}),
    EventType(
        "provider.shadow_usage", "Shadow usage at a provider",
        "A provider reported spend in a day from keys or projects Cost Guardian has no record of.",
        WARNING, _MONEY, _MONEY,
        "${{ spent_usd }} of {{ provider }} usage on {{ day }} from unknown keys",
        "{{ provider }} reports ${{ spent_usd }} on {{ day }} from {{ count }} key(s) or project(s) that never "
        "appear in Cost Guardian's records ({{ keys }}); the alert threshold is ${{ threshold_usd }}. Mark the "
        "ones that are yours as known, or find out who uses them.",
        "/reconciliation/{{ provider }}", {"provider": "openai", "day": "2026-11-30", "spent_usd": "42.10",
                                           "threshold_usd": "10.00", "keys": "key_abc123", "count": 1}),
    EventType(
        "member.invited", "Invitation to join", "Someone was invited to the organization (email to the invited address).",
        INFO, _MANAGERS, (),
        "{{ inviter }} invited you to {{ org.name }}",
        "{{ inviter }} invited you to join {{ org.name }} on Cost Guardian as {{ role }}"
        "{% if department %}, in the {{ department }} department{% endif %}."
        "{{ ' The invitation comes from ' ~ inviter_email ~ '.' if inviter_email }}\n\n"
        "Accept the invitation here:\n{{ accept_url }}\n\n"
        "The link works once and expires on {{ expires }}. Sign up or sign in with {{ email }}; "
        "the invitation works only for that address.\n\n"
        "If you did not expect this, ignore this email.",
        "", {"inviter": "Olga Owner", "inviter_email": "olga@example.com", "role": "member",
             "department": "Research", "accept_url": "https://costguardian.example.com/invitations/accept/…",
             "expires": "2026-12-03 10:00 CET", "email": "ann@example.com"}),
    EventType(
        "member.joined", "Member joined", "Someone accepted an invitation or joined through the organization's domain.",
        INFO, _MANAGERS, (),
        "{{ member }} joined {{ org.name }}",
        "{{ member }}{% if email and email != member %} ({{ email }}){% endif %} joined {{ org.name }} as {{ role }}"
        "{% if via == 'invitation' %} by accepting an invitation"
        "{% elif via == 'domain' %} through the organization's email domain{% endif %}.",
        "/members/", {"member": "Ann Analyst", "email": "ann@example.com", "role": "member", "via": "invitation"}),
    EventType(
        "key.rotated", "API key rotated", "An API key was rotated; the old secret stops working after its grace period.",
        INFO, _MANAGERS, _MANAGERS,
        "API key {{ key }} was rotated",
        "{{ actor }} rotated the API key {{ key }}. The previous secret works until {{ grace_until }}.",
        "/keys/", {"key": "ci-pipeline", "actor": "Olga Owner", "grace_until": "2026-11-27 10:00 CET"}),
    EventType(
        "key.expiring", "API key expiring", "An API key expires soon.",
        WARNING, _MANAGERS, _MANAGERS,
        "API key {{ key }} expires on {{ expires }}",
        "The API key {{ key }} expires on {{ expires }}. Rotate it or set a new expiry before then.",
        "/keys/", {"key": "ci-pipeline", "expires": "2026-12-01 10:00 CET"}),
    EventType(
        "billing.payment_failed", "Payment failed", "A payment for the Cost Guardian subscription failed.",
        CRITICAL, (OWNER, BILLING), (OWNER, BILLING),
        "Payment of ${{ amount_usd }} failed",
        "The payment of ${{ amount_usd }} for {{ org.name }}'s subscription failed: {{ reason }}. "
        "Update the payment method to keep the subscription active.",
        "/billing/", {"amount_usd": "49.00", "reason": "card declined"}),
    EventType(
        "org.domain_unverified", "Domain no longer verified", "The DNS record that verified the organization's "
        "domain disappeared; nobody joins through it until it is back.",
        WARNING, (OWNER,), (OWNER,),
        "{{ domain }} is no longer verified",
        "The TXT record at {{ record }} that verified {{ domain }} for {{ org.name }} is gone, so people with an "
        "address at {{ domain }} no longer join automatically. Publish the record again and check it in Settings.",
        "/settings/", {"domain": "example.com", "record": "_costguardian-challenge.example.com"}),
    EventType(
        "org.deletion_scheduled", "Organization to be deleted", "An owner scheduled the organization's deletion; "
        "it can be cancelled until the day.",
        CRITICAL, (OWNER,), (OWNER,),
        "{{ org.name }} will be deleted on {{ day }}",
        "{{ by }} scheduled the deletion of {{ org.name }} and everything it owns on {{ day }} (UTC). Until "
        "then its ingest API and gateway refuse calls; an owner can cancel the deletion in Settings.",
        "/settings/", {"by": "owner@example.com", "day": "2027-01-04"}),
    EventType(
        "org.deletion_cancelled", "Organization deletion cancelled", "An owner cancelled the organization's "
        "scheduled deletion.",
        INFO, (OWNER,), (OWNER,),
        "{{ org.name }} will not be deleted",
        "{{ by }} cancelled the scheduled deletion of {{ org.name }}.",
        "/settings/", {"by": "owner@example.com", "day": ""}),
    EventType(
        "org.export_ready", "Organization export ready", "The export of the whole organization you asked for "
        "is ready to download (owners only, for 7 days).",
        INFO, (OWNER,), (OWNER,),
        "The export of {{ org.name }} is ready",
        "The export of everything {{ org.name }} holds ({{ rows }} rows, {{ size }}) is ready. Download it "
        "until {{ expires }}; an owner of {{ org.name }} must be signed in.",
        "/settings/exports/{{ export_id }}", {"export_id": 1, "rows": "1,204,331", "size": "48.2 MB",
                                              "expires": "2026-12-13 09:30 UTC", "reason": ""}),
    EventType(
        "org.export_failed", "Organization export failed", "The export of the whole organization you asked for "
        "could not be built.",
        WARNING, (OWNER,), (OWNER,),
        "The export of {{ org.name }} failed",
        "The export of {{ org.name }} you asked for could not be built: {{ reason }} Try again from Settings.",
        "/settings/exports/{{ export_id }}", {"export_id": 1, "rows": "0", "size": "0 bytes", "expires": "",
                                              "reason": "The archive could not be written: No space left on device."}),
    EventType(
        "billing.trial_ending", "Trial ending", "The subscription's free trial ends in a few days.",
        WARNING, (OWNER, BILLING), (OWNER, BILLING),
        "The {{ plan }} trial ends on {{ trial_end }}",
        "{{ org.name }}'s free trial of {{ plan }} ends on {{ trial_end }}. {% if has_card %}The card on file "
        "will then be charged.{% else %}Add a payment method before then to keep {{ plan }}.{% endif %}",
        "/billing/", {"plan": "Team", "trial_end": "2026-12-19", "has_card": False}),
    EventType(
        "billing.subscription_canceled", "Subscription ended", "The subscription ended; Free limits apply.",
        CRITICAL, (OWNER, BILLING), (OWNER, BILLING),
        "The {{ plan }} subscription has ended",
        "{{ org.name }}'s {{ plan }} subscription ended on {{ ended }}. Free limits apply from now on; "
        "nothing was deleted. Subscribe again from the billing page at any time.",
        "/billing/", {"plan": "Team", "ended": "2026-12-19"}),
    EventType(
        "billing.events_allowance", "Tracked events allowance", "Tracked events reached 80% or 100% of the "
        "plan's allowance for the billing period.",
        WARNING, (OWNER, BILLING), (OWNER, BILLING),
        "{{ percent }}% of the {{ plan }} plan's tracked events used",
        "{{ org.name }} has recorded {{ events }} of the {{ allowance }} tracked events its {{ plan }} plan "
        "includes for the period ending {{ period_end }}. {{ consequence }}",
        "/billing/", {"percent": 80, "plan": "Team", "events": "800,000", "allowance": "1,000,000",
                      "period_end": "2026-12-31", "consequence": "Events beyond it are billed per 1,000."}),
    EventType(
        "webhook.disabled", "Webhook disabled", "A webhook endpoint kept failing and was turned off.",
        CRITICAL, _MANAGERS, _MANAGERS,
        "Webhook {{ endpoint }} was disabled",
        "The webhook endpoint {{ endpoint }} ({{ url }}) failed {{ failures }} times in a row and was disabled. "
        "Last error: {{ error }}. Fix the receiver, then turn the endpoint on again.",
        "/notifications/webhooks/{{ endpoint_id }}",
        {"endpoint": "Ops alerts", "url": "https://hooks.example.com/cg", "failures": 10, "error": "HTTP 500",
         "endpoint_id": 1}),
    EventType(
        "system.test", "Test notification", "A test sent by an administrator to check the channels.",
        INFO, _EVERYONE, _EVERYONE,
        "Test notification from {{ org.name }}",
        "{{ sender }} sent this test to check that notifications reach you. {{ message }}",
        "/notifications/", {"sender": "Olga Owner", "message": ""}),
)}

# Types that never go to webhooks (they would loop, or carry a private link).
NOT_FOR_WEBHOOKS = frozenset({"webhook.disabled", "member.invited", "org.export_ready", "org.export_failed"})


def get(key: str) -> EventType:
    try:
        return REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown notification event type {key!r}") from None


def default_channels(event_type: EventType, role: str) -> dict[str, bool]:
    return {IN_APP: True, EMAIL: role in event_type.email_roles}


def webhook_types() -> list[EventType]:
    return [t for t in REGISTRY.values() if t.key not in NOT_FOR_WEBHOOKS]
