"""A foreach step's Batch job without R, for test_foreach_scale.py: it finds its task id the way a Batch task
does (task_identity.resolve_split_path) and publishes the foreach's items (foreach_width.publish_foreach_width) for the
width the test chose (STAND_IN_WIDTHS, step -> width)."""
from __future__ import annotations

import json
import os
import sys

from metaflow_r.aws.step_functions.compile import task_id
from metaflow_r.aws.step_functions.foreach_width import publish_foreach_width
from metaflow_r.aws.step_functions.task_identity import resolve_split_path
from metaflow_r.core.errors import MetaflowRError

step, run_id = os.environ["METAFLOW_STEP"], os.environ["METAFLOW_RUN_ID"]
path = resolve_split_path(os.environ.get("METAFLOW_SPLIT_PATH", ""))
own = task_id(step, path.split("-") if path else [])
try:
    publish_foreach_width(None, f"{run_id}/{step}/{own}", json.loads(os.environ["STAND_IN_WIDTHS"])[step])
except MetaflowRError as exc:  # as the Batch task ends on it (aws/batch/task.py)
    print(exc, file=sys.stderr)
    sys.exit(exc.exit_code)
