#!/usr/bin/env bash
# The accelerator benchmark in one command, under an 8-minute deadline: bash benchmarks/accelerator.sh [--quick]
# Installs nothing; uses the Python of .venv when there is one, else python3 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec timeout 480 "$PY" benchmarks/accelerator.py "$@"
