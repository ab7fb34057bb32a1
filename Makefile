# Vocelio Webhooks developer tasks. `make run` starts everything; `make test` runs the suite.
# Recipes run in bash with -e -u -o pipefail, so any failing command stops the target.

PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

.PHONY: help venv env migrate run lint test superuser bench bench-isolation bench-analytics bench-slow bench-lane bench-ceiling

help:
	@echo "make venv       create .venv and install requirements.txt"
	@echo "make env        create .env from .env.example with a fresh SECRET_KEY"
	@echo "make migrate    apply migrations and collect static files"
	@echo "make run        start web (http://127.0.0.1:8019), worker and beat via honcho"
	@echo "make lint       ruff check . (rules in ruff.toml; .venv/bin/ruff check --fix . fixes the safe ones)"
	@echo "make test       lint, then run the test suite (PYTEST_ARGS=... to pass pytest options)"
	@echo "make superuser  create an admin user"
	@echo "make bench            the benchmark suite (bench/run.py; BENCH_ARGS=--quick for a short run)"
	@echo "make bench-isolation  only scenario 7: one hanging endpoint among ten healthy ones"
	@echo "make bench-analytics  analytics overview/trends with 1,000,000 attempts on PostgreSQL (bench/analytics.py)"
	@echo "make bench-slow       a slow endpoint's backlog with worker and beat (bench/slow_endpoint.py)"
	@echo "make bench-lane       the worker's batch loop in process, send lane vs a thread per send"
	@echo "make bench-ceiling    the web stack's ceiling: 50 closed-loop clients on /health and on publish (bench/web_ceiling.py)"

# --- virtualenv -------------------------------------------------------------------------------
venv: $(VENV)/.installed

$(VPY):
	$(PY) -m venv $(VENV)

# Stamp file: re-installs whenever requirements.txt changes.
$(VENV)/.installed: requirements.txt | $(VPY)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# --- local configuration ----------------------------------------------------------------------
env: .env

# Written to a temp file first so an interrupted run never leaves a half-made .env behind.
.env:
	cp .env.example .env.tmp
	key="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
		printf '\n# Added by `make env`\nSECRET_KEY=%s\nWEBHOOK_ALLOW_PRIVATE_NETWORKS=true\n' "$$key" >> .env.tmp
	mv .env.tmp .env
	@echo "Created .env (random SECRET_KEY, private networks allowed for local testing)."

# --- database and app -------------------------------------------------------------------------
migrate: venv env
	$(VPY) manage.py migrate --noinput
	$(VPY) manage.py collectstatic --noinput

run: venv env migrate
	mkdir -p var
	# prometheus-client's multiprocess files must be wiped before the processes start (its docs).
	rm -rf "$${PROMETHEUS_MULTIPROC_DIR:-var/prometheus}"
	$(VENV)/bin/honcho start -f Procfile

# ruff with ruff.toml, under a second: a style or lint error fails `make test` (and CI) before the suite runs.
lint: venv
	$(VPY) -m ruff check .

test: venv lint
	$(VPY) -m pytest $(PYTEST_ARGS)

superuser: venv env migrate
	$(VPY) manage.py createsuperuser

# Uses DATABASE_URL / REDIS_URL when set, else the local vocelio_bench database (dropped and
# re-created) and Redis db 9 (flushed). Prints a table; JSON results go to bench/results/.
bench: venv
	$(VPY) bench/run.py $(BENCH_ARGS)

bench-isolation: venv
	$(VPY) bench/run.py --only isolation $(BENCH_ARGS)

bench-slow: venv
	$(VPY) bench/slow_endpoint.py $(BENCH_ARGS)

# The worker's batch loop in process, send lane vs one thread per send (bench/batch_loop.py).
# PostgreSQL only; same defaults as bench: vocelio_bench dropped and re-created, Redis db 9 flushed.
bench-lane: venv
	$(VPY) bench/batch_loop.py $(BENCH_ARGS)

# What gunicorn + Django + DRF serve at most here, /health against publish, no worker (bench/web_ceiling.py).
# PostgreSQL only; same defaults as bench: vocelio_bench dropped and re-created, Redis db 9 flushed.
bench-ceiling: venv
	$(VPY) bench/web_ceiling.py $(BENCH_ARGS)

# Needs DATABASE_URL=postgres://… (seeds with COPY into a scratch <name>_bench database, dropped after).
bench-analytics: venv
	$(VPY) bench/analytics.py $(BENCH_ARGS)
