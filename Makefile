# Two entry points: `make run` (demo on SQLite) and `make test` (whole suite).
# Every target creates what it needs, so both work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/static/vendor/.copied: node_modules/.installed tools/vendor.sh web/static/js/modeler-entry.js
	sh tools/vendor.sh
	touch $@

setup: $(VENV)/.installed node_modules/.installed web/static/vendor/.copied

run: setup
	$(PY) -m motor.demo

test: setup
	sh tools/ensure-chromium.sh
	$(VENV)/bin/pytest

bench: setup
	$(PY) bench/engine.py
	$(PY) bench/queue.py
	$(PY) bench/replay.py

clean:
	rm -rf $(VENV) node_modules web/static/vendor instance
