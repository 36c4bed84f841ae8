"""Background work through a real Huey consumer process on the real queue
(SQLite file, or Redis on the PostgreSQL pass): nothing queued is lost while
the worker is down."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


from costguardian.extensions import db
from costguardian.models import OutboxMessage
from costguardian.services.notifications import mail

ROOT = Path(__file__).resolve().parent.parent



def _status(message_id: int) -> str:
    with db.connection_context():
        return OutboxMessage.get_by_id(message_id).status


def test_email_queued_while_the_worker_is_down_is_sent_when_it_starts(app, real_queue):
    with app.app_context(), db.connection_context():
        message = mail.send_email("ops@example.com", "Queued while down", "hello from the queue")
    assert real_queue.pending_count() == 1
    time.sleep(1.5)
    assert _status(message.id) == "queued"  # no worker: nothing happened, nothing lost

    consumer = subprocess.Popen(
        # --no-periodic: a consumer running across a minute boundary enqueues the periodic
        # tasks, which would still be pending when it stops (2 == 0 at such minutes).
        [sys.executable, "-m", "huey.bin.huey_consumer", "tasks.huey", "--workers", "1",
         "--worker-type", "thread", "--max-delay", "0.2", "--no-periodic"],
        cwd=ROOT, env={**os.environ, "MAIL_URL": "console://"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _status(message.id) != "sent" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        consumer.terminate()
        output, _ = consumer.communicate(timeout=20)
    assert _status(message.id) == "sent", output
    assert "Subject: Queued while down" in output and "hello from the queue" in output
    assert real_queue.pending_count() == 0
