# Two commands on a fresh clone: `make demo` and `make test`. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench report sweeps mutation clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@PY310="$$(scripts/find_python310.sh)" || exit 1; \
	  [ -x $(PY) ] || "$$PY310" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@scripts/install_data.sh
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sddpm demo --out runs/demo

# every test, the multi-process Lava ones (marked slow) and the layer check included
test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/energy_profiling.py
	$(PY) benchmarks/export_nir.py
	$(PY) benchmarks/lava_steps.py

report: $(STAMP)
	$(PY) scripts/run_notebook.py notebooks/energy_report.ipynb runs/energy_report/energy_report.ipynb

# The issue's sweeps as measured for results/ (hours on 2 CPU cores; each resumes where
# it stopped). Energy per image from 4 profiled images per row.
sweeps: $(STAMP)
	$(PY) scripts/sweep_threshold.py --n 300 --steps 20 --out runs/sweeps/threshold
	$(PY) scripts/sweep_samplers.py \
	  --samplers ddpm-1000 ddim-50 ddim-10 ddim-20 ddim-100 --n 50 --batch 50 \
	  --out runs/sweeps/samplers
	$(PY) scripts/sweep_timesteps.py --timesteps 4 8 --train-steps 500 --n 1000 \
	  --sampler-steps 20 --out runs/sweeps/timesteps-n1000

# Mutation testing (not in CI): mutmut 2 mutates the named files in place, one mutant at
# a time, runs the tests that pin them, and restores each file; `mutmut results` lists
# the survivors afterwards, `mutmut show ID` one of them.
MUTATE := export/latency.py,hardware/deployed.py,hardware/energy.py
MUTATION_TESTS := tests/export/test_latency.py tests/hardware/test_deployed.py \
                  tests/hardware/test_energy.py
mutation: $(STAMP)
	$(PY) -m pip install -q -e '.[mutation]'
	$(VENV)/bin/mutmut run --paths-to-mutate $(MUTATE) --CI --no-progress --simple-output \
	  --runner "$(PY) -m pytest -x -q -p no:cacheprovider $(MUTATION_TESTS)"
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) runs .pytest_cache .mutmut-cache html
