"""The chat's model picker: the models the organization's enabled provider
credentials allow (the gateway's own list, vault.allowed_models), grouped by
provider, each with the catalog's input and output price per million tokens
and its context window when the catalog knows them."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costguardian import clock
from costguardian.services.gateway import providers, vault
from costguardian.services.usage import catalog, pricing


@dataclass(frozen=True)
class ModelChoice:
    provider: str  # the vault's provider key
    model: str
    input_per_mtok: Decimal | None  # USD per million tokens (the catalog's; None: unknown or tiered)
    output_per_mtok: Decimal | None
    context_window: int | None

    @property
    def id(self) -> str:
        """What the chat sends as `model`: the gateway routes `provider/model` to that provider."""
        return f"{self.provider}/{self.model}"

    @property
    def price_text(self) -> str:
        if self.input_per_mtok is None and self.output_per_mtok is None:
            return "price unknown"
        return f"in {_usd(self.input_per_mtok)} · out {_usd(self.output_per_mtok)} /1M"


@dataclass(frozen=True)
class ProviderGroup:
    provider: str
    label: str
    models: list[ModelChoice]


def _usd(value: Decimal | None) -> str:
    if value is None:
        return "?"
    return f"${value.normalize():f}" if value == value.to_integral() or value >= 1 else f"${value:.4g}"


def _flat(price) -> Decimal | None:
    """A flat price; a tiered one (long-context prices) by its base tier."""
    if price is None or isinstance(price, Decimal):
        return price
    return getattr(price, "base", None)


def model_info(provider: str, model: str):
    """The catalog's entry for a vault provider's model, or None."""
    name = catalog.normalize_provider(provider)
    return catalog.model_info(name, catalog.resolve_model(name, model)[0])


def choice(provider: str, model: str) -> ModelChoice:
    info = model_info(provider, model)
    name = catalog.normalize_provider(provider)
    rates = pricing.catalog_rates(name, catalog.resolve_model(name, model)[0], clock.now()) if info else None
    return ModelChoice(provider, model, _flat(rates.input) if rates else None,
                       _flat(rates.output) if rates else None, getattr(info, "context_window", None))


def groups(org) -> list[ProviderGroup]:
    by_provider: dict[str, list[ModelChoice]] = {}
    for allowed in vault.allowed_models(org):
        by_provider.setdefault(allowed.provider, []).append(choice(allowed.provider, allowed.model))
    return [ProviderGroup(p, _label(p), models) for p, models in by_provider.items()]


def allowed_ids(org) -> set[str]:
    return {f"{m.provider}/{m.model}" for m in vault.allowed_models(org)}


def _label(provider: str) -> str:
    found = providers.get(provider)
    return found.label if found is not None else provider
