#!/usr/bin/env bash
# ParameterFlow in production, offline: start the AWS emulator, deploy the seed's flow with
# step-functions create, trigger it with --alpha 0.5, and read the artifact back with the Client API
# in the production namespace. Run from the repository root (make demo-sfn).
set -euo pipefail
repo=$(pwd)
work=$(mktemp -d)
"$repo/.venv/bin/metaflow-r" emulator --port 0 --env-file "$work/aws.env" > "$work/emulator.log" 2>&1 &
emulator=$!
trap 'kill "$emulator" 2>/dev/null; wait "$emulator" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 600); do [ -f "$work/aws.env" ] && break; sleep 0.1; done
[ -f "$work/aws.env" ] || { cat "$work/emulator.log"; exit 1; }
# shellcheck disable=SC1091
. "$work/aws.env"
cp "$repo/examples/parameter_flow.R" "$work/"
cd "$work"
Rscript parameter_flow.R --with retry step-functions create | tee create.log
namespace=$(sed -n 's/^Its runs are in namespace \(.*\)\.$/\1/p' create.log)
Rscript parameter_flow.R step-functions trigger --alpha 0.5 --run-id demo-run --wait
Rscript parameter_flow.R step-functions logs demo-run/end
Rscript -e "library(metaflow); set_namespace('$namespace'); run <- run_client\$new('ParameterFlow/demo-run'); cat('Client API, namespace', get_namespace(), ': alpha =', run\$artifact('alpha'), '\n')"
