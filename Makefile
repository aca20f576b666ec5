# Two commands on a fresh clone: `make demo` and `make test`. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# glibc returns big freed blocks to the OS by default; keeping them makes CPU training faster
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 1000000000000

.PHONY: setup demo test bench report clean

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

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/energy_profiling.py
	$(PY) benchmarks/export_nir.py
	$(PY) benchmarks/lava_steps.py

report: $(STAMP)
	$(PY) scripts/run_notebook.py notebooks/energy_report.ipynb runs/energy_report/energy_report.ipynb

clean:
	rm -rf $(VENV) runs .pytest_cache
