"""Forms of the gateway's request log: the request-logging setting, deleting
the kept bodies, and the filters of the list (read from the query string).
The rules (1–90 days) are the request_log service's; these forms give them
shape and field messages."""
from __future__ import annotations

from datetime import date

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField
from wtforms.validators import DataRequired, InputRequired, NumberRange

from costguardian.forms.usage import EARLIEST, LATEST
from costguardian.models import ApiKey
from costguardian.services.gateway import request_log
from costguardian.services.gateway.request_log import MAX_DAYS, MAX_QUERY, MIN_DAYS, OUTCOMES, RequestFilter
from costguardian.timefmt import parse_day

_DAYS_MESSAGE = f"Enter a whole number of days from {MIN_DAYS} to {MAX_DAYS}."
FILTER_KEYS = ("q", "outcome", "key", "model", "from", "to")  # the query keys of the list's filters


class RequestLoggingForm(FlaskForm):
    enabled = BooleanField("Keep the bodies of gateway calls")
    retention_days = IntegerField("Keep them for (days)", default=request_log.DEFAULT_DAYS,
                                  invalid_value_message=_DAYS_MESSAGE,
                                  validators=[InputRequired(message=_DAYS_MESSAGE),
                                              NumberRange(min=MIN_DAYS, max=MAX_DAYS, message=_DAYS_MESSAGE)],
                                  description=f"From {MIN_DAYS} to {MAX_DAYS} days; older bodies are deleted "
                                              "every hour.")

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        self.retention_days.errors = list(dict.fromkeys(self.retention_days.errors))  # one message, not two
        return valid

    @classmethod
    def for_org(cls, org) -> RequestLoggingForm:
        form = cls(formdata=None)
        form.enabled.data, form.retention_days.data = bool(org.request_logging), org.request_log_days
        return form


class DeleteBodiesForm(FlaskForm):
    confirm = BooleanField("Yes, delete every kept request and answer body now",
                           validators=[DataRequired(message="Tick the box to confirm: deleted bodies cannot be "
                                                            "brought back.")])


def _date(args, name: str, errors: dict) -> date | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = parse_day(raw)
    except ValueError as exc:
        errors[name] = str(exc)
        return None
    if not EARLIEST <= value <= LATEST:  # as the usage explorer's; beyond, the zone's midnight may not exist in UTC
        errors[name] = f"Choose a date between {EARLIEST.year} and {LATEST.year}."
        return None
    return value


def filter_args(args) -> dict[str, str]:
    """The filters of `args` to carry into the list's links (pages, newest):
    only the filters' own keys, so an unknown one never reaches url_for."""
    return {name: args[name] for name in FILTER_KEYS if args.get(name)}


def parse_filter(org, args) -> RequestFilter:
    """The list's filters from `args` (request.args); a value that is
    malformed or names something this organization lacks gets a message."""
    flt = RequestFilter()
    errors = flt.errors
    flt.q = (args.get("q") or "").strip()[:MAX_QUERY]
    flt.model = (args.get("model") or "").strip()[:200]
    outcome = (args.get("outcome") or "").strip()
    if outcome in OUTCOMES:
        flt.outcome = outcome
    elif outcome:
        errors["outcome"] = f"“{outcome[:40]}” is not an outcome; choose one of the list."
    key = (args.get("key") or "").strip()
    if key:
        found = ApiKey.get_in_org(org, key)
        if found is None:
            errors["key"] = "No such API key in this organization."
        else:
            flt.key_id = found.id
    flt.start, flt.end = _date(args, "from", errors), _date(args, "to", errors)
    if flt.start and flt.end and flt.end < flt.start:
        errors["to"] = "The end date is before the start date."
    return flt
