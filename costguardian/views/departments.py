"""Departments: the tree with members, managers, codes and this month's
spend; create, edit (rename, re-code, move, manager), assign members, merge
and delete. Reading needs members:read, every change members:manage."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, request, url_for

from costguardian.authz import current_actor, require_permission
from costguardian.forms.departments import NO_SUCH_MEMBER, AssignForm, DepartmentForm, TargetForm
from costguardian.rendering import redirect_to, render, toast
from costguardian.services.team import departments, members, orgs
from costguardian.services.usage import queries as usage_queries
from costguardian.services.errors import RuleViolation, ValidationError

bp = Blueprint("departments", __name__, url_prefix="/departments")

INDEX, SHOW = "departments/index.html", "departments/show.html"
PANEL, EDIT = "partials/departments/_panel.html", "partials/departments/_edit.html"
ACTIONS = "partials/departments/_actions.html"
MERGE_LABEL, DELETE_LABEL = "Merge into", "Move members, sub-departments and history to"
DELETE_EMPTY = "— Nowhere: it must be empty —"


def _department_or_404(department_id: int):
    department = departments.get(g.org, department_id)
    if department is None:
        abort(404)
    return department


def _index_context(form: DepartmentForm | None = None) -> dict:
    nodes = departments.tree(g.org, departments.month_spend(g.org))
    return {"nodes": nodes, "form": form or DepartmentForm(g.org, formdata=None),
            "unassigned": departments.unassigned_count(g.org),
            "month_start": usage_queries.today(g.org).replace(day=1)}


@bp.get("/")
@require_permission("members:read")
def index():
    return render(INDEX, PANEL, **_index_context())


@bp.post("/")
@require_permission("members:manage")
def create():
    form = DepartmentForm(g.org)
    if form.validate():
        try:
            dept = departments.create(g.org, current_actor(), form.name.data, form.code.data,
                                      form.parent_department(), form.manager_user())
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            response = render(INDEX, PANEL, **_index_context())
            return toast(response, f"Department “{dept.name}” created.")
    return render(INDEX, PANEL, status=422, **_index_context(form))


def _show_context(department, edit: DepartmentForm | None = None, merge: TargetForm | None = None,
                  remove: TargetForm | None = None, assign: AssignForm | None = None, error: str = "") -> dict:
    node = next((n for n in departments.tree(g.org) if n.department.id == department.id), None)
    # the department's own members, 50 a page, as the members page pages them
    page = members.page_of_members(g.org, members.MemberQuery(department=str(department.id),
                                                              page=request.args.get("page", 1, type=int) or 1))
    return {
        "department": department, "path": node.path if node else department.name,
        "members": page.rows, "member_page": page, "children": departments.children_of(g.org, department),
        "month": departments.month_total(g.org, department), "has_history": departments.has_history(g.org, department),
        "edit": edit or DepartmentForm(g.org, department=department, formdata=None),
        "merge": merge or TargetForm(g.org, department, formdata=None, prefix="merge", label=MERGE_LABEL),
        "remove": remove or TargetForm(g.org, department, formdata=None, prefix="delete", empty=DELETE_EMPTY,
                                       label=DELETE_LABEL),
        "assign": assign or AssignForm(g.org, formdata=None),
        "error": error,
    }


@bp.get("/<int:department_id>")
@require_permission("members:read")
def show(department_id: int):
    department = _department_or_404(department_id)
    return render(SHOW, SHOW, **_show_context(department))


@bp.post("/<int:department_id>")
@require_permission("members:manage")
def update(department_id: int):
    department = _department_or_404(department_id)
    form = DepartmentForm(g.org, department=department)
    if form.validate():
        try:
            departments.update(department, current_actor(), form.name.data, form.code.data,
                               form.parent_department(), form.manager_user())
        except ValidationError as exc:
            form.apply_errors(exc)
        else:
            flash(f"Department “{department.name}” saved.", "success")
            return redirect_to(url_for("departments.show", department_id=department.id))
    department = _department_or_404(department_id)  # the unsaved edits stay in the form only
    return render(SHOW, EDIT, status=422, **_show_context(department, edit=form))


@bp.post("/<int:department_id>/members")
@require_permission("members:manage")
def assign(department_id: int):
    department = _department_or_404(department_id)
    form = AssignForm(g.org)
    membership = form.membership() if form.validate() else None
    if membership is None:
        form.member.errors = [NO_SUCH_MEMBER if form.member_email.data else "Choose a member of this organization."]
        return render(SHOW, ACTIONS, status=422, **_show_context(department, assign=form))
    orgs.move_to_department(membership, department, current_actor())
    flash(f"{membership.user.display_name} is now in {department.name}.", "success")
    return redirect_to(url_for("departments.show", department_id=department.id))


@bp.post("/<int:department_id>/members/<int:membership_id>/remove")
@require_permission("members:manage")
def unassign(department_id: int, membership_id: int):
    department = _department_or_404(department_id)
    membership = members.get(g.org, membership_id)
    if membership is None or membership.department_id != department.id:
        abort(404)
    orgs.move_to_department(membership, None, current_actor())
    flash(f"{membership.user.display_name} is no longer in {department.name}.", "success")
    return redirect_to(url_for("departments.show", department_id=department.id))


@bp.post("/<int:department_id>/merge")
@require_permission("members:manage")
def merge(department_id: int):
    department = _department_or_404(department_id)
    form = TargetForm(g.org, department, prefix="merge", label=MERGE_LABEL)
    form.validate()
    target = form.target_department()
    if target is None:
        form.target.errors = ["Choose the department to merge into."]
        return render(SHOW, ACTIONS, status=422, **_show_context(department, merge=form))
    name = department.name
    try:
        departments.merge(department, target, current_actor())
    except ValidationError as exc:
        form.apply_errors(exc)
        return render(SHOW, ACTIONS, status=422, **_show_context(department, merge=form))
    flash(f"“{name}” was merged into “{target.name}”: its members, keys and usage history are there now.",
          "success")
    return redirect_to(url_for("departments.show", department_id=target.id))


@bp.post("/<int:department_id>/delete")
@require_permission("members:manage")
def delete(department_id: int):
    department = _department_or_404(department_id)
    form = TargetForm(g.org, department, prefix="delete", empty=DELETE_EMPTY, label=DELETE_LABEL)
    form.validate()
    move_to = form.target_department()
    if form.target.data and move_to is None:
        form.target.errors = ["Choose a department of this organization."]
        return render(SHOW, ACTIONS, status=422, **_show_context(department, remove=form))
    name = department.name
    try:
        departments.delete(department, current_actor(), move_to=move_to)
    except ValidationError as exc:
        form.apply_errors(exc)
        return render(SHOW, ACTIONS, status=422, **_show_context(department, remove=form))
    except RuleViolation as exc:
        form.target.errors = [exc.message]
        return render(SHOW, ACTIONS, status=422, **_show_context(department, remove=form))
    flash(f"Department “{name}” deleted." + (f" Its members and history moved to “{move_to.name}”."
                                            if move_to is not None else ""), "success")
    return redirect_to(url_for("departments.index"))
