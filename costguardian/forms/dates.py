"""A date typed as text in the one format the screens show (YYYY-MM-DD),
rather than the browser's date picker, which shows the browser's locale
(12/06/2026) beside pages that read 2026-12-06."""
from __future__ import annotations

from wtforms import Field
from wtforms.widgets import TextInput

from costguardian.timefmt import DATE_FORMAT_HINT, parse_day

# The attributes of every date input, also written out by hand in templates
# whose inputs are not WTForms fields (grep for DATE_FORMAT_HINT's text).
DATE_INPUT_ATTRS = {"inputmode": "numeric", "pattern": r"\d{4}-\d{2}-\d{2}", "placeholder": DATE_FORMAT_HINT,
                    "maxlength": 10, "autocomplete": "off"}


class IsoDateField(Field):
    """`data` is a date or None (left empty); anything but a real day as
    YYYY-MM-DD is the field's error "Enter a date as YYYY-MM-DD."."""

    widget = TextInput()

    def __init__(self, label=None, validators=None, render_kw=None, **kwargs):
        super().__init__(label, validators, render_kw={**DATE_INPUT_ATTRS, **(render_kw or {})}, **kwargs)

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)[:32]
        return self.data.isoformat() if self.data else ""

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        self.data = None
        self.data = parse_day(" ".join(valuelist))  # a ValueError becomes the field's error
