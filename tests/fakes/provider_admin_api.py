"""A local fake of the providers' organization admin APIs, for usage sync and
reconciliation: a real HTTP server on 127.0.0.1 (tests/fakes/server.py) that
answers the documented requests with the documented shapes, from a history
the test sets.

OpenAI (admin key as `Authorization: Bearer`, base URL `<address>/v1`):
- `GET /v1/organization/usage/<completions|embeddings|moderations|images|
  audio_speeches|audio_transcriptions>` with `start_time` (Unix seconds,
  inclusive, required), `end_time` (exclusive, default now), `bucket_width`
  `1m|1h|1d` (default 1d), `group_by` (`group_by=model&group_by=api_key_id` or
  `group_by[]=…`: model, api_key_id, project_id, batch; images add source and
  size), `limit` (buckets per page; 1d default 7 max 31, 1h default 24 max 168,
  1m default 60 max 1440) and `page` (the previous answer's `next_page`).
  Answer: `{"object": "page", "data": [{"object": "bucket", "start_time",
  "end_time", "results": [{"object": "organization.usage.<kind>.result", …}]}],
  "has_more", "next_page"}`; every bucket of the range is listed, empty or not;
  a field not grouped by is null.
- `GET /v1/organization/costs`: `bucket_width=1d` only, `group_by` line_item
  and/or project_id, `limit` 1–180 (default 7); results
  `{"object": "organization.costs.result", "amount": {"value": <USD number>,
  "currency": "usd"}, "line_item", "project_id"}`.
- `GET /v1/organization/projects` (`limit` 1–100, default 20; `after` a
  project id; `include_archived`, default false) and
  `GET /v1/organization/projects/{project_id}/api_keys` (`limit`, `after` a key
  id): `{"object": "list", "data": [...], "first_id", "last_id", "has_more"}`;
  a project `{"object": "organization.project", "id", "name", "created_at",
  "archived_at", "status"}`, a key `{"object": "organization.project.api_key",
  "id", "name", "redacted_value": "sk-abc...wxyz", "created_at",
  "last_used_at", "owner": {"type": "user", "user": {…}}}`.
Errors in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.

Anthropic (admin key in `x-api-key`, `anthropic-version` required, base URL
`<address>`):
- `GET /v1/organizations/usage_report/messages` with `starting_at` (RFC 3339,
  required; snapped to the bucket in UTC), `ending_at` (exclusive),
  `bucket_width` `1m|1h|1d` (default 1d), `group_by[]` (model, api_key_id,
  workspace_id, service_tier), `limit`, `page`. Answer `{"data": [{"starting_at",
  "ending_at", "results": [{"uncached_input_tokens", "cache_creation":
  {"ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens"},
  "cache_read_input_tokens", "output_tokens", "server_tool_use", "model",
  "api_key_id", "workspace_id", "service_tier", "context_window"}]}],
  "has_more", "next_page"}`.
- `GET /v1/organizations/cost_report`: `bucket_width=1d`, `group_by[]`
  workspace_id and/or description (description adds model, cost_type,
  token_type, service_tier), `limit` 1–31 (default 7). `amount` is a decimal
  string in cents ("123.45" is $1.23), `currency` "USD".
- `GET /v1/organizations/api_keys` (`limit` 1–1000, default 20; `after_id`):
  `{"data": [{"type": "api_key", "id", "name", "partial_key_hint":
  "sk-ant-api03-R2D...igAA", "status", "workspace_id", "created_at",
  "created_by": {"id", "type"}}], "first_id", "last_id", "has_more"}`.
Errors in Anthropic's shape `{"type": "error", "error": {"type", "message"}}`.

Told to fail: `fail_next` (a list of statuses, one per coming request; a 429
carries `retry-after: <retry_after>`), `fail_after` (every request after that
many successful ones answers 500 — a consumer "stopped" mid-backfill).
`requests` records (path, query dict of lists, headers). `now` (a Unix time,
default the wall clock) is where the providers' data ends.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal

from werkzeug.wrappers import Request, Response

from tests.fakes.server import LocalServer

OPENAI_USAGE_KINDS = {
    "completions": ("input_tokens", "output_tokens", "input_cached_tokens", "input_audio_tokens",
                    "output_audio_tokens", "num_model_requests"),
    "embeddings": ("input_tokens", "num_model_requests"),
    "moderations": ("input_tokens", "num_model_requests"),
    "images": ("images", "num_model_requests"),
    "audio_speeches": ("characters", "num_model_requests"),
    "audio_transcriptions": ("seconds", "num_model_requests"),
}
OPENAI_GROUPS = {"model", "api_key_id", "project_id", "batch", "user_id", "source", "size"}
ANTHROPIC_GROUPS = ("model", "api_key_id", "workspace_id", "service_tier", "context_window")
WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _ts(when) -> int:
    if isinstance(when, (int, float)):
        return int(when)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


class FakeProviderAdminAPI(LocalServer):
    thread_name = "fake-provider-admin"

    def __init__(self, openai_key: str = "sk-admin-openai-fake-0001", anthropic_key: str = "sk-ant-admin01-fake-0002"):
        self.openai_key, self.anthropic_key = openai_key, anthropic_key
        self.openai_usage: dict[str, list[dict]] = defaultdict(list)  # kind -> records
        self.openai_costs: list[dict] = []
        self.anthropic_usage: list[dict] = []
        self.anthropic_costs: list[dict] = []
        self.openai_projects: list[dict] = []  # {"id", "name", "archived", "keys": [key objects]}
        self.anthropic_keys: list[dict] = []
        self.requests: list[tuple[str, dict, dict]] = []
        self.fail_next: list[int] = []
        self.fail_after: int | None = None
        self.retry_after = 0
        self.now: int | None = None
        self._served = 0
        self._lock = threading.Lock()

    # -- the history ---------------------------------------------------------
    def add_openai_usage(self, when, model: str, api_key_id: str | None = None, project_id: str | None = None,
                         kind: str = "completions", batch: bool = False, **measures) -> None:
        """One minute of usage (summed into whatever buckets are asked for)."""
        self.openai_usage[kind].append({"at": _ts(when), "model": model, "api_key_id": api_key_id,
                                        "project_id": project_id, "batch": batch, **measures})

    def add_openai_cost(self, day_start, amount_usd: str, line_item: str | None = None,
                        project_id: str | None = None) -> None:
        self.openai_costs.append({"at": _ts(day_start), "amount": Decimal(amount_usd), "line_item": line_item,
                                  "project_id": project_id})

    def add_anthropic_usage(self, when, model: str, api_key_id: str | None = None, workspace_id: str | None = None,
                            service_tier: str = "standard", **measures) -> None:
        self.anthropic_usage.append({"at": _ts(when), "model": model, "api_key_id": api_key_id,
                                     "workspace_id": workspace_id, "service_tier": service_tier,
                                     "context_window": "0-200k", **measures})

    def add_anthropic_cost(self, day_start, amount_cents: str, model: str | None = None,
                           workspace_id: str | None = None, token_type: str | None = "output_tokens") -> None:
        self.anthropic_costs.append({"at": _ts(day_start), "amount": Decimal(amount_cents), "model": model,
                                     "workspace_id": workspace_id, "token_type": token_type})

    def add_openai_key(self, project_id: str, key_id: str, redacted_value: str, name: str = "",
                       archived_project: bool = False) -> None:
        project = next((p for p in self.openai_projects if p["id"] == project_id), None)
        if project is None:
            project = {"id": project_id, "name": project_id, "archived": archived_project, "keys": []}
            self.openai_projects.append(project)
        project["keys"].append({
            "object": "organization.project.api_key", "id": key_id, "name": name or key_id,
            "redacted_value": redacted_value, "created_at": 1711471533, "last_used_at": None,
            "owner": {"type": "user", "user": {"object": "organization.project.user", "id": "user_abc",
                                               "name": "First Last", "email": "user@example.com", "role": "owner",
                                               "added_at": 1711471533}}})

    def add_anthropic_key(self, key_id: str, partial_key_hint: str, name: str = "", workspace_id: str | None = None,
                          status: str = "active") -> None:
        self.anthropic_keys.append({
            "type": "api_key", "id": key_id, "name": name or key_id, "partial_key_hint": partial_key_hint,
            "status": status, "workspace_id": workspace_id, "created_at": "2026-10-30T23:58:27.427722Z",
            "created_by": {"id": "user_01WCz1FkmYMm4gnmykNKUu3Q", "type": "user"}})

    def provider_base_urls(self) -> dict[str, str]:
        """CG_PROVIDER_BASE_URLS pointing both providers here."""
        return {"openai": self.address + "/v1", "anthropic": self.address}

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    # -- the server ----------------------------------------------------------
    def _app(self, environ, start_response):
        request = Request(environ)
        query = {k: request.args.getlist(k) for k in request.args}
        with self._lock:
            self.requests.append((request.path, query, dict(request.headers)))
        response = self._dispatch(request, query)
        return response(environ, start_response)

    def _dispatch(self, request: Request, query: dict) -> Response:
        path = request.path
        if path.startswith("/v1/organization/"):
            wire = "openai"
        elif path.startswith("/v1/organizations/"):
            wire = "anthropic"
        else:
            return Response("not found", status=404)
        refusal = self._authorize(request, wire)
        if refusal is not None:
            return refusal
        with self._lock:
            if self.fail_next:
                status = self.fail_next.pop(0)
                return self._error(wire, status, "scripted failure")
            if self.fail_after is not None and self._served >= self.fail_after:
                return self._error(wire, 500, "the server had an error while processing your request")
            self._served += 1
        try:
            if wire == "openai":
                kind = path[len("/v1/organization/"):]
                if kind == "costs":
                    return self._json(self._openai_costs(query))
                if kind.startswith("usage/") and kind[6:] in OPENAI_USAGE_KINDS:
                    return self._json(self._openai_usage(kind[6:], query))
                if kind == "projects":
                    archived = self._one(query, "include_archived", "false") == "true"
                    projects = [{"object": "organization.project", "id": p["id"], "name": p["name"],
                                 "created_at": 1711471533, "archived_at": 1730000000 if p["archived"] else None,
                                 "status": "archived" if p["archived"] else "active"}
                                for p in self.openai_projects if archived or not p["archived"]]
                    return self._json(self._list_page(projects, query, "after", (20, 100)))
                parts = kind.split("/")
                if len(parts) == 3 and parts[0] == "projects" and parts[2] == "api_keys":
                    project = next((p for p in self.openai_projects if p["id"] == parts[1]), None)
                    if project is None:
                        return self._error(wire, 404, f"No such project: {parts[1]}")
                    return self._json(self._list_page(project["keys"], query, "after", (20, 100)))
            else:
                if path == "/v1/organizations/api_keys":
                    return self._json(self._list_page(self.anthropic_keys, query, "after_id", (20, 1000)))
                if path == "/v1/organizations/usage_report/messages":
                    return self._json(self._anthropic_usage(query))
                if path == "/v1/organizations/cost_report":
                    return self._json(self._anthropic_costs(query))
        except _BadRequest as exc:
            return self._error(wire, 400, str(exc))
        return self._error(wire, 404, f"Unknown path {path}")

    def _authorize(self, request: Request, wire: str) -> Response | None:
        if wire == "openai":
            if request.headers.get("Authorization", "") != f"Bearer {self.openai_key}":
                return self._error(wire, 401, "Incorrect API key provided. You must be an organization owner "
                                              "and use an admin key to access this endpoint.")
            return None
        if not request.headers.get("anthropic-version"):
            return self._error(wire, 400, "anthropic-version: header is required")
        if request.headers.get("x-api-key", "") != self.anthropic_key:
            return self._error(wire, 401, "invalid x-api-key")
        return None

    def _error(self, wire: str, status: int, message: str) -> Response:
        if wire == "openai":
            kind = {401: "invalid_request_error", 429: "rate_limit_exceeded", 400: "invalid_request_error",
                    404: "invalid_request_error"}.get(status, "server_error")
            body = {"error": {"message": message, "type": kind, "param": None,
                              "code": "invalid_api_key" if status == 401 else None}}
        else:
            kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                    429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
        response = self._json(body, status)
        if status == 429:
            response.headers["retry-after"] = str(self.retry_after)
        return response

    @staticmethod
    def _json(body, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")

    # -- buckets and pages ---------------------------------------------------
    def _now(self) -> int:
        return int(self.now if self.now is not None else time.time())

    def _window(self, start: int, end: int | None, width_name: str, limit_raw, page: str | None,
                limits: tuple[int, int] | None = None):
        if width_name not in WIDTHS:
            raise _BadRequest(f"Invalid bucket_width {width_name!r}")
        width = WIDTHS[width_name]
        default_limit, max_limit = limits or LIMITS[width_name]
        try:
            limit = int(limit_raw) if limit_raw else default_limit
        except ValueError:
            raise _BadRequest("limit must be an integer") from None
        if not 1 <= limit <= max_limit:
            raise _BadRequest(f"limit must be between 1 and {max_limit} for bucket_width={width_name}")
        first = start - start % width
        if page:
            try:
                first = int(base64.urlsafe_b64decode(page.removeprefix("page_").encode()).decode())
            except ValueError:
                raise _BadRequest("Invalid page token") from None
        end = end if end is not None else self._now()
        starts = []
        at = first
        while at < end and len(starts) < limit:
            starts.append(at)
            at += width
        has_more = at < end
        next_page = None
        if has_more:
            next_page = base64.urlsafe_b64encode(str(at).encode()).decode()
        return starts, width, has_more, next_page

    @staticmethod
    def _groups(query: dict) -> list[str]:
        return query.get("group_by", []) + query.get("group_by[]", [])

    @staticmethod
    def _one(query: dict, name: str, default=None):
        values = query.get(name)
        return values[0] if values else default

    def _openai_usage(self, kind: str, query: dict) -> dict:
        start = self._one(query, "start_time")
        if start is None:
            raise _BadRequest("Missing required parameter: 'start_time'.")
        end = self._one(query, "end_time")
        groups = self._groups(query)
        if any(g not in OPENAI_GROUPS for g in groups):
            raise _BadRequest(f"Invalid group_by {groups}")
        starts, width, has_more, next_page = self._window(int(start), int(end) if end else None,
                                                          self._one(query, "bucket_width", "1d"),
                                                          self._one(query, "limit"), self._one(query, "page"))
        measures = OPENAI_USAGE_KINDS[kind]
        data = []
        for at in starts:
            sums: dict[tuple, dict] = {}
            for rec in self.openai_usage[kind]:
                if at <= rec["at"] < at + width:
                    key = tuple(rec.get(g) for g in groups)
                    row = sums.setdefault(key, dict.fromkeys(measures, 0))
                    for m in measures:
                        row[m] += rec.get(m, 0)
            results = []
            for key, row in sums.items():
                result = {"object": f"organization.usage.{kind}.result", **row}
                for name in ("model", "api_key_id", "project_id", "batch", "user_id"):
                    result[name] = key[groups.index(name)] if name in groups else None
                results.append(result)
            data.append({"object": "bucket", "start_time": at, "end_time": at + width, "results": results})
        return {"object": "page", "data": data, "has_more": has_more, "next_page": next_page}

    def _openai_costs(self, query: dict) -> dict:
        start = self._one(query, "start_time")
        if start is None:
            raise _BadRequest("Missing required parameter: 'start_time'.")
        if self._one(query, "bucket_width", "1d") != "1d":
            raise _BadRequest("Only bucket_width=1d is supported.")
        end = self._one(query, "end_time")
        groups = self._groups(query)
        starts, width, has_more, next_page = self._window(int(start), int(end) if end else None, "1d",
                                                          self._one(query, "limit"), self._one(query, "page"),
                                                          limits=(7, 180))
        data = []
        for at in starts:
            sums: dict[tuple, Decimal] = defaultdict(Decimal)
            for rec in self.openai_costs:
                if at <= rec["at"] < at + width:
                    sums[tuple(rec.get(g) for g in groups)] += rec["amount"]
            results = [{"object": "organization.costs.result", "amount": {"value": float(v), "currency": "usd"},
                        "line_item": key[groups.index("line_item")] if "line_item" in groups else None,
                        "project_id": key[groups.index("project_id")] if "project_id" in groups else None}
                       for key, v in sums.items()]
            data.append({"object": "bucket", "start_time": at, "end_time": at + width, "results": results})
        return {"object": "page", "data": data, "has_more": has_more, "next_page": next_page}

    def _anthropic_window(self, query: dict, widths=("1m", "1h", "1d")):
        start = self._one(query, "starting_at")
        if start is None:
            raise _BadRequest("starting_at: Field required")
        width_name = self._one(query, "bucket_width", "1d")
        if width_name not in widths:
            raise _BadRequest(f"bucket_width: Input should be {' or '.join(widths)}")
        end = self._one(query, "ending_at")
        try:
            start_ts, end_ts = _parse_iso(start), (_parse_iso(end) if end else None)
        except ValueError:
            raise _BadRequest("starting_at: Input should be a valid datetime") from None
        page = self._one(query, "page")
        starts, width, has_more, next_page = self._window(start_ts, end_ts, width_name, self._one(query, "limit"),
                                                          page)
        return starts, width, has_more, ("page_" + next_page) if next_page else None

    def _anthropic_usage(self, query: dict) -> dict:
        groups = self._groups(query)
        if any(g not in ANTHROPIC_GROUPS for g in groups):
            raise _BadRequest(f"group_by: invalid value {groups}")
        starts, width, has_more, next_page = self._anthropic_window(query)
        data = []
        for at in starts:
            sums: dict[tuple, dict] = {}
            for rec in self.anthropic_usage:
                if at <= rec["at"] < at + width:
                    row = sums.setdefault(tuple(rec.get(g) for g in groups), defaultdict(int))
                    for m in ("uncached_input_tokens", "cache_read_input_tokens", "output_tokens",
                              "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"):
                        row[m] += rec.get(m, 0)
            results = []
            for key, row in sums.items():
                result = {"uncached_input_tokens": row["uncached_input_tokens"],
                          "cache_creation": {"ephemeral_1h_input_tokens": row["ephemeral_1h_input_tokens"],
                                             "ephemeral_5m_input_tokens": row["ephemeral_5m_input_tokens"]},
                          "cache_read_input_tokens": row["cache_read_input_tokens"],
                          "output_tokens": row["output_tokens"],
                          "server_tool_use": {"web_search_requests": 0}}
                for name in ANTHROPIC_GROUPS:
                    result[name] = key[groups.index(name)] if name in groups else None
                results.append(result)
            data.append({"starting_at": _iso(at), "ending_at": _iso(at + width), "results": results})
        return {"data": data, "has_more": has_more, "next_page": next_page}

    def _anthropic_costs(self, query: dict) -> dict:
        groups = self._groups(query)
        if any(g not in ("workspace_id", "description") for g in groups):
            raise _BadRequest(f"group_by: invalid value {groups}")
        starts, width, has_more, next_page = self._anthropic_window(query, ("1d",))
        data = []
        for at in starts:
            sums: dict[tuple, Decimal] = defaultdict(Decimal)
            for rec in self.anthropic_costs:
                if at <= rec["at"] < at + width:
                    key = (rec["workspace_id"] if "workspace_id" in groups else None,
                           (rec["model"], rec["token_type"]) if "description" in groups else None)
                    sums[key] += rec["amount"]
            results = []
            for (workspace, described), amount in sums.items():
                model, token_type = described or (None, None)
                results.append({"currency": "USD", "amount": str(amount), "workspace_id": workspace,
                                "description": f"{model} Usage - {token_type}" if described else None,
                                "cost_type": "tokens" if described else None, "context_window": None,
                                "model": model, "service_tier": "standard" if described else None,
                                "token_type": token_type})
            data.append({"starting_at": _iso(at), "ending_at": _iso(at + width), "results": results})
        return {"data": data, "has_more": has_more, "next_page": next_page}


    def _list_page(self, items: list[dict], query: dict, cursor: str, limits: tuple[int, int]) -> dict:
        """A cursor page of a list: the items after the one named by the
        cursor, `limit` of them."""
        try:
            limit = int(self._one(query, "limit", limits[0]))
        except ValueError:
            raise _BadRequest("limit must be an integer") from None
        if not 1 <= limit <= limits[1]:
            raise _BadRequest(f"limit must be between 1 and {limits[1]}")
        start = 0
        after = self._one(query, cursor)
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise _BadRequest(f"{cursor}: unknown id {after}")
            start = ids.index(after) + 1
        page = items[start:start + limit]
        body = {"data": page, "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
                "has_more": start + limit < len(items)}
        return {"object": "list", **body} if cursor == "after" else body


class _BadRequest(Exception):
    pass
