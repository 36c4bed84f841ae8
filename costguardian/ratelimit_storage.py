"""Rate-limit counters in a SQLite file: the `limits` storage of a single
host, shared by every process on it (gunicorn's workers, the queue consumer).

    RATELIMIT_STORAGE_URI=cg-sqlite:////srv/costguardian/instance/ratelimits.sqlite

`memory://` keeps the counters in one process, so with several gunicorn
workers each would let the whole limit through (the sign-in limits, the
gateway's RPM and TPM); Redis shares them across hosts. This storage is the
embedded default between the two: a file of its own beside the database (not
a table in it, so a limit's write never waits for the database's writer
lock), opened per thread, in WAL mode. It is `limits`' documented extension
point (a `Storage` subclass registering its URI scheme) and implements the
three strategies the app uses: fixed window (incr/get), moving window
(Flask-Limiter's sign-in limits) and sliding-window counter (the gateway's
RPM). Each check-and-take runs in one BEGIN IMMEDIATE transaction, so two
processes racing for a window's last request cannot both get it.

Times are `clock.timestamp()` — time.time(), the clock `limits` itself
measures windows with (tests move both with time-machine).
"""
from __future__ import annotations

import math
import os
import sqlite3
import threading
from contextlib import contextmanager

from limits.storage.base import MovingWindowSupport, SlidingWindowCounterSupport, Storage, TimestampedSlidingWindow

from costguardian import clock

SCHEME = "cg-sqlite"
PRUNE_EVERY = 60.0  # seconds between two sweeps of expired rows, per process
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's transaction

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL)",
    # One row per hit of a moving window, kept until the window has passed it.
    "CREATE TABLE IF NOT EXISTS window_entries (key TEXT NOT NULL, at REAL NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS window_entries_key_at ON window_entries (key, at)",
    "CREATE INDEX IF NOT EXISTS window_entries_expires_at ON window_entries (expires_at)",
)


class SQLiteStorage(Storage, MovingWindowSupport, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str, wrap_exceptions: bool = False, key_prefix: str = "", **options) -> None:
        # As SQLite URLs: cg-sqlite:///relative/path, cg-sqlite:////absolute/path
        self.path = uri[len(SCHEME) + len(":///"):]
        if not self.path:
            raise ValueError(f"{SCHEME}:// needs a file: {SCHEME}:////absolute/path/ratelimits.sqlite")
        self.prefix = f"{key_prefix}:" if key_prefix else ""
        self._local = threading.local()
        self._pruned = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    # --- connections and transactions

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one in a forked child: a
        connection must not cross a fork)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            local.db, local.pid = db, os.getpid()
        return local.db

    @contextmanager
    def _transaction(self):
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _key(self, key: str) -> str:
        return self.prefix + key

    # --- fixed window

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = clock.timestamp()
        with self._transaction() as db:
            value = self._incr(db, self._key(key), expiry, amount, now)
            self._prune(db, now)
        return value

    @staticmethod
    def _incr(db: sqlite3.Connection, key: str, expiry: float, amount: int, now: float) -> int:
        """Add `amount` to a counter; an expired one starts afresh (with a new expiry)."""
        db.execute("INSERT INTO counters (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                   "value = CASE WHEN counters.expires_at <= ? THEN excluded.value ELSE counters.value + "
                   "excluded.value END, expires_at = CASE WHEN counters.expires_at <= ? THEN excluded.expires_at "
                   "ELSE counters.expires_at END", (key, amount, now + expiry, now, now))
        return db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()[0]

    def decr(self, key: str, amount: int = 1) -> int:
        now = clock.timestamp()
        with self._transaction() as db:
            db.execute("UPDATE counters SET value = MAX(value - ?, 0) WHERE key = ? AND expires_at > ?",
                       (amount, self._key(key), now))
            return self._get(db, self._key(key), now)

    def get(self, key: str) -> int:
        return self._get(self._connection(), self._key(key), clock.timestamp())

    @staticmethod
    def _get(db: sqlite3.Connection, key: str, now: float) -> int:
        row = db.execute("SELECT value FROM counters WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        now = clock.timestamp()
        row = self._connection().execute("SELECT expires_at FROM counters WHERE key = ? AND expires_at > ?",
                                         (self._key(key), now)).fetchone()
        return row[0] if row else now

    def clear(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM counters WHERE key = ?", (self._key(key),))
            db.execute("DELETE FROM window_entries WHERE key = ?", (self._key(key),))

    def check(self) -> bool:
        try:
            self._connection().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        with self._transaction() as db:
            counted = db.execute("SELECT (SELECT COUNT(*) FROM counters) + "
                                 "(SELECT COUNT(DISTINCT key) FROM window_entries)").fetchone()[0]
            db.execute("DELETE FROM counters")
            db.execute("DELETE FROM window_entries")
        return counted

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        """Expired counters and window entries go, now and then: a key never
        used again (a sign-in limit per typed email address) would otherwise
        stay for ever."""
        if now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            db.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM window_entries WHERE expires_at <= ?", (now,))

    # --- moving window (Flask-Limiter's strategy for the sign-in limits)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        key, now = self._key(key), clock.timestamp()
        with self._transaction() as db:
            self._prune(db, now)
            db.execute("DELETE FROM window_entries WHERE key = ? AND at <= ?", (key, now - expiry))
            taken = db.execute("SELECT COUNT(*) FROM window_entries WHERE key = ?", (key,)).fetchone()[0]
            if taken + amount > limit:
                return False
            db.executemany("INSERT INTO window_entries (key, at, expires_at) VALUES (?, ?, ?)",
                           [(key, now, now + expiry)] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(the oldest entry still in the window, the entries in it)."""
        now = clock.timestamp()
        oldest, count = self._connection().execute(
            "SELECT MIN(at), COUNT(*) FROM window_entries WHERE key = ? AND at > ?", (self._key(key), now - expiry)).fetchone()
        return (oldest, count) if count else (now, 0)

    # --- sliding-window counter (the gateway's requests per minute)

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = clock.timestamp()
        previous_key, current_key = self.sliding_window_keys(self._key(key), expiry, now)
        with self._transaction() as db:
            previous, previous_ttl, current, _ = self._window(db, previous_key, current_key, expiry, now)
            if math.floor(previous * previous_ttl / expiry + current) + amount > limit:
                return False
            self._incr(db, current_key, 2 * expiry, amount, now)  # the window's counter lives two windows
            self._prune(db, now)
            return True

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        now = clock.timestamp()
        previous_key, current_key = self.sliding_window_keys(self._key(key), expiry, now)
        return self._window(self._connection(), previous_key, current_key, expiry, now)

    def _window(self, db, previous_key: str, current_key: str, expiry: int, now: float):
        """(previous count, its weight's time left, current count, current TTL), as `limits` computes them."""
        previous, current = self._get(db, previous_key, now), self._get(db, current_key, now)
        previous_ttl = 0.0 if previous == 0 else (1 - (((now - expiry) / expiry) % 1)) * expiry
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, previous_ttl, current, current_ttl

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        previous_key, current_key = self.sliding_window_keys(key, expiry, clock.timestamp())
        self.clear(previous_key)
        self.clear(current_key)
