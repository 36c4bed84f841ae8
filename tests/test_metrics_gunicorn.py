"""Metrics under real gunicorn with two worker processes: whichever worker
answers a scrape, the counts are those of all workers together
(prometheus-client's multiprocess mode, set up by gunicorn.conf.py)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HEALTHZ = re.compile(r'cg_http_requests_total\{endpoint="health.healthz",method="GET",status="2xx"\} ([0-9.e+]+)')


def _healthz_count(url: str) -> float:
    found = _HEALTHZ.search(requests.get(url + "/metrics", timeout=30).text)
    return float(found.group(1)) if found else 0.0


def _served_by_each_worker(metrics_dir: Path, scratch: Path) -> dict[str, float]:
    """/healthz answers per worker, read from each worker's own file alone."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    served = {}
    for path in metrics_dir.glob("counter_*.db"):
        alone = scratch / path.stem
        alone.mkdir(exist_ok=True)
        (alone / path.name).write_bytes(path.read_bytes())
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        found = _HEALTHZ.search(generate_latest(registry).decode())
        served[path.stem] = float(found.group(1)) if found else 0.0
    return served


def _get_healthz(url: str) -> None:
    answer = requests.get(url + "/healthz", headers={"Connection": "close"}, timeout=30)  # a new connection each
    assert answer.status_code == 200


def test_two_workers_add_up_in_every_scrape(tmp_path, backend):
    if backend == "postgres":
        pytest.skip("independent of the database: the SQLite pass covers it")
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = _free_port()
    env = {**os.environ, "CG_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/cg.db",
           "HUEY_URL": f"sqlite:///{tmp_path}/huey.db", "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "GUNICORN_THREADS": "4", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "CG_LOG_LEVEL": "WARNING",
           "CG_ENV": "development", "RATELIMIT_STORAGE_URI": "memory://"}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        # Both workers have loaded the app once each wrote its metric files.
        while len({p.name.rsplit("_", 1)[1] for p in metrics_dir.glob("*.db")}) < 2:
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start two workers"
            time.sleep(0.1)
        before = _healthz_count(url)
        sent = 0
        for _ in range(REQUESTS):
            _get_healthz(url)
            sent += 1
        # Until both workers answered some (the second may have been slow to start).
        while sum(1 for n in _served_by_each_worker(metrics_dir, tmp_path).values() if n) < 2 and sent < 400:
            _get_healthz(url)
            sent += 1
        served = _served_by_each_worker(metrics_dir, tmp_path)
        assert sum(1 for n in served.values() if n) == 2, served
        counts = {_healthz_count(url) for _ in range(6)}  # scrapes answered by either worker
        assert counts == {before + sent} and sum(served.values()) == before + sent
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "Traceback" not in output, output
