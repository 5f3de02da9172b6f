#!/usr/bin/env bash
# The torch and torchvision floors, proven: a throwaway venv outside the repository gets torch and torchvision at
# their floors from PyPI (CUDA builds: ~3 GB with their nvidia-* wheels, ~5 GB installed) and every other pin of
# .ci/floors.txt, plus the test tools the fast subset imports, then runs the subset of `make floors` there.
# Not part of .ci/run (the download alone would take a large share of CI's time budget): run it by hand with
# `make floors-torch` when a floor changes, and record the result in .ci/floors.txt.
#
# TORCH_FLOOR_VENV (default ${TMPDIR:-/tmp}/sslhub-torchfloor) is the venv; delete it when done. PYTHON is the
# interpreter it is made from (a Python the torch floor has wheels for: 3.10-3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TORCH_FLOOR_VENV:-${TMPDIR:-/tmp}/sslhub-torchfloor}
PYTHON=${PYTHON:-python3}
case "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/" in "$PWD"/*)
  echo "TORCH_FLOOR_VENV=$VENV is inside the repository; choose a folder outside it" >&2; exit 2;; esac
if [ ! -f "$VENV/.installed" ] || [ .ci/floors.txt -nt "$VENV/.installed" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  grep -Ev '^[[:space:]]*(#|$)' .ci/floors.txt > "$VENV/floors.txt"
  # PIP_CONFIG_FILE=/dev/null: a machine-wide pip configuration may constrain torch to another version (this
  # project's machines cap it at the main venv's); the pins of .ci/floors.txt are the only constraints here.
  # The Detectron2 tools: the subset's Detectron2 export and layout tests load into Detectron2's own checkpointer.
  PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip install -q --no-cache-dir -c "$VENV/floors.txt" \
    -r "$VENV/floors.txt" pytest fvcore iopath pycocotools omegaconf hydra-core cloudpickle tabulate termcolor yacs
  touch "$VENV/.installed"
fi
# every pin, torch and torchvision included, is already the venv's own: no shadowing folder
FLOORS_TORCH=1 VENV="$VENV" bash scripts/floors.sh "$@"
