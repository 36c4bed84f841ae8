"""A process of gateway calls, for tests/test_gateway_leases.py: threads that
each admit a call as the gateway's view does (inside the organization's
settings pin, so leases are used), wait as for the provider, and record the
call through the gateway's recording (which lowers the call's leases in the
transaction that counts its cost), on the test's database (DATABASE_URL).
Prints one JSON line: how many calls were admitted by lease or by a
reservation of their own, how many were refused, and any error. Its leases
are given back when it exits, as a gunicorn worker's are.

    python -m tests.lease_worker ORG_ID THREADS CALLS SEED
"""
from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid

from cryptography.fernet import Fernet

from costguardian import clock, create_app, settings_cache
from costguardian.db import connected
from costguardian.extensions import db
from costguardian.models import Organization
from costguardian.services.gateway import admission, recording

PROMPT = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
MAX_TOKENS = 1000


def call(org) -> admission.Call:
    return admission.Call(org=org, api_key=None, provider="openai", model="gpt-4o", user=None, department_id=None,
                          body={"model": "gpt-4o", "messages": PROMPT, "max_tokens": MAX_TOKENS})


def main() -> None:
    org_id, threads, calls, seed = (int(value) for value in sys.argv[1:5])
    app = create_app({"TESTING": True, "SECRET_KEY": "lease-worker", "MAIL_URL": "console://",
                      "CG_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    counts = {"lease": 0, "reservation": 0, "blocked": 0}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads, timeout=60)

    def run(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        try:
            with app.app_context(), connected(db):
                org = Organization.get_by_id(org_id)
                start.wait()
                for _ in range(calls):
                    with settings_cache.pinned(org_id):
                        try:
                            granted = admission.admit(call(org))
                        except admission.Blocked:
                            with lock:
                                counts["blocked"] += 1
                            continue
                    with lock:
                        counts["lease" if granted.leases else "reservation"] += 1
                    time.sleep(rng.random() / 500)  # the provider answers
                    output = rng.randint(1, MAX_TOKENS)
                    recording.record(recording.CallRecord(
                        request_id=f"gw_{uuid.uuid4().hex}", org=org, api_key=None, endpoint="chat",
                        started_at=clock.now(), requested_model="gpt-4o", provider="openai", model="gpt-4o",
                        forwarded=True, usage={"prompt_tokens": granted.input_tokens_estimate,
                                               "completion_tokens": output,
                                               "total_tokens": granted.input_tokens_estimate + output}), granted)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            with lock:
                errors.append(f"thread {n}: {type(exc).__name__}: {exc}")
            start.abort()

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    print(json.dumps({**counts, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
