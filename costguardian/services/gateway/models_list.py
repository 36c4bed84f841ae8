"""The models the gateway lists and retrieves: what the organization's enabled
credentials allow (vault.allowed_models), in each API's own shape.

    GET /v1/models               openai_models(org)
    GET /v1/models/{model}       openai_model(org, model)      (the id may hold a slash)
    GET /anthropic/v1/models     anthropic_models(org)
    GET /anthropic/v1/models/{id} anthropic_model(org, id)
"""
from __future__ import annotations

from costguardian.services.gateway import anthropic_wire, openai_wire, routing, vault


def openai_models(org) -> dict:
    """GET /v1/models: every `provider/model` the organization's enabled credentials allow."""
    return {"object": "list", "data": [{"id": f"{m.provider}/{m.model}", "object": "model", "created": 0,
                                        "owned_by": m.provider} for m in vault.allowed_models(org)]}


def anthropic_models(org) -> dict:
    """GET /anthropic/v1/models: the Anthropic models the credentials allow."""
    ids = [m.model for m in vault.allowed_models(org) if m.provider == "anthropic"]
    return {"data": [{"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"}
                     for m in ids],
            "has_more": False, "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}


def openai_model(org, model_id: str) -> tuple[int, dict]:
    """GET /v1/models/{model}: the model object when a credential allows it, else OpenAI's 404."""
    found = routing.allowed_model(org, model_id)
    if found is None:
        return 404, openai_wire.error_body(404, f"The model '{model_id}' does not exist or you do not have access "
                                                "to it.", code="model_not_found", param="model")
    return 200, {"id": model_id, "object": "model", "created": 0, "owned_by": found.provider}


def anthropic_model(org, model_id: str) -> tuple[int, dict]:
    """GET /anthropic/v1/models/{id}: Anthropic's model object, else its 404. Any model
    /anthropic/v1/messages serves (others' by `provider/model` too, translated)."""
    found = routing.allowed_model(org, model_id)
    if found is None:
        return 404, anthropic_wire.error_body(404, f"model: {model_id}")
    return 200, {"type": "model", "id": model_id, "display_name": found.model, "created_at": "1970-01-01T00:00:00Z"}
