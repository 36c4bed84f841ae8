"""Gateway rate limits: requests per minute (RPM) and tokens per minute
(TPM), per API key and per organization (every key together), each optional.

    admitted = ratelimits.admit(org, api_key)   # before forwarding; raises Limited
    reply.headers.update(admitted.headers)       # x-ratelimit-* of the tightest limits
    admitted.charge(ratelimits.tokens_of(record))  # after the call, in its finish

Counted with the `limits` library, in one storage per app built from
`RATELIMIT_STORAGE_URI` (the same setting as the sign-in limits): by default
a SQLite file shared by every process of the host (costguardian/
ratelimit_storage.py), `redis://` to share them across hosts, `memory://`
for one process only (docs/OPERATIONS.md). A storage that cannot be reached
lets calls through (fails open) and logs: budgets, not rate limits, guard
money. Redis is given short socket timeouts (STORAGE_TIMEOUT) so that a
hung Redis delays a call by at most that much, not for ever.

- Requests: a sliding-window counter (no burst of twice the limit where a
  fixed window starts afresh). A call first tests every request window (the
  key's, then the organization's) and the first without room refuses it,
  taking nothing from any window; otherwise it takes one request from each.
  (Two calls racing for a window's last request: the loser is refused after
  its earlier windows counted it — the one case where a refused call
  counts.)
- Tokens: a fixed one-minute window. A call is refused while the window's
  count has reached the limit; otherwise it goes through, and after it ended
  its actual total tokens (input, cached included, + output, from the
  provider's usage object or the gateway's estimate) are added, whatever the
  room left — so one call may take the window past its limit by its own size
  (as OpenAI's own limits do), and the following calls wait for the next
  window. Calls refused before reaching the provider add no tokens.

A refused call answers 429 in the caller's provider format (OpenAI: type
`requests`/`tokens`, code `rate_limit_exceeded`; Anthropic:
`rate_limit_error`) with `Retry-After`, is not forwarded, and is not written
to the request log (a refusal costs no database write, so a flood of them
does not load the database); no usage event exists for it, so the SDKs'
retries never record a call twice.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

from flask import current_app
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from costguardian import clock
from costguardian.services.usage.usage_objects import UsageObjectError, tokens_from_usage_object

log = logging.getLogger(__name__)

REQUESTS, TOKENS = "requests", "tokens"
KEY, ORGANIZATION = "key", "organization"
NAMESPACE = "cg-gateway"
STORAGE_TIMEOUT = 0.5  # seconds: Redis' connect and socket timeouts


class Limited(Exception):
    """The call is over a rate limit: refuse it with 429."""

    def __init__(self, kind: str, scope: str, per_minute: int, retry_after: int, headers: dict[str, str]):
        self.kind, self.scope, self.per_minute, self.retry_after = kind, scope, per_minute, retry_after
        self.headers = headers
        whose = "this API key" if scope == KEY else "your organization (all keys together)"
        unit = "requests per minute (RPM)" if kind == REQUESTS else "tokens per minute (TPM)"
        super().__init__(f"Rate limit reached for {whose} on {unit}: limit {per_minute}. "
                         f"Please try again in {retry_after}s.")
        self.message = str(self)


@dataclass(frozen=True)
class Limit:
    scope: str  # KEY or ORGANIZATION
    kind: str  # REQUESTS or TOKENS
    per_minute: int
    identity: str  # what the counter is kept under

    @property
    def item(self) -> RateLimitItemPerMinute:
        return RateLimitItemPerMinute(self.per_minute, namespace=NAMESPACE)


@dataclass
class Window:
    limit: Limit
    remaining: int
    reset_in: float  # seconds until the window is back to its full limit (0: nothing counted)


@dataclass
class Admitted:
    """A call within its limits: the headers to answer with, and the token
    limits its tokens count against once it ended."""

    limiters: _Limiters
    token_limits: list[Limit] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def charge(self, tokens: int) -> None:
        """Add the call's actual tokens to its token windows (after the call)."""
        if tokens <= 0:
            return
        for limit in self.token_limits:
            try:
                self.limiters.tokens.hit(limit.item, limit.identity, cost=int(tokens))
            except Exception:
                log.warning("gateway rate limits: could not count %s tokens for %s", tokens, limit.identity,
                            exc_info=True)


class _Limiters:
    def __init__(self, uri: str, key_prefix: str):
        options = ({"key_prefix": key_prefix, "socket_timeout": STORAGE_TIMEOUT,
                    "socket_connect_timeout": STORAGE_TIMEOUT} if uri.startswith("redis")
                   else {"key_prefix": key_prefix} if uri.startswith("cg-sqlite") else {})
        self.storage = storage_from_string(uri, **options)
        self.requests = SlidingWindowCounterRateLimiter(self.storage)
        self.tokens = FixedWindowRateLimiter(self.storage)


_build_lock = threading.Lock()


def limiters(app=None) -> _Limiters:
    """The app's storage and strategies, built once per app."""
    app = app or current_app._get_current_object()
    found = app.extensions.get("cg_gateway_ratelimits")
    if found is None:
        with _build_lock:
            found = app.extensions.get("cg_gateway_ratelimits")
            if found is None:
                prefix = app.config.get("RATELIMIT_KEY_PREFIX") or "LIMITS"
                found = app.extensions["cg_gateway_ratelimits"] = _Limiters(
                    str(app.config.get("RATELIMIT_STORAGE_URI") or "memory://"), prefix)
    return found


def reset(app=None) -> None:
    """Forget every count (tests)."""
    limiters(app).storage.reset()


def limits_for(org, api_key) -> list[Limit]:
    """The limits that apply to a call with this key, the key's first; with no
    key (the chat), the organization's alone."""
    found = []
    scopes = [(ORGANIZATION, f"org:{org.id}", org.gateway_rpm_limit, org.gateway_tpm_limit)]
    if api_key is not None:
        scopes.insert(0, (KEY, f"key:{api_key.prefix}", api_key.rpm_limit, api_key.tpm_limit))
    for scope, identity, rpm, tpm in scopes:
        if rpm:
            found.append(Limit(scope, REQUESTS, int(rpm), f"{identity}:{REQUESTS}"))
        if tpm:
            found.append(Limit(scope, TOKENS, int(tpm), f"{identity}:{TOKENS}"))
    return found


def admit(org, api_key) -> Admitted | None:
    """Count the call against its limits; None when none applies (or the
    storage is unreachable); Limited when one has no room."""
    applicable = limits_for(org, api_key)
    if not applicable:
        return None
    try:
        return _admit(Admitted(limiters()), applicable)
    except Limited:
        raise
    except Exception:
        log.warning("gateway rate limits: the limiter's storage failed; the call is let through", exc_info=True)
        return None


def _admit(admitted: Admitted, applicable: list[Limit]) -> Admitted:
    requests_limiter, tokens_limiter = admitted.limiters.requests, admitted.limiters.tokens
    token_limits = [limit for limit in applicable if limit.kind == TOKENS]
    for limit in token_limits:  # tokens first: a call refused for tokens takes no request
        if not tokens_limiter.test(limit.item, limit.identity):
            window = _window(tokens_limiter, limit)
            raise _limited(limit, window, [window, *_windows(admitted, applicable, skip=limit)])
    request_limits = [limit for limit in applicable if limit.kind == REQUESTS]
    for limit in request_limits:  # test all first: a call refused by one window takes nothing from the others
        if not requests_limiter.test(limit.item, limit.identity):
            window = _window(requests_limiter, limit)
            raise _limited(limit, window, [window, *_windows(admitted, applicable, skip=limit)])
    for limit in request_limits:
        if not requests_limiter.hit(limit.item, limit.identity):  # taken meanwhile by a concurrent call
            window = _window(requests_limiter, limit)
            raise _limited(limit, window, [window, *_windows(admitted, applicable, skip=limit)])
    admitted.token_limits = token_limits
    admitted.headers = headers(_windows(admitted, applicable))
    return admitted


def _windows(admitted: Admitted, applicable: list[Limit], skip: Limit | None = None) -> list[Window]:
    return [_window(admitted.limiters.requests if limit.kind == REQUESTS else admitted.limiters.tokens, limit)
            for limit in applicable if limit != skip]


def _window(limiter, limit: Limit) -> Window:
    stats = limiter.get_window_stats(limit.item, limit.identity)
    now = clock.now_aware().timestamp()  # the limiter's own clock is time.time(): the same
    reset_in = max(0.0, stats.reset_time - now)
    if reset_in <= 0 and stats.remaining < limit.per_minute:
        reset_in = 60.0  # Redis' sliding window reports a fresh window's end as 0 (its TTL modulo the window)
    return Window(limit, int(stats.remaining), reset_in)


def _limited(limit: Limit, window: Window, windows: list[Window]) -> Limited:
    wait = window.reset_in if window.reset_in > 0 else 60.0
    retry_after = max(1, math.ceil(wait))
    refused = headers(windows, refused=window)
    refused.update({"retry-after": str(retry_after), "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
                    "x-should-retry": "true"})
    return Limited(limit.kind, limit.scope, limit.per_minute, retry_after, refused)


def headers(windows: list[Window], refused: Window | None = None) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tightest window of each kind:
    the least remaining (then the lowest limit). A refused window is the one
    shown for its kind."""
    result = {}
    for kind in (REQUESTS, TOKENS):
        candidates = [w for w in windows if w.limit.kind == kind]
        if refused is not None and refused.limit.kind == kind:
            candidates = [refused]
        if not candidates:
            continue
        tightest = min(candidates, key=lambda w: (w.remaining, w.limit.per_minute))
        result[f"x-ratelimit-limit-{kind}"] = str(tightest.limit.per_minute)
        result[f"x-ratelimit-remaining-{kind}"] = str(0 if tightest is refused else tightest.remaining)
        result[f"x-ratelimit-reset-{kind}"] = duration(tightest.reset_in)
    return result


def duration(seconds: float) -> str:
    """OpenAI's reset format: `17ms`, `1s`, `6m0s`, `1h2m3s` (rounded up)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def tokens_of(record) -> int:
    """A finished call's total tokens (input, cached included, + output): 0
    when it was not forwarded or has no readable usage."""
    if record is None or not record.forwarded or not isinstance(record.usage, dict):
        return 0
    try:
        tokens = tokens_from_usage_object(record.usage, record.provider)
    except UsageObjectError:
        return 0
    return max(0, tokens.input) + max(0, tokens.output)


def merge_headers(reply_headers: dict[str, str], ours: dict[str, str]) -> None:
    """Put our x-ratelimit-* headers on an answer. The provider's own headers
    of the same names (its limits for the organization's provider key, shared
    by every Cost Guardian key) move to `x-cg-upstream-<name>`; its other
    rate-limit headers pass unchanged."""
    if not ours:
        return
    names = {name.lower() for name in ours}
    for name in [n for n in reply_headers if n.lower() in names]:
        value = reply_headers.pop(name)
        if name.lower().startswith("x-ratelimit-"):
            reply_headers[f"x-cg-upstream-{name.lower()}"] = value
    reply_headers.update(ours)
