# Cost Guardian: `make run` serves the app with demo data; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
DEMO_EVENTS ?= 30000
export FLASK_APP := app

.PHONY: run test test-dated setup setup-dev vendor chromium pgclient lock migrate clean

# Links in emails built by the task consumer (no request to take the host from)
# point at this server unless CG_BASE_URL says otherwise.
run: export CG_BASE_URL ?= http://127.0.0.1:$(PORT)
run: setup
	$(BIN)/flask migrate
	$(BIN)/flask seed-demo --events $(DEMO_EVENTS) --if-empty
	@echo "Cost Guardian on http://127.0.0.1:$(PORT)  (Ctrl-C stops the server and the task consumer)"
	@trap 'trap - INT TERM EXIT; kill 0' INT TERM EXIT; \
	$(BIN)/huey_consumer tasks.huey --workers 2 --worker-type thread --max-delay 1 --logfile "$${CG_INSTANCE_PATH:-instance}/huey.log" & \
	$(BIN)/gunicorn -c gunicorn.conf.py --bind 127.0.0.1:$(PORT) app:app

# The suite runs on PYTEST_WORKERS processes (pytest-xdist; 0: in this one),
# each with its own instance folder, database, queue and rate-limit keys
# (tests/conftest.py); a test file stays on one worker (--dist loadfile).
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile

test: setup-dev chromium pgclient
	rm -f .coverage .coverage.*
	$(BIN)/pytest $(PYTEST_PARALLEL) --backend=sqlite --cov --cov-report=
	@if [ -n "$$TEST_DATABASE_URL" ] || [ -n "$$TEST_REDIS_URL" ]; then \
	  $(BIN)/pytest $(PYTEST_PARALLEL) --backend=postgres --cov --cov-append --cov-report= ; \
	else echo "TEST_DATABASE_URL/TEST_REDIS_URL not set: the PostgreSQL + Redis pass is skipped"; fi
	$(BIN)/coverage report --fail-under=85

# The calendar's hard instants (local time @ zone): the tests marked `dated`
# run again at each, as if it were then (CI runs this after `make test`).
DATED_INSTANTS ?= \
  2026-12-02T10:00@UTC \
  2027-01-01T00:30@Europe/Berlin \
  2027-04-01T00:30@UTC \
  2027-04-30T23:30@America/New_York \
  2028-02-29T23:30@UTC \
  2026-12-31T23:30@America/New_York \
  2027-03-28T03:30@Europe/Berlin \
  2027-10-31T02:30@Europe/Berlin \
  2027-03-14T03:30@America/New_York \
  2027-11-07T01:30@America/New_York \
  2027-06-30T23:45@Asia/Kolkata \
  2027-02-28T23:50@Asia/Kathmandu

# Only the files that mark tests `dated` are collected (importing the whole
# suite eleven times cost about 20 s a run).
DATED_FILES = $(shell grep -rlE 'mark\.dated' tests --include='*.py' | sort)

test-dated: setup-dev
	@failed=""; for spec in $(DATED_INSTANTS); do \
	  echo "== dated run: $${spec%@*} in $${spec#*@}"; \
	  $(BIN)/pytest -q $(PYTEST_PARALLEL) -m dated --today=$${spec%@*} --tz=$${spec#*@} $(DATED_FILES) \
	    || failed="$$failed $$spec"; \
	done; \
	if [ -n "$$failed" ]; then echo "dated runs failed at:$$failed"; exit 1; fi

setup: $(VENV)/.installed static/vendor/.installed
setup-dev: $(VENV)/.installed-dev static/vendor/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	touch $@

$(VENV)/.installed-dev: requirements.lock requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock -r requirements-dev.lock
	touch $@ $(VENV)/.installed

# htmx and Pico CSS come from the npm registry, pinned in package-lock.json,
# and are served from static/vendor/ (never a CDN). axe-core (a devDependency)
# stays in node_modules/: only the browser tests read it.
vendor: static/vendor/.installed
static/vendor/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js
	cp node_modules/@picocss/pico/css/pico.jade.min.css static/vendor/pico.min.css
	cp node_modules/chart.js/dist/chart.umd.min.js static/vendor/chart.umd.min.js
	touch $@

# Browser tests use the system Chromium (CHROMIUM_PATH or /usr/bin/chromium);
# as root on Debian it is installed when missing.
chromium:
	@if [ -n "$$CHROMIUM_PATH" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); \
	else echo "no system Chromium: the browser tests fall back to Playwright's own browser"; fi

# The PostgreSQL pass's restore drill runs pg_dump / pg_restore / psql.
pgclient:
	@if [ -z "$$TEST_DATABASE_URL" ] || command -v pg_dump >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's postgresql-client for the restore drill"; \
	  (apt-get install -y -q postgresql-client >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q postgresql-client >/dev/null)); \
	else echo "no pg_dump: the PostgreSQL backup tests will fail; install the PostgreSQL client tools"; fi

# Re-pin the dependencies after editing requirements*.in.
lock: $(VENV)/.installed-dev
	$(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links --no-header --annotation-style=line -o requirements.lock requirements.in
	$(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links --no-header --annotation-style=line -o requirements-dev.lock requirements-dev.in

migrate: setup
	$(BIN)/flask migrate

clean:
	rm -rf $(VENV) node_modules static/vendor .coverage .coverage.* .pytest_cache
