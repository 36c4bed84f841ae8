"""Queries whose SQL text is built once per process, for the hot paths.

peewee builds a query's SQL from its expression tree every time it runs: for
a select of a model's every column that costs more than running it on SQLite
(a gateway call ran ~26 statements, and building them was about half of the
call's CPU). A `Prepared` query is built the first time with real values;
its SQL text is kept and later runs only bind new values (`write` for an
insert or a delete without RETURNING):

    BY_PREFIX = Prepared(lambda prefix, one: ApiKey.select(ApiKey, Organization).join(Organization)
                         .where(ApiKey.prefix == prefix).limit(one))
    key = BY_PREFIX.first(prefix, 1)

The builder must use its arguments as the query's parameters, each once, in
the order they appear in the SQL, without constants of its own (pass them as
arguments, as `one` above). A builder taking `*values` (an IN list, one
condition per pair) may build other SQL for another number of them: the SQL
is kept per number of arguments. That is checked on the first run: if the SQL
built binds other values than the arguments (a field converted one, the
builder added one), the query is not kept and is built on every run, as if
it were not prepared — never wrong, only slower. Rows come back exactly as
the built query returns them (models, tuples or dicts, with the fields'
conversions), through the query's own cursor wrapper (which works out its columns only once per
SQL: _Remembered).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from costguardian.extensions import db

log = logging.getLogger(__name__)


class Prepared:
    every: list["Prepared"] = []  # all of them, for the test that each one's SQL is kept

    def __init__(self, build: Callable[..., Any]):
        Prepared.every.append(self)
        self.build = build
        # (id of the database, number of arguments) → (template query, SQL), or None: built every time
        self._kept: dict[tuple[int, int], tuple[Any, str] | None] = {}
        self._lock = threading.Lock()
        # shape → what the cursor wrapper worked out from the columns on its first row (_Remembered)
        self._columns: dict[tuple[int, int], dict] = {}

    def execute(self, *params):
        """The query's cursor wrapper (iterate it for its rows)."""
        kept = self._keep(params)
        if kept is None:
            return self.build(*params).execute()
        template, sql = kept
        wrapper = template._get_cursor_wrapper(db.obj.execute_sql(sql, params))
        shape = (id(db.obj), len(params))
        columns = self._columns.get(shape)
        if columns is not None:
            wrapper.__dict__.update(columns)
            wrapper.initialized = True
        elif hasattr(wrapper, "initialize"):
            wrapper.initialize = _Remembered(wrapper, self._columns, shape)
        return wrapper

    def write(self, *params) -> None:
        """Run a write without RETURNING (an insert, a delete)."""
        kept = self._keep(params)
        if kept is None:
            self.build(*params).execute()
        else:
            db.obj.execute_sql(kept[1], params)

    def _keep(self, params: tuple):
        """(template query, SQL) for this database and number of arguments,
        built and checked on the first run; None when it is built every time."""
        shape = (id(db.obj), len(params))
        kept = self._kept.get(shape, False)
        if kept is False:
            query = self.build(*params)
            sql, bound = query.sql()
            kept = (query, sql) if list(bound) == list(params) else None
            if kept is None:
                log.warning("prepared query not kept (it binds %r for the arguments %r): %s", bound, params, sql)
            with self._lock:
                self._kept[shape] = kept
        return kept

    def kept(self) -> dict:
        """{(database id, number of arguments): kept or not} for the shapes run so far."""
        return {shape: entry is not None for shape, entry in self._kept.items()}

    def all(self, *params) -> list:
        return list(self.execute(*params))

    def first(self, *params):
        for row in self.execute(*params):
            return row
        return None

    def scalar(self, *params):
        row = self.first(*params)
        return row[0] if row is not None else None


class _Remembered:
    """A cursor wrapper's `initialize`, run once per prepared SQL: peewee
    works out on the first row which column goes to which model and field,
    with which converter (for a select of two models' every column, more CPU
    than making the rows); the same SQL always returns the same columns, so
    later wrappers of it take what the first one worked out."""

    PER_CURSOR = {"cursor", "row_cache", "count", "index", "populated", "initialized", "initialize"}

    def __init__(self, wrapper, columns: dict, shape: tuple[int, int]):
        self.wrapper, self.columns, self.shape = wrapper, columns, shape
        self.initialize = type(wrapper).initialize.__get__(wrapper)

    def __call__(self) -> None:
        before = dict(vars(self.wrapper))
        self.initialize()
        del self.wrapper.initialize  # the wrapper's own method again
        worked_out = {name: value for name, value in vars(self.wrapper).items()
                      if name not in self.PER_CURSOR and (name not in before or before[name] is not value)}
        if not any(held is self.wrapper for value in worked_out.values() for held in _closed_over(value)):
            # (named tuples' constructor is a closure over its own wrapper, and its cursor: not shared)
            self.columns[self.shape] = worked_out


def _closed_over(value) -> list:
    """What a function's closure holds (nothing for other values)."""
    held = []
    for cell in getattr(value, "__closure__", None) or ():
        try:
            held.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    return held
