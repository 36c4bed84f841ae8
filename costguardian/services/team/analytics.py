"""Team analytics: spend and requests by member and by department over a
period, each department's top models, new and inactive members.

Everything comes from one grouped scan of the hourly rollups (by user,
department and model) plus a fixed number of queries for the members: those
with usage (a semi-join on the rollups), one page of the others, and the counts
and first few of the new and inactive members. No query per member or
department, and nothing loads every member, so the page stays fast at
10,000 members (bench/members.py)."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from peewee import JOIN, SQL, Case, fn

from costguardian.models import NO_DEPARTMENT, NO_USER, Department, Membership, User, UsageRollup
from costguardian.services.usage import queries as usage_queries
from costguardian.services.usage.queries import UsageFilter

TOP_MODELS = 3
PER_PAGE = 50  # members per page, as on the members page
LISTED = 20  # new and inactive members named; the rest are counted
NEVER = datetime(1970, 1, 1)  # "never signed in" for comparisons in SQL


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
    members: list[MemberRow]  # one page of the members, biggest spend first (then by name)
    others: Spend  # usage attributed to no member: end-user ids of the customer's apps, or no user
    departments: list[DepartmentRow]  # departments with usage, and "(no department)", biggest first
    new_members: list[MemberRow]  # joined within the period: the latest LISTED
    inactive_members: list[MemberRow]  # no usage and no sign-in within the period: the first LISTED
    member_total: int = 0
    members_with_usage: int = 0
    new_count: int = 0
    inactive_count: int = 0
    page: int = 1
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.member_total / self.per_page))


def _sort_key(row: Spend, name: str):
    return (-row.cost_nanos, -row.requests, name.lower())


def report(org, start: date, end: date, page: int = 1, per_page: int = PER_PAGE) -> TeamReport:
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

    period_start, period_end = usage_queries.exact_bounds(org, start, end)
    used = {email: spend for email, spend in by_user.items() if spend.requests}
    # Members with usage, ranked from (id, email, name) alone; whole rows only for the page shown.
    # "With usage" is a subquery, never a list of thousands of emails or ids: PostgreSQL hashes a
    # subquery, but with a long IN (...) list a prepared statement's generic plan took 244 ms at
    # 10,000 members, and NOT IN (...) compares every row with every id (bench/members.py).
    refs = fn.LOWER(table.user_ref)
    with_requests = (table.select(refs).where(*usage_queries.rollup_conditions(org, table, flt),
                                              table.user_ref.is_null(False))
                     .group_by(refs).having(fn.SUM(table.requests) > 0))
    ranked = sorted(((i, email, name) for i, email, name in
                     Membership.in_org(org).select(Membership.id, User.email, User.name).join(User)
                     .where(User.email.in_(with_requests)).tuples() if email in used),
                    key=lambda m: _sort_key(used[m[1]], m[2] or m[1]))
    member_spend = Spend()
    for _id, email, _name in ranked:
        member_spend.add(used[email].cost_nanos, used[email].requests, used[email].unpriced_requests)
    others = Spend(total.cost_nanos - member_spend.cost_nanos, total.requests - member_spend.requests,
                   total.unpriced_requests - member_spend.unpriced_requests)

    member_total = Membership.in_org(org).count()
    pages = max(1, math.ceil(member_total / per_page))
    page = min(max(page, 1), pages)
    offset = (page - 1) * per_page
    shown = [membership_id for membership_id, _email, _name in ranked[offset:offset + per_page]]
    loaded = {m.id: m for m in _members(org).where(Membership.id.in_(shown))} if shown else {}
    members = [_row(loaded[i], used[loaded[i].user.email.lower()]) for i in shown if i in loaded]
    unused = [User.email.not_in(with_requests)] if ranked else []
    if len(members) < per_page:  # the rest of the page: members without usage, by name
        rest = (_members(org).where(*unused)
                .order_by(fn.LOWER(fn.COALESCE(fn.NULLIF(User.name, ""), User.email)), User.email)
                .offset(max(0, offset - len(ranked))).limit(per_page - len(members)))
        members += [_row(m, Spend()) for m in rest]

    joined = (Membership.created_at >= period_start) & (Membership.created_at < period_end)
    new_rows = list(_members(org, counted=True).where(joined)
                    .order_by(Membership.created_at.desc(), Membership.id.desc()).limit(LISTED))
    new = [_row(m, used.get(m.user.email.lower(), Spend())) for m in new_rows]
    new_count = new_rows[0].matching if new_rows else 0

    login, seen = fn.COALESCE(User.last_login_at, NEVER), fn.COALESCE(User.last_seen_at, NEVER)
    last_active = Case(None, ((login > seen, login),), seen)
    quiet = [*unused, Membership.created_at < period_end,
             ~((last_active >= period_start) & (last_active < period_end))]
    # counted apart: a window count here would sort every quiet member's whole row (slower on PostgreSQL)
    inactive_count = Membership.in_org(org).join(User).where(*quiet).count()
    inactive = [_row(m, Spend()) for m in _members(org).where(*quiet)
                .order_by(last_active, User.email)  # emails are stored lower-case: no function per row
                .limit(LISTED)]

    paths = usage_queries.department_paths(org)
    departments = []
    for department_id, spend in by_department.items():
        label = "(no department)" if department_id == NO_DEPARTMENT else paths.get(department_id, "(deleted)")
        models = sorted(by_department_model[department_id].items(), key=lambda item: _sort_key(item[1], item[0]))
        departments.append(DepartmentRow(spend.cost_nanos, spend.requests, spend.unpriced_requests,
                                         department_id=department_id, label=label,
                                         top_models=models[:TOP_MODELS]))
    departments.sort(key=lambda r: _sort_key(r, r.label))

    return TeamReport(start, end, total, members, others, departments, new, inactive, member_total=member_total,
                      members_with_usage=len(ranked), new_count=new_count, inactive_count=inactive_count,
                      page=page, per_page=per_page)


def own_row(org, start: date, end: date, user_id: int) -> MemberRow | None:
    """One member's row of the report (a member who sees only their own)."""
    membership = _members(org).where(Membership.user == user_id).first()
    if membership is None:
        return None
    email = membership.user.email.lower()
    flt = UsageFilter(start, end, users=[email])
    spend = Spend()
    for cost, requests, unpriced in (UsageRollup.select(fn.SUM(UsageRollup.cost_nanos), fn.SUM(UsageRollup.requests),
                                                        fn.SUM(UsageRollup.unpriced_requests))
                                     .where(*usage_queries.rollup_conditions(org, UsageRollup, flt)).tuples()):
        spend.add(int(cost or 0), int(requests or 0), int(unpriced or 0))
    return _row(membership, spend)


def _members(org, counted: bool = False):
    """Members with their users and departments; `counted`: each row also
    carries `matching`, how many rows match before the LIMIT (a window
    count: one scan for the first few and their number)."""
    columns = [Membership, User, Department] + ([fn.COUNT(SQL("*")).over().alias("matching")] if counted else [])
    return (Membership.in_org(org).select(*columns).join(User).switch(Membership)
            .join(Department, JOIN.LEFT_OUTER, on=(Membership.department == Department.id)))


def _row(m: Membership, spend: Spend) -> MemberRow:
    moments = [t for t in (m.user.last_login_at, m.user.last_seen_at) if t is not None]
    return MemberRow(spend.cost_nanos, spend.requests, spend.unpriced_requests, membership=m,
                     last_active=max(moments) if moments else None)


