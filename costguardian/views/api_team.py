"""The team JSON API (scope `admin`): members, invitations and the
organization's settings, under the same services and rules as the screens.
The key acts with the role its creator holds now (see services.team.orgs.acting_member)."""
from __future__ import annotations

from flask import g, jsonify, request

from costguardian import permissions
from costguardian.models import Department, Invitation, Membership
from costguardian.services.team import departments, invitations, members, orgs
from costguardian.services.actor import Actor
from costguardian.services.billing.limits import SeatLimit
from costguardian.services.errors import NotPermitted, ServiceError, ValidationError
from costguardian.services.usage.ingest import BatchError, usd_string
from costguardian.views.api import _json_body, api_key_required, bp, enum_arg, int_arg, problem, text_error

MAX_PER_PAGE = 200
MAX_PAGE = 10**6
MAX_QUERY = 200  # characters of a members search
MAX_EMAIL = 254  # characters of an address (RFC 5321); longer ones are refused, not reported as invalid
INVITATION_STATUSES = ("pending", "accepted", "expired", "revoked")
ORG_MAX_NAME = 120  # as services.team.orgs.validated_settings


def _actor() -> Actor:
    return Actor(user=None, ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", "")[:512],
                 api_key=g.api_key)


def _service_problem(exc: ServiceError):
    if isinstance(exc, ValidationError):
        return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=exc.errors)
    if isinstance(exc, NotPermitted):
        return problem(403, "not-permitted", exc.message)
    if isinstance(exc, SeatLimit):
        return problem(409, "seat-limit", exc.message, upgrade_url=exc.upgrade_url)
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
    if isinstance(value, str) and text_error(value, departments.MAX_NAME):
        errors["department"] = text_error(value, departments.MAX_NAME)
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
    return (int_arg("page", 1, 1, MAX_PAGE, errors),
            int_arg("per_page", members.PER_PAGE, 1, MAX_PER_PAGE, errors))


# --- members ----------------------------------------------------------------------

@bp.get("/v1/members")
@api_key_required("admin")
def list_members():
    refused = _not_permitted("members:read", "see the organization's members")
    if refused:
        return refused
    errors = {}
    page, per_page = _paging(errors)
    role = enum_arg("role", permissions.ROLES, errors)
    department = request.args.get("department")
    if department is not None and department != members.NO_DEPARTMENT_FILTER and members.parse_id(department) is None:
        errors["department"] = "A department id, or 'none'."
    q = request.args.get("q", "")
    if text_error(q, MAX_QUERY):
        errors["q"] = text_error(q, MAX_QUERY)
    if errors:
        return _parameter_problem(errors)
    query = members.MemberQuery(q=q.strip(), role=role, department=department or "", page=page)
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
    if "role" in body and (not isinstance(body["role"], str) or body["role"] not in permissions.ROLES):
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
    if "emails" in body and "email" in body:
        errors["email"] = "Send either 'emails' (a list) or 'email' (one address), not both."
    if "email" in body:
        raw = [body["email"]]
        field, what = "email", "One email address (a string)."
    else:
        raw = body.get("emails")
        field, what = "emails", (f"A list of 1 to {invitations.MAX_ADDRESSES} email addresses "
                                 "(or 'email': one address).")
    if not isinstance(raw, list) or not 1 <= len(raw) <= invitations.MAX_ADDRESSES \
            or not all(isinstance(e, str) for e in raw):
        errors.setdefault(field, what)
    elif any(len(e) > MAX_EMAIL for e in raw):
        errors.setdefault(field, f"An address has at most {MAX_EMAIL} characters.")
    role = body.get("role", permissions.MEMBER)
    if not isinstance(role, str) or role not in permissions.ROLES:
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
    errors = {}
    page, per_page = _paging(errors)
    status = enum_arg("status", INVITATION_STATUSES, errors)
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
    if "name" in body and text_error(body["name"], ORG_MAX_NAME, required=True):
        errors["name"] = text_error(body["name"], ORG_MAX_NAME, required=True)
    if "time_zone" in body and body["time_zone"] not in orgs.time_zones():
        errors["time_zone"] = "A time zone name from the IANA database, like Europe/Berlin."
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
