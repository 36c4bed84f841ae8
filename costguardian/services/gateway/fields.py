"""What an admin may type into a provider credential, and the model
allow-list's matching rule. Each function returns the clean value or raises
ValueError with the sentence the form shows."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from costguardian.services.gateway.providers import Provider

MAX_LABEL = 80
MAX_SECRET = 1000
MAX_URL = 2000
MAX_MODEL = 128
MAX_MODELS = 200
MIN_LENGTH_FOR_LAST4 = 8  # a shorter key would give away too much of itself

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*\*?$")


def label(value: str, provider: Provider) -> str:
    value = " ".join((value or "").split())
    if len(value) > MAX_LABEL:
        raise ValueError(f"Use at most {MAX_LABEL} characters.")
    return value or provider.label


def secret(value: str, provider: Provider) -> str:
    value = (value or "").strip()
    if not value:
        if provider.key_required:
            raise ValueError(f"Paste the {provider.label} API key.")
        return ""
    if len(value) > MAX_SECRET:
        raise ValueError(f"An API key has at most {MAX_SECRET} characters.")
    if any(c.isspace() for c in value) or not value.isprintable():
        raise ValueError("The key contains spaces or invisible characters; paste it again.")
    return value


def last4(value: str) -> str:
    return value[-4:] if len(value) >= MIN_LENGTH_FOR_LAST4 else ""


def base_url(value: str, provider: Provider) -> str:
    """An http(s) URL without credentials, query or fragment; no trailing slash."""
    value = (value or "").strip()
    what = "the Azure OpenAI endpoint" if provider.is_azure else "the server's base URL"
    example = "https://my-resource.openai.azure.com" if provider.is_azure else "http://gpu-box.internal:8000/v1"
    if not value:
        raise ValueError(f"Enter {what}, e.g. {example}.")
    if len(value) > MAX_URL:
        raise ValueError(f"Use at most {MAX_URL} characters.")
    if any(c.isspace() for c in value):
        raise ValueError("The URL may not contain spaces.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("This is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Use an http:// or https:// URL, e.g. {example}.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("Leave credentials out of the URL; the key goes in its own field.")
    if parts.query or parts.fragment:
        raise ValueError("Leave the query string out; Cost Guardian adds what each call needs.")
    value = value.rstrip("/")
    if provider.is_azure and value.endswith("/openai"):
        value = value[: -len("/openai")]  # the endpoint is the resource's root
    return value


def api_version(value: str, default: str) -> str:
    value = (value or "").strip() or default
    if not _API_VERSION.match(value):
        raise ValueError("Use an api-version like 2024-10-21 or 2025-01-01-preview.")
    return value


def deployments(text: str) -> dict[str, str]:
    """Lines of `deployment = model` (or `deployment: model`)."""
    mapping: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, model = line.partition("=") if "=" in line else line.partition(":")
        name, model = name.strip(), model.strip()
        if not sep or not name or not model:
            raise ValueError(f"Line {number}: write “deployment = model”, e.g. prod-4o = gpt-4o.")
        if not _DEPLOYMENT.match(name):
            raise ValueError(f"Line {number}: “{name}” is not a deployment name (letters, digits, . _ -).")
        if not _MODEL.match(model) or model.endswith("*") or len(model) > MAX_MODEL:
            raise ValueError(f"Line {number}: “{model}” is not a model name.")
        if name in mapping:
            raise ValueError(f"Line {number}: the deployment {name} is listed twice.")
        mapping[name] = model
    if not mapping:
        raise ValueError("Map at least one deployment to the model it runs, e.g. prod-4o = gpt-4o.")
    if len(mapping) > MAX_MODELS:
        raise ValueError(f"List at most {MAX_MODELS} deployments.")
    return mapping


def deployments_text(mapping: dict[str, str]) -> str:
    return "\n".join(f"{name} = {model}" for name, model in mapping.items())


def model_list(text: str) -> list[str]:
    """Model names separated by lines, commas or spaces; `*` only at the end
    (a prefix: `gpt-4o*` admits every gpt-4o version)."""
    seen: dict[str, str] = {}
    for item in re.split(r"[\s,]+", text or ""):
        if not item:
            continue
        if len(item) > MAX_MODEL or not _MODEL.match(item):
            raise ValueError(f"“{item[:MAX_MODEL]}” is not a model name (a * may only end one, as in gpt-4o*).")
        seen.setdefault(item.lower(), item)
    if len(seen) > MAX_MODELS:
        raise ValueError(f"List at most {MAX_MODELS} models.")
    return list(seen.values())


def admits(pattern: str, model: str) -> bool:
    """Does one allow-list entry admit the model? Case-insensitive; a final
    `*` matches any rest."""
    pattern, model = pattern.lower(), model.lower()
    if pattern.endswith("*"):
        return model.startswith(pattern[:-1])
    return model == pattern


def allowed(allow_list: list[str], model: str) -> bool:
    """An empty allow-list admits every model."""
    return not allow_list or any(admits(p, model) for p in allow_list)


def check_against(allow_list: list[str], available: list[str], provider_label: str) -> list[str]:
    """The allow-list with each exact name in the provider's own spelling;
    ValueError naming the entries the provider does not list. Skipped (the
    list returned as is) when the provider listed nothing."""
    if not available:
        return allow_list
    by_lower = {m.lower(): m for m in available}
    unknown, cleaned = [], []
    for pattern in allow_list:
        if pattern.endswith("*"):
            if not any(admits(pattern, m) for m in available):
                unknown.append(pattern)
            cleaned.append(pattern)
        elif pattern.lower() in by_lower:
            cleaned.append(by_lower[pattern.lower()])
        else:
            unknown.append(pattern)
    if unknown:
        names = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ValueError(f"{provider_label} does not list {names} for this key.")
    return cleaned
