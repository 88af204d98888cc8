# toyrepro — `make demo` runs the gpt experiment, `make test` the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,real
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-slow bench bench-scorecard lint clean

setup: $(VENV)/.installed-$(EXTRAS)

$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/toyrepro experiment=gpt scale=quick

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench:
	$(MAKE) setup EXTRAS=dev,real,bench
	$(BIN)/python benchmarks/run_all.py

bench-scorecard: setup  # ~50 min on 2 CPU cores: every experiment at scale=quick, from an empty cache
	$(BIN)/python benchmarks/time_to_scorecard.py

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf runs multirun .cache/toyrepro
