"""What only the production image can show, on the offline emulator with every Batch job inside it.

test_emulator_e2e.py already runs the seed flows, a branch, a nested foreach, retry, catch and a failing
step with their jobs in the image (`make image`). Here examples/check-production.sh, the one command
docs/production.md gives for real AWS, runs against the emulator: its jobs ran in the image, as its user,
with Debian's python3, Batch's environment, retries and logs.

Without a container engine this cannot run: it is skipped with a reason in the summary and a warning,
never silently. README.md ("Tests in the image") says how to run it.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NO_ENGINE, emulated_env, rscript, s3_datastore

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")


@pytest.fixture(scope="module")
def emulator(batch_image_tag, image_emulator):
    if batch_image_tag is None:
        pytest.skip(NO_ENGINE)
    return image_emulator


def test_the_production_check_passes_with_its_jobs_in_the_image(emulator, tmp_path):
    """examples/check-production.sh, the one command docs/production.md gives for real AWS, here."""
    done = subprocess.run(["bash", str(ROOT / "examples" / "check-production.sh")], cwd=tmp_path,
                          env=emulated_env(emulator), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The start job ran in the image: its user, Debian's python3 (the venv's base), Batch's variables.
    assert re.search(r"image: user=metaflow uid=1000 python=Python 3\.11\.\d+ R version 4\.2\.", out), out
    assert f"AWS_BATCH_JQ_NAME={emulator['METAFLOW_BATCH_JOB_QUEUE']}" in out
    assert f"AWS_DEFAULT_REGION={emulator['AWS_DEFAULT_REGION']}" in out
    assert "a line on stderr reaches the log too" in out  # CloudWatch has stderr as well as stdout
    assert "total = 25" in out and "Production check passed" in out
    ds = s3_datastore(emulator, "ProductionCheckFlow")
    run_id = re.search(r"Production check passed: run (\S+) of ProductionCheckFlow", out).group(1)
    # Batch's own retry ran each foreach task's second attempt (AWS_BATCH_JOB_ATTEMPT=2).
    squares = ds.task_ids(run_id, "square")
    assert len(squares) == 2  # numbers.csv's two numbers: 3² + 4² = 25
    for task_id in squares:
        assert [a["successful"] for a in ds.attempts(run_id, "square", task_id)] == [True, False]


TABLE_FLOW = """library(metaflow)
start <- function(self) {
  library(data.table)
  self$total <- data.table(x = 1:4)[, sum(x)]
}
end <- function(self) cat("total is", self$total, "with data.table", format(packageVersion("data.table")), "\\n")
metaflow("TableFlow") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def test_a_data_table_step_is_refused_at_create_then_runs_in_its_derived_image(emulator, tmp_path):
    """The vignette's story: the image lacks data.table, so create refuses before any AWS call; `image build`
    derives an image with Debian's r-cran-data.table (once: the tag is a hash, a second build is a no-op), and
    the flow deployed with it runs on the emulator with its jobs in that image."""
    import boto3

    script = tmp_path / "table_flow.R"
    script.write_text(TABLE_FLOW)
    env = emulated_env(emulator)
    refused = rscript(script, ["step-functions", "create"], tmp_path, env)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert f"The image {emulator['METAFLOW_BATCH_CONTAINER_IMAGE']} lacks R package data.table" in refused.stderr
    assert "data.table: used by step start." in refused.stderr
    assert "Rscript table_flow.R image build" in refused.stderr
    sfn = boto3.client("stepfunctions", endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="emulated", aws_secret_access_key="emulated")
    assert "TableFlow" not in [m["name"] for m in sfn.list_state_machines()["stateMachines"]]

    built = subprocess.run(["Rscript", str(script), "image", "build"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=1200)
    assert built.returncode == 0, built.stdout + built.stderr
    tag = built.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"metaflow-r:r-[0-9a-f]{12}", tag), built.stdout
    assert f"docker push <registry>/{tag}" in built.stdout or "is up to date" in built.stdout
    labels = subprocess.run([engine_of(), "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
                            capture_output=True, text=True, check=True).stdout
    held = json.loads(json.loads(labels)["org.metaflow-r.r-packages"])["packages"]
    assert "data.table" in held and "jsonlite" in held  # the base's packages, and the one added
    again = rscript(script, ["image", "build"], tmp_path, env)
    assert again.returncode == 0 and f"{tag} is up to date." in again.stdout, again.stdout + again.stderr

    env["METAFLOW_BATCH_CONTAINER_IMAGE"] = tag
    created = rscript(script, ["step-functions", "create"], tmp_path, env)
    assert created.returncode == 0, created.stdout + created.stderr
    done = rscript(script, ["step-functions", "trigger", "--run-id", "sfn-table", "--wait"], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = rscript(script, ["step-functions", "logs", "sfn-table/end"], tmp_path, env)
    assert f"total is 10 with data.table {held['data.table']}" in logs.stdout, logs.stdout + logs.stderr


def engine_of() -> str:
    from metaflow_r.emulator.containers import container_engine

    return container_engine() or "docker"
