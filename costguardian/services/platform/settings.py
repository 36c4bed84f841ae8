"""Platform configuration set in the console and kept in the database
(`platform_setting`), each audit-logged. An environment variable, where one
is set, wins over the stored value, and the console says so.

Read on every page (the maintenance banner), so one request reads the whole
(small) table once."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import current_app, g, has_request_context

from costguardian import clock
from costguardian.models import PlatformSetting
from costguardian.services.actor import Actor
from costguardian.services.platform.guards import require_superadmin
from costguardian.services.errors import ValidationError
from costguardian.services.team import audit

BANNER_LEVELS = ("info", "warning", "danger")
SIGNUP_MODES = ("open", "invite_only", "closed")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    default: object
    env: str | None = None  # the environment variable that wins when set
    help: str = ""
    choices: tuple = field(default=())


SETTINGS = {s.key: s for s in (
    Setting("maintenance_banner", "Maintenance banner", None,
            help="Shown on every page between its start and end (UTC)."),
    Setting("signups", "Sign-ups", "open", env="CG_SIGNUPS", choices=SIGNUP_MODES,
            help="open: anyone may create an account; invite_only: only with an invitation; closed: nobody."),
    Setting("signup_domains", "Allowed sign-up domains", [], env="CG_SIGNUP_DOMAINS",
            help="When set, only addresses at these domains may sign up (invitations included)."),
    Setting("default_plan", "Default plan for new organizations", "free", env="CG_DEFAULT_PLAN"),
    Setting("impersonation_enabled", "Impersonation", True, env="CG_IMPERSONATION",
            help="Whether platform admins may act as a user (every request is audit-logged)."),
    Setting("mail_from", "Email sender", "Cost Guardian <no-reply@localhost>", env="MAIL_FROM",
            help='Sender of every email, as "Name <address>".'),
)}


def _env_value(setting: Setting):
    """The environment's value for this setting, or None when it sets none."""
    if setting.env is None:
        return None
    raw = current_app.config.get(setting.env)
    if raw in (None, ""):
        return None
    if setting.key == "signup_domains" and isinstance(raw, str):
        return [d.strip().lower() for d in raw.split(",") if d.strip()]
    if setting.key == "impersonation_enabled" and isinstance(raw, str):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if setting.key == "signups" and isinstance(raw, str):
        return raw.strip().lower()
    return raw


def _stored() -> dict:
    if has_request_context():
        cached = g.get("_platform_settings")
        if cached is None:
            cached = g._platform_settings = {row.key: row.value for row in PlatformSetting.select()}
        return cached
    return {row.key: row.value for row in PlatformSetting.select()}


def get(key: str):
    setting = SETTINGS[key]
    env = _env_value(setting)
    if env is not None:
        return env
    return _stored().get(key, setting.default)


def source(key: str) -> str:
    """Where the value in effect comes from: "environment", "console" or "default"."""
    setting = SETTINGS[key]
    if _env_value(setting) is not None:
        return "environment"
    return "console" if key in _stored() else "default"


def overview() -> list[dict]:
    """Every setting with its value in effect, where that comes from, and the stored value."""
    stored = _stored()
    return [{"setting": s, "value": get(s.key), "source": source(s.key), "stored": stored.get(s.key)}
            for s in SETTINGS.values()]


def _clean(key: str, value):
    """The value to store, or ValidationError with a message for the field."""
    if key == "maintenance_banner":
        if value is None:
            return None
        text = (value.get("text") or "").strip()
        if not text:
            raise ValidationError({"text": "Write the banner's text (or clear the banner)."})
        if len(text) > 500:
            raise ValidationError({"text": "At most 500 characters."})
        level = value.get("level") or "info"
        if level not in BANNER_LEVELS:
            raise ValidationError({"level": f"One of {', '.join(BANNER_LEVELS)}."})
        bounds = {}
        for name in ("starts_at", "ends_at"):
            moment = value.get(name)
            if moment in (None, ""):
                bounds[name] = None
                continue
            if isinstance(moment, str):
                try:
                    moment = datetime.fromisoformat(moment)
                except ValueError:
                    raise ValidationError({name: "A date and time like 2026-12-24T18:00."}) from None
            if moment.tzinfo is not None:
                moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
            bounds[name] = moment.isoformat(timespec="minutes")
        if bounds["starts_at"] and bounds["ends_at"] and bounds["ends_at"] <= bounds["starts_at"]:
            raise ValidationError({"ends_at": "The end must come after the start."})
        return {"text": text, "level": level, **bounds}
    if key == "signups":
        if value not in SIGNUP_MODES:
            raise ValidationError({"signups": f"One of {', '.join(SIGNUP_MODES)}."})
        return value
    if key == "signup_domains":
        items = value.replace(",", "\n").split() if isinstance(value, str) else list(value or [])
        domains = []
        for item in items:
            domain = item.strip().lower().lstrip("@")
            if not DOMAIN.match(domain):
                raise ValidationError({"signup_domains": f"{item!r} is not a domain name like example.com."})
            if domain not in domains:
                domains.append(domain)
        return domains
    if key == "default_plan":
        from costguardian.services.billing import plans

        keys = [plan.code for plan in plans.listed()]
        if value not in keys:
            raise ValidationError({"default_plan": f"One of the plans: {', '.join(keys)}."})
        return value
    if key == "impersonation_enabled":
        if not isinstance(value, bool):
            raise ValidationError({"impersonation_enabled": "On or off."})
        return value
    if key == "mail_from":
        text = (value or "").strip() if isinstance(value, str) else ""
        # "Name <address>" (the name may hold commas: people type "Acme, Inc."), or a bare address.
        match = re.fullmatch(r'(?:"?([^"<>]*?)"?\s*)?<([^<>\s]+@[^<>\s]+)>', text) or re.fullmatch(
            r"()([^<>\s\"]+@[^<>\s\"]+)", text)
        if match is None or len(text) > 300 or any(c in text for c in "\r\n"):
            raise ValidationError({"mail_from": 'An address like "Cost Guardian <billing@example.com>".'})
        name, address = (match.group(1) or "").strip(), match.group(2)
        if name and any(c in name for c in '(),:;<>@[]\\"'):  # a display name with specials is quoted
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{address}>" if name else address
    raise KeyError(key)


def validate(key: str, value):
    """The value put() would store, or ValidationError naming the field(s); stores nothing."""
    if key not in SETTINGS:
        raise KeyError(key)
    return _clean(key, value)


def put(key: str, value, actor: Actor):
    """Store a setting (None for maintenance_banner clears it), audit-logged
    with the value before and after (a value equal to the stored one changes
    and logs nothing). Stored even where an environment variable is set: it
    takes effect once that is unset. Returns the stored value."""
    if key not in SETTINGS:
        raise KeyError(key)
    require_superadmin(actor)
    value = _clean(key, value)
    row = PlatformSetting.get_or_none(PlatformSetting.key == key)
    before = row.value if row is not None else None
    if row is not None and before == value or row is None and value is None:
        return value  # nothing changes: nothing to log
    if value is None:  # cleared (the banner): back to the default, which is None
        PlatformSetting.delete().where(PlatformSetting.key == key).execute()
    elif row is None:
        PlatformSetting.create(key=key, value=value, updated_by=actor.user)
    else:
        PlatformSetting.update(value=value, updated_at=clock.now(), updated_by=actor.user).where(
            PlatformSetting.key == key).execute()
    if has_request_context():
        g.pop("_platform_settings", None)
    audit.record(actor, "platform.setting_changed", setting=key, before=before, after=value)
    return value


def maintenance_banner() -> dict | None:
    """The banner to show now (within its start/end), or None."""
    banner = get("maintenance_banner")
    if not banner:
        return None
    now = clock.now().isoformat(timespec="minutes")
    if banner.get("starts_at") and now < banner["starts_at"]:
        return None
    if banner.get("ends_at") and now >= banner["ends_at"]:
        return None
    return banner


# --- the sign-up policy ------------------------------------------------------------

SIGNUP_CHANNELS = ("signup", "invitation")  # the sign-up page or a first OIDC sign-in; accepting an invitation


def signup_mode() -> str:
    """open, invite_only or closed; a value the environment set that is none
    of these counts as closed (refusing is the safe reading of a typo)."""
    mode = get("signups")
    return mode if mode in SIGNUP_MODES else "closed"


def email_domain_allowed(email: str) -> bool:
    """Whether the allowed sign-up domains (when any are set) include this
    address's domain, exactly: a subdomain (eu.example.com) must be listed
    on its own."""
    domains = get("signup_domains") or []
    return not domains or email.rsplit("@", 1)[-1].strip().lower() in domains


def signup_refusal(email: str, channel: str) -> str | None:
    """Why the platform refuses to create an account for `email` through
    `channel` ("signup" or "invitation"), or None when it may. Accounts that
    exist are never affected: this is asked only before creating one."""
    if channel not in SIGNUP_CHANNELS:
        raise KeyError(channel)
    mode = signup_mode()
    if mode == "closed":
        return "Sign-ups are closed on this installation: new accounts cannot be created."
    if mode == "invite_only" and channel != "invitation":
        return "Sign-ups are by invitation only: ask someone in your organization to invite you."
    if not email_domain_allowed(email):
        domains = get("signup_domains")
        return f"Only addresses at {', '.join(domains)} may create an account here."
    return None
