"""Who is acting and from where: what the audit log records for every mutation."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    user: object | None  # a User, or None for the system / CLI
    ip: str = ""
    user_agent: str = ""
    api_key: object | None = None  # an ApiKey when the JSON API acts (user is then None)
    impersonator: object | None = None  # the platform admin acting as `user` (impersonation)
    platform_token: object | None = None  # a PlatformToken when the admin JSON API acts (user is its owner)

    @classmethod
    def system(cls) -> "Actor":
        return cls(user=None, ip="", user_agent="cli")
