"""Domain verification by DNS TXT record, against a real DNS server on a
loopback port (tests/fakes/dns_server.py) that the app's resolver asks: the
record to publish, checks before and after it exists, public suffixes and
other organizations' domains refused, colleagues joining once verified, the
daily re-check withdrawing a domain whose record is gone, and the Settings
page's card."""
from __future__ import annotations

import pytest

from costguardian.models import AuditLog, DomainVerification, Membership, Notification, Organization
from costguardian.services.errors import ValidationError
from costguardian.services.team import accounts, domain_verification as dv
from tests.support import PASSWORD, SYSTEM


@pytest.fixture
def org(owner_client):
    return owner_client[2]


def _publish(dns_server, verification):
    name, value = dv.record(verification)
    dns_server.set_txt(name, "v=spf1 -all", value)  # other TXT strings at the name do not matter
    return name


def test_the_record_to_publish_is_per_organization_and_domain(org, make_org, dns_server):
    first = dv.start(org, SYSTEM, "Example.COM.")
    assert first.domain == "example.com" and len(first.token) >= 32
    name, value = dv.record(first)
    assert name == "_costguardian-challenge.example.com" and value == f"costguardian-verification={first.token}"
    assert dv.start(org, SYSTEM, "example.com").token == first.token  # asked again: the same token
    other = make_org("Other")
    assert dv.start(other, SYSTEM, "example.com").token != first.token
    assert dv.start(org, SYSTEM, "bücher.example").domain == "xn--bcher-kva.example"


@pytest.mark.parametrize("domain, message", [
    ("com", "Enter a domain like"), ("co.uk", "public suffix"), ("github.io", "public suffix"),
    ("gmail.com", "Anyone can have an address"), ("not a domain", "Enter a domain like"),
    ("https://example.com/", "Enter a domain like"), ("", "Enter your company's domain"),
])
def test_public_suffixes_and_non_domains_are_refused(org, domain, message):
    with pytest.raises(ValidationError) as refused:
        dv.start(org, SYSTEM, domain)
    assert message in refused.value.errors["domain"]
    assert DomainVerification.select().count() == 0


def test_checking_before_and_after_the_record_exists(org, dns_server, make_user):
    verification = dv.start(org, SYSTEM, "acme-corp.com")
    early = dv.check(org, SYSTEM, "acme-corp.com")
    assert early.verified_at is None and "No TXT record" in early.last_error
    name = _publish(dns_server, verification)
    assert (name, "TXT") in dns_server.queries
    done = dv.check(org, SYSTEM, "acme-corp.com")
    assert done.verified_at is not None and done.last_error == ""
    org = Organization.get_by_id(org.id)
    assert (org.join_domain, org.join_domain_role) == ("acme-corp.com", "member") and org.join_domain_verified_at
    colleague = make_user("cara@acme-corp.com")
    accounts.mark_email_verified(colleague, SYSTEM, method="test")
    accounts.authenticate("cara@acme-corp.com", PASSWORD, SYSTEM)
    assert Membership.of(colleague, org).role == "member"
    actions = {a.action for a in AuditLog.select().where(AuditLog.organization == org)}
    assert {"org.domain_verification_started", "org.join_domain_verified"} <= actions


def test_a_wrong_value_and_a_silent_server_do_not_verify(org, dns_server):
    verification = dv.start(org, SYSTEM, "acme-corp.com")
    name, _ = dv.record(verification)
    dns_server.set_txt(name, "costguardian-verification=somebody-else")
    assert "holds something else" in dv.check(org, SYSTEM, "acme-corp.com").last_error
    dns_server.never_answer(name)
    silent = dv.check(org, SYSTEM, "acme-corp.com")
    assert silent.verified_at is None and "DNS did not answer" in silent.last_error


def test_a_domain_verified_by_another_organization_is_refused(org, make_org, dns_server):
    other = make_org("Rival")
    _publish(dns_server, dv.start(other, SYSTEM, "acme-corp.com"))
    assert dv.check(other, SYSTEM, "acme-corp.com").verified_at is not None
    with pytest.raises(ValidationError) as refused:
        dv.start(org, SYSTEM, "acme-corp.com")
    assert "already verified by another organization" in refused.value.errors["domain"]


def test_the_daily_recheck_withdraws_a_domain_whose_record_is_gone(org, dns_server, owner_client):
    owner = owner_client[1]
    name = _publish(dns_server, dv.start(org, SYSTEM, "acme-corp.com"))
    dv.check(org, SYSTEM, "acme-corp.com")
    assert dv.recheck_all() == 0  # still there
    dns_server.never_answer(name)
    assert dv.recheck_all() == 0  # DNS silent: nothing concluded, nothing withdrawn
    dns_server.clear()
    assert dv.recheck_all() == 1
    org = Organization.get_by_id(org.id)
    assert org.join_domain == "acme-corp.com" and org.join_domain_verified_at is None
    [notice] = Notification.select().where(Notification.event_type == "org.domain_unverified")
    assert notice.user_id == owner.id and notice.title == "acme-corp.com is no longer verified"
    assert DomainVerification.get().verified_at is None


def test_the_settings_card_shows_the_record_and_checks_it(owner_client, dns_server):
    client, owner, org = owner_client
    saved = client.post("/settings/join-domain", {"join_domain": "acme-corp.com", "join_domain_role": "viewer"},
                        htmx=True)
    page = saved.get_data(as_text=True)
    assert saved.status_code == 200 and "_costguardian-challenge.acme-corp.com" in page
    verification = DomainVerification.get()
    assert f"costguardian-verification={verification.token}" in page
    early = client.post("/settings/join-domain/check", {}, htmx=True)
    assert early.status_code == 422 and "No TXT record" in early.get_data(as_text=True)
    _publish(dns_server, verification)
    done = client.post("/settings/join-domain/check", {}, htmx=True)
    text = done.get_data(as_text=True)
    assert done.status_code == 200 and "Verified" in text and "join as viewer" in text
    bad = client.post("/settings/join-domain", {"join_domain": "co.uk", "join_domain_role": "member"}, htmx=True)
    assert bad.status_code == 422


def test_the_settings_card_refuses_another_organizations_domain_and_saves_nothing(owner_client, make_org,
                                                                                  dns_server):
    client, owner, org = owner_client
    rival = make_org("Rival")
    _publish(dns_server, dv.start(rival, SYSTEM, "acme-corp.com"))
    assert dv.check(rival, SYSTEM, "acme-corp.com").verified_at is not None
    taken = client.post("/settings/join-domain", {"join_domain": "acme-corp.com", "join_domain_role": "member"},
                        htmx=True)
    assert taken.status_code == 422 and "already verified by another organization" in taken.get_data(as_text=True)
    assert Organization.get_by_id(org.id).join_domain is None
    assert DomainVerification.in_org(org).count() == 0


def test_the_settings_card_takes_an_international_domain_and_checks_without_javascript(owner_client, dns_server):
    client, owner, org = owner_client
    saved = client.post("/settings/join-domain", {"join_domain": "Bücher.example", "join_domain_role": "member"})
    assert saved.status_code == 200 and "_costguardian-challenge.xn--bcher-kva.example" in saved.get_data(as_text=True)
    assert Organization.get_by_id(org.id).join_domain == "xn--bcher-kva.example"
    verification = DomainVerification.get()
    assert AuditLog.select().where(AuditLog.action == "org.domain_verification_started").count() == 1
    client.get("/settings/")  # showing the page writes nothing
    assert AuditLog.select().where(AuditLog.action == "org.domain_verification_started").count() == 1
    _publish(dns_server, verification)
    done = client.post("/settings/join-domain/check", {"join_domain": "ignored.example", "join_domain_role": "admin"})
    page = done.get_data(as_text=True)
    assert done.status_code == 200 and "Verified" in page and "last checked" in page and "checked daily" in page
    org = Organization.get_by_id(org.id)
    assert org.join_domain == "xn--bcher-kva.example" and org.join_domain_role == "member"


def test_nameservers_are_read_as_host_and_port():
    assert dv._host_port(" 127.0.0.1:5353 ") == ("127.0.0.1", 5353)
    assert dv._host_port("1.1.1.1") == ("1.1.1.1", 53)
    assert dv._host_port("[::1]:5353") == ("::1", 5353)
    assert dv._host_port("2606:4700::1111") == ("2606:4700::1111", 53)
