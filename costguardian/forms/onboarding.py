"""Forms of the onboarding wizard's steps. Each carries a hidden `token`
(made when the step is shown) that services.onboarding.once uses to apply a
step's side effect once however often the form is sent."""
from __future__ import annotations

import secrets

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from costguardian import permissions
from costguardian.forms import OrganizationForm
from costguardian.forms.keys import CheckboxesField
from costguardian.services.budgets import periods as budget_periods
from costguardian.services.gateway import providers

# What an organization mainly uses (step 1); the first one chosen is preselected in step 3.
USES = [("openai", "OpenAI"), ("anthropic", "Anthropic"), ("google", "Google Gemini"), ("azure", "Azure OpenAI"),
        ("mistral", "Mistral"), ("bedrock", "AWS Bedrock"), ("other", "Something else")]


class _StepForm(FlaskForm):
    token = HiddenField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.token.data:
            self.token.data = secrets.token_urlsafe(16)


class OrganizationStepForm(OrganizationForm, _StepForm):
    slug = StringField("Address", validators=[DataRequired(message="Choose an address."), Length(max=63)],
                       description="Lower-case letters, digits and dashes; it appears in links to this organization.")
    uses = CheckboxesField("What do you use?", choices=[SelectChoice(k, v) for k, v in USES],
                           description="Orders the providers in the next steps.")


class DomainStepForm(_StepForm):
    domain = StringField("Your company's email domain", validators=[Length(max=253)],
                         description="For example example.com: people with a confirmed address there may join.")


class ProviderStepForm(_StepForm):
    provider = SelectField("Provider", choices=[SelectChoice(k, label) for k, label in providers.choices()])
    secret = PasswordField("API key", validators=[DataRequired(message="Paste the provider's API key.")],
                         description="Checked with the provider before it is saved; then kept encrypted and shown "
                                     "only by its last 4 characters.")
    base_url = StringField("Base URL or endpoint", description="Only for Azure OpenAI and OpenAI-compatible servers.")


class BudgetStepForm(_StepForm):
    name = StringField("Name", default="Monthly AI spend", validators=[DataRequired(message="Name the budget."),
                                                                       Length(max=120)])
    amount_usd = StringField("Limit (USD)", validators=[DataRequired(message="Enter an amount in dollars.")])
    period = SelectField("Period", default="monthly",
                         choices=[SelectChoice(p, p.title()) for p in budget_periods.PERIODS if p != "custom"])
    thresholds = StringField("Alert at (% of the limit)", default="50,80,100")
    enforcement = SelectField("When the limit is reached", default="soft", choices=[
        SelectChoice("soft", "Alert only (soft)"), SelectChoice("hard", "Refuse gateway calls (hard)")])


class NotificationsStepForm(_StepForm):
    """The member's in-app/email choice per event type comes as "<type>:<channel>"
    checkboxes (the preferences table); this form holds the rest."""
    slack_url = StringField("Slack-compatible webhook URL (optional)", validators=[Optional(), Length(max=2000)],
                            description="Slack, Mattermost or Teams incoming-webhook URL for alerts.")


class TeamStepForm(_StepForm):
    emails = TextAreaField("Email addresses", validators=[DataRequired(message="Enter at least one address, or skip.")],
                           description="One per line, or separated by commas.")
    role = SelectField("Role", default=permissions.MEMBER,
                       choices=[SelectChoice(r, r.title()) for r in permissions.ROLES if r != permissions.OWNER])
    department = SelectField("Department", default="", validate_choice=False)

    def with_departments(self, departments) -> "TeamStepForm":
        self.department.choices = [SelectChoice("", "No department")] + [
            SelectChoice(str(d.id), d.name) for d in departments]
        return self


class FirstCallForm(_StepForm):
    """Creates the gateway key of step 4 (once)."""

