# Two commands on a fresh clone: `make demo` and `make test`. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast fuzz layers bench report sweeps long-train mutation clean

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
	$(PY) -m pytest -q --durations=15 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# the readers' fuzz tests at length: 1,000 generated damages to a checkpoint's bytes
# (make test tries 40) beside the table of malformed files
fuzz: $(STAMP)
	FUZZ_EXAMPLES=1000 $(PY) -m pytest -q tests/cli/test_fuzz_bytes.py tests/cli/test_fuzz_readers.py

# import-linter's contracts on the built wheel (also part of `make test`): a bare
# `lint-imports` in the checkout sees only sddpm/, since the folders join when installed
layers: $(STAMP)
	$(PY) -m pytest -q tests/test_package.py -k "layers or backward"

bench: $(STAMP)
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/energy_profiling.py
	$(PY) benchmarks/export_nir.py
	$(PY) benchmarks/lava_steps.py

report: $(STAMP)
	$(PY) scripts/run_notebook.py notebooks/energy_report.ipynb runs/energy_report/energy_report.ipynb

# The issue's sweeps as measured for results/ (hours on 2 CPU cores; each resumes where
# it stopped). The sampler frontier: fast rows at 300 images, DDPM-1000 at 200 (a second
# process may share a row: the same line with --reverse), then the table at 200 images
# per row, energy per image from 2 profiled images per row.
FAST_SAMPLERS := dpm-solver++-5 dpm-solver++-10 dpm-solver++-20 unipc-10 ddim-10 ddim-20 \
  ddim-50 ddim-100 dpm-solver++-10@0.998 \
  dpm-solver++-10@results/samplers/up-0.998.json
SWEPT := checkpoints/fmnist-small-snn.pt checkpoints/fmnist-small-ann.pt

sweeps: $(STAMP)
	$(PY) scripts/sweep_threshold.py --n 300 --steps 20 --out runs/sweeps/threshold
	$(PY) scripts/sweep_samplers.py $(SWEPT) --samplers $(FAST_SAMPLERS) --n 300 --batch 25 \
	  --sample-only --out runs/sweeps/samplers-17
	$(PY) scripts/sweep_samplers.py $(SWEPT) --samplers ddpm-1000 --n 200 --batch 25 \
	  --sample-only --out runs/sweeps/samplers-17
	$(PY) scripts/sweep_samplers.py $(SWEPT) --samplers ddpm-1000 $(FAST_SAMPLERS) --n 200 \
	  --batch 25 --profile-n 2 --bootstrap 300 --out runs/sweeps/samplers-17
	mkdir -p results/samplers-frontier && cp runs/sweeps/samplers-17/samplers.csv \
	  runs/sweeps/samplers-17/samplers.json runs/sweeps/samplers-17/samplers.md \
	  runs/sweeps/samplers-17/samplers.png \
	  runs/sweeps/samplers-17/frontier.json results/samplers-frontier/
	$(PY) scripts/sweep_timesteps.py --timesteps 4 8 --train-steps 500 --n 1000 \
	  --sampler-steps 20 --out runs/sweeps/timesteps-n1000

# Issue 18's long training of the shipped pair, the SNN and its ANN twin side by side (one
# thread each) with the same recipe, in stages, resumed from training/*/last.pt: about 25
# core-hours for the SNN at 19,000 steps on an AVX2 core, a third of that for the ANN.
# The folders are tracked: commit last.pt, losses.csv and samples/ when you stop.
LONG_STEPS := 1000 2250 4500 6750 9000 12000 15000 19000
LONG_RECIPE := --preset fmnist-small --lr 2e-3 --grad-clip 0.5 --ckpt-every 250 \
  --sample-every 2250

long-train: $(STAMP)
	@scripts/train_in_stages.sh training/fmnist-small-snn $(LONG_STEPS) -- $(LONG_RECIPE) \
	  --arch snn > training/fmnist-small-snn.log 2>&1 & snn=$$!; \
	scripts/train_in_stages.sh training/fmnist-small-ann $(LONG_STEPS) -- $(LONG_RECIPE) \
	  --arch ann > training/fmnist-small-ann.log 2>&1 & ann=$$!; \
	echo "training both nets (hours); progress in training/fmnist-small-{snn,ann}.log"; \
	wait $$snn; s=$$?; wait $$ann; a=$$?; exit $$((s | a))

# Mutation testing (not in CI): mutmut 2 mutates export/latency.py, hardware/deployed.py
# and hardware/energy.py in place, one mutant at a time, runs the tests that pin them and
# restores the file; the survivors' diffs land in runs/mutation/ (scripts/mutation.sh)
mutation: $(STAMP)
	$(PY) -m pip install -q -e '.[mutation]'
	VENV=$(VENV) scripts/mutation.sh

clean:
	rm -rf $(VENV) runs .pytest_cache .mutmut-cache html
