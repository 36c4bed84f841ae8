"""Documentation inside the product: the API reference (/docs/api) and a page
for each problem type the JSON API answers (/docs/problems/<kind>), which is
what a problem document's `type` URL points at. Public: they describe the
public API and hold nothing of any organization."""
from __future__ import annotations

import re

from flask import Blueprint, abort, render_template, url_for
from markupsafe import Markup, escape

from costguardian.api_docs import reference
from costguardian.extensions import limiter
from costguardian.problems import PROBLEM_TYPES
from costguardian.rendering import external_url

bp = Blueprint("docs", __name__, url_prefix="/docs")

_TICKS = re.compile(r"`([^`]+)`")


@bp.app_template_filter("ticks")
def ticks(text: str) -> Markup:
    """Text with `code` spans (as the OpenAPI descriptions write them) as <code>."""
    return Markup(_TICKS.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text or ""))))


@bp.get("/api")
@limiter.exempt
def api():
    from costguardian.services.notifications import types

    return render_template("docs/api.html", **reference(), openapi_url=url_for("api.openapi"),
                           event_types=types.webhook_types(),
                           base_url=external_url("docs.api").removesuffix(url_for("docs.api")))


@bp.get("/problems/")
@limiter.exempt
def problems():
    return render_template("docs/problems.html", problems=sorted(PROBLEM_TYPES.items()))


@bp.get("/problems/<kind>")
@limiter.exempt
def problem(kind: str):
    found = PROBLEM_TYPES.get(kind)
    if found is None:
        abort(404)
    return render_template("docs/problem.html", kind=kind, problem=found, type_url=external_url("docs.problem",
                                                                                                 kind=kind))
