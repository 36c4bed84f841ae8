"""Test helpers: factories, a CSRF-aware test client, database reset."""
from __future__ import annotations

import re

from peewee import PostgresqlDatabase, sort_models

from costguardian.extensions import db
from costguardian.models import ALL_MODELS, User
from costguardian.services import accounts, orgs
from costguardian.services.actor import Actor

PASSWORD = "correct horse battery staple"
SYSTEM = Actor.system()


def make_user(email: str = "user@example.test", password: str = PASSWORD, name: str = "",
              superadmin: bool = False) -> User:
    user = accounts.sign_up(email, name, password, SYSTEM)
    if superadmin:
        user.is_superadmin = True
        user.save()
    return user


def make_org(name: str = "Acme", owner: User | None = None, time_zone: str = "UTC"):
    owner = owner or make_user(f"owner-{name.lower().replace(' ', '-')}@example.test")
    return orgs.create_organization(name, owner, SYSTEM, time_zone=time_zone)


def add_member(org, user: User, role: str):
    return orgs.add_member(org, user, role, SYSTEM)


def reset_schema(database) -> None:
    """Start the session from an empty database."""
    with database.connection_context():
        if isinstance(database, PostgresqlDatabase):
            database.execute_sql("DROP SCHEMA public CASCADE")
            database.execute_sql("CREATE SCHEMA public")
        else:
            for table in database.get_tables():
                database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')


def empty_tables() -> None:
    """Delete every row the test wrote (the schema stays)."""
    with db.connection_context():
        if isinstance(db.obj, PostgresqlDatabase):
            names = ", ".join(f'"{m._meta.table_name}"' for m in ALL_MODELS)
            db.execute_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        else:
            for model in reversed(sort_models(ALL_MODELS)):
                model.delete().execute()


_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


class Client:
    """Flask's test client that fetches and sends the CSRF token like a browser."""

    def __init__(self, app):
        self.app = app
        self.http = app.test_client()
        self._token = None

    def csrf_token(self) -> str:
        if self._token is None:
            page = self.http.get("/login" if not self._signed_in() else "/account/")
            self._token = _CSRF.search(page.get_data(as_text=True)).group(1)
        return self._token

    def _signed_in(self) -> bool:
        with self.http.session_transaction() as session:
            return "_user_id" in session

    def get(self, url, htmx: bool = False, **kwargs):
        headers = kwargs.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        return self.http.get(url, headers=headers, **kwargs)

    def post(self, url, data=None, htmx: bool = False, csrf: bool = True, **kwargs):
        headers = kwargs.pop("headers", {})
        data = dict(data or {})
        if htmx:
            headers["HX-Request"] = "true"
            if csrf:
                headers["X-CSRFToken"] = self.csrf_token()
        elif csrf:
            data.setdefault("csrf_token", self.csrf_token())
        return self.http.post(url, data=data, headers=headers, **kwargs)

    def sign_in(self, email: str, password: str = PASSWORD):
        response = self.post("/login", {"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        self._token = None  # the session was renewed at sign-in
        return response

    def sign_out(self):
        response = self.post("/logout")
        self._token = None
        return response
