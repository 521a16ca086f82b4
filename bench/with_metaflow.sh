#!/usr/bin/env bash
# Runs a benchmark of bench/ that compares this package with Python Metaflow from PyPI, with the python of
# bench/.venv-metaflow, which it creates the first time (Python Metaflow, psutil, moto and pandas; reused when
# present).
#   bench/with_metaflow.sh startup_memory.py [--reps N]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-metaflow"

# moto: bench/sfn_scale.py makes Python Metaflow's Step Functions definitions offline with it; pandas:
# bench/compare_artifacts.py stores a data frame in Python Metaflow too.
if ! "$venv/bin/python" -c 'import metaflow, psutil, moto, pandas' >/dev/null 2>&1; then
  echo "Creating $venv: pip install metaflow psutil moto pandas (PyPI)"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check metaflow psutil 'moto[s3]' pandas
fi
script="$1"
shift
exec "$venv/bin/python" "$here/$script" "$@"
