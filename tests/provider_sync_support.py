"""Fixtures for provider usage sync and reconciliation tests: the fake admin
APIs pointed at, a pinned clock, and an organization connected to them."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import time_machine

from tests.fakes.provider_admin_api import FakeProviderAdminAPI

NOW = datetime(2026, 12, 5, 12, 30, tzinfo=timezone.utc)


@pytest.fixture
def admin_api(app, monkeypatch):
    fake = FakeProviderAdminAPI().start()
    fake.now = int(NOW.timestamp())
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", fake.provider_base_urls())
    monkeypatch.setitem(app.config, "CG_RETRY_SCALE", 0.001)
    yield fake
    fake.stop()


@pytest.fixture
def pinned():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller
