# Every target sets up what it needs: a fresh Debian machine runs `make demo` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup prometheus demo test lint golden rules bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# Debian's Prometheus 2.42, promtool and Alertmanager, for the tests that use the real thing.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus prometheus-alertmanager; }

DEMO_EVENTS ?= $(or $(TMPDIR),/tmp)/slo-engine-demo-events.csv

demo: setup
	$(BIN)/slo-engine validate slo_definitions
	$(BIN)/slo-engine compile slo_definitions --out rules_out
	$(BIN)/slo-engine explain slo_definitions
	$(BIN)/slo-engine sample-data slo_definitions --out $(DEMO_EVENTS)
	$(BIN)/slo-engine report slo_definitions --data $(DEMO_EVENTS)
	$(BIN)/slo-engine backtest slo_definitions --data $(DEMO_EVENTS) --since 7d

test: setup prometheus
	$(BIN)/slo-engine compile slo_definitions --out rules_out --check
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check slo_engine tests bench
	$(BIN)/mypy --strict slo_engine

# Regenerate the committed artifacts (review them as diffs): rules_out/, the schema, tests/golden/.
golden: setup
	$(BIN)/slo-engine compile slo_definitions --out rules_out
	$(BIN)/slo-engine schema > slo-engine.schema.json
	$(BIN)/pytest -q tests/test_golden.py --update-golden

bench: setup prometheus
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
