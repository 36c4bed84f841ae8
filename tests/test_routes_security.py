"""Every route is signed-in only unless it is on the public list; security
headers and CSRF on every response and form."""
from __future__ import annotations

import re

import pytest

from costguardian.authz import PUBLIC_ENDPOINTS


def _concrete_urls(app):
    """One URL per rule and method, with integer/string arguments filled in."""
    for rule in app.url_map.iter_rules():
        url = re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m.group(1) == "int" else "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def test_public_allow_list_names_real_endpoints(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert PUBLIC_ENDPOINTS <= endpoints


def test_every_non_public_route_refuses_anonymous_requests(app):
    client = app.test_client()
    checked = 0
    for endpoint, method, url in _concrete_urls(app):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        response = client.open(url, method=method)
        checked += 1
        wire = getattr(app.view_functions[endpoint], "gateway_wire", None)
        if wire is not None:  # the LLM gateway: 401 in the provider's own error shape
            assert response.status_code == 401, (method, url)
            error = response.json["error"]
            assert error["type"] == ("authentication_error" if wire == "anthropic" else "invalid_request_error")
            assert response.json.get("type") == ("error" if wire == "anthropic" else None), (method, url)
        elif url.startswith("/api/"):
            assert response.status_code == 401, (method, url)
            assert response.mimetype == "application/problem+json"
        elif method == "GET":
            assert response.status_code == 302, (method, url, response.status_code)
            assert response.headers["Location"].startswith("/login"), (method, url)
        else:  # a POST without a session is refused before CSRF or the view
            assert response.status_code in (302, 401), (method, url, response.status_code)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/login")
    assert checked >= 10


def test_the_gateways_routes_are_api_key_routes_with_the_gateway_scope(app):
    """Every /v1/ and /anthropic/ route is an API-key route (the sign-in guard
    lets it through; the key authenticates it) scoped to `gateway`."""
    gateway_rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(("/v1/", "/anthropic/"))]
    assert {rule.rule for rule in gateway_rules} >= {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/models",
        "/anthropic/v1/messages", "/anthropic/v1/messages/count_tokens"}
    for rule in gateway_rules:
        view = app.view_functions[rule.endpoint]
        assert view.api_key_auth and view.required_scope == "gateway", rule.rule


def test_anonymous_htmx_request_gets_401_not_a_redirect(client):
    assert client.get("/members/", htmx=True).status_code == 401


def test_sign_in_redirect_keeps_the_requested_page(client):
    response = client.get("/members/")
    assert response.headers["Location"] == "/login?next=/members/"


@pytest.mark.parametrize("path", ["/login", "/healthz", "/static/css/app.css"])
def test_security_headers(client, path):
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_scripts(owner_client):
    client, _, _ = owner_client
    for path in ("/", "/members/", "/settings/", "/audit/", "/account/", "/orgs/new"):
        html = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, (path, tag)
        assert " on" + "click=" not in html


def test_form_post_without_csrf_token_is_refused(owner_client):
    client, _, org = owner_client
    response = client.post("/settings/", {"name": "Hacked", "time_zone": "UTC", "currency": "USD"}, csrf=False)
    assert response.status_code == 400
    assert "expired or was not sent from this site" in response.get_data(as_text=True)
    response = client.post("/settings/", {"name": "Hacked", "time_zone": "UTC", "currency": "USD"},
                           htmx=True, csrf=False)
    assert response.status_code == 400
    from costguardian.models import Organization
    assert Organization.get_by_id(org.id).name == "Acme"


def test_htmx_request_with_csrf_header_is_accepted(owner_client):
    client, _, _ = owner_client
    response = client.post("/settings/", {"name": "Acme Two", "time_zone": "UTC", "currency": "USD"}, htmx=True)
    assert response.status_code == 200


def test_unknown_page_is_a_friendly_404(owner_client):
    client, _, _ = owner_client
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "There is nothing at this address." in response.get_data(as_text=True)


def test_session_cookie_flags(client):
    response = client.get("/login")
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_every_signed_in_route_declares_its_permission(app):
    """A view either names the organization permission it needs or is marked
    personal (acts on the user's own account); nothing is left implicit."""
    from costguardian.permissions import PERMISSIONS

    undeclared = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        view = app.view_functions[rule.endpoint]
        if getattr(view, "api_key_auth", False):
            from costguardian.services.keys import SCOPES
            from costguardian.services.platform.tokens import SCOPES as PLATFORM_SCOPES

            # an organization API key's scope, or (the platform admin API) a platform token's
            scopes = PLATFORM_SCOPES if getattr(view, "platform_api", False) else SCOPES
            assert view.required_scope in scopes, rule.endpoint
            continue
        if not hasattr(view, "required_permission"):
            undeclared.append(rule.endpoint)
        elif view.required_permission is None:  # the user's own account, or a platform console page
            assert getattr(view, "personal", False) or getattr(view, "platform", False), rule.endpoint
        else:
            assert view.required_permission in PERMISSIONS, rule.endpoint
    assert undeclared == []


def test_the_session_cookie_is_named_cg_session(app, make_user):
    from tests.support import Client

    user = make_user("cookie@acme.com")
    client = Client(app)
    response = client.sign_in(user.email)
    names = [header.split("=", 1)[0] for header in response.headers.getlist("Set-Cookie")]
    assert "cg_session" in names and "session" not in names
    assert client.http.get_cookie("cg_session") is not None and client.http.get_cookie("session") is None
    # the helpers (CSRF token, signed-in pages) work with it
    assert client.get("/account/").status_code == 200
    assert client.post("/logout").status_code == 302
    assert client.get("/account/").status_code == 302


def _allowed(response) -> set[str]:
    return {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}


def test_405_pages_name_the_allowed_methods(client, owner_client):
    response = client.http.put("/login")
    assert response.status_code == 405 and response.mimetype == "text/html"
    assert {"GET", "POST"} <= _allowed(response) and "PUT" not in _allowed(response)
    signed_in, _, _ = owner_client
    response = signed_in.http.delete("/healthz")
    assert response.status_code == 405 and {"GET"} <= _allowed(response)


def test_405_problems_name_the_allowed_methods(app):
    response = app.test_client().delete("/api/v1/usage")
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    assert response.json["status"] == 405
    assert "POST" in _allowed(response) and "DELETE" not in _allowed(response)


def test_api_405_from_routing_has_the_same_problem_type_as_from_a_view(client):
    response = client.http.delete("/api/v1/usage")
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    assert response.json["type"] == "http://localhost/docs/problems/method-not-allowed"
    assert "POST" in response.headers["Allow"]
