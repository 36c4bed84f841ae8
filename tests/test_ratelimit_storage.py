"""The rate-limit storage in a SQLite file (costguardian/ratelimit_storage.py):
the three `limits` strategies the app uses behave as on `limits`' own memory
storage, and several processes share one limit exactly (gunicorn's workers:
per-process counters let N workers through N times the limit)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import time_machine
from limits import RateLimitItemPerMinute, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import (FixedWindowRateLimiter, MovingWindowRateLimiter,
                               SlidingWindowCounterRateLimiter)

from costguardian import ratelimit_storage
from costguardian.ratelimit_storage import SQLiteStorage

MID_MINUTE = datetime(2026, 12, 5, 9, 0, 10, tzinfo=UTC)
STRATEGIES = (FixedWindowRateLimiter, MovingWindowRateLimiter, SlidingWindowCounterRateLimiter)


@pytest.fixture
def storage(tmp_path):
    return storage_from_string(f"cg-sqlite:///{tmp_path}/limits.sqlite")


def test_the_scheme_is_registered_with_limits(storage, tmp_path):
    assert isinstance(storage, SQLiteStorage) and storage.path == f"{tmp_path}/limits.sqlite"
    assert storage.check()
    with pytest.raises(ValueError, match="needs a file"):
        storage_from_string("cg-sqlite://")


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
def test_each_strategy_counts_as_on_the_memory_storage(storage, strategy):
    """The same hits against the same limit, on this storage and on limits'
    own memory storage, at the same moments: the same answers, the same
    remaining counts and reset times."""
    item = RateLimitItemPerMinute(5)
    ours, theirs = strategy(storage), strategy(MemoryStorage())
    moments = [MID_MINUTE + timedelta(seconds=s) for s in (0, 1, 2, 3, 4, 5, 6, 30, 49, 51, 55, 70, 95, 130)]
    seen = []
    with time_machine.travel(moments[0], tick=False) as traveller:
        for moment in moments:
            traveller.move_to(moment)
            answers = []
            for limiter in (ours, theirs):
                hit = limiter.hit(item, "key", "a")
                stats = limiter.get_window_stats(item, "key", "a")
                answers.append((hit, stats.remaining, round(stats.reset_time, 3), limiter.test(item, "key", "a")))
            assert answers[0] == answers[1], (moment, answers)
            seen.append(answers[0][0])
    assert True in seen and False in seen  # the limit was reached and later let calls through again


def test_hits_of_several_at_once_and_a_cost_over_the_limit(storage):
    fixed, sliding = FixedWindowRateLimiter(storage), SlidingWindowCounterRateLimiter(storage)
    item = parse("10/minute")
    with time_machine.travel(MID_MINUTE, tick=False):
        assert fixed.hit(item, "tokens", cost=7) and fixed.hit(item, "tokens", cost=3)
        assert not fixed.hit(item, "tokens", cost=1)
        assert not sliding.hit(item, "requests", cost=11)  # more than the limit itself: never
        assert sliding.hit(item, "requests", cost=10) and not sliding.hit(item, "requests")
        # a refused fixed-window hit still counts, as on limits' memory storage
        assert storage.get(item.key_for("tokens")) == 11


def test_clear_and_reset(storage):
    moving, fixed = MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage)
    item = parse("1/minute")
    assert moving.hit(item, "a") and fixed.hit(item, "b")
    assert not moving.hit(item, "a") and not fixed.hit(item, "b")
    moving.clear(item, "a")
    assert moving.hit(item, "a") and not fixed.hit(item, "b")  # only that key
    assert storage.reset() >= 2
    assert fixed.hit(item, "b") and moving.hit(item, "a")


def test_key_prefixes_keep_two_apps_apart(tmp_path):
    uri = f"cg-sqlite:///{tmp_path}/limits.sqlite"
    one, two = storage_from_string(uri, key_prefix="one"), storage_from_string(uri, key_prefix="two")
    item = parse("1/minute")
    assert FixedWindowRateLimiter(one).hit(item, "k")
    assert FixedWindowRateLimiter(two).hit(item, "k")
    assert not FixedWindowRateLimiter(one).hit(item, "k")


def test_expired_counters_and_window_entries_are_swept(storage):
    """Keys never used again (a sign-in limit per typed email address) do not
    stay for ever: their rows go once their windows have passed."""
    moving = MovingWindowRateLimiter(storage)
    with time_machine.travel(MID_MINUTE, tick=False) as traveller:
        storage.incr("old", 60)
        assert moving.hit(parse("5/minute"), "typed-once@example.com")
        traveller.shift(timedelta(seconds=ratelimit_storage.PRUNE_EVERY + 61))
        storage.incr("new", 60)
        assert moving.hit(parse("5/minute"), "another@example.com")
    db = storage._connection()
    assert [key for (key,) in db.execute("SELECT key FROM counters")] == ["new"]
    [kept] = [key for (key,) in db.execute("SELECT key FROM window_entries")]
    assert "another@example.com" in kept


RACER = textwrap.dedent("""
    import sys, time
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import {strategy}
    import costguardian.ratelimit_storage  # registers cg-sqlite://
    limiter = {strategy}(storage_from_string(sys.argv[1]))
    item = parse("40/hour")
    while time.time() < float(sys.argv[2]):  # start together
        pass
    print(sum(limiter.hit(item, "shared") for _ in range(100)))
""")


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
def test_four_processes_share_one_limit_exactly(tmp_path, strategy):
    """Four processes (as gunicorn's workers would) hit one limit of 40 a
    hundred times each, at once: 40 hits get through in all, not 40 each."""
    uri = f"cg-sqlite:///{tmp_path}/limits.sqlite"
    storage_from_string(uri)  # the file and its tables, before the race
    start = str(time.time() + 1.5)
    code = RACER.format(strategy=strategy.__name__)
    racers = [subprocess.Popen([sys.executable, "-c", code, uri, start], stdout=subprocess.PIPE, text=True)
              for _ in range(4)]
    admitted = [int(racer.communicate(timeout=120)[0]) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert sum(admitted) == 40, admitted


def test_two_gunicorn_workers_keep_one_sign_in_limit_by_default(tmp_path, backend):
    """gunicorn with two workers on the embedded defaults (no
    RATELIMIT_STORAGE_URI: the SQLite file in the instance folder): the
    sign-in limit of 3 a minute lets 3 attempts through in all, though both
    workers answered (each with memory:// would let 3 through)."""
    if backend == "postgres":
        pytest.skip("the embedded default: the SQLite pass covers it")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    access = tmp_path / "access.log"
    env = {**{k: v for k, v in os.environ.items() if k not in ("RATELIMIT_STORAGE_URI", "PROMETHEUS_MULTIPROC_DIR")},
           "CG_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/cg.db",
           "HUEY_URL": f"sqlite:///{tmp_path}/huey.db", "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "GUNICORN_THREADS": "4", "GUNICORN_ACCESS_LOG": str(access), "CG_LOG_LEVEL": "WARNING",
           "CG_ENV": "development", "LOGIN_LIMIT_PER_IP": "3 per minute", "LOGIN_LIMIT_PER_ACCOUNT": "100 per minute"}
    flask = str(Path(sys.executable).parent / "flask")
    subprocess.run([flask, "--app", "app", "migrate"], cwd=root, env=env, check=True, capture_output=True)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", "--access-logformat", "%(p)s %(s)s", "app:app"],
                              cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def served(lines: int = 0) -> list[tuple[str, str]]:
        """The access log's lines, waiting for `lines` of them (gunicorn writes a
        line just after its answer was sent)."""
        deadline = time.monotonic() + 10
        while True:
            found = [tuple(line.split()) for line in (access.read_text() if access.exists() else "").split("\n")
                     if line.strip()]
            if len(found) >= lines or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            try:
                if requests.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        browser = requests.Session()
        form = browser.get(url + "/login", timeout=30).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form) or re.search(
            r'value="([^"]+)"[^>]*name="csrf_token"', form)
        sent = 0
        while sent < 12 or (len({pid for pid, _ in served()[2:]}) < 2 and sent < 200):
            answer = browser.post(url + "/login", timeout=30, headers={"Connection": "close"},  # a new connection each
                                  data={"email": "someone@example.com", "password": "wrong", "csrf_token": token[1]})
            assert answer.status_code in (422, 429), answer.status_code
            sent += 1
        lines = served(2 + sent)[2:]  # (after the /healthz probe and the form)
        attempts = [status for _, status in lines]
        assert len({pid for pid, _ in lines}) == 2, lines
        assert len(attempts) == sent and attempts.count("429") == sent - 3, attempts
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "Traceback" not in output, output
