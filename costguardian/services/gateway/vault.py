"""The vault: an organization's keys for AI providers.

Rules (docs/ARCHITECTURE.md, "The provider vault"):
- A secret is stored only encrypted (crypto.py, CG_ENCRYPTION_KEYS) and
  shown only as its last four characters; it never reaches a page, an audit
  row or a log.
- A key is saved only after the provider accepted it (its models list,
  services.gateway.upstream); a refusal saves nothing. Replacing a key, or
  changing a base URL, endpoint or api-version, checks again.
- Several credentials per provider; at most one is the provider's default
  (the first one added is; choosing another moves the mark in one
  transaction, under the organization's lock, and a unique index holds it).
  Deleting the default passes the mark to the oldest remaining credential.
- An optional model allow-list per credential (empty: every model), checked
  against the models the provider listed.
- `credential_for(org, provider, model)` is what the gateway asks: the
  enabled credentials of that provider whose allow-list admits the model,
  the default first, then the oldest.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app
from peewee import fn

from costguardian import clock, crypto, settings_cache
from costguardian.prepared import Prepared
from costguardian.db import locked
from costguardian.models import ProviderCredential, User
from costguardian.services.actor import Actor
from costguardian.services.errors import NotFound, ValidationError
from costguardian.services.gateway import fields, providers, upstream
from costguardian.services.gateway.providers import Provider
from costguardian.services.team import audit


@dataclass(frozen=True)
class ResolvedCredential:
    """A credential ready for a call: the decrypted secret and where to send it."""

    id: int
    provider: Provider
    label: str
    secret: str
    base_url: str  # resolved (the credential's own, the operator's override or the default)
    api_version: str = ""
    deployment: str = ""  # Azure: the deployment that serves the model asked for
    deployments: dict = field(default_factory=dict)
    allowed_models: tuple[str, ...] = ()

    def headers(self) -> dict[str, str]:
        """The headers that carry the key in the provider's own style."""
        return upstream.auth_headers(upstream.Connection(self.provider, self.secret, self.base_url,
                                                         self.api_version))


@dataclass(frozen=True)
class AllowedModel:
    provider: str
    model: str


# --- reading ----------------------------------------------------------------------

def credentials_of(org) -> list[ProviderCredential]:
    """The organization's credentials: providers in catalogue order, each
    provider's default first, then by label."""
    order = {key: i for i, key in enumerate(providers.PROVIDERS)}
    rows = list(ProviderCredential.in_org(org))
    ids = {c.created_by_id for c in rows} | {c.updated_by_id for c in rows}
    people = {u.id: u for u in User.select().where(User.id.in_([i for i in ids if i]))} if rows else {}
    for credential in rows:  # who added and who last changed it, in one query for the page
        credential.creator, credential.updater = people.get(credential.created_by_id), people.get(credential.updated_by_id)
    return sorted(rows, key=lambda c: (order.get(c.provider, len(order)), not c.is_default, c.label.lower(), c.id))


def get(org, credential_id) -> ProviderCredential | None:
    return ProviderCredential.get_in_org(org, credential_id)


def provider_of(credential: ProviderCredential) -> Provider:
    return providers.get(credential.provider) or providers.PROVIDERS["openai_compatible"]


# Read on every gateway call: the SQL is built once (costguardian.prepared).
_ENABLED_FOR_PROVIDER = Prepared(
    lambda org_id, provider, enabled: ProviderCredential.select()
    .where(ProviderCredential.organization == org_id, ProviderCredential.provider == provider,
           ProviderCredential.is_enabled == enabled)
    .order_by(ProviderCredential.default_for.is_null(), ProviderCredential.id))


def credential_for(org, provider: str, model: str | None = None) -> ResolvedCredential | None:
    """The credential a call to `provider` (for `model`) should use, or None:
    enabled, its allow-list admitting the model (and for Azure, a deployment
    serving it), the provider's default first, then the oldest. Kept per
    process while the organization's settings do not change (settings_cache)."""
    catalogue_entry = providers.get(provider)
    if catalogue_entry is None:
        return None
    # (the operator's base URLs are part of what is resolved: CG_PROVIDER_BASE_URLS)
    key = (provider, model, str(current_app.config.get("CG_PROVIDER_BASE_URLS") or ""))
    return settings_cache.cached("credential", org.id, key,
                                 lambda: _credential_for(org, provider, catalogue_entry, model))


def _credential_for(org, provider: str, catalogue_entry: Provider, model: str | None) -> ResolvedCredential | None:
    for credential in _ENABLED_FOR_PROVIDER.execute(org.id, provider, True):
        deployment = ""
        if model is not None:
            if not fields.allowed(credential.allowed_model_list, model):
                continue
            if catalogue_entry.is_azure:
                deployment = _deployment_for(credential.deployment_map, model)
                if not deployment:
                    continue
        return _resolved(credential, catalogue_entry, deployment)
    return None


def _deployment_for(mapping: dict[str, str], model: str) -> str:
    """The deployment named `model`, else the first one that runs it."""
    if model in mapping:
        return model
    return next((name for name, runs in mapping.items() if runs.lower() == model.lower()), "")


def _resolved(credential: ProviderCredential, provider: Provider, deployment: str = "") -> ResolvedCredential:
    return ResolvedCredential(
        id=credential.id, provider=provider, label=credential.label, secret=crypto.decrypt(credential.secret_encrypted),
        base_url=providers.base_url_for(provider, credential.base_url), api_version=credential.api_version,
        deployment=deployment, deployments=credential.deployment_map,
        allowed_models=tuple(credential.allowed_model_list))


def allowed_models(org) -> list[AllowedModel]:
    """Every (provider, model) the organization's enabled credentials allow:
    an allow-list's names (its `prefix*` entries expanded over the models the
    provider listed), else everything the provider listed; for Azure, the
    models its deployments run. Sorted, each pair once."""
    pairs: set[tuple[str, str]] = set()
    for credential in ProviderCredential.in_org(org).where(ProviderCredential.is_enabled == True):  # noqa: E712
        provider = provider_of(credential)
        if provider.is_azure:
            offered = sorted(set(credential.deployment_map.values()))
        else:
            offered = credential.available_model_list
        allow_list = credential.allowed_model_list
        if not allow_list:
            chosen = offered
        else:
            chosen = [m for m in offered if fields.allowed(allow_list, m)]
            chosen += [p for p in allow_list if not p.endswith("*")]
        pairs.update((credential.provider, m) for m in chosen)
    return [AllowedModel(p, m) for p, m in sorted(pairs, key=lambda pair: (pair[0], pair[1].lower()))]


# --- checking with the provider ----------------------------------------------------

def check(provider: Provider, secret: str, base_url: str = "", api_version: str = "") -> list[str]:
    """The models the provider lists for this key; ValidationError (on the
    field concerned) when it refuses or cannot be reached."""
    try:
        return upstream.list_models(upstream.connection(provider, secret, base_url, api_version))
    except upstream.ProviderCheckFailed as exc:
        raise ValidationError({exc.field: exc.message}) from None


def _offered_for_allow_list(provider: Provider, available: list[str], deployments: dict[str, str]) -> list[str]:
    if provider.is_azure:
        return sorted(set(deployments.values()) | set(deployments))
    return available


# --- changing ---------------------------------------------------------------------

def add(org, actor: Actor, provider: str, label: str, secret: str, *, base_url: str = "", api_version: str = "",
        deployments: str = "", allowed_models: str = "", make_default: bool = False,
        enabled: bool = True) -> ProviderCredential:
    """Check the key with the provider and store it; nothing is stored when
    any field is wrong or the provider refuses."""
    entry = providers.get(provider)
    if entry is None:
        raise ValidationError({"provider": "Choose a provider from the list."})
    errors: dict[str, str] = {}
    clean = _fields(entry, errors, label=label or "", secret=secret or "", base_url=base_url or "",
                    api_version=api_version or "", deployments=deployments or "", allowed_models=allowed_models or "")
    if "label" not in errors:
        _check_label_free(org, entry, clean["label"], errors)
    if errors:
        raise ValidationError(errors)
    available = check(entry, clean["secret"], clean["base_url"], clean["api_version"])
    allow_list = _checked_allow_list(entry, clean["allowed_models"], available, clean["deployments"])
    now = clock.now()
    with locked(org):
        has_default = (ProviderCredential.in_org(org)
                       .where(ProviderCredential.default_for == entry.key).exists())
        credential = ProviderCredential.create(
            organization=org, provider=entry.key, label=clean["label"],
            secret_encrypted=crypto.encrypt(clean["secret"]), secret_last4=fields.last4(clean["secret"]),
            base_url=clean["base_url"], api_version=clean["api_version"],
            deployments=json.dumps(clean["deployments"]), allowed_models="\n".join(allow_list),
            available_models="\n".join(available), is_enabled=bool(enabled), checked_at=now,
            created_by=actor.user, updated_by=actor.user, created_at=now, updated_at=now)
        if make_default or not has_default:
            _move_default(credential)
    audit.record(actor, "provider_credential.created", org=org, target=credential, **_described(credential))
    return credential


def update(credential: ProviderCredential, actor: Actor, *, label: str, allowed_models: str,
           deployments: str | None = None, make_default: bool = False, enabled: bool = True) -> ProviderCredential:
    """Change what does not need the key: label, allow-list, Azure
    deployments, default, enabled. The secret is neither needed nor shown."""
    entry = provider_of(credential)
    errors: dict[str, str] = {}
    clean = _fields(entry, errors, label=label or "", allowed_models=allowed_models or "",
                    deployments=(deployments or "") if entry.is_azure else None)
    if "label" not in errors:
        _check_label_free(credential.organization_id, entry, clean["label"], errors, exclude=credential.id)
    if errors:
        raise ValidationError(errors)
    mapping = clean["deployments"] if entry.is_azure else credential.deployment_map
    credential.default_for = _stored_default(credential)  # another request may have moved it
    allow_list = _checked_allow_list(entry, clean["allowed_models"], credential.available_model_list, mapping)
    before = {**_described(credential), "deployments": credential.deployment_map}
    credential.label, credential.allowed_models = clean["label"], "\n".join(allow_list)
    credential.deployments = json.dumps(mapping)
    credential.is_enabled = bool(enabled)
    credential.updated_by, credential.updated_at = actor.user, clock.now()
    with locked(credential.organization):
        credential.save(only=[ProviderCredential.label, ProviderCredential.allowed_models,
                              ProviderCredential.deployments, ProviderCredential.is_enabled,
                              ProviderCredential.updated_by, ProviderCredential.updated_at])
        if make_default:
            _move_default(credential)
    _record_changes(actor, credential, before)
    return credential


def replace_secret(credential: ProviderCredential, actor: Actor, secret: str, *, base_url: str | None = None,
                   api_version: str | None = None) -> ProviderCredential:
    """A new key (or, with `secret` empty, the stored one) and, for custom
    providers, a new base URL or api-version, checked with the provider
    before anything is stored."""
    entry = provider_of(credential)
    keep = not (secret or "").strip()
    errors: dict[str, str] = {}
    clean = _fields(entry, errors, secret=None if keep else secret,
                    base_url=credential.base_url if base_url is None else base_url,
                    api_version=credential.api_version if api_version is None else api_version)
    if keep and _origin(clean["base_url"]) != _origin(credential.base_url):
        # The stored key goes only where it was entered for: sending it to a new
        # address would let anyone who may edit the credential collect it there.
        errors["secret"] = "Paste the key again to use it at a new address."
    if errors:
        raise ValidationError(errors)
    new_secret = crypto.decrypt(credential.secret_encrypted) if keep else clean["secret"]
    available = check(entry, new_secret, clean["base_url"], clean["api_version"])
    changed = [name for name, old, new in (("base_url", credential.base_url, clean["base_url"]),
                                           ("api_version", credential.api_version, clean["api_version"]))
               if old != new]
    if not keep:
        changed.insert(0, "secret")
        credential.secret_encrypted = crypto.encrypt(new_secret)
        credential.secret_last4 = fields.last4(new_secret)
    credential.base_url, credential.api_version = clean["base_url"], clean["api_version"]
    credential.available_models = "\n".join(available)
    now = clock.now()
    credential.checked_at = credential.updated_at = now
    credential.updated_by = actor.user
    # Never default_for (it may have moved since), and the stored token only when
    # the key is new: a rotation that ran during the check must not be undone.
    columns = [ProviderCredential.base_url, ProviderCredential.api_version, ProviderCredential.available_models,
               ProviderCredential.checked_at, ProviderCredential.updated_at, ProviderCredential.updated_by]
    if not keep:
        columns += [ProviderCredential.secret_encrypted, ProviderCredential.secret_last4]
    credential.save(only=columns)
    if changed:
        audit.record(actor, "provider_credential.secret_replaced", org=credential.organization_id, target=credential,
                     changed=changed, **_described(credential))
    else:
        audit.record(actor, "provider_credential.checked", org=credential.organization_id, target=credential,
                     **_described(credential))
    return credential


def make_default(credential: ProviderCredential, actor: Actor) -> ProviderCredential:
    with locked(credential.organization):
        credential.default_for = _stored_default(credential)
        if credential.is_default:
            return credential
        _move_default(credential)
        _touch(credential, actor)

    audit.record(actor, "provider_credential.default_set", org=credential.organization_id, target=credential,
                 **_described(credential))
    return credential


def set_enabled(credential: ProviderCredential, actor: Actor, enabled: bool) -> ProviderCredential:
    if credential.is_enabled == bool(enabled):
        return credential
    credential.is_enabled = bool(enabled)
    _touch(credential, actor, ProviderCredential.is_enabled)
    if enabled:
        audit.record(actor, "provider_credential.enabled", org=credential.organization_id, target=credential,
                     **_described(credential))
    else:
        audit.record(actor, "provider_credential.disabled", org=credential.organization_id, target=credential,
                     **_described(credential))
    return credential


def delete(credential: ProviderCredential, actor: Actor) -> ProviderCredential | None:
    """Delete the credential; when it was the default, the oldest remaining
    credential of the provider (enabled ones first) becomes the default,
    and is returned."""
    successor = None
    with locked(credential.organization):
        was_default = _stored_default(credential) is not None
        ProviderCredential.delete().where(ProviderCredential.id == credential.id).execute()
        if was_default:
            successor = (ProviderCredential.in_org(credential.organization_id)
                         .where(ProviderCredential.provider == credential.provider)
                         .order_by(ProviderCredential.is_enabled.desc(), ProviderCredential.id).first())
            if successor is not None:
                _move_default(successor)
    audit.record(actor, "provider_credential.deleted", org=credential.organization_id, target=credential,
                 **_described(credential), new_default=successor.label if successor else None)
    return successor


# --- helpers ----------------------------------------------------------------------

def _fields(entry: Provider, errors: dict, **given) -> dict:
    """Clean each given field (None: not given); messages go to `errors`."""
    cleaners = {
        "label": lambda v: fields.label(v, entry),
        "secret": lambda v: fields.secret(v, entry),
        "base_url": lambda v: fields.base_url(v, entry) if entry.custom_base_url else "",
        "api_version": lambda v: fields.api_version(v, providers.AZURE_DEFAULT_API_VERSION) if entry.is_azure else "",
        "deployments": lambda v: fields.deployments(v) if entry.is_azure else {},
        "allowed_models": fields.model_list,
    }
    clean = {}
    for name, value in given.items():
        if value is None:
            continue
        try:
            clean[name] = cleaners[name](value)
        except ValueError as exc:
            errors[name] = str(exc)
    return clean


def _check_label_free(org, entry: Provider, label: str, errors: dict, exclude: int | None = None) -> None:
    query = ProviderCredential.in_org(org).where(ProviderCredential.provider == entry.key,
                                                 fn.LOWER(ProviderCredential.label) == label.lower())
    if exclude is not None:
        query = query.where(ProviderCredential.id != exclude)
    if query.exists():
        errors["label"] = f"Another {entry.label} key is already called “{label}”; give this one its own name."


def _checked_allow_list(entry: Provider, allow_list: list[str], available: list[str],
                        deployments: dict[str, str]) -> list[str]:
    offered = _offered_for_allow_list(entry, available, deployments)
    try:
        return fields.check_against(allow_list, offered, "The deployments" if entry.is_azure else entry.label)
    except ValueError as exc:
        raise ValidationError({"allowed_models": str(exc).replace("The deployments does not list",
                                                                  "No deployment runs")}) from None


def _stored_default(credential: ProviderCredential) -> str | None:
    return (ProviderCredential.select(ProviderCredential.default_for)
            .where(ProviderCredential.id == credential.id).scalar())


def _move_default(credential: ProviderCredential) -> None:
    """Inside the caller's lock: this credential becomes its provider's only
    default. A credential deleted meanwhile is NotFound, and the provider
    keeps the default it had."""
    if not ProviderCredential.select().where(ProviderCredential.id == credential.id).exists():
        raise NotFound("This key was deleted meanwhile.")
    (ProviderCredential.update(default_for=None)
     .where(ProviderCredential.organization == credential.organization_id,
            ProviderCredential.default_for == credential.provider, ProviderCredential.id != credential.id)
     .execute())
    ProviderCredential.update(default_for=credential.provider).where(ProviderCredential.id == credential.id).execute()
    credential.default_for = credential.provider


def _touch(credential: ProviderCredential, actor: Actor, *also) -> None:
    credential.updated_by, credential.updated_at = actor.user, clock.now()
    credential.save(only=[ProviderCredential.updated_by, ProviderCredential.updated_at, *also])


def _described(credential: ProviderCredential) -> dict:
    """What the audit log keeps of a credential: never the secret."""
    return {"provider": credential.provider, "label": credential.label, "last4": credential.secret_last4,
            "base_url": _origin(credential.base_url), "default": credential.is_default,
            "enabled": credential.is_enabled, "allowed_models": credential.allowed_model_list[:50]}


def _origin(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" + ("/…" if parts.path.strip("/") else "")


def _record_changes(actor: Actor, credential: ProviderCredential, before: dict) -> None:
    after = {**_described(credential), "deployments": credential.deployment_map}
    changes = {k: [_shown(before[k]), _shown(after[k])] for k in ("label", "default", "enabled", "allowed_models")
               if before[k] != after[k]}
    if before["deployments"] != after["deployments"]:  # deployment names only
        changes["deployments"] = [_shown(sorted(before["deployments"])), _shown(sorted(after["deployments"]))]
    if not changes:
        return
    audit.record(actor, "provider_credential.updated", org=credential.organization_id, target=credential,
                 changes=changes, **_described(credential))


def _shown(value) -> str:
    """A value as the activity feed says it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "all"
    return str(value)

