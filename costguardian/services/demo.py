"""The demo organization `make run` creates on first start, so a new user can
sign in and look around. Real rows through the real services."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from costguardian import permissions
from costguardian.models import Department, Membership, User
from costguardian.services import accounts, orgs
from costguardian.services.actor import Actor

DEMO_ORG = "Acme AI Labs"
OWNER_EMAIL = "owner@example.com"
PEOPLE = [  # email, name, role, department
    ("admin@example.com", "Ada Admin", permissions.ADMIN, "Platform"),
    ("billing@example.com", "Bill Ing", permissions.BILLING, None),
    ("member@example.com", "Mo Member", permissions.MEMBER, "Research"),
    ("viewer@example.com", "Vi Viewer", permissions.VIEWER, "Marketing"),
]
DEPARTMENTS = [("Engineering", None), ("Platform", "Engineering"), ("Research", "Engineering"),
               ("Marketing", None), ("Support", None)]


def seed(instance_path: Path) -> dict:
    """Create the demo data once; on later runs only report the sign-in."""
    saved = instance_path / "demo_credentials.json"
    if User.by_email(OWNER_EMAIL) is not None and saved.exists():
        return json.loads(saved.read_text())
    if User.by_email(OWNER_EMAIL) is not None:
        return {"email": OWNER_EMAIL, "password": "(set on an earlier run; use \"Forgot password\")",
                "org": DEMO_ORG, "others": ", ".join(p[0] for p in PEOPLE)}

    actor = Actor.system()
    password = secrets.token_urlsafe(9)
    owner = accounts.sign_up(OWNER_EMAIL, "Olivia Owner", password, actor)
    org = orgs.create_organization(DEMO_ORG, owner, actor, time_zone="Europe/Berlin")
    departments: dict[str, Department] = {}
    for name, parent in DEPARTMENTS:
        departments[name] = Department.create(organization=org, name=name, parent=departments.get(parent))
    for email, name, role, department in PEOPLE:
        user = accounts.sign_up(email, name, password, actor)
        membership = orgs.add_member(org, user, role, actor)
        if department:
            membership.department = departments[department]
            membership.save(only=[Membership.department])
    credentials = {"email": OWNER_EMAIL, "password": password, "org": DEMO_ORG,
                   "others": ", ".join(p[0] for p in PEOPLE)}
    instance_path.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(credentials))
    saved.chmod(0o600)
    return credentials
