"""The fake LLM upstream speaks the real wire formats: the official openai and
anthropic SDKs, unchanged, list models from it and read its refusals the way
they read the real services'."""
from __future__ import annotations

import anthropic
import openai
import pytest
import requests

from tests.fakes.llm_upstream import ANTHROPIC_KEY, AZURE_KEY, GEMINI_KEY, OPENAI_KEY


def test_the_openai_sdk_lists_models(llm_upstream):
    client = openai.OpenAI(base_url=llm_upstream.url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    models = client.models.list()
    ids = [m.id for m in models]
    assert ids == llm_upstream.models["openai"]
    assert all(m.object == "model" and m.owned_by and m.created for m in models)
    [seen] = llm_upstream.requests
    assert (seen.method, seen.path, seen.header("Authorization")) == ("GET", "/v1/models", f"Bearer {OPENAI_KEY}")


def test_the_openai_sdk_reads_a_wrong_key_as_authentication_error(llm_upstream):
    client = openai.OpenAI(base_url=llm_upstream.url + "/v1", api_key="sk-wrong-key-000000001234", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-******************1234." in caught.value.message  # masked, as OpenAI does


def test_the_anthropic_sdk_lists_models_across_pages(llm_upstream):
    llm_upstream.models["anthropic"] = [f"claude-fake-{i:02d}" for i in range(45)]
    client = anthropic.Anthropic(base_url=llm_upstream.url, api_key=ANTHROPIC_KEY, max_retries=0)
    ids = [m.id for m in client.models.list(limit=20)]  # auto-pagination: three pages
    assert ids == llm_upstream.models["anthropic"]
    assert [r.query.get("after_id") for r in llm_upstream.requests] == [None, "claude-fake-19", "claude-fake-39"]
    first = llm_upstream.requests[0]
    assert ANTHROPIC_KEY in (first.header("x-api-key"), first.header("Authorization").removeprefix("Bearer "))
    assert first.header("anthropic-version")
    model = client.models.list(limit=1).data[0]
    assert model.type == "model" and model.display_name and model.created_at.year == 2025


def test_the_anthropic_sdk_reads_a_wrong_key_as_authentication_error(llm_upstream):
    client = anthropic.Anthropic(base_url=llm_upstream.url, api_key="sk-ant-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.status_code == 401
    assert caught.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}


def test_async_sdks_work_too(llm_upstream):
    import asyncio
    import concurrent.futures

    async def both():
        oa = openai.AsyncOpenAI(base_url=llm_upstream.url + "/v1", api_key=OPENAI_KEY, max_retries=0)
        an = anthropic.AsyncAnthropic(base_url=llm_upstream.url, api_key=ANTHROPIC_KEY, max_retries=0)
        return [m.id async for m in oa.models.list()], [m.id async for m in an.models.list()]

    # In a thread of its own: the browser tests' sync Playwright leaves an event loop running on this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        openai_ids, anthropic_ids = pool.submit(asyncio.run, both()).result()
    assert openai_ids == llm_upstream.models["openai"] and anthropic_ids == llm_upstream.models["anthropic"]


def test_gemini_lists_models_by_page_and_refuses_a_bad_key_its_way(llm_upstream):
    url = llm_upstream.url + "/v1beta/models"
    first = requests.get(url, params={"pageSize": 3}, headers={"x-goog-api-key": GEMINI_KEY}, timeout=5).json()
    assert [m["name"] for m in first["models"]] == [f"models/{m}" for m in llm_upstream.models["gemini"][:3]]
    rest = requests.get(url, params={"pageSize": 3, "pageToken": first["nextPageToken"], "key": GEMINI_KEY},
                        timeout=5).json()
    assert "nextPageToken" not in rest and len(rest["models"]) == 1
    refused = requests.get(url, headers={"x-goog-api-key": "AIza-wrong"}, timeout=5)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["details"][0]["reason"] == "API_KEY_INVALID"
    assert requests.get(url, timeout=5).status_code == 403


def test_azure_needs_a_known_api_version_and_its_key(llm_upstream):
    url = llm_upstream.url + "/openai/models"
    ok = requests.get(url, params={"api-version": "2024-10-21"}, headers={"api-key": AZURE_KEY}, timeout=5)
    assert ok.status_code == 200 and ok.json()["data"][0]["status"] == "succeeded"
    assert requests.get(url, headers={"api-key": AZURE_KEY}, timeout=5).status_code == 404
    wrong = requests.get(url, params={"api-version": "2024-10-21"}, headers={"api-key": "nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "401"


def test_it_can_be_told_to_fail(llm_upstream):
    llm_upstream.fail_with = 503
    client = openai.OpenAI(base_url=llm_upstream.url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    client = anthropic.Anthropic(base_url=llm_upstream.url, api_key=ANTHROPIC_KEY, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.models.list()
    assert caught.value.body["type"] == "error"
