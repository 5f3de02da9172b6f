# Developer entry points. `make demo` and `make test` work on a fresh machine: they create the venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test services bench clean

# Machines without an NVIDIA driver get torch's CPU wheels (no CUDA libraries: ~1 GB instead of ~6 GB).
TORCH_INDEX := $(if $(shell command -v nvidia-smi 2>/dev/null),,--index-url https://download.pytorch.org/whl/cpu)

# What the demo needs: torch, the project and matplotlib for curves.png; no test extras.
$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX) torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[plots]"
	touch $@

$(VENV)/.installed: $(VENV)/.demo-installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Main job on the embedded demo data (sslhub.data.demo_path()); resumes after Ctrl-C, reuses a finished run.
demo: $(VENV)/.demo-installed
	$(PY) scripts/demo.py

# Loopback servers and tools some tests need (nginx, moto, olah); idempotent.
services: $(VENV)/.installed
	VENV=$(VENV) bash scripts/ci_services.sh
	bash scripts/setup_olah_venv.sh

test: $(VENV)/.installed services
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) scripts/bench_load.py

clean:
	rm -rf $(VENV) build dist .pytest_cache runs
