"""Organizations service: creation and slugs, settings, memberships and the
rules on roles (who may change whom, and "an organization keeps an owner"),
including under concurrent requests."""
from __future__ import annotations

import threading

import pytest

from costguardian import permissions
from costguardian.db import connected
from costguardian.extensions import db
from costguardian.models import AuditLog, Membership, Organization
from costguardian.permissions import ADMIN, BILLING, MEMBER, OWNER, VIEWER
from costguardian.services.team import orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, RuleViolation, ServiceError, ValidationError
from tests.support import SYSTEM, add_member


def audit_rows(action: str, org=None) -> list[AuditLog]:
    query = AuditLog.select().where(AuditLog.action == action)
    if org is not None:
        query = query.where(AuditLog.organization == org)
    return list(query.order_by(AuditLog.id))


def role_of(membership: Membership) -> str | None:
    fresh = Membership.get_or_none(Membership.id == membership.id)
    return fresh.role if fresh else None


def owners(org: Organization) -> int:
    return Membership.in_org(org).where(Membership.role == OWNER).count()


# --- creation -------------------------------------------------------------------

def test_create_organization_makes_the_owner_and_audits(app_ctx, make_user):
    olga = make_user("olga@example.com")
    actor = Actor(user=olga, ip="192.0.2.1")

    org = orgs.create_organization("  Acme Corp ", olga, actor, time_zone="Europe/Berlin", currency="EUR")

    stored = Organization.get_by_id(org.id)
    assert (stored.name, stored.slug, stored.time_zone, stored.currency) == (
        "Acme Corp", "acme-corp", "Europe/Berlin", "EUR")
    [membership] = Membership.in_org(org)
    assert (membership.user_id, membership.role) == (olga.id, OWNER)
    [created] = audit_rows("org.created")
    assert created.organization_id == org.id and created.actor_id == olga.id
    assert (created.target_type, created.target_id) == ("organization", str(org.id))
    assert created.detail == {"name": "Acme Corp", "slug": "acme-corp"}
    assert created.ip == "192.0.2.1"
    [added] = audit_rows("member.added")
    assert added.organization_id == org.id
    assert added.detail == {"user": "olga@example.com", "role": OWNER}


def test_create_organization_defaults(app_ctx, make_user):
    org = orgs.create_organization("Acme", make_user(), SYSTEM)

    assert (org.time_zone, org.currency) == ("UTC", "USD")
    assert audit_rows("org.created")[0].actor_id is None  # the CLI / system


def test_slugs_get_a_suffix_on_collision(app_ctx, make_user):
    owner = make_user()

    slugs = [orgs.create_organization(name, owner, SYSTEM).slug
             for name in ("Acme", "acme", "ACME!", " Acme ")]

    assert slugs == ["acme", "acme-2", "acme-3", "acme-4"]
    assert Membership.select().where(Membership.user == owner).count() == 4


def test_a_name_that_looks_like_a_suffixed_slug_does_not_break_the_sequence(app_ctx, make_user):
    owner = make_user()
    orgs.create_organization("Acme 2", owner, SYSTEM)

    assert orgs.create_organization("Acme", owner, SYSTEM).slug == "acme"
    assert orgs.create_organization("Acme", owner, SYSTEM).slug == "acme-3"


@pytest.mark.parametrize("name", sorted(orgs.RESERVED_SLUGS))
def test_reserved_slugs_are_never_given(app_ctx, make_user, name):
    owner = make_user()

    first = orgs.create_organization(name.title(), owner, SYSTEM)
    second = orgs.create_organization(name, owner, SYSTEM)

    for org in (first, second):
        assert org.slug not in orgs.RESERVED_SLUGS
        assert org.slug.startswith(f"{name}-")
    assert first.slug != second.slug
    assert first.name == name.title()


@pytest.mark.parametrize("name, slug", [
    ("Café Crème", "cafe-creme"),
    ("Ünïcödé GmbH", "unicode-gmbh"),
    ("東京 AI Labs", "ai-labs"),
    ("東京", "org"),
    ("🚀🚀🚀", "org"),
    ("--Hello,   World!--", "hello-world"),
])
def test_unicode_names_get_ascii_slugs_and_keep_their_name(app_ctx, make_user, name, slug):
    org = orgs.create_organization(name, make_user(), SYSTEM)

    assert org.slug == slug
    assert Organization.get_by_id(org.id).name == name


def test_names_without_slug_characters_share_the_fallback_with_suffixes(app_ctx, make_user):
    owner = make_user()

    assert [orgs.create_organization(n, owner, SYSTEM).slug for n in ("東京", "大阪", "🚀")] == [
        "org", "org-2", "org-3"]


def test_long_names_get_slugs_that_fit(app_ctx, make_user):
    owner = make_user()
    name = "A very long organization name " * 4  # 120 characters

    first = orgs.create_organization(name[:120], owner, SYSTEM)
    second = orgs.create_organization(name[:120], owner, SYSTEM)

    assert len(first.slug) <= 50 and not first.slug.endswith("-")
    assert second.slug == first.slug + "-2"


@pytest.mark.parametrize("kwargs, fields", [
    ({"name": ""}, {"name"}),
    ({"name": "   "}, {"name"}),
    ({"name": "x" * 121}, {"name"}),
    ({"time_zone": "Mars/Olympus_Mons"}, {"time_zone"}),
    ({"time_zone": ""}, {"time_zone"}),
    ({"time_zone": "europe/berlin"}, {"time_zone"}),
    ({"currency": "XXX"}, {"currency"}),
    ({"currency": "usd"}, {"currency"}),
    ({"currency": ""}, {"currency"}),
    ({"name": "", "time_zone": "Nowhere", "currency": "DOGE"}, {"name", "time_zone", "currency"}),
])
def test_create_organization_validates_each_field(app_ctx, make_user, kwargs, fields):
    owner = make_user()
    arguments = {"name": "Acme", "time_zone": "UTC", "currency": "USD", **kwargs}

    with pytest.raises(ValidationError) as caught:
        orgs.create_organization(arguments.pop("name"), owner, SYSTEM, **arguments)

    assert set(caught.value.errors) == fields
    assert Organization.select().count() == 0
    assert Membership.select().count() == 0
    assert AuditLog.select().where(AuditLog.action.startswith("org.")).count() == 0


def test_time_zones_offered_are_accepted(app_ctx, make_user):
    zones = orgs.time_zones()
    assert "UTC" in zones and "America/New_York" in zones and "Asia/Kolkata" in zones
    assert zones == sorted(zones)

    org = orgs.create_organization("Acme", make_user(), SYSTEM, time_zone="America/New_York", currency="JPY")
    assert (org.time_zone, org.currency) == ("America/New_York", "JPY")


# --- settings -------------------------------------------------------------------

def test_update_settings_audits_the_changes(app_ctx, make_org):
    org = make_org("Acme")
    before = Organization.get_by_id(org.id).updated_at
    actor = Actor(user=None, ip="192.0.2.9")

    orgs.update_settings(org, actor, name=" Acme Inc ", time_zone="Asia/Tokyo", currency="USD")

    stored = Organization.get_by_id(org.id)
    assert (stored.name, stored.time_zone, stored.currency) == ("Acme Inc", "Asia/Tokyo", "USD")
    assert stored.slug == "acme"  # the address does not move with the name
    assert stored.updated_at >= before
    [row] = audit_rows("org.updated")
    assert row.organization_id == org.id
    assert row.detail == {"changes": {"name": ["Acme", "Acme Inc"], "time_zone": ["UTC", "Asia/Tokyo"]}}


def test_update_settings_without_changes_writes_no_audit_row(app_ctx, make_org):
    org = make_org("Acme")

    orgs.update_settings(org, SYSTEM, name="  Acme  ", time_zone="UTC", currency="USD")

    assert audit_rows("org.updated") == []


def test_update_settings_refuses_invalid_values(app_ctx, make_org):
    org = make_org("Acme")

    with pytest.raises(ValidationError) as caught:
        orgs.update_settings(org, SYSTEM, name="", time_zone="Atlantis", currency="USD")

    assert set(caught.value.errors) == {"name", "time_zone"}
    stored = Organization.get_by_id(org.id)
    assert (stored.name, stored.time_zone) == ("Acme", "UTC")
    assert audit_rows("org.updated") == []


# --- memberships ----------------------------------------------------------------

@pytest.fixture
def team(make_user, make_org):
    """An organization with one person in each role: name -> Membership."""
    olga = make_user("olga@example.com", name="Olga")
    org = make_org("Acme", owner=olga)
    team = {OWNER: Membership.of(olga, org)}
    for role in (ADMIN, BILLING, MEMBER, VIEWER):
        team[role] = add_member(org, make_user(f"{role}@example.com", name=role.title()), role)
    return team


def as_(membership: Membership) -> Actor:
    return Actor(user=membership.user)


def test_add_member(app_ctx, make_org, make_user):
    org = make_org("Acme")
    bob = make_user("bob@example.com")

    membership = orgs.add_member(org, bob, MEMBER, SYSTEM)

    assert role_of(membership) == MEMBER
    assert audit_rows("member.added", org)[-1].detail == {"user": "bob@example.com", "role": MEMBER}
    with pytest.raises(RuleViolation):
        orgs.add_member(org, bob, VIEWER, SYSTEM)
    assert role_of(membership) == MEMBER
    with pytest.raises(ValidationError) as caught:
        orgs.add_member(org, make_user("carl@example.com"), "emperor", SYSTEM)
    assert set(caught.value.errors) == {"role"}


def test_members_lists_everyone_in_the_org_only(app_ctx, team, make_org):
    make_org("Other")  # its owner must not show up

    listed = [m.user.email for m in orgs.members(team[OWNER].organization)]

    assert sorted(listed) == sorted(m.user.email for m in team.values())


def test_change_role_audits_old_and_new(app_ctx, team):
    orgs.change_role(team[MEMBER], VIEWER, as_(team[ADMIN]))

    assert role_of(team[MEMBER]) == VIEWER
    [row] = audit_rows("member.role_changed")
    assert row.actor_id == team[ADMIN].user_id
    assert row.detail == {"user": "member@example.com", "old_role": MEMBER, "new_role": VIEWER}


def test_change_role_to_the_same_role_writes_nothing(app_ctx, team):
    orgs.change_role(team[MEMBER], MEMBER, as_(team[OWNER]))

    assert audit_rows("member.role_changed") == []


def test_change_role_to_an_unknown_role(app_ctx, team):
    with pytest.raises(ValidationError) as caught:
        orgs.change_role(team[MEMBER], "superuser", as_(team[OWNER]))

    assert set(caught.value.errors) == {"role"}
    assert role_of(team[MEMBER]) == MEMBER


def test_the_last_owner_cannot_be_demoted(app_ctx, team):
    with pytest.raises(RuleViolation):
        orgs.change_role(team[OWNER], ADMIN, SYSTEM)

    assert role_of(team[OWNER]) == OWNER
    assert audit_rows("member.role_changed") == []


def test_the_last_owner_cannot_be_removed_or_leave(app_ctx, team):
    with pytest.raises(RuleViolation):
        orgs.remove_member(team[OWNER], SYSTEM)
    with pytest.raises(RuleViolation):
        orgs.remove_member(team[OWNER], as_(team[OWNER]))

    assert role_of(team[OWNER]) == OWNER
    assert audit_rows("member.removed") == []


@pytest.mark.parametrize("role", [OWNER, ADMIN])
def test_nobody_changes_their_own_role(app_ctx, team, role):
    orgs.change_role(team[ADMIN], OWNER, as_(team[OWNER]))  # two owners: the rule is not about the last one
    team[ADMIN] = Membership.get_by_id(team[ADMIN].id)
    if role == ADMIN:
        orgs.change_role(team[MEMBER], ADMIN, as_(team[OWNER]))
        me = Membership.get_by_id(team[MEMBER].id)
    else:
        me = team[OWNER]

    with pytest.raises(NotPermitted):
        orgs.change_role(me, VIEWER, as_(me))

    assert role_of(me) == role


def test_an_admin_cannot_grant_ownership(app_ctx, team):
    with pytest.raises(NotPermitted):
        orgs.change_role(team[MEMBER], OWNER, as_(team[ADMIN]))

    assert role_of(team[MEMBER]) == MEMBER


def test_an_admin_cannot_change_or_remove_an_owner(app_ctx, team, make_user):
    add_member(team[OWNER].organization, make_user("second-owner@example.com"), OWNER)

    with pytest.raises(NotPermitted):
        orgs.change_role(team[OWNER], ADMIN, as_(team[ADMIN]))
    with pytest.raises(NotPermitted):
        orgs.change_role(team[OWNER], VIEWER, as_(team[ADMIN]))
    with pytest.raises(NotPermitted):
        orgs.remove_member(team[OWNER], as_(team[ADMIN]))

    assert role_of(team[OWNER]) == OWNER


def test_an_admin_manages_everyone_below_owner(app_ctx, team, make_user):
    other_admin = add_member(team[OWNER].organization, make_user("admin2@example.com"), ADMIN)

    orgs.change_role(team[VIEWER], MEMBER, as_(team[ADMIN]))
    orgs.change_role(other_admin, BILLING, as_(team[ADMIN]))
    orgs.remove_member(team[BILLING], as_(team[ADMIN]))

    assert role_of(team[VIEWER]) == MEMBER
    assert role_of(other_admin) == BILLING
    assert role_of(team[BILLING]) is None
    [removed] = audit_rows("member.removed")
    assert removed.detail == {"user": "billing@example.com", "role": BILLING}
    assert removed.actor_id == team[ADMIN].user_id


@pytest.mark.parametrize("role", [BILLING, MEMBER, VIEWER])
def test_roles_without_members_manage_cannot_manage(app_ctx, team, role):
    actor = as_(team[role])
    target = team[VIEWER] if role != VIEWER else team[MEMBER]

    with pytest.raises(NotPermitted):
        orgs.change_role(target, MEMBER if target.role == VIEWER else VIEWER, actor)
    with pytest.raises(NotPermitted):
        orgs.change_role(team[OWNER], ADMIN, actor)
    with pytest.raises(NotPermitted):
        orgs.remove_member(target, actor)

    assert role_of(target) == target.role
    assert audit_rows("member.role_changed") == [] and audit_rows("member.removed") == []


def test_someone_outside_the_org_cannot_manage_it(app_ctx, team, make_user, make_org):
    stranger = make_user("stranger@example.com")
    make_org("Elsewhere", owner=stranger)  # an owner, but of another organization

    with pytest.raises(NotPermitted):
        orgs.change_role(team[MEMBER], VIEWER, Actor(user=stranger))
    with pytest.raises(NotPermitted):
        orgs.remove_member(team[MEMBER], Actor(user=stranger))

    assert role_of(team[MEMBER]) == MEMBER


def test_an_owner_makes_another_owner_who_may_then_demote_the_first(app_ctx, team):
    first = team[OWNER]
    orgs.change_role(team[ADMIN], OWNER, as_(first))
    second = Membership.get_by_id(team[ADMIN].id)
    assert owners(first.organization) == 2

    orgs.change_role(first, ADMIN, as_(second))

    assert role_of(first) == ADMIN
    assert owners(first.organization) == 1
    # and now the second owner is the last one
    with pytest.raises(RuleViolation):
        orgs.change_role(second, ADMIN, SYSTEM)


def test_an_owner_removes_another_owner(app_ctx, team):
    orgs.change_role(team[ADMIN], OWNER, as_(team[OWNER]))

    orgs.remove_member(Membership.get_by_id(team[ADMIN].id), as_(team[OWNER]))

    assert role_of(team[ADMIN]) is None
    assert owners(team[OWNER].organization) == 1


@pytest.mark.parametrize("role", [ADMIN, BILLING, MEMBER, VIEWER])
def test_anyone_may_leave(app_ctx, team, role):
    orgs.remove_member(team[role], as_(team[role]))

    assert role_of(team[role]) is None
    [row] = audit_rows("member.removed")
    assert row.actor_id == team[role].user_id


def test_an_owner_may_leave_when_another_owner_remains(app_ctx, team):
    orgs.change_role(team[ADMIN], OWNER, as_(team[OWNER]))

    orgs.remove_member(team[OWNER], as_(team[OWNER]))

    assert role_of(team[OWNER]) is None
    assert owners(team[ADMIN].organization) == 1


def test_a_membership_removed_meanwhile_cannot_be_changed(app_ctx, team):
    stale = Membership.get_by_id(team[MEMBER].id)
    orgs.remove_member(team[MEMBER], SYSTEM)

    with pytest.raises(RuleViolation):
        orgs.change_role(stale, VIEWER, as_(team[OWNER]))
    with pytest.raises(RuleViolation):
        orgs.remove_member(stale, as_(team[OWNER]))


def test_a_stale_copy_does_not_bypass_the_last_owner_rule(app_ctx, team):
    """The rule is checked against the database, not the caller's copy."""
    orgs.change_role(team[ADMIN], OWNER, as_(team[OWNER]))
    second = Membership.get_by_id(team[ADMIN].id)
    stale_first = Membership.get_by_id(team[OWNER].id)
    orgs.change_role(second, ADMIN, SYSTEM)  # second is no longer owner; first is the last

    with pytest.raises(RuleViolation):
        orgs.change_role(stale_first, ADMIN, SYSTEM)

    assert owners(team[OWNER].organization) == 1


# --- concurrency ----------------------------------------------------------------

def _run_at_once(app, *jobs):
    """Run each job in its own thread, with its own app context and database
    connection, released together by a barrier; returns each job's outcome
    (None, or the exception it raised)."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list[object] = [None] * len(jobs)

    def run(index, job):
        try:
            with app.app_context(), connected(db):
                prepared = job[0]()
                barrier.wait(timeout=10)
                job[1](*prepared)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return outcomes


def _two_owner_org(make_user, make_org, n: int):
    first = make_user(f"first-{n}@example.com")
    second = make_user(f"second-{n}@example.com")
    org = make_org(f"Race {n}", owner=first)
    add_member(org, second, OWNER)
    return org, Membership.of(first, org).id, Membership.of(second, org).id


def _demote(membership_id: int, actor_membership_id: int):
    """A job: load fresh rows in the thread, then demote."""
    def prepare():
        target = Membership.get_by_id(membership_id)
        actor = Actor(user=Membership.get_by_id(actor_membership_id).user)
        target.organization  # noqa: B018 - load now, not after the barrier
        return target, actor

    return prepare, lambda target, actor: orgs.change_role(target, ADMIN, actor)


def _leave(membership_id: int):
    def prepare():
        target = Membership.get_by_id(membership_id)
        target.organization  # noqa: B018
        return target, Actor(user=target.user)

    return prepare, lambda target, actor: orgs.remove_member(target, actor)


def _check_one_won(org, outcomes):
    unexpected = [o for o in outcomes if o is not None and not isinstance(o, ServiceError)]
    assert unexpected == [], f"unexpected errors: {unexpected!r}"
    assert owners(org) == 1, f"owners left: {owners(org)}; outcomes {outcomes!r}"
    assert outcomes.count(None) == 1, outcomes
    assert all(isinstance(o, (RuleViolation, NotPermitted)) for o in outcomes if o is not None)


@pytest.mark.parametrize("round_", range(5))
def test_two_owners_demoting_each_other_at_once_leave_one_owner(app_ctx, make_user, make_org, round_):
    org, first, second = _two_owner_org(make_user, make_org, round_)

    outcomes = _run_at_once(app_ctx, _demote(second, first), _demote(first, second))

    _check_one_won(org, outcomes)


@pytest.mark.parametrize("round_", range(3))
def test_two_owners_leaving_at_once_leave_one_owner(app_ctx, make_user, make_org, round_):
    org, first, second = _two_owner_org(make_user, make_org, round_)

    outcomes = _run_at_once(app_ctx, _leave(first), _leave(second))

    _check_one_won(org, outcomes)
    assert Membership.in_org(org).count() == 1


@pytest.mark.parametrize("round_", range(3))
def test_an_owner_leaving_while_demoting_the_other_leaves_one_owner(app_ctx, make_user, make_org, round_):
    """The first owner, in two browser tabs, leaves and demotes the second."""
    org, first, second = _two_owner_org(make_user, make_org, round_)

    outcomes = _run_at_once(app_ctx, _leave(first), _demote(second, first))

    _check_one_won(org, outcomes)


def test_permissions_used_by_the_service_exist():
    # role_can raises KeyError on an unknown permission; this is the one orgs uses.
    assert "members:manage" in permissions.PERMISSIONS
