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


# --- the calls the gateway forwards -----------------------------------------------------

HELLO = [{"role": "user", "content": "Say hello."}]


def test_openai_chat_streams_real_sse_with_usage_the_way_openai_sends_it(llm_upstream):
    client = openai.OpenAI(base_url=llm_upstream.url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    llm_upstream.cache_read_tokens = 64
    whole = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert whole.usage.prompt_tokens_details.cached_tokens == 64 and whole.usage.prompt_tokens > 64
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(llm_upstream.reply.split())
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.usage is None for c in client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    llm_upstream.usage_on_last_choice = True
    last = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                               stream_options={"include_usage": True}))[-1]
    assert last.choices[0].finish_reason == "stop" and last.usage is not None
    with pytest.raises(openai.BadRequestError):  # as OpenAI: stream_options only with stream
        client.chat.completions.create(model="gpt-4o", messages=HELLO, stream_options={"include_usage": True})
    assert [u["input"] for u in llm_upstream.usage_log][:1] == [whole.usage.prompt_tokens]
    assert llm_upstream.requests[0].body["messages"] == HELLO


def test_embeddings_completions_and_responses(llm_upstream):
    client = openai.OpenAI(base_url=llm_upstream.url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    assert len(client.embeddings.create(model="text-embedding-3-small", input="hi").data[0].embedding) == 8
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a"], encoding_format="float")
    assert isinstance(floats.data[0].embedding[0], float)
    assert client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", max_tokens=2).usage \
        .completion_tokens == 2
    with client.responses.stream(model="gpt-4o", input="hello") as stream:
        assert stream.get_final_response().output_text == llm_upstream.reply


def test_anthropic_messages_stream_with_cumulative_usage(llm_upstream):
    client = anthropic.Anthropic(base_url=llm_upstream.url, api_key=ANTHROPIC_KEY, max_retries=0)
    llm_upstream.cache_write_tokens, llm_upstream.anthropic_usage_deltas = 10, 2
    events = list(client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO, stream=True))
    start, deltas = events[0], [e for e in events if e.type == "message_delta"]
    assert start.message.usage.cache_creation_input_tokens == 10 and start.message.usage.output_tokens == 1
    assert [d.usage.output_tokens for d in deltas] == [8, 16]  # totals so far, not increments
    assert llm_upstream.usage_log[-1]["input"] == start.message.usage.input_tokens + 10
    refused = requests.post(llm_upstream.url + "/v1/messages", json={"model": "claude-sonnet-4-5", "messages": HELLO},
                            headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}, timeout=5)
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "max_tokens: Field required"


def test_it_can_fail_once_stall_trickle_and_drop_a_stream(llm_upstream):
    import time

    client = openai.OpenAI(base_url=llm_upstream.url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    llm_upstream.fail_next, llm_upstream.retry_after = [429], "3"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "3"
    assert client.chat.completions.create(model="gpt-4o", messages=HELLO).choices  # only the next one failed
    llm_upstream.reply, llm_upstream.chunk_delay = "a b c", 0.2
    started = time.monotonic()
    list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert time.monotonic() - started >= 0.8
    llm_upstream.chunk_delay, llm_upstream.disconnect_after = 0, 2
    with pytest.raises(openai.APIConnectionError):
        list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))


def test_azure_deployments_answer_with_the_model_they_run(llm_upstream):
    llm_upstream.azure_deployments = {"prod-4o": "gpt-4o-2024-08-06"}
    url = llm_upstream.url + "/openai/deployments/prod-4o/chat/completions"
    answer = requests.post(url, params={"api-version": "2024-10-21"}, headers={"api-key": AZURE_KEY},
                           json={"messages": HELLO}, timeout=5)
    assert answer.status_code == 200 and answer.json()["model"] == "gpt-4o-2024-08-06"


def test_gemini_speaks_openais_format_under_v1beta_openai_with_a_bearer_key(llm_upstream):
    client = openai.OpenAI(base_url=llm_upstream.url + "/v1beta/openai", api_key=GEMINI_KEY, max_retries=0)
    assert client.chat.completions.create(model="gemini-2.5-flash", messages=HELLO).choices[0].message.content \
        == llm_upstream.reply
    assert len(client.embeddings.create(model="text-embedding-004", input="hi").data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError) as caught:
        openai.OpenAI(base_url=llm_upstream.url + "/v1beta/openai", api_key="AIzaWrong", max_retries=0) \
            .chat.completions.create(model="gemini-2.5-flash", messages=HELLO)
    assert caught.value.response.json()[0]["error"]["status"] == "INVALID_ARGUMENT"  # Google's shape, in a list


def test_tool_calls_and_their_results_are_checked_as_the_providers_do(llm_upstream):
    llm_upstream.tool_arguments = {"city": "Rome"}
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    client = openai.OpenAI(base_url=llm_upstream.url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    [call] = client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=[tool]).choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("weather", '{"city": "Rome"}')
    with pytest.raises(openai.BadRequestError):  # a tool result answering no call
        client.chat.completions.create(model="gpt-4o", tools=[tool], messages=[
            *HELLO, {"role": "tool", "tool_call_id": "call_nobody", "content": "sunny"}])
    claude = anthropic.Anthropic(base_url=llm_upstream.url, api_key=ANTHROPIC_KEY, max_retries=0)
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO,
                                tools=[{"name": "weather", "input_schema": {"type": "object"}}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].input == {"city": "Rome"}
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nobody", "content": "x"}]}])
