"""Who a gateway call is attributed to.

The key's default user (its member's email) and department apply unless the
call names others: `X-CG-User` (else OpenAI's `user` field, else Anthropic's
`metadata.user_id`), `X-CG-Department` (a department's name or cost-centre
code) and `X-CG-Tags` (comma-separated `tag` or `key:value`). They are
checked before the call is forwarded, so the usage event recorded afterwards
cannot be refused for them: an unknown department or a malformed tag answers
400 and nothing reaches the provider.

A key whose `attribution_override` is off keeps every call on its own
defaults: a call that sends `X-CG-User`, `X-CG-Department` or `X-CG-Tags`
answers 403 (`attribution_not_allowed`, nothing forwarded), so a mistaken
setup is seen at once; the body's `user` / `metadata.user_id` (which apps
set for the provider's own abuse tracking) are forwarded unchanged but do
not change the attribution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from costguardian.models import Department
from costguardian.models.org import caseless
from costguardian.services.usage.ingest import RESERVED_TAG_KEYS, storable  # the gateway's own tags

MAX_USER = 200
MAX_TAG = 100
MAX_CALLER_TAGS = 17  # the event holds 20: the gateway adds source:, status: and usage: tags


OVERRIDE_HEADERS = ("x-cg-user", "x-cg-department", "x-cg-tags")


class AttributionError(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "invalid_attribution"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


@dataclass(frozen=True)
class Attribution:
    user: str = ""  # "" → the key's default user
    department: str = ""  # the department's name, "" → the key's default department
    department_id: int | None = None  # the department the call counts under (a header's, else the key's)
    tags: list[str] = field(default_factory=list)  # the caller's

    def user_for(self, api_key) -> str | None:
        """The user the call counts under, as the usage event will store it."""
        if self.user:
            return self.user
        if api_key is not None and api_key.user_id:
            return api_key.user.email.lower()
        return None


def from_request(org, api_key, headers: Mapping[str, str], body: dict) -> Attribution:
    if api_key is not None and not api_key.attribution_override:
        named = [name for name in OVERRIDE_HEADERS if (headers.get(name) or "").strip()]
        if named:
            raise AttributionError(
                f"This API key does not allow a call to choose its attribution ({', '.join(named)}): its usage "
                "always counts for the key's own user and department. Remove the header, or let an admin allow "
                "overrides on the key's page.", status=403, code="attribution_not_allowed")
        return Attribution(department_id=api_key.department_id)
    return Attribution(user=_user(headers, body), **_department(org, api_key, headers), tags=_tags(headers))


def _user(headers: Mapping[str, str], body: dict) -> str:
    given = headers.get("x-cg-user")
    if given is not None:
        given = given.strip()
        if len(given) > MAX_USER or not storable(given):
            raise AttributionError(f"X-CG-User: at most {MAX_USER} characters, without NUL.")
        return given.lower() if "@" in given else given
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    for value in (body.get("user"), metadata.get("user_id")):
        if isinstance(value, str) and value.strip() and storable(value):
            value = value.strip()[:MAX_USER]  # the provider's field allows more; the attribution keeps the start
            return value.lower() if "@" in value else value
    return ""


def _department(org, api_key, headers: Mapping[str, str]) -> dict:
    given = " ".join((headers.get("x-cg-department") or "").split())
    if not given:
        return {"department": "", "department_id": api_key.department_id if api_key is not None else None}
    key = caseless(given)
    found = (Department.in_org(org).select(Department.id, Department.name)
             .where((Department.name_key == key) | (Department.code_key == key)).first())
    if found is None:
        raise AttributionError(f"X-CG-Department: no department named (or with the code) '{given[:120]}' in this "
                               "organization.")
    return {"department": found.name, "department_id": found.id}


def _tags(headers: Mapping[str, str]) -> list[str]:
    given = headers.get("x-cg-tags")
    if not given:
        return []
    tags = list(dict.fromkeys(t.strip() for t in given.split(",") if t.strip()))
    if len(tags) > MAX_CALLER_TAGS:
        raise AttributionError(f"X-CG-Tags: at most {MAX_CALLER_TAGS} tags.")
    for tag in tags:
        if len(tag) > MAX_TAG or not storable(tag):
            raise AttributionError(f"X-CG-Tags: each tag is at most {MAX_TAG} characters, without NUL.")
        if tag.partition(":")[0].strip().lower() in RESERVED_TAG_KEYS and ":" in tag:
            raise AttributionError(f"X-CG-Tags: '{tag}' — the {', '.join(k + ':' for k in RESERVED_TAG_KEYS)} tags "
                                   "are the gateway's own.")
    return tags
