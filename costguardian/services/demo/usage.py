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

from costguardian import clock
from costguardian.models import ApiKey, Department, Membership, User
from costguardian.services import keys
from costguardian.services.usage import ingest
from costguardian.services.actor import Actor

DAYS = 90
BATCH = 1000
# Each demo service has its own key (bound to a department), its own few
# models, and its own way of attributing calls to people; that is how real
# organizations' traffic looks, and why hourly rollups compress it.
# name, department, share of traffic, [(provider, model, share, input, output, cache share)],
# (share of calls attributed to members, share attributed to the service's end users)
SERVICES = [
    ("search-service prod", "Platform", 38, [
        ("openai", "gpt-4o-mini", 0.55, 1_800, 300, 0.3),
        ("openai", "text-embedding-3-small", 0.45, 600, 0, 0.0)], (0.0, 0.0)),
    ("support-bot", "Support", 24, [
        ("anthropic", "claude-haiku-4-5", 0.8, 2_000, 300, 0.4),
        ("anthropic", "claude-sonnet-4-5", 0.2, 6_000, 700, 0.55)], (0.0, 0.15)),
    ("research notebooks", "Research", 9, [
        ("anthropic", "claude-sonnet-4-5", 0.4, 9_000, 900, 0.55),
        ("openai", "gpt-4o", 0.25, 2_500, 450, 0.35),
        ("openai", "o3-mini", 0.2, 3_000, 1_800, 0.1),
        ("google", "gemini-2.5-pro", 0.15, 9_000, 900, 0.3)], (0.9, 0.0)),
    ("data pipeline", "Engineering", 16, [
        ("google", "gemini-2.5-flash", 0.7, 3_000, 500, 0.2),
        ("deepseek", "deepseek-chat", 0.3, 2_200, 400, 0.25)], (0.0, 0.0)),
    ("marketing copy tool", "Marketing", 10, [
        ("openai", "gpt-4o", 0.5, 1_500, 600, 0.0),
        ("mistral", "mistral-small-latest", 0.5, 1_200, 250, 0.0)], (0.6, 0.0)),
    ("self-hosted evals", "Research", 3, [  # no catalog price: shows on the unpriced panel
        ("acme-selfhosted", "llama-3.1-70b-finetune", 1.0, 1_500, 300, 0.0)], (0.0, 0.0)),
]
END_USERS = [f"customer-{i:03d}" for i in range(1, 41)]
TAGS = ["feature:search", "feature:chat", "feature:summarise", "env:prod", "env:staging"]
# Share of a working day's calls per hour (UTC); nights are quiet.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 2, 2, 1]


def demo_keys(org) -> dict[str, ApiKey]:
    """The demo services' keys by name, created on first use."""
    existing = {k.name: k for k in ApiKey.in_org(org).where(ApiKey.revoked_at.is_null())}
    departments = {d.name: d for d in Department.in_org(org)}
    for name, department, *_ in SERVICES:
        if name not in existing:
            existing[name] = keys.create_key(org, Actor.system(), name, ["ingest", "gateway"],
                                             department=departments.get(department)).key
    return existing


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    return bisect_left(cumulative, rng.random() * cumulative[-1])


def generate(org, count: int, seed: int | None = None, now: datetime | None = None, progress=None) -> dict:
    """Send `count` events through ingest; returns the per-status totals."""
    rng = random.Random(seed)
    now = (now or clock.now()).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=DAYS)
    api_keys = demo_keys(org)
    members = [u.email for u in User.select(User.email).join(Membership).where(Membership.organization == org)]
    service_cum = list(accumulate(s[2] for s in SERVICES))
    model_cums = [list(accumulate(m[2] for m in s[3])) for s in SERVICES]
    customer_cum = list(accumulate(1 / (i + 1) for i in range(len(END_USERS))))  # a few big customers
    member_cum = list(accumulate(range(len(members), 0, -1)))  # some people use AI far more than others

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
    last_sent: dict[str, datetime] = {}  # each service's latest event: when its key was last used
    batch: list[dict] = []
    for n in range(count):
        service_index = _pick(rng, service_cum)
        name, _, _, service_models, (member_share, end_user_share) = SERVICES[service_index]
        provider, model, _, typical_in, typical_out, cache_share = service_models[_pick(rng, model_cums[service_index])]
        moment = hours[_pick(rng, hour_cum)] + timedelta(seconds=rng.randrange(3600))
        input_tokens = max(1, int(rng.lognormvariate(math.log(typical_in), 0.7)))
        cached = int(input_tokens * cache_share * rng.random()) if cache_share else 0
        output_tokens = int(rng.lognormvariate(math.log(typical_out), 0.6)) if typical_out else 0
        event = {"event_id": f"demo-{run}-{n}", "provider": provider, "model": model,
                 "occurred_at": moment.isoformat() + "Z", "input_tokens": input_tokens,
                 "cache_read_tokens": cached, "output_tokens": output_tokens}
        roll = rng.random()
        if roll < member_share and members:
            event["user"] = members[_pick(rng, member_cum)]
        elif roll < member_share + end_user_share:
            event["user"] = END_USERS[_pick(rng, customer_cum)]
        if rng.random() < 0.5:
            event["tags"] = [TAGS[service_index % 3], "env:prod" if rng.random() < 0.9 else "env:staging"]
        batch.append((name, event))
        last_sent[name] = max(last_sent.get(name, moment), moment)
        if len(batch) == BATCH or n == count - 1:
            # one request per service, as each service sends with its own key
            by_key: dict[str, list[dict]] = {}
            for key_name, item in batch:
                by_key.setdefault(key_name, []).append(item)
            for key_name, events in by_key.items():
                result = ingest.ingest(org, api_keys[key_name], events, now=now + timedelta(hours=1))
                totals["accepted"] += result.count("accepted")
                totals["rejected"] += result.count("rejected")
                totals["duplicates"] += result.count("duplicate")
            batch = []
            if progress:
                progress(n + 1)
    _mark_used(api_keys, last_sent)
    return totals


def _mark_used(api_keys: dict[str, ApiKey], last_sent: dict[str, datetime]) -> None:
    """Each demo key's "Last used" as ingest would have set it had each event
    been sent when it happened (never moved back by an older run)."""
    for name, moment in last_sent.items():
        key = api_keys[name]
        (ApiKey.update(last_used_at=moment)
         .where(ApiKey.id == key.id, (ApiKey.last_used_at.is_null()) | (ApiKey.last_used_at < moment)).execute())
