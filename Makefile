# Developer entry points. `make demo` and `make test` work on a fresh machine: they create the venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test test-gpu services bench docs floors floors-torch clean

# What the demo needs: torch and the project (matplotlib included); no test or docs tools. torch comes from pip's
# configured index (on this project's machines a local wheel; a CPU-only index can be set with PIP_INDEX_URL).
$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e .
	touch $@

# Test and docs tools are PEP 735 dependency groups (`--group`, pip >= 25.1), not extras published to users.
$(VENV)/.installed: $(VENV)/.demo-installed
	$(PY) -m pip install -q -e . --group dev
	touch $@

# Main job on the embedded demo data (sslhub.data.demo_path()); resumes after Ctrl-C, reuses a finished run.
demo: $(VENV)/.demo-installed
	$(PY) scripts/demo.py

# Loopback servers and tools some tests need (nginx, moto, olah); idempotent.
services: $(VENV)/.installed
	VENV=$(VENV) bash scripts/ci_services.sh
	bash scripts/setup_olah_venv.sh

# Two pytest-xdist workers, a test file each at a time (--dist loadfile: a module's fixtures and servers stay in one
# process): 463 s against 932 s in one process on a 2-core machine, as most tests wait on subprocesses and servers.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed services
	$(PY) -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# The GPU-only tests (skipped by `make test`); on a machine with a CUDA device, which they refuse to run without.
test-gpu: $(VENV)/.installed
	$(PY) -m pytest -q -m gpu

bench: $(VENV)/.installed
	$(PY) scripts/bench_load.py

# The documentation site (MkDocs Material + mkdocstrings), strict: a broken reference fails the build.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# The declared floors: every dependency but torch/torchvision at exactly its floor (.ci/floors.txt, installed into
# .venv-floors, which shadows the venv's copies) runs the fast subset.
floors: $(VENV)/.installed services
	VENV=$(VENV) bash scripts/floors.sh

# The torch and torchvision floors as well (scripts/floors_torch.sh): a throwaway venv outside the repository
# (TORCH_FLOOR_VENV, default ${TMPDIR:-/tmp}/sslhub-torchfloor) with the PyPI builds, ~3 GB to download. By hand,
# not in .ci/run (CI's time budget); .ci/floors.txt records the last result and its commands.
floors-torch: services
	PYTHON=$(PYTHON) bash scripts/floors_torch.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache runs site .venv-floors
