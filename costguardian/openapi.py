"""The OpenAPI 3.1 document for the JSON API, served at /api/openapi.json.
Kept beside the code it describes; a test checks every API route is in it."""
from __future__ import annotations

from costguardian.services.ingest import MAX_EVENTS, MAX_TAGS

_TOKENS = {"type": "integer", "minimum": 0, "maximum": 10**12}

EVENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_id", "provider", "model"],
    "properties": {
        "event_id": {"type": "string", "maxLength": 128,
                     "description": "Your id for the call; a second event with the same id is a duplicate."},
        "provider": {"type": "string", "maxLength": 64, "examples": ["openai", "anthropic", "google"]},
        "model": {"type": "string", "maxLength": 200, "examples": ["gpt-4o", "claude-sonnet-4-5"]},
        "occurred_at": {"type": "string", "format": "date-time",
                        "description": "When the call happened (default: now). At most 5 minutes in the future."},
        "input_tokens": {**_TOKENS, "description": "Every prompt token, including cache reads and writes."},
        "cache_read_tokens": {**_TOKENS, "description": "How many of the input tokens were read from cache."},
        "cache_write_tokens": {**_TOKENS, "description": "How many of the input tokens were written to cache."},
        "output_tokens": _TOKENS,
        "usage": {"type": "object", "description": "Instead of token counts: the provider's own usage object "
                  "(OpenAI chat or responses, Anthropic messages, Gemini usageMetadata, Bedrock Converse)."},
        "user": {"type": "string", "maxLength": 200,
                 "description": "A member's email or your own end-user id (default: the key's user)."},
        "department": {"type": "string", "description": "A department's name (default: the key's department)."},
        "tags": {"oneOf": [{"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                           {"type": "array", "items": {"type": "string", "maxLength": 100}}],
                 "description": f"At most {MAX_TAGS} tags; an object becomes key:value tags."},
        "batch": {"type": "boolean", "description": "The call went through a batch API (batch prices)."},
        "service_tier": {"type": "string", "maxLength": 16, "examples": ["flex", "priority"]},
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


def spec() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cost Guardian API", "version": "1",
                 "description": "Send AI API usage and read spend. Authenticate with an organization API key: "
                                "`Authorization: Bearer cg_live_…`. Errors are RFC 9457 problem documents."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "An organization API key (cg_<env>_<prefix>_<secret>)."}},
            "schemas": {"UsageEvent": EVENT, "Totals": TOTALS, "Problem": PROBLEM},
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/usage": {"post": {
                "summary": "Record usage events",
                "description": f"One event, or up to {MAX_EVENTS:,} as {{\"events\": [...]}}. Each is accepted "
                               "(priced), a duplicate (its event_id is already stored) or rejected with reasons; "
                               "one bad event never rejects the others. Needs the `ingest` scope.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/UsageEvent"},
                    {"type": "object", "additionalProperties": False, "required": ["events"],
                     "properties": {"events": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS,
                                               "items": {"$ref": "#/components/schemas/UsageEvent"}}}},
                ]}}}},
                "responses": {
                    "200": {"description": "Per-event results.", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {
                            "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
                            "rejected": {"type": "integer"},
                            "results": {"type": "array", "items": {"type": "object", "properties": {
                                "index": {"type": "integer"}, "event_id": {"type": ["string", "null"]},
                                "status": {"enum": ["accepted", "duplicate", "rejected"]},
                                "provider": {"type": "string"}, "model": {"type": "string"},
                                "cost_usd": {"type": ["string", "null"]}, "priced": {"type": "boolean"},
                                "errors": {"type": "object"}}}}}}}}},
                    **AUTH_ERRORS,
                    "413": _problem("The body is larger than 4 MB."),
                    "415": _problem("The body is not sent as application/json."),
                    "422": _problem("Malformed JSON, a batch of the wrong shape or size, or (for a single "
                                    "event) an event that was rejected."),
                },
            }},
            "/api/v1/usage/summary": {"get": {
                "summary": "Spend grouped by a dimension and period",
                "description": "From the hourly rollups, in the organization's time zone. Needs the `read` scope.",
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"},
                     "description": "First day, inclusive (default: the first of this month)."},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"},
                     "description": "Last day, inclusive (default: the end of this month)."},
                    {"name": "group_by", "in": "query",
                     "schema": {"enum": ["provider", "model", "api_key", "user", "department", "tag"]}},
                    {"name": "interval", "in": "query", "schema": {"enum": ["total", "day", "month"],
                                                                   "default": "total"}},
                ],
                "responses": {
                    "200": {"description": "Rows and the total.", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {
                            "from": {"type": "string"}, "to": {"type": "string"}, "time_zone": {"type": "string"},
                            "group_by": {"type": ["string", "null"]}, "interval": {"type": "string"},
                            "currency": {"const": "USD"},
                            "rows": {"type": "array", "items": {"allOf": [
                                {"$ref": "#/components/schemas/Totals"},
                                {"type": "object", "properties": {"key": {}, "label": {"type": "string"},
                                                                  "period": {"type": "string"}}}]}},
                            "total": {"$ref": "#/components/schemas/Totals"}}}}}},
                    **AUTH_ERRORS,
                    "422": _problem("A query parameter is not valid."),
                },
            }},
        },
    }
