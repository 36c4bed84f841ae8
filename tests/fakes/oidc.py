"""A real OIDC provider on localhost (oidc-provider-mock) standing in for Google."""
from __future__ import annotations

from dataclasses import dataclass

import requests


@dataclass
class FakeOIDCProvider:
    url: str

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def app_config(self) -> dict:
        return {
            "GOOGLE_CLIENT_ID": "cost-guardian-test",
            "GOOGLE_CLIENT_SECRET": "test-secret",
            "OIDC_SERVER_METADATA_URL": self.metadata_url,
        }

    def set_user(self, sub: str, **claims) -> None:
        """The claims the provider will put in this subject's ID token."""
        response = requests.put(f"{self.url}/users/{sub}", json=claims, timeout=5)
        response.raise_for_status()

    def authorize(self, authorize_url: str, sub: str) -> str:
        """Act as the user at the provider's consent form; returns the
        redirect back to the app (with code and state)."""
        response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=5)
        assert response.status_code in (302, 303), response.text
        return response.headers["Location"]
