"""What only the production image can show, on the offline emulator with every Batch job inside it.

test_emulator_e2e.py already runs the seed flows, a branch, a nested foreach, retry, catch and a failing
step with their jobs in the image (`make image`). Here examples/check-production.sh, the one command
docs/production.md gives for real AWS, runs against the emulator: its jobs ran in the image, as its user,
with Debian's python3, Batch's environment, retries and logs.

Without a container engine this cannot run: it is skipped with a reason in the summary and a warning,
never silently. README.md ("Tests in the image") says how to run it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NO_ENGINE, emulated_env, s3_datastore

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
