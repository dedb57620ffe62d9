# Every target sets up what it needs: a fresh Debian machine runs `make demo` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup prometheus servers demo demo-prometheus ui test lint docs golden rules bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,docs]"
	touch $@

# Debian's Prometheus 2.42, promtool and Alertmanager, for the tests that use the real thing.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus prometheus-alertmanager; }

# Every server the tests start, from Debian: Prometheus and Alertmanager, PostgreSQL (the
# shared state of replicas), VictoriaMetrics with vmalert, and Chromium (the web view's tests).
servers: prometheus
	@missing=""; \
	  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  [ -x /usr/bin/victoria-metrics ] || missing="$$missing victoria-metrics"; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -z "$$missing" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; }

# The demo's month of events for the example SLOs ends at DEMO_UNTIL (fixed, so the output
# is the same on every run); everything it writes goes to DEMO_OUT.
DEMO_OUT ?= demo_out
DEMO_UNTIL ?= 2026-05-31T12:00:00Z

# No server needed: validate and compile the SLOs, generate 30 days of events and changes
# (two deploy-caused incidents, a slow burn), print the report and write the charts, the
# backtest (from day 4: the first 3 days only fill the 3d alert window), the incidents with
# the change before each, and the Slack page the worst of them would have sent (dry run).
demo: setup
	$(BIN)/slo-engine validate slo_definitions
	$(BIN)/slo-engine compile slo_definitions --out $(DEMO_OUT)/rules
	$(BIN)/slo-engine explain slo_definitions
	$(BIN)/slo-engine sample-data slo_definitions --until $(DEMO_UNTIL) \
	  --out $(DEMO_OUT)/events.csv --changes $(DEMO_OUT)/changes.jsonl
	$(BIN)/slo-engine report slo_definitions --data $(DEMO_OUT)/events.csv --at $(DEMO_UNTIL) \
	  --chart $(DEMO_OUT)/charts --changes $(DEMO_OUT)/changes.jsonl
	$(BIN)/slo-engine backtest slo_definitions --data $(DEMO_OUT)/events.csv \
	  --until $(DEMO_UNTIL) --since 27d
	$(BIN)/slo-engine incidents slo_definitions --data $(DEMO_OUT)/events.csv \
	  --until $(DEMO_UNTIL) --since 27d --changes $(DEMO_OUT)/changes.jsonl \
	  --state $(DEMO_OUT)/state.db
	$(BIN)/slo-engine incidents slo_definitions --data $(DEMO_OUT)/events.csv \
	  --until $(DEMO_UNTIL) --since 27d --changes $(DEMO_OUT)/changes.jsonl \
	  --state $(DEMO_OUT)/state.db --page worst

# The same against a real Prometheus (Debian's, installed if missing) holding the month as
# the recorded series the generated rules write: started on a free port, stopped by PID.
demo-prometheus: setup prometheus
	$(BIN)/slo-engine validate slo_definitions
	$(BIN)/slo-engine compile slo_definitions --out $(DEMO_OUT)/rules
	$(BIN)/slo-engine demo-prometheus slo_definitions --until $(DEMO_UNTIL) \
	  --out $(DEMO_OUT)/prometheus

# The web view over the demo's month (events and changes as `make demo` writes them), on
# http://127.0.0.1:8080/ until Ctrl-C.
ui: setup
	$(BIN)/slo-engine sample-data slo_definitions --until $(DEMO_UNTIL) \
	  --out $(DEMO_OUT)/events.csv --changes $(DEMO_OUT)/changes.jsonl
	$(BIN)/slo-engine ui slo_definitions --data $(DEMO_OUT)/events.csv \
	  --changes $(DEMO_OUT)/changes.jsonl --at $(DEMO_UNTIL) --listen 127.0.0.1:8080

# Two workers, each test file on one (a file's servers are shared by its tests): most of the
# time goes to end-to-end tests waiting on real servers, not to the cores.
test: setup servers
	$(BIN)/slo-engine compile slo_definitions --out rules_out --check
	$(BIN)/pytest -q -n 2 --dist loadfile

# ruff, mypy, and the import rules of pyproject.toml (stages import only earlier stages; the
# pure core does no I/O).
lint: setup
	$(BIN)/ruff check slo_engine tests bench
	$(BIN)/mypy --strict slo_engine
	$(BIN)/lint-imports

# The documentation site (mkdocs.yml, docs/) into site/; --strict turns every warning, a broken
# link or anchor included, into a failure. Builds offline: no web fonts, no plugin that fetches.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Regenerate the committed artifacts (review them as diffs): rules_out/, the schema,
# tests/golden/, and the README's chart (docs/burn-down.png, from the demo's month).
golden: setup
	$(BIN)/slo-engine compile slo_definitions --out rules_out
	$(BIN)/slo-engine schema > slo-engine.schema.json
	$(BIN)/pytest -q tests/test_golden.py --update-golden
	$(BIN)/slo-engine sample-data slo_definitions --until $(DEMO_UNTIL) \
	  --out $(DEMO_OUT)/events.csv --changes $(DEMO_OUT)/changes.jsonl
	$(BIN)/slo-engine report slo_definitions --data $(DEMO_OUT)/events.csv --at $(DEMO_UNTIL) \
	  --chart $(DEMO_OUT)/charts --changes $(DEMO_OUT)/changes.jsonl > /dev/null
	cp $(DEMO_OUT)/charts/burn-down--api--api-latency.png docs/burn-down.png
	SLO_ENGINE_SCREENSHOTS=docs/img $(BIN)/pytest -q tests/test_web_browser.py -k screenshots

bench: setup prometheus
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
