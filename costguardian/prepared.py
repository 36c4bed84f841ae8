"""Queries whose SQL text is built once per process, for the hot paths.

peewee builds a query's SQL from its expression tree every time it runs: for
a select of a model's every column that costs more than running it on SQLite
(a gateway call ran ~26 statements, and building them was about half of the
call's CPU). A `Prepared` query is built the first time with real values;
its SQL text is kept and later runs only bind new values:

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
conversions), through the query's own cursor wrapper.
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

    def execute(self, *params):
        """The query's cursor wrapper (iterate it for its rows)."""
        database = db.obj
        shape = (id(database), len(params))
        kept = self._kept.get(shape, False)
        if kept is False:
            query = self.build(*params)
            sql, bound = query.sql()
            kept = (query, sql) if list(bound) == list(params) else None
            if kept is None:
                log.warning("prepared query not kept (it binds %r for the arguments %r): %s", bound, params, sql)
            with self._lock:
                self._kept[shape] = kept
        if kept is None:
            return self.build(*params).execute()
        template, sql = kept
        return template._get_cursor_wrapper(database.execute_sql(sql, params))

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
