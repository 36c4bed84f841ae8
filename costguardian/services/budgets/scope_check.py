"""A budget that can never fire is caught: the provider and model of a
budget's scope are offered from the price catalog and the organization's
recorded usage (and its own prices and aliases); a value that matches none of
them is refused with a suggestion ("opnai — did you mean openai?") unless the
person confirms it, and a budget whose scope matched no usage in the last 90
days says so on its page and in the list.

The form and the JSON API ask `unknown_scope` before a change; services and
tasks that create budgets from known values (onboarding, the demo) do not."""
from __future__ import annotations

import difflib
from datetime import timedelta

from genai_prices.data_snapshot import get_snapshot

from costguardian import clock
from costguardian.models import Budget, ModelAlias, Organization, PriceOverride, UsageDimension
from costguardian.services.usage import catalog

QUIET_DAYS = 90
MAX_MODEL_CHOICES = 400


def _usage_values(org: Organization, dimension: str, since=None) -> list[str]:
    query = UsageDimension.select(UsageDimension.value).where(UsageDimension.organization == org,
                                                              UsageDimension.dimension == dimension)
    if since is not None:
        query = query.where(UsageDimension.last_hour >= since)
    return [value for value, in query.tuples()]


def _own_values(org: Organization, column_of) -> list[str]:
    """Providers or models the organization priced or aliased itself."""
    values = []
    for model in (PriceOverride, ModelAlias):
        column = column_of(model)
        values += [v for v, in model.select(column).where(model.organization == org).distinct().tuples()]
    return values


def provider_choices(org: Organization) -> list[str]:
    """Every provider a budget can name: the catalog's and the organization's own."""
    return sorted(set(catalog.known_providers()) | set(_usage_values(org, "provider"))
                  | set(_own_values(org, lambda m: m.provider)))


def model_choices(org: Organization, provider: str | None = None) -> list[str]:
    """Models for the picker: the organization's (usage, prices, aliases)
    first, then the catalog's models of the provider when one is chosen."""
    own = set(_usage_values(org, "model")) | set(_own_values(org, lambda m: m.model))
    catalog_models: set[str] = set()
    if provider:
        found = next((p for p in get_snapshot().providers if p.id == provider), None)
        catalog_models = {m.id for m in found.models} if found else set()
    return sorted(own) + sorted(catalog_models - own)[:MAX_MODEL_CHOICES]


def _model_in_catalog(provider: str | None, model: str) -> bool:
    if provider:
        return catalog.model_info(provider, model) is not None
    try:
        get_snapshot().find_provider_model(model, None, None, None)
    except LookupError:
        return False
    return True


def _suggest(value: str, candidates) -> str | None:
    match = difflib.get_close_matches(value.lower(), list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_scope(org: Organization, fields: dict, existing: Budget | None = None,
                  confirm_hint: str = "Tick “Use it anyway” to keep it.") -> dict[str, str]:
    """{field: message} for a scope provider or model (as `budgets.parse`
    cleaned them) that matches neither the price catalog nor anything the
    organization recorded, priced or aliased; a value the budget already had
    is not asked about again."""
    errors = {}
    provider, model = fields.get("scope_provider"), fields.get("scope_model")
    if provider and not (existing is not None and existing.scope_provider == provider):
        choices = provider_choices(org)
        if provider not in choices:
            suggestion = _suggest(provider, choices)
            errors["provider"] = (f"“{provider}” matches no provider in the price catalog or in this organization’s "
                                  "usage" + (f" — did you mean {suggestion}?" if suggestion else ".")
                                  + f" {confirm_hint}")
    if model and not (existing is not None and existing.scope_model == model
                      and existing.scope_provider == provider):
        own = set(_usage_values(org, "model")) | set(_own_values(org, lambda m: m.model))
        if model not in own and not _model_in_catalog(provider if "provider" not in errors else None, model):
            suggestion = _suggest(model, model_choices(org, provider))
            errors["model"] = (f"“{model}” matches no model in the price catalog or in this organization’s usage"
                               + (f" — did you mean {suggestion}?" if suggestion else ".") + f" {confirm_hint}")
    return errors


def confirmed(data) -> bool:
    """The explicit confirmation: the form's checkbox or the API's `confirm_scope: true`."""
    value = data.get("confirm_scope")
    return value is True or str(value or "").lower() in ("1", "true", "on", "yes")


def quiet_budgets(budgets: list[Budget], now=None) -> set[int]:
    """Ids of the budgets whose provider, model, user or tag carried no usage
    in the last 90 days (so they cannot have matched any): one query for
    all of them, from the small table of values ingest keeps."""
    scoped = [b for b in budgets if b.scope_provider or b.scope_model or b.scope_user or b.scope_tag]
    if not scoped:
        return set()
    since = (now or clock.now()) - timedelta(days=QUIET_DAYS)
    org_ids = {b.organization_id for b in scoped}
    seen = set(UsageDimension.select(UsageDimension.organization, UsageDimension.dimension, UsageDimension.value)
               .where(UsageDimension.organization.in_(sorted(org_ids)), UsageDimension.last_hour >= since)
               .tuples())
    quiet = set()
    for b in scoped:
        for dimension, value in (("provider", b.scope_provider), ("model", b.scope_model),
                                 ("user", b.scope_user), ("tag", b.scope_tag)):
            if value and (b.organization_id, dimension, value) not in seen:
                quiet.add(b.id)
                break
    return quiet
