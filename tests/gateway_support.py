"""Fixtures for the gateway tests: the session app on a real port (streams
need a real socket), an organization with OpenAI and Anthropic keys in its
vault pointing at the fake upstream (tests/fakes/llm_upstream.py), a
gateway key, and a way to wait for the recording that happens after each
answer was sent.

    from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass

import pytest

from costguardian.models import GatewayRequest, UsageEvent
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.gateway import vault
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY


@pytest.fixture(scope="session")
def gateway_server(app):
    """The session app on http://127.0.0.1:<free port>."""
    from tests.support import serving

    with serving(app, "gateway-live-server") as url:
        yield url


class Recordings:
    """Counts gateway calls whose answer was sent (`sent`) and whose recording
    finished (`finished`), so a test waits for the recording that follows
    each answer instead of sleeping, and no recording outlives its test."""

    def __init__(self):
        self.sent = 0
        self.finished = 0
        self.condition = threading.Condition()

    def install(self, views, monkeypatch) -> None:
        recordings, after_send = self, views._after_send

        class Counted(views._AfterSend):
            def __init__(self, app, finish):
                super().__init__(app, finish)
                with recordings.condition:
                    recordings.sent += 1

        def counted(app, finish):
            try:
                after_send(app, finish)
            finally:
                with recordings.condition:
                    recordings.finished += 1
                    recordings.condition.notify_all()

        monkeypatch.setattr(views, "_AfterSend", Counted)
        monkeypatch.setattr(views, "_after_send", counted)

    def wait(self, count: int, timeout: float = 10.0) -> None:
        with self.condition:
            assert self.condition.wait_for(lambda: self.finished >= count, timeout), \
                f"{self.finished} of {count} gateway calls recorded"

    def wait_idle(self, timeout: float = 10.0) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.finished >= self.sent, timeout)


@dataclass
class Gateway:
    url: str
    org: object
    owner: object
    key: str  # the gateway key's plaintext
    api_key: object
    upstream: object  # FakeLLMUpstream
    recordings: Recordings

    def openai(self, key: str | None = None, **options):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or self.key,
                             **{"max_retries": 0, **options})

    def anthropic(self, key: str | None = None, **options):
        import anthropic

        return anthropic.Anthropic(base_url=self.url + "/anthropic", api_key=key or self.key,
                                   **{"max_retries": 0, **options})

    def async_openai(self, **options):
        import openai

        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, **{"max_retries": 0, **options})

    def async_anthropic(self, **options):
        import anthropic

        return anthropic.AsyncAnthropic(base_url=self.url + "/anthropic", api_key=self.key,
                                        **{"max_retries": 0, **options})

    def events(self, count: int) -> list:
        """The organization's usage events, once `count` calls were recorded."""
        self.recordings.wait(count)
        return list(UsageEvent.in_org(self.org).order_by(UsageEvent.id))

    def calls(self, count: int) -> list:
        """The request log, once `count` calls were recorded."""
        self.recordings.wait(count)
        return list(GatewayRequest.in_org(self.org).order_by(GatewayRequest.id))

    def new_key(self, name: str = "another", scopes=("gateway",), **options) -> str:
        return keys.create_key(self.org, Actor(user=self.owner), name, list(scopes), **options).plaintext


def run_async(coroutine):
    """asyncio in a thread of its own: the browser tests' sync Playwright
    leaves an event loop running on the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def gateway(app, gateway_server, llm_upstream, make_user, make_org, monkeypatch):
    from costguardian.views import gateway as gateway_views

    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    recordings = Recordings()
    recordings.install(gateway_views, monkeypatch)
    owner = make_user("olga@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    actor = Actor(user=owner)
    vault.add(org, actor, "openai", "Production", OPENAI_KEY)
    vault.add(org, actor, "anthropic", "Production", ANTHROPIC_KEY)
    created = keys.create_key(org, actor, "gateway", ["gateway"])
    llm_upstream.requests.clear()
    yield Gateway(gateway_server, org, owner, created.plaintext, created.key, llm_upstream, recordings)
    recordings.wait_idle()
