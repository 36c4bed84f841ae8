"""Operator commands, run through Flask's CLI runner against the test database."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from costguardian import permissions
from costguardian.models import Department, Membership, Organization, User
from costguardian.services.team import accounts
from tests.support import PASSWORD, SYSTEM

DEMO_SIGN_IN = re.compile(r"Demo sign-in:\s+(\S+)\s+/\s+(.+?)\n")


@pytest.fixture
def cli(app_ctx):
    runner = app_ctx.test_cli_runner()

    def invoke(*args: str):
        return runner.invoke(args=list(args))

    return invoke


@pytest.fixture
def demo_credentials_file(app):
    path = Path(app.instance_path) / "demo_credentials.json"
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


# --- create-user ----------------------------------------------------------------

def test_create_user_prints_a_generated_password_that_works(cli):
    result = cli("create-user", "Alice@Example.com", "--name", "Alice")

    assert result.exit_code == 0, result.output
    assert "created alice@example.com\n" in result.output
    password = re.search(r"^password: (\S+)$", result.output, re.M).group(1)
    assert len(password) >= accounts.MIN_PASSWORD_LENGTH
    user = accounts.authenticate("alice@example.com", password, SYSTEM)
    assert user is not None
    assert (user.name, user.is_superadmin) == ("Alice", False)


def test_create_user_with_a_given_password_does_not_print_it(cli):
    result = cli("create-user", "alice@example.com", "--password", PASSWORD)

    assert result.exit_code == 0, result.output
    assert "password" not in result.output
    assert PASSWORD not in result.output
    assert accounts.authenticate("alice@example.com", PASSWORD, SYSTEM) is not None


def test_create_user_superadmin(cli):
    result = cli("create-user", "root@example.com", "--superadmin")

    assert result.exit_code == 0, result.output
    assert "created root@example.com (superadmin)" in result.output
    assert User.by_email("root@example.com").is_superadmin is True


def test_create_user_twice_fails_with_a_message(cli):
    assert cli("create-user", "alice@example.com").exit_code == 0

    result = cli("create-user", "ALICE@example.com", "--superadmin")

    assert result.exit_code != 0
    assert "already exists" in result.output
    assert User.select().count() == 1
    assert User.by_email("alice@example.com").is_superadmin is False


@pytest.mark.parametrize("args, message", [
    (("not-an-email",), "Error:"),
    (("alice@example.com", "--password", "short"), "at least"),
    (("alice@example.com", "--password", "alice@example.com"), "email"),
])
def test_create_user_refuses_bad_input(cli, args, message):
    result = cli("create-user", *args)

    assert result.exit_code != 0
    assert message in result.output
    assert User.select().count() == 0


# --- create-org -----------------------------------------------------------------

def test_create_org_with_an_owner(cli, make_user):
    olga = make_user("olga@example.com")

    result = cli("create-org", "Acme Corp", "--owner", "OLGA@example.com", "--time-zone", "Europe/Paris")

    assert result.exit_code == 0, result.output
    assert "created organization Acme Corp (slug acme-corp) owned by olga@example.com" in result.output
    org = Organization.get(Organization.slug == "acme-corp")
    assert org.time_zone == "Europe/Paris"
    assert Membership.of(olga, org).role == permissions.OWNER


def test_create_org_with_an_unknown_owner_fails_clearly(cli):
    result = cli("create-org", "Acme", "--owner", "nobody@example.com")

    assert result.exit_code != 0
    assert "no user nobody@example.com; create it first with create-user" in result.output
    assert Organization.select().count() == 0


def test_create_org_needs_an_owner(cli):
    result = cli("create-org", "Acme")

    assert result.exit_code == 2  # usage error
    assert "--owner" in result.output
    assert Organization.select().count() == 0


def test_create_org_with_an_invalid_time_zone(cli, make_user):
    make_user("olga@example.com")

    result = cli("create-org", "Acme", "--owner", "olga@example.com", "--time-zone", "Mars/Base")

    assert result.exit_code != 0
    assert "time zone" in result.output
    assert Organization.select().count() == 0


# --- add-member -----------------------------------------------------------------

def test_add_member(cli, make_user, make_org):
    org = make_org("Acme")
    bob = make_user("bob@example.com")
    carl = make_user("carl@example.com")

    as_admin = cli("add-member", "acme", "bob@example.com", "--role", "admin")
    default = cli("add-member", "acme", "Carl@Example.com")

    assert as_admin.exit_code == 0, as_admin.output
    assert "bob@example.com is now admin of Acme" in as_admin.output
    assert Membership.of(bob, org).role == permissions.ADMIN
    assert default.exit_code == 0, default.output
    assert Membership.of(carl, org).role == permissions.MEMBER


@pytest.mark.parametrize("org_slug, email, message", [
    ("nope", "bob@example.com", "no such organization"),
    ("acme", "nobody@example.com", "no user nobody@example.com"),
])
def test_add_member_with_unknown_org_or_user(cli, make_user, make_org, org_slug, email, message):
    make_org("Acme")
    make_user("bob@example.com")

    result = cli("add-member", org_slug, email)

    assert result.exit_code != 0
    assert message in result.output
    assert Membership.select().count() == 1  # the owner only


def test_add_member_twice(cli, make_user, make_org):
    org = make_org("Acme")
    bob = make_user("bob@example.com")
    assert cli("add-member", "acme", "bob@example.com", "--role", "viewer").exit_code == 0

    result = cli("add-member", "acme", "bob@example.com", "--role", "admin")

    assert result.exit_code != 0
    assert "already a member" in result.output
    assert Membership.of(bob, org).role == permissions.VIEWER


def test_add_member_with_an_unknown_role(cli, make_user, make_org):
    make_org("Acme")
    make_user("bob@example.com")

    result = cli("add-member", "acme", "bob@example.com", "--role", "emperor")

    assert result.exit_code == 2
    assert "emperor" in result.output
    assert Membership.select().count() == 1


# --- migrate --------------------------------------------------------------------

def test_migrate_on_an_up_to_date_database(cli):
    result = cli("migrate")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "database is up to date"


# --- seed-demo ------------------------------------------------------------------

def test_seed_demo_creates_the_demo_org_once(cli, demo_credentials_file):
    from costguardian.services.demo import seed as demo

    first = cli("seed-demo")

    assert first.exit_code == 0, first.output
    email, password = DEMO_SIGN_IN.search(first.output).groups()
    assert email == demo.OWNER_EMAIL
    assert 'owner of "Acme AI Labs"' in first.output
    org = Organization.get(Organization.name == "Acme AI Labs")
    assert org.time_zone == "Europe/Berlin"
    roles = {m.user.email: m.role for m in Membership.in_org(org)}
    assert roles == {
        "owner@example.com": permissions.OWNER, "admin@example.com": permissions.ADMIN,
        "billing@example.com": permissions.BILLING, "member@example.com": permissions.MEMBER,
        "viewer@example.com": permissions.VIEWER,
    }
    for person in roles:  # everyone signs in with the printed password
        assert accounts.authenticate(person, password, SYSTEM) is not None, person
        assert person in first.output
    # two platform admins, members of no organization, see it through the console
    platform = {u.email: u.platform_role for u in User.select().where(User.platform_role != "")}
    assert platform == {"root@example.com": "superadmin", "support@example.com": "support"}
    for person in platform:
        assert accounts.authenticate(person, password, SYSTEM) is not None, person
        assert f"{person} (platform {platform[person]})" in first.output
    assert Department.in_org(org).count() == 5
    research = Department.get(Department.name == "Research")
    assert research.parent.name == "Engineering"
    member = Membership.of(User.by_email("member@example.com"), org)
    assert member.department.name == "Research"
    assert demo_credentials_file.exists()
    assert stat.S_IMODE(demo_credentials_file.stat().st_mode) == 0o600

    second = cli("seed-demo")

    assert second.exit_code == 0, second.output
    assert DEMO_SIGN_IN.search(second.output).groups() == (email, password)
    assert Organization.select().count() == 1
    assert User.select().count() == 7
    assert Membership.select().count() == 5
    assert Department.select().count() == 5


def test_seed_demo_without_the_saved_credentials_creates_nothing_new(cli, demo_credentials_file):
    assert cli("seed-demo").exit_code == 0
    demo_credentials_file.unlink()

    again = cli("seed-demo")

    assert again.exit_code == 0, again.output
    assert "set on an earlier run" in again.output
    assert Organization.select().count() == 1
    assert User.select().count() == 7


def test_make_migration_writes_nothing_when_the_migrations_build_the_models(app):
    from costguardian.db import MIGRATIONS_DIR

    before = sorted(os.listdir(MIGRATIONS_DIR))
    try:
        result = app.test_cli_runner().invoke(args=["make-migration", "anything"])
        assert result.exit_code == 0, result.output
        assert "nothing to write" in result.output
        assert sorted(os.listdir(MIGRATIONS_DIR)) == before
    finally:  # a model without its migration must not leave a stray file that breaks later tests
        for name in set(os.listdir(MIGRATIONS_DIR)) - set(before):
            os.remove(os.path.join(MIGRATIONS_DIR, name))
