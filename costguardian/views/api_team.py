"""The team JSON API (scope `admin`): members, invitations and the
organization's settings, under the same services and rules as the screens.
The key acts with the role its creator holds now (see services.orgs.acting_member)."""
from __future__ import annotations

from flask import g, jsonify, request

from costguardian import permissions
from costguardian.models import Department, Invitation, Membership
from costguardian.services import invitations, members, orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, ServiceError, ValidationError
from costguardian.services.ingest import BatchError, usd_string
from costguardian.views.api import _json_body, api_key_required, bp, problem

MAX_PER_PAGE = 200


def _actor() -> Actor:
    return Actor(user=None, ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", "")[:512],
                 api_key=g.api_key)


def _service_problem(exc: ServiceError):
    if isinstance(exc, ValidationError):
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=exc.errors)
    if isinstance(exc, NotPermitted):
        return problem(403, "not-permitted", exc.message)
    return problem(409, "rule-violation", exc.message)


def _body_problem(exc: BatchError):
    status = 415 if exc.problem == "unsupported-media-type" else 422
    return problem(status, exc.problem, exc.detail, **({"errors": exc.errors} if exc.errors else {}))


def _parameter_problem(errors: dict):
    return problem(422, "invalid-parameter", "Some query parameters are not valid; see 'errors'.", errors=errors)


def _object_body() -> dict:
    body = _json_body()
    if not isinstance(body, dict):
        raise BatchError("invalid-request", "Send a JSON object.", {"": "Expected a JSON object."})
    return body


def _not_permitted(permission: str, doing: str):
    """None when the key's creator may do this now (their current role in
    this organization); else the 403 answer. A key whose creator was removed
    or demoted loses what the role no longer allows."""
    acting = orgs.acting_member(g.org, _actor())
    if acting is not None and not permissions.role_can(acting[1] or "", permission):
        return problem(403, "not-permitted", f"This API key's creator cannot {doing}.")
    return None


def _not_found(what: str):
    return problem(404, "not-found", f"No {what} with this id in this organization.")


def _department_from(value, errors: dict):
    """A department of this organization by id or name; None for null."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        errors["department"] = "A department id, a department name, or null."
        return None
    if isinstance(value, int):
        department = Department.get_in_org(g.org, value)
    else:
        department = Department.in_org(g.org).where(Department.name == value.strip()).first()
    if department is None:
        errors["department"] = f"No department {value!r} in this organization."
    return department


def _member_json(m: Membership, spend: dict | None = None) -> dict:
    body = {
        "id": m.id, "user_id": m.user_id, "email": m.user.email, "name": m.user.name, "role": m.role,
        "department": {"id": m.department.id, "name": m.department.name} if m.department_id else None,
        "joined_at": m.created_at.isoformat() + "Z",
        "last_seen_at": m.user.last_seen_at.isoformat() + "Z" if m.user.last_seen_at else None,
    }
    if spend is not None:
        body["spend_this_month_usd"] = usd_string(spend.get(m.user_id, 0))
    return body


def _invitation_json(i: Invitation) -> dict:
    return {
        "id": i.id, "email": i.email, "role": i.role, "status": i.status(),
        "department": {"id": i.department.id, "name": i.department.name} if i.department_id else None,
        "invited_by": i.invited_by.email if i.invited_by_id else None,
        "created_at": i.created_at.isoformat() + "Z", "sent_at": i.sent_at.isoformat() + "Z",
        "expires_at": i.expires_at.isoformat() + "Z",
        "accepted_at": i.accepted_at.isoformat() + "Z" if i.accepted_at else None,
        "revoked_at": i.revoked_at.isoformat() + "Z" if i.revoked_at else None,
    }


def _paging(errors: dict) -> tuple[int, int]:
    """page and per_page from the query; problems go into `errors`."""
    try:
        page = int(request.args.get("page", 1))
        if not 1 <= page <= 10**6:
            raise ValueError
    except ValueError:
        errors["page"] = "A whole number from 1."
        page = 1
    try:
        per_page = int(request.args.get("per_page", members.PER_PAGE))
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError
    except ValueError:
        errors["per_page"] = f"A whole number from 1 to {MAX_PER_PAGE}."
        per_page = members.PER_PAGE
    return page, per_page


# --- members ----------------------------------------------------------------------

@bp.get("/v1/members")
@api_key_required("admin")
def list_members():
    refused = _not_permitted("members:read", "see the organization's members")
    if refused:
        return refused
    errors = {}
    page, per_page = _paging(errors)
    role, department = request.args.get("role", ""), request.args.get("department", "")
    if role and role not in permissions.ROLES:
        errors["role"] = f"One of {', '.join(permissions.ROLES)}."
    if department and department != members.NO_DEPARTMENT_FILTER and members.parse_id(department) is None:
        errors["department"] = "A department id, or 'none'."
    if errors:
        return _parameter_problem(errors)
    query = members.MemberQuery(q=(request.args.get("q") or "").strip()[:200], role=role, department=department,
                                page=page)
    result = members.page_of_members(g.org, query, per_page=per_page)
    return jsonify({"members": [_member_json(m, result.spend) for m in result.rows], "page": result.page,
                    "per_page": per_page, "total": result.total, "pages": result.pages})


@bp.put("/v1/members/<int:membership_id>")
@api_key_required("admin")
def update_member(membership_id: int):
    membership = Membership.get_in_org(g.org, membership_id)
    if membership is None:
        return _not_found("member")
    try:
        body = _object_body()
    except BatchError as exc:
        return _body_problem(exc)
    errors = {k: "Unknown field; send role and/or department." for k in body if k not in ("role", "department")}
    if "role" in body and body["role"] not in permissions.ROLES:
        errors["role"] = f"One of {', '.join(permissions.ROLES)}."
    department = _department_from(body.get("department"), errors) if "department" in body else None
    if not body:
        errors[""] = "Send role and/or department."
    if errors:
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)
    actor = _actor()
    try:
        if "role" in body:
            membership = orgs.change_role(membership, body["role"], actor)
        if "department" in body:
            membership = orgs.move_to_department(Membership.get_by_id(membership.id), department, actor)
    except ServiceError as exc:
        return _service_problem(exc)
    fresh = members.selected(g.org, [membership.id]).first()
    return jsonify(_member_json(fresh, members.spend_this_month(g.org, [fresh])))


@bp.delete("/v1/members/<int:membership_id>")
@api_key_required("admin")
def delete_member(membership_id: int):
    membership = Membership.get_in_org(g.org, membership_id)
    if membership is None:
        return _not_found("member")
    try:
        orgs.remove_member(membership, _actor())
    except ServiceError as exc:
        return _service_problem(exc)
    return "", 204


# --- invitations --------------------------------------------------------------------

@bp.post("/v1/invitations")
@api_key_required("admin")
def create_invitations():
    try:
        body = _object_body()
    except BatchError as exc:
        return _body_problem(exc)
    errors = {k: "Unknown field; send emails (or email), role and department." for k in body
              if k not in ("emails", "email", "role", "department")}
    raw = body.get("emails", body.get("email"))
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        errors["emails"] = "A list of email addresses (or 'email': one address)."
    role = body.get("role", permissions.MEMBER)
    if not isinstance(role, str):
        errors["role"] = f"One of {', '.join(permissions.ROLES)}."
    department = _department_from(body.get("department"), errors)
    if errors:
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)
    try:
        results = invitations.invite(g.org, raw, role, _actor(), department=department)
    except ServiceError as exc:
        return _service_problem(exc)
    invited = sum(1 for r in results if r.ok)
    response = jsonify({
        "invited": invited, "not_invited": len(results) - invited,
        "results": [{"email": r.address, "status": r.status, "message": r.message,
                     "invitation": _invitation_json(r.invitation) if r.invitation else None} for r in results],
    })
    response.status_code = 201 if invited else 200
    return response


@bp.get("/v1/invitations")
@api_key_required("admin")
def list_invitations():
    refused = _not_permitted("members:manage", "see the organization's invitations")
    if refused:
        return refused
    status = request.args.get("status", "")
    errors = {}
    page, per_page = _paging(errors)
    if status and status not in ("pending", "accepted", "expired", "revoked"):
        errors["status"] = "One of pending, accepted, expired, revoked."
    if errors:
        return _parameter_problem(errors)
    query = invitations.invitations_of(g.org, status)
    total = query.count()
    rows = list(query.offset((page - 1) * per_page).limit(per_page))
    return jsonify({"invitations": [_invitation_json(i) for i in rows], "page": page, "per_page": per_page,
                    "total": total})


@bp.delete("/v1/invitations/<int:invitation_id>")
@api_key_required("admin")
def revoke_invitation(invitation_id: int):
    invitation = Invitation.get_in_org(g.org, invitation_id)
    if invitation is None:
        return _not_found("invitation")
    try:
        invitation = invitations.revoke(invitation, _actor())
    except ServiceError as exc:
        return _service_problem(exc)
    return jsonify(_invitation_json(invitation))


# --- the organization -------------------------------------------------------------

@bp.put("/v1/organization")
@api_key_required("admin")
def update_organization():
    try:
        body = _object_body()
    except BatchError as exc:
        return _body_problem(exc)
    errors = {k: "Unknown field; send name and/or time_zone." for k in body if k not in ("name", "time_zone")}
    for field in ("name", "time_zone"):
        if field in body and not isinstance(body[field], str):
            errors[field] = "A string."
    if errors:
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)
    refused = _not_permitted("org:settings", "change the organization's settings")
    if refused:
        return refused
    org = g.org
    actor = _actor()
    try:
        orgs.update_settings(org, actor, body.get("name", org.name), body.get("time_zone", org.time_zone),
                             org.currency)
    except ServiceError as exc:
        return _service_problem(exc)
    return jsonify({"id": org.id, "slug": org.slug, "name": org.name, "time_zone": org.time_zone,
                    "currency": org.currency})
