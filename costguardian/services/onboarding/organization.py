"""Step 1 of the wizard: the organization's name, address (slug), time zone,
display currency and the providers it mainly uses."""
from __future__ import annotations

import re

from peewee import IntegrityError

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import Organization
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.team import audit, orgs

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def slug_problem(slug: str, org: Organization | None = None) -> str | None:
    """Why `slug` cannot be this organization's address (None: it can)."""
    slug = (slug or "").strip()
    if not slug:
        return "Choose an address."
    if not SLUG.fullmatch(slug) or "--" in slug:
        return ("Use 1 to 63 lower-case letters, digits and single dashes, starting and ending with a letter "
                "or digit.")
    if slug in orgs.RESERVED_SLUGS:
        return f"“{slug}” is reserved; choose another address."
    taken = Organization.select(Organization.id).where(Organization.slug == slug)
    if org is not None:
        taken = taken.where(Organization.id != org.id)
    if taken.exists():
        return f"“{slug}” is taken by another organization."
    return None


def save(org: Organization, actor: Actor, name: str, slug: str, time_zone: str, currency: str,
         uses: list[str]) -> Organization:
    """Validate everything first (every field's message at once), then save."""
    errors = {}
    try:
        orgs.validated_settings(name, time_zone, currency)
    except ValidationError as exc:
        errors.update(exc.errors)
    slug = (slug or "").strip().lower()
    problem = slug_problem(slug, org)
    if problem:
        errors["slug"] = problem
    if errors:
        raise ValidationError(errors)
    orgs.update_settings(org, actor, name, time_zone, currency)
    if slug != org.slug:
        before = org.slug
        try:
            with db.atomic():
                Organization.update(slug=slug, updated_at=clock.now()).where(Organization.id == org.id).execute()
        except IntegrityError:  # taken a moment ago by someone else
            raise ValidationError({"slug": f"“{slug}” is taken by another organization."}) from None
        org.slug = slug
        audit.record(actor, "org.updated", org=org, target=org, changes={"slug": [before, slug]})
    return org
