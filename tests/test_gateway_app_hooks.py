"""The gateway's calls pass by the app-wide hooks that only signed-in pages
need (costguardian.CostGuardianApp): no browser session is read or written,
the hooks marked `for_gateway_calls` (database connection, request line, 5xx
count, security headers) still run, and pages keep every hook."""
from __future__ import annotations

import logging

from costguardian import for_gateway_calls
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.gateway import vault
from tests.fakes.llm_upstream import OPENAI_KEY
from tests.observability_support import captured_logs

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}


def test_a_gateway_call_runs_only_the_hooks_marked_for_it_and_leaves_the_browser_session_alone(
        app, owner_client, llm_upstream, monkeypatch):
    client, owner, org = owner_client
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    vault.add(org, Actor(user=owner), "openai", "Production", OPENAI_KEY)
    created = keys.create_key(org, Actor(user=owner), "gateway", ["gateway"])
    ran: list[str] = []

    def page_only():
        ran.append("page-only before")

    def page_only_after(response):
        ran.append("page-only after")
        return response

    @for_gateway_calls
    def everywhere():
        ran.append("everywhere before")

    @for_gateway_calls
    def everywhere_after(response):
        ran.append("everywhere after")
        return response

    monkeypatch.setitem(app.before_request_funcs, None, [*app.before_request_funcs[None], page_only, everywhere])
    monkeypatch.setitem(app.after_request_funcs, None, [page_only_after, everywhere_after,
                                                        *app.after_request_funcs[None]])

    with captured_logs(logging.INFO) as captured:
        # The signed-in browser's cookie goes along, as it would from a page's fetch.
        response = client.http.post("/v1/chat/completions", json=CHAT,
                                    headers={"Authorization": f"Bearer {created.plaintext}"})
        body = response.get_json()
        response.close()  # sent: the recording follows
    assert response.status_code == 200, body
    assert body["usage"]["completion_tokens"] > 0
    assert ran == ["everywhere before", "everywhere after"]
    assert "Set-Cookie" not in response.headers  # the session was neither read nor renewed
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # the security headers still apply
    assert "default-src" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"  # a key's answer is private
    assert response.headers["X-CG-Request-Id"] and response.headers["X-Request-Id"]
    line = next(line for line in captured.lines() if line["logger"] == "costguardian.request")
    assert (line["endpoint"], line["org_id"], line["api_key_id"], line["status"]) == (
        "gateway.chat_completions", org.id, created.key.id, 200)  # what _note_request adds
    assert "user_id" not in line  # the browser's user was not loaded from its cookie

    ran.clear()
    page = client.get("/account/")
    assert page.status_code == 200  # still signed in
    assert ran == ["page-only before", "everywhere before", "everywhere after", "page-only after"]


def test_a_path_under_v1_that_is_no_gateway_route_gets_the_ordinary_hooks(app, owner_client, monkeypatch):
    """Only the gateway blueprint's views take the short way; a 404 under
    /v1/ is answered like any other, without reading the session."""
    client, _, _ = owner_client
    ran: list[str] = []

    def page_only():
        ran.append("page-only")

    monkeypatch.setitem(app.before_request_funcs, None, [*app.before_request_funcs[None], page_only])
    response = client.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert ran == ["page-only"]
    assert "Set-Cookie" not in response.headers
