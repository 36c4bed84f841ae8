"""Platform console, Users: who may open it, search and filters, the CSV
export, the user page (audit-logged), edit with email re-confirmation,
disable/enable ending sessions, password-reset links, delete and its
invariants, bulk actions."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.models import (ApiKey, AuditLog, ExternalIdentity, Impersonation, Membership, OutboxMessage,
                                 PasswordResetToken, PlatformToken, User, UserSession)
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from costguardian.services.platform import tokens, users
from tests.support import SYSTEM, Client, add_member, make_org, make_user

VERIFY_LINK = re.compile(r"https?://[^\s]+(/account/verify-email/[A-Za-z0-9_.-]+)")


def _client(app, user) -> Client:
    client = Client(app)
    client.sign_in(user.email)
    return client


@pytest.fixture
def root(app_ctx):
    return make_user("root@example.com", name="Root", superadmin=True)


@pytest.fixture
def admin(app, root):
    return _client(app, root)


@pytest.fixture
def support(app, app_ctx):
    return _client(app, make_user("help@example.com", name="Helper", platform_role="support"))


@pytest.fixture
def ann(app_ctx):
    """Ann, a member of Acme (owned by Olga)."""
    user = make_user("ann@acme.com", name="Ann Analyst")
    org = make_org("Acme", owner=make_user("olga@acme.com", name="Olga Owner"))
    add_member(org, user, "member")
    return User.get_by_id(user.id)


def _fresh(user) -> User | None:
    return User.get_or_none(User.id == user.id)


def _routes(app, user_id: int):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin_users."):
            url = rule.rule.replace("<int:user_id>", str(user_id))
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, url


MUTATIONS = {"/admin/users/bulk": {"action": "disable"}, "/edit": {"name": "X", "email": "x@example.com"},
             "/delete": {"confirm": "ann@acme.com"}}


def _data(url: str) -> dict:
    for suffix, data in MUTATIONS.items():
        if url.endswith(suffix):
            return dict(data, ids="1")
    return {}


# --- who may ------------------------------------------------------------------

def test_anonymous_requests_are_sent_to_sign_in(app, ann):
    client = Client(app)
    checked = 0
    for method, url in _routes(app, ann.id):
        response = client.http.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"].startswith("/login"), (method, url)
        checked += 1
    assert checked >= 9


def test_an_organization_owner_who_is_no_platform_admin_gets_403_everywhere(app, ann):
    owner = _client(app, User.by_email("olga@acme.com"))
    for method, url in _routes(app, ann.id):
        response = owner.get(url) if method == "GET" else owner.post(url, _data(url))
        assert response.status_code == 403, (method, url, response.status_code)
    assert _fresh(ann) is not None and not _fresh(ann).is_disabled


def test_support_reads_and_exports_but_every_mutation_is_403(app, support, ann):
    assert support.get("/admin/users/").status_code == 200
    assert support.get(f"/admin/users/{ann.id}").status_code == 200
    assert support.get("/admin/users/export.csv").status_code == 200
    assert support.post("/admin/users/export", {"ids": str(ann.id)}).status_code == 200
    mutations = [(m, u) for m, u in _routes(app, ann.id) if m == "POST" and not u.endswith("/export")]
    assert len(mutations) == 6
    for _, url in mutations:
        assert support.post(url, _data(url)).status_code == 403, url
    after = _fresh(ann)
    assert after.name == "Ann Analyst" and not after.is_disabled
    page = support.get(f"/admin/users/{ann.id}").get_data(as_text=True)
    assert 'data-testid="user-actions"' not in page  # no edit, disable or delete form for support
    assert "impersonation-reason" in page  # support may act as a non-admin


# --- list, search, filters, pages -----------------------------------------------

def _emails(html: str) -> set[str]:
    return set(re.findall(r'aria-label="Tick ([^" ]+@[^" ]+)"', html))


def test_search_by_name_or_email_case_insensitive(admin, ann):
    make_user("bob@beta.io", name="Robert Builder")
    html = admin.get("/admin/users/?q=ANN").get_data(as_text=True)
    assert _emails(html) == {"ann@acme.com"}
    assert _emails(admin.get("/admin/users/?q=builder").get_data(as_text=True)) == {"bob@beta.io"}
    assert _emails(admin.get("/admin/users/?q=acme.com").get_data(as_text=True)) == {"ann@acme.com", "olga@acme.com"}
    assert _emails(admin.get("/admin/users/?q=%25").get_data(as_text=True)) == set()  # LIKE wildcards are text


def test_filters_role_disabled_unconfirmed_last_active_and_organization(admin, root, ann):
    helper = make_user("help@example.com", platform_role="support")
    gone = make_user("gone@example.com")
    User.update(is_disabled=True).where(User.id == gone.id).execute()
    now = clock.now()
    User.update(email_verified_at=now).where(User.id.in_([root.id, helper.id])).execute()
    User.update(last_seen_at=now - timedelta(days=2)).where(User.id == ann.id).execute()
    User.update(last_seen_at=now - timedelta(days=20)).where(User.id == helper.id).execute()
    User.update(last_seen_at=now - timedelta(days=60)).where(User.id == gone.id).execute()
    beta = make_org("Beta", owner=make_user("bea@beta.io"))
    add_member(beta, ann, "viewer")

    def found(query: str) -> set[str]:
        return _emails(admin.get("/admin/users/?" + query).get_data(as_text=True))

    assert found("role=superadmin") == {"root@example.com"}
    assert found("role=support") == {"help@example.com"}
    assert "root@example.com" not in found("role=none") and "ann@acme.com" in found("role=none")
    assert found("disabled=yes") == {"gone@example.com"}
    assert "gone@example.com" not in found("disabled=no")
    assert found("unconfirmed=yes") == {"ann@acme.com", "olga@acme.com", "gone@example.com", "bea@beta.io"}
    # root is active now: the console requests themselves
    assert found("active=7") == {"ann@acme.com", "root@example.com"}
    assert found("active=30") == {"ann@acme.com", "root@example.com", "help@example.com"}
    assert found("active=90") == {"ann@acme.com", "root@example.com", "help@example.com", "gone@example.com"}
    assert found("active=never") == {"olga@acme.com", "bea@beta.io"}
    assert found("org=beta") == {"ann@acme.com", "bea@beta.io"}
    assert found(f"org={beta.id}") == {"ann@acme.com", "bea@beta.io"}
    assert found("org=beta&role=none&q=ann") == {"ann@acme.com"}
    unknown = admin.get("/admin/users/?org=nope").get_data(as_text=True)
    assert _emails(unknown) == set() and "No organization has the id or slug" in unknown
    assert "Choose 7, 30 or 90 days" in admin.get("/admin/users/?active=5").get_data(as_text=True)


def test_fifty_per_page_with_count_and_next_previous(admin, root):
    for i in range(54):
        make_user(f"user{i:02d}@example.com")
    first = admin.get("/admin/users/").get_data(as_text=True)
    assert len(_emails(first)) == 50
    assert "55 users match · page 1 of 2" in first
    assert "/admin/users/?page=2" in first and "Previous" not in first
    second = admin.get("/admin/users/?page=2", htmx=True)
    html = second.get_data(as_text=True)
    assert "<html" not in html and 'id="user-results"' in html  # the results only, for htmx
    assert _emails(html) == {"user00@example.com", "user01@example.com", "user02@example.com",
                             "user03@example.com", "root@example.com"}
    assert "← Previous" in html and "Next →" not in html
    filtered = admin.get("/admin/users/?q=user0&page=1").get_data(as_text=True)
    assert "10 users match" in filtered


# --- export -------------------------------------------------------------------

def _rows(response) -> list[dict]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="users-')
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_export_of_the_filtered_list_is_a_csv_with_utc_iso_times(admin, root, ann):
    User.update(last_seen_at=clock.now()).where(User.id == ann.id).execute()
    make_user("=cmd@example.com", name="=HYPERLINK(1)")
    rows = _rows(admin.get("/admin/users/export.csv?q=acme"))
    assert [r["email"] for r in rows] == ["ann@acme.com", "olga@acme.com"]  # oldest first
    assert list(rows[0]) == users.EXPORT_COLUMNS
    assert "created_at_utc" in rows[0] and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["created_at_utc"])
    assert rows[0]["last_seen_at_utc"].endswith("Z") and rows[1]["last_seen_at_utc"] == ""
    assert rows[0]["organizations"] == "acme:member" and rows[0]["disabled"] == "false"
    every = _rows(admin.get("/admin/users/export.csv"))
    assert {r["email"] for r in every} >= {"root@example.com", "'=cmd@example.com"}  # no formula cell
    assert next(r for r in every if r["email"].startswith("'="))["name"] == "'=HYPERLINK(1)"
    assert AuditLog.select().where(AuditLog.action == "platform.users_exported").count() == 2


def test_export_of_the_ticked_users_or_else_the_filtered_list(admin, root, ann):
    olga = User.by_email("olga@acme.com")
    rows = _rows(admin.post("/admin/users/export", {"ids": [str(ann.id), str(root.id)], "q": "acme"}))
    assert [r["email"] for r in rows] == ["root@example.com", "ann@acme.com"]
    rows = _rows(admin.post("/admin/users/export", {"q": "olga"}))
    assert [r["id"] for r in rows] == [str(olga.id)]


# --- the user page --------------------------------------------------------------

def test_user_page_shows_everything_and_is_audit_logged(app, admin, root, ann):
    org = Membership.for_user(ann).first().organization
    key = keys.create_key(org, Actor(user=ann), "ann's script", ["ingest"]).key
    ann_browser = _client(app, ann)  # a live session and a sign-in
    assert ann_browser.get("/account/").status_code == 200

    page = admin.get(f"/admin/users/{ann.id}")
    html = page.get_data(as_text=True)

    assert page.status_code == 200
    assert "Ann Analyst" in html and "ann@acme.com" in html and "(not confirmed)" in html
    assert "Acme" in html and "member" in html
    assert key.display_key in html and "ann&#39;s script" in html
    assert 'data-testid="live-sessions"' in html and "password" in html  # the sign-in method
    assert "auth.signed_in" in html  # the audit trail
    assert 'action="/admin/impersonation/start/%d"' % ann.id in html and 'name="reason"' in html
    viewed = AuditLog.select().where(AuditLog.action == "platform.viewed").get()
    assert viewed.actor_id == root.id and viewed.target_type == "user" and viewed.target_id == str(ann.id)
    assert admin.get("/admin/users/999999").status_code == 404


def test_user_page_of_a_platform_admin_shows_why_nobody_may_act_as_them(admin, root):
    helper = make_user("help@example.com", platform_role="support")
    html = admin.get(f"/admin/users/{helper.id}").get_data(as_text=True)
    assert "Platform administrators cannot be impersonated." in html
    assert "impersonation-reason" not in html
    own = admin.get(f"/admin/users/{root.id}").get_data(as_text=True)
    assert "You cannot act as yourself." in own


# --- edit ---------------------------------------------------------------------

def test_edit_with_bad_input_answers_422_with_field_messages(admin, ann):
    url = f"/admin/users/{ann.id}/edit"
    response = admin.post(url, {"name": "x" * 121, "email": "not an address", "platform_role": "god"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Use at most 120 characters." in html and "Choose none, support or superadmin." in html
    assert html.count('aria-invalid="true"') >= 3
    taken = admin.post(url, {"name": "Ann", "email": "OLGA@acme.com", "platform_role": ""})
    assert taken.status_code == 422 and "Another account uses this address." in taken.get_data(as_text=True)
    fragment = admin.post(url, {"name": "Ann", "email": "olga@acme.com", "platform_role": ""}, htmx=True)
    assert fragment.status_code == 422 and fragment.get_data(as_text=True).lstrip().startswith("<form")
    assert _fresh(ann).email == "ann@acme.com" and _fresh(ann).name == "Ann Analyst"


def test_edit_name_and_platform_role_is_audit_logged(admin, root, ann):
    response = admin.post(f"/admin/users/{ann.id}/edit",
                          {"name": "Ann Admin", "email": "ann@acme.com", "platform_role": "support"})
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/users/{ann.id}"
    after = _fresh(ann)
    assert after.name == "Ann Admin" and after.platform_role == "support"
    role = AuditLog.get(AuditLog.action == "user.platform_role_changed")
    assert role.actor_id == root.id and role.detail["before"] == "" and role.detail["after"] == "support"
    assert AuditLog.get(AuditLog.action == "user.updated").detail["name"] == ["Ann Analyst", "Ann Admin"]
    assert not AuditLog.select().where(AuditLog.action == "user.email_changed").exists()


def test_email_change_needs_confirmation_ends_sessions_and_mails_the_new_address(app, admin, root, ann):
    User.update(email_verified_at=clock.now()).where(User.id == ann.id).execute()
    ann_browser = _client(app, ann)
    assert ann_browser.get("/account/").status_code == 200

    response = admin.post(f"/admin/users/{ann.id}/edit",
                          {"name": "Ann Analyst", "email": "Ann.New@Example.org", "platform_role": ""})

    assert response.status_code == 302
    after = _fresh(ann)
    assert after.email == "ann.new@example.org" and after.email_verified_at is None
    changed = AuditLog.get(AuditLog.action == "user.email_changed")
    assert changed.actor_id == root.id and changed.detail == {"before": "ann@acme.com", "after": "ann.new@example.org"}
    message = OutboxMessage.get(OutboxMessage.to_address == "ann.new@example.org")
    assert message.subject == "Confirm your email address for Cost Guardian"
    assert not OutboxMessage.select().where(OutboxMessage.to_address == "ann@acme.com",
                                            OutboxMessage.subject == message.subject).exists()
    assert UserSession.select().where(UserSession.user == ann, UserSession.ended_at.is_null()).count() == 0
    assert ann_browser.get("/account/").headers["Location"].startswith("/login")

    link = VERIFY_LINK.search(message.text_body).group(1)
    new_browser = _client(app, after)
    new_browser.get(link)
    assert _fresh(ann).email_verified_at is not None


def test_role_refusals_own_role_and_last_superadmin(admin, root):
    response = admin.post(f"/admin/users/{root.id}/edit",
                          {"name": "Root", "email": "root@example.com", "platform_role": "support"})
    assert response.status_code == 422
    assert "You cannot change your own platform role" in response.get_data(as_text=True)
    assert _fresh(root).is_superadmin
    # Through the service (the CLI, the API) the last superadmin is kept too.
    with pytest.raises(ValidationError) as refused:
        users.update_user(root, SYSTEM, platform_role="")
    assert "last active superadmin" in refused.value.errors["platform_role"]
    second = make_user("second@example.com", superadmin=True)
    users.update_user(root, Actor(user=second), platform_role="support")
    assert _fresh(root).platform_role == "support"


def test_only_superadmins_change_users_through_the_service(ann):
    helper = make_user("help@example.com", platform_role="support")
    with pytest.raises(NotPermitted):
        users.update_user(ann, Actor(user=helper), name="Nope")
    with pytest.raises(NotPermitted):
        users.set_disabled(ann, True, Actor(user=helper))
    with pytest.raises(NotPermitted):
        users.delete_user(ann, Actor(user=helper), ann.email)


# --- disable, enable, password reset ------------------------------------------

def test_disable_ends_every_session_and_enable_lets_them_back(app, admin, root, ann):
    ann_browser = _client(app, ann)
    assert ann_browser.get("/account/").status_code == 200

    response = admin.post(f"/admin/users/{ann.id}/disable")

    assert response.status_code == 302
    assert _fresh(ann).is_disabled
    after = ann_browser.get("/account/")
    assert after.status_code == 302 and after.headers["Location"].startswith("/login")
    assert UserSession.select().where(UserSession.user == ann, UserSession.ended_at.is_null()).count() == 0
    assert Client(app).post("/login", {"email": ann.email, "password": "correct horse battery staple"}
                            ).status_code != 302
    assert AuditLog.get(AuditLog.action == "user.disabled").actor_id == root.id
    assert AuditLog.get(AuditLog.action == "user.sessions_ended").detail["reason"] == "disabled"

    assert admin.post(f"/admin/users/{ann.id}/enable").status_code == 302
    assert not _fresh(ann).is_disabled
    assert AuditLog.get(AuditLog.action == "user.enabled").actor_id == root.id
    _client(app, ann)  # signs in again


def test_disable_refuses_yourself_and_the_last_superadmin(admin, root):
    response = admin.post(f"/admin/users/{root.id}/disable")
    assert response.status_code == 409
    assert "You cannot disable your own account." in response.get_data(as_text=True)
    assert not _fresh(root).is_disabled
    with pytest.raises(RuleViolation, match="last active superadmin"):
        users.set_disabled(root, True, SYSTEM)


def test_send_a_password_reset_link(admin, root, ann):
    response = admin.post(f"/admin/users/{ann.id}/password-reset")
    assert response.status_code == 302
    message = OutboxMessage.get(OutboxMessage.to_address == "ann@acme.com")
    assert "/reset-password/" in message.text_body
    assert PasswordResetToken.select().where(PasswordResetToken.user == ann).count() == 1
    row = AuditLog.get(AuditLog.action == "auth.password_reset_requested")
    assert row.actor_id == root.id and row.target_id == str(ann.id)
    User.update(is_disabled=True).where(User.id == ann.id).execute()
    refused = admin.post(f"/admin/users/{ann.id}/password-reset")
    assert refused.status_code == 409 and "enable it first" in refused.get_data(as_text=True)


# --- delete ---------------------------------------------------------------------

def test_delete_keeps_the_stated_invariants(app, admin, root, ann):
    org = Membership.for_user(ann).first().organization
    Membership.update(role="admin").where(Membership.user == ann).execute()
    new_key = keys.create_key(org, Actor(user=ann), "ann's key", ["ingest"], user=ann)
    ann_browser = _client(app, ann)
    assert ann_browser.get("/account/").status_code == 200
    ExternalIdentity.create(user=ann, issuer="https://accounts.google.com", subject="123", email=ann.email)
    PasswordResetToken.create(user=ann, token_hash="0" * 64, expires_at=clock.now() + timedelta(hours=1))
    User.update(platform_role="support").where(User.id == ann.id).execute()
    token = tokens.create(_fresh(ann), Actor(user=ann), "script", ["platform:read"]).token
    User.update(platform_role="").where(User.id == ann.id).execute()
    Impersonation.create(admin=root, user=ann, reason="ticket", key_hash="1" * 64, expires_at=clock.now())
    ann_rows = AuditLog.select().where(AuditLog.actor == ann).count()
    assert ann_rows > 0

    page = admin.get(f"/admin/users/{ann.id}").get_data(as_text=True)
    assert "API keys they created stay and keep working" in page and "Audit rows stay" in page

    wrong = admin.post(f"/admin/users/{ann.id}/delete", {"confirm": "ann@acme"})
    assert wrong.status_code == 422 and "Type the user&#39;s email address" in wrong.get_data(as_text=True)
    assert _fresh(ann) is not None

    response = admin.post(f"/admin/users/{ann.id}/delete", {"confirm": " ANN@acme.com "})

    assert response.status_code == 302 and response.headers["Location"] == "/admin/users/"
    assert _fresh(ann) is None
    assert Membership.select().where(Membership.user == ann.id).count() == 0
    assert Membership.select().where(Membership.organization == org).count() == 1  # Olga stays
    assert UserSession.select().where(UserSession.user == ann.id).count() == 0
    assert ExternalIdentity.select().where(ExternalIdentity.user == ann.id).count() == 0
    assert PasswordResetToken.select().where(PasswordResetToken.user == ann.id).count() == 0
    assert PlatformToken.get_or_none(PlatformToken.id == token.id) is None
    assert Impersonation.select().count() == 0
    key = ApiKey.get_by_id(new_key.key.id)
    assert key.created_by_id is None and key.user_id is None and key.revoked_at is None
    assert keys.authenticate(f"Bearer {new_key.plaintext}", "ingest").id == key.id  # still works
    # audit rows stay, their actor emptied; the deletion names who it was
    assert AuditLog.select().where(AuditLog.actor == ann.id).count() == 0
    about_ann = AuditLog.select().where(AuditLog.target_type == "user", AuditLog.target_id == str(ann.id))
    assert about_ann.count() >= ann_rows
    deleted = AuditLog.get(AuditLog.action == "user.deleted")
    assert deleted.actor_id == root.id and deleted.detail["email"] == "ann@acme.com"
    assert deleted.detail["organizations"] == [{"id": org.id, "name": "Acme", "role": "admin"}]
    assert deleted.detail["api_keys_kept"] == 1
    created = AuditLog.get(AuditLog.action == "key.created")
    assert created.actor_id is None and created.target_id == str(key.id)
    assert ann_browser.get("/account/").headers["Location"].startswith("/login")


def test_the_last_owner_of_an_organization_cannot_be_deleted(admin, ann):
    olga = User.by_email("olga@acme.com")
    make_org("Zeta", owner=olga)
    page = admin.get(f"/admin/users/{olga.id}").get_data(as_text=True)
    assert "is the last owner of Acme, Zeta: transfer ownership first" in page
    response = admin.post(f"/admin/users/{olga.id}/delete", {"confirm": olga.email})
    assert response.status_code == 409
    assert "last owner of Acme, Zeta" in response.get_data(as_text=True)
    assert _fresh(olga) is not None
    # A second owner in Acme: Zeta still has only her.
    acme = Membership.for_user(olga).first().organization
    Membership.update(role="owner").where(Membership.user == ann, Membership.organization == acme).execute()
    with pytest.raises(RuleViolation, match=r"last owner of Zeta:"):
        users.delete_user(olga, SYSTEM, olga.email)


def test_delete_refuses_yourself_and_the_last_superadmin(admin, root):
    response = admin.post(f"/admin/users/{root.id}/delete", {"confirm": root.email})
    assert response.status_code == 409
    assert "You cannot delete your own account." in response.get_data(as_text=True)
    with pytest.raises(RuleViolation, match="last active superadmin"):
        users.delete_user(root, SYSTEM, root.email)
    assert _fresh(root) is not None and not AuditLog.select().where(AuditLog.action == "user.deleted").exists()


# --- bulk -----------------------------------------------------------------------

def test_bulk_disable_and_enable_report_refusals(app, admin, root, ann):
    bob = make_user("bob@example.com")
    bob_browser = _client(app, bob)
    ids = [str(ann.id), str(bob.id), str(root.id)]

    response = admin.post("/admin/users/bulk", {"action": "disable", "ids": ids, "q": "a"}, follow_redirects=True)

    html = response.get_data(as_text=True)
    assert "2 user(s) disabled." in html
    assert "Refused: root@example.com (You cannot disable your own account.)" in html
    assert _fresh(ann).is_disabled and _fresh(bob).is_disabled and not _fresh(root).is_disabled
    assert bob_browser.get("/account/").headers["Location"].startswith("/login")
    assert AuditLog.select().where(AuditLog.action == "user.disabled").count() == 2

    admin.post("/admin/users/bulk", {"action": "enable", "ids": ids})
    assert not _fresh(ann).is_disabled and not _fresh(bob).is_disabled
    assert admin.post("/admin/users/bulk", {"action": "delete", "ids": ids}).status_code == 400


def test_as_dict_for_the_json_api(ann):
    data = users.as_dict(ann)
    assert data["email"] == "ann@acme.com" and data["name"] == "Ann Analyst" and data["platform_role"] == ""
    assert data["disabled"] is False and data["email_verified"] is False
    assert data["created_at"].endswith("Z") and data["last_seen_at"] is None
    assert data["organizations"] == [{"id": Membership.for_user(ann).first().organization_id, "name": "Acme",
                                      "role": "member"}]
    found, total = users.search({"q": "ann", "role": "none", "disabled": False, "unconfirmed": True})
    assert total == 1 and found[0].id == ann.id
