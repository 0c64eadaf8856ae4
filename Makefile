# Two commands on a fresh machine with Python 3.11 and pip: `make run`, then `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test gates bench check clean

# One install step for everything; constraints.txt pins every package (and keys CI's cache).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## run: train, gate and promote on the bundled data and the embedded MLflow store
run: $(STAMP)
	$(BIN)/run-pipeline run

## test: the whole suite (tests/ and the gates in model_tests/); no test collected is a failure
test: $(STAMP)
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no test" >&2; exit 1; fi; exit $$rc

## gates: only the gates, against the in-process model, JUnit XML in reports/
gates: $(STAMP)
	$(BIN)/python -m pytest model_tests -m gates --junitxml=reports/gates.xml

## check: environment readiness
check: $(STAMP)
	$(BIN)/run-pipeline check

clean:
	rm -rf mlruns reports .pytest_cache .hypothesis .benchmarks
