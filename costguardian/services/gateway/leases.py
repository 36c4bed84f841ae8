"""Budget leases: a process holds a slice of a hard budget's room and admits
calls against it in memory, so that a call far from its budget's limit does
not wait for a write before it is forwarded.

Admission (admission.py) holds every admitted call's estimated maximum cost
in the database before the call is forwarded: spend + held + estimate must
fit the limit. Done per call, that hold is a write transaction on the call's
path, queued behind every other write for SQLite's one writer. A lease is the
same hold, taken for many calls at once:

- When a call's admission writes anyway (no usable lease) and every hard
  budget covering it has room for at least MIN_ROOM_CALLS of its estimates,
  the same transaction reserves one row per budget (a GatewayReservation
  with no admission) of min(room / ROOM_SHARE, LEASE_CALLS × estimate), and
  the process keeps it as a Lease.
- The process's next calls of those budgets, for CG_GATEWAY_LEASE_SECONDS,
  take their estimates from the leases' free part in memory: no statement.
- A call's recording (recording.py) lowers each lease's row by the call's
  actual cost in the transaction that adds that cost to the budget's spend
  counters, so spend + held never drops while the call's estimate is in
  flight; then the lease's free part grows by what the estimate left over.
- A lease retires when its time is up, when the organization's settings
  change (a budget edited: its pinned settings version differs), when a call
  does not fit in it, or when its process stops. A retired lease's free part
  is given back (its row lowered to what its calls in flight hold) and, once
  none of its calls is in flight, its row is deleted. A keeper thread per
  process does this on time for a process that has gone quiet.

The database therefore always holds every in-flight call's estimate (the
guarantee and the overshoot bound of per-call reservations are unchanged:
docs/ARCHITECTURE.md "Gateway admission"). What a lease adds is money held
but not yet used: at most 1/ROOM_SHARE of a budget's room per process, and
only while that room is at least MIN_ROOM_CALLS calls, so a budget near its
limit is admitted call by call, exactly, and a lease's unused part goes back
within about CG_GATEWAY_LEASE_SECONDS. A worker that crashes leaves its
leases' rows until they expire (CG_GATEWAY_RESERVATION_TTL), as it leaves
per-call reservations.

Leases are used only inside a settings pin (settings_cache.pinned: the
gateway's calls), whose version they are bound to.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from datetime import datetime

from flask import Flask, current_app, has_app_context
from peewee import Case

from costguardian import clock
from costguardian.db import connected, write_transaction
from costguardian.extensions import db
from costguardian.models import GatewayReservation
from costguardian.prepared import Prepared

log = logging.getLogger(__name__)

MIN_ROOM_CALLS = 100  # a lease only while each covering budget has room for this many of the call's estimates
ROOM_SHARE = 50  # a lease takes at most this fraction (1/50) of a budget's room
LEASE_CALLS = 1000  # and at most this many of the granting call's estimates
DEFAULT_SECONDS = 2.0


def lease_seconds() -> float:
    """CG_GATEWAY_LEASE_SECONDS: how long a lease admits calls (0: no leases)."""
    value = current_app.config.get("CG_GATEWAY_LEASE_SECONDS") if has_app_context() else None
    return max(0.0, float(DEFAULT_SECONDS if value is None else value))


class Lease:
    """A slice of one budget period's room, held by this process (one row)."""

    __slots__ = ("key", "version", "row_id", "expires_at", "granted", "settled", "returned", "in_flight",
                 "started", "retired", "busy", "__weakref__")

    def __init__(self, key: tuple[int, datetime], version: int, granted: int, expires_at: datetime):
        self.key = key  # (budget id, period start): budget ids are unique across organizations
        self.version = version  # the organization's settings version it was granted by
        self.row_id: int | None = None  # set once inserted
        self.expires_at = expires_at  # the row's: after it, the row no longer counts
        self.granted = granted  # the row's amount when reserved
        self.settled = 0  # actual costs of its calls, recorded (the row was lowered by them)
        self.returned = 0  # free money given back (the row was lowered by it)
        self.in_flight = 0  # estimates of its calls admitted and not yet settled
        self.started = clock.monotonic()
        self.retired = False
        self.busy = False  # a give-back or deletion of it is being written

    def free(self) -> int:
        return self.granted - self.settled - self.returned - self.in_flight

    def __repr__(self) -> str:
        return (f"Lease(budget={self.key[0]}, row={self.row_id}, granted={self.granted}, settled={self.settled}, "
                f"returned={self.returned}, in_flight={self.in_flight}, retired={self.retired})")


class Registry:
    """This process's leases (of one app)."""

    def __init__(self, app: Flask):
        self.app = weakref.ref(app)
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.current: dict[tuple[int, datetime], Lease] = {}  # key → the lease new calls take from
        self.retired: list[Lease] = []  # retired, with a row still to give back or delete
        # Held by whoever gives retired leases back (an admission's transaction, the keeper), from the
        # plan to its commit: an admission never reads a row whose give-back another has planned but
        # not yet written (it would count the unused money as held).
        self.writing = threading.Lock()
        self.keeper: threading.Thread | None = None
        self.generation = 0  # a keeper runs while it is the one started for this generation
        self.wake = threading.Event()
        self.stopping = False

    # --- in memory, under the lock

    def take(self, version: int | None, keys: list, cost: int, seconds: float) -> tuple | None:
        """The leases of every key, each with `cost` taken from its free part;
        None (nothing taken) unless every key has a usable one."""
        if version is None or cost <= 0 or seconds <= 0:
            return None
        now = clock.monotonic()
        with self.lock:
            leases = []
            for key in keys:
                lease = self.current.get(key)
                if lease is None:
                    return None
                if lease.version != version or now - lease.started >= seconds:
                    self._retire(lease)  # the call's admission writes, and gives back what it holds unused
                    return None
                if lease.free() < cost:
                    return None
                leases.append(lease)
            for lease in leases:
                lease.in_flight += cost
            return tuple(leases)

    def retire_keys(self, keys) -> None:
        """Retire this process's leases of these keys: a call of theirs is
        being admitted by a write (it did not fit, or could not use them), and
        that transaction gives their free part back before its check — else
        the process would refuse calls for money its own leases hold unused —
        and may grant new ones."""
        with self.lock:
            for key in keys:
                lease = self.current.get(key)
                if lease is not None:
                    self._retire(lease)

    def retire_old(self, seconds: float) -> None:
        now = clock.monotonic()
        with self.lock:
            for lease in list(self.current.values()):
                if now - lease.started >= seconds:
                    self._retire(lease)

    def retire_all(self) -> None:
        with self.lock:
            for lease in list(self.current.values()):
                self._retire(lease)

    def _retire(self, lease: Lease) -> None:
        lease.retired = True
        if self.current.get(lease.key) is lease:
            del self.current[lease.key]
        self.retired.append(lease)

    def install(self, leases: list[Lease]) -> None:
        """Leases granted by a committed transaction become the current ones
        (a lease they replace retires)."""
        with self.lock:
            for lease in leases:
                old = self.current.get(lease.key)
                if old is not None and old is not lease:
                    self._retire(old)
                self.current[lease.key] = lease
        try:
            self._start_keeper()
        except RuntimeError:  # no thread can be started (the interpreter is stopping): the next admission gives back
            log.exception("could not start the gateway's lease keeper")

    def settled(self, leases, cost: int, spent: int) -> None:
        """A call of these leases ended: its estimate is no longer in flight,
        and its actual cost `spent` was taken from their rows."""
        with self.lock:
            for lease in leases:
                lease.in_flight -= cost
                lease.settled += spent

    def plan(self) -> tuple[list[tuple[Lease, int]], list[Lease]]:
        """What to write for the retired leases: (lease, free money to give
        back), and the leases whose rows can go (none of their calls in
        flight). The leases planned are busy until `done`."""
        give, drop = [], []
        with self.lock:
            for lease in self.retired:
                if lease.busy or lease.row_id is None:
                    continue
                if lease.in_flight == 0:
                    lease.busy = True
                    drop.append(lease)
                elif lease.free() > 0:
                    lease.busy = True
                    give.append((lease, lease.free()))
        return give, drop

    def done(self, give: list[tuple[Lease, int]], drop: list[Lease], committed: bool) -> None:
        with self.lock:
            for lease, amount in give:
                lease.busy = False
                if committed:
                    lease.returned += amount
            for lease in drop:
                lease.busy = False
            if committed:
                gone = {id(lease) for lease in drop}
                self.retired = [lease for lease in self.retired if id(lease) not in gone]

    def forget_expired(self, ttl_seconds: float) -> None:
        """Forget retired leases older than a reservation's lifetime: their
        rows no longer count (and are swept); a call that was never settled
        must not keep them, and the keeper, in memory for good."""
        now = clock.monotonic()
        with self.lock:
            self.retired = [lease for lease in self.retired if lease.busy or now - lease.started < ttl_seconds]

    def idle(self) -> bool:
        with self.lock:
            return not self.current and not self.retired

    # --- the keeper: gives retired leases back on time in a process gone quiet

    def _start_keeper(self) -> None:
        with self.lock:
            if self.stopping or (self.keeper is not None and self.keeper.is_alive()):
                return
            self.keeper = threading.Thread(target=self._keep, args=(self.generation,), name="cg-gateway-leases",
                                           daemon=True)
            self.keeper.start()

    def _keep(self, generation: int) -> None:
        while not self.stopping and self.generation == generation:
            app = self.app()
            if app is None:
                return
            with app.app_context():
                seconds = lease_seconds() or DEFAULT_SECONDS
                try:
                    self.retire_old(seconds)
                    self.forget_expired(float(app.config.get("CG_GATEWAY_RESERVATION_TTL") or 3600))
                    write_back(self)
                except Exception:  # the database is down: the rows stay held until it is back or they expire
                    log.exception("giving back the gateway's budget leases failed; retrying")
            if self.idle():
                with self.lock:
                    if not self.current and not self.retired and self.generation == generation:
                        self.keeper = None
                        return
            self.wake.wait(max(0.05, seconds / 2))
            self.wake.clear()

    def stop(self, write: bool = True) -> None:
        """Retire every lease and give them back (a process stopping), or
        with write=False only forget them (the tests, after emptying the tables)."""
        with self.lock:
            self.stopping = True
            self.generation += 1  # a keeper that outlives the join below stops at its next turn
        self.wake.set()
        try:
            keeper = self.keeper
            if keeper is not None and keeper is not threading.current_thread():
                keeper.join(timeout=10)
            self.retire_all()
            if write:
                app = self.app()
                if app is not None:
                    with app.app_context():
                        write_back(self)
        finally:
            with self.lock:
                self.current.clear()
                self.retired.clear()
                self.keeper = None
                self.stopping = False


_registries_lock = threading.Lock()


def registry(app: Flask | None = None) -> Registry:
    app = app or current_app._get_current_object()
    found = app.extensions.get("cg_gateway_leases")
    if found is not None and found.pid == os.getpid():
        return found
    with _registries_lock:
        found = app.extensions.get("cg_gateway_leases")
        if found is None or found.pid != os.getpid():  # a forked child holds none of its parent's leases
            found = app.extensions["cg_gateway_leases"] = Registry(app)
            atexit.register(_stop_at_exit, weakref.ref(found))
    return found


def _stop_at_exit(ref) -> None:
    found = ref()
    if found is not None and found.pid == os.getpid():
        try:
            found.stop()
        except Exception:
            log.exception("giving back the gateway's budget leases at exit failed")


# --- the statements -----------------------------------------------------------------------

_LOWER = Prepared(lambda amount, same, zero, row_id: GatewayReservation.update(
    amount_nanos=Case(None, [(GatewayReservation.amount_nanos > amount, GatewayReservation.amount_nanos - same)],
                      zero)).where(GatewayReservation.id == row_id))
_DELETE = Prepared(lambda row_id: GatewayReservation.delete().where(GatewayReservation.id == row_id))


def lower(row_id: int, amount: int) -> None:
    """Lower a lease's row by `amount` (not below zero), in the caller's transaction."""
    if amount > 0:
        _LOWER.write(amount, amount, 0, row_id)


def write_planned(give: list[tuple[Lease, int]], drop: list[Lease], now: datetime | None = None) -> dict:
    """In the caller's transaction: lower the rows of `give` by their free
    money and delete those of `drop`, all in row id order; returns {key:
    money those rows no longer hold, of the rows unexpired at `now`}. Every
    transaction that writes lease rows (admission, recording, the keeper)
    writes them after any spend counter and in row id order, so that none
    waits for another in a cycle."""
    freed: dict = {}
    rows = sorted([(lease.row_id, lease, amount) for lease, amount in give]
                  + [(lease.row_id, lease, None) for lease in drop], key=lambda row: row[0])
    for row_id, lease, amount in rows:
        if amount is None:  # what the row held: its calls' estimates less their costs (none is in flight)
            _DELETE.write(row_id)
            amount = max(0, lease.granted - lease.settled - lease.returned)
        else:
            lower(row_id, amount)
        if now is None or lease.expires_at > now:  # an expired row was not counted as held
            freed[lease.key] = freed.get(lease.key, 0) + amount
    return freed


def write_back(reg: Registry) -> None:
    """Give back the retired leases' free money and delete the rows of those
    with no call in flight, in a transaction of its own."""
    with reg.writing:
        give, drop = reg.plan()
        if not give and not drop:
            return
        committed = False
        try:
            with connected(db), write_transaction():
                write_planned(give, drop)
            committed = True
        finally:
            reg.done(give, drop, committed)
