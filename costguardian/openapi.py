"""The OpenAPI 3.1 document for the JSON API, served at /api/openapi.json.
Kept beside the code it describes; a test checks every API route is in it."""
from __future__ import annotations

from costguardian.models.org import MAX_ID
from costguardian.services.team.orgs import time_zones
from costguardian.services.usage.ingest import EARLIEST, MAX_EVENTS, MAX_FUTURE, MAX_TAG_LENGTH, MAX_TAGS, MAX_TOKENS
from costguardian.services.usage.usage_objects import COUNTS, DETAIL_COUNTS, MARKERS, MAX_COUNT

# Text the server stores or looks up: PostgreSQL cannot hold NUL, so no field takes it.
NO_NUL = "^[^\\u0000]*$"

def _char_class(chars) -> str:
    """Characters as a regular-expression class body of \\uXXXX ranges."""
    codes, ranges = sorted(map(ord, chars)), []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\u{a:04x}" + (f"-\\u{b:04x}" if b > a else "") for a, b in ranges)


# What the server trims (str.strip, str.split: every character for which str.isspace() holds),
# spelt out: \s differs between regular-expression engines (ECMA's leaves out U+001C–U+001F, U+0085).
# None lies above U+3000 (tests/test_openapi_contract.py checks it).
_SPACES = _char_class([chr(c) for c in range(0x3001) if chr(c).isspace()])
NOT_BLANK = f"^[^\\u0000]*[^\\u0000{_SPACES}][^\\u0000]*$"  # ... and one character that is not a space


def text(max_length: int, *, non_blank: bool = False, nullable: bool = False, **extra) -> dict:
    """A text field as the server checks it (views.api.text_error): at most
    `max_length` characters as sent (limits apply before any trimming), no
    NUL, and with `non_blank` something besides spaces."""
    return {"type": ["string", "null"] if nullable else "string", "maxLength": max_length,
            "pattern": NOT_BLANK if non_blank else NO_NUL, **extra}


ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_LIMITS = {"maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "minItems", "maxItems", "default"}


def _as_answered(field: dict) -> dict:
    """An input field's schema for the same value in an answer: its type and
    meaning, not the input's limits (a stored value is normalized, e.g.
    lower-cased, and lower-casing can lengthen a string)."""
    return {k: v for k, v in field.items() if k not in _LIMITS}


def _every_field_given(schema: dict) -> dict:
    """The answer always holds every documented field (null where stated)."""
    return {**schema, "required": list(schema["properties"])}


_TOKENS = {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_TOKENS}
_COUNT = {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_COUNT}

USAGE_OBJECT = {
    "type": "object",
    "description": "The provider's own usage object, verbatim: OpenAI chat (prompt_tokens …) or responses "
                   "(input_tokens, input_tokens_details …), Anthropic messages (input_tokens, "
                   "cache_read_input_tokens …), Gemini usageMetadata (promptTokenCount …) or Bedrock Converse "
                   "(inputTokens …). Every count listed here that is present must be a whole number (or null); "
                   "other members are ignored.",
    "anyOf": [{"required": [name]} for name in MARKERS],
    "properties": {**{name: _COUNT for name in COUNTS},
                   **{details: {"properties": {name: _COUNT for name in names}}
                      for details, names in DETAIL_COUNTS.items()}},
}

_TAG_VALUE_LENGTH = MAX_TAG_LENGTH - 1  # "key:value"
# An RFC 3339 date-time without its offset (taken as UTC).
_LOCAL_TIME = ("^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
               "(?:\\.[0-9]+)?$")
EVENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_id", "provider", "model"],
    "description": "Null for an optional field means the same as leaving it out. Rules a schema cannot state "
                   "(the event is rejected with reasons): cache_read_tokens + cache_write_tokens may not exceed "
                   "input_tokens; `department` must name one of the organization's departments; one call may "
                   "cost at most $100,000; occurred_at lies between "
                   f"{EARLIEST.isoformat()}Z and {int(MAX_FUTURE.total_seconds() // 60)} minutes after the "
                   "server's clock.",
    "not": {"anyOf": [{"required": ["usage", name]} for name in
                      ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")]},
    "properties": {
        "event_id": text(128, non_blank=True,
                         description="Your id for the call; a second event with the same id is a duplicate."),
        "provider": text(64, non_blank=True, examples=["openai", "anthropic", "google"]),
        "model": text(200, non_blank=True, examples=["gpt-4o", "claude-sonnet-4-5"]),
        "occurred_at": {"type": ["string", "null"], "anyOf": [{"format": "date-time"}, {"pattern": _LOCAL_TIME}],
                        "description": "When the call happened (default: now): an RFC 3339 date-time, whose offset "
                                       "may be left out (then it is UTC); from "
                                       f"{EARLIEST.year} to at most 5 minutes in the future."},
        "input_tokens": {**_TOKENS, "description": "Every prompt token, including cache reads and writes."},
        "cache_read_tokens": {**_TOKENS, "description": "How many of the input tokens were read from cache."},
        "cache_write_tokens": {**_TOKENS, "description": "How many of the input tokens were written to cache."},
        "output_tokens": _TOKENS,
        "usage": {**USAGE_OBJECT, "description": "Instead of token counts (not with them). "
                  + USAGE_OBJECT["description"]},
        "user": text(200, nullable=True, description="A member's email (stored lower-case) or your own end-user "
                                                     "id (default: the key's user)."),
        "department": text(120, nullable=True,
                           description="A department's name, any case (default: the key's department)."),
        "tags": {"oneOf": [
            {"type": "object", "maxProperties": MAX_TAGS,
             "propertyNames": {"maxLength": _TAG_VALUE_LENGTH, "pattern": NO_NUL},
             "additionalProperties": {"type": ["string", "number", "boolean"], "maxLength": _TAG_VALUE_LENGTH,
                                      "pattern": NO_NUL}},
            {"type": "array", "maxItems": MAX_TAGS, "items": text(MAX_TAG_LENGTH)},
            {"type": "null"}],
            "description": f"At most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters; an object becomes "
                           "key:value tags (the key, a colon and the value at most "
                           f"{MAX_TAG_LENGTH} characters together)."},
        "batch": {"type": "boolean", "description": "The call went through a batch API (batch prices)."},
        "service_tier": text(16, nullable=True, examples=["flex", "priority"]),
    },
}

TOTALS = {
    "type": "object",
    "properties": {
        "requests": {"type": "integer"}, "input_tokens": {"type": "integer"},
        "cache_read_tokens": {"type": "integer"}, "cache_write_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer"},
        "cost_usd": {"type": ["string", "null"], "description": "Decimal string; priced requests only."},
        "unpriced_requests": {"type": "integer", "description": "Requests whose model has no known price."},
    },
}

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"},
                   "errors": {"type": "object", "additionalProperties": {"type": "string"}}},
}


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


AUTH_ERRORS = {
    "401": _problem("Missing, malformed, unknown, revoked or expired API key."),
    "403": _problem("The key lacks the scope this operation needs."),
}


# --- departments (GET: scope read; POST: scope admin) ---------------------------
# A department named in a request body: its id, its name (or "" / null for none).
_DEPT_IN = {"type": ["integer", "string", "null"], "minimum": 1, "maximum": MAX_ID, "maxLength": 120,
            "pattern": NO_NUL}
DEPARTMENT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "code": {"type": ["string", "null"]},
        "parent_id": {"type": ["integer", "null"]},
        "path": {"type": "string", "description": "The name with its parents', e.g. \"Engineering › Platform\"."},
        "manager": {"type": ["string", "null"], "description": "The manager's email."},
        "members": {"type": "integer"},
        "spend_this_month_usd": {"type": "string", "description": "The department's own usage this month "
                                 "(organization time zone), sub-departments not included."},
        "requests_this_month": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}

DEPARTMENT_PATHS = {
    "/api/v1/departments": {
        "get": {
            "summary": "List departments",
            "description": "Every department in tree order (parents before their children). Needs the `read` scope.",
            "responses": {
                "200": {"description": "The departments.", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"departments": {"type": "array", "items": {
                        "$ref": "#/components/schemas/Department"}}}}}}},
                **AUTH_ERRORS,
            },
        },
        "post": {
            "summary": "Create a department",
            "description": "Needs the `admin` scope, and the key's creator must still be allowed to manage "
                           "members. Names are unique in the organization (ignoring case), and so are codes; "
                           "`parent` must name one of its departments and `manager` one of its members "
                           "(otherwise 422).",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "required": ["name"],
                "not": {"required": ["parent", "parent_id"]},
                "properties": {
                    "name": text(120, non_blank=True, description="Spaces inside are collapsed to one."),
                    "code": text(32, nullable=True, description="Cost-centre code (blank: none)."),
                    "parent": {**_DEPT_IN, "description": "The parent's id, name or code (null: top level); "
                                                          "or send parent_id."},
                    "parent_id": {**ID, "type": ["integer", "null"]},
                    "manager": text(254, nullable=True, description="A member's email."),
                }}}}},
            "responses": {
                "201": {"description": "The new department.", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Department"}}}},
                **AUTH_ERRORS,
                "415": _problem("The body is not sent as application/json."),
                "422": _problem("A field is missing or not valid (see 'errors'), e.g. a name already in use."),
            },
        },
    },
}


# --- team: members, invitations, the organization (scope admin) -------------------
_DEPT_REF = {"type": ["object", "null"], "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
def _id_param(name: str) -> list:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}]
_PAGING = [{"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10**6,
                                                      "default": 1}},
           {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200,
                                                          "default": 50}}]
_TEAM_ERRORS = {
    **AUTH_ERRORS,
    "403": _problem("The key lacks the `admin` scope, or the rules refuse (the key acts with its creator's "
                    "current role: an admin's key cannot grant owner; nobody changes their own role)."),
    "415": _problem("The body is not sent as application/json."),
    "422": _problem("A field is not valid; 'errors' maps each field to its message."),
}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


TEAM_SCHEMAS = {
    "Member": {"type": "object", "properties": {
        "id": {"type": "integer", "description": "The membership id (use it in /members/{membership_id})."},
        "user_id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"},
        "role": {"enum": ["owner", "admin", "billing", "member", "viewer"]}, "department": _DEPT_REF,
        "joined_at": {"type": "string", "format": "date-time"},
        "last_seen_at": {"type": ["string", "null"], "format": "date-time"},
        "spend_this_month_usd": {"type": "string", "description": "Cost of usage attributed to the member's "
                                 "email this month (organization time zone)."}}},
    "Invitation": {"type": "object", "properties": {
        "id": {"type": "integer"}, "email": {"type": "string"},
        "role": {"enum": ["owner", "admin", "billing", "member", "viewer"]},
        "status": {"enum": ["pending", "accepted", "expired", "revoked"]}, "department": _DEPT_REF,
        "invited_by": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"}, "sent_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "accepted_at": {"type": ["string", "null"], "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"}}},
    "InvitationResults": {"type": "object", "required": ["invited", "not_invited", "results"], "properties": {
        "invited": {"type": "integer"}, "not_invited": {"type": "integer"},
        "results": {"type": "array", "description": "One per address, in the order sent.", "items": {
            "type": "object", "required": ["email", "status", "message", "invitation"], "properties": {
                "email": {"type": "string", "description": "The address as sent."},
                "status": {"enum": ["invited", "invalid", "duplicate", "member", "pending"]},
                "message": {"type": "string"},
                "invitation": {"oneOf": [{"$ref": "#/components/schemas/Invitation"}, {"type": "null"}]}}}}}},
}

TEAM_PATHS = {
    "/api/v1/members": {"get": {
        "summary": "List members",
        "description": "One page, sorted by name then email. Needs the `admin` scope.",
        "parameters": [
            {"name": "q", "in": "query", "schema": text(200), "description": "Part of a name or email."},
            {"name": "role", "in": "query", "schema": {"enum": ["owner", "admin", "billing", "member", "viewer"]}},
            {"name": "department", "in": "query", "schema": {"anyOf": [ID, {"const": "none"}]},
             "description": "A department id, or `none` for members without one."},
            *_PAGING],
        "responses": {"200": _json({"type": "object", "properties": {
            "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
            "page": {"type": "integer"}, "per_page": {"type": "integer"}, "total": {"type": "integer"},
            "pages": {"type": "integer"}}}, "The page of members."), **AUTH_ERRORS,
            "422": _problem("A query parameter is not valid.")},
    }},
    "/api/v1/members/{membership_id}": {
        "put": {
            "summary": "Change a member's role and/or department",
            "parameters": _id_param("membership_id"),
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
                    "role": {"enum": ["owner", "admin", "billing", "member", "viewer"]},
                    "department": {**_DEPT_IN, "description": "A department id or name (of this organization: "
                                                              "otherwise 422); null for none."}}}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/Member"}, "The member."), **_TEAM_ERRORS,
                          "404": _problem("No member with this id in the key's organization."),
                          "409": _problem("A rule refuses, e.g. demoting the last owner.")},
        },
        "delete": {
            "summary": "Remove a member",
            "parameters": _id_param("membership_id"),
            "responses": {"204": {"description": "Removed."}, **_TEAM_ERRORS,
                          "404": _problem("No member with this id in the key's organization."),
                          "409": _problem("The last owner cannot be removed.")},
        },
    },
    "/api/v1/invitations": {
        "get": {
            "summary": "List invitations",
            "parameters": [{"name": "status", "in": "query",
                            "schema": {"enum": ["pending", "accepted", "expired", "revoked"]}}, *_PAGING],
            "responses": {"200": _json({"type": "object", "properties": {
                "invitations": {"type": "array", "items": {"$ref": "#/components/schemas/Invitation"}},
                "page": {"type": "integer"}, "per_page": {"type": "integer"}, "total": {"type": "integer"}}},
                "Newest first."), **AUTH_ERRORS, "422": _problem("A query parameter is not valid.")},
        },
        "post": {
            "summary": "Invite one or many addresses",
            "description": "Each address (each item of `emails`) gets a result: invited, invalid, duplicate "
                           "(earlier in the list), member (already in the organization) or pending (already "
                           "invited). The email holds a single-use link valid for 7 days. Answers 201 when at "
                           "least one invitation was sent, 200 when none was (see the results).",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "oneOf": [{"required": ["emails"]}, {"required": ["email"]}],
                "properties": {
                    "emails": {"type": "array", "items": {"type": "string", "maxLength": 254}, "minItems": 1,
                               "maxItems": 500, "description": "One address per item."},
                    "email": {"type": "string", "maxLength": 254, "description": "One address, instead of `emails`."},
                    "role": {"enum": ["owner", "admin", "billing", "member", "viewer"], "default": "member"},
                    "department": {**_DEPT_IN, "description": "A department id or name (of this organization: "
                                                              "otherwise 422); null for none."}}}}}},
            "responses": {
                "201": _json({"$ref": "#/components/schemas/InvitationResults"}, "At least one invitation was sent."),
                "200": _json({"$ref": "#/components/schemas/InvitationResults"},
                             "No invitation was sent: every address was invalid, a duplicate, a member or already "
                             "invited (see the results)."),
                **_TEAM_ERRORS},
        },
    },
    "/api/v1/invitations/{invitation_id}": {"delete": {
        "summary": "Revoke an invitation",
        "parameters": _id_param("invitation_id"),
        "responses": {"200": _json({"$ref": "#/components/schemas/Invitation"}, "The revoked invitation."),
                      **_TEAM_ERRORS, "404": _problem("No invitation with this id in the key's organization."),
                      "409": _problem("The invitation was already accepted or revoked.")},
    }},
    "/api/v1/organization": {"put": {
        "summary": "Rename the organization or change its time zone",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {
                "name": text(120, non_blank=True),
                "time_zone": {"enum": time_zones(), "examples": ["Europe/Berlin"],
                              "description": "An IANA time zone (budget periods and daily views follow it)."}}}}}},
        "responses": {"200": _json({"type": "object", "properties": {
            "id": {"type": "integer"}, "slug": {"type": "string"}, "name": {"type": "string"},
            "time_zone": {"type": "string"}, "currency": {"type": "string"}}}, "The organization."),
            **_TEAM_ERRORS},
    }},
}


# --- budgets (GET: scope read; changes: scope admin and the creator's budgets:write) ---
_USD = {"type": "string", "description": "Dollars as a decimal string, e.g. \"250.5\"."}
_USD_OR_NULL = {"type": ["string", "null"], "description": "Dollars as a decimal string; null before the first "
                "forecast (the periodic check computes it every 5 minutes)."}
_ROLES = {"enum": ["owner", "admin", "billing", "member", "viewer"]}
_ID_OR_NULL = {**ID, "type": ["integer", "null"]}
# Dollars as a string: more than 0, at most 1,000,000,000, at most 9 decimal places (the server checks
# the same patterns: views.api_budgets).
_NON_ZERO_FRACTION = "|".join(f"{'0' * i}[1-9][0-9]{{0,{8 - i}}}" for i in range(9))
AMOUNT_PATTERN = (rf"^(?:[1-9][0-9]{{0,8}}(?:\.[0-9]{{1,9}})?|1000000000(?:\.0{{1,9}})?"
                  rf"|0\.(?:{_NON_ZERO_FRACTION}))$")
_PERCENT = "(?:[1-9][0-9]{0,2}|1000)"
THRESHOLDS_PATTERN = f"^{_PERCENT}(?:, ?{_PERCENT}){{0,9}}$"
_AMOUNT = {"type": ["string", "number"], "pattern": AMOUNT_PATTERN, "exclusiveMinimum": 0,
           "maximum": 1_000_000_000,
           "description": "Dollars, more than 0 and at most 1,000,000,000, with at most 9 decimal places: a string of "
                          "digits (\"250.00\") or a number (250).", "examples": ["250.00"]}
_BUDGET_FIELDS = {
    "name": text(120, non_blank=True),
    "amount_usd": {**_AMOUNT, "description": "The limit per period. " + _AMOUNT["description"]},
    "period": {"enum": ["daily", "weekly", "monthly", "quarterly", "yearly", "custom"], "default": "monthly",
               "description": "Calendar periods in the organization's time zone; custom: custom_start–custom_end "
                              "(both needed, in order, at most five years apart)."},
    "custom_start": {"type": ["string", "null"], "format": "date", "description": "First day (custom period)."},
    "custom_end": {"type": ["string", "null"], "format": "date", "description": "Last day, inclusive."},
    "thresholds": {"oneOf": [{"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 1000},
                              "minItems": 1, "maxItems": 10},
                             {"type": "string", "pattern": THRESHOLDS_PATTERN,
                              "examples": ["50,80,100"]}],
                   "description": "Alert thresholds in percent of the limit (default 50, 80, 100)."},
    "enforcement": {"enum": ["soft", "hard"], "default": "soft",
                    "description": "soft: alert only; hard: the gateway blocks calls beyond the limit."},
    "notify_resolved": {"type": "boolean", "default": False,
                        "description": "Also notify when spend drops back under (after a raise or a new period)."},
    "notify_roles": {"type": "array", "items": _ROLES, "default": ["owner", "admin"],
                     "description": "Roles that hear the alerts, besides the owner."},
    "owner_id": {**_ID_OR_NULL, "description": "A member's user id: the person responsible."},
    "department_id": {**_ID_OR_NULL, "description": "Scope: a department, with its sub-departments."},
    "api_key_id": {**_ID_OR_NULL, "description": "Scope: one API key."},
    "user": text(200, nullable=True, description="Scope: a member's email or your end-user id."),
    "provider": text(64, nullable=True, description="Scope: a provider, e.g. openai."),
    "model": text(128, nullable=True, description="Scope: a model, e.g. gpt-4o."),
    "tag": text(100, nullable=True, description="Scope: events carrying this tag, e.g. env:prod."),
}
BUDGET_SCHEMAS = {
    "BudgetInput": {"type": "object", "additionalProperties": False, "required": ["name", "amount_usd"],
                    "description": "Every scope field set must match (none: the whole organization). PUT replaces "
                                   "the whole definition: fields left out take their defaults. Null for an "
                                   "optional id or text means none. owner_id, department_id and api_key_id must "
                                   "name this organization's member, department and key (otherwise 422).",
                    "if": {"required": ["period"], "properties": {"period": {"const": "custom"}}},
                    "then": {"required": ["custom_start", "custom_end"],
                             "properties": {"custom_start": {"type": "string"}, "custom_end": {"type": "string"}}},
                    "properties": {**_BUDGET_FIELDS, "confirm_scope": {
                        "type": "boolean", "default": False,
                        "description": "A provider or model that matches neither the price catalog nor anything "
                                       "this organization recorded, priced or aliased is refused (422, with a "
                                       "suggestion such as \"did you mean openai?\") unless this is true. A value "
                                       "the budget already has is not asked about again."}}},
    "BudgetStatus": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "scope": {"type": "object", "properties": {
            k: _as_answered(_BUDGET_FIELDS[k]) for k in ("department_id", "user", "api_key_id", "provider", "model",
                                                         "tag")}},
        "scope_text": {"type": "string", "examples": ["Department Research (with sub-departments) × Provider openai"]},
        "period": {"type": "object", "properties": {
            "kind": _BUDGET_FIELDS["period"], "start": {"type": "string", "format": "date"},
            "end": {"type": "string", "format": "date", "description": "Last day, inclusive."},
            "label": {"type": "string"}}},
        "limit_usd": {**_USD, "description": "This period's limit: the amount plus this period's raises."},
        "base_limit_usd": _USD, "increase_usd": _USD, "spend_usd": _USD,
        "requests": {"type": "integer"}, "percent": {"type": "number"},
        "thresholds": {"type": "array", "items": {"type": "integer"}},
        "thresholds_crossed": {"type": "array", "items": {"type": "integer"}},
        "forecast_usd": _USD_OR_NULL, "forecast_low_usd": _USD_OR_NULL, "forecast_high_usd": _USD_OR_NULL,
        "forecast_exceeds_on": {"type": ["string", "null"], "format": "date",
                                "description": "The day the projection crosses the limit."},
        "state": {"enum": ["ok", "warning", "forecast", "exceeded"]},
        "enforcement": {"enum": ["soft", "hard"]},
        "blocked": {"type": "boolean", "description": "A hard budget at or over its limit: the gateway refuses."}}},
    "Budget": {"type": "object", "properties": {
        "id": {"type": "integer"}, **{k: _as_answered(v) for k, v in _BUDGET_FIELDS.items()}, "amount_usd": _USD,
        "thresholds": {"type": "array", "items": {"type": "integer"}},
        "scope_text": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "status": {"$ref": "#/components/schemas/BudgetStatus"}}},
}
_BUDGET_ERRORS = {
    **AUTH_ERRORS,
    "403": _problem("The key lacks the scope, or its creator's role may not change budgets (owner, admin and "
                    "billing may)."),
    "404": _problem("No budget with this id in the key's organization."),
}
_BUDGET_WRITE_ERRORS = {
    **_BUDGET_ERRORS,
    "415": _problem("The body is not sent as application/json."),
    "422": _problem("Malformed JSON, an unknown field, a wrong type or a value the rules refuse; 'errors' maps "
                    "each field to its message."),
}
_BUDGET_BODY = {"required": True, "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/BudgetInput"}}}}
BUDGET_PATHS = {
    "/api/v1/budgets": {
        "get": {"summary": "List budgets", "description": "Every budget's definition and status. Scope `read`.",
                "responses": {"200": _json({"type": "object", "properties": {"budgets": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Budget"}}}}, "The budgets."),
                    **AUTH_ERRORS}},
        "post": {"summary": "Create a budget",
                 "description": "Scope `admin`. The current period's spend is backfilled from history at once.",
                 "requestBody": _BUDGET_BODY,
                 "responses": {"201": _json({"$ref": "#/components/schemas/Budget"},
                                            "The new budget; Location names it."),
                               **{k: v for k, v in _BUDGET_WRITE_ERRORS.items() if k != "404"}}},
    },
    "/api/v1/budgets/status": {"get": {
        "summary": "Every budget's status",
        "description": "Scope, period, spend, limit, forecast and state of every budget, from the spend counters "
                       "(cost independent of history size). Scope `read`.",
        "responses": {"200": _json({"type": "object", "properties": {
            "organization": {"type": "string"}, "time_zone": {"type": "string"},
            "as_of": {"type": "string", "format": "date-time"},
            "budgets": {"type": "array", "items": {"$ref": "#/components/schemas/BudgetStatus"}}}},
            "The statuses, by name."), **AUTH_ERRORS}}},
    "/api/v1/budgets/{budget_id}": {
        "get": {"summary": "One budget", "description": "Scope `read`.", "parameters": _id_param("budget_id"),
                "responses": {"200": _json({"$ref": "#/components/schemas/Budget"}, "The budget."),
                              **_BUDGET_ERRORS}},
        "put": {"summary": "Replace a budget", "parameters": _id_param("budget_id"),
                "description": "Scope `admin`. A full replacement, like the edit form; a changed scope or period "
                               "recomputes the current period's spend.",
                "requestBody": _BUDGET_BODY,
                "responses": {"200": _json({"$ref": "#/components/schemas/Budget"}, "The budget."),
                              **_BUDGET_WRITE_ERRORS}},
        "delete": {"summary": "Delete a budget", "description": "Scope `admin`. Its alerts go with it.",
                   "parameters": _id_param("budget_id"),
                   "responses": {"204": {"description": "Deleted."}, **_BUDGET_ERRORS}},
    },
    "/api/v1/budgets/{budget_id}/test-alert": {"post": {
        "summary": "Send a test alert",
        "description": "Scope `admin`. Sends a \"[Test]\" threshold alert through the notification system to the "
                       "budget's owner and roles (in-app, email, webhooks as each person chose); no alert is "
                       "recorded on the budget.",
        "parameters": _id_param("budget_id"),
        "responses": {"202": _json({"type": "object", "properties": {
            "event_id": {"type": ["string", "null"]}, "notifications": {"type": "integer"}}},
            "Queued; deliveries go out through the queue."), **_BUDGET_ERRORS}}},
    "/api/v1/budgets/{budget_id}/raise": {"post": {
        "summary": "Raise a budget for the rest of this period",
        "description": "Scope `admin`. Adds to the limit of the current period only; audited. The period's "
                       "limit (the amount and its raises) stays at most $1,000,000,000 (otherwise 422).",
        "parameters": _id_param("budget_id"),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["amount_usd"], "properties": {
                "amount_usd": {**_AMOUNT, "description": "How much to add. " + _AMOUNT["description"]},
                "reason": text(200, nullable=True)}}}}},
        "responses": {"201": _json({"type": "object", "properties": {
            "increase": {"type": "object", "properties": {
                "id": {"type": "integer"}, "amount_usd": _USD, "reason": {"type": "string"},
                "period_start": {"type": "string", "format": "date-time"}}},
            "budget": {"$ref": "#/components/schemas/Budget"}}}, "The raise and the budget."),
            **_BUDGET_WRITE_ERRORS, "409": _problem("A custom period that is not running cannot be raised.")}}},
}


# --- billing (scope admin; the creator's role must have billing:manage) -------------

_DATE_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_HTTP_URL = {"type": "string", "pattern": "^https?://[!-~]{1,2000}$", "maxLength": 2008,
             "description": "An absolute http(s) URL, printable ASCII (percent-encode the rest)."}
BILLING_SCHEMAS = {
    "Subscription": {"type": "object", "properties": {
        "plan": {"type": ["string", "null"], "description": "The subscribed plan's code; null on Free."},
        "status": {"type": ["string", "null"], "description": "Stripe's subscription status (docs/BILLING.md "
                                                             "says what each means for access)."},
        "interval": {"enum": ["month", "year", None]}, "seats": {"type": ["integer", "null"]},
        "seats_used": {"type": "integer", "description": "Members plus pending invitations."},
        "seats_allowed": {"type": "integer"},
        "access_plan": {"type": "string", "description": "The plan whose limits apply now (Free after a "
                                                         "grace period, for example)."},
        "period_start": {"type": "string", "format": "date-time"}, "period_end": {"type": "string",
                                                                                  "format": "date-time"},
        "trial_end": _DATE_OR_NULL, "cancel_at_period_end": {"type": "boolean"},
        "payment_method": {"type": ["string", "null"]},
        "events_this_period": {"type": "integer"}, "events_included": {"type": "integer"},
        "banner": {"type": ["string", "null"], "description": "What owners and billing members are told."}}},
    "BillingInvoice": {"type": "object", "properties": {
        "id": {"type": "string"}, "number": {"type": ["string", "null"]},
        "status": {"enum": ["draft", "open", "paid", "uncollectible", "void"]},
        "date": {"type": "string", "format": "date-time"}, "total_usd": _USD, "amount_paid_usd": _USD,
        "amount_due_usd": _USD, "hosted_invoice_url": {"type": ["string", "null"]},
        "invoice_pdf": {"type": ["string", "null"]}}},
}
_BILLING_ERRORS = {
    **AUTH_ERRORS,
    "403": _problem("The key lacks the `admin` scope, or its creator's role may not manage billing (owners and "
                    "billing members may)."),
    "404": _problem("Billing is off on this installation (`billing-disabled`)."),
}
_BILLING_WRITE_ERRORS = {
    **_BILLING_ERRORS,
    "415": _problem("The body is not sent as application/json."),
    "422": _problem("Malformed JSON, an unknown field, a wrong type or a value the rules refuse (a plan not on "
                    "sale, fewer seats than members and pending invitations); 'errors' maps each field to its "
                    "message."),
    "503": _problem("Stripe could not be reached or refused the request; nothing changed."),
}
CENTS_PATTERN = "^(?:0|[1-9][0-9]{0,6})(?:[.][0-9]{1,2})?$"
IDEMPOTENCY_KEY_PATTERN = "^[A-Za-z0-9_.:-]{1,100}$"
_PLAN_CODE = {"type": "string", "pattern": "^[a-z0-9_-]{1,32}$",
              "description": "A plan's code, e.g. \"team\" or \"business\"."}
_SEATS_FIELD = {"type": "integer", "minimum": 1, "maximum": 10_000}
BILLING_PATHS = {
    "/api/v1/billing/subscription": {
        "get": {"summary": "The subscription", "description": "Plan, status, seats, billing period, tracked "
                                                               "events and the plan whose limits apply now.",
                "responses": {"200": _json({"$ref": "#/components/schemas/Subscription"}, "The subscription."),
                              **_BILLING_ERRORS}},
        "post": {"summary": "Start a subscription",
                 "description": "Creates a Stripe Checkout session (subscription mode; the organization's Stripe "
                                "customer is created once and reused). Send the person to `checkout_url`; the plan "
                                "starts when Stripe's webhook confirms it.",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False, "required": ["plan"], "properties": {
                         "plan": _PLAN_CODE, "interval": {"enum": ["month", "year"], "default": "month"},
                         "seats": {**_SEATS_FIELD, "description": "Default: the plan's seats or the people of "
                                                                  "the organization, whichever is more."},
                         "success_url": _HTTP_URL, "cancel_url": _HTTP_URL}}}}},
                 "responses": {"201": _json({"type": "object", "properties": {
                     "checkout_url": {"type": "string"}, "session_id": {"type": ["string", "null"]}}},
                     "The Checkout session."), **_BILLING_WRITE_ERRORS,
                     "409": _problem("The organization already has a subscription; change it with PUT.")}},
        "put": {"summary": "Change or cancel the subscription",
                "description": "Change the plan, billing interval or seats (Stripe prorates: more seats, a dearer "
                               "plan or a new interval are invoiced at once, the rest on the next invoice). With "
                               "`preview: true` nothing changes and the answer is Stripe's proration; send its "
                               "`proration_date` back to be charged exactly that. Or set `cancel_at_period_end` "
                               "(alone, without `preview`): the plan stays until the period ends; false undoes it.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "properties": {
                        "plan": _PLAN_CODE, "interval": {"enum": ["month", "year"]}, "seats": _SEATS_FIELD,
                        "cancel_at_period_end": {"type": "boolean"}, "preview": {"type": "boolean"},
                        "proration_date": {"type": "integer", "minimum": 1, "maximum": 2**40 - 1}}}}}},
                "responses": {"200": _json({"type": "object", "properties": {
                    "subscription": {"$ref": "#/components/schemas/Subscription"},
                    "preview": {"type": "object", "properties": {
                        "plan": {"type": "string"}, "interval": {"type": "string"}, "seats": {"type": "integer"},
                        "due_now_usd": {**_USD, "description": "Charged now when invoiced_now; else what the "
                                                                "change adds to the next invoice."},
                        "invoiced_now": {"type": "boolean"},
                        "next_invoice_usd": {"type": ["string", "null"], "description": "The next invoice with "
                                             "the change; null when the change is invoiced now."},
                        "proration_date": {"type": "integer"},
                        "lines": {"type": "array", "items": {"type": "object", "properties": {
                            "description": {"type": "string"}, "amount_usd": _USD}}}}}}},
                    "The changed subscription, or the preview."), **_BILLING_WRITE_ERRORS,
                    "409": _problem("There is no subscription to change (subscribe with POST first).")}},
    },
    "/api/v1/billing/invoice": {"post": {
        "summary": "Invoice pending items now",
        "description": "Adds the given items (if any) to the customer's pending items, then creates and finalizes "
                       "one invoice for all of them (e.g. an overage true-up); Stripe collects it with the payment "
                       "method on file. Send an `Idempotency-Key` header to make a retry safe: a repeated "
                       "request with the same key answers with the same invoice instead of invoicing again.",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {
                "items": {"type": "array", "minItems": 1, "maxItems": 20, "items": {
                    "type": "object", "additionalProperties": False, "required": ["description", "amount_usd"],
                    "properties": {"description": text(500, non_blank=True),
                                   "amount_usd": {"type": "string", "pattern": CENTS_PATTERN,
                                                  "description": "Dollars in whole cents, as a string like "
                                                                 "\"12.50\": more than 0, at most 1000000."}}}}}}}}},
        "responses": {"201": _json({"$ref": "#/components/schemas/BillingInvoice"}, "The finalized invoice."),
                      **_BILLING_WRITE_ERRORS,
                      "409": _problem("No Stripe customer yet, or nothing to invoice.")}}},
    "/api/v1/billing/history": {"get": {
        "summary": "Invoice history",
        "description": "The organization's invoices as last read from Stripe, newest first.",
        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                                    "default": 24}}],
        "responses": {"200": _json({"type": "object", "properties": {"invoices": {
            "type": "array", "items": {"$ref": "#/components/schemas/BillingInvoice"}}}}, "The invoices."),
            **_BILLING_ERRORS, "422": _problem("`limit` is not a whole number from 1 to 100.")}}},
}


_SUMMARY_DAY = {"type": "string", "format": "date", "pattern": "^(?:20[0-9]{2}|2100)-"}


# --- the platform admin API (a platform token: scopes platform:read / platform:write) -----------
_PLATFORM = [{"platformToken": []}]
_ADMIN_PAGING = [{**_PAGING[0]}, {"name": "per_page", "in": "query", "schema": {
    "type": "integer", "minimum": 1, "maximum": 100, "default": 50}}]
_ADMIN_READ_ERRORS = {
    "401": _problem("Missing, malformed, unknown, revoked or expired platform token."),
    "403": _problem("The token lacks `platform:read`, or its owner is disabled or no longer a platform admin."),
    "422": _problem("A query parameter is not valid; 'errors' maps each to its message."),
}
_ADMIN_WRITE_ERRORS = {
    **_ADMIN_READ_ERRORS,
    "403": _problem("The token lacks `platform:write`, or its owner is not a superadmin now (a support admin's "
                    "token never writes), is disabled, or the rules refuse."),
    "415": _problem("The body is not sent as application/json."),
    "422": _problem("A field is not valid; 'errors' maps each field to its message."),
}
_USER_ID = [{"name": "user_id", "in": "path", "required": True, "schema": ID}]
_TRUE_FALSE = {"enum": ["true", "false"]}
_WHEN = {"type": ["string", "null"], "format": "date-time"}
ADMIN_SCHEMAS = {
    "AdminUser": {"type": "object", "properties": {
        "id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"},
        "platform_role": {"enum": ["", "support", "superadmin"], "description": "\"\": no platform role."},
        "disabled": {"type": "boolean"}, "email_verified": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"}, "last_login_at": _WHEN, "last_seen_at": _WHEN,
        "organizations": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "role": _ROLES}}}}},
    "AdminOrganization": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "slug": {"type": "string"},
        "plan": {"type": "string", "description": "The name of the plan whose limits apply now."},
        "plan_code": {"type": "string"}, "members": {"type": "integer"},
        "events_month": {"type": "integer", "description": "Requests this UTC calendar month."},
        "spend_month_usd": {**_USD, "description": "Cost of this UTC calendar month's usage."},
        "status": {"enum": ["active", "suspended", "deletion"]},
        "created_at": {"type": "string", "format": "date-time"},
        "delete_after": {**_WHEN, "description": "When a scheduled deletion happens; null when none is."}}},
    "AdminUsageTotals": {"type": "object", "properties": {
        **{name: {"type": "integer"} for name in ("requests", "input_tokens", "cache_read_tokens",
                                                   "cache_write_tokens", "output_tokens", "unpriced_requests")},
        "cost_usd": _USD}},
}
_ADMIN_USAGE_ROW = {"allOf": [{"$ref": "#/components/schemas/AdminUsageTotals"}, {
    "type": "object", "required": ["key", "label"], "properties": {
        "key": {"type": ["string", "integer"], "description": "The day (YYYY-MM-DD), provider, model, or "
                                                             "organization id."},
        "label": {"type": "string"},
        "provider": {"type": "string", "description": "group_by=model: a model is counted per provider."},
        "slug": {"type": ["string", "null"], "description": "group_by=organization."}}}]}
_CREATE_ORG = {
    "summary": "Create an organization",
    "description": "Needs `platform:write` (a superadmin's token). The owner must be an existing, enabled "
                   "account (otherwise 422 on owner_email). The seed's `POST /api/organizations` is the same "
                   "operation.",
    "security": _PLATFORM,
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["name", "owner_email"], "properties": {
            "name": text(120, non_blank=True), "owner_email": text(254, non_blank=True),
            "time_zone": {"enum": time_zones(), "default": "UTC"}}}}}},
    "responses": {"201": _json({"type": "object", "required": ["id", "name", "slug", "time_zone", "created_at"],
                                "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                               "slug": {"type": "string"}, "time_zone": {"type": "string"},
                                               "created_at": {"type": "string", "format": "date-time"}}},
                               "The new organization."), **_ADMIN_WRITE_ERRORS},
}
ADMIN_PATHS = {
    "/api/v1/admin/users": {"get": {
        "summary": "Search users (platform)",
        "description": "Every account, newest first. Needs `platform:read`. `q` matches the email or name "
                       "(case-insensitive substring); `active_days` keeps people seen within that many days "
                       "(\"never\": never seen); `org` keeps the members of one organization.",
        "security": _PLATFORM,
        "parameters": [
            {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200, "pattern": NO_NUL}},
            {"name": "role", "in": "query", "schema": {"enum": ["none", "support", "superadmin"]}},
            {"name": "disabled", "in": "query", "schema": _TRUE_FALSE},
            {"name": "unconfirmed", "in": "query", "schema": _TRUE_FALSE,
             "description": "true: only people who have not confirmed their email address."},
            {"name": "active_days", "in": "query", "schema": {"anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 3650}, {"const": "never"}]}},
            {"name": "org", "in": "query", "schema": ID, "description": "An organization's id."},
            *_ADMIN_PAGING],
        "responses": {"200": _json({"type": "object", "required": ["users", "page", "per_page", "total"],
                                    "properties": {"users": {"type": "array", "items": {
                                        "$ref": "#/components/schemas/AdminUser"}},
                                        "page": {"type": "integer"}, "per_page": {"type": "integer"},
                                        "total": {"type": "integer"}}}, "One page of users."),
                      **_ADMIN_READ_ERRORS}}},
    "/api/v1/admin/users/{user_id}": {
        "put": {
            "summary": "Change a user (platform)",
            "description": "Needs `platform:write`. Send only what changes. A new email is marked unconfirmed, "
                           "ends the user's sessions and gets a confirmation link. Nobody changes their own "
                           "platform role, and the last active superadmin keeps theirs (422 on platform_role); "
                           "an address another account uses is refused (422 on email).",
            "security": _PLATFORM, "parameters": _USER_ID,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {
                    "name": text(120), "email": text(254, non_blank=True),
                    "platform_role": {"enum": ["", "support", "superadmin"],
                                      "description": "\"\" removes the platform role."}}}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/AdminUser"}, "The user as changed."),
                          **_ADMIN_WRITE_ERRORS, "404": _problem("No user with this id.")}},
        "delete": {
            "summary": "Delete a user (platform)",
            "description": "Needs `platform:write`. `confirm` must be the user's email address (422 otherwise). "
                           "Memberships, sessions, sign-in identities, reset and platform tokens go with the "
                           "account; API keys they created keep working; audit rows stay. Refused (409) for "
                           "yourself, the last owner of an organization (transfer ownership first) and the last "
                           "active superadmin.",
            "security": _PLATFORM,
            "parameters": [*_USER_ID, {"name": "confirm", "in": "query", "required": True,
                                       "schema": text(254, non_blank=True)}],
            "responses": {"204": {"description": "Deleted."}, **_ADMIN_WRITE_ERRORS,
                          "404": _problem("No user with this id."),
                          "409": _problem("The rules refuse: yourself, a last owner, the last superadmin.")}},
    },
    "/api/v1/admin/organizations": {
        "get": {
            "summary": "Search organizations (platform)",
            "description": "Every organization, newest first, with its plan, members and this UTC month's "
                           "usage. Needs `platform:read`. `q` matches the name or slug; a plan nobody is on "
                           "matches nothing.",
            "security": _PLATFORM,
            "parameters": [
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200, "pattern": NO_NUL}},
                {"name": "status", "in": "query", "schema": {"enum": ["active", "suspended", "deletion"]}},
                {"name": "plan", "in": "query", "schema": _PLAN_CODE},
                *_ADMIN_PAGING],
            "responses": {"200": _json({"type": "object", "required": ["organizations", "page", "per_page", "total"],
                                        "properties": {"organizations": {"type": "array", "items": {
                                            "$ref": "#/components/schemas/AdminOrganization"}},
                                            "page": {"type": "integer"}, "per_page": {"type": "integer"},
                                            "total": {"type": "integer"}}}, "One page of organizations."),
                          **_ADMIN_READ_ERRORS}},
        "post": _CREATE_ORG,
    },
    "/api/organizations": {"post": {**_CREATE_ORG, "summary": "Create an organization (alias)"}},
    "/api/v1/admin/usage": {"get": {
        "summary": "System-wide usage (platform)",
        "description": "Spend and events of every organization for the UTC days start..end (default: the last "
                       "30 days), grouped by UTC day (in order) or by provider, model or organization (biggest "
                       "cost first), from the hourly rollups. At most three years (1,098 days). Needs "
                       "`platform:read`. `total` counts the rows; `totals` sums the whole range.",
        "security": _PLATFORM,
        "parameters": [
            {"name": "start", "in": "query", "schema": _SUMMARY_DAY, "description": "First UTC day, inclusive."},
            {"name": "end", "in": "query", "schema": _SUMMARY_DAY,
             "description": "Last UTC day, inclusive; not before `start`, at most three years after it."},
            {"name": "group_by", "in": "query", "schema": {"enum": ["day", "provider", "model", "organization"],
                                                             "default": "day"}},
            *_ADMIN_PAGING],
        "responses": {"200": _json({"type": "object", "required": [
            "start", "end", "group_by", "currency", "time_zone", "rows", "page", "per_page", "total", "totals"],
            "properties": {"start": {"type": "string", "format": "date"}, "end": {"type": "string", "format": "date"},
                           "group_by": {"type": "string"}, "currency": {"const": "USD"},
                           "time_zone": {"const": "UTC"}, "rows": {"type": "array", "items": _ADMIN_USAGE_ROW},
                           "page": {"type": "integer"}, "per_page": {"type": "integer"},
                           "total": {"type": "integer"},
                           "totals": {"$ref": "#/components/schemas/AdminUsageTotals"}}}, "Rows and totals."),
            **_ADMIN_READ_ERRORS,
            "422": _problem("A query parameter is not valid, or `end` is before `start` or more than three "
                            "years after it.")}}},
}


_ANSWERS = {"Member", "Invitation", "Budget", "BudgetStatus", "Subscription", "BillingInvoice", "AdminUser",
            "AdminOrganization", "AdminUsageTotals"}


def spec() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cost Guardian API", "version": "1",
                 "description": "Send AI API usage and read spend. Authenticate with an organization API key: "
                                "`Authorization: Bearer cg_live_…`. The platform admin API "
                                "(/api/v1/admin/…) takes a platform admin's personal token instead: "
                                "`Authorization: Bearer cgp_…`. Errors are RFC 9457 problem documents."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "An organization API key (cg_<env>_<prefix>_<secret>)."},
                                "platformToken": {"type": "http", "scheme": "bearer",
                                                  "description": "A platform admin's personal token "
                                                                 "(cgp_<prefix>_<secret>), made on the account "
                                                                 "page; the admin API (/api/v1/admin/…) only."}},
            "schemas": {"UsageEvent": EVENT, "Totals": _every_field_given(TOTALS), "Problem": PROBLEM,
                        "Department": _every_field_given(DEPARTMENT),
                        **{name: _every_field_given(schema) if name in _ANSWERS else schema
                           for name, schema in {**TEAM_SCHEMAS, **BUDGET_SCHEMAS, **BILLING_SCHEMAS,
                                                    **ADMIN_SCHEMAS}.items()}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            **DEPARTMENT_PATHS,
            **TEAM_PATHS,
            **BUDGET_PATHS,
            **BILLING_PATHS,
            **ADMIN_PATHS,
            "/api/v1/usage": {"post": {
                "summary": "Record usage events",
                "description": f"One event, or up to {MAX_EVENTS:,} as {{\"events\": [...]}}. Each is accepted "
                               "(priced), a duplicate (its event_id is already stored) or rejected with reasons; "
                               "one bad event never rejects the others. Needs the `ingest` scope.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/UsageEvent"},
                    {"type": "object", "additionalProperties": False, "required": ["events"],
                     "properties": {"events": {
                         "type": "array", "minItems": 1, "maxItems": MAX_EVENTS,
                         "description": "UsageEvent objects. The batch is taken whatever its items hold: an item "
                                        "that is not a valid UsageEvent (not even an object) is rejected on its "
                                        "own, with reasons, and the others are still stored.",
                         "items": {"anyOf": [{"$ref": "#/components/schemas/UsageEvent"}, {}]}}}},
                ]}}}},
                "responses": {
                    "200": {"description": "Per-event results.", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["accepted", "duplicates", "rejected", "results"],
                        "properties": {
                            "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
                            "rejected": {"type": "integer"},
                            "results": {"type": "array", "items": {
                                "type": "object", "required": ["index", "event_id", "status"], "properties": {
                                "index": {"type": "integer"}, "event_id": {"type": ["string", "null"]},
                                "status": {"enum": ["accepted", "duplicate", "rejected"]},
                                "provider": {"type": "string"}, "model": {"type": "string"},
                                "cost_usd": {"type": ["string", "null"]}, "priced": {"type": "boolean"},
                                "errors": {"type": "object"}}}}}}}}},
                    **AUTH_ERRORS,
                    "403": _problem("The key lacks the `ingest` scope, or a platform administrator suspended "
                                    "the organization (type …/organization-suspended; the detail gives the "
                                    "reason; nothing is recorded until it is reinstated)."),
                    "413": _problem("The body is larger than 4 MB."),
                    "415": _problem("The body is not sent as application/json."),
                    "422": _problem("Malformed JSON, a batch of the wrong shape or size, or (for a single "
                                    "event) an event that was rejected."),
                },
            }},
            "/api/v1/reconciliation/{provider}": {"get": {
                "summary": "Recorded usage against what the provider reports",
                "description": "By day (the organization's time zone) and model: tokens and cost Cost Guardian "
                               "recorded beside the provider's own usage report (pulled with the admin key "
                               "connected on the Reconciliation page), with the drift; the provider keys "
                               "or projects seen, known or shadow; and `by_key`: the same comparison per "
                               "provider key, recorded through the vault keys matched to it, with one "
                               "`not_matched` row (key null) for usage recorded under no provider key, so "
                               "the totals equal the days'. At most 92 days, by default the last 14. "
                               "Amounts are decimal strings in USD. Needs the `read` scope.",
                "parameters": [
                    {"name": "provider", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": ["openai", "anthropic"]}},
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                ],
                "responses": {
                    "200": {"description": "The reconciliation.", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["provider", "time_zone", "from", "to", "days", "keys"],
                        "properties": {
                            "provider": {"type": "string"}, "time_zone": {"type": "string"},
                            "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                            "tolerance_pct": {"type": "string"},
                            "days": {"type": "array", "items": {"type": "object", "properties": {
                                "day": {"type": "string"}, "model": {"type": "string"},
                                "recorded": {"type": "object"}, "reported": {"type": "object"},
                                "token_drift": {"type": "integer"}, "token_drift_pct": {"type": ["string", "null"]},
                                "cost_drift_usd": {"type": "string"}, "cost_drift_pct": {"type": ["string", "null"]},
                                "flagged": {"type": "boolean"}}}},
                            "keys": {"type": "array", "items": {"type": "object", "properties": {
                                "key": {"type": "string"}, "known": {"type": "boolean"},
                                "matched": {"type": "boolean"},
                                "label": {"type": "string"}, "tokens": {"type": "integer"},
                                "cost_usd": {"type": "string"}}}},
                            "by_key": {"type": "array", "items": {"type": "object", "properties": {
                                "key": {"type": ["string", "null"]},
                                "status": {"enum": ["matched", "known", "shadow", "not_matched"]},
                                "name": {"type": "string"}, "hint": {"type": "string"},
                                "credentials": {"type": "array", "items": {"type": "string"}},
                                "recorded": {"type": "object"}, "reported": {"type": "object"},
                                "token_drift": {"type": "integer"}, "token_drift_pct": {"type": ["string", "null"]},
                                "cost_drift_usd": {"type": "string"}, "cost_drift_pct": {"type": ["string", "null"]},
                                "flagged": {"type": "boolean"}}}}}}}}},
                    **AUTH_ERRORS,
                    "404": _problem("No admin key of this provider is connected."),
                    "422": _problem("`from` or `to` is not a date, or the range is not 1 to 92 days."),
                },
            }},
            "/api/v1/usage/summary": {"get": {
                "summary": "Spend grouped by a dimension and period",
                "description": "From the hourly rollups, in the organization's time zone. Days between "
                               "2000-01-01 and 2100-12-31; one summary covers at most three years (1,098 days). "
                               "Needs the `read` scope. A key bound to a member, in an organization where "
                               "members see only department totals and their own usage (the default), "
                               "cannot group by `user` or `api_key` (403, not-permitted).",
                "parameters": [
                    {"name": "from", "in": "query", "schema": _SUMMARY_DAY,
                     "description": "First day, inclusive (default: the first of this month)."},
                    {"name": "to", "in": "query", "schema": _SUMMARY_DAY,
                     "description": "Last day, inclusive (default: the end of this month); not before `from`, "
                                    "and at most three years after it."},
                    {"name": "group_by", "in": "query",
                     "schema": {"enum": ["provider", "model", "api_key", "user", "department", "tag"]}},
                    {"name": "interval", "in": "query", "schema": {"enum": ["total", "day", "month"],
                                                                   "default": "total"}},
                ],
                "responses": {
                    "200": {"description": "Rows and the total.", "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["organization", "from", "to", "time_zone", "group_by", "interval", "currency",
                                     "rows", "total"],
                        "properties": {
                            "organization": {"type": "string", "description": "The organization's slug."},
                            "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                            "time_zone": {"type": "string"},
                            "group_by": {"type": ["string", "null"]}, "interval": {"type": "string"},
                            "currency": {"const": "USD"},
                            "rows": {"type": "array", "items": {"allOf": [
                                {"$ref": "#/components/schemas/Totals"},
                                {"type": "object", "properties": {"key": {}, "label": {"type": "string"},
                                                                  "period": {"type": "string"}}}]}},
                            "total": {"$ref": "#/components/schemas/Totals"}}}}}},
                    **AUTH_ERRORS,
                    "422": _problem("A query parameter is not valid, or `to` is before `from` or more than "
                                    "three years after it."),
                },
            }},
        },
    }
