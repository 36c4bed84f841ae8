"""The email template editor's form; the template rules (size, sandbox,
allowed constructs) are services.notifications.templates'."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField


class TemplateOverrideForm(FlaskForm):
    subject = StringField("Subject", render_kw={"autocomplete": "off", "spellcheck": "false"},
                          description="Cost Guardian puts [organization name] in front of it.")
    body = TextAreaField("Body", render_kw={"rows": 10, "spellcheck": "false"},
                         description="Plain text; the HTML part is built from it (paragraphs, line breaks, links).")
