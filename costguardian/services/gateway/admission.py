"""Budget admission for the gateway: before a call is forwarded, every hard
budget covering it must have room for the call's estimated maximum cost.

    admission = admit(call)     # raises Blocked (429) or Unavailable (503)
    ... forward, record the usage event through ingest ...
    settle(admission)           # in a `finally`; idempotent

`admit` estimates the most the call can cost (its prompt tokens, counted,
plus its output cap — max_tokens or CG_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS —
at the model's prices), then, in one write transaction holding the covering
budgets' spend counters, checks for every covering hard budget that

    spend (the counter) + active reservations + this estimate <= limit

(the limit includes the period's temporary raises) and inserts one
reservation per covering hard budget. The counters are kept by ingest in the
transaction that stores the events, so the check never scans history. A call
settles after its usage event is recorded: the event's cost is then in the
counter and its reservation is released. A reservation whose call never
settles (a crashed worker) stops counting at its `expires_at`
(CG_GATEWAY_RESERVATION_TTL) and is swept by a periodic task.

Far from a budget's limit the holds are leases (leases.py): a process
reserves a slice of the budget's room in the transaction of one admission
and admits its next calls against it in memory; each call's recording lowers
the lease by the call's cost. The database holds every in-flight call's
estimate either way.

Soft budgets never block and hold no reservation. See docs/ARCHITECTURE.md
"Gateway admission" for the locks, the overshoot bound and fail-open/closed.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from flask import current_app, has_app_context
from peewee import IntegrityError, InterfaceError, OperationalError, PostgresqlDatabase, fn
from playhouse.pool import MaxConnectionsExceeded

from costguardian import clock, settings_cache, timefmt
from costguardian.prepared import Prepared
from costguardian.db import write_transaction
from costguardian.extensions import db
from costguardian.models import (ApiKey, Budget, BudgetIncrease, BudgetSpend, GatewayReservation, ModelAlias,
                                 Organization)
from costguardian.money import format_usd
from costguardian.services.gateway import leases as budget_leases, tokens as token_estimates
from costguardian.services.usage import catalog
from costguardian.services.usage.pricing import OrgPrices, Tokens

log = logging.getLogger(__name__)

MAX_OUTPUT_TOKENS = 2**31 - 1  # a larger cap is no cap at all; keeps the arithmetic in 64 bits
MAX_CHOICES = 128  # OpenAI's `n`: each choice is billed its own output tokens
MAX_RESERVATION_NANOS = 2**62  # fits BIGINT with room for the sums
DEFAULTS = {"CG_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS": 4096, "CG_GATEWAY_RESERVATION_TTL": 3600,
            "CG_GATEWAY_FAIL_OPEN": False}
RAISERS = "an owner, admin or billing member of the organization"
# The database cannot be reached (or is locked beyond the busy timeout, or its pool is exhausted).
# peewee wraps the driver's errors, but only one subclass deep: psycopg's own classes are listed too.
_DATABASE_DOWN = (OperationalError, InterfaceError, MaxConnectionsExceeded, psycopg.OperationalError,
                  psycopg.InterfaceError)


def _transient(exc: Exception) -> bool:
    """A deadlock or serialization failure: PostgreSQL aborted this
    transaction to let another finish (SQLSTATE class 40); worth a retry."""
    for error in (exc, *(exc.args[:1]), exc.__cause__, exc.__context__):
        if str(getattr(error, "sqlstate", "") or "").startswith("40"):
            return True
    return False


# --- the seam with the proxy ---------------------------------------------------------------

@dataclass
class Call:
    """What the gateway knows about a call before forwarding it."""
    org: Organization
    api_key: ApiKey | None
    provider: str  # catalog provider id after normalisation, e.g. "openai", "anthropic"
    model: str  # the model name as the upstream will be asked
    user: str | None  # attribution: X-CG-User / OpenAI `user` / the key's member email
    department_id: int | None
    tags: list[str] = field(default_factory=list)
    body: dict = field(default_factory=dict)  # the request JSON as the client sent it


@dataclass
class Admission:
    id: int | None  # the reservation row (None when no hard budget covers the call)
    reserved_nanos: int  # the estimated maximum cost held against every covering hard budget (the estimate
    #                      also when nothing is held: id None)
    input_tokens_estimate: int
    max_output_tokens: int
    # The leases the estimate was taken from (leases.py), instead of a reservation row of its own;
    # emptied when the call settles.
    leases: tuple = ()


class Blocked(Exception):
    """A hard budget has no room for this call: the gateway answers 429 in the provider's error shape."""

    def __init__(self, budget_name: str, budget_id: int, resets_at: datetime | None, message: str):
        super().__init__(message)
        self.budget_name = budget_name
        self.budget_id = budget_id
        self.resets_at = resets_at  # naive UTC; None when the budget's period never resets (custom)
        self.message = message


class Unavailable(Exception):
    """The database could not be reached while the organization has hard
    budgets and fail-closed is on: 503 in the provider's shape."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- settings ---------------------------------------------------------------------------------

def _setting(name: str):
    if has_app_context():
        value = current_app.config.get(name)
        if value is not None:
            return value
    return DEFAULTS[name]


def default_max_output_tokens() -> int:
    return max(1, min(int(_setting("CG_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS")), MAX_OUTPUT_TOKENS))


def reservation_ttl() -> timedelta:
    return timedelta(seconds=max(1, int(_setting("CG_GATEWAY_RESERVATION_TTL"))))


def fail_open() -> bool:
    return bool(_setting("CG_GATEWAY_FAIL_OPEN"))


# --- the estimate ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    model: str  # the model as ingest will record it (aliases and catalog names resolved)
    input_tokens: int
    max_output_tokens: int  # per choice
    choices: int
    cost_nanos: int  # the most the call may cost; 0 for a model without a price
    priced: bool


def max_output_tokens(body: dict) -> int:
    """The call's own output cap (OpenAI max_tokens / max_completion_tokens /
    max_output_tokens, Anthropic max_tokens), else the configured default."""
    values = []
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key) if isinstance(body, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            values.append(value)
    if not values:
        return default_max_output_tokens()
    return min(max(values), MAX_OUTPUT_TOKENS)


def choices(body: dict) -> int:
    value = body.get("n") if isinstance(body, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 1:
        return min(value, MAX_CHOICES)
    return 1


_ALIASES_OF_PROVIDER = Prepared(lambda org_id, provider: ModelAlias.select(ModelAlias.alias, ModelAlias.model)
                                .where(ModelAlias.organization == org_id, ModelAlias.provider == provider).tuples())


def recorded_model(org: Organization, provider: str, model: str) -> str:
    """The model name ingest will store for the call: the organization's
    alias first (an Azure deployment "prod-4o" → gpt-4o), then the catalog's."""
    aliases = settings_cache.cached("aliases_of", org.id, provider, lambda: {
        alias.lower(): target for alias, target in _ALIASES_OF_PROVIDER.execute(org.id, provider)})
    return aliases.get((model or "").lower()) or catalog.resolve_model(provider, model or "")[0]


def estimate(call: Call, now: datetime | None = None) -> Estimate:
    """The most the call may cost: its counted prompt tokens (every one of
    them priced at the higher of the input and cache-write prices), plus its
    output cap times the number of choices at the output price, at the
    standard price or the requested service tier's, whichever is higher."""
    now = now or clock.now()
    provider = catalog.normalize_provider(call.provider)
    model = recorded_model(call.org, provider, call.model)
    body = call.body if isinstance(call.body, dict) else {}
    input_tokens = token_estimates.input_tokens(provider, model, body)
    output = max_output_tokens(body)
    n = choices(body)
    prices = OrgPrices.for_org(call.org)
    tier = body.get("service_tier") if isinstance(body.get("service_tier"), str) else ""
    costs = []
    for tokens in (Tokens(input=input_tokens, output=output * n),
                   Tokens(input=input_tokens, cache_write=input_tokens, output=output * n)):
        for service_tier in dict.fromkeys(("", tier[:32])):
            cost, _ = prices.price(provider, model, now, tokens, service_tier=service_tier)
            if cost is not None:
                costs.append(cost)
    if not costs:
        return Estimate(model, input_tokens, output, n, 0, False)
    return Estimate(model, input_tokens, output, n, min(max(costs), MAX_RESERVATION_NANOS), True)


# --- admission ---------------------------------------------------------------------------------

def _covering(call: Call, model: str, now: datetime) -> list[tuple[Budget, object]]:
    """(budget, its current period) of every hard budget covering the call now."""
    from costguardian.services.budgets import budgets

    covering = budgets.covering_budgets(
        call.org, user=call.user, api_key=call.api_key.id if call.api_key is not None else None,
        department=call.department_id, provider=call.provider, model=model,
        tags=[t.strip() for t in call.tags or () if isinstance(t, str)])  # as ingest stores them
    hard = [(b, budgets.current_period(b, now, call.org.time_zone)) for b in covering if b.enforcement == "hard"]
    # A custom budget outside its range counts no call made now.
    return [(b, period) for b, period in hard if period.contains(now)]


def admit(call: Call) -> Admission:
    """Reserve the call's estimated maximum cost against every hard budget
    covering it, or raise Blocked naming the first budget without room.
    Raises Unavailable when the database cannot be reached and the
    organization must fail closed."""
    now = clock.now()
    try:
        est = estimate(call, now)
        hard = _covering(call, est.model, now)
        _remember_hard(call.org.id, True if hard else None, now)
        if not hard:
            return Admission(None, est.cost_nanos, est.input_tokens, est.max_output_tokens)
        version = settings_cache.pinned_version(call.org.id)  # None: not a gateway call, no leases
        if version is not None and has_app_context():
            leased = budget_leases.registry().take(version, sorted((b.id, p.start) for b, p in hard), est.cost_nanos,
                                                   budget_leases.lease_seconds())
            if leased is not None:  # held in memory, from this process's leases of every covering budget
                return Admission(None, est.cost_nanos, est.input_tokens, est.max_output_tokens, leased)
        for attempt in (1, 2, 3):
            try:
                admission, blocked = _reserve_in_turn(call.org.id, hard, est, now, version) if attempt == 1 else \
                    _reserve(call.org.id, hard, est, now, version)
                break
            except IntegrityError:  # a covering budget was deleted meanwhile: look again
                if attempt == 3:
                    raise
                hard = _covering(call, est.model, now)
                if not hard:
                    return Admission(None, est.cost_nanos, est.input_tokens, est.max_output_tokens)
            except _DATABASE_DOWN as exc:
                if attempt == 3 or not _transient(exc):
                    raise
    except _DATABASE_DOWN as exc:
        return _database_down(call, exc)
    if blocked is not None:
        from costguardian.services.budgets import budgets

        budget, held = blocked
        # The covering budgets are the process's kept rows (settings_cache), shared by its
        # threads: the refusal's message and alert read the budget (its owner, organization) anew.
        budget = Budget.get_or_none(Budget.id == budget.id) or budget
        status = budgets.statuses([budget], now)[0]
        _alert_blocked(status, now)
        raise _blocked(call.org, status, held, est)
    return admission


def _reserve(org_id: int, covering: list[tuple[Budget, object]], est: Estimate, now: datetime,
             version: int | None = None):
    """One transaction: lock the covering hard budgets' counters, check each
    (its spend, the period's raises and the calls in flight), insert the
    reservations (or leases, when every budget has room for many such calls
    and the call's settings `version` is pinned). Returns (Admission, None)
    or (None, (the budget with the least room, the money its calls in flight
    hold))."""
    ask = _Ask(org_id, covering, est, now, version)
    _reserve_together([ask])
    return ask.outcome


# --- group commit ----------------------------------------------------------------------------
#
# Admissions that arrive while another is being written wait for it; then the
# first of them admits all of them in one transaction: the covering budgets'
# counters, calls in flight and raises read once (locked in one order), each
# call checked in turn against what the calls before it took, the admitted
# ones' reservations inserted. The same arithmetic as one call at a time
# (each call sees every reservation made before it), in fewer statements and
# one commit. Alone, a call is admitted at once, as before.

MAX_BATCH = 100


class _Ask:
    __slots__ = ("org_id", "covering", "est", "now", "version", "outcome", "error", "done")

    def __init__(self, org_id: int, covering: list, est: Estimate, now: datetime, version: int | None = None):
        self.org_id, self.covering, self.est, self.now = org_id, covering, est, now
        self.version = version  # the settings version the call was pinned to (None: no leases)
        self.outcome = None  # what _reserve returns
        self.error: Exception | None = None
        self.done = False


class _Turns:
    def __init__(self):
        self.pending: list[_Ask] = []
        self.queue_lock = threading.Lock()
        self.turn = threading.Lock()


def _reserve_in_turn(org_id: int, covering: list[tuple[Budget, object]], est: Estimate, now: datetime,
                     version: int | None = None):
    """_reserve, written together with the admissions waiting beside it."""
    turns = current_app.extensions.setdefault("cg_gateway_admissions", _Turns()) if has_app_context() else None
    if turns is None:
        return _reserve(org_id, covering, est, now, version)
    ask = _Ask(org_id, covering, est, now, version)
    with turns.queue_lock:
        turns.pending.append(ask)
    while not ask.done:
        with turns.turn:
            if ask.done:
                break
            with turns.queue_lock:
                batch, turns.pending = turns.pending[:MAX_BATCH], turns.pending[MAX_BATCH:]
            _reserve_batch(batch)
    if ask.error is not None:
        raise ask.error
    return ask.outcome


def _reserve_batch(batch: list[_Ask]) -> None:
    try:
        _reserve_together(batch)
    except Exception as exc:  # a budget deleted meanwhile, the database down: each on its own, with its own error
        if len(batch) == 1:
            batch[0].error = exc
        else:
            for ask in batch:
                if ask.outcome is not None:  # admitted from a lease before the transaction
                    continue
                try:
                    _reserve_together([ask])
                except Exception as alone:
                    ask.error = alone
    finally:
        for ask in batch:
            ask.done = True


def _reserve_together(batch: list[_Ask]) -> None:
    """Every ask of the batch in one transaction, the organizations in id
    order and each one's counters locked at once in key order (the order
    every writer takes them in); raises (and commits nothing) on any error."""
    leases = budget_leases.registry() if has_app_context() else None
    if leases is None:
        return _reserve_written(batch, None)
    batch = _from_leases(leases, batch)
    if not batch:
        return
    # The process's leases of these budgets cannot hold these calls (used up, too old, other settings,
    # or a call that cannot use leases): they retire, and this transaction gives back what they hold unused.
    leases.retire_keys({(b.id, p.start) for ask in batch for b, p in ask.covering})
    with leases.writing:  # no other give-back planned and unwritten while this one reads what is held
        _reserve_written(batch, leases)


def _reserve_written(batch: list[_Ask], leases: budget_leases.Registry | None) -> None:
    give, drop = leases.plan() if leases is not None else ([], [])
    outcomes = []
    grants: list[budget_leases.Lease] = []
    # organization → its settings version, read in the transaction (None: no leases without an app's registry)
    versions: dict[int, int | None] | None = {} if leases is not None else None
    now = min(ask.now for ask in batch)  # the earliest: a reservation expiring meanwhile still counts
    by_org: dict[int, list[_Ask]] = {}
    for ask in batch:
        by_org.setdefault(ask.org_id, []).append(ask)
    committed = False
    try:
        with write_transaction():
            states = {}
            for org_id in sorted(by_org):
                keys = sorted({(budget.id, period.start) for ask in by_org[org_id] for budget, period in ask.covering})
                states[org_id] = _state(org_id, keys, now)
            # Lease rows after the counters, as every writer takes them (leases.py); then the money
            # they no longer hold is not counted as held by the checks below.
            freed = budget_leases.write_planned(give, drop, now)
            for org_id in sorted(by_org):
                spend, live, held, raised = states[org_id]
                for key, amount in freed.items():
                    if key in held:
                        held[key] -= min(amount, held[key])
                for ask in by_org[org_id]:
                    outcome = _check_and_hold(org_id, ask, live, spend, held, raised, grants, versions)
                    outcomes.append((ask, outcome))
        committed = True
    finally:
        if leases is not None:
            leases.done(give, drop, committed)
    for ask, outcome in outcomes:  # committed
        ask.outcome = outcome
    if grants:
        leases.install(grants)


def _from_leases(leases: budget_leases.Registry, batch: list[_Ask]) -> list[_Ask]:
    """Admit from the process's leases the asks that fit in them now (a lease
    granted while they waited for their turn); returns the others."""
    rest = []
    seconds = budget_leases.lease_seconds()
    for ask in batch:
        taken = leases.take(ask.version, sorted((b.id, p.start) for b, p in ask.covering), ask.est.cost_nanos,
                            seconds)
        if taken is None:
            rest.append(ask)
        else:
            est = ask.est
            ask.outcome = Admission(None, est.cost_nanos, est.input_tokens, est.max_output_tokens, taken), None
    return rest


def _check_and_hold(org_id: int, ask: _Ask, live: set, spend: dict, held: dict, raised: dict, grants: list,
                    versions: dict | None = None):
    """One call of a batch: _reserve's check against the state read for the
    batch, and its reservations (or leases, added to `grants`) added to
    `held` for the calls after it."""
    est = ask.est
    covering = [(b, p) for b, p in ask.covering if b.id in live]
    keys = sorted((b.id, p.start) for b, p in covering)
    if not keys:
        return Admission(None, est.cost_nanos, est.input_tokens, est.max_output_tokens), None
    tightest = None
    for budget, period in covering:
        key = (budget.id, period.start)
        room = budget.amount_nanos + raised.get(key, 0) - spend.get(key, 0) - held.get(key, 0) - est.cost_nanos
        if room < 0 and (tightest is None or room < tightest[0]):
            tightest = (room, budget, held.get(key, 0))
    if tightest is not None:
        return None, tightest[1:]
    if est.cost_nanos == 0:
        return Admission(None, 0, est.input_tokens, est.max_output_tokens), None
    expires = ask.now + reservation_ttl()
    leased = _lease(org_id, ask, covering, spend, held, raised, grants, versions, expires) \
        if ask.version is not None and versions is not None and budget_leases.lease_seconds() > 0 else ()
    if leased:
        return Admission(None, est.cost_nanos, est.input_tokens, est.max_output_tokens, leased), None
    first = None
    for budget_id, period_start in keys:
        row_id = _insert_reservation(org_id, budget_id, period_start, est.cost_nanos, first, ask.now, expires)
        first = first or row_id
        held[(budget_id, period_start)] = held.get((budget_id, period_start), 0) + est.cost_nanos
    return Admission(first, est.cost_nanos, est.input_tokens, est.max_output_tokens), None


def _lease(org_id: int, ask: _Ask, covering: list, spend: dict, held: dict, raised: dict, grants: list,
           versions: dict, expires: datetime) -> tuple:
    """The call's estimate taken from leases of every covering budget, those
    of this batch first, new ones granted where needed (added to `grants`
    and `held`); () when a budget has too little room for leases, or the
    call's settings are no longer the organization's (then the call holds a
    reservation of its own)."""
    cost = ask.est.cost_nanos
    rooms = {}
    for budget, period in covering:
        key = (budget.id, period.start)
        rooms[key] = budget.amount_nanos + raised.get(key, 0) - spend.get(key, 0) - held.get(key, 0)
        if rooms[key] < budget_leases.MIN_ROOM_CALLS * cost:
            return ()
    # A lease outlives the call: it is granted only by budgets as they are now (read in this transaction,
    # under its locks), never by what a call pinned before an edit.
    if org_id not in versions:
        versions[org_id] = settings_cache.version(org_id)
    if versions[org_id] != ask.version:
        return ()
    taken = []
    for key in sorted(rooms):
        lease = next((g for g in reversed(grants) if g.key == key and g.version == ask.version
                      and g.free() >= cost), None)
        if lease is None:
            amount = min(rooms[key] // budget_leases.ROOM_SHARE, budget_leases.LEASE_CALLS * cost)
            lease = budget_leases.Lease(key, ask.version, amount, expires)
            lease.row_id = _insert_reservation(org_id, key[0], key[1], amount, None, ask.now, expires)
            held[key] = held.get(key, 0) + amount
            grants.append(lease)
        lease.in_flight += cost
        taken.append(lease)
    return tuple(taken)


def _state(org_id: int, keys: list[tuple[int, datetime]], now: datetime) -> tuple[dict, set, dict, dict]:
    """(spend, the ids of the budgets that still exist, money held by calls in
    flight, raises) of these (budget, period start) keys, read under the
    admission's locks. On PostgreSQL one call of the database function
    `cg_admission_state` (migration 0032) makes the same statements in the
    same order in one round trip."""
    if _postgres():
        flat_budgets, flat_starts = [b for b, _ in keys], [s for _, s in keys]
        rows = db.execute_sql("SELECT * FROM cg_admission_state(%s, %s, %s, %s)",
                              (org_id, flat_budgets, flat_starts, now)).fetchall()
        live = {b for b, _, alive, _, _, _ in rows if alive}
        spend = {(b, s): int(value) for b, s, alive, value, _, _ in rows if alive}
        held = {(b, s): int(value) for b, s, alive, _, value, _ in rows if alive}
        raised = {(b, s): int(value) for b, s, alive, _, _, value in rows if alive}
        return spend, live, held, raised
    spend, live = _lock_counters(org_id, keys, now)
    keys = [k for k in keys if k[0] in live]
    held, raised = (_held(keys, now), _raised(keys)) if keys else ({}, {})
    return spend, live, held, raised


def _lock_counters(org_id: int, keys: list[tuple[int, datetime]], now: datetime) -> tuple[dict, set[int]]:
    """(the covering budgets' current spend, the ids of those that still
    exist), read under a lock that other admissions of these budgets and
    ingest's counter updates wait for.

    SQLite: the write transaction already holds the database's one writer
    lock (a budget deleted before it is simply gone). PostgreSQL, in this order, so that admission queues behind a
    budget's rebuild or deletion instead of deadlocking with it:
    1. the organization row FOR KEY SHARE (what the reservations' foreign key
       takes anyway; a rebuild holds the row FOR UPDATE before it writes the
       counters; ingest's FOR SHARE and other admissions do not conflict);
    2. the budget rows FOR KEY SHARE in id order (a deletion locks its row
       before it cascades to the counters; edits take a weaker lock);
    3. the counter rows, created if missing, FOR UPDATE in (budget, period)
       order, the order ingest updates them in."""
    ids = sorted({budget_id for budget_id, _ in keys})
    postgres = isinstance(db.obj, PostgresqlDatabase)
    if postgres:
        _ORG_KEY_SHARE.all(org_id)
    live = {i for (i,) in _LIVE_BUDGETS.execute(*ids)}
    keys = [k for k in keys if k[0] in live]
    if not keys:
        return {}, live
    if postgres:
        (BudgetSpend.insert_many([{"budget": b, "period_start": p, "spend_nanos": 0, "requests": 0,
                                   "updated_at": now} for b, p in keys])
         .on_conflict_ignore().execute())
    return {(b, p): int(s) for b, p, s in _COUNTERS.execute(*_flat(keys))}, live


def _held(keys: list[tuple[int, datetime]], now: datetime) -> dict:
    """Money held by calls in flight, per (budget, period): unexpired reservations only."""
    return {(b, p): int(total or 0) for b, p, total in _HELD.execute(*_flat(keys), now)}


def _raised(keys: list[tuple[int, datetime]]) -> dict:
    """The periods' temporary raises, per (budget, period)."""
    return {(b, p): int(total or 0) for b, p, total in _RAISES.execute(*_flat(keys))}


# The admission's reads, run on every call: their SQL is built once per number of budgets (costguardian.prepared).

def _flat(keys: list[tuple[int, datetime]]) -> list:
    return [value for key in keys for value in key]


def _pairs(table, flat) -> object:
    """(budget = ? AND period_start = ?) OR … for the flattened (budget, period start) pairs."""
    condition = None
    for budget_id, start in zip(flat[::2], flat[1::2]):
        clause = (table.budget == budget_id) & (table.period_start == start)
        condition = clause if condition is None else (condition | clause)
    return condition


def _postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


_RESERVATION_FIELDS = [GatewayReservation.organization, GatewayReservation.budget, GatewayReservation.period_start,
                       GatewayReservation.amount_nanos, GatewayReservation.admission, GatewayReservation.created_at,
                       GatewayReservation.expires_at]
_RESERVE = Prepared(lambda *row: GatewayReservation.insert_many([row], fields=_RESERVATION_FIELDS)
                    .returning(GatewayReservation.id).tuples())
_SETTLE = Prepared(lambda admission_id, same_id: GatewayReservation.delete().where(
    (GatewayReservation.id == admission_id) | (GatewayReservation.admission == same_id)))


def _insert_reservation(*row) -> int:
    """Insert one reservation (organization, budget, period start, amount,
    admission, created, expires); returns its id."""
    if not _postgres() and sqlite3.sqlite_version_info < (3, 35, 0):  # no RETURNING
        return GatewayReservation.insert_many([row], fields=_RESERVATION_FIELDS).execute()
    return _RESERVE.scalar(*row)


_ORG_KEY_SHARE = Prepared(lambda org_id: Organization.select(Organization.id).where(Organization.id == org_id)
                          .for_update("FOR KEY SHARE").tuples())
_LIVE_BUDGETS = Prepared(lambda *ids: (lambda query: query.for_update("FOR KEY SHARE") if _postgres() else query)(
    Budget.select(Budget.id).where(Budget.id.in_(list(ids))).order_by(Budget.id).tuples()))
_COUNTERS = Prepared(lambda *flat: (lambda query: query.for_update() if _postgres() else query)(
    BudgetSpend.select(BudgetSpend.budget, BudgetSpend.period_start, BudgetSpend.spend_nanos)
    .where(_pairs(BudgetSpend, flat)).order_by(BudgetSpend.budget, BudgetSpend.period_start).tuples()))
_HELD = Prepared(lambda *args: GatewayReservation.select(
    GatewayReservation.budget, GatewayReservation.period_start, fn.SUM(GatewayReservation.amount_nanos))
    .where(_pairs(GatewayReservation, args[:-1]), GatewayReservation.expires_at > args[-1])
    .group_by(GatewayReservation.budget, GatewayReservation.period_start).tuples())
_RAISES = Prepared(lambda *flat: BudgetIncrease.select(
    BudgetIncrease.budget, BudgetIncrease.period_start, fn.SUM(BudgetIncrease.amount_nanos))
    .where(_pairs(BudgetIncrease, flat)).group_by(BudgetIncrease.budget, BudgetIncrease.period_start).tuples())


def settle(admission: Admission, spent: int = 0) -> None:
    """Release the call's reservations (after its usage event was recorded;
    `spent`: its cost, now in the spend counters, which its leases' rows are
    lowered by). Idempotent: a second settle deletes nothing. A database
    error is logged, not raised (the proxy settles in a `finally`): the
    reservation then stops counting when it expires."""
    if admission is None:
        return
    if admission.leases:
        held, admission.leases = admission.leases, ()
        try:
            if spent > 0:
                with write_transaction():
                    for lease in sorted(held, key=lambda lease: lease.row_id):
                        budget_leases.lower(lease.row_id, spent)
        except _DATABASE_DOWN:
            # The lease still counts the cost as spent (it admits that much less); its row holds it until deleted.
            log.exception("lowering the gateway's budget leases by a call's cost failed; they hold it until retired")
        budget_leases.registry().settled(held, admission.reserved_nanos, spent)
    if admission.id is None:
        return
    try:
        with write_transaction():  # queued with the other writers (db.SerializedSqliteDatabase)
            _SETTLE.write(admission.id, admission.id)
    except _DATABASE_DOWN:
        log.exception("settling gateway admission %s failed; its reservation expires instead", admission.id)


_RELEASE = Prepared(lambda *ids: GatewayReservation.delete().where(
    GatewayReservation.id.in_(list(ids[:len(ids) // 2])) | GatewayReservation.admission.in_(list(ids[len(ids) // 2:]))))


def release(admission_ids: list[int]) -> None:
    """Release the reservations of these admissions inside the caller's write
    transaction (the gateway's recording: in the one that stored the calls'
    events, so their cost is counted when their holds end)."""
    _RELEASE.write(*admission_ids, *admission_ids)


def sweep_expired(now: datetime | None = None) -> int:
    """Delete reservations that expired (their calls never settled). They
    already stopped counting at expiry; this only keeps the table small."""
    now = now or clock.now()
    return GatewayReservation.delete().where(GatewayReservation.expires_at <= now).execute()


# --- blocked ----------------------------------------------------------------------------------------

def _blocked(org: Organization, status, held: int, est: Estimate) -> Blocked:
    budget = status.budget
    resets_at = status.period.end if budget.period != "custom" else None
    if resets_at is not None:
        when = f"It resets at {timefmt.format_time(resets_at, org)} ({org.time_zone or 'UTC'})."
    else:
        when = f"Its period runs until {status.period.last_day.isoformat()} and does not reset."
    who = RAISERS
    try:
        if budget.owner_id:
            who = f"{budget.owner.display_name} (the budget's owner) or {RAISERS}"
    except _DATABASE_DOWN:
        pass
    message = (f"Blocked by the hard budget \"{budget.name}\": {format_usd(status.spend)} of "
               f"{format_usd(status.limit)} spent this period"
               + (f", {format_usd(held)} held for calls in progress" if held else "")
               + f", and this call may cost up to {format_usd(est.cost_nanos)}. {when} "
               f"{who[0].upper() + who[1:]} can raise it.")
    return Blocked(budget.name, budget.id, resets_at, message)


def _alert_blocked(status, now: datetime) -> None:
    """The budget-blocked notification, once per budget and period (the
    alert row's unique key; later refusals cost one indexed lookup)."""
    from costguardian.services.budgets import budgets

    try:
        budgets.alert_blocked(status, now)
    except Exception:  # the call is refused either way; the periodic check resends unsent alerts
        log.exception("raising the blocked alert of budget %s failed", status.budget.id)


# --- the database is down ---------------------------------------------------------------------------

# Which organizations have hard budgets, as last seen (org id → (has hard, seen at)): when the
# database is down this decides fail-closed or open. Refreshed at most once a minute per worker.
_hard_orgs: dict[int, tuple[bool, datetime]] = {}
HARD_ORGS_REFRESH = timedelta(minutes=1)


def _remember_hard(org_id: int, has_hard: bool | None, now: datetime) -> None:
    """`has_hard` None: not known from the call (no hard budget covers it); look it up if stale."""
    if has_hard is None:
        known = _hard_orgs.get(org_id)
        if known is not None and now - known[1] < HARD_ORGS_REFRESH:
            return
        has_hard = Budget.select().where(Budget.organization == org_id, Budget.enforcement == "hard").exists()
    if len(_hard_orgs) > 100_000:
        _hard_orgs.clear()
    _hard_orgs[org_id] = (has_hard, now)


def _database_down(call: Call, exc: Exception) -> Admission:
    """Fail open for organizations known to have no hard budget (or when
    CG_GATEWAY_FAIL_OPEN is on), closed otherwise (unknown counts as hard)."""
    log.error("gateway admission: the database is unreachable (%s)", exc)
    has_hard = _hard_orgs.get(call.org.id, (True, None))[0]
    if fail_open() or not has_hard:
        log.warning("gateway admission: forwarding a call of organization %s unchecked (fail-open)", call.org.id)
        return Admission(None, 0, 0, max_output_tokens(call.body if isinstance(call.body, dict) else {}))
    raise Unavailable("Cost Guardian cannot check this organization's hard budgets right now (its database is "
                      "unreachable), so the call was not forwarded. Retry shortly; an operator can set "
                      "CG_GATEWAY_FAIL_OPEN=1 to forward calls unchecked while the database is down.")
