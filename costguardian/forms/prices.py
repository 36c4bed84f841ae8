"""Forms of the prices area: an organization's own price, a model alias.
The price rules (non-negative, at most 9 decimal places) are the service's,
checked here too so that every field's message shows at once."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Optional, StopValidation

from costguardian.forms.dates import IsoDateField
from costguardian.services.usage import prices
from costguardian.timefmt import DATE_MESSAGE


class _Price:
    def __init__(self, required: bool):
        self.required = required

    def __call__(self, form, field):
        try:
            prices.parse_price(field.data, required=self.required)
        except ValueError as exc:
            raise StopValidation(str(exc)) from None


_decimal = {"inputmode": "decimal", "autocomplete": "off", "placeholder": "0.00"}


class PriceOverrideForm(FlaskForm):
    provider = StringField("Provider", validators=[DataRequired(message="Enter the provider, e.g. openai."),
                                                   Length(max=64)],
                           render_kw={"list": "providers", "autocomplete": "off"})
    model = StringField("Model", validators=[DataRequired(message="Enter the model, e.g. gpt-4o."), Length(max=200)],
                        render_kw={"autocomplete": "off"})
    effective_from = IsoDateField("Effective from (YYYY-MM-DD)", validators=[DataRequired(message=DATE_MESSAGE)],
                                  description="From midnight in the organization's time zone; earlier calls keep "
                                              "the catalog's price.")
    input_price = StringField("Input", validators=[_Price(required=True)], render_kw=_decimal)
    cache_read_price = StringField("Cached input", validators=[_Price(required=False)],
                                   render_kw={**_decimal, "placeholder": "same as input"},
                                   description="Empty: cached tokens cost the input price.")
    cache_write_price = StringField("Cache write", validators=[_Price(required=False)],
                                    render_kw={**_decimal, "placeholder": "same as input"},
                                    description="Empty: cache writes cost the input price.")
    output_price = StringField("Output", validators=[_Price(required=True)], render_kw=_decimal)
    note = StringField("Note", validators=[Optional(), Length(max=200)],
                       render_kw={"placeholder": "e.g. negotiated discount, contract 2026-14"})

    def values(self) -> dict:
        """The keyword arguments of prices.create_override / update_override."""
        return {name: getattr(self, name).data for name in (
            "provider", "model", "effective_from", "input_price", "cache_read_price", "cache_write_price",
            "output_price", "note")}


class ModelAliasForm(FlaskForm):
    """Prefixed ("alias-provider" …): it shares the page with the price form."""

    provider = StringField("Provider", validators=[DataRequired(message="Enter the provider, e.g. azure."),
                                                   Length(max=64)],
                           render_kw={"list": "providers", "autocomplete": "off"})
    alias = StringField("Name your calls use", validators=[
        DataRequired(message="Enter the name your calls use, e.g. prod-4o."), Length(max=200)],
        render_kw={"autocomplete": "off", "placeholder": "prod-4o"})
    model = StringField("Model it stands for", validators=[
        DataRequired(message="Enter the model it stands for, e.g. gpt-4o."), Length(max=200)],
        render_kw={"autocomplete": "off", "placeholder": "gpt-4o"})

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "alias")
        super().__init__(*args, **kwargs)

    def values(self) -> dict:
        return {"provider": self.provider.data, "alias": self.alias.data, "model": self.model.data}
