"""The demo organization `make run` creates on first start, so a new user can
sign in and look around. Real rows through the real services: people and
departments (`seed`), usage (services.demo.usage), then budgets sized from
that usage (`seed_budgets`), checked once so alerts and forecasts exist."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from costguardian import clock
from costguardian import permissions
from costguardian.models import Budget, Department, Membership, User
from costguardian.services.budgets import accounting as budget_accounting, periods as budget_periods, budgets
from costguardian.services.team import accounts, orgs
from costguardian.services.actor import Actor

DEMO_ORG = "Acme AI Labs"
OWNER_EMAIL = "owner@example.com"
PEOPLE = [  # email, name, role, department
    ("admin@example.com", "Ada Admin", permissions.ADMIN, "Platform"),
    ("billing@example.com", "Bill Ing", permissions.BILLING, None),
    ("member@example.com", "Mo Member", permissions.MEMBER, "Research"),
    ("viewer@example.com", "Vi Viewer", permissions.VIEWER, "Marketing"),
]
# Platform admins of the demo installation: members of no organization, they
# see it through the console (/admin/) only.
PLATFORM_PEOPLE = [("root@example.com", "Root Admin", "superadmin"), ("support@example.com", "Sam Support", "support")]
DEPARTMENTS = [("Engineering", None), ("Platform", "Engineering"), ("Research", "Engineering"),
               ("Marketing", None), ("Support", None)]


def seed(instance_path: Path) -> dict:
    """Create the demo data once; on later runs only report the sign-in."""
    saved = instance_path / "demo_credentials.json"
    if User.by_email(OWNER_EMAIL) is not None and saved.exists():
        return json.loads(saved.read_text())
    if User.by_email(OWNER_EMAIL) is not None:
        return {"email": OWNER_EMAIL, "password": "(set on an earlier run; use \"Forgot password\")",
                "org": DEMO_ORG, "others": ", ".join(p[0] for p in PEOPLE)}

    actor = Actor.system()
    password = secrets.token_urlsafe(9)
    owner = accounts.sign_up(OWNER_EMAIL, "Olivia Owner", password, actor)
    org = orgs.create_organization(DEMO_ORG, owner, actor, time_zone="Europe/Berlin")
    departments: dict[str, Department] = {}
    for name, parent in DEPARTMENTS:
        departments[name] = Department.create(organization=org, name=name, parent=departments.get(parent))
    for email, name, role, department in PEOPLE:
        user = accounts.sign_up(email, name, password, actor)
        membership = orgs.add_member(org, user, role, actor)
        if department:
            membership.department = departments[department]
            membership.save(only=[Membership.department])
    for email, name, role in PLATFORM_PEOPLE:
        user = accounts.sign_up(email, name, password, actor)
        user.platform_role = role
        user.save(only=[User.platform_role])
    credentials = {"email": OWNER_EMAIL, "password": password, "org": DEMO_ORG,
                   "others": ", ".join([p[0] for p in PEOPLE] + [f"{p[0]} (platform {p[2]})" for p in PLATFORM_PEOPLE])}
    instance_path.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(credentials))
    saved.chmod(0o600)
    return credentials


# name, period, scope, how to size the limit from the scope's spend, fallback $, extra fields.
# "headroom": limit = projected period spend × factor (ok or warning);
# "over": limit = spend so far / factor (already past factor × 100% of it).
BUDGETS = [
    ("Company AI spend", "monthly", {}, ("headroom", 1.3), 5_000,
     {"notify_roles": "owner,admin,billing", "owner": OWNER_EMAIL}),
    ("Engineering (hard limit)", "monthly", {"department": "Engineering"}, ("headroom", 1.15), 3_000,
     {"enforcement": "hard", "thresholds": "50,80,90,100", "owner": "admin@example.com"}),
    ("OpenAI", "monthly", {"provider": "openai"}, ("over", 0.86), 1_500,
     {"notify_resolved": "on", "owner": "billing@example.com"}),
    ("Production traffic (weekly)", "weekly", {"tag": "env:prod"}, ("headroom", 1.25), 800,
     {"thresholds": "80,100"}),
    ("Research × Anthropic", "monthly", {"department": "Research", "provider": "anthropic"}, ("headroom", 1.6), 600,
     {"owner": "member@example.com"}),
]


def _nice(dollars: float) -> float:
    """Two significant figures, at least $1: 12,345 -> 12,000; 1.37 -> 1.4."""
    return max(1.0, float(f"{dollars:.2g}"))


def seed_budgets(org, now=None) -> int:
    """The demo organization's budgets, once (nothing when it has any),
    sized from its current spend so each shows a different state; then the
    periodic check runs, so alerts and forecasts exist on first start."""
    if Budget.in_org(org).exists():
        return 0
    now = now or clock.now()
    actor = Actor.system()
    departments = {d.name: d.id for d in Department.in_org(org)}
    people = {u.email: u.id for u in User.select().join(Membership).where(Membership.organization == org)}
    made = 0
    for name, period, scope, (rule, factor), fallback, extra in BUDGETS:
        data = {"name": name, "period": period, **{k: v for k, v in extra.items() if k != "owner"}}
        if "department" in scope:
            if scope["department"] not in departments:
                continue
            data["department_id"] = departments[scope["department"]]
        if "provider" in scope:
            data["provider"] = scope["provider"]
        if "tag" in scope:
            data["tag"] = scope["tag"]
        if extra.get("owner") in people:
            data["owner_id"] = people[extra["owner"]]
        probe = Budget(organization=org, period=period, scope_department=data.get("department_id"),
                       scope_provider=scope.get("provider"), scope_tag=scope.get("tag"))
        current = budget_periods.current_period(probe, org.time_zone, now)
        spend, _ = budget_accounting.spend_between(budget_accounting.Scope.of(probe), current.start, current.end)
        dollars = spend / 1e9
        if dollars <= 0:
            amount = fallback
        elif rule == "over":
            amount = _nice(dollars / factor)
            if dollars < 0.8 * amount:  # rounding must not undo "already over 80%"
                amount = max(0.01, round(dollars / factor, 2))
        else:
            elapsed = max((now - current.start).total_seconds(), 3600) / (current.end - current.start).total_seconds()
            amount = _nice(dollars / min(elapsed, 1.0) * factor)
        data["amount_usd"] = f"{amount:.2f}"
        budgets.create(org, actor, data)
        made += 1
    budgets.check_all(now)
    return made
