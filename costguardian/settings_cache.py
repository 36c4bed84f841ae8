"""An organization's settings that every gateway call reads, kept per process
and checked by one number.

Each call reads the organization's budgets (which cover it), credentials,
model aliases, price overrides and time zone: several queries, and Budget and
override rows built by peewee, on every call, for data that changes a few
times a day. Every change to them changes the organization's settings
version (org_settings_version, kept by database triggers: migration 0031),
so one cheap read of the version says whether what a process keeps is still
what the database holds:

    with settings_cache.pinned(org.id):          # reads the version once
        scopes = settings_cache.cached("scopes", org.id, None, lambda: load(org.id))

Only code inside a `pinned` block uses what is kept, and the block reads the
version when it starts: a pin never outlives the unit of work it was read
for (a gateway call before forwarding; the recording's pricing; a write
transaction, where the version is read under its locks), so a change is
seen by the next unit of work after its commit. Outside a block, `cached`
just loads. What is kept is shared by the threads of the process and must
not be changed by its users.

A kept value is always at least as new as its version: it is loaded after
the version was read. Versions start at a random number, so a database
created again (the tests, a restore onto a new database) does not repeat a
(organization, version) a process still holds.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Hashable, TypeVar

from costguardian.extensions import db
from costguardian.prepared import Prepared

T = TypeVar("T")

MAX_ENTRIES = 20_000  # then the least recently used goes

_entries: OrderedDict[tuple, tuple[int, object]] = OrderedDict()
_entries_lock = threading.Lock()
_pins = threading.local()
_UNPINNED = object()


def _version_query(org_id):
    from costguardian.models import OrgSettingsVersion

    return (OrgSettingsVersion.select(OrgSettingsVersion.version)
            .where(OrgSettingsVersion.organization == org_id).tuples())


_VERSION = Prepared(_version_query)


def version(org_id: int) -> int | None:
    """The organization's settings version now (None: it has none, nothing is kept)."""
    return _VERSION.scalar(org_id)


@contextmanager
def pinned(org_id: int, known: int | None = None):
    """Within the block, `cached` reads of this organization may use what is
    kept for its current version (read now, unless `known` was just read)."""
    pins = getattr(_pins, "versions", None)
    if pins is None:
        pins = _pins.versions = {}
    before = pins.get(org_id, _UNPINNED)
    pins[org_id] = known if known is not None else version(org_id)
    try:
        yield
    finally:
        if before is _UNPINNED:
            pins.pop(org_id, None)
        else:
            pins[org_id] = before


def pinned_version(org_id: int) -> int | None:
    """The version this thread's pin of the organization read (None: not
    pinned, or the organization has no version)."""
    pins = getattr(_pins, "versions", None)
    return None if pins is None else pins.get(org_id)


def cached(kind: str, org_id: int, key: Hashable, load: Callable[[], T]) -> T:
    """`load()`, or what it returned before for this organization's pinned version."""
    pins = getattr(_pins, "versions", None)
    current = pins.get(org_id) if pins else None
    if current is None:
        return load()
    slot = (id(db.obj), kind, org_id, key)
    with _entries_lock:
        entry = _entries.get(slot)
        if entry is not None and entry[0] == current:
            _entries.move_to_end(slot)
            return entry[1]
    value = load()
    with _entries_lock:
        _entries[slot] = (current, value)
        _entries.move_to_end(slot)
        while len(_entries) > MAX_ENTRIES:  # (a caller naming endless models pushes out only the oldest)
            _entries.popitem(last=False)
    return value
