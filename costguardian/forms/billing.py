"""Forms of the billing page: subscribing through Checkout and changing the
plan, interval or seats (previewed first). The rules (plans on sale, at least
as many seats as people) are services.billing's; these give them shape."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, NumberRange, Optional

from costguardian.services.billing import plans
from costguardian.services.billing.subscriptions import MAX_SEATS

_SEATS = f"Enter a whole number of seats from 1 to {MAX_SEATS:,}."


class PlanForm(FlaskForm):
    plan = SelectField("Plan", validate_choice=False)  # the service names the plans on sale
    interval = SelectField("Billing", choices=[SelectChoice(k, v) for k, v in plans.INTERVALS.items()],
                           default="month")
    seats = IntegerField("Seats", invalid_value_message=_SEATS,
                         validators=[Optional(), NumberRange(min=1, max=MAX_SEATS, message=_SEATS)])

    def __init__(self, plan_choices, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan.choices = [SelectChoice(code, name) for code, name in plan_choices]


class ChangeForm(PlanForm):
    seats = IntegerField("Seats", invalid_value_message=_SEATS,
                         validators=[InputRequired(message=_SEATS), NumberRange(min=1, max=MAX_SEATS, message=_SEATS)])
    proration_date = HiddenField()  # the moment of the preview, so the charge is the amount shown
