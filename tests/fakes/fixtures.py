"""Session fixtures that start the local fake servers."""
from __future__ import annotations

import pytest

from tests.fakes.oidc import FakeOIDCProvider


@pytest.fixture(scope="session")
def oidc_provider():
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread() as server:
        yield FakeOIDCProvider(url=f"http://localhost:{server.server_port}")
