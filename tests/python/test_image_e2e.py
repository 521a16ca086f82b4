"""Production as it runs: every Batch job inside the real image, on the offline emulator.

The image is built from inst/container/Dockerfile by `make image`'s own code (tools/batch_image.py; a
no-op when its inputs have not changed), and the emulator runs each job with ``--batch-runner
container``: ``docker``/``podman run`` of the job definition's image, with the job's environment only.
The end-to-end tests of test_emulator_e2e.py that matter for the image run again here, unchanged, on
that emulator: the seed flows, a branch and a nested foreach (artifacts equal to a local run's), retry,
catch and a failing step. Then examples/check-production.sh, the check docs/production.md gives for real
AWS: its jobs ran in the image, with Batch's environment, retries and logs.

Without a container engine these tests cannot run; they are skipped with a reason in the summary and a
warning, never silently. README.md ("Tests in the image") says how to run them.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from conftest import emulated_env, running_emulator, s3_datastore
from metaflow_r.containers import container_engine
# Collected again in this module, where `emulator` is the container-runner emulator below.
from test_emulator_e2e import (  # noqa: F401
    test_a_step_that_fails_once_succeeds_with_retry,
    test_catch_on_step_functions_records_the_error_and_the_execution_succeeds,
    test_emulated_run_matches_a_local_run,
    test_times_zero_fails_the_execution_and_names_the_step,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import batch_image  # noqa: E402

NO_ENGINE = ("NO CONTAINER ENGINE: the Batch image tests did not run (neither `docker info` nor `podman info` "
             "succeeds), so no job ran in the production image. Install podman (make setup does, on Debian) or "
             "start Docker, then: make test (README.md, 'Tests in the image').")

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")


@pytest.fixture(scope="module")
def batch_image_tag(request) -> str:
    """The image `make image` builds, built if its inputs changed; a loud skip without an engine."""
    engine = container_engine()
    if engine is None:
        with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\nWARNING: {NO_ENGINE}", file=sys.stderr, flush=True)
        warnings.warn(NO_ENGINE, pytest.PytestWarning)  # in the warnings summary too
        pytest.skip(NO_ENGINE)
    started = time.time()
    try:
        tag = batch_image.build()
    except Exception as exc:  # noqa: BLE001 - the build's output is in the captured stdout shown with this
        pytest.fail(f"`make image` failed with {engine}: {exc}")
    print(f"{tag} ready in {time.time() - started:.0f} s")
    return tag


@pytest.fixture(scope="module")
def emulator(batch_image_tag, tmp_path_factory):
    """The emulator with every Batch job in the image; deployed flows name that image."""
    engine = container_engine()
    yield from running_emulator(tmp_path_factory, "--batch-runner", "container", "--image", batch_image_tag,
                                env=batch_image.engine_env(engine))


def test_the_production_check_passes_with_its_jobs_in_the_image(emulator, tmp_path):
    """examples/check-production.sh, the one command docs/production.md gives for real AWS, here."""
    done = subprocess.run(["bash", str(ROOT / "examples" / "check-production.sh")], cwd=tmp_path,
                          env=emulated_env(emulator), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The start job ran in the image: its user, Debian's python3 (the venv's base), Batch's variables.
    assert "image: user=metaflow python=Python 3.11" in out
    assert f"AWS_BATCH_JQ_NAME={emulator['METAFLOW_BATCH_JOB_QUEUE']}" in out
    assert f"AWS_DEFAULT_REGION={emulator['AWS_DEFAULT_REGION']}" in out
    assert "a line on stderr reaches the log too" in out  # CloudWatch has stderr as well as stdout
    assert "total = 14" in out and "Production check passed" in out
    ds = s3_datastore(emulator, "ProductionCheckFlow")
    (run_id,) = ds.run_ids()
    # Batch's own retry ran each foreach task's second attempt (AWS_BATCH_JOB_ATTEMPT=2).
    for task_id in ds.task_ids(run_id, "square"):
        assert [a["successful"] for a in ds.attempts(run_id, "square", task_id)] == [True, False]
