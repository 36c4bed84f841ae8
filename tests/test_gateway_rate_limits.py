"""Gateway rate limits (services/gateway/ratelimits.py) through the official
SDKs against the live gateway: requests and tokens per minute, per key and
per organization, 429 in the provider's shape with Retry-After and
OpenAI-style x-ratelimit-* headers, nothing forwarded or recorded for a
refused call; and a key's "calls may choose their attribution" setting.

Requests are counted in a sliding window aligned to the clock on the
in-memory storage and the SQLite file (the SQLite pass's, as by default):
tests that count requests freeze the clock mid-minute (time-machine moves
`limits`' time.time()). Redis keeps its windows by its
own clock, so the tests that need the window to move run on memory only.
"""
from __future__ import annotations

import concurrent.futures
import re
from datetime import UTC, datetime

import anthropic
import openai
import pytest
import requests
import time_machine

from costguardian.models import ApiKey, GatewayRequest, Organization, UsageEvent
from costguardian.services.gateway import ratelimits
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)

HELLO = [{"role": "user", "content": "Say hello."}]
CLAUDE = "claude-sonnet-4-5"
MID_MINUTE = datetime(2026, 12, 5, 9, 0, 10, tzinfo=UTC)
DURATION = re.compile(r"(\d+h)?(\d+m)?\d+s|\d+ms")


@pytest.fixture(autouse=True)
def _fresh_counts(app):
    ratelimits.reset(app)
    yield
    ratelimits.reset(app)


@pytest.fixture
def frozen():
    with time_machine.travel(MID_MINUTE, tick=False) as traveller:
        yield traveller


def follows_clock(app) -> bool:
    """The storage measures windows by this process's time.time() (memory://, the
    SQLite file), which time-machine moves; Redis keeps its own clock."""
    return str(app.config["RATELIMIT_STORAGE_URI"]).startswith(("memory", "cg-sqlite"))


def memory_only(app):
    if not follows_clock(app):
        pytest.skip("Redis keeps its windows by its own clock, which time-machine does not move")


def limit_key(api_key, rpm=None, tpm=None):
    ApiKey.update(rpm_limit=rpm, tpm_limit=tpm).where(ApiKey.id == api_key.id).execute()


def limit_org(org, rpm=None, tpm=None):
    Organization.update(gateway_rpm_limit=rpm, gateway_tpm_limit=tpm).where(Organization.id == org.id).execute()


def chat(client):
    return client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)


def one_call_tokens(upstream, index: int = -1) -> int:
    usage = upstream.usage_log[index]
    return usage["input"] + usage["output"]


# --- requests per minute ---------------------------------------------------------------

def test_rpm_refuses_the_call_after_the_limit_with_429_and_openai_headers(gateway, frozen, app):
    limit_key(gateway.api_key, rpm=3)
    client = gateway.openai()
    remaining = []
    for _ in range(3):
        raw = chat(client)
        assert raw.http_response.status_code == 200
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert DURATION.fullmatch(raw.headers["x-ratelimit-reset-requests"])
        assert "x-ratelimit-limit-tokens" not in raw.headers  # no token limit set
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as refused:
        chat(client)
    error, headers = refused.value, refused.value.response.headers
    assert error.status_code == 429
    assert error.body["type"] == "requests" and error.body["code"] == "rate_limit_exceeded"
    assert "requests per minute" in error.body["message"] and "this API key" in error.body["message"]
    assert headers["x-ratelimit-limit-requests"] == "3" and headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-should-retry"] == "true"
    assert headers["X-CG-Request-Id"].startswith("gw_")
    if follows_clock(app):
        # Frozen at 09:00:10: the window of 09:00 ends in 50 s.
        assert headers["retry-after"] == "50" and headers["x-ratelimit-reset-requests"] == "50s"
    assert len(gateway.upstream.requests) == 3  # the refused call never reached the provider
    assert len(gateway.calls(3)) == 3 and UsageEvent.in_org(gateway.org).count() == 3  # and is not recorded


def test_the_window_lets_calls_through_again_once_the_minute_has_passed(gateway, frozen, app):
    memory_only(app)
    limit_key(gateway.api_key, rpm=2)
    client = gateway.openai()
    chat(client), chat(client)
    with pytest.raises(openai.RateLimitError):
        chat(client)
    frozen.shift(125)  # two windows on: nothing of the old one is weighed any more
    raw = chat(client)
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    gateway.calls(3)


def test_the_sdks_retry_after_a_refusal_records_the_call_once(gateway, app):
    """The official SDK retries a 429 after Retry-After: the refused attempt
    leaves no trace, the retry is one call, one event."""
    memory_only(app)
    limit_key(gateway.api_key, rpm=1)
    with time_machine.travel(datetime(2026, 12, 5, 9, 0, 58, 500000, tzinfo=UTC), tick=True):
        client = gateway.openai(max_retries=2)
        chat(client)
        raw = chat(client)  # refused until 09:01:00, then the SDK's retry goes through
        calls = gateway.calls(2)  # recorded while the clock still reads 09:01
    assert raw.http_response.status_code == 200
    assert len(calls) == 2 and len({c.request_id for c in calls}) == 2
    assert len(gateway.upstream.requests) == 2
    assert sorted(e.event_id for e in UsageEvent.in_org(gateway.org)) == sorted(c.request_id for c in calls)


def test_concurrent_calls_get_exactly_the_limits_requests(gateway, frozen):
    limit_key(gateway.api_key, rpm=5)

    def call(_):
        try:
            chat(gateway.openai())
            return "ok"
        except openai.RateLimitError:
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(call, range(12)))
    assert outcomes.count("ok") == 5 and outcomes.count("refused") == 7
    assert len(gateway.upstream.requests) == 5
    assert len(gateway.calls(5)) == 5


def test_an_unreachable_limiter_storage_lets_calls_through(gateway, app, monkeypatch):
    """Redis down: the gateway fails open for rate limits (budgets still hold)."""
    monkeypatch.setitem(app.extensions, "cg_gateway_ratelimits",
                        ratelimits._Limiters("redis://127.0.0.1:1/0", "cgtest-down"))
    limit_key(gateway.api_key, rpm=1)
    for _ in range(2):
        raw = chat(gateway.openai())
        assert raw.http_response.status_code == 200 and "x-ratelimit-limit-requests" not in raw.headers
    gateway.calls(2)


def test_the_organizations_limit_counts_every_key_together(gateway, frozen):
    limit_org(gateway.org, rpm=2)
    other = gateway.new_key("batch jobs")
    first, second = gateway.openai(), gateway.openai(key=other)
    assert chat(first).headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(second).headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:
        chat(first)
    assert "your organization" in refused.value.body["message"]
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "2"
    assert len(gateway.upstream.requests) == 2
    gateway.calls(2)


def test_a_call_the_organizations_limit_refuses_takes_nothing_from_its_keys_window(gateway, frozen):
    limit_key(gateway.api_key, rpm=3)
    limit_org(gateway.org, rpm=1)
    chat(gateway.openai(key=gateway.new_key("batch jobs")))  # the organization's one request this minute
    client = gateway.openai(max_retries=0)
    for _ in range(4):  # more refusals than the key allows requests
        with pytest.raises(openai.RateLimitError) as refused:
            chat(client)
        assert "your organization" in refused.value.body["message"]
    limit_org(gateway.org, rpm=100)
    raw = chat(client)  # the key's three requests are all still there
    assert (raw.headers["x-ratelimit-limit-requests"], raw.headers["x-ratelimit-remaining-requests"]) == ("3", "2")
    gateway.calls(2)


def test_the_headers_show_the_tightest_of_the_key_and_the_organization(gateway, frozen):
    limit_key(gateway.api_key, rpm=5)
    limit_org(gateway.org, rpm=100)
    raw = chat(gateway.openai())
    assert (raw.headers["x-ratelimit-limit-requests"], raw.headers["x-ratelimit-remaining-requests"]) == ("5", "4")
    limit_org(gateway.org, rpm=3)  # now the organization has less room left than the key
    raw = chat(gateway.openai())
    assert (raw.headers["x-ratelimit-limit-requests"], raw.headers["x-ratelimit-remaining-requests"]) == ("3", "2")
    gateway.calls(2)


def test_a_key_without_limits_is_not_limited_nor_given_headers(gateway, frozen):
    limited = gateway.new_key("limited")
    ApiKey.update(rpm_limit=1).where(ApiKey.prefix == limited.split("_")[2]).execute()
    client = gateway.openai()
    for _ in range(5):
        raw = chat(client)
        assert raw.http_response.status_code == 200
        assert not [name for name in raw.headers if name.lower().startswith("x-ratelimit-")]
    chat(gateway.openai(key=limited))
    with pytest.raises(openai.RateLimitError):
        chat(gateway.openai(key=limited))
    gateway.calls(6)


def test_the_anthropic_sdk_gets_a_rate_limit_error_in_anthropics_shape(gateway, frozen):
    limit_key(gateway.api_key, rpm=1)
    client = gateway.anthropic()
    client.messages.create(model=CLAUDE, max_tokens=16, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model=CLAUDE, max_tokens=16, messages=HELLO)
    assert refused.value.status_code == 429
    assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "rate_limit_error"
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert len(gateway.upstream.requests) == 1
    gateway.calls(1)


# --- tokens per minute -----------------------------------------------------------------

def test_tpm_counts_each_calls_actual_tokens_after_it_ended(gateway, frozen):
    limit_key(gateway.api_key, tpm=100_000)
    client = gateway.openai()
    first = chat(client)
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "100000"  # its own tokens are counted once it ended
    gateway.calls(1)
    spent = one_call_tokens(gateway.upstream)
    second = chat(client)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(100_000 - spent)
    assert DURATION.fullmatch(second.headers["x-ratelimit-reset-tokens"])
    gateway.calls(2)


def test_tpm_refuses_calls_once_the_windows_tokens_reached_the_limit(gateway, frozen):
    client = gateway.openai()
    chat(client)  # no limit yet: how many tokens one such call takes
    gateway.calls(1)
    spent = one_call_tokens(gateway.upstream)
    limited = gateway.new_key("tight")
    half = max(1, spent // 2)
    ApiKey.update(tpm_limit=half).where(ApiKey.prefix == limited.split("_")[2]).execute()
    tight = gateway.openai(key=limited)
    chat(tight)  # room in the window is room for a call: it takes the window past the limit by its own size
    gateway.calls(2)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(tight)
    assert refused.value.body["type"] == "tokens" and refused.value.body["code"] == "rate_limit_exceeded"
    headers = refused.value.response.headers
    assert headers["x-ratelimit-limit-tokens"] == str(half) and headers["x-ratelimit-remaining-tokens"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert len(gateway.upstream.requests) == 2


def test_the_organizations_token_limit_counts_streamed_calls_of_every_key(gateway, frozen):
    limit_org(gateway.org, tpm=1)
    stream = gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    gateway.calls(1)
    other = gateway.new_key("other")
    with pytest.raises(openai.RateLimitError) as refused:
        chat(gateway.openai(key=other))
    assert refused.value.body["type"] == "tokens" and "your organization" in refused.value.body["message"]
    assert len(gateway.upstream.requests) == 1


# --- the header format -----------------------------------------------------------------

@pytest.mark.parametrize("seconds, shown", [(0, "0s"), (0.0171, "18ms"), (1, "1s"), (59.2, "1m0s"),
                                            (360, "6m0s"), (3723, "1h2m3s")])
def test_reset_durations_read_like_openais(seconds, shown):
    assert ratelimits.duration(seconds) == shown


def test_the_providers_own_rate_limit_headers_move_aside_for_ours():
    reply = {"x-ratelimit-limit-requests": "10000", "x-ratelimit-limit-project-tokens": "9",
             "retry-after": "3", "X-CG-Request-Id": "gw_1"}
    ratelimits.merge_headers(reply, {"x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4"})
    assert reply == {"x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4",
                     "x-cg-upstream-x-ratelimit-limit-requests": "10000",
                     "x-ratelimit-limit-project-tokens": "9", "retry-after": "3", "X-CG-Request-Id": "gw_1"}


# --- a key that does not let calls choose their attribution ----------------------------

def _no_override(api_key):
    ApiKey.update(attribution_override=False).where(ApiKey.id == api_key.id).execute()


@pytest.mark.parametrize("header, value", [("X-CG-User", "someone@acme.com"), ("X-CG-Department", "Research"),
                                           ("X-CG-Tags", "team:search")])
def test_a_key_that_does_not_allow_overrides_refuses_the_attribution_headers(gateway, header, value):
    _no_override(gateway.api_key)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, extra_headers={header: value})
    assert refused.value.body["code"] == "attribution_not_allowed"
    assert header.lower() in refused.value.body["message"]
    assert gateway.upstream.requests == []
    [call] = gateway.calls(1)
    assert (call.status_code, call.outcome, call.forwarded) == (403, "refused", False)


def test_a_key_that_does_not_allow_overrides_keeps_its_own_user_whatever_the_body_says(gateway):
    owner_key = gateway.new_key("olga's", user=gateway.owner)
    ApiKey.update(attribution_override=False).where(ApiKey.prefix == owner_key.split("_")[2]).execute()
    gateway.openai(key=owner_key).chat.completions.create(model="gpt-4o", messages=HELLO, user="end-user-42")
    [event] = gateway.events(1)
    assert event.user_ref == "olga@acme.com"
    assert gateway.upstream.requests[0].body["user"] == "end-user-42"  # still the provider's to see


def test_by_default_a_call_may_name_its_user(gateway):
    answer = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                           headers={"Authorization": f"Bearer {gateway.key}", "X-CG-User": "Sam@Acme.com"},
                           json={"model": "gpt-4o", "messages": HELLO})
    assert answer.status_code == 200
    [event] = gateway.events(1)
    assert event.user_ref == "sam@acme.com"
    assert GatewayRequest.in_org(gateway.org).count() == 1
