# ganforge: `make demo` trains and samples on built-in data; `make test` installs and runs the test suite.
# Both create their own virtual environment in .venv (override with VENV=...).
# TORCH_SPEC picks the torch build; the default is the CPU build (see README for CUDA).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
GF := $(VENV)/bin/ganforge
DEMO_OUT ?= runs-demo

.PHONY: install test lint demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check src tests bench

test: install lint
	$(PY) -m pytest -q

# The main job: train a small DCGAN on the built-in shapes for ~2 minutes on a laptop CPU, then sample.
demo: install
	$(GF) dataset inspect shapes
	$(GF) train --data shapes --preset dcgan-32 --kimg 20 --out $(DEMO_OUT) --set run.snapshot_every_kimg=10
	$(GF) generate $$(ls -d $(DEMO_OUT)/*-shapes-dcgan-32 | tail -n1)/snapshots/latest --seeds 0-63 --grid $(DEMO_OUT)/grid.png
	$(GF) generate $$(ls -d $(DEMO_OUT)/*-shapes-dcgan-32 | tail -n1)/snapshots/latest --interpolate 0,7 --frames 40 --out $(DEMO_OUT)/walk.gif
	@echo "open $(DEMO_OUT)/grid.png and $(DEMO_OUT)/walk.gif"

bench: install
	$(PY) bench/train_speed.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
