"""SQLite's writers of one process take turns on a lock
(db.SerializedSqliteDatabase) instead of sleeping in SQLite's busy handler:
concurrent write transactions all commit, a failed one releases the lock,
and a writer that cannot get it in time fails as SQLite would. Between
processes the turn is an flock beside the database (db.HostWriterLock)."""
from __future__ import annotations

import threading
import time

import pytest
from peewee import OperationalError

from costguardian.db import SAFETY_CHECKPOINT_PAGES, SerializedSqliteDatabase, connected, write_transaction
from costguardian.extensions import db
from costguardian.models import Department


@pytest.fixture
def serialized(backend):
    if backend != "sqlite":
        pytest.skip("PostgreSQL locks rows, not the database")
    assert isinstance(db.obj, SerializedSqliteDatabase)
    return db.obj


def test_concurrent_write_transactions_all_commit_and_a_failed_one_lets_go(app, make_user, make_org, serialized):
    org = make_org("Acme", make_user("owner@acme.example.com"))
    errors = []

    def writer(n: int) -> None:
        try:
            with app.app_context(), connected(db):
                for i in range(15):
                    try:
                        with write_transaction():
                            Department.create(organization=org, name=f"T{n}-{i}", name_key=f"t{n}-{i}")
                            if i % 5 == 4:
                                raise RuntimeError("rolled back")
                    except RuntimeError:
                        pass
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert Department.in_org(org).count() == 8 * 12  # three of each fifteen rolled back
    assert not serialized._writer.locked()


def test_a_writer_waiting_longer_than_the_busy_timeout_gets_database_is_locked(app, serialized, monkeypatch):
    monkeypatch.setattr(serialized, "_writer_timeout", 0.2)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with app.app_context(), connected(db), write_transaction():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(OperationalError, match="database is locked"):
            with write_transaction():
                pass
    finally:
        release.set()
        thread.join(10)
    with write_transaction():  # free again
        assert Department.select().count() >= 0
    assert not serialized._writer.locked()


def test_the_write_ahead_log_is_checkpointed_by_a_thread_not_by_commits(app, serialized, make_user, make_org):
    """Connections of the process leave checkpoints to the checkpointer
    thread (db.Checkpointer): a commit never stalls on copying the log."""
    assert db.obj.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_CHECKPOINT_PAGES
    checkpointer = serialized._checkpointing()
    assert checkpointer.thread.is_alive() and serialized._checkpointing() is checkpointer  # one per file
    copied = checkpointer.copied
    org = make_org("Acme", make_user("owner@acme.example.com"))
    for i in range(200):  # commits that fill the log
        with write_transaction():
            Department.create(organization=org, name=f"D{i}" + "x" * 2000, name_key=f"d{i}")
    deadline = time.monotonic() + 10
    while checkpointer.copied == copied and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointer.copied > copied  # the thread copied the log
    while time.monotonic() < deadline:  # and nothing is left to copy (retried while the thread holds it)
        busy, in_log, done = checkpointer.checkpoint()
        if busy == 0:
            break
        time.sleep(0.05)
    assert busy == 0 and done == in_log


def test_closing_every_connection_stops_the_checkpointer_and_the_next_one_starts_another(app, serialized):
    first = serialized._checkpointing()
    serialized.close_all()
    first.thread.join(5)
    assert not first.thread.is_alive()
    with connected(db):
        db.obj.execute_sql("SELECT 1")
        second = serialized._checkpointing()
    assert second is not first and second.thread.is_alive()


# --- between processes: the flock beside the database (db.HostWriterLock) -----------------

HOLDER = """
import sys, sqlite3
sys.path.insert(0, {root!r})
from costguardian.db import HostWriterLock
lock = HostWriterLock({path!r})
assert lock.acquire(30)
conn = sqlite3.connect({database!r}, isolation_level=None) if {database!r} else None
if conn is not None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES ('holder')")
print("held", flush=True)
sys.stdin.readline()
if conn is not None:
    conn.execute("COMMIT")
lock.release()
print("released", flush=True)
print("again" if lock.acquire(float(sys.stdin.readline() or 0)) else "refused", flush=True)
"""


def _holder(tmp_path, path: str, database: str = ""):
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    process = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=root, path=path, database=database)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def _tell(process, line: str = "") -> str:
    process.stdin.write(line + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_a_write_waits_for_another_processs_commit_in_the_host_lock_not_in_sqlites_busy_handler(tmp_path):
    """Here SQLite's busy timeout is 0: a BEGIN IMMEDIATE meeting the other
    process's write lock would fail at once. It succeeds, after that commit,
    because the writer waited for the flock first."""
    import sqlite3

    path = str(tmp_path / "t.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = wal")
        conn.execute("CREATE TABLE t (who TEXT)")
    database = SerializedSqliteDatabase(path, pragmas={"journal_mode": "wal", "busy_timeout": 0},
                                        check_same_thread=False)
    holder = _holder(tmp_path, path + "-writer.lock", path)
    outcome = []

    def write() -> None:
        try:
            with database.connection_context(), database.atomic("IMMEDIATE"):
                database.execute_sql("INSERT INTO t VALUES ('waiter')")
            outcome.append("committed")
        except Exception as exc:  # noqa: BLE001 (asserted below)
            outcome.append(repr(exc))

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and outcome == []  # waiting for the other process
    assert _tell(holder) == "released"
    thread.join(10)
    assert outcome == ["committed"]
    with database.connection_context():
        assert [row[0] for row in database.execute_sql("SELECT who FROM t")] == ["holder", "waiter"]
    assert _tell(holder, "5") == "again"  # the waiter let go at its commit
    holder.wait(10)
    database.close_all()


def test_a_wait_given_up_does_not_keep_the_lock_when_it_comes(tmp_path):
    from costguardian.db import HostWriterLock

    path = str(tmp_path / "writer.lock")
    lock = HostWriterLock(path)
    holder = _holder(tmp_path, path)
    assert lock.acquire(0.2) is False  # the other process holds it
    assert _tell(holder) == "released"
    # The waiter thread may get the lock now: with nobody asking any more it lets it go,
    # so the other process gets it back (it would wait 5 s and refuse otherwise).
    assert _tell(holder, "5") == "again"
    holder.wait(10)
    assert lock.acquire(5) is True  # and the next ask here, after the other process ended, gets it
    lock.release()


def test_a_forked_child_does_not_share_its_parents_hold(tmp_path):
    """A lock belongs to the open file, which a forked child shares: the child
    opens the file again, so its parent's hold keeps it out."""
    import multiprocessing

    from costguardian.db import HostWriterLock

    lock = HostWriterLock(str(tmp_path / "writer.lock"))
    assert lock.acquire(1)
    try:
        outcome = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=lambda: outcome.put(lock.acquire(0.3)))
        child.start()
        assert outcome.get(timeout=10) is False
        child.join(10)
    finally:
        lock.release()
