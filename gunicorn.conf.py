"""How gunicorn serves Cost Guardian: `make run` and production alike.

    .venv/bin/gunicorn -c gunicorn.conf.py app:app

Threads, not processes, by default: the gateway holds a request open for as
long as a provider streams its answer (minutes for a long completion), so a
worker per request would let a few streams starve every page. `gthread`
serves each connection on a thread of a pool; a held stream costs one idle
thread (it waits on the provider's socket, outside the GIL), and
docs/PERFORMANCE.md ("Gateway") measures pages and the ingest API staying
fast with 100 streams held open. Two processes by default on a machine with
two cores or more: one Python process uses at most one core (the GIL), and
the gateway's throughput grew by a quarter with the second (PERFORMANCE.md).
On the embedded SQLite database the processes share its writer through
SQLite's own locking and the rate-limit counters through a SQLite file of
their own (the default RATELIMIT_STORAGE_URI, costguardian/ratelimit_storage.py);
several hosts need PostgreSQL and Redis (docs/OPERATIONS.md).

Every setting can be changed from the environment:
  GUNICORN_BIND      address (default 127.0.0.1:$PORT, PORT defaulting to 5000)
  WEB_CONCURRENCY    worker processes (2, or 1 on a one-core machine)
  GUNICORN_THREADS   threads per worker: the most requests served at once,
                     held streams included (256)
  GUNICORN_TIMEOUT   seconds a worker may be unresponsive before it is
                     restarted (120; with gthread a long request does not count)
  GUNICORN_ACCESS_LOG  "-" for stdout, a path, or empty for none (empty)
  PROMETHEUS_MULTIPROC_DIR  where the workers keep their metrics, so that a
                     scrape of any worker adds up all of them (with several
                     workers and none set: a new temporary directory)

Cost Guardian writes its own line per request (JSON in production, with the
request id), so gunicorn's access log stays off unless asked for.
"""
import os
import tempfile

bind = os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('PORT', '5000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2, os.cpu_count() or 1))  # (cli_deploy reads it alike)
threads = int(os.environ.get("GUNICORN_THREADS", "256"))
worker_connections = max(1000, threads * 4)  # open connections per worker (idle keep-alive ones included)
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30  # streams in flight get this long to finish on a restart
# An idle kept-alive connection stays open longer than the reverse proxy keeps
# its pooled upstream connections (deploy/nginx.conf: keepalive_timeout 60s;
# Caddy's transport keepalive 60s in deploy/Caddyfile): the proxy must be the
# side that closes, or a request it sends on a connection gunicorn is closing
# at that instant fails (nginx retries only idempotent ones: a POST got a 502).
# The load test (bench/load.py) saw it with the 5 s default and a 5 s poll.
keepalive = 75
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# gunicorn's control socket (`gunicornc`) is one path per user by default, so
# a second server on the same machine (a test, a benchmark) would take it
# over; Cost Guardian does not use it.
control_socket_disable = True

# Metrics of several workers (costguardian/observability/metrics.py): each
# worker writes its values to files in one directory, read together at each
# scrape; prometheus-client reads the variable when first imported, i.e. in
# the workers, which inherit it from here.
if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cg-prometheus-")


def child_exit(server, worker):
    """A worker ended: its live gauges stop counting (its counters stay in the sums)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
