"""Realistic demo usage for an organization: several providers and models at
their real catalog prices, departments, people and their customers' end-user
ids, several keys, a weekday/weekend and working-hours rhythm and a growth
trend over the last 90 days. Every event goes through the ingest service,
exactly as if sent to POST /api/v1/usage."""
from __future__ import annotations

import math
import random
import uuid
from bisect import bisect_left
from datetime import datetime, timedelta
from itertools import accumulate

from costguardian.models import ApiKey, Department, Membership, User, utcnow
from costguardian.services import ingest, keys
from costguardian.services.actor import Actor

DAYS = 90
BATCH = 1000
# provider, model, weight, typical input tokens, typical output tokens, cache share
MODELS = [
    ("openai", "gpt-4o-mini", 30, 1_800, 300, 0.3),
    ("openai", "gpt-4o", 14, 2_500, 450, 0.35),
    ("openai", "o3-mini", 4, 3_000, 1_800, 0.1),
    ("openai", "text-embedding-3-small", 12, 600, 0, 0.0),
    ("anthropic", "claude-sonnet-4-5", 12, 6_000, 700, 0.55),
    ("anthropic", "claude-haiku-4-5", 8, 2_000, 300, 0.4),
    ("google", "gemini-2.5-flash", 8, 3_000, 500, 0.2),
    ("google", "gemini-2.5-pro", 3, 9_000, 900, 0.3),
    ("mistral", "mistral-small-latest", 4, 1_200, 250, 0.0),
    ("deepseek", "deepseek-chat", 3, 2_200, 400, 0.25),
    ("acme-selfhosted", "llama-3.1-70b-finetune", 2, 1_500, 300, 0.0),  # no catalog price: shows as unpriced
]
KEYS = [  # name, scopes, department
    ("search-service prod", ["ingest", "gateway"], "Platform"),
    ("support-bot", ["ingest", "gateway"], "Support"),
    ("research notebooks", ["ingest", "read"], "Research"),
    ("marketing copy tool", ["ingest"], "Marketing"),
]
TAGS = ["feature:search", "feature:chat", "feature:summarise", "env:prod", "env:staging", "customer-tier:enterprise"]
# Share of a working day's calls per hour (UTC); nights are quiet.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 2, 2, 1]


def demo_keys(org) -> list[ApiKey]:
    """The demo's keys, created on first use (bound to its departments)."""
    existing = list(ApiKey.in_org(org).where(ApiKey.revoked_at.is_null()))
    if existing:
        return existing
    departments = {d.name: d for d in Department.in_org(org)}
    return [keys.create_key(org, Actor.system(), name, scopes, department=departments.get(dept)).key
            for name, scopes, dept in KEYS]


def generate(org, count: int, seed: int | None = None, now: datetime | None = None, progress=None) -> dict:
    """Send `count` events through ingest; returns what was accepted."""
    rng = random.Random(seed)
    now = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=DAYS)
    api_keys = demo_keys(org)
    members = [u.email for u in User.select(User.email).join(Membership).where(Membership.organization == org)]
    departments = [d.name for d in Department.in_org(org)]
    end_users = [f"customer-{i:04d}" for i in range(300)]
    models = [m[:2] for m in MODELS]
    model_cum = list(accumulate(m[2] for m in MODELS))
    shape = {m[:2]: m[3:] for m in MODELS}

    # Weight every hour of the period: weekday/weekend, working hours, growth.
    hours, weights = [], []
    for h in range(DAYS * 24):
        moment = start + timedelta(hours=h)
        weekend = moment.weekday() >= 5
        growth = 1.0 + 0.8 * h / (DAYS * 24)
        weights.append(HOUR_WEIGHTS[moment.hour] * (0.35 if weekend else 1.0) * growth)
        hours.append(moment)
    hour_cum = list(accumulate(weights))

    run = uuid.uuid4().hex[:8]
    totals = {"accepted": 0, "rejected": 0, "duplicates": 0}
    batch: list[dict] = []
    for n in range(count):
        moment = hours[bisect_left(hour_cum, rng.random() * hour_cum[-1])] + timedelta(seconds=rng.randrange(3600))
        provider, model = models[bisect_left(model_cum, rng.random() * model_cum[-1])]
        typical_in, typical_out, cache_share = shape[(provider, model)]
        input_tokens = max(1, int(rng.lognormvariate(math.log(typical_in), 0.7)))
        cached = int(input_tokens * cache_share * rng.random()) if cache_share else 0
        output_tokens = int(rng.lognormvariate(math.log(typical_out), 0.6)) if typical_out else 0
        event = {"event_id": f"demo-{run}-{n}", "provider": provider, "model": model,
                 "occurred_at": moment.isoformat() + "Z", "input_tokens": input_tokens,
                 "cache_read_tokens": cached, "output_tokens": output_tokens}
        roll = rng.random()
        if roll < 0.45 and members:
            event["user"] = rng.choice(members)
        elif roll < 0.85:
            event["user"] = rng.choice(end_users)
        if departments and rng.random() < 0.25:
            event["department"] = rng.choice(departments)
        if rng.random() < 0.5:
            event["tags"] = rng.sample(TAGS, rng.randint(1, 2))
        batch.append(event)
        if len(batch) == BATCH or n == count - 1:
            result = ingest.ingest(org, rng.choice(api_keys), batch, now=now + timedelta(hours=1))
            totals["accepted"] += result.count("accepted")
            totals["rejected"] += result.count("rejected")
            totals["duplicates"] += result.count("duplicate")
            batch = []
            if progress:
                progress(n + 1)
    return totals
