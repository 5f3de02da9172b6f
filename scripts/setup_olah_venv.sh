#!/usr/bin/env bash
# Create the virtual environment with the olah Hugging Face mirror that tests/test_hf_hub.py starts on loopback.
# olah pins its own web stack (fastapi, pydantic, its own huggingface_hub), so it lives apart from the project's
# environment. Idempotent. Location: $SSLHUB_OLAH_VENV, default /tmp/sslhub-olah-venv.
set -euo pipefail
VENV="${SSLHUB_OLAH_VENV:-/tmp/sslhub-olah-venv}"
PYTHON="${PYTHON:-python3}"
OLAH_VERSION="${OLAH_VERSION:-0.5.4}"
if [ -x "$VENV/bin/olah-cli" ] && "$VENV/bin/python" -c "import olah" 2>/dev/null; then
    echo "olah venv ready: $VENV"
    exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "olah==${OLAH_VERSION}"
"$VENV/bin/python" -c "import olah" && echo "olah venv ready: $VENV"
