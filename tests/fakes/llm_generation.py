"""The fake upstream's generation routes (tests/fakes/llm_upstream.py): OpenAI
chat completions, completions, embeddings and responses, Anthropic messages
and count_tokens, whole or streamed as real server-sent events, with usage
where each provider puts it. A mixin of FakeLLMUpstream, which holds the
knobs (`reply`, cache tokens, `chunk_delay`, `disconnect_after`, `hold_after` …) and the
`error` / `lock` / `usage_log` these methods use."""
from __future__ import annotations

import base64
import json
import math
import re
import socket
import struct
import time
import uuid

from werkzeug.wrappers import Request, Response

OPENAI, ANTHROPIC = "openai", "anthropic"
DEFAULT_REPLY = "Hello from the fake upstream, one word at a time, as a model would stream it."
EMBEDDING_DIMENSIONS = 8


class Generation:
    def _model(self, request: Request, body: dict) -> str:
        deployment = request.environ.get("fake.azure_deployment")
        if deployment is not None:
            return self.azure_deployments.get(deployment, deployment)
        return body.get("model") or ""

    def _pieces(self, body: dict, *limits: str) -> tuple[list[str], str]:
        """The reply as tokens, cut at the call's own limit: (pieces, finish reason)."""
        pieces = re.findall(r"\s*\S+", self.reply)
        cap = next((body[k] for k in limits if isinstance(body.get(k), int)), None)
        if cap is not None and cap < len(pieces):
            return pieces[:cap], "length"
        return pieces, "stop"

    def _log_usage(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> None:
        with self.lock:
            self.usage_log.append({"input": input_tokens, "output": output_tokens, "cache_read": cache_read,
                                   "cache_write": cache_write})

    def _openai_checked(self, request: Request, wire_label: str = "OpenAI"):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return None, self.error(OPENAI, 400, "We could not parse the JSON body of your request.")
        if not self._model(request, body):
            return None, self.error(OPENAI, 400, "you must provide a model parameter", code=None)
        if body.get("stream_options") is not None and not body.get("stream"):
            return None, self.error(OPENAI, 400, "The 'stream_options' parameter is only allowed when 'stream' "
                                    "is enabled.", code="invalid_value")
        return body, None

    def _tool_call(self, body: dict, results: list[str]) -> tuple[str, str, list[str]] | None:
        """(call id, tool name, argument fragments) when this request is to be answered with a tool call."""
        tools = body.get("tools")
        if self.tool_arguments is None or not isinstance(tools, list) or not tools or results:
            return None
        first = tools[0]
        name = (first.get("function") or {}).get("name") if "function" in first else first.get("name")
        arguments = json.dumps(self.tool_arguments)
        return f"call_{uuid.uuid4().hex[:12]}", name, [arguments[i:i + 8] for i in range(0, len(arguments), 8)]

    def _chat_completions(self, request: Request) -> Response:
        body, refusal = self._openai_checked(request)
        if refusal is not None:
            return refusal
        model = self._model(request, body)
        results, problem = _openai_tool_results(body.get("messages"))
        if problem:
            return self.error(OPENAI, 400, problem, code=None)
        pieces, finish = self._pieces(body, "max_completion_tokens", "max_tokens")
        call = self._tool_call(body, results)
        if call is not None:
            pieces, finish = call[2], "tool_calls"
        usage = self._openai_usage(body.get("messages"), len(pieces))
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []}
            if call is not None:
                message["content"] = None
                message["tool_calls"] = [{"id": call[0], "type": "function",
                                          "function": {"name": call[1], "arguments": "".join(call[2])}}]
            return _json({"id": ident, "object": "chat.completion", "created": created, "model": model,
                          "system_fingerprint": "fp_fake", "service_tier": "default",
                          "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                          "usage": usage})
        if call is not None:
            deltas = [{"role": "assistant", "content": None,
                       "tool_calls": [{"index": 0, "id": call[0], "type": "function",
                                       "function": {"name": call[1], "arguments": ""}}]}]
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
        else:
            deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
        return self._stream(self._openai_chunks(body, usage, ident, created, model, "chat.completion.chunk",
                                                deltas, finish))

    def _completions(self, request: Request) -> Response:
        body, refusal = self._openai_checked(request)
        if refusal is not None:
            return refusal
        model = self._model(request, body)
        pieces, finish = self._pieces(body, "max_tokens")
        usage = self._openai_usage(body.get("prompt"), len(pieces))
        ident, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.get("stream"):
            return _json({"id": ident, "object": "text_completion", "created": created, "model": model,
                          "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None,
                                       "finish_reason": finish}], "usage": usage})
        return self._stream(self._openai_chunks(body, usage, ident, created, model, "text_completion",
                                                [{"text": p} for p in pieces], finish))

    def _openai_usage(self, prompt, output_tokens: int) -> dict:
        prompt_tokens = _prompt_tokens(prompt) + self.cache_read_tokens
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                 "total_tokens": prompt_tokens + output_tokens,
                 "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        self._log_usage(prompt_tokens, output_tokens, self.cache_read_tokens)
        return usage

    def _openai_chunks(self, body: dict, usage: dict, ident: str, created: int, model: str, kind: str,
                       deltas: list[dict], finish: str) -> list:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and self.stream_usage
        extra = {"usage": None} if include_usage and not self.usage_on_last_choice else {}

        def chunk(choice: dict, **more) -> tuple[None, dict]:
            return None, {"id": ident, "object": kind, "created": created, "model": model,
                          "system_fingerprint": "fp_fake", "choices": [choice], **extra, **more}

        text = kind == "text_completion"
        events = [chunk({"index": 0, **(d if text else {"delta": d}), "logprobs": None, "finish_reason": None})
                  for d in deltas]
        last = {"index": 0, **({"text": ""} if text else {"delta": {}}), "logprobs": None, "finish_reason": finish}
        if include_usage and self.usage_on_last_choice:
            events.append(chunk(last, usage=usage))  # usage on a chunk that still carries choices
        else:
            events.append(chunk(last))
            if include_usage:
                events.append((None, {"id": ident, "object": kind, "created": created, "model": model,
                                      "system_fingerprint": "fp_fake", "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        return events

    def _embeddings(self, request: Request) -> Response:
        body, refusal = self._openai_checked(request)
        if refusal is not None:
            return refusal
        given = body.get("input")
        inputs = given if isinstance(given, list) and given and not isinstance(given[0], int) else [given]
        data = []
        for index, text in enumerate(inputs):
            vector = [round(math.sin(index + i + len(str(text))), 6) for i in range(EMBEDDING_DIMENSIONS)]
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(_prompt_tokens(text) for text in inputs)
        self._log_usage(tokens, 0)
        return _json({"object": "list", "data": data, "model": self._model(request, body),
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _responses(self, request: Request) -> Response:
        body, refusal = self._openai_checked(request)
        if refusal is not None:
            return refusal
        model = body["model"]
        pieces, finish = self._pieces(body, "max_output_tokens")
        input_tokens = _prompt_tokens([body.get("instructions"), body.get("input")]) + self.cache_read_tokens
        usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": self.cache_read_tokens},
                 "output_tokens": len(pieces), "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": input_tokens + len(pieces)}
        self._log_usage(input_tokens, len(pieces), self.cache_read_tokens)
        ident, item_id, created = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time())
        text = "".join(pieces)

        def response(status: str, output: list, usage_now) -> dict:
            return {"id": ident, "object": "response", "created_at": created, "status": status, "model": model,
                    "output": output, "usage": usage_now, "error": None,
                    "incomplete_details": None if finish == "stop" else {"reason": "max_output_tokens"},
                    "instructions": body.get("instructions"), "metadata": {}, "parallel_tool_calls": True,
                    "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto", "tools": [],
                    "text": {"format": {"type": "text"}}, "truncation": "disabled",
                    "max_output_tokens": body.get("max_output_tokens"), "previous_response_id": None,
                    "reasoning": {"effort": None, "summary": None}, "store": True, "user": body.get("user")}

        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part]}
        final_status = "completed" if finish == "stop" else "incomplete"
        if not body.get("stream"):
            return _json(response(final_status, [item], usage))
        events = [("response.created", {"type": "response.created", "response": response("in_progress", [], None)}),
                  ("response.in_progress", {"type": "response.in_progress",
                                            "response": response("in_progress", [], None)}),
                  ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                  "item": {**item, "status": "in_progress", "content": []}}),
                  ("response.content_part.added", {"type": "response.content_part.added", "item_id": item_id,
                                                   "output_index": 0, "content_index": 0,
                                                   "part": {**part, "text": ""}})]
        events += [("response.output_text.delta", {"type": "response.output_text.delta", "item_id": item_id,
                                                   "output_index": 0, "content_index": 0, "delta": p,
                                                   "logprobs": []}) for p in pieces]
        events += [("response.output_text.done", {"type": "response.output_text.done", "item_id": item_id,
                                                  "output_index": 0, "content_index": 0, "text": text,
                                                  "logprobs": []}),
                   ("response.content_part.done", {"type": "response.content_part.done", "item_id": item_id,
                                                   "output_index": 0, "content_index": 0, "part": part}),
                   ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                  "item": item}),
                   (f"response.{final_status}", {"type": f"response.{final_status}",
                                                 "response": response(final_status, [item], usage)})]
        for number, (_, data) in enumerate(events):
            data["sequence_number"] = number
        return self._stream(events)

    def _anthropic_checked(self, request: Request, needs_max_tokens: bool = True):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return None, self.error(ANTHROPIC, 400, "The request body is not valid JSON.",
                                    kind="invalid_request_error")
        if not body.get("model"):
            return None, self.error(ANTHROPIC, 400, "model: Field required", kind="invalid_request_error")
        if needs_max_tokens and not isinstance(body.get("max_tokens"), int):
            return None, self.error(ANTHROPIC, 400, "max_tokens: Field required", kind="invalid_request_error")
        return body, None

    def _messages(self, request: Request) -> Response:
        body, refusal = self._anthropic_checked(request)
        if refusal is not None:
            return refusal
        results, problem = _anthropic_tool_results(body.get("messages"))
        if problem:
            return self.error(ANTHROPIC, 400, problem, kind="invalid_request_error")
        pieces, finish = self._pieces(body, "max_tokens")
        stop_reason = "end_turn" if finish == "stop" else "max_tokens"
        call = self._tool_call(body, results)
        if call is not None:
            pieces, stop_reason = call[2], "tool_use"
        uncached = _prompt_tokens([body.get("system"), body.get("messages")])
        read, write = self.cache_read_tokens, self.cache_write_tokens
        usage = {"input_tokens": uncached, "cache_creation_input_tokens": write, "cache_read_input_tokens": read,
                 "output_tokens": len(pieces), "service_tier": "standard"}
        self._log_usage(uncached + read + write, len(pieces), read, write)
        message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                   "model": body["model"], "content": [{"type": "text", "text": "".join(pieces)}] if call is None
                   else [{"type": "tool_use", "id": call[0], "name": call[1], "input": self.tool_arguments}],
                   "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return _json(message, headers={"request-id": f"req_{uuid.uuid4().hex[:24]}"})
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        block = ({"type": "text", "text": ""} if call is None
                 else {"type": "tool_use", "id": call[0], "name": call[1], "input": {}})
        events = [("message_start", {"type": "message_start", "message": start}),
                  ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
                  ("ping", {"type": "ping"})]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": p} if call is None
                                            else {"type": "input_json_delta", "partial_json": p}}) for p in pieces]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        deltas = max(1, self.anthropic_usage_deltas)
        for i in range(1, deltas + 1):  # each one CUMULATIVE, the last one the total
            events.append(("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": stop_reason if i == deltas else None,
                                                       "stop_sequence": None},
                                             "usage": {"output_tokens": len(pieces) * i // deltas}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return self._stream(events)

    def _count_tokens(self, request: Request) -> Response:
        body, refusal = self._anthropic_checked(request, needs_max_tokens=False)
        if refusal is not None:
            return refusal
        return _json({"input_tokens": _prompt_tokens([body.get("system"), body.get("messages")])})

    def _stream(self, events: list) -> Response:
        """Server-sent events, one write each, trickled and cut as told."""
        delay, cut, hold, release = self.chunk_delay, self.disconnect_after, self.hold_after, self.release

        def generate(environ):
            for number, (name, data) in enumerate(events):
                if cut is not None and number >= cut:
                    _drop_connection(environ)
                if hold is not None and number == hold and not release.wait(10):  # the test says when
                    self.hold_expired = True  # nobody released it: the client never saw the first events
                if delay and number:
                    time.sleep(delay)
                payload = data if isinstance(data, str) else json.dumps(data)
                yield ((f"event: {name}\n" if name else "") + f"data: {payload}\n\n").encode()

        class _Streamed(Response):
            def __call__(self, environ, start_response):
                self.response = generate(environ)
                return super().__call__(environ, start_response)

        return _Streamed(None, 200, mimetype="text/event-stream",
                         headers={"cache-control": "no-cache", "x-request-id": uuid.uuid4().hex})


def _openai_tool_results(messages) -> tuple[list[str], str]:
    """The tool results of the conversation, and what is wrong with them ("" when nothing)."""
    results, calls = [], set()
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            calls = {c.get("id") for c in message.get("tool_calls") or []}
        elif message.get("role") == "tool":
            if message.get("tool_call_id") not in calls:
                return results, (f"Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                                 f"message with 'tool_calls' (messages[{index}]).")
            results.append(message["tool_call_id"])
    return results, ""


def _anthropic_tool_results(messages) -> tuple[list[str], str]:
    results, uses = [], set()
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        blocks = content if isinstance(content, list) else []
        if message.get("role") == "assistant":
            uses = {b.get("id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"}
            continue
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                if block.get("tool_use_id") not in uses:
                    return results, (f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` "
                                     "blocks. Each `tool_result` block must have a corresponding `tool_use` block "
                                     "in the previous message.")
                results.append(block["tool_use_id"])
    return results, ""


def _prompt_tokens(prompt) -> int:
    """A quarter of the prompt's characters (at least one): what the fake bills."""
    if prompt is None:
        return 0
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
    return max(1, math.ceil(len(text) / 4))


def _drop_connection(environ) -> None:
    """End the stream as a dying provider would: the socket closes with the
    chunked body unfinished (the client sees a broken stream, not an end)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionAbortedError("the fake upstream dropped the stream as told")


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers or {}, mimetype="application/json")
