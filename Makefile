# ganforge: `make demo` trains and samples on built-in data; `make test` installs and runs the test suite.
# Both create their own virtual environment in .venv (override with VENV=...).
# TORCH_SPEC picks the torch build; the default is the CPU build (see README for CUDA).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
GF := $(VENV)/bin/ganforge
DEMO_OUT ?= runs-demo

.PHONY: install test lint demo bench bench-quality clean

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

# The main job: train a small ResNet SNGAN on the built-in shapes for ~3 minutes on a laptop CPU, then sample.
DEMO_TRAIN = --data shapes --preset sngan-32 --batch 32 --kimg 24 --set model.g_width=32 --set model.d_width=32 \
	--set model.max_width=128 --set run.snapshot_every_kimg=8 --set run.sample_every_kimg=4
demo: install
	$(GF) dataset inspect shapes
	$(GF) train $(DEMO_TRAIN) --out $(DEMO_OUT)
	$(GF) generate $$(ls -d $(DEMO_OUT)/*-shapes-sngan-32 | tail -n1)/snapshots/latest --seeds 0-63 --grid $(DEMO_OUT)/grid.png
	$(GF) generate $$(ls -d $(DEMO_OUT)/*-shapes-sngan-32 | tail -n1)/snapshots/latest --interpolate 0,7 --frames 40 --out $(DEMO_OUT)/walk.gif
	@echo "open $(DEMO_OUT)/grid.png and $(DEMO_OUT)/walk.gif"

# The studio (docs/studio.md): a local web app on http://127.0.0.1:$(STUDIO_PORT)/ with the built-in datasets and
# shipped models; its datasets, runs and job database live in $(STUDIO_DIR). Ctrl-C stops it (jobs checkpoint first).
STUDIO_DIR ?= .studio
STUDIO_PORT ?= 8000
.PHONY: studio
studio: install
	$(GF) studio --data-dir $(STUDIO_DIR) --port $(STUDIO_PORT)

# Speed and startup (a few minutes). Keep the machine otherwise idle; results go to bench/results/*.json.
bench: install
	$(PY) bench/startup.py
	$(PY) bench/train_speed.py --kimg 6.4

# Fashion-MNIST quality under a 15-minute CPU budget per model (about 40 minutes; needs the Fashion-MNIST files).
bench-quality: install
	$(PY) bench/quality_fmnist.py train dcgan --minutes 15
	$(PY) bench/quality_fmnist.py train sngan-cond --minutes 15
	$(PY) bench/quality_fmnist.py floors

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
