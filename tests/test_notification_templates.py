"""The email template editor: list, edit, live preview (sandboxed), save
(audited), reset, test send, and who may use it."""
from __future__ import annotations

import pytest

from costguardian.models import AuditLog, Delivery, OutboxMessage, TemplateOverride
from costguardian.services.notifications import templates as email_templates, types as notification_types
from costguardian.services.errors import ValidationError
from tests.support import Client, add_member

URL = "/notifications/templates/budget.threshold"


@pytest.fixture
def admin_client(owner_client):
    client, owner, org = owner_client
    return client, owner, org


def _preview(client, subject, body):
    return client.post(f"{URL}/preview", {"subject": subject, "body": body}, htmx=True)


def test_index_lists_every_event_type_and_which_are_customized(admin_client):
    client, owner, org = admin_client
    TemplateOverride.create(organization=org, event_type="key.rotated", subject="Rotated {{ key }}", body="Done.",
                            updated_by=owner)

    html = client.get("/notifications/templates/").get_data(as_text=True)

    for etype in notification_types.REGISTRY.values():
        if etype.key.startswith("billing."):  # billing is off in the tests: its notifications are not offered
            assert f'/notifications/templates/{etype.key}"' not in html
            continue
        assert etype.label in html and f"/notifications/templates/{etype.key}" in html
    assert html.count("Customized") == 1
    assert "by Olga Owner" in html


def test_edit_page_shows_the_default_template_variables_and_a_rendered_preview(admin_client):
    client, _, _ = admin_client

    response = client.get(URL)

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Budget threshold reached email" in html
    assert "{{ budget }} reached {{ threshold }}% of its limit" in html  # the form, prefilled with the default
    for name in ("org.name", "budget", "spent_usd", "limit_usd", "forecast_usd"):
        assert f"<code>{name}</code>" in html
    assert "[Acme] Engineering monthly reached 80% of its limit" in html  # the preview, already rendered
    assert 'hx-post="/notifications/templates/budget.threshold/preview"' in html
    assert 'hx-trigger="input changed delay:400ms"' in html
    assert 'sandbox title="HTML part of the email"' in html


def test_preview_renders_subject_and_both_parts_with_the_example(admin_client):
    client, _, _ = admin_client

    response = _preview(client, "{{ budget|upper }}: {{ percent }}%", "Dear {{ org.name }},\n\n{{ scope }} spent ${{ spent_usd }}.")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "[Acme] ENGINEERING MONTHLY: 81%" in html
    assert "Dear Acme,\n\nDepartment Engineering spent $812.40." in html
    assert 'target="template-html-frame"' in html and "data-autosubmit" in html


@pytest.mark.parametrize("subject, body, field, message", [
    ("Hi", "line one\n{% if budget %}\nunclosed", "Body", "Line 3: Unexpected end of template"),
    ("Hi", "one\n{{ ''.__class__ }}", "Body", "Line 2: access to attribute &#39;__class__&#39; of &#39;str&#39; object is unsafe."),
    ("{{ budget|explode }}", "x", "Subject", "Line 1: The filter &#39;explode&#39; is not available"),
    ("Hi", "a\nb\n{{ budgett }}", "Body", "Line 3: &#39;budgett&#39; is undefined"),
    ("Hi", "{% for i in range(99999) %}x{% endfor %}", "Body", "Line 1: Email templates cannot use loops"),
    ("Hi", "{{ budget.upper() }}", "Body", "cannot use function and method calls"),
    ("Hi", "{{ 'x' * 1000000 }}", "Body", "cannot use multiplication"),
    ("", "x", "Subject", "Enter a subject."),
])
def test_a_bad_template_is_refused_with_422_and_the_line(admin_client, subject, body, field, message):
    client, _, _ = admin_client

    response = _preview(client, subject, body)

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'data-testid="template-errors"' in html
    assert f"<strong>{field}</strong>" in html
    assert message in html


def test_preview_html_is_served_sandboxed_with_its_own_policy(admin_client):
    client, _, _ = admin_client

    response = client.post(f"{URL}/preview.html", {"subject": "Hi {{ budget }}", "body": "Spent {{ spent_usd }}"})

    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "script-src" not in csp and "default-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "<p>Spent 812.40</p>" in response.get_data(as_text=True)
    bad = client.post(f"{URL}/preview.html", {"subject": "{{", "body": "x"})
    assert bad.status_code == 422 and bad.headers["Content-Security-Policy"].startswith("sandbox;")


def test_save_stores_the_override_audits_and_the_next_email_uses_it(admin_client):
    client, owner, org = admin_client

    response = client.post(URL, {"subject": "Budget alert: {{ budget }}", "body": "{{ budget }} is at {{ percent }}%."})

    assert response.status_code == 302 and response.headers["Location"] == URL
    override = TemplateOverride.get(TemplateOverride.organization == org)
    assert (override.event_type, override.subject, override.updated_by_id) == (
        "budget.threshold", "Budget alert: {{ budget }}", owner.id)
    audit = AuditLog.get(AuditLog.action == "notification_template.saved")
    assert audit.detail == {"event_type": "budget.threshold", "created": True}
    assert "uses its own template" in client.get(URL).get_data(as_text=True)

    from costguardian.services.notifications import notify as notifications
    sent = notifications.notify(org, "budget.threshold", dict(notification_types.get("budget.threshold").example),
                                recipients=[owner], webhooks=False)
    message = OutboxMessage.get_by_id(sent.deliveries[0].message_id)
    assert message.subject == "[Acme] Budget alert: Engineering monthly"
    assert "Engineering monthly is at 81%." in message.text_body

    client.post(URL, {"subject": "Second {{ budget }}", "body": "x"})
    assert TemplateOverride.select().count() == 1
    assert TemplateOverride.get().subject == "Second {{ budget }}"


def test_saving_a_bad_template_is_422_with_the_error_on_the_field(admin_client):
    client, _, _ = admin_client

    response = client.post(URL, {"subject": "ok", "body": "fine\n{{ ''.__class__.__mro__ }}"})

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'class="field-error"' in html and "Line 2: access to attribute" in html
    assert TemplateOverride.select().count() == 0


def test_reset_goes_back_to_the_default(admin_client):
    client, _, org = admin_client
    client.post(URL, {"subject": "Mine", "body": "Mine"})

    response = client.post(f"{URL}/reset", htmx=True)

    assert response.status_code == 204 and response.headers["HX-Redirect"] == URL
    assert TemplateOverride.select().count() == 0
    assert AuditLog.get(AuditLog.action == "notification_template.reset").detail == {"event_type": "budget.threshold"}
    assert "Using the default template." in client.get(URL).get_data(as_text=True)


def test_send_me_a_test_email(admin_client):
    client, owner, _ = admin_client

    response = client.post(f"{URL}/test")

    assert response.status_code == 302
    delivery = Delivery.get()
    assert (delivery.recipient, delivery.event_type, delivery.status) == ("owner@acme.com", "budget.threshold", "sent")
    assert OutboxMessage.get_by_id(delivery.message_id).subject.startswith("[Test] [Acme] ")


def test_unknown_event_type_is_404(admin_client):
    client, _, _ = admin_client
    assert client.get("/notifications/templates/nope.nothing").status_code == 404
    assert client.post("/notifications/templates/nope.nothing/preview", {"subject": "x", "body": "y"},
                       htmx=True).status_code == 404


@pytest.mark.parametrize("role", ["member", "billing", "viewer"])
def test_only_roles_with_notifications_manage_may_edit(app, admin_client, make_user, role):
    _, _, org = admin_client
    user = make_user(f"{role}@acme.com")
    add_member(org, user, role)
    client = Client(app)
    client.sign_in(user.email)

    assert client.get("/notifications/templates/").status_code == 403
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"subject": "x", "body": "y"}).status_code == 403
    assert _preview(client, "x", "y").status_code == 403
    assert TemplateOverride.select().count() == 0


def test_overrides_are_per_organization(admin_client, make_org):
    client, owner, org = admin_client
    client.post(URL, {"subject": "Acme only", "body": "x"})
    other = make_org("Beta", owner=owner)

    assert email_templates.override_of(other, "budget.threshold") is None
    assert email_templates.override_of(org, "budget.threshold").subject == "Acme only"


def test_check_service_reports_the_field_and_line():
    etype = notification_types.get("system.test")

    class Org:
        id, name, slug = 1, "Acme", "acme"

    with pytest.raises(ValidationError) as caught:
        email_templates.check(Org(), etype, "ok {{ sender }}", "a\nb\nc\n{{ message|nope }}")
    assert caught.value.errors == {"body": "Line 4: The filter 'nope' is not available in email templates. "
                                           "Available: " + ", ".join(sorted(email_templates.SAFE_FILTERS)) + "."}
