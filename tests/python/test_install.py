"""The R user's way in, as a new user takes it: the built package installed into an empty R library by a
non-root user with an empty home and no clone of the repository, its backend installed by
install_metaflow(), the seed's ParameterFlow run from an unrelated directory and its artifact read back;
and the advice such a user gets while the backend is missing or of another version."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import build_package

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
# What the user's shell passes on: no venv, no pyenv, nothing of this checkout on the PATH.
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    return build_package(tmp_path_factory.mktemp("build"))


class User:
    """Someone with an empty home and an empty R library (nobody, when the tests run as root)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.library = home / "R" / "library"
        self.library.mkdir(parents=True)
        (home / "tmp").mkdir()
        self.env = {"HOME": str(home), "PATH": USER_PATH, "LANG": "C.UTF-8", "TMPDIR": str(home / "tmp"),
                    "R_LIBS_USER": str(self.library),
                    **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
        self.as_root = os.geteuid() == 0
        if self.as_root:
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(home)], check=True)

    def run(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"] if self.as_root else []
        return subprocess.run([*prefix, *argv], cwd=cwd or self.home, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def flow_in(self, directory: str) -> Path:
        """A directory of the user's holding the seed's ParameterFlow, copied by the test: the checkout may be
        one the user cannot read (a clone in a private temporary directory)."""
        work = self.home / directory
        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "examples" / "parameter_flow.R", work / "parameter_flow.R")
        if self.as_root:
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(work)], check=True)
        return work

    def rscript(self, code: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(["Rscript", "-e", code], **kwargs)


def new_user(tarball: Path) -> User:
    home = Path(tempfile.mkdtemp(prefix="metaflow-user-", dir="/tmp"))
    os.chmod(home, 0o755)
    shutil.copy(tarball, home / tarball.name)
    someone = User(home)
    installed = someone.run(["R", "CMD", "INSTALL", "-l", str(someone.library), tarball.name])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return someone


@pytest.fixture(scope="module")
def user(tarball) -> User:
    """The R package installed, its backend not yet."""
    someone = new_user(tarball)
    yield someone
    shutil.rmtree(someone.home, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(tarball) -> tuple[User, subprocess.CompletedProcess]:
    """Another user who also ran install_metaflow() (its own fixture: pytest-xdist may run any test alone)."""
    someone = new_user(tarball)
    venv = someone.home / "environments" / "metaflow"
    done = someone.rscript(f'metaflow::install_metaflow(envname = "{venv}")')
    assert done.returncode == 0, done.stdout + done.stderr
    yield someone, done
    shutil.rmtree(someone.home, ignore_errors=True)


def said(done: subprocess.CompletedProcess) -> str:
    """What a command wrote on stderr, its lines joined as cli wraps them at the console width."""
    return " ".join(done.stderr.split())


def test_without_its_backend_the_package_says_what_to_run(user):
    work = user.flow_in("elsewhere")
    done = user.run(["Rscript", "parameter_flow.R", "run"], cwd=work)
    assert done.returncode != 0
    assert "The Python backend of metaflow is not installed." in said(done)
    assert "metaflow::install_metaflow()" in said(done) and "make" not in said(done)
    caught = user.rscript('library(metaflow); e <- tryCatch(list_flows(), error = identity); cat(class(e), sep = "\\n")')
    assert "metaflow_installation_error" in caught.stdout.split()


def test_install_metaflow_then_parameter_flow_runs_from_an_unrelated_directory(installed):
    user, done = installed
    venv = user.home / "environments" / "metaflow"
    assert (venv / "bin" / "python").exists()
    assert "The metaflow backend 0.1.0 is installed" in done.stderr

    work = user.flow_in("projects/tuning")
    ran = user.run(["Rscript", "parameter_flow.R", "run", "--alpha", "0.5"], cwd=work)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "alpha is 0.5" in ran.stdout and "alpha still is 0.5" in ran.stdout
    assert (work / ".metaflow" / "ParameterFlow").is_dir()

    read = user.rscript('library(metaflow); flow <- flow_client$new("ParameterFlow"); '
                        'cat(flow$run(flow$latest_run)$artifact("alpha"))', cwd=work)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "0.5"


def test_a_backend_of_another_version_is_refused_with_the_same_advice(installed):
    user, _ = installed
    venv = user.home / "environments" / "metaflow"
    (init,) = venv.glob("lib/python3*/site-packages/metaflow_r/__init__.py")
    original = init.read_text()
    try:
        init.write_text(re.sub(r'__version__ = "[^"]+"', '__version__ = "0.0.1"', original))
        # Same size, maybe the same second as the install: Python would trust the bytecode pip compiled.
        for cached in (init.parent / "__pycache__").glob("__init__.*.pyc"):
            cached.unlink()
        done = user.rscript('library(metaflow); list_flows()')
        assert done.returncode != 0
        assert "is not this package's" in said(done) and "It is version 0.0.1; this package is 0.1.0." in said(done)
        assert "metaflow::install_metaflow()" in said(done)
        # A shell command runs the backend in a Python process of its own, which refuses it the same way.
        work = user.flow_in("elsewhere-too")
        shell = user.run(["Rscript", "parameter_flow.R", "show"], cwd=work)
        assert shell.returncode != 0 and "Traceback" not in shell.stderr
        assert "is not this package's" in said(shell) and "It is version 0.0.1; this package is 0.1.0." in said(shell)
        assert "metaflow::install_metaflow()" in said(shell)
    finally:
        init.write_text(original)


def test_metaflow_r_python_wins_and_is_named_when_wrong(user):
    done = user.rscript("library(metaflow); list_flows()", env={"METAFLOW_R_PYTHON": "/nowhere/bin/python"})
    assert done.returncode != 0
    assert "`METAFLOW_R_PYTHON` names '/nowhere/bin/python', which does not exist." in said(done)


def test_the_emulator_is_optional_and_says_how_to_add_it(installed):
    user, _ = installed
    venv = user.home / "environments" / "metaflow"
    in_r = user.rscript('library(metaflow); e <- tryCatch(emulator_start(), error = identity); '
                        'cat(class(e), sep = "\\n"); message(conditionMessage(e))')
    assert "metaflow_installation_error" in in_r.stdout.split()
    assert "The offline AWS emulator is not installed" in said(in_r)
    assert "metaflow::install_metaflow(emulator = TRUE)" in said(in_r)
    shell = user.run([str(venv / "bin" / "metaflow-r"), "emulator", "--port", "0"])
    assert shell.returncode == 1
    assert "pip install 'metaflow-r[emulator]'" in said(shell) and "Traceback" not in shell.stderr
