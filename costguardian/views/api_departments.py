"""The departments JSON API: list (scope `read`) and create (scope `admin`),
under the same service and rules as the departments page. Like the rest of
the admin API, a key acts with the role its creator holds now."""
from __future__ import annotations

from flask import g, jsonify, request

from costguardian import permissions
from costguardian.models import Department, Membership, User
from costguardian.services.team import departments, orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.usage.ingest import BatchError, usd_string
from costguardian.views.api import _json_body, api_key_required, bp, problem, text_error

MAX_EMAIL = 254


def _actor() -> Actor:
    return Actor(user=None, ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", "")[:512],
                 api_key=g.api_key)


def department_json(node: departments.TreeNode) -> dict:
    d = node.department
    return {
        "id": d.id, "name": d.name, "code": d.code, "parent_id": d.parent_id, "path": node.path,
        "manager": d.manager.email if d.manager_id else None, "members": node.members,
        "spend_this_month_usd": usd_string(node.spend_nanos), "requests_this_month": node.requests,
        "created_at": d.created_at.isoformat() + "Z", "updated_at": d.updated_at.isoformat() + "Z",
    }


@bp.get("/v1/departments")
@api_key_required("read")
def list_departments():
    nodes = departments.tree(g.org, departments.month_spend(g.org))
    return jsonify({"departments": [department_json(n) for n in nodes]})


def _text(body: dict, name: str, errors: dict, max_length: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            errors[name] = "Give the department a name."
        return None
    problem_ = text_error(value, max_length, required=required)
    if problem_:
        errors[name] = problem_
        return None
    return value


def _parent(value, errors: dict) -> Department | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        errors["parent"] = "A department id, a department name, or null."
        return None
    if isinstance(value, str) and text_error(value, departments.MAX_NAME):
        errors["parent"] = text_error(value, departments.MAX_NAME)
        return None
    if isinstance(value, int):
        parent = Department.get_in_org(g.org, value)
    else:
        parent = (Department.in_org(g.org).where(Department.name == value.strip()).first()
                  or Department.in_org(g.org).where(Department.code == value.strip()).first())
    if parent is None:
        errors["parent"] = f"No department {value!r} in this organization."
    return parent


def _manager(value, errors: dict) -> User | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or text_error(value, MAX_EMAIL):
        errors["manager"] = "A member's email address, or null."
        return None
    user = User.by_email(value)
    if user is None or Membership.of(user, g.org) is None:
        errors["manager"] = "The manager must be a member of this organization."
        return None
    return user


@bp.post("/v1/departments")
@api_key_required("admin")
def create_department():
    actor = _actor()
    acting = orgs.acting_member(g.org, actor)
    if acting is not None and not permissions.role_can(acting[1] or "", "members:manage"):
        return problem(403, "not-permitted", "The key's creator can no longer manage members and departments.")
    try:
        body = _json_body()
        if not isinstance(body, dict):
            raise BatchError("invalid-request", "Send a JSON object.", {"": "Expected a JSON object."})
    except BatchError as exc:
        status = 415 if exc.problem == "unsupported-media-type" else 422
        return problem(status, exc.problem, exc.detail, **({"errors": exc.errors} if exc.errors else {}))
    errors: dict[str, str] = {}
    unknown = sorted(set(body) - {"name", "code", "parent", "parent_id", "manager"})
    for name in unknown:
        errors[name] = "Unknown field."
    name = _text(body, "name", errors, departments.MAX_NAME, required=True)
    code = _text(body, "code", errors, departments.MAX_CODE)
    parent_id, parent = body.get("parent_id"), None
    if "parent" in body and "parent_id" in body:
        errors["parent"] = "Send either 'parent' or 'parent_id', not both."
    elif parent_id is not None and (isinstance(parent_id, bool) or not isinstance(parent_id, int)):
        errors["parent_id"] = "A department id, or null."
    else:
        parent = _parent(body.get("parent_id", body.get("parent")), errors)
    manager = _manager(body.get("manager"), errors)
    if errors:
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)
    try:
        dept = departments.create(g.org, actor, name or "", code, parent, manager)
    except ValidationError as exc:
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=exc.errors)
    node = next(n for n in departments.tree(g.org) if n.department.id == dept.id)
    response = jsonify(department_json(node))
    response.status_code = 201
    return response
