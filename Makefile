# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed
# The second pass of `make test` runs on the scale-out parts (.ci/run starts both services).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test install lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Every process of the Procfile (web: Daphne; worker: the task worker sending webhooks; clock:
# the daily housekeeping, manage.py maintenance), started and stopped together by honcho (Ctrl-C
# stops them all). -p: honcho gives the first process (web) $PORT and the next ones +100, +200.
run: install
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py bootstrap
	@# Metrics of an earlier run must not add to this one's (docs/observability.md).
	if [ -n "$$PROMETHEUS_MULTIPROC_DIR" ]; then \
		rm -rf "$$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"; fi
	DEBUG=$${DEBUG-1} HOST=$(HOST) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -p $(PORT)

# 1. lint, and the chat script's unit tests (Node's built-in runner); 2. the whole suite on SQLite
# + the in-memory layer (with the real-browser tests and the two-process tests on PostgreSQL +
# Redis); 3. again on PostgreSQL + Redis, the tests that reach the database (DB_TESTS_ONLY,
# tests/conftest.py), less what runs the same in both (`process`:
# a real process on its own SQLite file).
test: install
	$(BIN)/ruff check .
	node --test static/chat/tests/
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	DB_TESTS_ONLY=1 DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CONN_MAX_AGE=0 \
		$(BIN)/python -m pytest -q -m "not browser and not scaleout and not process" $(PYTEST_ARGS)

# The relay benchmark (docs/performance.md): ~6 minutes, needs PostgreSQL and Redis.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) db.sqlite3
