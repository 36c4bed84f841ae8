"""The providers' organization admin APIs, as pages of normalised rows.

OpenAI: `GET {base}/organization/usage/<kind>` (1-hour buckets grouped by
model, api_key_id, project_id and, for completions, batch) and
`GET {base}/organization/costs` (daily, by line_item and project_id), with an
admin key as a Bearer token. Anthropic: `GET {base}/v1/organizations/
usage_report/messages` (1-hour buckets by model, api_key_id, workspace_id and
service_tier) and `/v1/organizations/cost_report` (daily, by workspace_id and
description), with `x-api-key` and `anthropic-version`. Both paginate with
`has_more` / `next_page`. Rate limits (429, honouring `retry-after`) and 5xx
answers are retried with exponential backoff; a refusal of the key is not.

The providers' key lists (`list_keys`), for matching vault credentials to
the keys the usage reports name: OpenAI's `GET {base}/organization/projects`
(archived ones included) and, per project, `/organization/projects/{id}/
api_keys`, paginated with `limit` / `after` and `has_more` / `last_id`;
Anthropic's `GET {base}/v1/organizations/api_keys`, paginated with `limit` /
`after_id`. Each key comes with its redacted hint ("sk-abc...wxyz")."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import requests
from flask import current_app

from costguardian.money import NANOS_PER_USD
from costguardian.services.gateway import providers
from costguardian.services.usage import catalog

ANTHROPIC_VERSION = "2023-06-01"
MAX_ATTEMPTS = 5
MAX_WAIT = 60.0
HOURS_PER_PAGE = 168  # the providers' maximum for 1-hour buckets
DAYS_PER_PAGE = 31
# OpenAI's usage endpoints and what each may be grouped by.
OPENAI_SOURCES = {
    "completions": ("model", "api_key_id", "project_id", "batch"),
    "embeddings": ("model", "api_key_id", "project_id"),
    "moderations": ("model", "api_key_id", "project_id"),
    "images": ("model", "api_key_id", "project_id"),
    "audio_speeches": ("model", "api_key_id", "project_id"),
    "audio_transcriptions": ("model", "api_key_id", "project_id"),
}
SUPPORTED = ("openai", "anthropic")
KEYS_PER_PAGE = 100  # OpenAI's maximum; Anthropic allows 1,000
MAX_LIST_PAGES = 100  # per list: a provider answering has_more forever cannot hold a sync


class AdminApiError(Exception):
    def __init__(self, message: str, status: int | None = None, refused: bool = False):
        super().__init__(message)
        self.status, self.refused = status, refused


@dataclass
class UsageRow:
    source: str
    hour: datetime  # naive UTC
    model: str
    model_raw: str
    key_id: str
    project_id: str
    tier: str
    requests: int = 0
    input_tokens: int = 0  # every prompt token, cached ones included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0


@dataclass
class CostRow:
    day: date
    line_item: str
    model: str
    project_id: str
    amount_nanos: int


@dataclass
class KeyRow:
    key_id: str
    name: str
    hint: str  # the provider's redacted value: a prefix, "...", the last characters
    project_id: str
    status: str


@dataclass
class Page:
    rows: list = field(default_factory=list)
    bucket_ends: list[datetime] = field(default_factory=list)
    has_more: bool = False
    next_page: str | None = None


def streams(provider: str) -> list[str]:
    """The streams a provider's sync pulls, each with its own cursor."""
    if provider == "openai":
        return [f"usage:{kind}" for kind in OPENAI_SOURCES] + ["costs"]
    return ["usage:messages", "costs"]


def base_url(provider: str) -> str:
    return providers.base_url_for(providers.get(provider))


def headers(provider: str, secret: str) -> dict[str, str]:
    if provider == "openai":
        return {"Authorization": f"Bearer {secret}"}
    return {"x-api-key": secret, "anthropic-version": ANTHROPIC_VERSION}


def check_key(provider: str, secret: str, now: datetime) -> None:
    """A cheap call proving the admin key: one hour of usage."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    fetch(provider, secret, "usage:completions" if provider == "openai" else "usage:messages", start,
          start + timedelta(hours=1), None, limit=1, attempts=1)


def fetch(provider: str, secret: str, stream: str, start: datetime, end: datetime, page: str | None,
          limit: int | None = None, attempts: int = MAX_ATTEMPTS) -> Page:
    """One page of a stream between two UTC instants (naive)."""
    if provider == "openai":
        if stream == "costs":
            params = [("start_time", _unix(start)), ("end_time", _unix(end)), ("bucket_width", "1d"),
                      ("group_by", "line_item"), ("group_by", "project_id"), ("limit", limit or DAYS_PER_PAGE)]
            path = "/organization/costs"
        else:
            kind = stream.split(":", 1)[1]
            params = [("start_time", _unix(start)), ("end_time", _unix(end)), ("bucket_width", "1h"),
                      ("limit", limit or HOURS_PER_PAGE)] + [("group_by", g) for g in OPENAI_SOURCES[kind]]
            path = f"/organization/usage/{kind}"
    else:
        params = [("starting_at", _iso(start)), ("ending_at", _iso(end))]
        if stream == "costs":
            params += [("bucket_width", "1d"), ("group_by[]", "workspace_id"), ("group_by[]", "description"),
                       ("limit", limit or DAYS_PER_PAGE)]
            path = "/v1/organizations/cost_report"
        else:
            params += [("bucket_width", "1h"), ("limit", limit or HOURS_PER_PAGE)] + [
                ("group_by[]", g) for g in ("model", "api_key_id", "workspace_id", "service_tier")]
            path = "/v1/organizations/usage_report/messages"
    if page:
        params.append(("page", page))
    body = _get(provider, secret, base_url(provider) + path, params, attempts)
    parse = {("openai", True): _openai_costs, ("openai", False): _openai_usage,
             ("anthropic", True): _anthropic_costs, ("anthropic", False): _anthropic_usage}
    try:
        return parse[provider, stream == "costs"](stream, body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AdminApiError(f"The provider's answer was not a usage report ({exc.__class__.__name__}).") from None


def list_keys(provider: str, secret: str) -> list[KeyRow]:
    """Every API key the provider lists for the organization."""
    try:
        if provider == "openai":
            rows = []
            for project in _list(provider, secret, "/organization/projects", [("include_archived", "true")], "after"):
                archived = project.get("status") == "archived" or bool(project.get("archived_at"))
                path = f"/organization/projects/{project['id']}/api_keys"
                for key in _list(provider, secret, path, [("owner_project_access", "any")], "after"):
                    rows.append(KeyRow(str(key["id"]), str(key.get("name") or ""), str(key.get("redacted_value") or ""),
                                       str(project["id"]), "archived" if archived else "active"))
            return rows
        return [KeyRow(str(k["id"]), str(k.get("name") or ""), str(k.get("partial_key_hint") or ""),
                       str(k.get("workspace_id") or ""), str(k.get("status") or ""))
                for k in _list(provider, secret, "/v1/organizations/api_keys", [], "after_id")]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AdminApiError(f"The provider's answer was not a key list ({exc.__class__.__name__}).") from None


def _list(provider: str, secret: str, path: str, params: list, cursor: str):
    """The items of a cursor-paginated list, page after page."""
    after = None
    for _ in range(MAX_LIST_PAGES):
        query = params + [("limit", KEYS_PER_PAGE)] + ([(cursor, after)] if after else [])
        body = _get(provider, secret, base_url(provider) + path, query, MAX_ATTEMPTS)
        yield from body["data"]
        after = body.get("last_id")
        if not body.get("has_more") or not after:
            return


def _get(provider: str, secret: str, url: str, params, attempts: int):
    scale = float(current_app.config.get("CG_RETRY_SCALE", 1.0))
    timeout = float(current_app.config.get("CG_PROVIDER_TIMEOUT", 10))
    last = "no answer"
    for attempt in range(attempts):
        wait = min(MAX_WAIT, 2.0 ** attempt)
        try:
            response = requests.get(url, params=params, headers=headers(provider, secret), timeout=timeout,
                                    allow_redirects=False)
        except requests.RequestException as exc:
            last = f"could not reach the provider ({exc.__class__.__name__})"
        else:
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    raise AdminApiError("The provider answered with something that is not JSON.") from None
            last = f"{response.status_code}: {_message(response)}"
            if response.status_code in (401, 403):
                raise AdminApiError(f"The provider refused the admin key ({last}).", response.status_code,
                                    refused=True)
            if response.status_code != 429 and response.status_code < 500:
                raise AdminApiError(f"The provider refused the request ({last}).", response.status_code)
            try:
                wait = min(MAX_WAIT, max(wait, float(response.headers.get("retry-after", ""))))
            except ValueError:
                pass
        if attempt + 1 < attempts:
            time.sleep(wait * scale)
    raise AdminApiError(f"The provider did not answer after {attempts} attempt(s) ({last}).")


def _message(response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or "")[:300] or response.reason
    except (ValueError, AttributeError):
        return response.reason or ""


def _unix(when: datetime) -> int:
    return int(when.replace(tzinfo=timezone.utc).timestamp())


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_unix(value) -> datetime:
    return datetime.fromtimestamp(int(value), timezone.utc).replace(tzinfo=None)


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)


def _model(provider: str, raw) -> str:
    return catalog.resolve_model(provider, str(raw))[0] if raw else ""


def _int(value) -> int:
    return int(value or 0)


def _openai_usage(stream: str, body: dict) -> Page:
    source = stream.split(":", 1)[1]
    page = Page(has_more=bool(body.get("has_more")), next_page=body.get("next_page"))
    for bucket in body["data"]:
        hour = _from_unix(bucket["start_time"])
        page.bucket_ends.append(_from_unix(bucket["end_time"]))
        for r in bucket["results"]:
            page.rows.append(UsageRow(
                source=source, hour=hour, model=_model("openai", r.get("model")), model_raw=str(r.get("model") or ""),
                key_id=str(r.get("api_key_id") or ""), project_id=str(r.get("project_id") or ""),
                tier="batch" if r.get("batch") else "", requests=_int(r.get("num_model_requests")),
                input_tokens=_int(r.get("input_tokens")), cache_read_tokens=_int(r.get("input_cached_tokens")),
                output_tokens=_int(r.get("output_tokens"))))
    return page


def _anthropic_usage(stream: str, body: dict) -> Page:
    page = Page(has_more=bool(body.get("has_more")), next_page=body.get("next_page"))
    for bucket in body["data"]:
        hour = _from_iso(bucket["starting_at"])
        page.bucket_ends.append(_from_iso(bucket["ending_at"]))
        for r in bucket["results"]:
            creation = r.get("cache_creation") or {}
            written = _int(creation.get("ephemeral_5m_input_tokens")) + _int(creation.get("ephemeral_1h_input_tokens"))
            read = _int(r.get("cache_read_input_tokens"))
            tier = str(r.get("service_tier") or "")
            page.rows.append(UsageRow(
                source="messages", hour=hour, model=_model("anthropic", r.get("model")),
                model_raw=str(r.get("model") or ""), key_id=str(r.get("api_key_id") or ""),
                project_id=str(r.get("workspace_id") or ""), tier="" if tier == "standard" else tier,
                input_tokens=_int(r.get("uncached_input_tokens")) + read + written, cache_read_tokens=read,
                cache_write_tokens=written, output_tokens=_int(r.get("output_tokens"))))
    return page


def _nanos(usd: Decimal) -> int:
    return int((usd * NANOS_PER_USD).to_integral_value())


def _openai_costs(stream: str, body: dict) -> Page:
    page = Page(has_more=bool(body.get("has_more")), next_page=body.get("next_page"))
    for bucket in body["data"]:
        day = _from_unix(bucket["start_time"]).date()
        page.bucket_ends.append(_from_unix(bucket["end_time"]))
        for r in bucket["results"]:
            line_item = str(r.get("line_item") or "")
            # Line items read "<model>, input" / "<model>, output"; other items name no model.
            model = _model("openai", line_item.split(",", 1)[0].strip()) if "," in line_item else ""
            amount = Decimal(str(r["amount"]["value"]))
            page.rows.append(CostRow(day=day, line_item=line_item, model=model,
                                     project_id=str(r.get("project_id") or ""), amount_nanos=_nanos(amount)))
    return page


def _anthropic_costs(stream: str, body: dict) -> Page:
    page = Page(has_more=bool(body.get("has_more")), next_page=body.get("next_page"))
    for bucket in body["data"]:
        day = _from_iso(bucket["starting_at"]).date()
        page.bucket_ends.append(_from_iso(bucket["ending_at"]))
        for r in bucket["results"]:
            # Anthropic's amounts are decimal strings in cents.
            amount = Decimal(str(r["amount"])) / 100
            line_item = str(r.get("description") or r.get("cost_type") or "")
            page.rows.append(CostRow(day=day, line_item=line_item, model=_model("anthropic", r.get("model")),
                                     project_id=str(r.get("workspace_id") or ""), amount_nanos=_nanos(amount)))
    return page
