# geesoil developer entry points. `make demo` and `make test` are the README's two commands.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_out

.PHONY: setup test test-slow lint demo bench bench-compare clean
BENCH_FRESH ?= build/bench-fresh

$(BIN)/geesoil: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU wheel on local disk; a bare `torch` would pull GBs of CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/geesoil

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The README's test command: lint + the default (fast) suite.
test: setup lint
	$(BIN)/pytest -q

# Tests marked slow (real-data training, full starter-pack build); CI runs them after `make test`.
test-slow: setup
	$(BIN)/pytest -q -m slow || [ $$? -eq 5 ]  # 5: no slow tests collected

demo: setup
	$(BIN)/geesoil covariates pack --starter -o $(DEMO_DIR)/starter_pack
	$(BIN)/geesoil map --aoi assets/aois/edgeroi.geojson --covariates $(DEMO_DIR)/starter_pack --overwrite -o $(DEMO_DIR)/edgeroi_map
	@echo "demo map: $(DEMO_DIR)/edgeroi_map (soc_mean.tif, soc_p50.tif, soc_p05.tif, soc_p95.tif, quicklook.png, run.json)"

# Speed/memory benchmarks (< 15 min on 2 cores): benchmarks/results/*.json and docs/benchmarks.md.
bench: setup
	nice $(BIN)/python benchmarks/run_all.py

# A fresh benchmark run compared with the committed JSON; fails when a figure is > 20 % worse.
bench-compare: setup
	nice $(BIN)/python benchmarks/run_all.py --out-dir $(BENCH_FRESH) --no-report
	$(BIN)/python benchmarks/compare.py --fresh $(BENCH_FRESH)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
