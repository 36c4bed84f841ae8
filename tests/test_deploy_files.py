"""The files in deploy/ are valid for the tools that read them: systemd
(`systemd-analyze verify`), Caddy, nginx, and our own configuration."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from costguardian import config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = ("costguardian-web.service", "costguardian-worker.service")
# Read by gunicorn.conf.py, tasks/ or create_app rather than config.DEFAULTS.
OTHER_VARIABLES = {"GUNICORN_BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "GUNICORN_ACCESS_LOG",
                   "HUEY_NAME", "CG_INSTANCE_PATH", "PORT", "PROMETHEUS_MULTIPROC_DIR"}


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed here (Debian package: "
                    f"{ {'systemd-analyze': 'systemd', 'nginx': 'nginx-light'}.get(name, name)})")
    return found


def _environment_file() -> dict[str, str]:
    """The example env file as systemd reads it, commented-out settings included."""
    values = {}
    for line in (DEPLOY / "costguardian.env.example").read_text().splitlines():
        match = re.fullmatch(r"#?([A-Z][A-Z0-9_]+)=(.*)", line.strip())
        if match:
            values[match[1]] = match[2].strip().strip('"')
    return values


def test_systemd_units_verify(tmp_path):
    analyze = _tool("systemd-analyze")
    for unit in UNITS:  # pointed at this checkout, so that ExecStart's programs exist
        text = (DEPLOY / unit).read_text().replace("/opt/costguardian", str(ROOT))
        (tmp_path / unit).write_text(text)
    result = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / u) for u in UNITS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "costguardian" not in result.stderr, result.stderr  # no ignored or unknown setting either


def test_units_run_the_repository_commands_with_the_environment_file():
    web, worker = ((DEPLOY / unit).read_text() for unit in UNITS)
    for unit in (web, worker):
        assert "EnvironmentFile=/etc/costguardian/costguardian.env" in unit
        assert "User=costguardian" in unit and "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit
    assert "ExecStart=/opt/costguardian/.venv/bin/gunicorn -c gunicorn.conf.py app:app" in web
    assert re.search(r"ExecStart=/opt/costguardian/\.venv/bin/huey_consumer tasks\.huey ", worker)
    assert (ROOT / "gunicorn.conf.py").exists()


def test_the_example_environment_is_a_valid_production_configuration(tmp_path):
    values = _environment_file()
    unknown = set(values) - set(config.DEFAULTS) - OTHER_VARIABLES
    assert not unknown, f"not settings of Cost Guardian: {unknown}"
    values.update(SECRET_KEY="x" * 64, CG_ENCRYPTION_KEYS="k")  # left empty in the example, on purpose
    settings = config.from_environ(values)
    config.finalize(settings, str(tmp_path))
    assert settings["CG_ENV"] == "production" and settings["CG_TRUSTED_PROXIES"] == 1
    assert settings["CG_BASE_URL"].startswith("https://")
    assert settings["DATABASE_URL"].startswith("postgresql://") and settings["HUEY_URL"].startswith("redis://")


def test_caddyfile_is_valid(tmp_path):
    caddy = _tool("caddy")
    (tmp_path / "Caddyfile").write_text((DEPLOY / "Caddyfile").read_text())
    result = subprocess.run([caddy, "validate", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
                            capture_output=True, text=True, timeout=60,
                            env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path),
                                 "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr + result.stdout


def test_nginx_site_is_valid(tmp_path):
    nginx, openssl = _tool("nginx"), _tool("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=localhost", "-days", "1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    site = (DEPLOY / "nginx.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/costguardian.example.com/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/costguardian.example.com/privkey.pem", str(tmp_path / "key.pem"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "main.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n proxy_temp_path {tmp_path}/proxy;\n"
        f" include {tmp_path}/site.conf;\n}}\n")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                             "-c", str(tmp_path / "main.conf")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "proxy_buffering off" in site and "proxy_read_timeout 660s" in site
