"""The gateway and its OpenAPI document (costguardian/openapi_gateway.py)
agree: schemathesis generates requests for every gateway operation and sends
them in-process, with a real gateway key, through the organization's OpenAI
and Anthropic keys to the fake upstream (tests/fakes/llm_upstream.py); every
answer is checked against the document (status codes, content types,
headers, bodies and streamed events, no server errors, the key being
needed). Bounded and reproducible like tests/test_openapi_contract.py: a
fixed number of examples per operation, derandomized.

Two runs. Valid requests use the whole document. Invalid ones use the
document without the fields marked `x-checked-by: provider`: the gateway
forwards those as sent and the provider refuses a wrong value (the fake
upstream is more lenient than the providers, so refusing them is not the
gateway's promise); what stays is what the gateway itself refuses (the body,
`model`, `stream`, the X-CG-* headers, the key)."""
from __future__ import annotations

import copy
import gc
import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from costguardian.db import connected
from costguardian.extensions import db
from costguardian.models import GatewayRequest, UsageEvent
from costguardian.openapi_gateway import spec
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.budgets import budgets
from costguardian.services.gateway import routing, vault
from costguardian.services.team import departments
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.support import SYSTEM, make_org, make_user


def gateway_checked(document: dict) -> dict:
    """The document without the request fields the provider checks."""
    document = copy.deepcopy(document)
    for schema in document["components"]["schemas"].values():
        provider_checked = {name for name, field in (schema.get("properties") or {}).items()
                            if field.get("x-checked-by") == "provider"}
        if provider_checked and "required" in schema:
            schema["properties"] = {n: f for n, f in schema["properties"].items() if n not in provider_checked}
            schema["required"] = [n for n in schema["required"] if n not in provider_checked]
    return document


# The key is always sent (as a bearer token); schemathesis's ignored_auth check
# then sends each call again without it and with a wrong one in each place the
# document names (Authorization, x-api-key), which must answer 401.
valid = schemathesis.openapi.from_dict(spec())
valid.config.generation.update(modes=[GenerationMode.POSITIVE], with_security_parameters=False)
# Invalid requests of the POST operations (the GET ones take no body, and a model id is any text).
invalid = schemathesis.openapi.from_dict(gateway_checked(spec()))
invalid.config.generation.update(modes=[GenerationMode.NEGATIVE], with_security_parameters=False)

RUN = settings(max_examples=20, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.filter_too_much, HealthCheck.data_too_large])


class Run:
    """What the checks below need to know of the test that runs them."""
    app = org = upstream = None
    forwarded_before = 0  # the requests the fake upstream had received before this call


RUN_STATE = Run()


@pytest.fixture
def gateway_key(app, llm_upstream, monkeypatch):
    """A gateway key of an organization with OpenAI and Anthropic keys in
    its vault (the fake upstream's), a department for X-CG-Department, and a
    hard budget with room for every call, so admission runs for real."""
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    with app.app_context(), connected(db):
        owner = make_user("olga@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=owner)
        actor = Actor(user=owner)
        vault.add(org, actor, "openai", "Production", OPENAI_KEY)
        vault.add(org, actor, "anthropic", "Production", ANTHROPIC_KEY)
        departments.create(org, SYSTEM, "Research", "R-1")
        budgets.create(org, SYSTEM, {"name": "Org", "amount_usd": "1000000000", "enforcement": "hard"})
        keys._last_written.clear()
        key = keys.create_key(org, actor, "contract", ["gateway"]).plaintext
    RUN_STATE.app, RUN_STATE.org, RUN_STATE.upstream = app, org, llm_upstream
    yield key
    RUN_STATE.app = RUN_STATE.org = RUN_STATE.upstream = None
    # Every call that reached the provider was recorded once, as one usage event. (An answer the test
    # client did not close is finished when it is freed, as under a server whose caller went away.)
    gc.collect()
    forwarded = sum(r.method == "POST" and r.path in RECORDED_UPSTREAM_PATHS for r in llm_upstream.requests)
    with app.app_context(), connected(db):
        logged = GatewayRequest.in_org(org).where(GatewayRequest.forwarded == True).count()
        assert (logged, UsageEvent.in_org(org).count()) == (forwarded, forwarded)


RECORDED_UPSTREAM_PATHS = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"}


# Refusals the document states in words because they depend on what is stored
# (the vault's models, the organization's departments) or on which provider
# serves the model: schema-valid data may get them. A 400 to a call that is
# translated to the other provider's format (a parameter it has no place for)
# stands in for that provider's own refusal. A 4xx after the call was
# forwarded is the provider's, which checks more than the document does. Any
# other 4xx of the gateway's own to schema-valid data fails the check.
STATE_RULES = {
    404: r"^(The model .* does not exist or you do not have access to it|model: )",
    400: r"^(X-CG-(User|Department|Tags)\b|The model `.*` is served by .* whose API has no equivalent|count_tokens "
         r"counts with Anthropic's tokenizer)",
}
ENDPOINT_OF = {"/v1/chat/completions": "chat.completions", "/v1/completions": "completions",
               "/v1/embeddings": "embeddings", "/v1/responses": "responses", "/anthropic/v1/messages": "messages",
               "/anthropic/v1/messages/count_tokens": "messages.count_tokens"}


def _message(response) -> str:
    body = json.loads(response.content or b"null")
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message") or "") if isinstance(error, dict) else ""


def _translated(case) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    with RUN_STATE.app.app_context(), connected(db):
        try:
            route = routing.resolve(RUN_STATE.org, routing.ENDPOINTS[ENDPOINT_OF[case.path]], body.get("model"))
        except routing.RouteError:
            return False
    return route.translation is not None


def _documented_refusal(case, response) -> bool:
    if not 400 <= response.status_code < 500:
        return False
    if len(RUN_STATE.upstream.requests) > RUN_STATE.forwarded_before:  # the provider's own refusal
        return True
    if response.status_code == 400 and case.path in ENDPOINT_OF and _translated(case):
        return True
    rule = STATE_RULES.get(response.status_code)
    return bool(rule and re.search(rule, _message(response)))


def positive_data_acceptance_but_documented_rules(ctx, response, case):
    if _documented_refusal(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


def _send(case, app, key, **checks):
    # Requests schemathesis sends on its own (the same call without the key, or
    # with a wrong one) go to the app in-process too.
    case.operation.schema.app = app
    RUN_STATE.forwarded_before = len(RUN_STATE.upstream.requests)
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {key}"}, **checks)


@valid.parametrize()
@RUN
def test_valid_requests_get_what_the_document_says(case, app, gateway_key):
    _send(case, app, gateway_key, excluded_checks=[positive_data_acceptance],
          additional_checks=[positive_data_acceptance_but_documented_rules])


@invalid.include(method="POST").parametrize()
@RUN
def test_invalid_requests_are_refused_as_the_document_says(case, app, gateway_key):
    # The valid requests of this run lack the provider's fields (see above): the run above checks those.
    _send(case, app, gateway_key, excluded_checks=[positive_data_acceptance])


def test_the_served_document_is_the_one_tested(app):
    served = app.test_client().get("/api/gateway-openapi.json")
    assert served.status_code == 200 and json.loads(served.data) == spec()


def test_every_gateway_route_is_in_the_document(app):
    documented = {(path, method) for path, item in spec()["paths"].items() for method in item}
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint.startswith("gateway.")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes and routes == documented


def test_the_invalid_run_keeps_what_the_gateway_checks():
    schemas = gateway_checked(spec())["components"]["schemas"]
    assert set(schemas["ChatCompletionRequest"]["properties"]) == {"model", "stream"}
    assert schemas["MessageRequest"]["required"] == ["model"]


# --- each defect the runs found, as a plain test ---------------------------------------------

def test_a_stream_flag_that_is_not_a_boolean_is_refused_before_forwarding(app, gateway_key, llm_upstream):
    """`stream: 1` was forwarded; the fake (like lenient OpenAI-compatible
    servers) streamed it while the gateway waited for one JSON answer: 502."""
    client = app.test_client()
    auth = {"Authorization": f"Bearer {gateway_key}"}
    hello = [{"role": "user", "content": "hi"}]
    for path, body in (("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": hello}),
                       ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "hi"}),
                       ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"})):
        for flag in (1, "true", -1.5, {}):
            answer = client.post(path, json={**body, "stream": flag}, headers=auth)
            assert answer.status_code == 400, (path, flag, answer.data)
            assert answer.json["error"]["code"] == "invalid_type" and answer.json["error"]["param"] == "stream"
    anthropic = client.post("/anthropic/v1/messages", headers=auth, json={
        "model": "claude-sonnet-4-5", "max_tokens": 5, "messages": hello, "stream": "yes"})
    assert anthropic.status_code == 400 and anthropic.json["type"] == "error"
    assert anthropic.json["error"]["type"] == "invalid_request_error" and "stream" in anthropic.json["error"]["message"]
    assert not [r for r in llm_upstream.requests if r.method == "POST"]  # nothing reached the provider
    for flag in (None, False):  # as the providers take them: not streamed
        answer = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": hello,
                                                           "stream": flag}, headers=auth)
        assert answer.status_code == 200 and answer.json["object"] == "chat.completion"


def test_a_model_name_that_cannot_be_stored_is_refused_before_forwarding(app, gateway_key, llm_upstream):
    """A NUL in `model` was forwarded and answered, then the call could not be
    recorded (no usage event for a call the provider billed)."""
    client = app.test_client()
    auth = {"Authorization": f"Bearer {gateway_key}"}
    hello = [{"role": "user", "content": "hi"}]
    for model in ("gpt-4o-mini\x00", "gpt\ud800"):
        answer = client.post("/v1/chat/completions", json={"model": model, "messages": hello}, headers=auth)
        assert answer.status_code == 400, answer.data
        assert answer.json["error"]["code"] == "invalid_value" and answer.json["error"]["param"] == "model"
        answer.close()  # the call is recorded when its answer is finished
    anthropic = client.post("/anthropic/v1/messages", headers=auth, json={
        "model": "claude\x00", "max_tokens": 5, "messages": hello})
    assert anthropic.status_code == 400 and anthropic.json["type"] == "error"
    anthropic.close()
    assert not [r for r in llm_upstream.requests if r.method == "POST"]  # nothing reached the provider
    with app.app_context(), connected(db):
        refused = list(GatewayRequest.select().where(GatewayRequest.status_code == 400))
    assert len(refused) == 3 and all("\x00" not in r.model for r in refused)
