"""SQLite's writers of one process take turns on a lock
(db.SerializedSqliteDatabase) instead of sleeping in SQLite's busy handler:
concurrent write transactions all commit, a failed one releases the lock,
and a writer that cannot get it in time fails as SQLite would."""
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
