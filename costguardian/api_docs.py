"""The API reference page (/docs/api), rendered on the server from the same
OpenAPI document /api/openapi.json serves. Server-side so that it works under
the site's strict Content-Security-Policy (no inline styles, no workers, no
eval: a browser renderer such as Redoc's bundle needs inline styles) and
without JavaScript; the document stays the one source."""
from __future__ import annotations

from dataclasses import dataclass, field

from costguardian.openapi import spec

# Sections of the page, by path prefix (first match wins), in page order.
SECTIONS = [
    ("usage", "Usage", ("/api/v1/usage",)),
    ("reconciliation", "Reconciliation", ("/api/v1/reconciliation",)),
    ("budgets", "Budgets", ("/api/v1/budgets",)),
    ("team", "Team and organization", ("/api/v1/departments", "/api/v1/members", "/api/v1/invitations",
                                       "/api/v1/organization")),
    ("billing", "Billing", ("/api/v1/billing",)),
    ("platform", "Platform admin (platform token)", ("/api/v1/admin", "/api/organizations")),
]
_METHODS = ("get", "post", "put", "patch", "delete")
_LONG_PATTERN = 60  # longer regular expressions say "see the OpenAPI document" rather than fill the page
_MAX_DEPTH = 4


@dataclass
class SchemaRow:
    depth: int
    name: str
    type: str
    required: bool = False
    notes: list[str] = field(default_factory=list)
    ref: str = ""  # a components schema this row's type names


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: str
    anchor: str
    auth: str
    parameters: list[dict]
    body: list[SchemaRow]
    body_ref: str
    responses: list[dict]


def _ref_name(schema: dict) -> str:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/components/schemas/") else ""


def _type_text(schema: dict) -> str:
    if _ref_name(schema):
        return _ref_name(schema)
    if "const" in schema:
        return f"always {schema['const']!r}".replace("'", '"')
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if "array" in kinds:
        items = schema.get("items") or {}
        inner = _type_text(items) or "any"
        kinds = [f"array of {inner}" if k == "array" else k for k in kinds]
    for combiner in ("oneOf", "anyOf"):
        if combiner in schema and not kinds:
            parts = [_type_text(s) for s in schema[combiner] if _type_text(s)]
            if parts:
                return " or ".join(parts)
    if "allOf" in schema and not kinds:
        return " and ".join(filter(None, (_type_text(s) for s in schema["allOf"]))) or "object"
    text = " or ".join(kinds)
    if schema.get("format"):
        text += f" ({schema['format']})"
    return text


def _notes(schema: dict) -> list[str]:
    notes = []
    for key, label in (("minLength", "at least {} characters"), ("maxLength", "at most {} characters"),
                       ("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"),
                       ("minItems", "at least {} items"), ("maxItems", "at most {} items"),
                       ("default", "default {}")):
        if key in schema and not isinstance(schema[key], bool):
            notes.append(label.format(schema[key]))
    pattern = schema.get("pattern")
    if pattern and len(pattern) <= _LONG_PATTERN:
        notes.append(f"pattern {pattern}")
    if schema.get("description"):
        notes.append(schema["description"])
    return notes


def _object_parts(schema: dict, components: dict) -> tuple[dict, set]:
    """Properties and required names of an object schema, allOf merged."""
    properties, required = dict(schema.get("properties") or {}), set(schema.get("required") or [])
    for part in schema.get("allOf") or []:
        part = components.get(_ref_name(part), part)
        properties.update(part.get("properties") or {})
        required |= set(part.get("required") or [])
    return properties, required


def schema_rows(schema: dict, components: dict, depth: int = 0, prefix: str = "") -> list[SchemaRow]:
    """The fields of an object schema as rows named by their path
    (`results[].status`); named schemas are linked rather than expanded
    (they are listed once, at the end)."""
    rows: list[SchemaRow] = []
    if depth > _MAX_DEPTH:
        return rows
    properties, required = _object_parts(schema, components)
    for name, prop in properties.items():
        rows.append(SchemaRow(depth, prefix + name, _type_text(prop) or "any", name in required, _notes(prop),
                              _ref_name(prop) or _ref_name(prop.get("items") or {})))
        inner = prop.get("items") if isinstance(prop.get("items"), dict) else prop
        if not _ref_name(inner) and (inner.get("properties") or inner.get("allOf")):
            nested = f"{prefix}{name}[]." if inner is not prop else f"{prefix}{name}."
            rows.extend(schema_rows(inner, components, depth + 1, nested))
    return rows


def _auth(operation: dict, document: dict) -> str:
    security = operation.get("security", document.get("security") or [])
    names = [name for requirement in security for name in requirement]
    if not names:
        return "none"
    return "platform token (cgp_…)" if names == ["platformToken"] else "API key (cg_…)"


def _content_schema(part: dict) -> dict:
    content = part.get("content") or {}
    for media in ("application/json", "application/problem+json"):
        if media in content:
            return content[media].get("schema") or {}
    return {}


def _operation(method: str, path: str, op: dict, document: dict) -> Operation:
    components = document["components"]["schemas"]
    body_schema = _content_schema(op.get("requestBody") or {})
    alternatives = body_schema.get("oneOf") or [body_schema]
    body_rows: list[SchemaRow] = []
    body_ref = ""
    for alternative in alternatives:
        if _ref_name(alternative):
            body_ref = body_ref or _ref_name(alternative)
        else:
            body_rows.extend(schema_rows(alternative, components))
    responses = []
    for status, response in op.get("responses", {}).items():
        schema = _content_schema(response)
        responses.append({"status": status, "description": response.get("description", ""),
                          "type": _type_text(schema), "ref": _ref_name(schema) or _ref_name(schema.get("items") or {}),
                          "rows": [] if _ref_name(schema) else schema_rows(schema, components)})
    parameters = [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                   "type": _type_text(p.get("schema") or {}),
                   "notes": _notes({**(p.get("schema") or {}), "description": p.get("description", "")})}
                  for p in op.get("parameters", [])]
    anchor = f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", "").replace("--", "-")
    return Operation(method.upper(), path, op.get("summary", ""), op.get("description", ""), anchor,
                     _auth(op, document), parameters, body_rows, body_ref, responses)


def reference() -> dict:
    """The page's content: the document's info, its operations by section,
    and its named schemas."""
    document = spec()
    sections = {key: {"key": key, "title": title, "operations": []} for key, title, _ in SECTIONS}
    other = {"key": "other", "title": "Other", "operations": []}
    for path, item in document["paths"].items():
        for method in _METHODS:
            if method in item:
                key = next((k for k, _, prefixes in SECTIONS if path.startswith(prefixes)), None)
                (sections[key] if key else other)["operations"].append(_operation(method, path, item[method],
                                                                                   document))
    components = document["components"]["schemas"]
    schemas = [{"name": name, "description": schema.get("description", ""), "type": _type_text(schema) or "object",
                "rows": schema_rows(schema, components)} for name, schema in components.items()]
    found = [s for s in [*sections.values(), other] if s["operations"]]
    return {"info": document["info"], "sections": found, "schemas": schemas,
            "security": document["components"].get("securitySchemes", {})}
