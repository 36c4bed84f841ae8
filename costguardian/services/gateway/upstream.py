"""Talking to a provider: the one cheap call that proves a key (its models
list), with the provider's own refusal turned into a sentence for the form.

Calls to an admin-typed URL (an OpenAI-compatible base URL, an Azure
endpoint) go through the webhooks' SSRF guard (services.notifications.
webhook_urls: every resolved address checked before, the connected peer
checked again on the socket, no proxies from the environment, a deadline on
the whole call) unless CG_ALLOW_PRIVATE_WEBHOOKS allows private addresses.
The known providers' URLs come from the catalogue or the operator
(CG_PROVIDER_BASE_URLS) and are trusted; they honour HTTPS_PROXY.
"""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests
from flask import current_app

from costguardian.services.errors import ServiceError
from costguardian.services.gateway import providers
from costguardian.services.gateway.providers import Provider
from costguardian.services.notifications import webhook_urls

USER_AGENT = "CostGuardian/1 (+provider check)"
DEFAULT_TIMEOUT = 10
MAX_PAGES = 10
MAX_BODY = 8 * 1024 * 1024  # OpenRouter's full list is ~1.5 MB
MESSAGE_CHARS = 300


class ProviderCheckFailed(ServiceError):
    """The provider (or the way to it) refused: `message` for the user,
    `field` the form field it concerns ("" for the whole form)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Connection:
    """Everything needed to call a provider with one key."""

    provider: Provider
    secret: str
    base_url: str  # resolved: the credential's own, the operator's override or the default
    api_version: str = ""

    @property
    def guarded(self) -> bool:
        """An admin typed this URL: the SSRF guard applies."""
        return self.provider.custom_base_url


def connection(provider: Provider, secret: str, base_url: str = "", api_version: str = "") -> Connection:
    return Connection(provider, secret, providers.base_url_for(provider, base_url), api_version)


def timeout() -> float:
    return float(current_app.config.get("CG_PROVIDER_TIMEOUT") or DEFAULT_TIMEOUT)


def auth_headers(conn: Connection) -> dict[str, str]:
    """The headers that carry the key (and API version) in the provider's style."""
    provider, secret = conn.provider, conn.secret
    if provider.auth == providers.X_API_KEY:
        return {"x-api-key": secret, "anthropic-version": providers.ANTHROPIC_VERSION}
    if provider.auth == providers.GOOG_API_KEY:
        return {"x-goog-api-key": secret}
    if provider.auth == providers.AZURE_API_KEY:
        return {"api-key": secret}
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def list_models(conn: Connection) -> list[str]:
    """The model ids the provider lists for this key, sorted; raises
    ProviderCheckFailed with the provider's own reason when it refuses."""
    if conn.provider.key_check_path:
        _get(conn, conn.provider.key_check_path, {})
    models: list[str] = []
    params = _first_page_params(conn)
    for _ in range(MAX_PAGES):
        body = _get(conn, conn.provider.models_path, params)
        page, params = _parse_page(conn, body)
        models.extend(page)
        if params is None:
            break
    return sorted(set(models))


def _first_page_params(conn: Connection) -> dict:
    wire = conn.provider.wire
    if wire == providers.ANTHROPIC:
        return {"limit": 1000}
    if wire == providers.GEMINI:
        return {"pageSize": 1000}
    if wire == providers.AZURE:
        return {"api-version": conn.api_version or providers.AZURE_DEFAULT_API_VERSION}
    return {}


def _parse_page(conn: Connection, body) -> tuple[list[str], dict | None]:
    """The ids on one page and the parameters of the next (None: last page)."""
    wire = conn.provider.wire
    try:
        if wire == providers.GEMINI:
            ids = [str(m["name"]).removeprefix("models/") for m in body.get("models", [])]
            token = body.get("nextPageToken")
            return ids, ({"pageSize": 1000, "pageToken": token} if token else None)
        ids = [str(m["id"]) for m in body["data"]]
        if wire == providers.ANTHROPIC and body.get("has_more") and body.get("last_id"):
            return ids, {"limit": 1000, "after_id": body["last_id"]}
        return ids, None
    except (AttributeError, KeyError, TypeError):
        raise _not_a_models_list(conn) from None


def _not_a_models_list(conn: Connection) -> ProviderCheckFailed:
    where = "base_url" if conn.guarded else ""
    return ProviderCheckFailed(f"{conn.provider.label} answered, but not with a list of models: check the "
                               f"{'endpoint' if conn.provider.is_azure else 'base URL'}.", where)


def _get(conn: Connection, path: str, params: dict):
    url = conn.base_url + path + (("?" + urlencode(params)) if params else "")
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **auth_headers(conn)}
    limit = timeout()
    url_field = "base_url" if conn.guarded else ""
    if conn.guarded and not webhook_urls.private_allowed():
        check_public(conn.base_url, url_field)
    try:
        if conn.guarded:
            with webhook_urls.Deadline(limit * 2) as deadline, webhook_urls.session(deadline) as http:
                response, raw = _fetch(http, url, headers, limit)
        else:
            with requests.Session() as http:
                response, raw = _fetch(http, url, headers, limit)
    except webhook_urls.ForbiddenAddress as exc:
        raise ProviderCheckFailed(_addressed(str(exc)), url_field) from None
    except requests.Timeout:
        raise ProviderCheckFailed(f"{conn.provider.label} did not answer within {limit:g} s.", url_field) from None
    except requests.exceptions.SSLError:
        raise ProviderCheckFailed(f"The TLS connection to {_host(url)} failed (certificate not trusted?).",
                                  url_field) from None
    except requests.ConnectionError as exc:
        raise ProviderCheckFailed(f"Could not connect to {_host(url)}: {_reason(exc)}.", url_field) from None
    except requests.RequestException as exc:
        raise ProviderCheckFailed(f"The request to {_host(url)} failed ({type(exc).__name__}).", url_field) from None
    if response.status_code >= 300:
        raise _refusal(conn, response.status_code, raw)
    try:
        return json.loads(raw)
    except ValueError:
        raise _not_a_models_list(conn) from None


def _fetch(http: requests.Session, url: str, headers: dict, limit: float):
    response = http.get(url, headers=headers, timeout=(min(limit, 5.0), limit), allow_redirects=False, stream=True)
    with response:
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                break
    return response, b"".join(chunks)


def check_public(base_url: str, field: str = "base_url") -> None:
    """Refuse a URL whose host resolves to an address the server must not
    reach (loopback, private, link-local …), as webhooks do."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = webhook_urls.resolve(parts.hostname or "", port)
    except (OSError, UnicodeError):
        raise ProviderCheckFailed(f"The host {parts.hostname} could not be resolved.", field) from None
    for address in addresses:
        reason = webhook_urls.forbidden_reason(address)
        if reason:
            raise ProviderCheckFailed(f"{parts.hostname} resolves to {address}, {reason}; Cost Guardian only calls "
                                      "providers at public addresses (see CG_ALLOW_PRIVATE_WEBHOOKS in "
                                      "docs/OPERATIONS.md for self-hosted models on a private network).", field)


def _addressed(message: str) -> str:
    return message.replace("the request was not sent", "the request was not sent (only public addresses are "
                                                       "called)")


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or url


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused"
    if any(s in text for s in ("Name or service not known", "nodename nor servname", "getaddrinfo failed",
                               "Temporary failure in name resolution", "No address associated")):
        return "the host name does not resolve"
    if isinstance(getattr(exc, "__context__", None), socket.timeout) or "timed out" in text:
        return "the connection timed out"
    if "RemoteDisconnected" in text or "Connection aborted" in text or "reset by peer" in text:
        return "the server closed the connection without answering"
    return "the connection failed"


def _refusal(conn: Connection, status: int, raw: bytes) -> ProviderCheckFailed:
    label = conn.provider.label
    message = provider_message(raw, conn.secret)
    detail = f": {message}" if message else "."
    key_problem = status in (401, 403) or (conn.provider.wire == providers.GEMINI and status == 400
                                          and b"API_KEY" in raw)
    if key_problem:
        return ProviderCheckFailed(f"{label} refused the key (HTTP {status}){detail}", "secret")
    if 300 <= status < 400:
        return ProviderCheckFailed(f"{label} answered with a redirect (HTTP {status}); use the final URL.",
                                   "base_url" if conn.guarded else "")
    if status == 404 and conn.guarded:
        hint = "the endpoint and API version" if conn.provider.is_azure else "the base URL (it usually ends in /v1)"
        return ProviderCheckFailed(f"{label} has no models list there (HTTP 404){detail} Check {hint}.", "base_url")
    if conn.provider.is_azure and status == 400:
        return ProviderCheckFailed(f"{label} refused the request (HTTP 400){detail}", "api_version")
    if status == 429:
        return ProviderCheckFailed(f"{label} is rate-limiting this key (HTTP 429){detail} Try again shortly.",
                                   "secret")
    return ProviderCheckFailed(f"{label} answered HTTP {status}{detail}", "")


def provider_message(raw: bytes, secret: str = "") -> str:
    """The human part of a provider's error body, whatever its shape:
    OpenAI/Azure/Gemini {"error": {"message"}}, Anthropic {"type": "error",
    "error": {"type", "message"}}, {"error": "…"}, {"message"}, {"detail"},
    else the start of the text."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    message = ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("code") or ""
        elif isinstance(error, str):
            message = error
        message = message or body.get("message") or body.get("detail") or ""
        if isinstance(message, (list, dict)):
            message = json.dumps(message)
    elif not text.lstrip().startswith("<"):  # an HTML error page says nothing useful
        message = text
    # Redacted before it is cut short: a key crossing the cut would no longer match whole.
    message = redact(" ".join(str(message).split()), secret)
    return message[:MESSAGE_CHARS] + ("…" if len(message) > MESSAGE_CHARS else "")


def redact(text: str, secret: str) -> str:
    """The text without the key, should a provider echo it whole."""
    if secret and len(secret) >= 8 and secret in text:
        text = text.replace(secret, "…" + secret[-4:])
    return text
