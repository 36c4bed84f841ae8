"""The rule every platform write obeys, whoever calls it (the console, the
admin API, the CLI): a superadmin, or the CLI with no user, and never from
inside an impersonation. The console's `platform_required("write")` checks
it before the view runs; this keeps the services safe without the view."""
from __future__ import annotations

from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted


def require_superadmin(actor: Actor) -> None:
    if actor.impersonator is not None:
        raise NotPermitted("Not while acting as someone else.")
    if actor.user is not None and not actor.user.is_superadmin:
        raise NotPermitted("Only a superadmin can do this.")
