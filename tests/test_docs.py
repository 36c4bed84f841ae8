"""Documentation inside the product: the API reference rendered from the
OpenAPI document, and a page for every problem type the API answers (the
`type` URL of each problem document resolves on the app itself)."""
from __future__ import annotations

import html
import json
import pathlib
import re

import pytest
from markupsafe import escape

from costguardian.openapi import spec
from costguardian.problems import PROBLEM_TYPES
from costguardian.web import ERROR_TITLES, PROBLEM_KINDS

ROOT = pathlib.Path(__file__).resolve().parent.parent / "costguardian"
# Every way the code names a problem kind: problem(status, "kind", …),
# ApiKeyError(status, "kind", …) and BatchError("kind", …).
_KINDS = re.compile(r'(?:problem\(\s*[\w.]+,\s*|ApiKeyError\(\s*\d+,\s*|BatchError\(\s*)"([a-z0-9-]+)"')


def kinds_in_code() -> set[str]:
    found = set(PROBLEM_KINDS.values()) | {f"http-{status}" for status in ERROR_TITLES
                                           if status not in PROBLEM_KINDS and status >= 400}
    for path in ROOT.rglob("*.py"):
        found |= set(_KINDS.findall(path.read_text()))
    return found


def test_every_problem_kind_the_code_answers_has_a_page():
    kinds = kinds_in_code()
    assert {"invalid-event", "missing-api-key", "organization-suspended", "rate-limited"} <= kinds  # the scan works
    assert kinds - set(PROBLEM_TYPES) == set()


def test_every_problem_page_resolves_and_explains(client):
    index = client.get("/docs/problems/")
    assert index.status_code == 200
    for kind, problem in PROBLEM_TYPES.items():
        assert f'href="/docs/problems/{kind}"' in index.get_data(as_text=True)
        page = client.get(f"/docs/problems/{kind}")  # signed out: the pages are public
        assert page.status_code == 200, kind
        text = page.get_data(as_text=True)
        assert str(escape(problem.title)) in text and f"http://localhost/docs/problems/{kind}" in text
    assert client.get("/docs/problems/no-such-problem").status_code == 404


def test_a_problem_documents_type_is_its_page_on_this_app(client):
    answer = client.http.post("/api/v1/usage", json={"event_id": "e"})  # no key
    assert answer.status_code == 401 and answer.mimetype == "application/problem+json"
    assert answer.json["type"] == "http://localhost/docs/problems/missing-api-key"
    page = client.get(answer.json["type"].removeprefix("http://localhost"))
    assert page.status_code == 200 and "Missing API key" in page.get_data(as_text=True)
    missing = client.get("/api/v1/nothing-here")
    assert missing.json["type"] == "http://localhost/docs/problems/not-found"


def test_the_type_url_follows_the_configured_base_url(app, client):
    app.config["CG_BASE_URL"] = "https://costs.example.org/"
    try:
        answer = client.http.post("/api/v1/usage", json={})
    finally:
        app.config["CG_BASE_URL"] = None
    assert answer.json["type"] == "https://costs.example.org/docs/problems/missing-api-key"


def test_the_api_reference_shows_every_operation_of_the_document(client):
    page = client.get("/docs/api")  # public, like the document it renders
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]  # the site's CSP, not relaxed
    assert "<script" not in text.split("</head>", 1)[1]  # no script of its own: readable without JavaScript
    for path, item in spec()["paths"].items():
        for method in item:
            assert f"<code>{method.upper()} {path}</code>" in text, (method, path)
    for name in spec()["components"]["schemas"]:
        assert f'id="schema-{name}"' in text
    assert 'href="/api/openapi.json"' in text and 'href="/docs/problems/"' in text
    assert "<code>results[].status</code>" in text  # nested answer fields are spelt out
    assert "http://localhost" in text  # the base URL to send requests to


@pytest.mark.parametrize("url", ["/keys/", "/webhooks/"])
def test_the_keys_and_webhooks_pages_link_the_reference(owner_client, url):
    client, _, _ = owner_client
    assert 'href="/docs/api"' in client.get(url).get_data(as_text=True)


def test_the_key_created_panel_shows_snippets_that_work_with_that_key(owner_client):
    client, _, _ = owner_client
    response = client.post("/keys/", {"name": "first", "scopes": ["ingest"], "env": "live", "expires": "never",
                                      "expires_on": "", "user": "", "department": ""}, htmx=True)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    key = re.search(r'value="(cg_live_[^"]+)"', text).group(1)
    curl = html.unescape(re.search(r'id="snippet-ingest-curl"[^>]*>(.*?)</code>', text, re.S).group(1))
    python = html.unescape(re.search(r'id="snippet-ingest-python"[^>]*>(.*?)</code>', text, re.S).group(1))
    assert f"Bearer {key}" in curl and f"Bearer {key}" in python
    assert "http://localhost/api/v1/usage" in curl and "uuid.uuid4()" in python
    assert 'href="/docs/api"' in text
    # The curl example, sent as written, records one event; sent again it is a duplicate.
    body = json.loads(re.search(r"-d '(.*)'", curl, re.S).group(1))
    headers = {"Authorization": f"Bearer {key}"}
    first = client.http.post("/api/v1/usage", json=body, headers=headers)
    assert first.status_code == 200 and first.json["accepted"] == 1, first.json
    again = client.http.post("/api/v1/usage", json=body, headers=headers)
    assert again.json["duplicates"] == 1
