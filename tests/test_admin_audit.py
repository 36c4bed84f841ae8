"""The console's audit log across organizations: who may read it, its
filters (actor, organization, action or prefix, UTC dates, impersonated
only), keyset pages of 50 newest first, and the streamed CSV export, which
is itself audit-logged."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime

import pytest

from costguardian.models import AuditLog
from costguardian.services.actor import Actor
from costguardian.services.platform import audit_search
from costguardian.services.team import audit
from tests.support import Client

PAGE = "/admin/audit/"
EXPORT = "/admin/audit/export.csv"


@pytest.fixture
def world(app, make_user, make_org):
    """Two organizations with a few rows each, one of them done while impersonating."""
    root = make_user("root@example.com", superadmin=True)
    support = make_user("helpdesk@example.com", platform_role="support")
    alice, bob = make_user("alice@acme.example.com"), make_user("bob@globex.example.com")
    acme, globex = make_org("Acme", owner=alice), make_org("Globex Corp", owner=bob)
    clients = {}
    for name, user in (("root", root), ("support", support), ("owner", alice)):
        clients[name] = Client(app)
        clients[name].sign_in(user.email)
    AuditLog.delete().execute()  # only the rows below
    rows = {
        "budget": audit.record(Actor(user=alice, ip="203.0.113.7"), "budget.created", org=acme, target=acme,
                               name="Q4 cap", amount_usd="100"),
        "key": audit.record(Actor(user=bob, ip="198.51.100.2"), "api_key.created", org=globex, target=globex,
                            prefix="cg_abc"),
        "acting": audit.record(Actor(user=alice, ip="192.0.2.1", impersonator=support), "impersonation.request",
                               org=acme, method="GET", path="/budgets/"),
        "started": audit.record(Actor(user=support), "impersonation.started", target=alice, reason="ticket 42"),
    }
    AuditLog.update(created_at=datetime(2026, 3, 1, 9, 30)).where(AuditLog.id == rows["budget"].id).execute()
    AuditLog.update(created_at=datetime(2026, 3, 2, 23, 59)).where(AuditLog.id == rows["key"].id).execute()
    AuditLog.update(created_at=datetime(2026, 3, 3, 0, 0)).where(AuditLog.id.in_(
        [rows["acting"].id, rows["started"].id])).execute()
    return {"rows": rows, "acme": acme, "globex": globex, "clients": clients}


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-audit="(\d+)"', html)]


def _shown(client, **args) -> list[int]:
    response = client.get(PAGE, query_string=args)
    assert response.status_code == 200, response.get_data(as_text=True)
    return _ids(response.get_data(as_text=True))


# --- who may read it -------------------------------------------------------------------

def test_anonymous_people_are_sent_to_sign_in(client):
    for url in (PAGE, EXPORT):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_organization_owners_get_403_and_support_may_read(world):
    owner, support = world["clients"]["owner"], world["clients"]["support"]
    assert owner.get(PAGE).status_code == 403 and owner.get(EXPORT).status_code == 403
    html = support.get(PAGE).get_data(as_text=True)
    assert "<h1>Audit log</h1>" in html and 'data-testid="audit-log"' in html
    assert support.get(EXPORT, buffered=True).status_code == 200


# --- the page ------------------------------------------------------------------------------

def test_every_organizations_rows_newest_first_with_both_identities(world):
    rows = world["rows"]
    response = world["clients"]["root"].get(PAGE)
    html = response.get_data(as_text=True)
    ids = _ids(html)
    assert ids == [rows["started"].id, rows["acting"].id, rows["key"].id, rows["budget"].id]
    acting = html.split(f'data-audit="{rows["acting"].id}"', 1)[1].split("</tr>", 1)[0]
    for text in ("2026-03-03 00:00:00", "Acme", "alice@acme.example.com", "<strong>helpdesk@example.com</strong>",
                 "<code>impersonation.request</code>", "&#34;method&#34;:&#34;GET&#34;", "192.0.2.1"):
        assert text in acting, text
    started = html.split(f'data-audit="{rows["started"].id}"', 1)[1].split("</tr>", 1)[0]
    assert "platform" in started and "user #" in started and "ticket 42" in started


@pytest.mark.parametrize("args, expected", [
    ({"actor": "ALICE@acme"}, ["acting", "budget"]),
    ({"actor": "helpdesk"}, ["started", "acting"]),  # who acted, or who impersonated
    ({"org": "globex"}, ["key"]),  # part of a name, any case
    ({"org": "globex-corp"}, ["key"]),  # a slug
    ({"action": "impersonation."}, ["started", "acting"]),  # a prefix
    ({"action": "impersonation*"}, ["started", "acting"]),
    ({"action": "budget.created"}, ["budget"]),  # exact
    ({"action": "budget"}, []),  # exact: no such action
    ({"date_from": "2026-03-02", "date_to": "2026-03-02"}, ["key"]),  # a UTC day, end inclusive
    ({"date_from": "2026-03-03"}, ["started", "acting"]),
    ({"date_to": "2026-03-01"}, ["budget"]),
    ({"impersonated": "1"}, ["acting"]),
    ({"org": "acme", "impersonated": "1", "actor": "alice"}, ["acting"]),
])
def test_filters(world, args, expected):
    rows = world["rows"]
    assert _shown(world["clients"]["root"], **args) == [rows[name].id for name in expected]


def test_filter_by_organization_id_and_the_read_is_logged(world):
    rows, acme = world["rows"], world["acme"]
    assert _shown(world["clients"]["support"], org=str(acme.id)) == [rows["acting"].id, rows["budget"].id]
    viewed = AuditLog.get(AuditLog.action == "platform.viewed")
    assert viewed.organization_id == acme.id and viewed.detail == {"page": "audit_log"}
    assert viewed.actor.email == "helpdesk@example.com"


def test_a_bad_date_is_422_with_the_fields_message(world):
    root = world["clients"]["root"]
    response = root.get(PAGE, query_string={"date_from": "yesterday"})
    assert response.status_code == 422 and "Enter a date as YYYY-MM-DD." in response.get_data(as_text=True)
    backwards = root.get(PAGE, query_string={"date_from": "2026-03-05", "date_to": "2026-03-01"}, htmx=True)
    html = backwards.get_data(as_text=True)
    assert backwards.status_code == 422 and 'id="audit-results"' in html and "<h1>" not in html
    assert "comes before the start date" in html


def test_keyset_pages_of_fifty(world):
    root = world["clients"]["root"]
    acme = world["acme"]
    actor = Actor(user=None, ip="10.0.0.1")
    made = [audit.record(actor, "test.bulk", org=acme, n=i).id for i in range(120)]
    html = root.get(PAGE, query_string={"action": "test.bulk"}).get_data(as_text=True)
    assert _ids(html) == made[::-1][:50]
    more = re.search(r'id="audit-more">\s*<td colspan="8"><a href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"before={made[70]}" in more and "action=test.bulk" in more
    second = root.get(more, htmx=True)
    second_html = second.get_data(as_text=True)
    assert _ids(second_html) == made[::-1][50:100] and "<table" not in second_html  # rows only
    third_url = re.search(r'hx-get="([^"]+)"', second_html).group(1).replace("&amp;", "&")
    third = root.get(third_url, htmx=True).get_data(as_text=True)
    assert _ids(third) == made[::-1][100:] and "audit-more" not in third
    # Without htmx, the same page is a full page (usable without JavaScript)
    assert "<h1>Audit log</h1>" in root.get(more).get_data(as_text=True)


def test_htmx_filtering_swaps_the_results_region(world):
    response = world["clients"]["root"].get(PAGE, query_string={"action": "api_key.created"}, htmx=True)
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith("{#") or html.lstrip().startswith("<section id=\"audit-results\"")
    assert _ids(html) == [world["rows"]["key"].id]
    assert "export.csv?action=api_key.created" in html


# --- the CSV export --------------------------------------------------------------------------

def test_the_export_streams_the_filtered_rows_in_utc_and_is_audit_logged(world):
    rows, support = world["rows"], world["clients"]["support"]
    # buffered: the test client reads the streamed body inside the request's context
    response = support.get(EXPORT, query_string={"org": "acme"}, buffered=True)
    assert response.status_code == 200
    assert "Content-Length" not in response.headers  # a generator's body, not one built in memory
    assert response.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="audit-log-\d{8}T\d{4}Z\.csv"', response.headers["Content-Disposition"])
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert table[0] == audit_search.CSV_COLUMNS and "time_utc" in table[0]
    assert [int(r[0]) for r in table[1:]] == [rows["acting"].id, rows["budget"].id]
    acting = dict(zip(table[0], table[1]))
    assert acting["time_utc"] == "2026-03-03T00:00:00Z"
    assert acting["organization"] == "Acme" and acting["organization_id"] == str(world["acme"].id)
    assert acting["actor"] == "alice@acme.example.com" and acting["impersonator"] == "helpdesk@example.com"
    assert acting["action"] == "impersonation.request" and acting["ip"] == "192.0.2.1"
    assert acting["detail"] == '{"method":"GET","path":"/budgets/"}'
    budget = dict(zip(table[0], table[2]))
    assert budget["time_utc"] == "2026-03-01T09:30:00Z" and budget["target_type"] == "organization"

    exported = AuditLog.get(AuditLog.action == "platform.audit_exported")
    assert exported.actor.email == "helpdesk@example.com" and exported.detail["filters"] == {"org": "acme"}
    assert exported.organization_id == world["acme"].id
    assert exported.id not in [int(r[0]) for r in table[1:]]  # the export's own row is not in it


def test_the_export_reads_in_keyset_chunks(world, app_ctx):
    acme = world["acme"]
    made = [audit.record(Actor(user=None), "test.bulk", org=acme, note="=HYPERLINK(1)" if i == 0 else i).id
            for i in range(25)]
    filters = audit_search.parse_filters({"action": "test.bulk"})
    pieces = list(audit_search.export_csv(filters, upto=made[-1], chunk=10))
    assert len(pieces) >= 4  # header, then one piece per chunk
    table = list(csv.reader(io.StringIO("".join(pieces))))
    assert [int(r[0]) for r in table[1:]] == made[::-1]
    assert table[-1][table[0].index("detail")] == '{"note":"=HYPERLINK(1)"}'  # JSON starts with {: inert


def test_an_empty_export_has_its_header(world):
    response = world["clients"]["root"].get(EXPORT, query_string={"action": "nothing.here"}, buffered=True)
    assert response.get_data(as_text=True).strip() == ",".join(audit_search.CSV_COLUMNS)


def test_a_bad_filter_exports_nothing(world):
    response = world["clients"]["root"].get(EXPORT, query_string={"date_to": "later"})
    assert response.status_code == 422 and not AuditLog.select().where(
        AuditLog.action == "platform.audit_exported").exists()
