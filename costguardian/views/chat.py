"""The chat (`/chat`): a member's own conversations with the organization's
models, each message sent through the gateway's proxy (services/chat/send).

An answer streams to the page from POST /chat/messages/<id>/stream as
server-sent events (`delta` with text, then `done` with the finished answer's
HTML and the conversation's totals), read by static/js/chat.js with fetch().
Stop (POST …/stop) sets a flag the stream reads; the stream ends the upstream
call and records the tokens seen."""
from __future__ import annotations

import json

from flask import Blueprint, Response, abort, g, render_template, request, stream_with_context, url_for
from flask_login import current_user

from costguardian.authz import require_permission
from costguardian.extensions import db, htmx
from costguardian.rendering import redirect_to, render
from costguardian.services.chat import choices, conversations, render as chat_render, send
from costguardian.services.errors import ValidationError

bp = Blueprint("chat", __name__, url_prefix="/chat")

USE = "chat:use"
PAGE, COMPARE_PAGE = "chat/index.html", "chat/compare.html"
LIST, MESSAGES, MESSAGE = "partials/chat/_list.html", "partials/chat/_messages.html", "partials/chat/_message.html"
COMPOSER, TOTALS, TITLE = "partials/chat/_composer.html", "partials/chat/_totals.html", "partials/chat/_title.html"
COMPARE_FORM = "partials/chat/_compare_form.html"


@bp.context_processor
def _helpers():
    return {"markdown": chat_render.markdown, "exact_usd": chat_render.exact_usd, "blocks": _blocks}


def _blocks(messages) -> list[list]:
    """Messages in display order, a compare's answers (one group) together as one block of columns."""
    blocks: list[list] = []
    for m in messages:
        if m.compare_group and blocks and blocks[-1][0].compare_group == m.compare_group:
            blocks[-1].append(m)
        else:
            blocks.append([m])
    return blocks


def _user():
    return current_user._get_current_object()


def _conversation_or_404(conversation_id: int):
    found = conversations.get(g.org, _user(), conversation_id)
    if found is None:
        abort(404)
    return found


def _answer_or_404(message_id: int):
    found = conversations.message(g.org, _user(), message_id)
    if found is None or found.role != "assistant":
        abort(404)
    return found


def _totals(conversation) -> dict:
    return {"total_nanos": conversations.total_nanos(conversation),
            "budget": send.budget_line(g.org, _user(), conversation.model) if conversation.model else None}


def _page(conversation=None, form=None, errors=None, status: int = 200):
    context = {"conversation": conversation, "groups": choices.groups(g.org),
               "conversations": conversations.list_for(g.org, _user()), "q": "",
               "form": form or _form_of(conversation), "errors": errors or {},
               "messages": conversations.messages(conversation) if conversation else []}
    if conversation is not None:
        context.update(_totals(conversation))
    response = render(PAGE, COMPOSER, status=status, **context)
    if htmx and status == 422:  # the composer's errors, not a message in the list
        response.headers["HX-Retarget"], response.headers["HX-Reswap"] = "#chat-composer", "outerHTML"
    return response


def _form_of(conversation) -> dict:
    if conversation is None:
        return {}
    return {"model": conversation.model, "system_prompt": conversation.system_prompt,
            "temperature": "" if conversation.temperature is None else f"{conversation.temperature:g}",
            "max_tokens": conversation.max_tokens or ""}


def _settings_and_text(data=None, model: str | None = None):
    """The composer's settings and message, every field's error at once."""
    data = data if data is not None else request.form
    errors: dict[str, str] = {}
    settings = text = None
    try:
        settings = conversations.parse_settings(data if model is None else {**data, "model": model},
                                                choices.allowed_ids(g.org))
    except ValidationError as exc:
        errors.update(exc.errors)
    try:
        text = conversations.parse_text(data.get("content"))
    except ValidationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    return settings, text


@bp.get("/")
@require_permission(USE)
def index():
    return _page()


@bp.get("/conversations")
@require_permission(USE)
def search():
    q = request.args.get("q", "")
    return render(PAGE, LIST, conversations=conversations.list_for(g.org, _user(), q), q=q, conversation=None,
                  groups=choices.groups(g.org), form={}, errors={}, messages=[])


@bp.post("/")
@require_permission(USE)
def create():
    try:
        settings, text = _settings_and_text()
    except ValidationError as exc:
        return _page(form=request.form, errors=exc.errors, status=422)
    conversation = conversations.create(g.org, _user(), settings)
    send.start(conversation, text)
    return redirect_to(url_for("chat.show", conversation_id=conversation.id))


@bp.get("/<int:conversation_id>")
@require_permission(USE)
def show(conversation_id):
    return _page(_conversation_or_404(conversation_id))


@bp.post("/<int:conversation_id>/messages")
@require_permission(USE)
def say(conversation_id):
    conversation = _conversation_or_404(conversation_id)
    try:
        settings, text = _settings_and_text()
    except ValidationError as exc:
        return _page(conversation, form=request.form, errors=exc.errors, status=422)
    conversations.update_settings(conversation, settings)
    question, answer = send.start_turn(conversation, text)
    if not htmx:
        return redirect_to(url_for("chat.show", conversation_id=conversation.id))
    return render_template(MESSAGES, messages=[question, answer], conversation=conversation, new_turn=True,
                           form=_form_of(conversation), groups=choices.groups(g.org), errors={})


@bp.post("/messages/<int:message_id>/stream")
@require_permission(USE)
def stream(message_id):
    answer = _answer_or_404(message_id)
    org, user = g.org, _user()
    thread_held_a_connection = g.get("db_was_open", True)  # before this request (web._open_db)

    def events():
        try:
            for text in send.stream(org, user, answer):
                yield _event("delta", {"text": text})
            done = conversations.message(org, user, answer.id)
            conversation = done.conversation
            yield _event("done", {"html": render_template(MESSAGE, m=done, conversation=conversation),
                                  "totals": render_template(TOTALS, conversation=conversation,
                                                            **_totals(conversation))})
        finally:
            # A browser that went away (Stop) may leave the server never
            # closing the response, so the request's teardown never runs: the
            # connection the request opened goes back to the pool here
            # (web._close_db's rule; one the thread held before stays its own).
            if not thread_held_a_connection and not db.is_closed():
                db.close()

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@bp.post("/messages/<int:message_id>/stop")
@require_permission(USE)
def stop(message_id):
    send.request_stop(_answer_or_404(message_id))
    return Response(status=204)


@bp.get("/messages/<int:message_id>")
@require_permission(USE)
def message(message_id):
    answer = _answer_or_404(message_id)
    return render_template(MESSAGE, m=answer, conversation=answer.conversation)


@bp.post("/<int:conversation_id>/rename")
@require_permission(USE)
def rename(conversation_id):
    conversation = _conversation_or_404(conversation_id)
    try:
        conversations.rename(conversation, request.form.get("title"))
    except ValidationError as exc:
        return render_template(TITLE, conversation=conversation, errors=exc.errors), 422
    return render_template(TITLE, conversation=conversation, errors={})


@bp.post("/<int:conversation_id>/delete")
@require_permission(USE)
def delete(conversation_id):
    conversations.delete(_conversation_or_404(conversation_id))
    return redirect_to(url_for("chat.index"))


@bp.get("/compare")
@require_permission(USE)
def compare():
    return render(COMPARE_PAGE, COMPARE_FORM, groups=choices.groups(g.org), form={}, errors={})


@bp.post("/compare")
@require_permission(USE)
def compare_create():
    models = list(dict.fromkeys(m for m in request.form.getlist("models") if m))
    errors: dict[str, str] = {}
    if not 2 <= len(models) <= send.MAX_COMPARE:
        errors["models"] = f"Choose two or three different models (at most {send.MAX_COMPARE})."
    elif any(m not in choices.allowed_ids(g.org) for m in models):
        errors["models"] = "One of these models is not available: your provider keys do not allow it."
    try:
        settings, text = _settings_and_text(request.form.to_dict(), models[0] if models else "")
    except ValidationError as exc:
        errors = {**exc.errors, **errors}
    if "model" in errors:  # the first model's error is the whole choice's
        errors.setdefault("models", errors.pop("model"))
    if errors:
        return render(COMPARE_PAGE, COMPARE_FORM, status=422, groups=choices.groups(g.org), form=request.form,
                      errors=errors)
    conversation, _ = send.start_compare(g.org, _user(), models, settings, text)
    return redirect_to(url_for("chat.show", conversation_id=conversation.id))
