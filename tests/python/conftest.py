"""Shared fixtures: graph specs in the form R's flow_spec() sends, and storages to run datastore tests on."""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BROWSER_LOOK = REPO / "tests" / "browser" / "look.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE_MODULES = REPO / ".tools" / "node_modules"


def require_npm_tool(path: Path, what: str) -> None:
    """Fail, as hadolint's tests do, when `make setup` could not install a tool these tests need: a skip
    would go unseen, and the claims these tests check with it with them."""
    if shutil.which("node") is None or not path.exists():
        pytest.fail(f"{what} is not installed ({'node is not on PATH' if shutil.which('node') is None else f'no {path}'}):"
                    " run `make setup`, which installs it.")


@pytest.fixture(scope="module")
def browser_tools() -> None:
    """Node, Debian's Chromium and playwright-core in .tools: `make setup` installs them."""
    require_npm_tool(NODE_MODULES / "playwright-core", "playwright-core (npm)")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Debian's chromium is not installed (no {CHROMIUM}): run `make setup`, which installs it.")


needs_browser = pytest.mark.usefixtures("browser_tools")


def build_package(where: Path) -> Path:
    """The R package as `R CMD build` makes it: what remotes, pak and CRAN install."""
    subprocess.run([str(REPO / "tools" / "stage_package.sh"), str(where / "metaflow")], check=True)
    subprocess.run(["R", "CMD", "build", "--no-manual", "metaflow"], cwd=where, check=True, capture_output=True)
    (tarball,) = where.glob("metaflow_*.tar.gz")
    return tarball


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (make test-slow)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes long; runs only with --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def step(name: str, next_steps: list[str] | str | None = None, *, join: bool = False, foreach: str | None = None,
         decorators: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One step as flow_spec() writes it: next is always a list (empty for "end"), foreach null unless set."""
    if isinstance(next_steps, str):
        next_steps = [next_steps]
    return {"name": name, "next": list(next_steps or []), "join": join, "foreach": foreach,
            "decorators": list(decorators or [])}


def param(name: str, *, help: str | None = None, default: Any = None, type: str = "str", required: bool = False,
          is_flag: bool = False, separator: str | None = None) -> dict[str, Any]:
    return {"name": name, "help": help, "default": default, "type": type, "required": required,
            "is_flag": is_flag, "separator": separator}


def make_spec(name: str, steps: list[dict[str, Any]], parameters: list[dict[str, Any]] | None = None,
              script: str | None = None, decorators: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": name, "script": script, "parameters": list(parameters or []),
            "decorators": list(decorators or []), "steps": steps, "package_suffixes": []}


def as_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec)


LINEAR = make_spec("LinearFlow", [step("start", "a"), step("a", "end"), step("end")])

BRANCH = make_spec("BranchFlow", [
    step("start", ["a", "b"]),
    step("a", "join"),
    step("b", "join"),
    step("join", "end", join=True),
    step("end"),
])

FOREACH = make_spec("ForeachFlow", [
    step("start", "body", foreach="items"),
    step("body", "join"),
    step("join", "end", join=True),
    step("end"),
])

NESTED_FOREACH = make_spec("NestedForeachFlow", [
    step("start", "per_letter", foreach="letters"),
    step("per_letter", "per_number", foreach="numbers"),
    step("per_number", "join_numbers"),
    step("join_numbers", "join_letters", join=True),
    step("join_letters", "end", join=True),
    step("end"),
])

# A foreach whose body branches: two steps between the foreach and its join.
BRANCHING_BODY = make_spec("BranchingBodyFlow", [
    step("start", "fan", foreach="xs"), step("fan", ["p", "q"]), step("p", "pq"), step("q", "pq"),
    step("pq", "join", join=True), step("join", "end", join=True), step("end"),
])


@pytest.fixture
def linear_spec() -> dict[str, Any]:
    return copy.deepcopy(LINEAR)


@pytest.fixture
def branch_spec() -> dict[str, Any]:
    return copy.deepcopy(BRANCH)


@pytest.fixture
def foreach_spec() -> dict[str, Any]:
    return copy.deepcopy(FOREACH)


@pytest.fixture
def nested_foreach_spec() -> dict[str, Any]:
    return copy.deepcopy(NESTED_FOREACH)


@pytest.fixture
def param_spec() -> dict[str, Any]:
    """A linear flow with one parameter of every kind."""
    return make_spec("ParamFlow", [step("start", "end"), step("end")], parameters=[
        param("alpha", help="Learning rate.", default=0.01, type="float"),
        param("n_items", help="How many items.", default=3, type="int"),
        param("label", help="A label.", default="x"),
        param("loud", help="Shout.", default=True, type="bool"),
        param("dry_run", help="Do nothing.", is_flag=True, type="bool"),
        param("tags_in", help="Input tags.", default="a,b", separator=","),
        param("token", help="Secret token.", required=True),
    ])


# -- storages ------------------------------------------------------------------------------------


class StorageCase:
    """A storage under test plus a raw view of everything it holds (bypassing our own code)."""

    def __init__(self, kind: str, storage, raw_keys):
        self.kind = kind
        self.storage = storage
        self.raw_keys = raw_keys


def _local_case(tmp_path) -> StorageCase:
    from metaflow_r.datastore.storage import LocalStorage

    root = tmp_path / "root"
    root.mkdir()

    def raw_keys() -> list[str]:
        found = []
        for directory, _, files in os.walk(root):
            for name in files:
                found.append(os.path.relpath(os.path.join(directory, name), root))
        return sorted(found)

    return StorageCase("local", LocalStorage(root), raw_keys)


@pytest.fixture
def aws_env(monkeypatch):
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture(params=["local", "s3", "s3-bucket-root"])
def storage_case(request, tmp_path):
    """The same tests against LocalStorage, S3Storage under a prefix, and S3Storage at a bucket's root."""
    if request.param == "local":
        yield _local_case(tmp_path)
        return
    request.getfixturevalue("aws_env")
    import boto3
    from moto import mock_aws

    from metaflow_r.datastore.s3 import S3Storage

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="mf-test-bucket")
        root = "s3://mf-test-bucket/some/prefix" if request.param == "s3" else "s3://mf-test-bucket"
        prefix = "some/prefix/" if request.param == "s3" else ""

        def raw_keys() -> list[str]:
            keys = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket="mf-test-bucket"):
                keys.extend(o["Key"][len(prefix):] for o in page.get("Contents", []))
            return sorted(keys)

        yield StorageCase(request.param, S3Storage(root, client=client, cache_dir=str(tmp_path / "cache")),
                          raw_keys)


# -- Step Functions deployment ---------------------------------------------------------------------

# Every setting `step-functions create` reads, as a user would export them (ARNs in moto's default account).
SFN_SETTINGS = {
    "METAFLOW_DATASTORE_SYSROOT_S3": "s3://mf-deploy-test/metaflow",
    "METAFLOW_BATCH_JOB_QUEUE": "arn:aws:batch:us-east-1:123456789012:job-queue/metaflow-queue",
    "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/metaflow-batch",
    "METAFLOW_SFN_IAM_ROLE": "arn:aws:iam::123456789012:role/metaflow-sfn",
    "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/metaflow-events",
    "METAFLOW_SFN_DYNAMO_DB_TABLE": "metaflow-foreach",
    "METAFLOW_BATCH_CONTAINER_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:1.0",
}
SFN_BUCKET = "mf-deploy-test"
# moto's default, spelled out: the state machine is never run, its executions stay RUNNING.
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": False}, "batch": {"use_docker": False}}


def write_flow_script(directory, name: str = "flow.R", body: str | None = None) -> str:
    """A flow script on disk (deploying packages it); returns its path."""
    path = directory / name
    path.write_text(body or "library(metaflow)\n# steps are defined in the spec the test sends\n")
    return str(path)


@pytest.fixture
def no_metaflow_settings(monkeypatch, tmp_path_factory):
    """No METAFLOW_* variable and an empty config directory, whatever the machine running the tests has."""
    from metaflow_r.core import config

    for key in list(os.environ):
        if key.startswith("METAFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("METAFLOW_HOME", str(tmp_path_factory.mktemp("metaflowconfig")))
    config._config_file.cache_clear()
    yield
    config._config_file.cache_clear()


@pytest.fixture
def sfn_env(aws_env, no_metaflow_settings, monkeypatch):
    """Fake AWS credentials plus every Step Functions setting; the deploying user is alice."""
    for key, value in SFN_SETTINGS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("METAFLOW_USER", "alice")
    return dict(SFN_SETTINGS)


@pytest.fixture
def moto_aws(sfn_env):
    """In-process moto with the datastore bucket created, as an administrator would have done."""
    import boto3
    from moto import mock_aws

    with mock_aws(config=MOTO_CONFIG):
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=SFN_BUCKET)
        yield


# -- the offline emulator (a real moto server on 127.0.0.1, real Rscript tasks) ----------------------

METAFLOW_R = os.path.join(os.path.dirname(sys.executable), "metaflow-r")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorProcess:
    """``metaflow-r emulator OPTIONS`` started in the background; ``settings`` are those it wrote."""

    def __init__(self, home: Path, *options: str, env: dict[str, str] | None = None) -> None:
        env_file = home / "aws.env"
        (home / "tmp").mkdir(parents=True)
        # Its output goes to a file, not a pipe nobody reads while tests run: a full pipe would block the server.
        self.log = home / "emulator.log"
        with open(self.log, "w") as output_file:
            # The Batch jobs it runs inherit its environment: their scratch directories land in the test's tmp.
            self.process = subprocess.Popen([METAFLOW_R, "emulator", "--port", str(free_port()), "--env-file",
                                             str(env_file), *options], stdout=output_file, stderr=subprocess.STDOUT,
                                            text=True, env={**os.environ, **(env or {}), "TMPDIR": str(home / "tmp")})
        deadline = time.time() + 60
        while not env_file.exists():
            assert self.process.poll() is None, self.log.read_text()
            assert time.time() < deadline, "emulator not ready after 60 s"
            time.sleep(0.1)
        self.settings = dict(line[len("export "):].strip().split("=", 1)
                             for line in env_file.read_text().splitlines())

    def stop(self, how: int = signal.SIGTERM) -> str:
        """Stop it as a user does (SIGTERM: kill; SIGINT: Ctrl-C); fails unless it stops cleanly; its output."""
        self.process.send_signal(how)
        self.process.wait(timeout=120)
        output = self.log.read_text()
        assert self.process.returncode == 0, output
        assert "AWS emulator stopped." in output
        return output


def running_emulator(tmp_path_factory, *options: str, env: dict[str, str] | None = None):
    """``metaflow-r emulator OPTIONS`` in the background until the generator is closed; yields the
    settings it wrote. Fails the test if it does not start, or does not stop cleanly."""
    emulator = EmulatorProcess(tmp_path_factory.mktemp("emulator"), *options, env=env)
    yield emulator.settings
    emulator.stop()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """``metaflow-r emulator`` in the background, one per test module; yields the settings it wrote."""
    yield from running_emulator(tmp_path_factory)


# -- the Batch image (tools/batch_image.py, `make image`) ------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import batch_image  # noqa: E402

NO_ENGINE = ("NO CONTAINER ENGINE: neither `docker info` nor `podman info` succeeds, so no Batch job ran in the "
             "production image: the emulator end-to-end tests ran them as local processes, and the image tests "
             "were skipped. Install podman (make setup does, on Debian) or start Docker, then run make test "
             "(README.md, 'Tests in the image').")


@pytest.fixture(scope="session")
def batch_image_tag(request) -> str | None:
    """The image `make image` builds (built now if its inputs changed), or None, said loudly, when no
    container engine answers."""
    from metaflow_r.emulator.containers import container_engine

    engine = container_engine()
    if engine is None:
        with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\nWARNING: {NO_ENGINE}", file=sys.stderr, flush=True)
        import warnings

        warnings.warn(NO_ENGINE, pytest.PytestWarning)  # in the warnings summary too
        return None
    try:
        return batch_image.build()
    except Exception as exc:  # noqa: BLE001 - the build's output is in the captured stdout shown with this
        pytest.fail(f"`make image` failed with {engine}: {exc}")


def image_runner_options(image: str | None) -> tuple[tuple[str, ...], dict[str, str] | None]:
    """The emulator's options and environment to run every Batch job in ``image`` (None: as local processes)."""
    if image is None:
        return (), None
    from metaflow_r.core.procenv import engine_env
    from metaflow_r.emulator.containers import container_engine

    return ("--batch-runner", "container", "--image", image), engine_env(container_engine())


def emulator_in_image(tmp_path_factory, image: str | None):
    """An emulator running every Batch job in ``image`` (deployed flows name it), or, when it is None,
    as local processes."""
    options, env = image_runner_options(image)
    yield from running_emulator(tmp_path_factory, *options, env=env)


@pytest.fixture(scope="session")
def image_emulator(batch_image_tag, tmp_path_factory):
    """One emulator for the session's end-to-end modules, every Batch job in the image (local processes, said
    loudly, where no container engine answers); each module uses flows of its own."""
    yield from emulator_in_image(tmp_path_factory, batch_image_tag)


def emulated_env(emulator: dict[str, str]) -> dict[str, str]:
    """The caller's environment with every AWS_/METAFLOW_ setting replaced by the emulator's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
    return {**env, **emulator}


def s3_datastore(emulator: dict[str, str], flow: str):
    """The emulator's S3 datastore of ``flow``, read with our own FlowDatastore."""
    import boto3

    from metaflow_r.datastore.flow import FlowDatastore
    from metaflow_r.datastore.s3 import S3Storage

    client = boto3.client("s3", endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name=emulator["AWS_REGION"],
                          aws_access_key_id="emulated", aws_secret_access_key="emulated")
    return FlowDatastore(S3Storage(emulator["METAFLOW_DATASTORE_SYSROOT_S3"], client=client), flow)


def s3_client(emulator: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name=emulator["AWS_REGION"],
                        aws_access_key_id="emulated", aws_secret_access_key="emulated")


# -- end to end: R scripts deployed on the emulator and compared with local runs ----------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def rscript(script: Path, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["Rscript", str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def local_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
    return {**env, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path / "local")}


def artifacts_by_task(ds: FlowDatastore, run_id: str) -> dict[tuple[str, int], dict[str, str]]:
    """Every successful task's artifacts, keyed by (step, position among the step's tasks in split order)."""
    found = {}
    for step in ds.step_names(run_id):
        records = [ds.task_record(run_id, step, t) for t in ds.task_ids(run_id, step)]
        records = sorted((r for r in records if r and r["successful"]),
                         key=lambda r: [f["index"] for f in r["split_stack"]])
        for position, record in enumerate(records):
            found[(step, position)] = record["artifacts"]
    return found


def deploy_and_trigger(script: Path, cwd: Path, env: dict[str, str], run_id: str, *options: str) -> None:
    created = rscript(script, [*options, "step-functions", "create", "--max-workers", "2"], cwd, env)
    assert created.returncode == 0, created.stdout + created.stderr
    triggered = rscript(script, ["step-functions", "trigger", "--run-id", run_id, "--wait"], cwd, env)
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert f"run-id {run_id}" in triggered.stdout
    assert "SUCCEEDED" in triggered.stdout



@pytest.fixture(scope="session")
def local_example_run(tmp_path_factory):
    """``local_example_run(example, flow)``: the artifacts by task of a local run of examples/<example>,
    run once per test session (the emulator modules compare their runs with it)."""
    from metaflow_r.datastore.flow import FlowDatastore
    from metaflow_r.datastore.storage import LocalStorage

    runs: dict[str, dict[tuple[str, int], dict[str, str]]] = {}

    def artifacts(example: str, flow: str) -> dict[tuple[str, int], dict[str, str]]:
        if example not in runs:
            where = tmp_path_factory.mktemp(f"local-{flow}")
            script = where / example
            shutil.copy(EXAMPLES / example, script)
            local = rscript(script, ["run", "--max-workers", "2"], where, local_env(where))
            assert local.returncode == 0, local.stdout + local.stderr
            ds = FlowDatastore(LocalStorage(where / "local" / ".metaflow"), flow)
            (run_id,) = ds.run_ids()
            runs[example] = artifacts_by_task(ds, run_id)
        return runs[example]

    return artifacts


# A flow whose start step reads data.csv beside its script (in the code package only with .csv).
READS_DATA = """library(metaflow)
start <- function(self) self$total <- sum(read.csv("data.csv")$n)
end <- function(self) cat("total is", self$total, "\\n")
metaflow("DataFlow") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def seeded_foreach(flow: str, width: int, seed: int, failing_item: int | None = None) -> str:
    """A seeded foreach whose tasks each draw runif(1), joined into ``us``; ``failing_item`` fails until a
    file fixed.txt is beside the script (in the code package with --package-suffixes=.R,.txt). Its
    set.seed(42) at the top is what users write: on Batch it once gave every task the same draw."""
    fails = f'  if (self$input == {failing_item} && !file.exists("fixed.txt")) stop("item {failing_item} fails")\n' \
        if failing_item else ""
    return f"""library(metaflow)
set.seed(42)
start <- function(self) self$items <- 1:{width}
draw <- function(self) {{
{fails}  self$u <- runif(1)
}}
join <- function(self, inputs) self$us <- unlist(gather_inputs(inputs, "u"))
metaflow("{flow}", seed = {seed}) %>%
  step(step = "start", r_function = start, next_step = "draw", foreach = "items") %>%
  step(step = "draw", r_function = draw, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end") %>%
  run()
"""


# -- what a reader of the datastore may see ----------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def local_datastore_files(root) -> dict[str, list[str]]:
    """Every file below a local datastore root, by kind: "blobs" (below <Flow>/data), "temp" (.tmp-* left by
    an interrupted write, anywhere), "done" (attempt records)."""
    found: dict[str, list[str]] = {"blobs": [], "temp": [], "done": []}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if name.startswith(".tmp-"):
                found["temp"].append(path)
            elif os.path.basename(os.path.dirname(os.path.dirname(path))) == "data":
                found["blobs"].append(path)
            elif name == "DONE.json":
                found["done"].append(path)
    return found


def assert_local_blobs_intact(root) -> int:
    """Every blob's sha256 is its name (and its directory the name's first two characters); returns how
    many blobs there are."""
    from metaflow_r.datastore.flow import sha256_file

    blobs = local_datastore_files(root)["blobs"]
    for path in blobs:
        name = os.path.basename(path)
        assert os.path.basename(os.path.dirname(path)) == name[:2], path
        assert sha256_file(path) == name, f"blob {path} does not hold what its name says"
    return len(blobs)


def assert_s3_blobs_intact(emulator: dict[str, str], flow: str) -> dict[str, int]:
    """Every object below <Flow>/data/ in the emulator's bucket hashes to its key; returns sha -> size."""
    client = s3_client(emulator)
    bucket, _, prefix = emulator["METAFLOW_DATASTORE_SYSROOT_S3"][len("s3://"):].partition("/")
    data_prefix = f"{prefix}/{flow}/data/"
    sizes = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=data_prefix):
        for entry in page.get("Contents", []):
            sha = entry["Key"].rsplit("/", 1)[1]
            assert entry["Key"] == f"{data_prefix}{sha[:2]}/{sha}", entry["Key"]
            body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            assert sha256_bytes(body) == sha, f"S3 blob {entry['Key']} does not hold what its key says"
            sizes[sha] = len(body)
    return sizes


def r_values(paths) -> list[str]:
    """The R objects stored in artifact files, each deparsed on one line by a plain Rscript."""
    code = 'for (p in commandArgs(TRUE)) cat(paste(deparse(readRDS(p)), collapse = ""), "\\n", sep = "")'
    done = subprocess.run(["Rscript", "-e", code, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def launch_dir(tmp_path, monkeypatch):
    """A project directory to run commands from, with no datastore setting inherited from the shell."""
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", raising=False)
    monkeypatch.delenv("METAFLOW_DEFAULT_DATASTORE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- a run's records, as the runtimes commit them (for the report's tests) ----------------------------


class RunRecords:
    """Writes a run's records into a FlowDatastore by hand: the run, its attempts, its end."""

    def __init__(self, ds, run_id: str = "100", parameters: dict[str, Any] | None = None, t0: float = 1_700_000_000.0):
        self.ds = ds
        self.t0 = t0
        self.run_id = ds.new_run(["user:alice"], parameters or {}, "alice", run_id=run_id,
                                 extra={"namespace": "user:alice", "created_at": t0})

    def attempt(self, step: str, task_id: str, start: float, end: float, *, ok: bool = True, attempt: int = 0,
                inputs: list[str] | None = None, stack: list[dict[str, Any]] | None = None,
                artifacts: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        record = {"successful": ok, "step": step, "task_id": task_id, "attempt": attempt,
                  "input_paths": [f"{self.run_id}/{p}" for p in inputs or []], "split_stack": stack or [],
                  "started_at": self.t0 + start, "finished_at": self.t0 + end, "artifacts": artifacts or {}, **extra}
        if not ok:
            record.setdefault("error", "exit status 1")
        self.ds.write_attempt(self.run_id, step, task_id, attempt, record)
        return record

    def end(self, successful: bool) -> None:
        self.ds.finish_run(self.run_id, successful)


def foreach_frame(index: int, num_splits: int, step: str = "start", task_id: str = "1") -> dict[str, Any]:
    return {"kind": "foreach", "step": step, "task_id": task_id, "index": index, "num_splits": num_splits,
            "var": "items", "var_sha": "0" * 64}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has ended; only its parent has not collected it yet
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def eventually(check, timeout: float = 30) -> bool:
    """Whether ``check()`` comes true within ``timeout`` seconds (for what another process does)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())
