#!/usr/bin/env bash
# This package (R) against Python Metaflow from PyPI: a trivial foreach, N wide, at --max-workers 2.
# Usage: bench/compare_metaflow.sh [--width N] [--reps N] [--small-width N]
# or the environment: BENCH_WIDTH (default 1000), BENCH_REPS (2), BENCH_SMALL_WIDTH (100).
exec "$(dirname "$0")/with_metaflow.sh" compare_metaflow.py "$@"
