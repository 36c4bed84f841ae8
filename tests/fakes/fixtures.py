"""Session fixtures that start the local fake servers."""
from __future__ import annotations

import pytest

from tests.fakes.oidc import FakeOIDCProvider


@pytest.fixture(scope="session")
def oidc_provider():
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread() as server:
        yield FakeOIDCProvider(url=f"http://localhost:{server.server_port}")


@pytest.fixture(scope="session")
def _smtp_server_session():
    from tests.fakes.smtp import FakeSMTPServer

    server = FakeSMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(_smtp_server_session):
    """A real SMTP server on 127.0.0.1, emptied for each test (FakeSMTPServer)."""
    _smtp_server_session.clear()
    yield _smtp_server_session
    _smtp_server_session.clear()


@pytest.fixture(scope="session")
def _webhook_receiver_session():
    from tests.fakes.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def webhook_receiver(_webhook_receiver_session):
    """A real HTTP receiver on 127.0.0.1 that verifies signatures the way
    docs/API.md shows (WebhookReceiver), reset for each test."""
    _webhook_receiver_session.clear()
    yield _webhook_receiver_session
    _webhook_receiver_session.clear()


@pytest.fixture(scope="session")
def _mail_api_servers():
    from tests.fakes.mail_apis import FakeMailApi

    servers = {kind: FakeMailApi(kind).start() for kind in ("resend", "sendgrid")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def resend_api(_mail_api_servers):
    """A fake Resend API on 127.0.0.1 (FakeMailApi), emptied for each test."""
    server = _mail_api_servers["resend"]
    server.clear()
    yield server
    server.clear()


@pytest.fixture
def sendgrid_api(_mail_api_servers):
    """A fake SendGrid API on 127.0.0.1 (FakeMailApi), emptied for each test."""
    server = _mail_api_servers["sendgrid"]
    server.clear()
    yield server
    server.clear()


@pytest.fixture(scope="session")
def _llm_upstream_session():
    from tests.fakes.llm_upstream import FakeLLMUpstream

    server = FakeLLMUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def llm_upstream(_llm_upstream_session):
    """A fake of the OpenAI, Anthropic, Gemini and Azure OpenAI APIs on
    127.0.0.1 (FakeLLMUpstream), reset for each test."""
    _llm_upstream_session.clear()
    yield _llm_upstream_session
    _llm_upstream_session.clear()


@pytest.fixture(scope="session")
def _stripe_api_session():
    from tests.fakes.stripe_api import FakeStripe

    server = FakeStripe().start()
    yield server
    server.stop()


@pytest.fixture
def stripe_api(_stripe_api_session):
    """A fake Stripe API with its hosted Checkout and portal pages on
    127.0.0.1 (FakeStripe), emptied for each test."""
    _stripe_api_session.clear()
    yield _stripe_api_session
    _stripe_api_session.clear()


@pytest.fixture(scope="session")
def _dns_session():
    from tests.fakes.dns_server import FakeDNS

    server = FakeDNS().start()
    yield server
    server.stop()


@pytest.fixture
def dns_server(app, _dns_session, monkeypatch):
    """A real DNS server on 127.0.0.1 (FakeDNS) that the app's resolver asks
    (CG_DNS_NAMESERVERS), emptied for each test."""
    _dns_session.clear()
    monkeypatch.setitem(app.config, "CG_DNS_NAMESERVERS", _dns_session.nameservers)
    yield _dns_session
    _dns_session.clear()
