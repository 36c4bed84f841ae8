"""Ingest throughput through POST /api/v1/usage over real HTTP, beside its baseline.

    .venv/bin/python bench/ingest.py [--events 100000] [--database-url postgresql://…] [--clients 2]

Starts gunicorn serving the app on a scratch database, creates an organization
and an ingest key, then sends:
  1. batches of 500 events (pricing, rollups and all), from `--clients` client
     threads: events/s and per-batch p50/p95/p99 latency;
  2. the baseline: one event per request, same clients: events/s.
Prints the ratio. Client and server share this machine's cores. Not a test:
results go to docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"),
          ("google", "gemini-2.5-flash"), ("mistral", "mistral-small-latest"), ("deepseek", "deepseek-chat")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_event(rng: random.Random, prefix: str, n: int) -> dict:
    provider, model = rng.choice(MODELS)
    inp = rng.randint(200, 8000)
    return {"event_id": f"{prefix}-{n}", "provider": provider, "model": model, "input_tokens": inp,
            "cache_read_tokens": rng.randint(0, inp // 3), "output_tokens": rng.randint(20, 1500),
            "user": f"customer-{rng.randrange(500)}", "tags": {"feature": rng.choice(["chat", "search"])},
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(time.time() - rng.randrange(30 * 86400)))}


def run_clients(url: str, key: str, bodies: list, clients: int) -> tuple[float, list[float]]:
    """Send every body once, split over `clients` threads; (elapsed s, latencies ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [bodies[i::clients] for i in range(clients)]

    def client(chunk):
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {key}"})
        mine = []
        for body in chunk:
            started = time.perf_counter()
            response = session.post(url, json=body, timeout=60)
            mine.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"HTTP {response.status_code}: {response.text[:300]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000, help="events sent in batches")
    parser.add_argument("--single", type=int, default=3_000, help="events sent one per request (baseline)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (SQLite: keep 1)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--database-url")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="cg-bench-ingest-")
    env = {**os.environ, "CG_INSTANCE_PATH": tmp, "HUEY_URL": f"sqlite:///{tmp}/huey.db",
           "DATABASE_URL": args.database_url or f"sqlite:///{tmp}/bench.db", "SECRET_KEY": "bench",
           "PYTHONPATH": str(ROOT)}
    python = sys.executable
    setup = (
        "from costguardian import create_app\n"
        "from costguardian.db import migrate\n"
        "from costguardian.extensions import db\n"
        "from costguardian.services import keys\nfrom costguardian.services.team import accounts, orgs\n"
        "from costguardian.services.actor import Actor\n"
        "app = create_app(); migrate(db.obj)\n"
        "with app.app_context(), db.connection_context():\n"
        "    import uuid; tag = uuid.uuid4().hex[:6]\n"
        "    u = accounts.sign_up(f'bench-{tag}@bench.example.com', 'B', 'bench password 1', Actor.system())\n"
        "    o = orgs.create_organization('Bench ' + tag, u, Actor.system())\n"
        "    print(keys.create_key(o, Actor.system(), 'bench', ['ingest']).plaintext)\n"
    )
    key = subprocess.run([python, "-c", setup], env=env, cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [str(Path(python).parent / "gunicorn"), "--workers", str(args.workers), "--threads", str(args.threads),
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "app:app"],
        env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/api/v1/usage"
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except requests.RequestException:  # not listening yet, or still importing
                time.sleep(0.1)
        rng = random.Random(1)
        run_id = f"b{int(time.time())}"
        batches = [{"events": [make_event(rng, run_id, b * args.batch + i) for i in range(args.batch)]}
                   for b in range(args.events // args.batch)]
        singles = [make_event(rng, run_id + "s", n) for n in range(args.single)]
        run_clients(url, key, batches[:2], 1)  # warm-up (also primes the price cache)
        batched_s, latencies = run_clients(url, key, batches[2:], args.clients)
        single_s, single_lat = run_clients(url, key, singles, args.clients)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    sent = (len(batches) - 2) * args.batch
    batched_rate, single_rate = sent / batched_s, len(singles) / single_s
    backend = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
    print(f"backend {backend}; gunicorn {args.workers} worker(s) × {args.threads} threads; {args.clients} clients")
    print(f"batches of {args.batch}: {sent:,} events in {batched_s:.1f} s = {batched_rate:,.0f} events/s; "
          f"per batch p50 {percentile(latencies, 50):.0f} ms, p95 {percentile(latencies, 95):.0f} ms, "
          f"p99 {percentile(latencies, 99):.0f} ms")
    print(f"one event per request (baseline): {len(singles):,} events in {single_s:.1f} s = "
          f"{single_rate:,.0f} events/s; p50 {percentile(single_lat, 50):.1f} ms")
    print(f"ratio batched / single: {batched_rate / single_rate:.1f}x")


if __name__ == "__main__":
    main()
