#!/usr/bin/env bash
# This package (R) against Python Metaflow from PyPI: a trivial foreach, N wide, at --max-workers 2.
#
# Creates bench/.venv-metaflow once (Python Metaflow, psutil and moto from PyPI; reused when present), then
# runs bench/compare_metaflow.py with that venv's python. Usage:
#   bench/compare_metaflow.sh [--width N] [--reps N] [--small-width N]
# or the environment: BENCH_WIDTH (default 1000), BENCH_REPS (2), BENCH_SMALL_WIDTH (100).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-metaflow"

# moto: bench/sfn_scale.py makes Python Metaflow's Step Functions definitions offline with it.
if ! "$venv/bin/python" -c 'import metaflow, psutil, moto' >/dev/null 2>&1; then
  echo "Creating $venv: pip install metaflow psutil moto (PyPI)"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check metaflow psutil 'moto[s3]'
fi
exec "$venv/bin/python" "$here/compare_metaflow.py" "$@"
