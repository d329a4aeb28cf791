# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALLED := $(VENV)/.installed
NPM_INSTALLED := node_modules/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_INSTALLED := $(CHECKOV_VENV)/.installed
# the Bicep parser that reads `extension` (checkov's own pin cannot)
PYCEP := pycep-parser==0.7.1
# pip's configured find-links folders may not exist on a machine; the warnings are noise.
PIP := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: deps lint typecheck infra-scan unit test test-long demo host bench reliability clean

$(PIP_INSTALLED): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

$(NPM_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_INSTALLED): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check --quiet install -r requirements-checkov.txt 2> >(grep -v "is ignored: it is neither" >&2)
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check --quiet install --no-deps "$(PYCEP)" 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

deps: $(PIP_INSTALLED) $(NPM_INSTALLED)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy .

## make infra-scan: checkov over infra/; fails on any failed check not suppressed in the file with a
## reason, and on a file it could not parse (which checkov itself would pass as "0 failed").
infra-scan: $(CHECKOV_INSTALLED)
	@out=$$($(CHECKOV_VENV)/bin/checkov --directory infra --framework bicep --compact --quiet \
		--skip-download 2>&1); status=$$?; echo "$$out"; \
	if echo "$$out" | grep -q "Parsing errors: [1-9]"; then echo "checkov could not parse infra/"; exit 1; fi; \
	if ! echo "$$out" | grep -q "Passed checks: [1-9]"; then echo "checkov checked nothing"; exit 1; fi; \
	exit $$status

## make test: ruff, mypy, checkov, then every unit, contract, infra and integration test on the local stack.
test: lint typecheck infra-scan
	$(VENV)/bin/pytest

## make test-long: the long-running suites (chaos, fuzzing) excluded from `make test`.
test-long: deps
	$(VENV)/bin/pytest -m long

## make bench: every performance row of TARGETS.md against its baseline (about 25 minutes);
## prints one table and rewrites each row's section of bench/RESULTS.md.
bench: deps
	$(PY) -m bench.run_all

## make reliability: the R-row recorders (R1 chaos with 10,000 operations, R4 fuzzing, the named
## R2-R8 tests); each rewrites its section of bench/RESULTS.md.
reliability: deps
	$(PY) -m bench.r1_chaos
	$(PY) -m bench.r4_fuzz
	$(PY) -m bench.reliability

## make demo: Azurite + the local Functions host on a demo tenant, running every built job.
demo: deps
	$(PY) -m devtools.demo

## make host: only the local Functions host against your own local.settings.json.
host: deps
	$(PY) -m devtools.funchost

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .local .pytest_cache .mypy_cache .ruff_cache
