"""Server-sent events through the gateway: a provider's stream is split into
events as its bytes arrive and each event goes to the caller as soon as it is
complete (never the whole answer buffered), while a wire format's reader
(openai_wire, anthropic_wire) looks at it for usage.

An event is forwarded with its own bytes, unchanged; only a reader may hold
one back (OpenAI's usage-only chunk, which the gateway asked for and the
caller did not).
"""
from __future__ import annotations

import abc
import math
import re
import socket
from dataclasses import dataclass
from typing import Iterable, Iterator

import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from costguardian import clock

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(r"\r\n|\r|\n")  # SSE's only line ends (str.splitlines would also cut at U+2028 …)
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Event:
    raw: bytes  # exactly as the provider sent it, blank line included
    name: str | None  # the `event:` field
    data: str  # the `data:` lines, joined


def parse(raw: bytes) -> Event:
    name, data = None, []
    for line in _LINE_END.split(raw.decode("utf-8", errors="replace")):
        if not line or line.startswith(":"):  # a comment (keep-alive) or the blank end
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return Event(raw, name, "\n".join(data))


def events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Complete events, in order, as soon as each one's last byte arrived."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            boundary = _BOUNDARY.search(buffer)
            if boundary is None:
                break
            raw, buffer = buffer[:boundary.end()], buffer[boundary.end():]
            yield parse(raw)
    if buffer.strip():
        yield parse(buffer)


def chunks(response: requests.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive: each HTTP chunk of a chunked body,
    else whatever one read returns (never waiting to fill a buffer)."""
    raw = response.raw
    if raw.chunked and raw.supports_chunked_reads():
        yield from raw.read_chunked(decode_content=True)
        return
    while True:
        data = raw.read1(READ_SIZE)
        if not data:
            return
        yield data


class Reader(abc.ABC):
    """What a wire format's stream reader tells the relay. Subclasses set
    `usage` (the provider's own usage object as known so far), `final` (the
    provider's last word on usage arrived), `model`, and count the generated
    text seen (for an estimate when the stream ends early)."""

    def __init__(self):
        self.usage: dict | None = None
        self.final = False
        self.model: str | None = None
        self.output_chars = 0
        self.output_events = 0
        self.error = ""  # an error the provider reported inside the stream

    @abc.abstractmethod
    def feed(self, event: Event) -> bool:
        """Look at one event; True to forward it to the caller."""

    def relayed(self, event: Event) -> bytes:
        """What the caller gets for this event: its own bytes, nothing (held
        back), or — a translating reader (translate_streams) — the event in
        the caller's format."""
        return event.raw if self.feed(event) else b""

    def tail(self) -> bytes:
        """Events to send once the provider's stream ended (a translation's closing events)."""
        return b""

    @abc.abstractmethod
    def error_event(self, kind: str, message: str) -> bytes:
        """An event in the wire's own format telling the caller the stream broke."""

    @abc.abstractmethod
    def estimated_usage(self, input_tokens: int) -> dict:
        """A usage object in the wire's format from what was seen, when the
        provider's own never came."""

    def output_estimate(self) -> int:
        """Tokens generated so far: at least one per content event, and about
        four characters per token."""
        return max(self.output_events, math.ceil(self.output_chars / 4))

    def text_seen(self, text) -> None:
        if isinstance(text, str) and text:
            self.output_chars += len(text)
            self.output_events += 1


class Relay:
    """The caller's stream: iterating it reads the provider's stream and
    yields each event on. Ends early when the caller goes away (the generator
    is closed: `client_gone`) or the provider's stream breaks (`failure`:
    "timeout" or "disconnected", after one error event in the wire's
    format). The provider's connection is closed either way, which stops the
    generation the caller no longer reads."""

    def __init__(self, response: requests.Response, reader: Reader, started: float, capture=None):
        self.response = response
        self.reader = reader
        self.capture = capture  # request_log.Capture: what the caller got, bounded (request logging on)
        self.started = started
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.completed = False
        self.client_gone = False
        self.failure = ""
        self._generator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._generator is None:
            self._generator = self._relay()
        return self._generator

    def _relay(self) -> Iterator[bytes]:
        try:
            for event in events(chunks(self.response)):
                data = self.reader.relayed(event)
                if self.first_token_at is None and self.reader.output_events:
                    self.first_token_at = clock.monotonic()
                if data:
                    yield self._relayed(data)
            tail = self.reader.tail()
            if tail:
                yield self._relayed(tail)
            self.completed = True
        except GeneratorExit:
            self.client_gone = True
            raise
        except (ReadTimeoutError, requests.Timeout, socket.timeout):
            self.failure = "timeout"
            yield self._relayed(self.reader.error_event("timeout", "The provider stopped sending the answer "
                                                                   "(read timed out)."))
        except (ProtocolError, requests.RequestException, OSError):
            self.failure = "disconnected"
            yield self._relayed(self.reader.error_event("disconnected", "The provider closed the connection "
                                                                        "before the answer was complete."))
        finally:
            self.ended_at = clock.monotonic()
            self.response.close()

    def _relayed(self, data: bytes) -> bytes:
        if self.capture is not None:
            self.capture.append(data)
        return data

    def close(self) -> None:
        """Stop relaying (the server calls this when the answer is over or the
        caller went away); idempotent."""
        if self._generator is not None:
            self._generator.close()  # at a yield: the caller left mid-stream
        if self.ended_at is None:
            self.ended_at = clock.monotonic()
        self.response.close()

    @property
    def latency_ms(self) -> int:
        return int(((self.ended_at or clock.monotonic()) - self.started) * 1000)

    @property
    def ttft_ms(self) -> int | None:
        return None if self.first_token_at is None else int((self.first_token_at - self.started) * 1000)
