"""Every page that lists members or offers a member/user/department choice,
timed with an organization of 10,000 members.

    .venv/bin/python bench/members.py [--members 10000] [--repeat 20] [--database-url URL]

Seeds a scratch database (SQLite unless --database-url): one organization,
its members (users and memberships bulk-inserted, the rows `orgs.add_member`
writes) spread over departments, and usage through the ingest service for a
sample of them. Then times each page through the WSGI app in-process (server
time only) and prints p50/p95 and the size of the HTML sent.
Not a test: results go to docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import p95, scratch_app, signed_in, timed  # noqa: E402

PASSWORD = "bench password 1"


def seed(members: int, departments: int, with_usage: int) -> dict:
    from costguardian import clock
    from costguardian.extensions import db
    from costguardian.models import Department, Membership, User
    from costguardian.services.actor import Actor
    from costguardian.services.team import accounts, departments as department_service, orgs
    from costguardian.services.usage import ingest

    started = time.monotonic()
    owner = accounts.sign_up("owner@bench.example.com", "Owner", PASSWORD, Actor.system())
    org = orgs.create_organization("Bench", owner, Actor.system())
    actor = Actor.system()
    depts = [department_service.create(org, actor, f"Department {d:02d}") for d in range(departments)]
    now = clock.now()
    users = [{"email": f"m{i:05d}@bench.example.com", "name": f"Member {i:05d}",
              "password_hash": owner.password_hash, "created_at": now} for i in range(members)]
    with db.atomic():
        for start in range(0, len(users), 1000):  # PostgreSQL takes at most 65,535 parameters a statement
            User.insert_many(users[start:start + 1000]).execute()
    ids = [u for (u,) in User.select(User.id).where(User.email.startswith("m")).order_by(User.id).tuples()]
    with db.atomic():
        rows = [{"organization": org.id, "user": uid, "role": "member",
                 "department": depts[i % departments].id if i % 10 else None,  # a tenth in no department
                 "created_at": now - timedelta(days=i % 90)} for i, uid in enumerate(ids)]
        for start in range(0, len(rows), 1000):
            Membership.insert_many(rows[start:start + 1000]).execute()
    # usage of a sample: every (members // with_usage)-th member, 4 events each, over the last days
    events = []
    step = max(1, members // with_usage)
    for n, i in enumerate(range(0, members, step)):
        for k in range(4):
            events.append({"event_id": f"bench-{i}-{k}", "provider": "openai", "model": "gpt-4o-mini",
                           "input_tokens": 1000 + k, "output_tokens": 200,
                           "user": f"m{i:05d}@bench.example.com",
                           "occurred_at": (now - timedelta(hours=k * 7 + n % 24)).isoformat() + "Z"})
    for start in range(0, len(events), 500):
        result = ingest.ingest(org, None, events[start:start + 500], now=now)
        assert result.count("accepted") == len(events[start:start + 500]), "events refused"
    biggest = Department.get(Department.id == depts[1].id)
    print(f"seeded {members:,} members, {departments} departments, {len(events):,} events "
          f"in {time.monotonic() - started:.0f} s")
    return {"org": org, "department": biggest,
            "dept_members": Membership.select().where(Membership.department == biggest).count()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--departments", type=int, default=20)
    parser.add_argument("--with-usage", type=int, default=1000, help="members with usage")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--instance")
    parser.add_argument("--database-url")
    args = parser.parse_args()

    app, _instance, backend = scratch_app(args.instance, args.database_url, prefix="cg-members-",
                                          SECRET_KEY="bench")
    import logging

    from costguardian.extensions import db

    logging.getLogger("costguardian").setLevel(logging.WARNING)  # one line per request would drown the figures
    with app.app_context(), db.connection_context():
        seeded = seed(args.members, args.departments, args.with_usage)
    client = signed_in(app, "owner@bench.example.com", PASSWORD)
    dept = seeded["department"].id
    pages = {
        "/members/ page 1": ("/members/", {}),
        "/members/?q= search (htmx)": ("/members/?q=member+0999", {"HX-Target": "members-table",
                                                                  "HX-Request": "true"}),
        "/team/ analytics": ("/team/", {}),
        f"/departments/{{id}} ({seeded['dept_members']} members)": (f"/departments/{dept}", {}),
        "/departments/ (create form)": ("/departments/", {}),
        "/budgets/new (scope pickers)": ("/budgets/new", {}),
        "/usage/ explorer (user filter)": ("/usage/", {}),
        "/keys/ (member binding)": ("/keys/", {}),
    }
    optional = {
        "/members/pick?q= (picker, 20 matches)": ("/members/pick?q=member+09", {"HX-Request": "true"}),
        "/usage/users?user= (explorer picker)": ("/usage/users?field=user&user=m09", {"HX-Request": "true"}),
    }
    for label, page in optional.items():
        if client.get(page[0], headers=page[1]).status_code == 200:
            pages[label] = page
    results, sizes = {}, {}
    for label, (path, headers) in pages.items():
        response = client.get(path, headers=headers)  # warm-up, and proof the page itself was timed
        assert response.status_code == 200, (label, response.status_code)
        sizes[label] = len(response.data)
        results[label] = timed(lambda p=path, h=headers: client.get(p, headers=h), args.repeat)

    print(f"backend: {backend}; {args.members:,} members; {args.repeat} requests per page, in-process WSGI")
    print(f"{'page':48} {'p50 ms':>8} {'p95 ms':>8} {'KiB':>8}")
    for label, samples in results.items():
        print(f"{label:48} {statistics.median(samples):8.1f} {p95(samples):8.1f} {sizes[label] / 1024:8.0f}")


if __name__ == "__main__":
    main()
