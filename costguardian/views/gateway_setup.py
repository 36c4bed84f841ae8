"""The Gateway page: where the organization's gateway lives (the base URLs
its SDKs take) and copy-paste snippets for the official OpenAI and Anthropic
SDKs, curl and LangChain, filled with this organization's URL and a model its
provider keys actually allow. Readable by every member (`usage:read`): the
people who write the code are rarely the admins."""
from __future__ import annotations

from flask import Blueprint, current_app, g, request, url_for

from costguardian.authz import require_permission
from costguardian.rendering import render
from costguardian.services.gateway import providers, vault

bp = Blueprint("gateway_setup", __name__)

PAGE = "gateway/setup.html"
KEY_PLACEHOLDER = "cg_live_…"
# Models the snippets prefer, cheapest first; else the first chat model allowed.
PREFERRED_OPENAI = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4.1")
PREFERRED_CLAUDE = ("claude-haiku-4-5", "claude-3-5-haiku", "claude-sonnet-4-5", "claude-sonnet-4")
NOT_CHAT = ("embed", "whisper", "tts", "dall-e", "moderation", "image", "audio", "realtime", "transcribe", "search",
            "davinci", "babbage")
OPENAI_WIRES = (providers.OPENAI, providers.AZURE)


def gateway_base_url() -> str:
    """CG_BASE_URL when set (what callers reach from outside), else this request's host."""
    return (current_app.config.get("CG_BASE_URL") or request.host_url).rstrip("/")


def _chat(model: str) -> bool:
    return not any(word in model.lower() for word in NOT_CHAT)


def _pick(names: list[str], preferred: tuple[str, ...]) -> str | None:
    """The first preferred model (a dated name counts: claude-haiku-4-5-20251001), else the first chat model."""
    chat = [name for name in names if _chat(name)]
    for wanted in preferred:
        for name in chat:
            if name == wanted or name.startswith(wanted + "-2"):
                return name
    return chat[0] if chat else None


def snippet_models(org) -> dict[str, str | None]:
    """The model each family of snippets names: for the OpenAI SDKs, an
    OpenAI model (bare) or another OpenAI-format provider's as `provider/model`;
    for the Anthropic SDK, a Claude model. None: no enabled key allows one."""
    allowed = vault.allowed_models(org)
    by_provider: dict[str, list[str]] = {}
    for pair in allowed:
        by_provider.setdefault(pair.provider, []).append(pair.model)
    openai_model = _pick(by_provider.get("openai", []), PREFERRED_OPENAI)
    if openai_model is None:
        for key, names in by_provider.items():
            entry = providers.get(key)
            model = _pick(names, PREFERRED_OPENAI) if entry is not None and entry.wire in OPENAI_WIRES else None
            if model is not None:
                openai_model = f"{key}/{model}"
                break
    return {"openai": openai_model, "anthropic": _pick(by_provider.get("anthropic", []), PREFERRED_CLAUDE),
            "any": bool(allowed)}


def request_log_url() -> str | None:
    """The gateway's request log page, once it is served (its own blueprint)."""
    for rule in current_app.url_map.iter_rules():
        if rule.rule.rstrip("/") == "/gateway/requests" and "GET" in rule.methods:
            return url_for(rule.endpoint)
    return None


@bp.get("/gateway")
@require_permission("usage:read")
def index():
    base = gateway_base_url()
    return render(PAGE, PAGE, base=base, openai_url=f"{base}/v1", anthropic_url=f"{base}/anthropic",
                  models=snippet_models(g.org), key=KEY_PLACEHOLDER, requests_url=request_log_url())
