"""The gateway's overhead over calling the provider directly, beside LiteLLM's
proxy, in one run; and whether long streams starve the app.

    .venv/bin/python bench/gateway.py [--requests 500] [--no-litellm] [--database-url URL]
    .venv/bin/python bench/gateway.py --mode streams [--streams 100]

Every server is real and on the loopback: the fake upstream of the tests
(tests/fakes/llm_upstream.py, a threaded werkzeug server in a process of its
own) stands for OpenAI; Cost Guardian runs under gunicorn with gunicorn.conf.py
(what `make run` uses) on a scratch database, with an OpenAI credential in the
vault pointing at the fake, a gateway key, and a hard budget covering every
call, so each call is admitted (reservation), forwarded, recorded (usage event
+ request log) and settled. LiteLLM's proxy (`litellm[proxy]`, installed by
this script in its own virtual environment, bench/.venv-litellm, never a
project dependency) is pointed at the same fake and measured the same way.

Mode `latency` (default): p50/p99 of sequential chat completions (concurrency
1), throughput at concurrency 16 (and its errors), and the time to the first
streamed byte — directly against the fake, through Cost Guardian, through
LiteLLM, and through a bare Flask view relaying with requests under the same
gunicorn settings (the floor of this stack: no key, budget or recording).
Mode `streams`: the idle latency of the dashboard page (signed in)
and of the ingest API, then the same with N streamed calls held open through
the gateway while the fake trickles their tokens.

Not a test: results go to docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LITELLM_VERSION = "1.108.7"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
FAKE_OPENAI_KEY = "sk-fake-openai-3f9c2b7d1e5a8c4f7a21"  # tests/fakes/llm_upstream.OPENAI_KEY
MODEL = "gpt-4o-mini"
PASSWORD = "bench password 1"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-key-7d1e5a8c4f7a21"  # LiteLLM refuses to start without one
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 64}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 60.0, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


def start(args: list[str], env: dict | None = None, log: Path | None = None,
          drop: tuple[str, ...] = ()) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in drop}
    return subprocess.Popen(args, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=ROOT)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


FAKE = """
import sys
sys.path.insert(0, {root!r})
from werkzeug.serving import make_server
from tests.fakes.llm_upstream import FakeLLMUpstream
fake = FakeLLMUpstream()
fake.chunk_delay = {chunk_delay}
make_server("127.0.0.1", {port}, fake._app, threaded=True).serve_forever()
"""


def start_fake(port: int, chunk_delay: float, folder: Path) -> subprocess.Popen:
    process = start([sys.executable, "-c", FAKE.format(root=str(ROOT), port=port, chunk_delay=chunk_delay)],
                    log=folder / "fake.log")
    wait_until_up(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {FAKE_OPENAI_KEY}"})
    return process


# --- Cost Guardian on a scratch database ------------------------------------------------

def seed(upstream: str, database_url: str | None) -> tuple[dict, str, str]:
    """Migrate a scratch database and fill it; returns (the server's
    environment, the gateway key, the ingest key)."""
    from bench.scratch import scratch_app

    base_urls = f"openai={upstream}/v1"
    app, folder, backend = scratch_app(None, database_url, prefix="cg-gateway-", CG_PROVIDER_BASE_URLS=base_urls)
    from costguardian.extensions import db
    from costguardian.services import keys
    from costguardian.services.actor import Actor
    from costguardian.services.budgets import budgets
    from costguardian.services.gateway import vault
    from costguardian.services.team import accounts, orgs

    with app.app_context(), db.connection_context():
        owner = accounts.sign_up("owner@bench.example.com", "Bench Owner", PASSWORD, Actor.system())
        org = orgs.create_organization("Bench", owner, Actor.system())
        actor = Actor(user=owner)
        vault.add(org, actor, "openai", "Production", FAKE_OPENAI_KEY)
        budgets.create(org, actor, {"name": "Hard cap", "amount_usd": "1000000", "enforcement": "hard"})
        gateway_key = keys.create_key(org, actor, "bench gateway", ["gateway"]).plaintext
        ingest_key = keys.create_key(org, actor, "bench ingest", ["ingest"]).plaintext
    # The instance folder holds the secrets and encryption key the server reads too.
    env = {"CG_INSTANCE_PATH": str(folder), "DATABASE_URL": os.environ["DATABASE_URL"],
           "HUEY_URL": os.environ["HUEY_URL"], "CG_PROVIDER_BASE_URLS": base_urls}
    print(f"Cost Guardian: {backend} at {os.environ['DATABASE_URL']}")
    return env, gateway_key, ingest_key


def start_cost_guardian(port: int, env: dict, folder: Path) -> subprocess.Popen:
    process = start([str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                     "--bind", f"127.0.0.1:{port}", "app:app"], env=env, log=folder / "gunicorn.log")
    wait_until_up(f"http://127.0.0.1:{port}/healthz")
    return process


# --- the floor: Flask and requests relaying, nothing else --------------------------------

BARE = """
import requests
from flask import Flask, Response, request

app = Flask(__name__)
session = requests.Session()


@app.post("/v1/chat/completions")
def chat():
    upstream = session.post({upstream!r} + "/v1/chat/completions", data=request.get_data(), stream=True,
                            headers={{"Authorization": request.headers["Authorization"],
                                     "Content-Type": "application/json"}})
    streamed = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
    return Response(upstream.iter_content(chunk_size=None) if streamed else upstream.content,
                    status=upstream.status_code, content_type=upstream.headers.get("Content-Type"))
"""


def start_bare(port: int, upstream: str, folder: Path) -> subprocess.Popen:
    """The same gunicorn settings serving a Flask view that relays the call
    with one shared requests session: no key, budget, routing or recording —
    what this stack costs per call before Cost Guardian does anything."""
    (folder / "bare_relay.py").write_text(BARE.format(upstream=upstream))
    process = start([str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                     "--chdir", str(folder), "--bind", f"127.0.0.1:{port}", "bare_relay:app"],
                    log=folder / "bare.log", drop=("DATABASE_URL", "HUEY_URL", "CG_INSTANCE_PATH"))
    wait_until_up(f"http://127.0.0.1:{port}/nothing-here")
    return process


# --- LiteLLM's proxy, in its own environment ---------------------------------------------

def litellm_binary() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once)…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q",
                              f"litellm[proxy]=={LITELLM_VERSION}"], capture_output=True, text=True)
        if pip.returncode:
            raise SystemExit(f"installing LiteLLM failed:\n{pip.stdout[-2000:]}{pip.stderr[-2000:]}")
    return binary


def start_litellm(port: int, upstream: str, folder: Path) -> subprocess.Popen:
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {FAKE_OPENAI_KEY}\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n")
    process = start([str(litellm_binary()), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                     "--num_workers", "1"], env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
                    log=folder / "litellm.log", drop=("DATABASE_URL", "HUEY_URL", "CG_INSTANCE_PATH"))
    wait_until_up(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return process


# --- measuring ----------------------------------------------------------------------------

class Target:
    def __init__(self, name: str, base: str, key: str):
        self.name, self.base, self.key = name, base, key
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def call(self, stream: bool = False) -> float:
        """Milliseconds to the whole answer (stream=False) or to its first byte."""
        body = {**BODY, "stream": True} if stream else BODY
        started = time.perf_counter()
        with self.session().post(f"{self.base}/chat/completions", json=body, stream=stream, timeout=60,
                                 headers={"Authorization": f"Bearer {self.key}"}) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{self.name}: HTTP {response.status_code} {response.text[:200]}")
            if stream:
                next(response.iter_content(chunk_size=None))
                first = (time.perf_counter() - started) * 1000
                for _ in response.iter_content(chunk_size=None):
                    pass
                return first
            response.content
        return (time.perf_counter() - started) * 1000


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def sequential(target: Target, count: int, stream: bool = False) -> list[float]:
    for _ in range(20):  # warm-up: connections, tokenizer, caches
        target.call(stream)
    return [target.call(stream) for _ in range(count)]


def throughput(target: Target, concurrency: int, seconds: float) -> tuple[float, int, int]:
    """(calls per second, calls, errors) with `concurrency` clients for `seconds`."""
    deadline = time.perf_counter() + seconds
    done, errors = [0] * concurrency, [0] * concurrency

    def client(i: int) -> None:
        while time.perf_counter() < deadline:
            try:
                target.call()
                done[i] += 1
            except Exception:  # counted, and the run goes on
                errors[i] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    elapsed = time.perf_counter() - started
    return sum(done) / elapsed, sum(done), sum(errors)


def latency_mode(args, folder: Path) -> None:
    fake_port, cg_port, litellm_port = free_port(), free_port(), free_port()
    processes = [start_fake(fake_port, 0.0, folder)]
    upstream = f"http://127.0.0.1:{fake_port}"
    try:
        env, gateway_key, _ = seed(upstream, args.database_url)
        processes.append(start_cost_guardian(cg_port, env, folder))
        targets = [Target("direct (fake upstream)", f"{upstream}/v1", FAKE_OPENAI_KEY),
                   Target("Cost Guardian gateway", f"http://127.0.0.1:{cg_port}/v1", gateway_key)]
        if not args.no_bare:
            bare_port = free_port()
            processes.append(start_bare(bare_port, upstream, folder))
            targets.append(Target("bare Flask relay (floor)", f"http://127.0.0.1:{bare_port}/v1", FAKE_OPENAI_KEY))
        if not args.no_litellm:
            processes.append(start_litellm(litellm_port, upstream, folder))
            targets.append(Target(f"LiteLLM proxy {LITELLM_VERSION}", f"http://127.0.0.1:{litellm_port}",
                                  LITELLM_MASTER_KEY))
        results = {}
        for target in targets:
            whole = sequential(target, args.requests)
            first = sequential(target, max(100, args.requests // 2), stream=True)
            rate, calls, errors = throughput(target, 16, args.seconds)
            results[target.name] = (whole, first, rate, calls, errors)
        direct = results[targets[0].name]
        print(f"\n{args.requests} sequential calls each; concurrency 16 for {args.seconds:g} s; "
              f"gunicorn gthread, {os.cpu_count()} cores")
        print(f"{'':27} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'+p99':>7} {'TTFB p50':>9} {'+TTFB':>7} "
              f"{'req/s @16':>10} {'× direct':>9} {'errors':>7}")
        for name, (whole, first, rate, calls, errors) in results.items():
            p50, p99, ttfb = percentile(whole, 50), percentile(whole, 99), percentile(first, 50)
            print(f"{name:27} {p50:8.2f} {p99:8.2f} {p50 - percentile(direct[0], 50):+7.2f} "
                  f"{p99 - percentile(direct[0], 99):+7.2f} {ttfb:9.2f} {ttfb - percentile(direct[1], 50):+7.2f} "
                  f"{rate:10.1f} {rate / direct[2]:9.2f} {errors:7d}")
    finally:
        for process in reversed(processes):
            stop(process)


# --- long streams -----------------------------------------------------------------------

def _signed_in(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page)
    response = session.post(f"{base}/login", data={"email": "owner@bench.example.com", "password": PASSWORD,
                                                  "csrf_token": token.group(1)}, allow_redirects=False)
    if response.status_code != 302:
        raise SystemExit(f"sign-in failed: HTTP {response.status_code}")
    return session


def _page_and_ingest(base: str, session: requests.Session, ingest_key: str, count: int) -> tuple[list, list]:
    pages, ingests = [], []
    for i in range(count):
        started = time.perf_counter()
        assert session.get(f"{base}/").status_code == 200
        pages.append((time.perf_counter() - started) * 1000)
        event = {"events": [{"event_id": f"bench-{time.time_ns()}-{i}", "provider": "openai", "model": MODEL,
                             "input_tokens": 100, "output_tokens": 20}]}
        started = time.perf_counter()
        response = requests.post(f"{base}/api/v1/usage", json=event, timeout=30,
                                 headers={"Authorization": f"Bearer {ingest_key}"})
        assert response.status_code in (200, 207), response.text[:200]
        ingests.append((time.perf_counter() - started) * 1000)
    return pages, ingests


def streams_mode(args, folder: Path) -> None:
    fake_port, cg_port = free_port(), free_port()
    # Each stream: the fake's reply is 16 content events, `chunk_delay` apart.
    processes = [start_fake(fake_port, args.chunk_delay, folder)]
    try:
        env, gateway_key, ingest_key = seed(f"http://127.0.0.1:{fake_port}", args.database_url)
        processes.append(start_cost_guardian(cg_port, env, folder))
        base = f"http://127.0.0.1:{cg_port}"
        session = _signed_in(base)
        _page_and_ingest(base, session, ingest_key, 10)  # warm-up
        idle_pages, idle_ingest = _page_and_ingest(base, session, ingest_key, args.samples)

        held, opened, finished = [], threading.Barrier(args.streams + 1), []

        def hold(i: int) -> None:
            target = Target("gateway", f"{base}/v1", gateway_key)
            body = {**BODY, "stream": True}
            with target.session().post(f"{base}/v1/chat/completions", json=body, stream=True, timeout=300,
                                       headers={"Authorization": f"Bearer {gateway_key}"}) as response:
                chunks = response.iter_content(chunk_size=None)
                next(chunks)
                held.append(i)
                opened.wait()
                for _ in chunks:
                    pass
                finished.append(response.status_code)

        threads = [threading.Thread(target=hold, args=(i,), daemon=True) for i in range(args.streams)]
        for thread in threads:
            thread.start()
        opened.wait(timeout=120)  # every stream has its first byte and is still open
        busy_pages, busy_ingest = _page_and_ingest(base, session, ingest_key, args.samples)
        still_open = args.streams - len(finished)
        for thread in threads:
            thread.join(timeout=300)
        print(f"\n{args.streams} streams held open through the gateway (the fake trickles 16 events "
              f"{args.chunk_delay:g} s apart); {args.samples} samples each; {still_open} streams were still open "
              f"when the loaded samples ended; statuses: {dict(Counter(finished))}")
        print(f"{'':28} {'idle p50':>9} {'idle p95':>9} {'held p50':>9} {'held p95':>9} {'× p50':>7}")
        for name, idle, busy in (("dashboard page (signed in)", idle_pages, busy_pages),
                                 ("ingest API (1 event)", idle_ingest, busy_ingest)):
            print(f"{name:28} {percentile(idle, 50):9.2f} {percentile(idle, 95):9.2f} {percentile(busy, 50):9.2f} "
                  f"{percentile(busy, 95):9.2f} {percentile(busy, 50) / percentile(idle, 50):7.2f}")
    finally:
        for process in reversed(processes):
            stop(process)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the servers started are stopped
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("latency", "streams"), default="latency")
    parser.add_argument("--requests", type=int, default=500, help="sequential calls per target")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the concurrency-16 run")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Flask relay (the stack's floor)")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunk-delay", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cg-bench-gateway-"))
    print(f"logs in {folder}")
    (latency_mode if args.mode == "latency" else streams_mode)(args, folder)


if __name__ == "__main__":
    main()
