"""Page or fragment, redirects and toasts: the htmx conventions in one place."""
from __future__ import annotations

import json

from flask import current_app, make_response, redirect, render_template, url_for

from costguardian.extensions import htmx


def render(page: str, partial: str, /, status: int = 200, **context):
    """The full page, or only its partial when htmx asks (and is not boosting).
    The page template includes the same partial file, so markup exists once."""
    # A history restore (Back, with nothing in htmx's cache) swaps the whole body:
    # it needs the page, like a boosted request.
    fragment = htmx and not htmx.boosted and not htmx.history_restore_request
    template = partial if fragment else page
    return make_response(render_template(template, **context), status)


def redirect_to(url: str):
    """Post/redirect/get for plain forms; HX-Redirect for htmx requests."""
    if htmx:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


def trigger(response, event: str, value=None):
    """Add an HX-Trigger event (merged with any already set)."""
    events = json.loads(response.headers.get("HX-Trigger", "{}"))
    events[event] = value if value is not None else True
    response.headers["HX-Trigger"] = json.dumps(events)
    return response


def toast(response, message: str, level: str = "success"):
    return trigger(response, "showToast", {"message": message, "level": level})


def external_url(endpoint: str, **values) -> str:
    """An absolute URL for links that leave the browser (emails, OIDC redirects):
    from CG_BASE_URL when set, so a forged Host header cannot redirect them."""
    base = current_app.config.get("CG_BASE_URL")
    if base:
        return base.rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def streamed_download(pieces, mimetype: str, filename: str):
    """A file built while it is sent (`pieces` yields bytes or text), read on
    a connection of its own: the request's closes when the view returns."""
    from flask import Response, stream_with_context

    from costguardian.db import connected
    from costguardian.extensions import db

    def body():
        with connected(db):
            yield from pieces

    response = Response(stream_with_context(body()), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
