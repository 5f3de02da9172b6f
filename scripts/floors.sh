#!/usr/bin/env bash
# The declared floors, proven: install exactly the lowest allowed version of every dependency (.ci/floors.txt)
# into a folder that shadows the venv's newer copies, then run the fast subset against them.
#
# torch and torchvision stay the venv's: a PyPI torch is a multi-GB CUDA build, too big for CI's time budget
# (`make floors-torch`, scripts/floors_torch.sh, checks their floors by hand in a venv of its own, see
# .ci/floors.txt). Everything else is installed with --no-deps at its floor.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python
FLOORS=${FLOORS_DIR:-.venv-floors}
# The fast subset: what each floor is for (checkpoint reading with its numpy allow-list, upstream layouts, timm
# configs and export, Hugging Face Hub reads, decoding, pictures). Tests that import Lightly as their reference are
# left out: Lightly pulls in torchmetrics and transformers, whose own floors are above sslhub's.
SUBSET=(
  tests/test_packaging.py::test_declared_floors_are_pinned_in_the_constraints_file
  tests/test_timm_compat.py
  tests/test_upstream_layouts.py
  tests/test_export.py --deselect tests/test_export.py::test_lightly_worker_checkpoint_is_refused_with_advice
  --deselect tests/test_export.py::test_lightly_benchmark_checkpoint_exports_the_evaluated_backbone
  tests/test_requirements.py
  tests/test_hf_hub_read.py
  tests/test_data.py --deselect tests/test_data.py::test_index_matches_torchvision_imagefolder_and_lightly
  tests/test_plots.py
)
# FLOORS_TORCH=1 (scripts/floors_torch.sh): the venv holds every pin itself, torch and torchvision included
TORCH_TOO=${FLOORS_TORCH:-0}
if [ "$TORCH_TOO" = 1 ]; then
  FLOORS=""
elif [ ! -f "$FLOORS/.installed" ] || [ .ci/floors.txt -nt "$FLOORS/.installed" ]; then
  rm -rf "$FLOORS"
  grep -Ev '^[[:space:]]*(#|$)|^(torch|torchvision)==' .ci/floors.txt > "${TMPDIR:-/tmp}/sslhub-floors.txt"
  "$PY" -m pip install -q --no-deps --target "$FLOORS" -r "${TMPDIR:-/tmp}/sslhub-floors.txt"
  touch "$FLOORS/.installed"
fi
FLOORS_TORCH=$TORCH_TOO PYTHONPATH="${FLOORS:+$FLOORS:}$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" - <<'PYEOF'
# the floors, not the venv's newer copies, are what the subset imports
import importlib.metadata as md, os, pathlib, re
pins = dict(re.match(r"([\w.-]+)==(\S+)", l).groups() for l in pathlib.Path(".ci/floors.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#"))
skip = () if os.environ["FLOORS_TORCH"] == "1" else ("torch", "torchvision")
for name, want in pins.items():
    if name in skip:
        continue
    have = md.version(name).split("+")[0]  # a local build tag (torch's +cu124) is the same release
    assert have == want, f"{name}: {have} imported, floor {want} expected"
print("floors in use:", ", ".join(f"{n}=={v}" for n, v in pins.items() if n not in skip),
      "| torch", md.version("torch"))
PYEOF
PYTHONPATH="${FLOORS:+$FLOORS:}$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest -q -p no:cacheprovider "${SUBSET[@]}" "$@"
