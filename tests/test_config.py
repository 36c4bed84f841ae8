"""Settings from the environment; development secrets kept; production refuses unsafe set-ups."""
from __future__ import annotations

import pytest

from costguardian import config
from costguardian.config import ConfigError
from tests.support import other_app


def test_defaults_and_environment_overrides():
    values = config.from_environ({"DATABASE_URL": "postgresql://u@h/db", "PASSWORD_RESET_TTL_MINUTES": "15"})
    assert values["DATABASE_URL"] == "postgresql://u@h/db"
    assert values["PASSWORD_RESET_TTL_MINUTES"] == 15
    assert values["HUEY_URL"] == "sqlite:///instance/huey.db"
    assert values["OIDC_SERVER_METADATA_URL"] == config.GOOGLE_METADATA_URL
    assert values["MAIL_URL"] == "console://"


def test_bad_integer_setting_is_a_clear_error():
    with pytest.raises(ConfigError, match="PASSWORD_RESET_TTL_MINUTES must be an integer"):
        config.from_environ({"PASSWORD_RESET_TTL_MINUTES": "soon"})


def test_relative_sqlite_paths_resolve_against_the_project():
    resolved = config.resolve_sqlite_url("sqlite:///instance/costguardian.db")
    assert resolved == f"sqlite:///{config.PROJECT_ROOT}/instance/costguardian.db"
    assert config.resolve_sqlite_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert config.resolve_sqlite_url("postgresql://h/db") == "postgresql://h/db"


def test_development_generates_and_keeps_secrets(tmp_path):
    first = {"CG_ENV": "development", "SECRET_KEY": None, "CG_ENCRYPTION_KEYS": None,
             "DATABASE_URL": "sqlite:///x.db", "HUEY_URL": "sqlite:///h.db"}
    second = dict(first)
    config.finalize(first, str(tmp_path))
    config.finalize(second, str(tmp_path))
    assert first["SECRET_KEY"] and first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["CG_ENCRYPTION_KEYS"] == second["CG_ENCRYPTION_KEYS"]
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("missing", ["SECRET_KEY", "CG_ENCRYPTION_KEYS"])
def test_production_refuses_to_start_without_secrets(tmp_path, missing):
    values = {"CG_ENV": "production", "SECRET_KEY": "s" * 40, "CG_ENCRYPTION_KEYS": "k",
              "DATABASE_URL": "sqlite:///x.db", "HUEY_URL": "sqlite:///h.db", missing: None}
    with pytest.raises(ConfigError, match=missing):
        config.finalize(values, str(tmp_path))
    assert not (tmp_path / "secret_key").exists()


def test_production_cookies_and_headers_are_strict(app):  # (the suite's app: a migrated database for /login)
    with other_app(CG_ENV="production") as app:
        assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
        response = app.test_client().get("/login")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert "Secure" in response.headers["Set-Cookie"]


def test_unknown_database_scheme_is_refused():
    from costguardian.db import connect_database

    with pytest.raises(ValueError, match="DATABASE_URL must start with"):
        connect_database("mysql://root@localhost/x")


def test_unknown_queue_scheme_is_refused():
    from tasks import make_huey

    with pytest.raises(ValueError, match="HUEY_URL must start with"):
        make_huey("amqp://localhost")
