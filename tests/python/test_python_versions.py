"""The Batch task's Python path on every interpreter the project admits, not only the venv's.

The image's Python is Debian bookworm's 3.11.2, older than this venv's; a stdlib call that only newer
patch releases have (``tarfile``'s ``filter=``) once failed every Batch task while every test passed.
Here the code package round trip runs under each interpreter found that ``requires-python`` admits, and
a whole Batch task (download, hash check, unpack, the R step, commit) runs under Debian's
``/usr/bin/python3``. The backend's dependencies come from this venv (pure Python, or built for 3.11).
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import READS_DATA, make_spec, step

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = "/usr/bin/python3"
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))


def admitted() -> tuple[int, int]:
    found = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert found, "pyproject.toml has no requires-python = \">=X.Y\""
    return int(found.group(1)), int(found.group(2))


def version_of(python: str) -> tuple[int, ...] | None:
    try:
        done = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True,
                              text=True, timeout=30)
    except OSError:
        return None
    return tuple(map(int, done.stdout.split())) if done.returncode == 0 else None


def interpreters() -> list[str]:
    """This venv's, Debian's, and any python3.X on PATH or under pyenv: one per version."""
    candidates = [sys.executable, DEBIAN_PYTHON, *filter(None, (shutil.which(f"python3.{m}") for m in range(8, 15))),
                  *sorted(glob.glob(os.path.expanduser(os.environ.get("PYENV_ROOT", "~/.pyenv")) + "/versions/3.*/bin/python3"))]
    by_version: dict[tuple[int, ...], str] = {}
    for python in candidates:
        version = version_of(python) if os.path.exists(python) else None
        if version and version[:2] >= admitted():
            by_version.setdefault(version, python)
    return [by_version[v] for v in sorted(by_version)]


def run_under(python: str, code: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "inst" / "python"), SITE_PACKAGES])}
    return subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env, timeout=timeout)


ROUND_TRIP = r"""
import io, json, sys, tarfile, tempfile
from pathlib import Path
from metaflow_r.core.errors import UsageError
from metaflow_r.aws.code_package import build_package, extract_package

work = Path(tempfile.mkdtemp())
(work / "project" / "lib").mkdir(parents=True)
(work / "project" / "flow.R").write_text("library(metaflow)\n")
(work / "project" / "lib" / "helper.R").write_text("h <- 1\n")
(work / "project" / "data.csv").write_text("n\n1\n")
package = build_package(str(work / "project" / "flow.R"), {"name": "F"}, {}, [".csv"])
manifest = extract_package(package.data, package.sha, str(work / "out"))
same = all((work / "out" / f).read_bytes() == (work / "project" / f).read_bytes() for f in package.files)

# The same package with a link appended (and its hash recomputed) is refused.
raw = io.BytesIO(__import__("gzip").decompress(package.data))
with tarfile.open(fileobj=raw, mode="a") as tar:
    link = tarfile.TarInfo("escape.R"); link.type = tarfile.SYMTYPE; link.linkname = "/etc/passwd"
    tar.addfile(link)
data = __import__("gzip").compress(raw.getvalue())
try:
    extract_package(data, __import__("hashlib").sha256(data).hexdigest(), str(work / "evil"))
    refused = False
except UsageError:
    refused = True
print(json.dumps({"files": sorted(package.files), "same": same, "script": manifest["script"], "refused": refused}))
"""


@pytest.mark.parametrize("python", interpreters())
def test_the_code_package_round_trip_works_on_every_admitted_python(python):
    done = run_under(python, ROUND_TRIP)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"files": ["data.csv", "flow.R", "lib/helper.R"], "same": True, "script": "flow.R",
                      "refused": True}


def test_debian_python_is_among_them():
    if not os.path.exists(DEBIAN_PYTHON):
        pytest.skip(f"{DEBIAN_PYTHON} is not installed here (the image's interpreter is Debian's python3)")
    assert DEBIAN_PYTHON in interpreters() or version_of(DEBIAN_PYTHON) == version_of(sys.executable)


BATCH_TASK = r"""
import json, os, sys
import boto3
from moto import mock_aws

spec, script = json.loads(sys.argv[1]), sys.argv[2]
with mock_aws():
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="debian-test")
    from metaflow_r.aws.code_package import build_package
    package = build_package(script, spec, {}, spec["package_suffixes"])
    url = f"s3://debian-test/metaflow/DataFlow/_code/{package.sha}.tgz"
    boto3.client("s3", region_name="us-east-1").put_object(Bucket="debian-test", Key=url[len("s3://debian-test/"):],
                                                            Body=package.data)
    # What the job definition and the state machine set (see inst/container/README.md).
    os.environ.update(METAFLOW_DEFAULT_DATASTORE="s3", METAFLOW_DATASTORE_SYSROOT_S3="s3://debian-test/metaflow",
                      METAFLOW_SFN_DYNAMO_DB_TABLE="unused", METAFLOW_BATCH_ATTEMPTS="1", METAFLOW_FLOW_NAME="DataFlow",
                      METAFLOW_RUN_ID="debian-run",
                      METAFLOW_SPLIT_PATH="", METAFLOW_CODE_URL=url, METAFLOW_CODE_SHA=package.sha,
                      METAFLOW_PARAMETERS="{}", AWS_BATCH_JOB_ATTEMPT="1", AWS_BATCH_JOB_ID="job-1")
    from metaflow_r.cli.entry import main
    codes = {}
    for step in ("start", "end"):
        os.environ["METAFLOW_STEP"] = step
        codes[step] = main(["batch-task"])
    from metaflow_r.datastore.flow import FlowDatastore
    from metaflow_r.datastore.s3 import S3Storage
    ds = FlowDatastore(S3Storage("s3://debian-test/metaflow"), "DataFlow")
    print(json.dumps({"python": sys.version.split()[0], "codes": codes,
                      "successful": (ds.run_status("debian-run") or {}).get("successful"),
                      "log": ds.read_log("debian-run", "end", "end", 0, "stdout")}))
"""

@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")
def test_a_whole_batch_task_runs_under_debian_python(tmp_path, aws_env):
    if not os.path.exists(DEBIAN_PYTHON):
        pytest.skip(f"{DEBIAN_PYTHON} is not installed here (the image's interpreter is Debian's python3)")
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.R").write_text(READS_DATA)
    (project / "data.csv").write_text("n\n40\n2\n")
    spec = make_spec("DataFlow", [step("start", "end"), step("end")], script=str(project / "flow.R"))
    spec["package_suffixes"] = [".csv"]
    done = run_under(DEBIAN_PYTHON, BATCH_TASK, json.dumps(spec), str(project / "flow.R"), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["python"] == ".".join(map(str, version_of(DEBIAN_PYTHON)))
    assert result["codes"] == {"start": 0, "end": 0}, done.stdout + done.stderr
    assert result["successful"] is True
    assert "total is 42" in result["log"]
