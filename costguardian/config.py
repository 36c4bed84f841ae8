"""Settings, read from the environment in one place.

Order of precedence: the defaults below, then the process environment (and a
`.env` file, if present), then the overrides a test passes to `create_app`.
Every setting is documented with its default in docs/OPERATIONS.md.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

PROJECT_ROOT = Path(__file__).resolve().parent.parent

GOOGLE_METADATA_URL = "https://accounts.google.com/.well-known/openid-configuration"

DEFAULTS: dict[str, object] = {
    "CG_ENV": "development",
    "SECRET_KEY": None,
    # Old keys that still verify (never sign) sessions, remember-me cookies, CSRF tokens and
    # emailed links while SECRET_KEY is rotated: comma-separated (costguardian/signing.py).
    "SECRET_KEY_FALLBACKS": None,
    "DATABASE_URL": "sqlite:///instance/costguardian.db",
    "HUEY_URL": "sqlite:///instance/huey.db",
    "CG_ENCRYPTION_KEYS": None,
    "GOOGLE_CLIENT_ID": None,
    "GOOGLE_CLIENT_SECRET": None,
    "OIDC_SERVER_METADATA_URL": GOOGLE_METADATA_URL,
    "OIDC_PROVIDER_NAME": "Google",
    "MAIL_URL": "console://",
    "MAIL_FROM": None,  # unset: the console's "Email sender" (default "Cost Guardian <no-reply@localhost>")
    # Platform settings the console also sets; set here, they win (services/platform/settings.py).
    "CG_SIGNUPS": None,  # open | invite_only | closed
    "CG_SIGNUP_DOMAINS": None,  # comma-separated domains allowed to sign up
    "CG_DEFAULT_PLAN": None,  # plan code for new organizations
    "CG_IMPERSONATION": None,  # 1/0: may platform admins act as users
    # Rate-limit counters (sign-in limits, the gateway's RPM/TPM). Unset: a SQLite file in the
    # instance folder, shared by every process of the host (costguardian/ratelimit_storage.py);
    # redis://… to share them across hosts; memory:// for one process only.
    "RATELIMIT_STORAGE_URI": None,
    "LOGIN_LIMIT_PER_IP": "20 per minute",
    "LOGIN_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
    "PASSWORD_RESET_TTL_MINUTES": 60,
    "CG_TRUSTED_PROXIES": 0,
    "CG_BASE_URL": None,
    "CG_ALLOW_PRIVATE_WEBHOOKS": False,
    "CG_WEBHOOK_TIMEOUT": 10,
    "CG_WEBHOOK_DISABLE_AFTER": 10,
    "CG_RETRY_SCALE": 1.0,
    "CG_PROVIDER_BASE_URLS": "",
    "CG_PROVIDER_TIMEOUT": 10,
    # Gateway admission (services.gateway.admission; docs/OPERATIONS.md):
    "CG_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS": 4096,  # output tokens reserved when a call sets no max_tokens
    "CG_GATEWAY_RESERVATION_TTL": 3600,  # seconds before an unsettled reservation stops holding money
    "CG_GATEWAY_FAIL_OPEN": False,  # database down: forward calls even for organizations with hard budgets
    "CG_GATEWAY_LEASE_SECONDS": 2.0,  # how long a process's budget lease admits calls (leases.py); 0: none
    # Gateway proxy (services.gateway.proxy): waiting for a provider.
    "CG_GATEWAY_CONNECT_TIMEOUT": 10.0,  # seconds to connect to a provider
    "CG_GATEWAY_READ_TIMEOUT": 600.0,  # seconds between two bytes of a provider's answer (then 504)
    # Billing for Cost Guardian itself (services/billing; docs/BILLING.md). Off: no
    # billing screen, no plan limit; a self-hoster never sees a paywall.
    "BILLING_ENABLED": False,
    "STRIPE_SECRET_KEY": None,
    "STRIPE_WEBHOOK_SECRET": None,  # whsec_… of the endpoint /billing/stripe/webhook
    "STRIPE_API_BASE": None,  # another address for Stripe's API (a local fake in tests)
    "STRIPE_WEBHOOK_TOLERANCE": 300,  # seconds a webhook's signed timestamp may be old
    "STRIPE_METER_EVENT_NAME": "cg_tracked_events",  # the Billing Meter's event_name
    "BILLING_GRACE_DAYS": 14,  # days past_due keeps the plan before Free limits apply
    # Error reports to Sentry (optional): unset, sentry-sdk is not even imported.
    "SENTRY_DSN": None,
    # Logs and metrics (costguardian/observability; docs/OPERATIONS.md "Observability"):
    "CG_LOG_FORMAT": None,  # json | text; unset: json in production, text elsewhere
    "CG_LOG_LEVEL": "INFO",
    "CG_METRICS_TOKEN": None,  # bearer token for GET /metrics; unset: only direct loopback/private callers
    # Domain verification's DNS resolver: "host:port,host:port"; unset = the system's.
    "CG_DNS_NAMESERVERS": None,
    # Scheduled backups (services/ops/backup.py; docs/OPERATIONS.md "Backups"): off while unset.
    "CG_BACKUP_SCHEDULE": None,  # crontab "minute hour day month weekday" in UTC, e.g. "30 2 * * *"
    "CG_BACKUP_DIR": None,  # where scheduled archives go; unset: <instance>/backups
    "CG_BACKUP_KEEP": 14,  # newest scheduled archives kept; older ones are deleted
    # Owners' organization exports (services/ops/org_export.py): kept 7 days, then deleted.
    "CG_EXPORT_DIR": None,  # where the archives are built and kept; unset: <instance>/exports
}

# Settings whose environment value is an integer.
INTEGER_SETTINGS = {"PASSWORD_RESET_TTL_MINUTES", "CG_TRUSTED_PROXIES", "CG_WEBHOOK_TIMEOUT",
                    "CG_WEBHOOK_DISABLE_AFTER", "CG_PROVIDER_TIMEOUT", "CG_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS",
                    "CG_GATEWAY_RESERVATION_TTL", "STRIPE_WEBHOOK_TOLERANCE", "BILLING_GRACE_DAYS", "CG_BACKUP_KEEP"}
FLOAT_SETTINGS = {"CG_RETRY_SCALE", "CG_GATEWAY_CONNECT_TIMEOUT", "CG_GATEWAY_READ_TIMEOUT",
                  "CG_GATEWAY_LEASE_SECONDS"}
BOOLEAN_SETTINGS = {"CG_ALLOW_PRIVATE_WEBHOOKS", "CG_GATEWAY_FAIL_OPEN", "BILLING_ENABLED"}


class ConfigError(RuntimeError):
    """Start-up must stop: the configuration is unsafe or unusable."""


def from_environ(environ: os._Environ | dict | None = None) -> dict[str, object]:
    """Defaults overlaid with whatever the environment sets."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for key in DEFAULTS:
        value = environ.get(key)
        if value in (None, ""):
            continue
        if key in INTEGER_SETTINGS:
            try:
                value = int(value)
            except ValueError as exc:
                raise ConfigError(f"{key} must be an integer, got {value!r}") from exc
        elif key in FLOAT_SETTINGS:
            try:
                value = float(value)
            except ValueError as exc:
                raise ConfigError(f"{key} must be a number, got {value!r}") from exc
        elif key in BOOLEAN_SETTINGS:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"{key} must be 1 or 0, got {value!r}")
            value = value.lower() in ("1", "true", "yes")
        config[key] = value
    return config


def resolve_sqlite_url(url: str) -> str:
    """Make a relative `sqlite:///path` absolute against the project root.

    `make run` may be started from any directory; the embedded database must
    always be the project's own instance/ file.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    path = url[len(prefix):]
    if path == ":memory:" or path.startswith("/"):
        return url
    return prefix + str(PROJECT_ROOT / path)


def huey_url() -> str:
    """The task queue URL, for the consumer process that has no Flask app."""
    return resolve_sqlite_url(os.environ.get("HUEY_URL") or str(DEFAULTS["HUEY_URL"]))


def key_list(value) -> list[str]:
    """A comma-separated setting (or a list already) as a list of its non-empty entries."""
    entries = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(entry).strip() for entry in entries if str(entry).strip()]


def is_production(config) -> bool:
    return config.get("CG_ENV") == "production"


def finalize(config: dict, instance_path: str) -> None:
    """Fill generated development secrets and refuse unsafe production set-ups."""
    config["DATABASE_URL"] = resolve_sqlite_url(str(config["DATABASE_URL"]))
    config["HUEY_URL"] = resolve_sqlite_url(str(config["HUEY_URL"]))
    config["SECRET_KEY_FALLBACKS"] = key_list(config.get("SECRET_KEY_FALLBACKS"))
    if not config.get("RATELIMIT_STORAGE_URI"):
        config["RATELIMIT_STORAGE_URI"] = "cg-sqlite:///" + str(Path(instance_path).resolve() / "ratelimits.sqlite")
    if config.get("BILLING_ENABLED"):
        missing = [k for k in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET") if not config.get(k)]
        if missing:
            raise ConfigError("BILLING_ENABLED=1 needs " + " and ".join(missing) + " set; see docs/BILLING.md.")
    if is_production(config):
        missing = [k for k in ("SECRET_KEY", "CG_ENCRYPTION_KEYS") if not config.get(k)]
        if missing:
            raise ConfigError(
                "CG_ENV=production needs " + " and ".join(missing)
                + " set in the environment; see docs/OPERATIONS.md. "
                + "Generate values with: python -c \"import secrets; print(secrets.token_urlsafe(48))\" "
                + "and python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
            )
        return
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _kept_secret(instance_path, "secret_key", lambda: secrets.token_urlsafe(48))
    if not config.get("CG_ENCRYPTION_KEYS"):
        config["CG_ENCRYPTION_KEYS"] = _kept_secret(
            instance_path, "encryption_key", lambda: Fernet.generate_key().decode()
        )


def _kept_secret(instance_path: str, name: str, make) -> str:
    """A development secret generated once and kept in instance/ (mode 0600)."""
    path = Path(instance_path) / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (the queue consumer) won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
