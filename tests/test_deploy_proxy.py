"""Behind a reverse proxy (CG_TRUSTED_PROXIES=1) the client's address is the
one the proxy appended to X-Forwarded-For: it is what request.remote_addr,
the audit trail and the per-IP rate limits see. Without the setting the
header is ignored, so nobody can pick their own address."""
from __future__ import annotations

import uuid

from costguardian.models import UserSession
from tests.support import PASSWORD, Client, other_app

PROXY = "10.0.0.2"  # the reverse proxy, the only peer the app server sees


def _app(trusted: int):
    # Counters of its own on a Redis another run may share.
    return other_app(CG_TRUSTED_PROXIES=trusted, LOGIN_LIMIT_PER_IP="2 per minute",
                     RATELIMIT_KEY_PREFIX=f"cgtest-proxy-{uuid.uuid4().hex[:8]}")


def _sign_in_attempt(client, email, forwarded_for, password="wrong password!"):
    return client.post("/login", {"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": PROXY}, headers={"X-Forwarded-For": forwarded_for})


def test_behind_a_trusted_proxy_the_client_address_comes_from_x_forwarded_for(app_ctx, make_user):
    user = make_user("ivy@example.com")
    with _app(trusted=1) as app:
        # A client's own X-Forwarded-For entry is not believed: the proxy's (last) one is.
        response = _sign_in_attempt(Client(app), user.email, "6.6.6.6, 203.0.113.7", password=PASSWORD)
        assert response.status_code == 302
        assert UserSession.get(UserSession.user == user).ip == "203.0.113.7"

        # per-IP limits count each client: two attempts each from many clients pass ...
        for client_ip in ("198.51.100.1", "198.51.100.2"):
            for _ in range(2):
                assert _sign_in_attempt(Client(app), f"x-{client_ip}@example.com", client_ip).status_code == 422
        # ... and a third from one of them is limited
        assert _sign_in_attempt(Client(app), "y@example.com", "198.51.100.1").status_code == 429


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app_ctx, make_user):
    user = make_user("ivy@example.com")
    with _app(trusted=0) as app:
        assert _sign_in_attempt(Client(app), user.email, "203.0.113.7", password=PASSWORD).status_code == 302
        assert UserSession.get(UserSession.user == user).ip == PROXY

        # every client shares the proxy's address, and so its limit
        assert _sign_in_attempt(Client(app), "a@example.com", "198.51.100.1").status_code == 422
        assert _sign_in_attempt(Client(app), "b@example.com", "198.51.100.2").status_code == 429
