#!/usr/bin/env bash
# Install what the loopback-server tests need. Idempotent; safe to run on every CI start.
set -euo pipefail
: "${VENV:=.venv}"
