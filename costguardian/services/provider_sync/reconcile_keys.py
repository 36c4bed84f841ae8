"""Reconciliation by provider key: for each key the provider reports, its
tokens and cost against what Cost Guardian recorded through the vault
credentials matched to it (key_match.py).

The recorded side reads the raw usage events of the range in one grouped
query (the (organization, occurred_at) index; only the matched credentials'
events), since the rollups carry no credential; events are counted by the
UTC hour they fall in, and the range is whole UTC hours (reconcile.utc_range),
so this is the same hour → local-day rule as the day table. Everything else
recorded for the provider — ingest API events, gateway calls through a
credential no provider key matched, events already past the organization's
retention — is one "not matched" line: the rollups' total minus the matched
events, so the table's totals always equal the day table's."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date

from peewee import Case, fn

from costguardian.models import KnownProviderKey, ProviderCredential, UsageEvent
from costguardian.services.provider_sync import key_match
from costguardian.services.provider_sync.reconcile import (MEASURES, Row, Side, _recorded_hours, _reported_hours,
                                                           _safe_cell, _str, _usd, utc_range)

MATCHED, KNOWN, SHADOW, NOT_MATCHED = "matched", "known", "shadow", "not_matched"
NOT_MATCHED_LABEL = "(recorded, not matched to a provider key)"
_ORDER = {SHADOW: 0, MATCHED: 1, KNOWN: 1, NOT_MATCHED: 2}


@dataclass
class KeyRow(Row):
    status: str = SHADOW
    name: str = ""  # as the provider lists the key
    hint: str = ""  # the provider's redacted value
    credentials: list[str] = field(default_factory=list)  # the vault credentials matched to it, by label

    @property
    def flagged(self) -> bool:
        # The "not matched" line explains the totals; the provider reports that usage under other keys.
        return self.status != NOT_MATCHED and super().flagged


def by_key(org, conn, first: date, last: date) -> list[KeyRow]:
    """One row per provider key reported in the range or matched to a vault
    credential that recorded usage in it, shadow keys first, then the
    "not matched" line."""
    start, end = utc_range(org, first, last)
    provider = conn.provider
    matches = key_match.matches(org, provider)
    listed = key_match.listed(org, provider)
    known = {k.key_id: k.label for k in KnownProviderKey.in_org(org).where(KnownProviderKey.provider == provider)}
    labels = {c.id: c.label for c in ProviderCredential.in_org(org).where(ProviderCredential.id.in_(list(matches)))
              } if matches else {}
    matched_keys = set(matches.values())
    rows: dict[str, KeyRow] = {}

    def row(unit: str) -> KeyRow:
        r = rows.get(unit)
        if r is None:
            status = MATCHED if unit in matched_keys else KNOWN if unit in known else SHADOW
            key = listed.get(unit)
            r = rows[unit] = KeyRow(unit, "", tolerance_bp=conn.tolerance_bp, status=status,
                                    name=key.name if key else known.get(unit, ""), hint=key.hint if key else "",
                                    credentials=sorted(labels.get(c, f"deleted credential #{c}")
                                                       for c, k in matches.items() if k == unit))
        return r

    for _, _, unit, side in _reported_hours(org, provider, start, end):
        row(unit).reported.add(side)
    itemised = Side()
    for credential_id, side in _recorded_by_credential(org, provider, start, end, list(matches)):
        row(matches[credential_id]).recorded.add(side)
        itemised.add(side)
    rest = Side()
    for _, _, side in _recorded_hours(org, provider, start, end):
        rest.add(side)
    for name in MEASURES + ("cost_nanos", "unpriced"):
        setattr(rest, name, getattr(rest, name) - getattr(itemised, name))
    ordered = sorted(rows.values(), key=lambda r: (_ORDER[r.status], -max(r.reported.cost_nanos,
                                                                          r.recorded.cost_nanos), r.label))
    if any(getattr(rest, name) for name in MEASURES + ("cost_nanos", "unpriced")):
        ordered.append(KeyRow(NOT_MATCHED_LABEL, "", recorded=rest, tolerance_bp=conn.tolerance_bp,
                              status=NOT_MATCHED))
    return ordered


def _recorded_by_credential(org, provider: str, start, end, credential_ids: list[int]):
    """(credential id, Side) for the matched credentials' events in [start, end)."""
    if not credential_ids:
        return
    E = UsageEvent
    unpriced = fn.SUM(Case(None, [(E.cost_nanos.is_null(), 1)], 0))
    query = (E.select(E.credential_id, fn.COUNT(E.id).alias("requests"),
                      *[fn.SUM(getattr(E, m)).alias(m) for m in MEASURES if m != "requests"],
                      fn.SUM(E.cost_nanos).alias("cost_nanos"), unpriced.alias("unpriced"))
             .where(E.organization == org, E.occurred_at >= start, E.occurred_at < end, E.provider == provider,
                    E.credential_id.in_(credential_ids))
             .group_by(E.credential_id))
    for r in query.dicts():
        yield r["credential_id"], Side(**{k: int(r[k] or 0) for k in MEASURES + ("cost_nanos", "unpriced")})


def totals(rows: list[KeyRow]) -> Row:
    total = Row("total", "")
    for r in rows:
        total.recorded.add(r.recorded)
        total.reported.add(r.reported)
    return total


def as_json(rows: list[KeyRow]) -> list[dict]:
    def side(s: Side) -> dict:
        return {"requests": s.requests, "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
                "tokens": s.tokens, "cost_usd": _usd(s.cost_nanos)}

    return [{"key": r.label if r.status != NOT_MATCHED else None, "status": r.status, "name": r.name,
             "hint": r.hint, "credentials": r.credentials, "recorded": side(r.recorded),
             "reported": side(r.reported), "token_drift": r.token_drift, "token_drift_pct": _str(r.token_drift_pct),
             "cost_drift_usd": _usd(r.cost_drift_nanos), "cost_drift_pct": _str(r.cost_drift_pct),
             "flagged": r.flagged} for r in rows]


def csv_lines(org, conn, first: date, last: date):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["key", "status", "name", "hint", "credentials", "recorded_tokens", "reported_tokens",
                     "token_drift", "token_drift_pct", "recorded_cost_usd", "reported_cost_usd", "cost_drift_usd",
                     "cost_drift_pct", "flagged"])
    for r in by_key(org, conn, first, last):
        writer.writerow([_safe_cell(r.label if r.status != NOT_MATCHED else ""), r.status, _safe_cell(r.name),
                         _safe_cell(r.hint), _safe_cell("; ".join(r.credentials)), r.recorded.tokens,
                         r.reported.tokens, r.token_drift, _str(r.token_drift_pct), _usd(r.recorded.cost_nanos),
                         _usd(r.reported.cost_nanos), _usd(r.cost_drift_nanos), _str(r.cost_drift_pct),
                         "yes" if r.flagged else "no"])
    yield buffer.getvalue()
