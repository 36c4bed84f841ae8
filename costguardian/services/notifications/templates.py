"""Organizations' own email subject and body per event type (TemplateOverride).

Overrides are Jinja, run in the shared sandbox of services.notifications with
the notification's payload and `org` as variables. Saving one is refused with
the error and its line number when it does not compile, fails on the event
type's example payload (undefined variables, the sandbox's SecurityError, …)
or uses a construct outside the small allowed language below: templates are
text with variables, filters and conditions, no loops, assignments, macros or
calls, so no template can make a worker spin or allocate without bound. At
send time an override that fails anyway falls back to the default templates
(with a warning in the log): a template never stops a delivery.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field

from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import TemplateSyntaxError

from costguardian import clock
from costguardian.db import write_transaction
from costguardian.models import TemplateOverride
from costguardian.services.team import audit
from costguardian.services.notifications import types
from costguardian.services.errors import ValidationError

log = logging.getLogger(__name__)

MAX_SUBJECT = 255
MAX_BODY = 10_000

# The template language of overrides: every other node type is refused.
_ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.Getattr, nodes.Getitem,
    nodes.If, nodes.CondExpr, nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Neg,
    nodes.Pos, nodes.Concat, nodes.Add, nodes.Sub, nodes.Div, nodes.FloorDiv, nodes.Filter, nodes.Test,
    nodes.Tuple, nodes.List, nodes.Keyword, nodes.Slice,
)
SAFE_FILTERS = frozenset({
    "upper", "lower", "title", "capitalize", "trim", "striptags", "default", "d", "round", "int", "float",
    "string", "length", "count", "abs", "first", "last", "truncate", "wordcount", "escape", "e", "urlencode",
})
_CONSTRUCT_NAMES = {
    nodes.For: "loops ({% for %})", nodes.Assign: "assignments ({% set %})", nodes.AssignBlock: "assignments ({% set %})",
    nodes.Macro: "macros", nodes.CallBlock: "call blocks", nodes.Call: "function and method calls",
    nodes.With: "{% with %} blocks", nodes.FilterBlock: "{% filter %} blocks", nodes.Mul: "multiplication",
    nodes.Pow: "powers", nodes.Mod: "the % operator", nodes.Include: "includes", nodes.Import: "imports",
    nodes.FromImport: "imports", nodes.Extends: "extends", nodes.Block: "blocks",
}


def checking_env():
    """The shared sandbox, strict about undefined names (a typo is an error
    in the editor; at send time a missing value renders empty)."""
    from costguardian.services.notifications.notify import sandbox

    return sandbox.overlay(undefined=StrictUndefined)


@dataclass
class Defaults:
    subject: str
    body: str


def defaults(etype: types.EventType) -> Defaults:
    return Defaults(etype.title, etype.body)


def variables(etype: types.EventType) -> list[tuple[str, object]]:
    """The names a template may use, with the example's value."""
    return [("org.name", "your organization's name"), *sorted(etype.example.items())]


def override_of(org, key: str) -> TemplateOverride | None:
    return TemplateOverride.in_org(org).where(TemplateOverride.event_type == key).first()


def rows(org) -> list[dict]:
    """Every event type, with the organization's override if it has one."""
    overrides = {o.event_type: o for o in TemplateOverride.in_org(org)}
    return [{"type": t, "override": overrides.get(t.key)} for t in types.REGISTRY.values()]


# --- checking and previewing ---------------------------------------------------------

def _line_of(exc: Exception) -> int | None:
    line = getattr(exc, "lineno", None)
    if line:
        return line
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


def _message(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    line = _line_of(exc)
    return f"Line {line}: {text}" if line else text


class _Refused(Exception):
    def __init__(self, message: str, lineno: int | None):
        super().__init__(message)
        self.message, self.lineno = message, lineno


def _check_language(tree) -> None:
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Filter) or isinstance(node, nodes.Test):
            if isinstance(node, nodes.Filter) and node.name not in SAFE_FILTERS:
                raise _Refused(f"The filter '{node.name}' is not available in email templates. "
                               f"Available: {', '.join(sorted(SAFE_FILTERS))}.", node.lineno)
            for arg in [*node.args, *(k.value for k in node.kwargs)]:
                if not isinstance(arg, nodes.Const):
                    raise _Refused(f"The arguments of '{node.name}' must be plain values.", node.lineno)
        elif not isinstance(node, _ALLOWED_NODES):
            what = next((name for cls, name in _CONSTRUCT_NAMES.items() if isinstance(node, cls)),
                        type(node).__name__)
            raise _Refused(f"Email templates cannot use {what}: only text, variables, filters and "
                           "{% if %} conditions.", getattr(node, "lineno", None))
        if isinstance(node, nodes.Const) and isinstance(node.value, (int, float)) and abs(node.value) > 10**9:
            raise _Refused("Numbers in templates must be smaller than a billion.", node.lineno)


def _render_checked(source: str, context: dict) -> str:
    env = checking_env()
    try:
        tree = env.parse(source)
        _check_language(tree)
        return env.from_string(tree).render(**context)
    except _Refused:
        raise
    except TemplateSyntaxError as exc:
        raise _Refused(exc.message or str(exc), exc.lineno) from exc
    except Exception as exc:  # SecurityError, UndefinedError, arithmetic on the example's values, …
        raise _Refused(getattr(exc, "message", None) or str(exc) or type(exc).__name__, _line_of(exc)) from exc


def _refusal(exc: _Refused) -> str:
    return f"Line {exc.lineno}: {exc.message}" if exc.lineno else exc.message


@dataclass
class Preview:
    subject: str = ""
    text: str = ""
    html: str = ""
    unknown: list[str] = field(default_factory=list)  # names used that the example payload lacks


def check(org, etype: types.EventType, subject: str, body: str) -> tuple[str, str]:
    """The override's title and text rendered with the example payload, or
    ValidationError({"subject"|"body": "Line N: …"})."""
    from costguardian.services.notifications.notify import template_context

    errors = {}
    subject, body = (subject or "").replace("\r\n", "\n"), (body or "").replace("\r\n", "\n")
    if not subject.strip():
        errors["subject"] = "Enter a subject."
    elif len(subject) > MAX_SUBJECT:
        errors["subject"] = f"Keep the subject under {MAX_SUBJECT} characters."
    if not body.strip():
        errors["body"] = "Enter a body."
    elif len(body) > MAX_BODY:
        errors["body"] = f"Keep the body under {MAX_BODY:,} characters."
    if errors:
        raise ValidationError(errors)
    context = template_context(org, dict(etype.example))
    rendered = {}
    for name, source in (("subject", subject), ("body", body)):
        try:
            rendered[name] = _render_checked(source, context).strip()
        except _Refused as exc:
            errors[name] = _refusal(exc)
    if not errors and not rendered["subject"]:
        errors["subject"] = "The subject renders empty with the example; it needs some text."
    if errors:
        raise ValidationError(errors)
    return rendered["subject"], rendered["body"]


def preview(org, etype: types.EventType, subject: str, body: str, user=None) -> Preview:
    """What the email would look like, from the example payload (raises ValidationError)."""
    from costguardian.services.notifications.email import render_parts

    title, text = check(org, etype, subject, body)
    rendered = render_parts(org.name, title, text, link=_example_link(org, etype),
                            user_id=user.id if user is not None else None, org_id=org.id,
                            event_type=etype.key, etype_label=etype.label)
    env = checking_env()
    used = meta.find_undeclared_variables(env.parse(subject)) | meta.find_undeclared_variables(env.parse(body))
    return Preview(rendered.subject, rendered.text, rendered.html,
                   sorted(used - set(etype.example) - {"org"}))


def _example_link(org, etype) -> str:
    from costguardian.services.notifications.notify import render_text, template_context

    try:
        return render_text(etype.link, template_context(org, dict(etype.example))).strip()
    except Exception:
        return ""


# --- saving ---------------------------------------------------------------------------

def save(org, etype: types.EventType, subject: str, body: str, actor) -> TemplateOverride:
    check(org, etype, subject, body)
    subject, body = subject.replace("\r\n", "\n").strip(), body.replace("\r\n", "\n").strip()
    with write_transaction():
        override = override_of(org, etype.key)
        created = override is None
        if created:
            override = TemplateOverride.create(organization=org, event_type=etype.key, subject=subject, body=body,
                                               updated_by=actor.user)
        else:
            override.subject, override.body, override.updated_by, override.updated_at = (
                subject, body, actor.user, clock.now())
            override.save()
        audit.record(actor, "notification_template.saved", org=org, target=override, event_type=etype.key,
                     created=created)
    return override


def reset(org, etype: types.EventType, actor) -> bool:
    """Back to the default templates; False when there was no override."""
    with write_transaction():
        override = override_of(org, etype.key)
        if override is None:
            return False
        audit.record(actor, "notification_template.reset", org=org, target=override, event_type=etype.key)
        override.delete_instance()
    return True


# --- sending ---------------------------------------------------------------------------

def render_email(org, etype: types.EventType, context: dict) -> tuple[str, str]:
    """The email's title and text: the override's when it renders, else the defaults."""
    from costguardian.services.notifications.notify import render_text

    override = override_of(org, etype.key)
    if override is not None:
        try:
            title = render_text(override.subject, context).strip()
            if title:
                return title, render_text(override.body, context).strip()
            log.warning("email template override %s of org %s renders an empty subject; using the default",
                        etype.key, org.id)
        except Exception as exc:
            log.warning("email template override %s of org %s failed (%s); using the default",
                        etype.key, org.id, _message(exc))
    title = _render_default(etype.title, context, etype.label)
    return title, _render_default(etype.body, context, "")


def _render_default(source: str, context: dict, fallback: str) -> str:
    from costguardian.services.notifications.notify import render_text

    try:
        return render_text(source, context).strip()
    except Exception:
        log.exception("default email template failed to render")
        return fallback
