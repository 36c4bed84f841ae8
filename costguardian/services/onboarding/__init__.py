"""The onboarding wizard: from a new organization to its first priced call.

The steps are data (STEPS); an organization's progress is one row
(OnboardingProgress) that says which steps are done or skipped and what they
created, so whoever opens the wizard next — the same owner tomorrow, or a
second owner elsewhere — resumes at the first open step. A step whose side
effect must happen once (a provider key, a gateway key, a budget, invitations)
runs it through `once`: the submission's token is claimed under the row lock
first, so a double submit or a second tab finds the claim and the stored
result instead of creating a second one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from peewee import IntegrityError

from costguardian import clock
from costguardian.db import locked
from costguardian.extensions import db
from costguardian.models import Organization
from costguardian.models.onboarding import OnboardingProgress
from costguardian.services.actor import Actor
from costguardian.services.team import audit

DONE, SKIPPED = "done", "skipped"


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    summary: str  # what the step sets up, for the progress list and the summary
    skippable: bool = True


STEPS: tuple[Step, ...] = (
    Step("organization", "Your organization", "Name, address, time zone and currency", skippable=False),
    Step("domain", "Your domain", "Colleagues with an address at your domain can join"),
    Step("provider", "Connect a provider", "An AI provider key for the gateway"),
    Step("first-call", "Send your first call", "A gateway key and your first priced call"),
    Step("plan", "Choose a plan", "Free, Team or Business"),
    Step("budget", "First budget", "A monthly budget with alerts"),
    Step("notifications", "Notifications", "How you hear about budgets and usage"),
    Step("team", "Invite your team", "Invitations for your colleagues"),
    Step("done", "Done", "What was set up", skippable=False),
)
BY_KEY = {step.key: step for step in STEPS}


class AlreadyApplied(Exception):
    """The step's side effect already ran (or is running) for this submission."""

    def __init__(self, result: dict | None):
        super().__init__("already applied")
        self.result = result or {}


def steps_for(org: Organization) -> list[Step]:
    """The steps this installation shows: the plan step only with billing on."""
    from costguardian.services import billing

    return [s for s in STEPS if s.key != "plan" or billing.enabled()]


def progress_for(org: Organization) -> OnboardingProgress:
    progress = OnboardingProgress.in_org(org).first()
    if progress is not None:
        return progress
    try:
        with db.atomic():
            return OnboardingProgress.create(organization=org)
    except IntegrityError:
        return OnboardingProgress.in_org(org).get()


def status(progress: OnboardingProgress, key: str) -> str | None:
    return (progress.steps or {}).get(key, {}).get("status")


def data(progress: OnboardingProgress, key: str) -> dict:
    return dict((progress.steps or {}).get(key, {}).get("data") or {})


def current(org: Organization, progress: OnboardingProgress | None = None) -> Step:
    """The first step neither done nor skipped (the last one when all are)."""
    progress = progress or progress_for(org)
    steps = steps_for(org)
    return next((s for s in steps if status(progress, s.key) is None), steps[-1])


def neighbours(org: Organization, key: str) -> tuple[Step | None, Step | None]:
    steps = steps_for(org)
    keys = [s.key for s in steps]
    index = keys.index(key)
    return (steps[index - 1] if index else None), (steps[index + 1] if index + 1 < len(steps) else None)


def percent(org: Organization, progress: OnboardingProgress) -> int:
    steps = [s for s in steps_for(org) if s.key != "done"]
    finished = sum(1 for s in steps if status(progress, s.key) is not None)
    return round(100 * finished / len(steps)) if steps else 100


def mark(org: Organization, actor: Actor, key: str, state: str, result: dict | None = None) -> OnboardingProgress:
    """Record a step as done or skipped (with what it created), audit-logged."""
    progress = progress_for(org)
    now = clock.now()
    with locked(progress):
        progress = OnboardingProgress.get_by_id(progress.id)
        steps = dict(progress.steps or {})
        before = steps.get(key, {})
        steps[key] = {"status": state, "at": now.isoformat(timespec="seconds") + "Z",
                      "by": actor.user.email if actor.user is not None else "",
                      "data": {**(before.get("data") or {}), **(result or {})}}
        progress.steps = steps
        if key == "done" or all(status(progress, s.key) for s in steps_for(org) if s.key != "done"):
            progress.completed_at = progress.completed_at or now
        progress.updated_at = now
        progress.save()
    audit.record(actor, f"onboarding.step_{state}", org, progress, step=key, **_safe(result))
    return progress


def _safe(result: dict | None) -> dict:
    """What of a step's result the audit log keeps: ids and names, never secrets."""
    return {k: v for k, v in (result or {}).items() if isinstance(v, (int, str, bool, list)) and k != "secret"}


def once(org: Organization, key: str, token: str, apply: Callable[[], dict]) -> dict:
    """Run `apply` (the step's side effect, returning what it created) once
    per submission token: the token is claimed under the row lock before the
    side effect runs, so a double submit finds the claim (AlreadyApplied with
    the stored result) instead of running it twice. A side effect that fails
    releases its claim, so the corrected form can be sent again."""
    progress = progress_for(org)
    token = (token or "")[:64]
    with locked(progress):
        progress = OnboardingProgress.get_by_id(progress.id)
        claims = dict(progress.claims or {})
        if token and claims.get(key, {}).get("token") == token:
            raise AlreadyApplied(claims[key].get("result"))
        claims[key] = {"token": token, "result": None}
        progress.claims = claims
        progress.save()
    try:
        result = apply()
    except Exception:
        with locked(progress):
            progress = OnboardingProgress.get_by_id(progress.id)
            claims = dict(progress.claims or {})
            if claims.get(key, {}).get("token") == token:
                claims.pop(key)
                progress.claims = claims
                progress.save()
        raise
    with locked(progress):
        progress = OnboardingProgress.get_by_id(progress.id)
        claims = dict(progress.claims or {})
        claims[key] = {"token": token, "result": _safe(result)}
        progress.claims = claims
        progress.save()
    return result


def dismiss(org: Organization, actor: Actor) -> None:
    progress = progress_for(org)
    OnboardingProgress.update(dismissed_at=clock.now(), updated_at=clock.now()).where(
        OnboardingProgress.id == progress.id).execute()
    audit.record(actor, "onboarding.dismissed", org, progress)


def checklist(org: Organization) -> list[tuple[Step, str | None]] | None:
    """The dashboard's "Finish setting up" list: each step and its status;
    None once the wizard is complete or the checklist was dismissed."""
    progress = OnboardingProgress.in_org(org).first()
    if progress is not None and (progress.completed_at or progress.dismissed_at):
        return None
    steps = [s for s in steps_for(org) if s.key != "done"]
    return [(s, status(progress, s.key) if progress else None) for s in steps]
