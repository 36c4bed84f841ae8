"""Organization API keys: the service (create, authenticate, rotate with a
grace period, revoke, last-used coalescing) and the `create-api-key` command."""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.models import ApiKey, AuditLog, Department
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError
from tests.support import SYSTEM, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

KEY_TEXT = r"cg_(live|test)_([a-z0-9]{12})_([A-Za-z0-9_-]{43})"


@pytest.fixture(autouse=True)
def _fresh_last_used_memory():
    """`touch` remembers per process when it last wrote; ids are reused between tests."""
    keys._last_written.clear()
    yield
    keys._last_written.clear()


@pytest.fixture
def acme(make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    return make_org("Acme", owner=owner), owner


def new_key(org, scopes=("ingest",), **kwargs) -> keys.NewKey:
    return keys.create_key(org, SYSTEM, kwargs.pop("name", "search-service prod"), list(scopes), **kwargs)


def bearer(plaintext: str) -> str:
    return f"Bearer {plaintext}"


def problem_of(header, scope="ingest") -> tuple[int, str]:
    with pytest.raises(keys.ApiKeyError) as info:
        keys.authenticate(header, scope)
    return info.value.status, info.value.problem


def reload(key: ApiKey) -> ApiKey:
    return ApiKey.get_by_id(key.id)


# --- creating ------------------------------------------------------------------

def test_create_key_shows_the_key_once_and_stores_only_its_hash(acme):
    org, owner = acme

    new = keys.create_key(org, Actor(user=owner, ip="10.0.0.1"), "  search-service prod ", ["gateway", "ingest"],
                          env="test")
    env, prefix, secret = re.fullmatch(KEY_TEXT, new.plaintext).groups()
    key = reload(new.key)
    assert (env, prefix) == ("test", key.prefix)
    assert key.name == "search-service prod"
    assert key.scopes == "ingest,gateway"  # in SCOPES order, whatever order they were given in
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert key.created_by_id == owner.id and key.display_key == f"cg_test_{prefix}_…"

    # The secret is in no column of the key, nor in the audit log.
    row = ApiKey.select().where(ApiKey.id == key.id).dicts().get()
    assert all(secret not in str(value) and new.plaintext not in str(value) for value in row.values())
    audit = AuditLog.get(AuditLog.action == "key.created")
    assert audit.organization_id == org.id and audit.actor_id == owner.id and audit.target_id == str(key.id)
    assert audit.detail == {"name": "search-service prod", "scopes": "ingest,gateway", "prefix": prefix}
    assert secret not in str(audit.detail)


def test_two_keys_get_different_prefixes_and_secrets(acme):
    org, _ = acme
    first, second = new_key(org), new_key(org)
    assert first.key.prefix != second.key.prefix
    assert first.plaintext.split("_", 3)[3] != second.plaintext.split("_", 3)[3]


@pytest.mark.parametrize("field, kwargs, message", [
    ("name", {"name": "  "}, "Name the key after what uses it"),
    ("name", {"name": "x" * 81}, "Use at most 80 characters."),
    ("env", {"env": "prod"}, "Choose live or test."),
    ("expires_at", {"expires_at": "past"}, "The expiry must be in the future."),
    ("scopes", {"scopes": []}, "Choose at least one scope."),
    ("scopes", {"scopes": ["ingest", "root"]}, "Unknown scope: root."),
    ("user", {"user": "stranger"}, "not a member of this organization"),
    ("department", {"department": "foreign"}, "Choose a department of this organization."),
])
def test_create_key_rejects_bad_input_per_field(acme, make_user, make_org, field, kwargs, message):
    org, _ = acme
    if kwargs.get("expires_at") == "past":
        kwargs["expires_at"] = clock.now() - timedelta(minutes=1)
    if kwargs.get("user") == "stranger":
        kwargs["user"] = make_user("stranger@globex.com")
    if kwargs.get("department") == "foreign":
        kwargs["department"] = Department.create(organization=make_org("Globex"), name="Sales")
    scopes = kwargs.pop("scopes", ["ingest"])

    with pytest.raises(ValidationError) as info:
        new_key(org, scopes, **kwargs)

    assert list(info.value.errors) == [field]
    assert message in info.value.errors[field]
    assert ApiKey.select().count() == 0
    assert not AuditLog.select().where(AuditLog.action == "key.created").exists()


def test_create_key_reports_every_bad_field_at_once(acme):
    org, _ = acme
    with pytest.raises(ValidationError) as info:
        keys.create_key(org, SYSTEM, "", [], env="staging")
    assert set(info.value.errors) == {"name", "env", "scopes"}


def test_create_key_binds_a_member_and_a_department(acme, make_user):
    org, _ = acme
    alice = make_user("alice@acme.com", name="Alice")
    add_member(org, alice, "member")
    research = Department.create(organization=org, name="Research")

    key = new_key(org, user=alice, department=research).key

    listed = list(keys.keys_of(org))
    assert [k.id for k in listed] == [key.id]
    assert (listed[0].user.email, listed[0].department.name) == ("alice@acme.com", "Research")


def test_keys_of_lists_only_the_org_s_keys_newest_first_and_revoked_last(acme, make_org):
    org, _ = acme
    other = make_org("Globex")
    old = new_key(org, name="old").key
    revoked = new_key(org, name="revoked").key
    newest = new_key(org, name="newest").key
    new_key(other, name="theirs")
    ApiKey.update(created_at=clock.now() - timedelta(days=2)).where(ApiKey.id == old.id).execute()
    keys.revoke_key(revoked, SYSTEM)

    assert [k.id for k in keys.keys_of(org)] == [newest.id, old.id, revoked.id]


# --- authenticating ------------------------------------------------------------

def test_a_valid_key_authenticates_and_records_its_use(acme):
    org, _ = acme
    new = new_key(org, ["ingest", "gateway"])
    assert reload(new.key).last_used_at is None

    key = keys.authenticate(bearer(new.plaintext), "gateway")

    assert key.id == new.key.id and key.organization.id == org.id
    assert reload(key).last_used_at is not None
    assert keys.authenticate(f"bearer   {new.plaintext}  ", "ingest").id == key.id  # scheme is case-insensitive


def test_wrong_secret_is_401(acme):
    org, _ = acme
    new = new_key(org)
    tampered = new.plaintext[:-1] + ("A" if new.plaintext[-1] != "A" else "B")
    assert problem_of(bearer(tampered)) == (401, "invalid-api-key")
    assert reload(new.key).last_used_at is None


def test_unknown_prefix_is_401(acme):
    org, _ = acme
    new = new_key(org)
    _, env, prefix, secret = new.plaintext.split("_", 3)
    assert problem_of(bearer(f"cg_{env}_{'z' * 12}_{secret}")) == (401, "invalid-api-key")


@pytest.mark.parametrize("header", [
    "Bearer nope",
    "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "Bearer cg_prod_abcdefghijkl_" + "a" * 43,
    "Bearer cg_live_short_" + "a" * 43,
    "Bearer cg_live_abcdefghijkl_tooshort",
    "Basic dXNlcjpwYXNz",
    "Bearer",
])
def test_malformed_header_is_401(acme, header):
    assert problem_of(header) == (401, "invalid-api-key")


def test_a_key_without_the_bearer_scheme_is_refused(acme):
    org, _ = acme
    new = new_key(org)
    assert problem_of(new.plaintext) == (401, "invalid-api-key")
    assert problem_of(f"Token {new.plaintext}") == (401, "invalid-api-key")


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_is_401(app_ctx, header):
    assert problem_of(header) == (401, "missing-api-key")


def test_revoked_key_is_401_revoked(acme):
    org, _ = acme
    new = new_key(org)
    keys.revoke_key(new.key, SYSTEM)
    assert problem_of(bearer(new.plaintext)) == (401, "revoked-api-key")
    assert reload(new.key).status() == "revoked"
    assert AuditLog.select().where(AuditLog.action == "key.revoked").count() == 1
    keys.revoke_key(reload(new.key), SYSTEM)  # revoking twice changes nothing
    assert AuditLog.select().where(AuditLog.action == "key.revoked").count() == 1


def test_expired_key_is_401_expired(acme):
    org, _ = acme
    new = new_key(org, expires_at=clock.now() + timedelta(days=30))
    assert keys.authenticate(bearer(new.plaintext), "ingest").id == new.key.id
    ApiKey.update(expires_at=clock.now() - timedelta(seconds=1)).where(ApiKey.id == new.key.id).execute()
    assert problem_of(bearer(new.plaintext)) == (401, "expired-api-key")
    assert reload(new.key).status() == "expired"


def test_missing_scope_is_403(acme):
    org, _ = acme
    new = new_key(org, ["ingest"])
    with pytest.raises(keys.ApiKeyError) as info:
        keys.authenticate(bearer(new.plaintext), "gateway")
    assert (info.value.status, info.value.problem) == (403, "insufficient-scope")
    assert "lacks the 'gateway' scope" in info.value.detail and "it has: ingest" in info.value.detail


def test_the_env_in_the_text_must_match_the_key(acme):
    org, _ = acme
    live, test = new_key(org, env="live"), new_key(org, env="test")
    assert problem_of(bearer(live.plaintext.replace("cg_live_", "cg_test_", 1))) == (401, "invalid-api-key")
    assert problem_of(bearer(test.plaintext.replace("cg_test_", "cg_live_", 1))) == (401, "invalid-api-key")
    assert keys.authenticate(bearer(test.plaintext), "ingest").env == "test"


# --- rotating ------------------------------------------------------------------

def test_after_rotation_the_old_secret_works_until_the_grace_ends(acme):
    org, _ = acme
    old = new_key(org)
    before = clock.now()

    rotated = keys.rotate_key(old.key, SYSTEM, grace_hours=24)

    key = reload(rotated.key)
    assert rotated.key.id == old.key.id and rotated.plaintext != old.plaintext
    assert rotated.plaintext.split("_")[2] == old.plaintext.split("_")[2]  # same prefix: same key, new secret
    assert key.previous_valid_until >= before + timedelta(hours=24) - timedelta(seconds=1)
    assert key.rotated_at is not None
    assert keys.authenticate(bearer(old.plaintext), "ingest").id == key.id
    assert keys.authenticate(bearer(rotated.plaintext), "ingest").id == key.id

    ApiKey.update(previous_valid_until=clock.now() - timedelta(seconds=1)).where(ApiKey.id == key.id).execute()

    assert problem_of(bearer(old.plaintext)) == (401, "invalid-api-key")
    assert keys.authenticate(bearer(rotated.plaintext), "ingest").id == key.id
    audit = AuditLog.get(AuditLog.action == "key.rotated")
    assert audit.detail == {"prefix": key.prefix, "grace_hours": 24}


def test_rotation_without_grace_kills_the_old_secret_at_once(acme):
    org, _ = acme
    old = new_key(org)
    rotated = keys.rotate_key(old.key, SYSTEM, grace_hours=0)
    key = reload(rotated.key)
    assert (key.previous_secret_hash, key.previous_valid_until) == (None, None)
    assert problem_of(bearer(old.plaintext)) == (401, "invalid-api-key")
    assert keys.authenticate(bearer(rotated.plaintext), "ingest").id == key.id


def test_revoking_during_the_grace_period_kills_both_secrets(acme):
    org, _ = acme
    old = new_key(org)
    rotated = keys.rotate_key(old.key, SYSTEM, grace_hours=24)
    keys.revoke_key(rotated.key, SYSTEM)
    assert problem_of(bearer(old.plaintext))[0] == 401
    assert problem_of(bearer(rotated.plaintext)) == (401, "revoked-api-key")


def test_only_an_active_key_rotates_and_the_grace_is_bounded(acme):
    org, _ = acme
    new = new_key(org)
    with pytest.raises(ValidationError) as info:
        keys.rotate_key(new.key, SYSTEM, grace_hours=keys.MAX_GRACE_HOURS + 1)
    assert "grace_hours" in info.value.errors
    with pytest.raises(ValidationError):
        keys.rotate_key(new.key, SYSTEM, grace_hours=-1)
    keys.revoke_key(new.key, SYSTEM)
    with pytest.raises(RuleViolation):
        keys.rotate_key(reload(new.key), SYSTEM)
    assert reload(new.key).rotated_at is None


# --- last used -----------------------------------------------------------------

def test_last_used_is_written_at_most_once_per_resolution(acme):
    org, _ = acme
    new = new_key(org)
    keys.authenticate(bearer(new.plaintext), "ingest")
    assert reload(new.key).last_used_at is not None

    ApiKey.update(last_used_at=None).where(ApiKey.id == new.key.id).execute()
    keys.authenticate(bearer(new.plaintext), "ingest")
    assert reload(new.key).last_used_at is None  # coalesced: the second use wrote nothing

    # Once the resolution has passed, the next use writes again.
    keys._last_written[new.key.id] -= keys.LAST_USED_RESOLUTION + 1
    keys.authenticate(bearer(new.plaintext), "ingest")
    assert reload(new.key).last_used_at is not None


def test_last_used_is_tracked_per_key(acme):
    org, _ = acme
    first, second = new_key(org, name="first"), new_key(org, name="second")
    keys.authenticate(bearer(first.plaintext), "ingest")
    keys.authenticate(bearer(second.plaintext), "ingest")
    assert reload(first.key).last_used_at is not None and reload(second.key).last_used_at is not None


def test_refused_requests_do_not_count_as_use(acme):
    org, _ = acme
    new = new_key(org, ["ingest"])
    problem_of(bearer(new.plaintext), "gateway")
    assert reload(new.key).last_used_at is None


# --- the create-api-key command ------------------------------------------------

@pytest.fixture
def cli(app_ctx):
    runner = app_ctx.test_cli_runner()

    def invoke(*args: str):
        return runner.invoke(args=["create-api-key", *args])

    return invoke


def test_cli_creates_a_key_that_authenticates(cli, acme, make_user):
    org, _ = acme
    alice = make_user("alice@acme.com")
    add_member(org, alice, "member")
    Department.create(organization=org, name="Research")

    result = cli(org.slug, "--name", "batch jobs", "--scopes", "ingest,gateway", "--env", "test",
                 "--user", "Alice@Acme.com", "--department", "research", "--expires-days", "30")

    assert result.exit_code == 0, result.output
    plaintext = result.stdout.strip()
    assert re.fullmatch(KEY_TEXT, plaintext), result.stdout
    assert "scopes:      ingest, gateway" in result.stderr
    assert "attribution: user alice@acme.com, department Research" in result.stderr
    assert "environment: test" in result.stderr
    key = keys.authenticate(bearer(plaintext), "gateway")
    assert (key.name, key.user_id, key.department.name, key.created_by_id) == (
        "batch jobs", alice.id, "Research", None)
    assert timedelta(days=29) < key.expires_at - clock.now() <= timedelta(days=30)
    assert AuditLog.get(AuditLog.action == "key.created").actor_id is None


def test_cli_finds_a_department_ignoring_case_beyond_ascii(cli, acme):
    org, _ = acme
    emile = Department.create(organization=org, name="Émile")
    result = cli(org.slug, "--name", "jobs", "--department", "ÉMILE")
    assert result.exit_code == 0, result.output
    assert keys.authenticate(bearer(result.stdout.strip()), "ingest").department_id == emile.id


def test_cli_defaults_to_an_ingest_live_key_without_expiry(cli, acme):
    org, _ = acme
    result = cli(org.slug, "--name", "collector")
    assert result.exit_code == 0, result.output
    assert "attribution: none (per event)" in result.stderr and "expires:     never" in result.stderr
    key = keys.authenticate(bearer(result.stdout.strip()), "ingest")
    assert (key.env, key.scopes, key.expires_at) == ("live", "ingest", None)


@pytest.mark.parametrize("args, message", [
    (("nope", "--name", "x"), "no organization with the slug 'nope'"),
    (("{slug}", "--name", "x", "--user", "ghost@acme.com"), "no user ghost@acme.com"),
    (("{slug}", "--name", "x", "--user", "stranger@globex.com"), "stranger@globex.com is not a member of Acme"),
    (("{slug}", "--name", "x", "--department", "Sales"), "no department 'Sales' in Acme (departments: Research)"),
    (("{slug}", "--name", "x", "--scopes", "ingest,root"), "unknown scope root; choose from ingest, gateway"),
    (("{slug}", "--name", "x", "--scopes", ","), "Choose at least one scope."),
    (("{slug}", "--name", " "), "Name the key after what uses it"),
    (("{slug}", "--name", "x", "--env", "prod"), "Invalid value for '--env'"),
    (("{slug}", "--name", "x", "--expires-days", "0"), "Invalid value for '--expires-days'"),
])
def test_cli_errors_are_clear(cli, acme, make_user, args, message):
    org, _ = acme
    make_user("stranger@globex.com")
    Department.create(organization=org, name="Research")

    result = cli(*[a.format(slug=org.slug) for a in args])

    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert ApiKey.select().count() == 0


# --- concurrent changes --------------------------------------------------------

def test_a_rotation_racing_a_revocation_never_brings_the_key_back(acme):
    """Two requests load the same key; one revokes it, then the other (holding
    the stale, active copy) rotates it. The key must stay revoked."""
    org, _ = acme
    new = new_key(org)
    stale = reload(new.key)
    keys.revoke_key(reload(new.key), SYSTEM)

    with pytest.raises(RuleViolation):
        keys.rotate_key(stale, SYSTEM, grace_hours=24)

    assert reload(new.key).status() == "revoked"
    assert problem_of(bearer(new.plaintext)) == (401, "revoked-api-key")
    assert not AuditLog.select().where(AuditLog.action == "key.rotated").exists()


def test_revoking_or_rotating_does_not_overwrite_a_newer_last_used(acme):
    org, _ = acme
    new = new_key(org)
    stale = reload(new.key)
    keys.authenticate(bearer(new.plaintext), "ingest")  # another worker records a use meanwhile
    used_at = reload(new.key).last_used_at

    keys.rotate_key(stale, SYSTEM, grace_hours=1)
    assert reload(new.key).last_used_at == used_at
    keys.revoke_key(stale, SYSTEM)
    assert reload(new.key).last_used_at == used_at


# --- gateway limits and the attribution setting ----------------------------------------

def test_a_new_key_has_no_gateway_limits_and_allows_attribution_overrides(acme):
    key = reload(new_key(acme[0], ("gateway",)).key)
    assert (key.rpm_limit, key.tpm_limit, key.attribution_override) == (None, None, True)


def test_set_gateway_limits_stores_them_and_audits_what_changed(acme):
    key = new_key(acme[0], ("gateway",)).key
    keys.set_gateway_limits(key, SYSTEM, "120", 90_000, False)
    stored = reload(key)
    assert (stored.rpm_limit, stored.tpm_limit, stored.attribution_override) == (120, 90_000, False)
    [row] = AuditLog.select().where(AuditLog.action == "key.limits_changed")
    assert row.detail["changes"] == {"rpm_limit": [None, 120], "tpm_limit": [None, 90_000],
                                     "attribution_override": [True, False]}
    keys.set_gateway_limits(stored, SYSTEM, 120, 90_000, False)  # nothing changed: nothing audited
    assert AuditLog.select().where(AuditLog.action == "key.limits_changed").count() == 1
    keys.set_gateway_limits(stored, SYSTEM, None, "", True)
    assert (reload(key).rpm_limit, reload(key).tpm_limit, reload(key).attribution_override) == (None, None, True)


@pytest.mark.parametrize("rpm, tpm, errors", [
    (0, None, {"rpm_limit"}), (-3, -3, {"rpm_limit", "tpm_limit"}), ("1e3", None, {"rpm_limit"}),
    (keys.MAX_RPM + 1, keys.MAX_TPM + 1, {"rpm_limit", "tpm_limit"}),
])
def test_set_gateway_limits_refuses_what_is_not_a_sensible_limit(acme, rpm, tpm, errors):
    key = new_key(acme[0], ("gateway",)).key
    with pytest.raises(ValidationError) as refused:
        keys.set_gateway_limits(key, SYSTEM, rpm, tpm)
    assert set(refused.value.errors) == errors
    assert reload(key).rpm_limit is None
    assert not AuditLog.select().where(AuditLog.action == "key.limits_changed").exists()


def test_set_org_gateway_limits(acme):
    from costguardian.models import Organization

    keys.set_org_gateway_limits(acme[0], SYSTEM, 1000, None)
    assert Organization.get_by_id(acme[0].id).gateway_rpm_limit == 1000
    assert AuditLog.select().where(AuditLog.action == "org.gateway_limits_changed").count() == 1
    with pytest.raises(ValidationError):
        keys.set_org_gateway_limits(acme[0], SYSTEM, "lots", None)
    assert Organization.get_by_id(acme[0].id).gateway_rpm_limit == 1000
