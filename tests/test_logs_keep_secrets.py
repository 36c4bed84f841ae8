"""Secrets never reach the logs: a broad journey (sign-up and sign-in, an API
key, a provider credential, a webhook with its secret and a delivery, ingest,
a gateway call through the fake upstream, a password reset) with every
logger captured at DEBUG in the production JSON format; then the captured
text is searched for every secret the journey created or used."""
from __future__ import annotations

import re

import requests

from costguardian.extensions import db
from costguardian.models import OutboxMessage, WebhookEndpoint
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)
from tests.observability_support import captured_logs, sample
from tests.support import PASSWORD, Client

API_KEY = re.compile(r"cg_(?:live|test)_[a-z0-9]{12}_[A-Za-z0-9_-]{43}")
WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{43}")
SIGNUP_PASSWORD = "signup pass phrase 7431"
NEW_PASSWORD = "reset pass phrase 9025"


def test_a_full_journey_logs_no_secret(app, gateway, webhook_receiver):  # noqa: F811 (fixture)
    secrets = {"owner's password": PASSWORD, "sign-up password": SIGNUP_PASSWORD, "new password": NEW_PASSWORD,
               "gateway key": gateway.key, "OpenAI key": OPENAI_KEY, "Anthropic key": ANTHROPIC_KEY,
               "secret key": app.config["SECRET_KEY"], "encryption keys": app.config["CG_ENCRYPTION_KEYS"]}
    before = {"ingest": sample("cg_ingest_events_total", source="api", outcome="accepted"),
              "duplicate": sample("cg_ingest_events_total", source="api", outcome="duplicate"),
              "gateway": sample("cg_gateway_calls_total", endpoint="chat.completions", outcome="ok"),
              "overhead": sample("cg_gateway_added_latency_seconds_count"),
              "delivery": sample("cg_notification_delivery_attempts_total", channel="webhook", outcome="sent"),
              "task": sample("cg_task_runs_total", task="deliver", outcome="ok")}

    with captured_logs() as logs:
        newcomer = Client(app)
        answer = newcomer.post("/signup", {"name": "Nia New", "email": "nia@example.com", "password": SIGNUP_PASSWORD,
                                           "confirm": SIGNUP_PASSWORD})
        assert answer.status_code == 302, answer.get_data(as_text=True)
        newcomer.sign_out()
        newcomer.sign_in("nia@example.com", SIGNUP_PASSWORD)
        secrets["newcomer's session cookie"] = newcomer.http.get_cookie("cg_session").value

        owner = Client(app)
        owner.sign_in(gateway.owner.email)
        secrets["owner's session cookie"] = owner.http.get_cookie("cg_session").value
        secrets["CSRF token"] = owner.csrf_token()

        page = owner.post("/keys/", {"name": "ingest job", "scopes": ["ingest"], "env": "live", "expires": "never",
                                     "expires_on": "", "user": "", "department": ""}).get_data(as_text=True)
        [plaintext] = set(API_KEY.findall(page))
        secrets["new API key"], secrets["new API key's secret part"] = plaintext, plaintext.rsplit("_", 1)[1]

        answer = owner.post("/providers/", {"provider": "openai", "label": "Second", "secret": OPENAI_KEY,
                                            "is_enabled": "y"})
        assert answer.status_code in (200, 302), answer.get_data(as_text=True)

        page = owner.post("/notifications/webhooks/", {"name": "ops", "url": webhook_receiver.url(), "kind": "json",
                                                       "scope": "all", "is_active": "y"}).get_data(as_text=True)
        [webhook_secret] = set(WEBHOOK_SECRET.findall(page))
        secrets["webhook secret"] = webhook_receiver.secret = webhook_secret
        with db.connection_context():
            endpoint = WebhookEndpoint.get(WebhookEndpoint.organization == gateway.org)
        assert owner.post(f"/notifications/webhooks/{endpoint.id}/test").status_code in (200, 302)
        assert webhook_receiver.received

        for _ in range(2):  # the second time a duplicate
            answer = owner.http.post("/api/v1/usage", headers={"Authorization": f"Bearer {plaintext}"}, json={
                "event_id": "evt-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 5})
            assert answer.status_code == 200, answer.get_data(as_text=True)

        answer = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                               headers={"Authorization": f"Bearer {gateway.key}", "X-Request-Id": "journey-1"},
                               json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]})
        assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "journey-1"
        gateway.recordings.wait(1)

        reader = Client(app)
        assert reader.post("/forgot-password", {"email": gateway.owner.email}).status_code == 200
        with db.connection_context():
            message = OutboxMessage.select().order_by(OutboxMessage.id.desc()).first()
        link = re.search(r"https?://[^/\s]+(/reset-password/\S+)", message.text_body).group(1)
        secrets["reset token"] = link.rsplit("/", 1)[1]
        answer = reader.post(link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert answer.status_code == 302
        reader.sign_out()
        reader.sign_in(gateway.owner.email, NEW_PASSWORD)

    text = logs.text
    assert len(logs.lines()) > 20  # the journey was logged, at DEBUG, by several loggers
    assert {"costguardian.request", "werkzeug"} <= {line["logger"] for line in logs.lines()}
    leaked = [name for name, secret in secrets.items() if secret and secret in text]
    assert not leaked, (leaked, [line for line in text.splitlines() if any(secrets[n] in line for n in leaked)][:3])

    # The request lines name the route, never the path (the reset token is in the path).
    resets = [line for line in logs.lines() if line.get("endpoint") == "auth.reset_password"]
    assert resets and all(line["route"] == "/reset-password/<token>" for line in resets)
    assert any(line.get("request_id") == "journey-1" and line.get("endpoint") == "gateway.chat_completions"
               for line in logs.lines())

    # What the journey did was counted.
    assert sample("cg_ingest_events_total", source="api", outcome="accepted") == before["ingest"] + 1
    assert sample("cg_ingest_events_total", source="api", outcome="duplicate") == before["duplicate"] + 1
    assert sample("cg_gateway_calls_total", endpoint="chat.completions", outcome="ok") == before["gateway"] + 1
    assert sample("cg_gateway_added_latency_seconds_count") == before["overhead"] + 1
    assert sample("cg_notification_delivery_attempts_total", channel="webhook", outcome="sent") == \
        before["delivery"] + 1
    assert sample("cg_task_runs_total", task="deliver", outcome="ok") >= before["task"] + 1
