"""Request ids (in, out, into the tasks a request enqueues), the request log
line, and GET /metrics (who may scrape it, what it says)."""
from __future__ import annotations

import logging

import pytest

from costguardian.extensions import db
from costguardian.models import OutboxMessage
from costguardian.observability import logs
from tests.observability_support import captured_logs, sample
from tests.support import Client, make_user

# --- request ids ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/healthz", "/static/css/app.css", "/no/such/page", "/api/v1/usage"])
def test_every_answer_carries_a_request_id_and_a_sane_incoming_one_is_kept(client, path):
    mine = client.get(path, headers={"X-Request-Id": "lb-7f3a.42:x"})
    assert mine.headers["X-Request-Id"] == "lb-7f3a.42:x"
    generated = client.get(path)
    assert len(generated.headers["X-Request-Id"]) == 32
    assert generated.headers["X-Request-Id"] != client.get(path).headers["X-Request-Id"]


@pytest.mark.parametrize("incoming", ["", "has space", "quote\"d", "x" * 129, "-leading-dash", "new\nline"])
def test_an_insane_incoming_request_id_is_replaced(client, incoming):
    answer = client.get("/healthz", headers={"X-Request-Id": incoming} if "\n" not in incoming else {})
    assert answer.headers["X-Request-Id"] != incoming and len(answer.headers["X-Request-Id"]) == 32


def test_one_json_line_per_request_with_route_org_user_status_and_duration(owner_client):
    client, user, org = owner_client
    with captured_logs(logging.INFO) as captured:
        client.get("/usage/", headers={"X-Request-Id": "req-usage-1"})
        client.get(f"/reset-password/secret-token-{org.id}")
    lines = [line for line in captured.lines() if line["logger"] == "costguardian.request"]
    usage = next(line for line in lines if line["request_id"] == "req-usage-1")
    assert (usage["method"], usage["route"], usage["endpoint"], usage["status"]) == ("GET", "/usage/", "usage.index",
                                                                                     200)
    assert (usage["org_id"], usage["user_id"]) == (org.id, user.id) and usage["duration_ms"] >= 0
    assert usage["level"] == "info" and usage["time"].endswith("Z")
    assert "secret-token" not in captured.text  # the route's rule is logged, never the path


def test_the_request_id_travels_with_the_tasks_the_request_enqueues(app, real_queue):
    """The consumer's way of running a task (dequeue, execute) on the real
    queue: its log lines carry the id of the request that enqueued it."""
    with app.app_context():
        make_user("rae@example.com")
    answer = Client(app).post("/forgot-password", {"email": "rae@example.com"}, headers={"X-Request-Id": "reset-77"})
    assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "reset-77"
    [message] = real_queue.pending()
    assert message.kwargs == {"cg_request_id": "reset-77"}

    with captured_logs(logging.INFO) as captured:
        task = real_queue.dequeue()
        real_queue.execute(task)
    with db.connection_context():
        assert OutboxMessage.get().status == "sent"  # the task function ran without the extra argument
    task_lines = [line for line in captured.lines() if line.get("task") == "deliver_email"]
    assert any("executed in" in line["message"] for line in task_lines)
    assert task_lines and all(line["request_id"] == "reset-77" for line in task_lines)



def test_the_formatter_keeps_sql_but_not_its_parameters_and_cuts_credentials():
    record = logging.LogRecord("peewee", logging.DEBUG, __file__, 1, ("INSERT INTO t VALUES (?)", ["tok3n"]), (), None)
    assert "tok3n" not in logs.JsonFormatter().format(record)
    assert "tok3n" not in logs.TextFormatter().format(record) and "1 parameters" in logs.TextFormatter().format(record)
    line = logs.redact("key cg_live_abcdefghij12_" + "s" * 43 + " Bearer abc.def whsec_" + "w" * 43
                       + " sk-proj-aaaaaaaaaa")
    assert line == "key cg_live_abcdefghij12_… Bearer … whsec_… sk-proj-…"


def test_the_log_format_follows_the_environment():
    assert logs.chosen_format({"CG_ENV": "production"}) == "json"
    assert logs.chosen_format({"CG_ENV": "development"}) == "text"
    assert logs.chosen_format({"CG_ENV": "production", "CG_LOG_FORMAT": "text"}) == "text"


# --- /metrics ---------------------------------------------------------------------

def test_metrics_without_a_token_answer_only_direct_private_callers(client):
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert "cg_http_requests_total" in answer.get_data(as_text=True)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "93.184.216.34"}).status_code == 404
    # Through a reverse proxy (which adds X-Forwarded-For), never: the proxy may be on loopback.
    assert client.get("/metrics", headers={"X-Forwarded-For": "93.184.216.34"}).status_code == 404


def test_metrics_with_a_token_need_it_from_everyone(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "CG_METRICS_TOKEN", "scrape-token-1234")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-1234", "X-Forwarded-For": "1.2.3.4"},
                        environ_base={"REMOTE_ADDR": "93.184.216.34"})
    assert answer.status_code == 200 and "cg_queue_tasks" in answer.get_data(as_text=True)


def test_requests_are_counted_per_endpoint_method_and_status_class_never_per_path(client):
    before = sample("cg_http_requests_total", endpoint="none", method="GET", status="4xx")
    seen = sample("cg_http_request_duration_seconds_count", endpoint="health.healthz", method="GET")
    client.get("/no/such/page-1")
    client.get("/no/such/page-2")
    client.get("/healthz")
    assert sample("cg_http_requests_total", endpoint="none", method="GET", status="4xx") == before + 2
    assert sample("cg_http_request_duration_seconds_count", endpoint="health.healthz", method="GET") == seen + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "page-1" not in text and 'cg_queue_tasks{state="pending"}' in text and "cg_queue_reachable 1.0" in text


def test_ingest_outcomes_are_counted(app, make_org):
    from costguardian.services.usage import ingest

    org = make_org("Metrics")
    before = {o: sample("cg_ingest_events_total", source="internal", outcome=o)
              for o in ("accepted", "duplicate", "rejected")}
    event = {"event_id": "m-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 3, "output_tokens": 1}
    ingest.ingest(org, None, [event, event, {"event_id": "m-2"}])
    after = {o: sample("cg_ingest_events_total", source="internal", outcome=o) for o in before}
    assert {o: after[o] - before[o] for o in after} == {"accepted": 1, "duplicate": 1, "rejected": 1}


def test_budget_checks_and_task_runs_are_counted(app_ctx):
    import tasks

    periodic = sample("cg_budget_checks_total", trigger="periodic")
    runs = sample("cg_task_runs_total", task="check_budgets", outcome="ok")
    tasks.check_budgets()  # immediate mode: inline, through the queue's hooks
    assert sample("cg_task_runs_total", task="check_budgets", outcome="ok") == runs + 1
    assert sample("cg_budget_checks_total", trigger="periodic") == periodic  # no budget, nothing checked
