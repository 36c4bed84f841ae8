"""The provider credential forms: adding one, changing its settings, and
replacing its key. The rules (what a base URL, an allow-list or a deployment
map may be; what the provider says about the key) are the vault's; these
forms give them shape and CSRF. A key field never renders its value."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice

from costguardian.forms import apply_errors
from costguardian.services.errors import ValidationError
from costguardian.services.gateway import providers

ALLOW_LIST_HELP = ("Optional. Model names separated by lines or commas; a final * admits every version "
                   "(gpt-4o*). Empty admits every model the key can use.")
DEPLOYMENTS_HELP = "Azure OpenAI only: one “deployment = model” per line, e.g. prod-4o = gpt-4o."


class _Form(FlaskForm):
    def apply_errors(self, exc: ValidationError) -> None:
        apply_errors(self, exc)


class CredentialForm(_Form):
    provider = SelectField("Provider", choices=[SelectChoice(k, label) for k, label in providers.choices()],
                           default="openai")
    label = StringField("Label", description="Tells this key apart from the provider's others, e.g. “Production”.")
    secret = PasswordField("API key", description="Checked with the provider before it is saved; afterwards only "
                                                  "its last 4 characters are ever shown.")
    base_url = StringField("Base URL or endpoint", description="OpenAI-compatible servers: where /models lives, "
                           "e.g. http://gpu-box.internal:8000/v1. Azure OpenAI: the resource's endpoint, "
                           "e.g. https://my-resource.openai.azure.com.")
    api_version = StringField("Azure api-version", default=providers.AZURE_DEFAULT_API_VERSION,
                              description="Azure OpenAI only.")
    deployments = TextAreaField("Azure deployments", description=DEPLOYMENTS_HELP)
    allowed_models = TextAreaField("Allowed models", description=ALLOW_LIST_HELP)
    is_default = BooleanField("Default for this provider", description="The key the gateway uses first. "
                              "A provider's first key is its default.")
    is_enabled = BooleanField("Enabled", default=True)


class CredentialSettingsForm(_Form):
    label = StringField("Label")
    deployments = TextAreaField("Azure deployments", description=DEPLOYMENTS_HELP)
    allowed_models = TextAreaField("Allowed models", description=ALLOW_LIST_HELP)
    is_default = BooleanField("Default for this provider")
    is_enabled = BooleanField("Enabled", description="A disabled key is kept but never used.")

    @classmethod
    def for_credential(cls, credential):
        from costguardian.services.gateway.fields import deployments_text

        return cls(formdata=None, label=credential.label, deployments=deployments_text(credential.deployment_map),
                   allowed_models="\n".join(credential.allowed_model_list), is_default=credential.is_default,
                   is_enabled=credential.is_enabled)


class ReplaceSecretForm(_Form):
    secret = PasswordField("New API key", description="Checked with the provider before it replaces the current "
                                                      "one. Leave empty to check the current key again.")
    base_url = StringField("Base URL or endpoint")
    api_version = StringField("Azure api-version")

    @classmethod
    def for_credential(cls, credential):
        return cls(formdata=None, base_url=credential.base_url, api_version=credential.api_version)
