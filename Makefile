# Fieldwatch: `make run` serves the demo from nothing; `make test` runs the tests.
# Without DATABASE_URL both start (or reuse) an embedded PostgreSQL under .data/; `make stop` stops it.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 0.0.0.0
SIMULATE_RATE ?= 2

.PHONY: run test lint venv db migrate seed stop vendor bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# The embedded server only when no DATABASE_URL names one.
db: venv
	@if [ -z "$$DATABASE_URL" ]; then $(PY) -m portal.embedded_db start >/dev/null && echo "embedded PostgreSQL running (.data/pg)"; fi

migrate: db
	$(PY) manage.py migrate --noinput -v0

seed: migrate
	$(PY) manage.py seed_demo

run: export DEBUG ?= 1
run: seed
	@echo
	@echo "Fieldwatch is starting:"
	@echo "  public site and console  http://localhost:$(PORT)/"
	@echo "  tenant acme              http://acme.localhost:$(PORT)/"
	@echo "  tenant globex            http://globex.localhost:$(PORT)/"
	@echo "Demo logins (also in .data/demo-logins.txt):"
	@sed 's/^/  /' .data/demo-logins.txt 2>/dev/null || true
	@echo "Ctrl-C stops everything; 'make stop' also stops the embedded database."
	@echo
	@trap 'kill 0' INT TERM EXIT; \
	if ! $(PY) -m bridge.embedded_broker check; then \
	  echo "no MQTT broker at $${MQTT_URL:-mqtt://127.0.0.1:1883}: starting the embedded one (MQTT 3.1.1)"; \
	  $(PY) -m bridge.embedded_broker serve & \
	  export MQTT_PROTOCOL=3.1.1; sleep 1; \
	fi; \
	$(PY) manage.py run_huey & \
	$(PY) manage.py bridge & \
	$(PY) manage.py simulate --rate $(SIMULATE_RATE) --duration 86400 --web http://127.0.0.1:$(PORT) & \
	$(PY) manage.py runserver $(HOST):$(PORT) & \
	wait

# Production-like settings for `check --deploy`: DEBUG off, a real secret, secure cookies.
DEPLOY_ENV := DEBUG=0 SECRET_KEY=lint-$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	SECURE_COOKIES=1 SECURE_SSL_REDIRECT=1 FIELDWATCH_TESTING=0

lint: db
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run
	DEBUG=1 $(PY) manage.py check --fail-level WARNING
	$(DEPLOY_ENV) $(PY) manage.py check --deploy --fail-level WARNING
	DEBUG=1 $(PY) manage.py check_templates

# The whole suite with line and branch coverage (configured in pyproject.toml, subprocesses
# included); it fails under the floor there, and the last lines print the figure.
test: lint
	rm -f .coverage .coverage.*
	$(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

stop:
	@test -x $(PY) && $(PY) -m portal.embedded_db stop || true

vendor:
	npm ci && npm run vendor

clean: stop
	rm -rf .data staticfiles
