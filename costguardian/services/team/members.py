"""The members page: one page of members with search and filters, their spend
this month, when they were last seen, and bulk actions that apply the
membership rules (services.team.orgs) to each member and report each refusal."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from peewee import JOIN, fn

from costguardian import clock
from costguardian import permissions
from costguardian.models import NO_USER, Department, Membership, Organization, UsageDimension, UsageRollup, User
from costguardian.models.org import MAX_ID
from costguardian.services.team import orgs
from costguardian.services.usage import queries as usage_queries
from costguardian.services.actor import Actor
from costguardian.services.errors import ServiceError

PER_PAGE = 50
LAST_SEEN_RESOLUTION = timedelta(minutes=5)
NO_DEPARTMENT_FILTER = "none"
BULK_ACTIONS = ("role", "department", "remove")


def parse_id(value) -> int | None:
    """A row id from request input, or None: only ASCII digits (str.isdigit
    also accepts '²', which int() refuses) within PostgreSQL's INTEGER."""
    text = str(value)
    if not (text.isascii() and text.isdecimal()):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


@dataclass
class MemberQuery:
    q: str = ""
    role: str = ""
    department: str = ""  # a department id, NO_DEPARTMENT_FILTER, or "" for all
    page: int = 1

    @classmethod
    def from_args(cls, args) -> "MemberQuery":
        role = args.get("role", "")
        department = args.get("department", "")
        if department not in ("", NO_DEPARTMENT_FILTER) and parse_id(department) is None:
            department = ""
        try:
            page = max(1, min(int(args.get("page", 1)), 10**6))
        except (TypeError, ValueError):
            page = 1
        return cls(q=(args.get("q") or "").strip()[:200], role=role if role in permissions.ROLES else "",
                   department=department, page=page)

    def args(self, **changes) -> dict:
        values = {"q": self.q, "role": self.role, "department": self.department, "page": self.page, **changes}
        return {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}


@dataclass
class MemberPage:
    rows: list[Membership]
    total: int
    page: int
    per_page: int
    spend: dict[int, int] = field(default_factory=dict)  # user id -> nanos this month

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def _filtered(org: Organization, query: MemberQuery):
    select = (Membership.in_org(org).select(Membership, User, Department).join(User)
              .switch(Membership).join(Department, JOIN.LEFT_OUTER, on=(Membership.department == Department.id)))
    if query.q:
        select = select.where(User.name.contains(query.q) | User.email.contains(query.q))  # case-insensitive
    if query.role:
        select = select.where(Membership.role == query.role)
    if query.department == NO_DEPARTMENT_FILTER:
        select = select.where(Membership.department.is_null())
    elif query.department:  # an id parse_id refuses matches nothing (no row has id 0)
        select = select.where(Membership.department == (parse_id(query.department) or 0))
    return select


def page_of_members(org: Organization, query: MemberQuery, per_page: int = PER_PAGE) -> MemberPage:
    """One page (SQL LIMIT/OFFSET) of the members matching `query`, sorted by
    name then email, with this month's spend of only the members shown."""
    select = _filtered(org, query)
    total = select.count()
    pages = max(1, math.ceil(total / per_page))
    page = min(query.page, pages)
    rows = list(select.order_by(fn.LOWER(User.name), User.email).offset((page - 1) * per_page).limit(per_page))
    return MemberPage(rows=rows, total=total, page=page, per_page=per_page, spend=spend_this_month(org, rows))


def get(org: Organization, membership_id) -> Membership | None:
    """The organization's membership with this id, its user loaded; None for
    an unknown id (or one that is not a number) and for another tenant's."""
    number = parse_id(membership_id)
    if number is None:
        return None
    return Membership.in_org(org).select(Membership, User).join(User).where(Membership.id == number).first()


PICK_LIMIT = 20


def matching(org: Organization, text: str, limit: int = PICK_LIMIT) -> list[Membership]:
    """The picker's suggestions: at most `limit` members whose name or email
    contains `text` (case-insensitive), by name then email."""
    text = (text or "").strip()[:200]
    select = Membership.in_org(org).select(Membership, User).join(User)
    if text:
        select = select.where(User.name.contains(text) | User.email.contains(text))
    return list(select.order_by(fn.LOWER(User.name), User.email).limit(limit))


def user_refs_matching(org: Organization, text: str, limit: int = PICK_LIMIT) -> list[tuple[str, str]]:
    """The explorer's and budgets' user picker: at most `limit` (value, label)
    pairs — members whose name or email contains `text` (value = their
    email), then other user references of the usage (a customer's end-user
    ids) that contain it — each list read with a LIMIT, never whole."""
    text = (text or "").strip()[:200]
    pairs = [(m.user.email, f"{m.user.name} ({m.user.email})" if m.user.name else m.user.email)
             for m in matching(org, text, limit)]
    seen = {value for value, _ in pairs}
    refs = (UsageDimension.select(UsageDimension.value)
            .where(UsageDimension.organization == org, UsageDimension.dimension == "user",
                   UsageDimension.value != NO_USER)
            .order_by(UsageDimension.value).limit(limit + len(seen)).tuples())
    if text:
        refs = refs.where(UsageDimension.value.contains(text))
    for (value,) in refs:
        if len(pairs) >= limit:
            break
        if value.lower() not in seen:
            pairs.append((value, value))
    return pairs


def by_email(org: Organization, email: str) -> Membership | None:
    """The member of `org` with this email (any case), or None."""
    email = (email or "").strip().lower()
    if not email:
        return None
    return Membership.in_org(org).select(Membership, User).join(User).where(User.email == email).first()


def picked(org: Organization, text: str | None, chosen_id, *, by: str = "user") -> tuple[Membership | None, bool]:
    """What a member picker's two fields name: (membership or None, whether
    something was asked for). `chosen_id` is the hidden id the picker's script
    fills (a user id, or a membership id with by="membership"); `text` is the
    visible field, an email, which wins when the two disagree (no script, or
    a typed change). `text` None: a form without the visible field (the API,
    older clients), where the id alone counts."""
    number = parse_id(chosen_id) if chosen_id not in (None, "") else None
    chosen = None
    if number is not None:
        column = Membership.user if by == "user" else Membership.id
        chosen = Membership.in_org(org).select(Membership, User).join(User).where(column == number).first()
    if text is None:
        return chosen, chosen_id not in (None, "")
    text = text.strip()
    if not text:
        return None, False
    if chosen is not None and chosen.user.email.lower() == text.lower():
        return chosen, True
    return by_email(org, text), True


def headcount(org: Organization) -> int:
    return Membership.in_org(org).count()


def spend_this_month(org: Organization, memberships: list[Membership]) -> dict[int, int]:
    """User id -> cost in nanos this month (the organization's local month),
    from one grouped read of the hourly rollups for these members' emails."""
    if not memberships:
        return {}
    by_email = {m.user.email.lower(): m.user_id for m in memberships}
    first, last = usage_queries.month_range(usage_queries.today(org))
    start, end = usage_queries.utc_bounds(org, first, last)
    ref = fn.LOWER(UsageRollup.user_ref)
    query = (UsageRollup.select(ref.alias("ref"), fn.SUM(UsageRollup.cost_nanos).alias("cost"))
             .where(UsageRollup.organization == org, UsageRollup.hour >= start, UsageRollup.hour < end,
                    ref.in_(list(by_email)))
             .group_by(ref).tuples())
    spend: dict[int, int] = {}
    for email, cost in query:
        user_id = by_email.get(email)
        if user_id is not None:
            spend[user_id] = spend.get(user_id, 0) + int(cost or 0)
    return spend


def departments(org: Organization) -> list[Department]:
    return list(Department.in_org(org).order_by(fn.LOWER(Department.name)))


def touch_last_seen(user: User, now=None) -> bool:
    """Record that `user` is active, at most once per LAST_SEEN_RESOLUTION:
    a cheap comparison on the loaded user, and one UPDATE when it is stale."""
    now = now or clock.now()
    if user.last_seen_at is not None and now - user.last_seen_at < LAST_SEEN_RESOLUTION:
        return False
    user.last_seen_at = now
    User.update(last_seen_at=now).where(User.id == user.id).execute()
    return True


# --- bulk actions ---------------------------------------------------------------

@dataclass
class BulkOutcome:
    membership: Membership
    ok: bool
    message: str


def bulk_apply(org: Organization, membership_ids: list, action: str, actor: Actor, role: str = "",
               department: Department | None = None) -> list[BulkOutcome]:
    """Apply one action to each selected member of `org`, each under the same
    rules as one at a time; ids of other organizations are ignored."""
    outcomes = []
    for membership in list(selected(org, membership_ids)):
        who = membership.user.display_name
        try:
            if action == "role":
                orgs.change_role(membership, role, actor)
                message = f"{who} is now {role}."
            elif action == "department":
                orgs.move_to_department(membership, department, actor)
                message = f"{who} moved to {department.name if department else 'no department'}."
            elif action == "remove":
                orgs.remove_member(membership, actor)
                message = f"{who} was removed."
            else:
                raise ValueError(f"unknown bulk action {action!r}")
        except ServiceError as exc:
            outcomes.append(BulkOutcome(membership, False, f"{who}: {exc.message}"))
        else:
            outcomes.append(BulkOutcome(membership, True, message))
    return outcomes


def selected(org: Organization, membership_ids: list):
    """The members of `org` among these ids (others' ids are ignored), by name."""
    ids = list(dict.fromkeys(n for n in map(parse_id, membership_ids) if n is not None))
    return (Membership.in_org(org).select(Membership, User).join(User).where(Membership.id.in_(ids))
            .order_by(fn.LOWER(User.name), User.email))
