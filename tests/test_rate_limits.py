"""Sign-in attempts are limited per account and per IP, with a readable 429."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import time_machine

from tests.support import PASSWORD, Client


def _attempt(client, email, password="wrong password!", ip="10.0.0.1"):
    return client.post("/login", {"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def test_failed_attempts_lock_the_account_for_a_while(client, make_user):
    make_user("ana@example.com")
    for _ in range(5):
        assert _attempt(client, "ana@example.com").status_code == 422
    response = _attempt(client, "ana@example.com", password=PASSWORD)
    assert response.status_code == 429
    html = response.get_data(as_text=True)
    assert "Too many attempts" in html and "wait a few minutes" in html
    assert "(5 per 15 minutes)" in html  # the limit in words (Flask-Limiter says "5 per 15 minute")
    assert int(response.headers["Retry-After"]) > 0
    # the limit is per account: another account from the same client still works
    make_user("bob@example.com")
    assert _attempt(client, "bob@example.com", password=PASSWORD).status_code == 302


def test_successful_sign_ins_do_not_count_against_the_account(app, make_user):
    make_user("cy@example.com")
    for _ in range(8):
        client = Client(app)
        assert _attempt(client, "cy@example.com", password=PASSWORD, ip="10.0.0.9").status_code == 302


@time_machine.travel(datetime(2026, 12, 4, 10, 0, 0, tzinfo=timezone.utc), tick=False)
def test_many_attempts_from_one_ip_are_limited_across_accounts(client, make_user):
    # The clock stands still: on a loaded machine 20 attempts may take longer than the minute.
    for i in range(20):
        assert _attempt(client, f"nobody{i}@example.com", ip="10.9.9.9").status_code == 422
    assert _attempt(client, "nobody-else@example.com", ip="10.9.9.9").status_code == 429
    assert _attempt(client, "nobody-else@example.com", ip="10.9.9.10").status_code == 422


def test_password_reset_requests_are_limited_per_account(client, make_user):
    make_user("dee@example.com")
    for _ in range(3):
        assert client.post("/forgot-password", {"email": "dee@example.com"}).status_code == 200
    assert client.post("/forgot-password", {"email": "dee@example.com"}).status_code == 429


def test_rate_limited_htmx_or_api_requests_are_not_html_pages(app, client, make_user):
    for _ in range(5):
        _attempt(client, "eve@example.com")
    response = client.post("/login", {"email": "eve@example.com", "password": "x"}, htmx=True)
    assert response.status_code == 429 and "showToast" in response.headers["HX-Trigger"]



def test_a_burst_around_the_window_edge_is_limited(client):
    """A fixed window that began with one attempt at 10:00:00 would start
    afresh at 10:01:00 and let 19 + 20 attempts through within two seconds;
    the sliding window counts the last 60 seconds whatever the clock says."""
    start = datetime(2026, 12, 4, 10, 0, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False) as traveller:
        assert _attempt(client, "edge0@example.com", ip="10.8.8.8").status_code == 422
        traveller.move_to(start + timedelta(seconds=59))
        for i in range(1, 20):
            assert _attempt(client, f"edge{i}@example.com", ip="10.8.8.8").status_code == 422
        traveller.move_to(start + timedelta(seconds=60.5))  # the first attempt has left the last minute
        assert _attempt(client, "edge20@example.com", ip="10.8.8.8").status_code == 422
        assert _attempt(client, "edge21@example.com", ip="10.8.8.8").status_code == 429
