"""The load test's users, run by bench/load.py (which seeds the organization
and passes everything through the environment); not meant to be run alone.

    bench/.venv-locust/bin/locust -f bench/locustfile.py --headless ...

Three kinds of users, each a fixed number (CG_LOAD_USERS, "ingest,gateway,people"):
- IngestService: a backend posting batches of 20–180 usage events to
  /api/v1/usage every 0.5–1.5 s with an ingest key. Ids are unique, and about
  5% of each batch repeats ids this service already had accepted (a client
  retrying), with the same content: the answer must say "duplicate".
- GatewayApp: an application calling POST /v1/chat/completions through the
  gateway (to the fake OpenAI) every 0.5–1.5 s; a quarter of the calls
  streamed (read to the end), half of those asking for the usage chunk.
- Person: a signed-in member (owner, admins, members, viewers) who loads the
  dashboard or the usage explorer (and its latency fragment) every 5–20 s,
  while the bell's badge polls every 5 s, as every open page does. Like a
  browser, a person sends a GET again once when the kept-alive connection it
  reused was closed by the server at that moment (BrowserRetry; counted).

What was answered is kept and written to CG_LOAD_RESULTS (JSON) when the
test stops, for bench/load.py to compare with the database: each accepted
event id with its answered cost and whether it carries the tag the tag budget
watches, the answers to repeats, each gateway call's X-CG-Request-Id and
status, the ids of any batch that got no answer, and the browser retries.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import re
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import gevent
from locust import FastHttpUser, HttpUser, between, events, task
from locust.clients import LocustHttpAdapter
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.ingest import MODELS  # the same model mix as the ingest benchmark

RUN = os.environ.get("CG_LOAD_RUN", "run")
INGEST_KEY = os.environ.get("CG_LOAD_INGEST_KEY", "")
GATEWAY_KEY = os.environ.get("CG_LOAD_GATEWAY_KEY", "")
PEOPLE = json.loads(os.environ.get("CG_LOAD_PEOPLE", "[]"))  # [[email, role], …], one signed-in person each
PASSWORD = os.environ.get("CG_LOAD_PASSWORD", "")
COUNTS = [int(n) for n in os.environ.get("CG_LOAD_USERS", "1,1,1").split(",")]
SEARCH_TAG = ("feature", "search")  # the tag budget's scope is "feature:search"
REPEAT_SHARE = 0.05
BELL_EVERY = 5.0

# What the users were answered (one locust process, so plain module state).
RESULTS: dict = {"accepted": [], "repeats": [], "unanswered": [], "ingest_errors": [], "gateway": [],
                 "sign_in_failures": [], "browser_retries": []}
_service_numbers = itertools.count()
_instants = itertools.count()


def _nanos(cost_usd: str | None) -> int | None:
    return None if cost_usd is None else int(Decimal(cost_usd) * 1_000_000_000)


def make_event(event_id: str) -> dict:
    """The same event every time its id is sent (so a repeat is a true retry):
    its content comes from the id, whose last part is when it happened (ms)."""
    rng = random.Random(event_id)
    provider, model = rng.choice(MODELS)
    occurred_ms = int(event_id.rsplit("-", 1)[1])
    inp = rng.randint(200, 8000)
    tag = SEARCH_TAG[1] if rng.random() < 0.5 else "chat"
    return {"event_id": event_id, "provider": provider, "model": model, "input_tokens": inp,
            "cache_read_tokens": rng.randint(0, inp // 3), "output_tokens": rng.randint(20, 1500),
            "user": f"customer-{rng.randrange(500)}", "tags": {"feature": tag},
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(occurred_ms / 1000))
            + f".{occurred_ms % 1000:03d}Z"}


class IngestService(FastHttpUser):
    fixed_count = COUNTS[0]
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.number = next(_service_numbers)
        self.rng = random.Random(f"{RUN}-{self.number}")
        self.accepted_ids: list[str] = []
        self.sequence = itertools.count()

    @task
    def send_batch(self) -> None:
        size = self.rng.randint(20, 180)
        repeats = min(len(self.accepted_ids), round(size * REPEAT_SHARE))
        now_ms = int(time.time() * 1000)
        fresh = [f"{RUN}-s{self.number}-{next(self.sequence)}-{now_ms - self.rng.randrange(120_000)}"
                 for _ in range(size - repeats)]
        repeated = set(self.rng.sample(self.accepted_ids, repeats)) if repeats else set()
        ids = fresh + sorted(repeated)
        self.rng.shuffle(ids)
        batch = [make_event(i) for i in ids]
        with self.client.post("/api/v1/usage", json={"events": batch}, name="ingest batch (POST /api/v1/usage)",
                              headers={"Authorization": f"Bearer {INGEST_KEY}"}, catch_response=True) as answer:
            if answer.status_code != 200:
                RESULTS["unanswered"].extend(ids)
                RESULTS["ingest_errors"].append(f"HTTP {answer.status_code}: {(answer.text or '')[:300]}")
                answer.failure(f"HTTP {answer.status_code}")
                return
            results = answer.json()["results"]
            wrong = []
            for event, result in zip(batch, results):
                event_id, status = event["event_id"], result["status"]
                if result["event_id"] != event_id:
                    wrong.append(f"{event_id}: answered as {result['event_id']}")
                elif event_id in repeated:
                    RESULTS["repeats"].append([event_id, status])
                    if status != "duplicate":
                        wrong.append(f"repeat {event_id}: {status}")
                elif status == "accepted":
                    tagged = event["tags"]["feature"] == SEARCH_TAG[1]
                    RESULTS["accepted"].append([event_id, _nanos(result["cost_usd"]), tagged])
                    self.accepted_ids.append(event_id)
                else:
                    wrong.append(f"new {event_id}: {status} {result.get('errors')}")
            if wrong:
                RESULTS["ingest_errors"].extend(wrong[:20])
                answer.failure(f"{len(wrong)} unexpected results, e.g. {wrong[0]}")


class GatewayApp(FastHttpUser):
    fixed_count = COUNTS[1]
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.rng = random.Random(f"{RUN}-gateway-{id(self)}")

    @task
    def chat(self) -> None:
        stream = self.rng.random() < 0.25
        body = {"model": "gpt-4o-mini", "max_tokens": 64, "user": f"app-user-{self.rng.randrange(50)}",
                "messages": [{"role": "user", "content": "Summarize this ticket: " + "words " * self.rng.randint(5, 200)}]}
        if stream:
            body["stream"] = True
            if self.rng.random() < 0.5:
                body["stream_options"] = {"include_usage": True}
        name = "gateway chat, streamed (POST /v1/chat/completions)" if stream else \
            "gateway chat (POST /v1/chat/completions)"
        with self.client.post("/v1/chat/completions", json=body, name=name, catch_response=True,
                              headers={"Authorization": f"Bearer {GATEWAY_KEY}"}) as answer:
            request_id = answer.headers.get("X-CG-Request-Id") if answer.headers else None
            RESULTS["gateway"].append([request_id, answer.status_code, stream])
            text = answer.text or ""
            if answer.status_code != 200:
                answer.failure(f"HTTP {answer.status_code}: {text[:200]}")
            elif stream and "[DONE]" not in text:
                answer.failure("the stream ended without [DONE]")
            elif not stream and '"usage"' not in text:
                answer.failure("no usage in the answer")


class BrowserRetry(Retry):
    """What a browser does when the kept-alive connection it reused for a GET
    turns out closed by the server at that very moment (gunicorn closes one
    idle for `keepalive` = 5 s, the bell polls every 5 s + the answer's time,
    so they meet): it sends the GET again once on a new connection. Each
    retry is kept and reported; POSTs are never retried."""

    def increment(self, method=None, url=None, *args, **kwargs):
        RESULTS["browser_retries"].append(f"{method} {url}: {kwargs.get('error')!r}"[:300])
        return super().increment(method, url, *args, **kwargs)


class Person(HttpUser):
    fixed_count = COUNTS[2]
    wait_time = between(5, 20)
    HTMX: ClassVar[dict] = {"HX-Request": "true"}

    def on_start(self) -> None:
        self.email, self.role = PEOPLE[next(_instants) % len(PEOPLE)]
        self.known: int | None = None
        self.poller = None
        retry = BrowserRetry(total=1, connect=1, read=1, status=0, other=0, allowed_methods=frozenset({"GET"}))
        self.client.mount("http://", LocustHttpAdapter(pool_manager=None, max_retries=retry))
        page = self.client.get("/login", name="sign-in page (GET /login)").text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
            r'value="([^"]+)"[^>]*name="csrf_token"', page)
        with self.client.post("/login", data={"email": self.email, "password": PASSWORD,
                                              "csrf_token": token.group(1) if token else ""},
                              name="sign in (POST /login)", allow_redirects=False, catch_response=True) as answer:
            if answer.status_code != 302:
                RESULTS["sign_in_failures"].append(f"{self.email}: HTTP {answer.status_code}")
                answer.failure(f"sign-in: HTTP {answer.status_code}")
                return
        self.dashboard()
        self.poller = gevent.spawn(self._poll_bell)

    def on_stop(self) -> None:
        if self.poller is not None:
            self.poller.kill(block=False)

    def _poll_bell(self) -> None:
        """The badge's `hx-trigger="every 5s"`: 204 while the count the page shows is right."""
        gevent.sleep(random.uniform(0, BELL_EVERY))
        while True:
            params = {} if self.known is None else {"known": self.known}
            with self.client.get("/notifications/badge", params=params, headers=self.HTMX, catch_response=True,
                                 name="bell poll (GET /notifications/badge)") as answer:
                if answer.status_code == 200:
                    found = re.search(r'"known": (\d+)', answer.text)
                    self.known = int(found.group(1)) if found else self.known
                elif answer.status_code != 204:
                    answer.failure(f"HTTP {answer.status_code} {answer.error!r}"[:300])
            gevent.sleep(BELL_EVERY)

    def _page(self, path: str, name: str, headers: dict | None = None) -> str:
        with self.client.get(path, name=name, headers=headers, catch_response=True, allow_redirects=False) as answer:
            if answer.status_code != 200:
                answer.failure(f"HTTP {answer.status_code} {answer.error!r}"[:300])
            return answer.text or ""

    @task(3)
    def dashboard(self) -> None:
        self._page("/", "dashboard (GET /)")

    @task(2)
    def explorer(self) -> None:
        # A member sees only totals of others: grouping by person or key is theirs alone (a 422 otherwise).
        group = random.choice(["model", "provider", "day", "tag", "department"] +
                              ([] if self.role == "member" else ["user", "key"]))
        html = self._page(f"/usage/?group_by={group}", "explorer (GET /usage/)")
        latency = re.search(r'id="usage-latency-slot" hx-get="([^"]+)"', html)
        if latency:
            self._page(latency.group(1).replace("&amp;", "&"), "explorer latency (GET /usage/latency)", self.HTMX)


@events.quitting.add_listener
def _write_results(environment, **_kwargs) -> None:
    path = os.environ.get("CG_LOAD_RESULTS")
    if path:
        Path(path).write_text(json.dumps(RESULTS))
