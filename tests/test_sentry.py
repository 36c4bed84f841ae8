"""Sentry from the web process and the task consumer (same settings, Flask
and Huey integrations), against a local fake of Sentry's ingestion: an error
in a view and one in a task both arrive, with no personal data."""
from __future__ import annotations

import json
import logging

import pytest

import tasks
from costguardian.observability import logs
from tests.fakes.sentry_ingest import SentryIngest
from tests.support import Client, make_user, other_app

EMAIL = "vic.victim@example.com"
API_KEY = "cg_live_abcdefghij12_" + "S" * 43


@tasks.app_task()
def sentry_check_failing_task(address: str) -> None:
    raise RuntimeError(f"the task failed for {address}")


@pytest.fixture
def sentry_ingest():
    import sentry_sdk

    fake = SentryIngest().start()
    try:
        yield fake
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)  # inactive again for the rest of the run
        fake.stop()



def _assert_scrubbed(event: dict) -> None:
    text = json.dumps(event)
    assert EMAIL not in text and API_KEY not in text and "secret-query" not in text
    assert "user" not in event
    request = event.get("request", {})
    assert not {"cookies", "data", "query_string", "env"} & set(request)
    assert not {"authorization", "cookie", "x-api-key", "x-forwarded-for"} & {k.lower() for k in
                                                                               request.get("headers", {})}
    assert all("vars" not in frame for value in event.get("exception", {}).get("values", [])
               for frame in (value.get("stacktrace") or {}).get("frames", []))


def test_errors_of_a_view_and_of_a_task_arrive_scrubbed(app, sentry_ingest, real_queue):
    import sentry_sdk

    with other_app(SENTRY_DSN=sentry_ingest.dsn) as sentried:
        def boom():
            raise RuntimeError(f"the view failed for {EMAIL} with {API_KEY}")

        sentried.add_url_rule("/test-only/sentry-boom", "test_sentry_boom", boom)
        sentried.view_functions["test_sentry_boom"].personal = True
        client = sentry_sdk.get_client()
        assert client.get_integration("flask") is not None and client.get_integration("huey") is not None
        with sentried.app_context():
            make_user(EMAIL)
        browser = Client(sentried)
        browser.sign_in(EMAIL)
        answer = browser.get("/test-only/sentry-boom?token=secret-query",
                             headers={"Authorization": f"Bearer {API_KEY}", "X-Forwarded-For": "198.51.100.4"})
        assert answer.status_code == 500

        sentry_check_failing_task(EMAIL)  # with Sentry's trace headers, as the web process enqueues
        [message] = real_queue.pending()
        assert "sentry_headers" in message.kwargs
        with sentried.app_context():
            real_queue.execute(real_queue.dequeue())  # as the consumer runs it
        sentry_sdk.flush(timeout=10)

    by_mechanism = {}
    for event in sentry_ingest.events:
        for value in event.get("exception", {}).get("values", []):
            by_mechanism.setdefault((value.get("mechanism") or {}).get("type"), []).append((event, value))
    view_errors = [(e, v) for pairs in by_mechanism.values() for e, v in pairs if "the view failed" in v["value"]]
    task_errors = by_mechanism.get("huey", [])
    assert view_errors and task_errors, sentry_ingest.raw
    for event, value in view_errors + task_errors:
        assert value["type"] == "RuntimeError"  # the task never received `sentry_headers`
        _assert_scrubbed(event)
    assert "[Filtered]" in task_errors[0][1]["value"]
    assert task_errors[0][0]["extra"]["huey-job"]["args"] == "[Filtered]"


def test_the_consumer_starts_sentry_from_the_same_settings(sentry_ingest, monkeypatch):
    import sentry_sdk

    monkeypatch.setenv("SENTRY_DSN", sentry_ingest.dsn)
    monkeypatch.setenv("CG_LOG_FORMAT", "json")
    root, huey_logger = logging.getLogger(), logging.getLogger("huey")
    kept = root.level, huey_logger.propagate, list(root.handlers)
    try:
        tasks._consumer_started()
        client = sentry_sdk.get_client()
        assert client.is_active() and client.get_integration("huey") is not None
        assert client.options["dsn"] == sentry_ingest.dsn
        assert any(isinstance(h.formatter, logs.JsonFormatter) for h in root.handlers)
    finally:
        for handler in [h for h in root.handlers if h not in kept[2]]:
            root.removeHandler(handler)
        root.setLevel(kept[0])
        huey_logger.propagate = kept[1]


def test_a_task_carrying_sentry_headers_runs_in_a_consumer_without_sentry(app_ctx, real_queue):
    """A message from a web process with Sentry reaches a consumer without it:
    the headers are dropped before the task function is called."""
    ran = []

    @tasks.app_task()
    def sentry_check_plain_task(value: int) -> None:
        ran.append(value)

    task = sentry_check_plain_task.s(7)
    task.kwargs["sentry_headers"] = {"sentry-trace": "0" * 32 + "-" + "0" * 16}
    real_queue.enqueue(task)
    real_queue.execute(real_queue.dequeue())
    assert ran == [7]
