"""Departments (teams, cost centres): a tree per organization, with an
optional cost-centre code and manager. Create, edit, move, merge and delete,
every change audited.

Merging A into B moves everything that points at A to B in one transaction:
every foreign key to Department (memberships, API keys, usage events, child
departments, and whatever later features add), and the rollup rows, whose
department is a plain integer in their primary key. A rollup row of A is
added into B's row with the same other key columns (INSERT … SELECT … ON
CONFLICT DO UPDATE SET x = x + excluded.x) and then deleted, so every total
stays what it was, only counted under B.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from peewee import JOIN, IntegrityError, OperationalError, fn

from costguardian import clock
from costguardian.db import write_transaction
from costguardian.extensions import db
from costguardian.models import (NO_DEPARTMENT, Budget, Department, Membership, User, UsageDayRollup,
                                 UsageDayTagRollup, UsageEvent, UsageRollup, UsageTagRollup)
from costguardian.models.org import caseless
from costguardian.services.budgets import accounting as budget_accounting
from costguardian.services.team import audit
from costguardian.services.usage import rollups
from costguardian.services.usage import queries as usage_queries
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError

MAX_NAME, MAX_CODE = 120, 32


# --- reading -------------------------------------------------------------------

def get(org, department_id) -> Department | None:
    """The organization's department with this id; None for an unknown id
    (or one that is not a number) and for another tenant's."""
    return Department.get_in_org(org, department_id)


def parent_ids(org) -> dict[int, int | None]:
    """Department id -> its parent's id (None at the top), for every department."""
    return dict(Department.in_org(org, Department.id, Department.parent).tuples())


def children_of(org, department: Department) -> list[Department]:
    """The departments right below this one, by name."""
    return list(Department.in_org(org).where(Department.parent == department).order_by(Department.name))


def members_of(org, department: Department) -> list[Membership]:
    """The department's own members (not its sub-departments'), with their users, by name."""
    return list(Membership.in_org(org).select(Membership, User).join(User)
                .where(Membership.department == department).order_by(User.name, User.email))


def unassigned_count(org) -> int:
    """How many members are in no department."""
    return Membership.in_org(org).where(Membership.department.is_null()).count()


def descendant_ids(org, department) -> list[int]:
    """The department's id and the ids of every department below it: who is
    "in" a department for budgets and filters."""
    return usage_queries.department_subtree(org, [department.id if isinstance(department, Department)
                                                  else int(department)])


@dataclass
class TreeNode:
    department: Department
    depth: int
    path: str
    members: int = 0
    spend_nanos: int = 0
    requests: int = 0


def tree(org, spend: dict[int, tuple[int, int]] | None = None) -> list[TreeNode]:
    """Every department in tree order (parents before their children, siblings
    by name), with its depth, path ("Engineering › Platform") and member
    count; `spend` ({department id: (cost nanos, requests)}) fills the money."""
    counts = dict(Membership.in_org(org).select(Membership.department, fn.COUNT(Membership.id))
                  .where(Membership.department.is_null(False)).group_by(Membership.department).tuples())
    departments = list(Department.in_org(org).select(Department, User)
                       .join(User, JOIN.LEFT_OUTER, on=(Department.manager == User.id)))
    children: dict = defaultdict(list)
    ids = {d.id for d in departments}
    for dept in departments:
        children[dept.parent_id if dept.parent_id in ids else None].append(dept)
    for siblings in children.values():
        siblings.sort(key=lambda d: d.name.lower())
    nodes: list[TreeNode] = []
    seen: set[int] = set()
    spend = spend or {}

    def walk(parent_id, depth, prefix):
        for dept in children.get(parent_id, ()):
            if dept.id in seen:
                continue
            seen.add(dept.id)
            path = f"{prefix} › {dept.name}" if prefix else dept.name
            cost, requests = spend.get(dept.id, (0, 0))
            nodes.append(TreeNode(dept, depth, path, counts.get(dept.id, 0), cost, requests))
            walk(dept.id, depth + 1, path)

    walk(None, 0, "")
    return nodes


def month_spend(org) -> dict[int, tuple[int, int]]:
    """This month's (cost nanos, requests) per department id, from the rollups."""
    day = usage_queries.today(org)
    flt = usage_queries.UsageFilter(day.replace(day=1), day)
    rows = usage_queries.summarize(org, flt, group_by="department")
    return {row.key: (row.cost_nanos, row.requests) for row in rows}


def month_total(org, department: Department) -> usage_queries.Totals:
    """This month's totals of the department, from the rollups."""
    day = usage_queries.today(org)
    return usage_queries.total(org, usage_queries.UsageFilter(day.replace(day=1), day, department_ids=[department.id]))


def has_history(org, department: Department) -> bool:
    return (UsageRollup.select(UsageRollup.hour)
            .where(UsageRollup.organization == org, UsageRollup.department_id == department.id)
            .limit(1).exists())


def choices(org) -> list[tuple[int, str]]:
    """(id, path) of every department, in tree order, for select boxes."""
    return [(node.department.id, node.path) for node in tree(org)]


# --- validation ----------------------------------------------------------------

def _clean(org, name: str, code: str | None, parent: Department | None, manager: User | None,
           department: Department | None = None) -> tuple[str, str | None]:
    errors: dict[str, str] = {}
    name = " ".join((name or "").split())
    code = (code or "").strip() or None
    if not name:
        errors["name"] = "Give the department a name."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Use at most {MAX_NAME} characters."
    if code is not None and len(code) > MAX_CODE:
        errors["code"] = f"Use at most {MAX_CODE} characters."
    errors.update(_clashes(org, name if "name" not in errors else None, code if "code" not in errors else None,
                           department))
    if parent is not None:
        if parent.organization_id != org.id:
            errors["parent"] = "Choose a department of this organization."
        elif department is not None and parent.id in descendant_ids(org, department):
            errors["parent"] = ("A department cannot sit inside itself or one of its own sub-departments; "
                                "choose another parent.")
    if manager is not None and Membership.of(manager, org) is None:
        errors["manager"] = "The manager must be a member of this organization."
    if errors:
        raise ValidationError(errors)
    return name, code


def _clashes(org, name: str | None, code: str | None, department: Department | None) -> dict[str, str]:
    """The name and code another department of `org` already has, ignoring
    case (the folded keys, unique per organization)."""
    errors: dict[str, str] = {}
    for field, value, key_field in (("name", name, Department.name_key), ("code", code, Department.code_key)):
        if not value:
            continue
        clash = Department.in_org(org).where(key_field == caseless(value))
        if department is not None:
            clash = clash.where(Department.id != department.id)
        if clash.exists():
            errors[field] = (f"There is already a department named “{value}”." if field == "name"
                             else f"The code {value} is already used by another department.")
    return errors


def _saving(org, name: str, code: str | None, department: Department | None, write):
    """Run `write`; a concurrent change that took the name or code between the
    check and the write is refused like the check would have."""
    try:
        with db.atomic():
            return write()
    except IntegrityError as exc:
        errors = _clashes(org, name, code, department) or {"name": f"There is already a department named “{name}”."}
        raise ValidationError(errors) from exc


def _retrying(work):
    """Run `work` in a write transaction; a deadlock with a concurrent
    ingest batch (PostgreSQL) is retried."""
    for attempt in range(3):
        try:
            with write_transaction():
                return work()
        except OperationalError as exc:
            if attempt == 2 or "deadlock" not in str(exc).lower():
                raise
    raise AssertionError("unreachable")


# --- changes -------------------------------------------------------------------

def create(org, actor: Actor, name: str, code: str | None = None, parent: Department | None = None,
           manager: User | None = None) -> Department:
    name, code = _clean(org, name, code, parent, manager)
    dept = _saving(org, name, code, None, lambda: Department.create(organization=org, name=name, code=code,
                                                                     parent=parent, manager=manager))
    audit.record(actor, "department.created", org=org, target=dept, name=name, code=code or "",
                 parent=parent.name if parent is not None else "", manager=manager.email if manager else "")
    return dept


def update(department: Department, actor: Actor, name: str, code: str | None, parent: Department | None,
           manager: User | None) -> Department:
    """Rename, re-code, move (refusing cycles) and change the manager, in one step."""
    org = department.organization
    name, code = _clean(org, name, code, parent, manager, department)
    before = {"name": department.name, "code": department.code or "",
              "parent": department.parent.name if department.parent_id else "",
              "manager": department.manager.email if department.manager_id else ""}
    after = {"name": name, "code": code or "", "parent": parent.name if parent is not None else "",
             "manager": manager.email if manager is not None else ""}
    changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if not changes:
        return department
    department.name, department.code = name, code
    department.parent, department.manager, department.updated_at = parent, manager, clock.now()
    _saving(org, name, code, department, department.save)
    action = "department.moved" if list(changes) == ["parent"] else (
        "department.renamed" if list(changes) == ["name"] else "department.updated")
    audit.record(actor, action, org=org, target=department, name=name, changes=changes)
    if "parent" in changes:  # budgets of the old and new parents cover other departments now
        budget_accounting.rebuild_org(org)
    return department


def move(department: Department, actor: Actor, parent: Department | None) -> Department:
    """A new parent (None: top level); a cycle is refused."""
    return update(department, actor, department.name, department.code, parent,
                  department.manager if department.manager_id else None)


@dataclass
class MergeResult:
    members: int = 0
    api_keys: int = 0
    events: int = 0
    rollup_rows: int = 0
    children: int = 0


def _fold(source: Department, target: Department | None) -> MergeResult:
    """Move everything of `source` to `target` (None: no department) and
    delete `source`; the caller holds the transaction."""
    org_id = source.organization_id
    # The organization row FOR SHARE, as every rollup writer holds it, so no
    # build step of the daily rollups (which holds it alone) sums these rows
    # while they move (services/usage/days.py).
    rollups.write_state(org_id)
    result = MergeResult()
    target_id = target.id if target is not None else None
    if target is not None and target.id in descendant_ids(source.organization, source):
        # Merging into one of its own sub-departments: lift that one to
        # source's place first, so that re-parenting source's children to it
        # cannot make a cycle.
        Department.update(parent=source.parent_id, updated_at=clock.now()).where(Department.id == target.id).execute()
    # Every foreign key to Department, whichever model declares it.
    for fk in Department._meta.backrefs:
        model = fk.model
        if model is Department:
            moved = (Department.update(parent=target_id, updated_at=clock.now())
                     .where(Department.parent == source.id, Department.id != (target_id or 0)).execute())
            result.children = moved
            continue
        moved = model.update({fk: target_id}).where(fk == source.id).execute()
        if model is Membership:
            result.members = moved
        elif model is UsageEvent:
            result.events = moved
        elif model.__name__ == "ApiKey":
            result.api_keys = moved
    for table in (UsageRollup, UsageTagRollup):
        result.rollup_rows += _move_rollups(table, org_id, source.id, target_id or NO_DEPARTMENT)
    for table in (UsageDayRollup, UsageDayTagRollup):  # the same sums per local day (services/usage/days.py)
        _move_rollups(table, org_id, source.id, target_id or NO_DEPARTMENT)
    Department.delete().where(Department.id == source.id).execute()
    return result


def _move_rollups(table, org_id: int, source_id: int, target_id: int) -> int:
    """Add the source department's rollup rows into the target's (same hour,
    provider, model, key, user, tag), then delete the source's rows."""
    name = table._meta.table_name
    key = ("organization_id",) + table.KEY
    measures = table.MEASURES
    columns = ", ".join(f'"{c}"' for c in key + measures)
    p = db.param
    selected = ", ".join(f"CAST({p} AS INTEGER)" if c == "department_id" else f'"{c}"' for c in key + measures)
    conflict = ", ".join(f'"{c}"' for c in key)
    update = ", ".join(f'"{m}" = "{name}"."{m}" + excluded."{m}"' for m in measures)
    db.execute_sql(
        f'INSERT INTO "{name}" ({columns}) SELECT {selected} FROM "{name}" '
        f'WHERE "organization_id" = {p} AND "department_id" = {p} '
        f'ON CONFLICT ({conflict}) DO UPDATE SET {update}', [target_id, org_id, source_id])
    return table.delete().where(table.organization == org_id, table.department_id == source_id).execute()


def merge(source: Department, target: Department, actor: Actor) -> MergeResult:
    """Merge `source` into `target`: members, API keys, child departments and
    usage history follow; `source` is deleted. One transaction."""
    org = source.organization
    if target.organization_id != source.organization_id:
        raise ValidationError({"target": "Choose a department of this organization."})
    if target.id == source.id:
        raise ValidationError({"target": "Choose another department to merge into."})
    source_name, target_name = source.name, target.name
    result = _retrying(lambda: _fold(source, target))
    audit.record(actor, "department.merged", org=org, target=target, name=source_name, into=target_name,
                 members=result.members, api_keys=result.api_keys, events=result.events)
    budget_accounting.rebuild_org(org)  # the history moved: budgets count it where it is now
    return result


def delete(department: Department, actor: Actor, move_to: Department | None = None) -> MergeResult:
    """Delete a department. Without `move_to` it must have no members and no
    sub-departments; API keys bound to it are unbound and its usage history
    counts as "no department". With `move_to`, members, sub-departments, keys
    and history move there first (a merge)."""
    org = department.organization
    if move_to is not None:
        if move_to.organization_id != org.id or move_to.id == department.id:
            raise ValidationError({"move_to": "Choose another department of this organization."})
    else:
        budgets = Budget.in_org(org).where(Budget.scope_department == department).count()
        if budgets:
            raise RuleViolation(f"{department.name} has {budgets} budget{'s' if budgets != 1 else ''}; "
                                "delete them first, or choose a department to move everything to.")
        members = Membership.in_org(org).where(Membership.department == department).count()
        children = Department.in_org(org).where(Department.parent == department).count()
        if members or children:
            parts = [f"{members} member{'s' if members != 1 else ''}" if members else "",
                     f"{children} sub-department{'s' if children != 1 else ''}" if children else ""]
            raise RuleViolation(f"{department.name} still has {' and '.join(p for p in parts if p)}; "
                                "choose a department to move them to, or move them first.")
    name = department.name
    result = _retrying(lambda: _fold(department, move_to))
    audit.record(actor, "department.deleted", org=org, target=department, name=name,
                 moved_to=move_to.name if move_to is not None else "", members=result.members,
                 events=result.events)
    budget_accounting.rebuild_org(org)
    return result
