# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALLED := $(VENV)/.installed
NPM_INSTALLED := node_modules/.installed
# pip's configured find-links folders may not exist on a machine; the warnings are noise.
PIP := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: deps lint typecheck unit test test-long demo host clean

$(PIP_INSTALLED): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

$(NPM_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(PIP_INSTALLED) $(NPM_INSTALLED)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy .

## make test: ruff, mypy, then every unit, contract and integration test on the local stack.
test: lint typecheck
	$(VENV)/bin/pytest

## make test-long: the long-running suites (chaos, fuzzing) excluded from `make test`.
test-long: deps
	$(VENV)/bin/pytest -m long

## make demo: Azurite + the local Functions host on a demo tenant, running every built job.
demo: deps
	$(PY) -m devtools.demo

## make host: only the local Functions host against your own local.settings.json.
host: deps
	$(PY) -m devtools.funchost

clean:
	rm -rf $(VENV) node_modules .local .pytest_cache .mypy_cache .ruff_cache
