"""The webhook endpoint form (create and edit). The rules — URL safety, known
event types — are the webhook service's; this form gives them shape."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from costguardian.services.notifications import types as notification_types
from costguardian.services.errors import ValidationError
from costguardian.services.notifications.webhooks import ALL_TYPES, KINDS

KIND_HELP = {
    "json": "The event envelope as JSON, signed with the endpoint's secret (X-CostGuardian-Signature).",
    "slack": "{\"text\": …} for a Slack (or Mattermost, Discord /slack) incoming-webhook URL; not signed.",
}


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class WebhookForm(FlaskForm):
    name = StringField("Name", description="What receives these events, e.g. \"Ops alerts\" or \"#finops in Slack\".")
    url = StringField("URL", description="Cost Guardian POSTs each event here. Public http(s) addresses only.")
    kind = RadioField("Format", choices=[SelectChoice(k, label) for k, label in KINDS.items()], default="json")
    scope = RadioField("Events", choices=[SelectChoice("all", "Every event type, including ones added later"),
                                          SelectChoice("some", "Only the types chosen below")], default="all")
    event_types = CheckboxesField("Event types")
    is_active = BooleanField("Active", default=True,
                             description="An inactive endpoint receives nothing but test events and redeliveries.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.event_types.choices = [SelectChoice(t.key, t.label) for t in notification_types.webhook_types()]
        self.type_help = {t.key: t.description for t in notification_types.webhook_types()}
        self.kind_help = KIND_HELP

    @classmethod
    def for_endpoint(cls, endpoint):
        """The form filled in from an endpoint (nothing posted)."""
        every = endpoint.event_types == ALL_TYPES
        return cls(formdata=None, name=endpoint.name, url=endpoint.url, kind=endpoint.kind,
                   scope="all" if every else "some", event_types=[] if every else endpoint.event_type_list,
                   is_active=endpoint.is_active)

    def chosen_types(self) -> list[str]:
        return [ALL_TYPES] if self.scope.data == "all" else list(self.event_types.data or [])

    def apply_errors(self, exc: ValidationError) -> None:
        """Show the service's field errors next to the fields they concern."""
        for name, message in exc.errors.items():
            field = getattr(self, name, None)
            if field is not None and hasattr(field, "errors"):
                field.errors = list(field.errors) + [message]
            else:
                self.form_errors.append(message)

