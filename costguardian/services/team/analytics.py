"""Team analytics: spend and requests by member and by department over a
period, each department's top models, new and inactive members.

Everything comes from one grouped scan of the hourly rollups (by user,
department and model) plus one query for the members: no query per member
or department, so the page stays fast at hundreds of members."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from peewee import JOIN, fn

from costguardian.models import NO_DEPARTMENT, NO_USER, Department, Membership, User, UsageRollup
from costguardian.services.usage import queries as usage_queries
from costguardian.services.usage.queries import UsageFilter

TOP_MODELS = 3


@dataclass
class Spend:
    cost_nanos: int = 0
    requests: int = 0
    unpriced_requests: int = 0

    def add(self, cost: int, requests: int, unpriced: int) -> None:
        self.cost_nanos += cost
        self.requests += requests
        self.unpriced_requests += unpriced


@dataclass
class MemberRow(Spend):
    membership: Membership | None = None
    last_active: datetime | None = None

    @property
    def user(self) -> User:
        return self.membership.user


@dataclass
class DepartmentRow(Spend):
    department_id: int = NO_DEPARTMENT
    label: str = ""
    top_models: list = field(default_factory=list)  # [(model, Spend)], biggest cost first


@dataclass
class TeamReport:
    start: date
    end: date
    total: Spend
    members: list[MemberRow]  # every member, biggest spend first
    others: Spend  # usage attributed to no member: end-user ids of the customer's apps, or no user
    departments: list[DepartmentRow]  # departments with usage, and "(no department)", biggest first
    new_members: list[MemberRow]  # joined within the period
    inactive_members: list[MemberRow]  # no usage and no sign-in within the period


def _sort_key(row: Spend, name: str):
    return (-row.cost_nanos, -row.requests, name.lower())


def report(org, start: date, end: date) -> TeamReport:
    flt = UsageFilter(start, end)
    table = UsageRollup
    query = (table.select(table.user_ref, table.department_id, table.model, fn.SUM(table.cost_nanos),
                          fn.SUM(table.requests), fn.SUM(table.unpriced_requests))
             .where(*usage_queries.rollup_conditions(org, table, flt))
             .group_by(table.user_ref, table.department_id, table.model).tuples())
    by_user: dict[str, Spend] = defaultdict(Spend)
    by_department: dict[int, Spend] = defaultdict(Spend)
    by_department_model: dict[int, dict[str, Spend]] = defaultdict(lambda: defaultdict(Spend))
    total = Spend()
    for user_ref, department_id, model, cost, requests, unpriced in query:
        cost, requests, unpriced = int(cost or 0), int(requests or 0), int(unpriced or 0)
        total.add(cost, requests, unpriced)
        by_user[(user_ref or NO_USER).lower()].add(cost, requests, unpriced)
        by_department[department_id].add(cost, requests, unpriced)
        by_department_model[department_id][model].add(cost, requests, unpriced)

    memberships = list(Membership.in_org(org).select(Membership, User, Department).join(User)
                       .switch(Membership)
                       .join(Department, JOIN.LEFT_OUTER, on=(Membership.department == Department.id)))
    members: list[MemberRow] = []
    member_spend = Spend()
    for m in memberships:
        spend = by_user.get(m.user.email.lower(), Spend())
        member_spend.add(spend.cost_nanos, spend.requests, spend.unpriced_requests)
        moments = [t for t in (m.user.last_login_at, m.user.last_seen_at) if t is not None]
        members.append(MemberRow(spend.cost_nanos, spend.requests, spend.unpriced_requests, membership=m,
                                 last_active=max(moments) if moments else None))
    members.sort(key=lambda r: _sort_key(r, r.user.display_name))
    others = Spend(total.cost_nanos - member_spend.cost_nanos, total.requests - member_spend.requests,
                   total.unpriced_requests - member_spend.unpriced_requests)

    paths = usage_queries.department_paths(org)
    departments = []
    for department_id, spend in by_department.items():
        label = "(no department)" if department_id == NO_DEPARTMENT else paths.get(department_id, "(deleted)")
        models = sorted(by_department_model[department_id].items(), key=lambda item: _sort_key(item[1], item[0]))
        departments.append(DepartmentRow(spend.cost_nanos, spend.requests, spend.unpriced_requests,
                                         department_id=department_id, label=label,
                                         top_models=models[:TOP_MODELS]))
    departments.sort(key=lambda r: _sort_key(r, r.label))

    period_start, period_end = usage_queries.exact_bounds(org, start, end)
    new = [r for r in members if period_start <= r.membership.created_at < period_end]
    new.sort(key=lambda r: r.membership.created_at, reverse=True)
    inactive = [r for r in members if r.requests == 0
                and (r.last_active is None or not period_start <= r.last_active < period_end)
                and r.membership.created_at < period_end]
    inactive.sort(key=lambda r: (r.last_active or datetime.min, r.user.display_name.lower()))
    return TeamReport(start, end, total, members, others, departments, new, inactive)


