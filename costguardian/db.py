"""Database connection (SQLite or PostgreSQL from one URL) and migrations."""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlparse

from peewee import Database, OperationalError, SqliteDatabase
from playhouse.db_url import parse as parse_db_url
from playhouse.migrations import Runner
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from costguardian import clock
from costguardian.extensions import db

log = logging.getLogger(__name__)

# A commit still checkpoints once the log holds this many pages (SQLite's
# default is 1,000): only reached if the checkpointer thread stopped working.
SAFETY_CHECKPOINT_PAGES = 20_000

MIGRATIONS_DIR = str(Path(__file__).resolve().parent / "migrations")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,  # ms to wait on a lock held by another process
    "synchronous": "normal",  # durable with WAL, without an fsync per commit
}


class SerializedSqliteDatabase(PooledSqliteDatabase):
    """SQLite with the write transactions of this process queued on a lock.

    A transaction that will write begins IMMEDIATE (write_transaction,
    locked); when another connection holds the write lock, SQLite's busy
    handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries, so under
    concurrent writers (gateway calls admitted and recorded by many threads)
    a waiting thread slept long after the lock was free, and the threads'
    retries burned CPU. Here the threads of one process wait their turn on a
    lock that hands over the moment the holder commits (not in arrival order:
    a Python lock is not fair); other processes (the Huey consumer, a second
    gunicorn worker) and writes outside such a transaction still meet SQLite's
    busy handler, in the gaps between the queued transactions. A thread waits
    for the lock as long as the busy timeout, then fails with the same
    "database is locked" error.

    Between processes (two gunicorn workers, the Huey consumer) the turn is a
    second lock, an flock on a file beside the database (HostWriterLock),
    taken after the process's own: a process waiting for another's commit is
    woken by the kernel the moment it lets go, instead of sleeping in SQLite's
    busy handler (1, 2, 5, 10… ms) while the other process's threads take the
    database turn after turn. With two workers under gateway load this gave
    about a sixth more calls per second (docs/PERFORMANCE.md)."""

    WRITE_LOCKS = ("IMMEDIATE", "EXCLUSIVE")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._writing = threading.local()
        self._writer_timeout = SQLITE_PRAGMAS["busy_timeout"] / 1000
        self._host_writer = HostWriterLock(self.database + "-writer.lock")
        self._checkpointer: Checkpointer | None = None  # the running one, as last looked up

    def _connect(self):  # each time a connection is taken from the pool
        conn = super()._connect()
        # The write-ahead log is copied into the database by this process's
        # checkpointer thread (started again if it ended), not by whichever
        # commit crosses 1,000 pages.
        checkpointer = self._checkpointer
        if checkpointer is None or not checkpointer.alive():
            self._checkpointing()
        return conn

    def _add_conn_hooks(self, conn):  # once per new connection
        super()._add_conn_hooks(conn)
        # A commit still checkpoints at SAFETY_CHECKPOINT_PAGES, should the thread fail.
        conn.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_CHECKPOINT_PAGES}")

    def _checkpointing(self) -> "Checkpointer":
        self._checkpointer = Checkpointer.of(self.database, self._timeout)
        return self._checkpointer

    def close_all(self):
        super().close_all()
        Checkpointer.stop(self.database)

    def begin(self, lock_type=None):
        lock_type = lock_type or self._lock_type
        if not lock_type or lock_type.upper() not in self.WRITE_LOCKS:
            return super().begin(lock_type)
        self.connection()  # from the pool (which may wait) before the lock, not while holding it
        deadline = clock.monotonic() + self._writer_timeout
        if not self._writer.acquire(timeout=self._writer_timeout):
            raise OperationalError("database is locked")
        self._writing.held = True
        try:
            if not self._host_writer.acquire(max(0.0, deadline - clock.monotonic())):
                raise OperationalError("database is locked")
            self._writing.host = True
            super().begin(lock_type)
        except BaseException:
            self._release_writer()
            raise

    def commit(self):
        super().commit()  # a failed COMMIT leaves the transaction open: its rollback lets go
        self._release_writer()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._release_writer()

    def _close(self, conn, *args, **kwargs):  # a connection closed in a transaction ends it
        self._release_writer()
        return super()._close(conn, *args, **kwargs)

    def _release_writer(self):
        if getattr(self._writing, "held", False):
            self._writing.held = False
            try:
                if getattr(self._writing, "host", False):
                    self._writing.host = False
                    self._host_writer.release()
            finally:
                self._writer.release()


class HostWriterLock:
    """The SQLite write turn between the processes of a host: an flock on
    `path` (created beside the database), held from BEGIN IMMEDIATE to the
    commit or rollback by one thread of one process at a time (the process's
    own writer lock queues its threads first).

    flock has no timeout, so a process whose first try finds the lock taken
    hands the wait to its waiter thread, which blocks in flock and passes the
    lock on as soon as the kernel grants it; the asking thread waits for that
    at most `timeout` seconds. A wait given up is not lost: the lock, when it
    comes, goes to the next thread that asks, or is let go at once. The file
    is opened again in a forked child (a lock belongs to the open file, which
    a child shares with its parent). When the file cannot be opened (a
    read-only folder), SQLite's own busy handler is the only turn, as before."""

    def __init__(self, path: str):
        self.path = path
        self._pid: int | None = None
        self._fd: int | None = None
        self._state = threading.Condition()
        self._wanted = False  # a thread waits for the lock
        self._granted = False  # the waiter took it for that thread
        self._waiter: threading.Thread | None = None

    def acquire(self, timeout: float) -> bool:
        fd = self._file()
        if fd is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        deadline = clock.monotonic() + timeout
        with self._state:
            if self._waiter is None or not self._waiter.is_alive():
                self._waiter = threading.Thread(target=self._wait_for_lock, args=(fd,), daemon=True,
                                                name="sqlite-host-writer")
                self._waiter.start()
            self._wanted = True
            self._state.notify_all()
            while not self._granted:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    self._wanted = False  # the waiter lets it go when it comes
                    return False
                self._state.wait(remaining)
            self._granted = False
            return True

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _file(self) -> int | None:
        if self._pid != os.getpid():  # first use, or a forked child: its own open file, waiter and state
            self._pid, self._fd = os.getpid(), None
            self._state = threading.Condition()
            self._wanted = self._granted = False
            self._waiter = None
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                log.warning("cannot open %s: SQLite's writers of different processes wait in its busy "
                            "handler", self.path, exc_info=True)
        return self._fd

    def _wait_for_lock(self, fd: int) -> None:
        state = self._state
        while self._pid == os.getpid():
            with state:
                while not self._wanted:
                    state.wait()
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks (without the GIL) until the holder lets go
            with state:
                if self._wanted:
                    self._wanted, self._granted = False, True
                    state.notify_all()
                    continue
            fcntl.flock(fd, fcntl.LOCK_UN)  # the thread that asked gave up meanwhile


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file from a thread
    of its own, so that no request pays for it.

    With SQLite's default, the commit that brings the log past 1,000 pages
    runs the checkpoint itself, inside the write transaction: a gateway call
    every 34 stalled about 4 ms (docs/PERFORMANCE.md), and every writer of
    the process waited behind it. Here the process's connections leave it
    (up to SAFETY_CHECKPOINT_PAGES) to one thread per database file, which
    runs a PASSIVE checkpoint every INTERVAL seconds (it copies what no
    reader still needs, without taking the write lock, so writers go on
    meanwhile; the GIL is released while SQLite works), on a connection
    opened for it each time (a database file replaced by a restore is then
    the one checkpointed). It stops when the file is gone or the database's
    connections are all closed (close_all); the next connection starts
    another. SQLite also checkpoints when the last connection closes."""

    INTERVAL = 0.5
    WARN_AFTER = 20  # failures in a row before a warning (the log then grows until one succeeds)

    _running: dict[str, "Checkpointer"] = {}  # one per database file and process
    _registry_lock = threading.Lock()

    @classmethod
    def of(cls, path: str, timeout: float) -> "Checkpointer":
        """The running checkpointer of `path` in this process (started if none)."""
        key = str(Path(path).absolute())
        with cls._registry_lock:
            running = cls._running.get(key)
            if running is None or not running.alive():
                running = cls._running[key] = cls(key, timeout)
                running.thread.start()
            return running

    @classmethod
    def stop(cls, path: str) -> None:
        """Stop the checkpointer of `path` (its connections were closed); the
        next connection starts another."""
        with cls._registry_lock:
            running = cls._running.pop(str(Path(path).absolute()), None)
        if running is not None:
            running.stopping.set()

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout = path, timeout
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
        self.stopping = threading.Event()
        self.copied = 0  # checkpoints that completed (for the tests)
        self.failures = 0  # in a row

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive() and not self.stopping.is_set()

    def checkpoint(self) -> tuple[int, int, int]:
        """(busy, pages in the log, pages copied): one PASSIVE checkpoint."""
        # mode=rw: a database file deleted meanwhile is not created again.
        conn = sqlite3.connect(Path(self.path).absolute().as_uri() + "?mode=rw", uri=True, timeout=self.timeout,
                               isolation_level=None)
        try:
            result = tuple(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        finally:
            conn.close()
        if result[0] == 0:
            self.copied += 1
        return result

    def _run(self) -> None:
        while not self.stopping.wait(self.INTERVAL):
            try:
                if not Path(self.path).exists():  # the database was removed: the next connection starts another
                    return
                self.checkpoint()
                self.failures = 0
            except Exception:  # locked, or being replaced: tried again at the next interval
                self.failures += 1
                level = logging.WARNING if self.failures == self.WARN_AFTER else logging.DEBUG
                log.log(level, "SQLite checkpoint of %s failed (%d in a row)", self.path, self.failures,
                        exc_info=True)


def connect_database(url: str) -> Database:
    """A peewee Database for `sqlite:///path` or `postgresql://user@host/db`."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] or ":memory:"
        if path == ":memory:":
            return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pooled: a request's "close" hands the connection back instead of
        # closing the file, which in WAL mode also checkpoints (5 ms a request).
        # A burst of requests beyond the pool waits up to `timeout` seconds for
        # a connection (without it, the 17th of 100 gateway calls arriving at
        # once failed with MaxConnectionsExceeded when the pool held 16).
        return SerializedSqliteDatabase(path, pragmas=SQLITE_PRAGMAS, max_connections=32, stale_timeout=600,
                                        timeout=10, check_same_thread=False)
    if scheme in ("postgres", "postgresql"):
        params = parse_db_url(url)
        return PooledPostgresqlDatabase(
            params.pop("database"), prefer_psycopg3=True,
            max_connections=32, stale_timeout=300, timeout=10, **params,
        )
    raise ValueError(f"DATABASE_URL must start with sqlite:/// or postgresql://, got {url!r}")


def migration_runner(database: Database) -> Runner:
    return Runner(database, directory=MIGRATIONS_DIR)


def connected(database: Database):
    """A connection for the block: the open one if any (left open), else a
    new one closed afterwards."""
    return nullcontext() if not database.is_closed() else database.connection_context()


def migrate(database: Database, backfill_inline_rows: int | None = None) -> list[str]:
    """Apply pending migrations in order, then the data backfills they
    registered whose tables have at most `backfill_inline_rows` rows left
    (default migrations_batched.INLINE_ROWS; bigger ones wait for
    `flask migrate --backfills`). Returns the migration names applied."""
    from costguardian import migrations_batched

    with connected(database):
        applied = migration_runner(database).up()
        limit = migrations_batched.INLINE_ROWS if backfill_inline_rows is None else backfill_inline_rows
        migrations_batched.run_pending(database, inline_limit=limit)
        return applied


def pending_migrations(database: Database) -> list[str]:
    with connected(database):
        return [m.name for m in migration_runner(database).status() if not m.applied]


@contextmanager
def locked(row):
    """A transaction holding a write lock on `row` until it ends, so that
    read-check-write rules (e.g. "keep one owner") hold under concurrency.
    SQLite takes the database write lock up front (BEGIN IMMEDIATE);
    PostgreSQL locks the one row (SELECT … FOR UPDATE)."""
    database = row._meta.database
    if isinstance(getattr(database, "obj", database), SqliteDatabase):
        with database.atomic("IMMEDIATE"):
            yield
        return
    with database.atomic():
        model = type(row)
        model.select(model._meta.primary_key).where(model._meta.primary_key == row.get_id()).for_update().execute()
        yield


def write_transaction():
    """A transaction that will write: on SQLite it takes the write lock at
    BEGIN (IMMEDIATE), so it waits for the busy timeout instead of failing
    when another writer got there between its first read and first write."""
    if isinstance(db.obj, SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()
