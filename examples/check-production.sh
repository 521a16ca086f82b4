#!/usr/bin/env bash
# One command for what only real AWS can show (docs/production.md): deploys examples/production_check.R
# with its data file, runs it, prints the start job's CloudWatch log (which image, which queue), reads the
# result back with the Client API, and deletes the state machine again.
#
#   examples/check-production.sh
#
# Needs AWS credentials and the settings README.md lists under "Deploy to AWS Step Functions"
# (METAFLOW_BATCH_CONTAINER_IMAGE naming the image you pushed). Exits non-zero at the first failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/production_check.R" "$work/"
printf 'n\n3\n4\n' > "$work/numbers.csv"
cd "$work"
run_id="check-$(date -u +%Y%m%d-%H%M%S)"
Rscript production_check.R --package-suffixes=.R,.csv step-functions create | tee create.log
namespace=$(sed -n 's/^Its runs are in namespace \(.*\)\.$/\1/p' create.log)
Rscript production_check.R step-functions trigger --run-id "$run_id" --wait
Rscript production_check.R step-functions logs "$run_id/start"
METAFLOW_DEFAULT_DATASTORE=s3 Rscript -e "library(metaflow); set_namespace('$namespace')
total <- run_client\$new('ProductionCheckFlow/$run_id')\$artifact('total')
if (!identical(total, 25)) stop('the run stored total = ', format(total), ', not 25')
cat('Client API, namespace $namespace: total =', total, '\n')"
Rscript production_check.R step-functions delete
echo "Production check passed: run $run_id of ProductionCheckFlow in $namespace."
