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
