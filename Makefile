# Rollcall — `make demo` runs everything on embedded defaults; `make test` runs every test.
# pytest's exit code 5 (no tests collected) fails `make test` like any other non-zero code.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
# pytest-xdist processes for `make test`: the tests mostly wait on brokers, databases,
# browsers and daemons, so two halve the run on a 2-core machine.
TEST_PROCESSES ?= 2

.PHONY: demo test lint typecheck unit clean system-deps-demo system-deps-test translations screenshots

demo: system-deps-demo $(VENV)/.demo-installed
	$(BIN)/rollcall demo $(DEMO_ARGS)

test: system-deps-test $(VENV)/.test-installed lint typecheck
	pg_url=$$(sh scripts/ensure-postgres.sh) && \
	ROLLCALL_TEST_PG_ADMIN_URL=$$pg_url $(BIN)/pytest -p no:cacheprovider \
		-n $(TEST_PROCESSES) $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

unit: $(VENV)/.test-installed
	$(BIN)/pytest tests/unit tests/contract -q

# The console's catalogs: extract messages, update zh_CN and en .po files, compile the .mo files.
translations: $(VENV)/.test-installed
	$(BIN)/python scripts/translations.py --check

# docs/screenshots/*.png of the console's main pages, from the demo's sample data.
screenshots: $(VENV)/.test-installed
	$(BIN)/python scripts/screenshots.py

system-deps-demo:
	sh scripts/install-system-deps.sh demo

system-deps-test:
	sh scripts/install-system-deps.sh test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The demo needs only the server and a simulated reader: no pyscard build.
$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[server,reader-sim]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[server,reader,dev]"
	touch $@ $(VENV)/.demo-installed

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache data
