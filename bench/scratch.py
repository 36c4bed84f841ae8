"""The scratch app the benchmarks run against, and their timing helpers.

    from bench.scratch import p95, scratch_app, timed
    app, instance, backend = scratch_app(args.instance, args.database_url, prefix="cg-dashboard-")

`scratch_app` points the app at an instance folder (a new temporary one
unless given) holding the database (SQLite unless a database URL is given),
the Huey queue and the secrets, then creates the app and migrates. The
environment is set before costguardian is imported, because the app reads
its configuration from it.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path


def scratch_app(instance: str | Path | None = None, database_url: str | None = None, prefix: str = "cg-bench-",
                **config):
    """(app, instance folder, "SQLite" or "PostgreSQL"): a migrated app on a scratch database."""
    folder = Path(instance) if instance else Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["CG_INSTANCE_PATH"] = str(folder)
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{folder}/bench.db"
    os.environ["HUEY_URL"] = f"sqlite:///{folder}/huey.db"

    from costguardian import create_app
    from costguardian.db import migrate
    from costguardian.extensions import db

    app = create_app({"RATELIMIT_ENABLED": False, **config})
    migrate(db.obj)
    backend = "PostgreSQL" if os.environ["DATABASE_URL"].startswith("postgres") else "SQLite"
    return app, folder, backend


def timed(fn, repeat: int) -> list[float]:
    """Milliseconds of each of `repeat` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) > 1 else samples[0]


def seeded_demo(instance: Path, events: int):
    """(sign-in credentials, organization): the demo organization, seeded on
    first use and topped up to `events` usage events through the ingest
    service. Call it inside an app context with a database connection."""
    from costguardian.models import Organization, UsageEvent
    from costguardian.services.demo import seed as demo, usage as demo_usage

    credentials = demo.seed(instance)
    org = Organization.get(Organization.name == demo.DEMO_ORG)
    have = UsageEvent.in_org(org).count()
    if have < events:
        started = time.monotonic()
        demo_usage.generate(org, events - have, seed=len(str(have)) + have)
        print(f"seeded {events - have:,} events in {time.monotonic() - started:.0f} s")
    return credentials, org


def signed_in(app, email: str, password: str):
    """A test client of `app` signed in through the login form."""
    import re

    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, "sign-in failed"
    return client
