"""Server time of the foundation's pages, beside a baseline in the same run.

    .venv/bin/python bench/pages.py [--audit-rows 100000] [--database-url URL]

Builds a scratch database (SQLite by default), fills an organization with members
and audit rows, then times requests through the WSGI app in-process (no network),
and prints p50/p95 per page and the ratio to /healthz (the do-nothing baseline).
Not a test: results go to docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--audit-rows", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="cg-bench-")
    os.environ.setdefault("CG_INSTANCE_PATH", tmp)
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench.db"
    os.environ["HUEY_URL"] = f"sqlite:///{tmp}/huey.db"

    from costguardian import clock, create_app
    from costguardian.db import migrate
    from costguardian.extensions import db
    from costguardian.models import AuditLog, Membership, User
    from costguardian.services.team import accounts, orgs
    from costguardian.services.actor import Actor

    app = create_app({"SECRET_KEY": "bench", "RATELIMIT_ENABLED": False})
    migrate(db.obj)
    with db.connection_context():
        for model in (AuditLog, Membership):
            model.delete().execute()
        User.delete().execute()
        owner = accounts.sign_up("owner@bench.example.com", "Owner", "bench password 1", Actor.system())
        org = orgs.create_organization("Bench", owner, Actor.system())
        password_hash = owner.password_hash
        with db.atomic():
            users = [User(email=f"m{i}@bench.example.com", name=f"Member {i}", password_hash=password_hash)
                     for i in range(args.members)]
            User.bulk_create(users, batch_size=500)
            Membership.insert_many(
                [{"organization": org.id, "user": u.id, "role": "member", "created_at": clock.now()}
                 for u in User.select().where(User.id != owner.id)]).execute()
            now = clock.now()
            rows = [{"organization": org.id, "actor": owner.id, "action": "bench.event", "detail": {"i": i},
                     "created_at": now} for i in range(args.audit_rows)]
            for start in range(0, len(rows), 5000):
                AuditLog.insert_many(rows[start:start + 5000]).execute()

    client = app.test_client()
    response = client.post("/login", data={"email": "owner@bench.example.com", "password": "bench password 1",
                                           "csrf_token": _token(client)})
    assert response.status_code == 302, response.status_code

    pages = {
        "/healthz (baseline)": "/healthz",
        "/login (anonymous page)": None,
        "/ dashboard": "/",
        f"/members/ ({args.members + 1} members, page 1)": "/members/",
        "/members/ last page (htmx)": f"/members/?page={(args.members + 1 + 49) // 50}",
        "/members/ search (htmx)": "/members/?q=member+99",
        "/notifications/badge (the 5 s poll)": "/notifications/badge?known=0",
        "/notifications/": "/notifications/",
        "/budgets/": "/budgets/",
        "/team/ analytics": "/team/",
        "/team/activity": "/team/activity",
        "/departments/": "/departments/",
        f"/audit/ page 1 of {args.audit_rows:,} rows": "/audit/",
        "/audit/ page 100 (htmx)": "/audit/?page=100",
        "/settings/": "/settings/",
    }
    anonymous = app.test_client()
    results = {}
    for label, path in pages.items():
        if path is None:
            fn = lambda: anonymous.get("/login")  # noqa: E731
        else:
            headers = {"HX-Request": "true"} if "htmx" in label or "poll" in label else {}
            fn = lambda p=path, h=headers: client.get(p, headers=h)  # noqa: E731
        assert fn().status_code in (200, 204), label  # warm-up, and proof the page itself was timed
        results[label] = timed(fn, args.repeat)

    sign_in = timed(lambda: accounts._check_password(owner, "bench password 1"), 20)

    baseline = statistics.median(results["/healthz (baseline)"])
    backend = "PostgreSQL" if os.environ["DATABASE_URL"].startswith("postgres") else "SQLite"
    print(f"backend: {backend}; {args.repeat} requests per page, in-process WSGI (server time only)")
    print(f"{'page':45} {'p50 ms':>8} {'p95 ms':>8} {'× baseline':>11}")
    for label, samples in results.items():
        p50 = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[18]
        print(f"{label:45} {p50:8.2f} {p95:8.2f} {p50 / baseline:11.1f}")
    print(f"{'argon2id password check (sign-in cost)':45} {statistics.median(sign_in):8.2f}")


def _token(client) -> str:
    html = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


if __name__ == "__main__":
    main()
