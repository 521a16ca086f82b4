"""The R package as R's ecosystem judges it: R CMD check --as-cran (offline), lintr under the repository's
.lintr, and one version for the package and the backend it ships."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import metaflow_r
import pytest
from conftest import build_package

ROOT = Path(__file__).resolve().parents[2]
# The only note allowed: the check of file times asks a web service, out of reach offline (CRAN's own
# machines reach it).
OFFLINE_NOTE = "unable to verify current time"


@pytest.fixture(scope="module")
def check_log(tmp_path_factory) -> str:
    where = tmp_path_factory.mktemp("check")
    tarball = build_package(where)
    done = subprocess.run(["R", "CMD", "check", "--as-cran", "--no-manual", tarball.name], cwd=where,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "_R_CHECK_CRAN_INCOMING_REMOTE_": "false"})
    return done.stdout + done.stderr


def test_r_cmd_check_as_cran_has_no_error_warning_or_note_but_the_offline_one(check_log):
    status = re.search(r"^Status: (.*)$", check_log, re.M)
    assert status, check_log[-3000:]
    assert "ERROR" not in status.group(1) and "WARNING" not in status.group(1), check_log[-3000:]
    notes = re.findall(r"^\* checking (.*) \.\.\. NOTE\n(.*)$", check_log, re.M)
    assert [(what, first) for what, first in notes if first.strip() != OFFLINE_NOTE] == []


def test_the_package_is_lint_free():
    done = subprocess.run(["Rscript", "-e", 'lints <- lintr::lint_package(); print(lints); cat("lints:", length(lints))'],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("lints: 0"), done.stdout


def test_the_backend_is_the_packages_version():
    description = (ROOT / "DESCRIPTION").read_text()
    version = re.search(r"^Version: (.+)$", description, re.M).group(1).strip()
    assert metaflow_r.__version__ == version
    pyproject = (ROOT / "inst" / "python" / "pyproject.toml").read_text()
    assert 'version = { attr = "metaflow_r.__version__" }' in pyproject
