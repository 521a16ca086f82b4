"""The emulator's AWS Batch: each submitted job runs as AWS Batch would run it.

The bookkeeping is Batch's: SubmitJob returns at once and the job runs in the background (RUNNING, then
SUCCEEDED or FAILED, as DescribeJobs shows), the job's environment (job definition, then the submitter's
ContainerOverrides, then AWS_BATCH_JOB_ID / AWS_BATCH_JOB_ATTEMPT / AWS_BATCH_JQ_NAME /
AWS_BATCH_CE_NAME), ``retryStrategy.attempts`` and ``evaluateOnExit``, ``attemptDurationSeconds`` (SIGTERM, then SIGKILL after
a grace period, and a timed-out job is not retried), TerminateJob (the same stop, the job FAILED with the
reason given, no retry), the container's exit status, and every line the job writes to stdout or stderr
as a CloudWatch log event as it is written. An emulator that stops stops every job still running (each
runner keeps them), as the end of Batch's hosts would: nothing it started outlives it.

Only how the command starts differs between the two runners:
  * ``local``: the job definition's command as a local process, in the emulator's own environment
    plus the job's (the local R and venv stand in for the image);
  * ``container``: the command in the job definition's image (``docker`` or ``podman run``), with the
    job's environment only, host networking and the emulator's endpoint and fake credentials standing
    in for the job role.
"""
from __future__ import annotations

import datetime
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from metaflow_r.core.errors import ConfigurationError
from metaflow_r.core.processes import kill_marked
from metaflow_r.core.procenv import subprocess_env

RUNNERS = ("local", "container")
TIMEOUT_REASON = "Job attempt duration exceeded timeout"  # Batch's statusReason for it
EXIT_REASON = "Essential container in task exited"
# Batch sends SIGTERM at the timeout and SIGKILL 30 s later (docs: Batch user guide, "Job timeouts").
STOP_GRACE_SECONDS = 30
# The grace of jobs stopped because the emulator stops: short, so that emulator_stop()'s wait covers it.
SHUTDOWN_GRACE_SECONDS = 2
SHUTDOWN_REASON = "The emulator stopped"
# What the container gets in place of the job role: the emulator's endpoint and its fake credentials.
ENDPOINT_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class JobRun:
    """What one attempt of a job runs."""

    name: str  # unique per attempt: names the container
    image: str
    command: list[str]
    environment: dict[str, str]


class RunningJobs:
    """The attempts a runner has going. Once closed (the emulator stopping), none starts any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[JobRun, subprocess.Popen]] = {}
        self.closed = False

    def add(self, run: JobRun, process: subprocess.Popen) -> bool:
        """False once closed: the caller stops what it just started."""
        with self._lock:
            if not self.closed:
                self._running[run.name] = (run, process)
            return not self.closed

    def remove(self, run: JobRun) -> None:
        with self._lock:
            self._running.pop(run.name, None)

    def close(self) -> list[tuple[JobRun, subprocess.Popen]]:
        """Refuse new attempts; returns those still running."""
        with self._lock:
            self.closed = True
            return list(self._running.values())


class JobRunner(Protocol):
    running: RunningJobs

    def start(self, run: JobRun) -> subprocess.Popen: ...

    def stop(self, run: JobRun, process: subprocess.Popen, grace: float) -> None: ...


def stop_every_job(runner: JobRunner, grace: float = SHUTDOWN_GRACE_SECONDS) -> int:
    """Stop every attempt the runner has going, all at once (each waits its grace); returns how many."""
    running = runner.running.close()
    stopping = [threading.Thread(target=runner.stop, args=(run, process, grace)) for run, process in running]
    for thread in stopping:
        thread.start()
    for thread in stopping:
        thread.join()
    return len(running)


class LocalJobRunner:
    """The job's command as a local process; the emulator's environment (its endpoint, its PATH) is
    inherited, the job's own variables win."""

    def __init__(self) -> None:
        self.running = RunningJobs()

    def start(self, run: JobRun) -> subprocess.Popen:
        return subprocess.Popen(run.command, env=subprocess_env(run.environment), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, run: JobRun, process: subprocess.Popen, grace: float) -> None:
        _terminate(process, grace, group=True)  # the job's children too, as stopping a container would
        job_id = run.environment.get("AWS_BATCH_JOB_ID")
        if job_id:  # and what they started in sessions of their own (the job's task is one): all carry its id
            kill_marked("AWS_BATCH_JOB_ID", job_id)


class ContainerJobRunner:
    """The job's command in its image. Values reach the engine as ``-e NAME`` from the engine's own
    environment, so none shows on a command line and any character is safe."""

    def __init__(self, engine: str, settings: dict[str, str]) -> None:
        self.running = RunningJobs()
        self.engine = engine
        self.settings = {name: settings[name] for name in ENDPOINT_SETTINGS if settings.get(name)}

    def argv(self, run: JobRun) -> tuple[list[str], dict[str, str]]:
        environment = {**self.settings, **run.environment}
        names = [arg for name in sorted(environment) for arg in ("-e", name)]
        argv = [self.engine, "run", "--rm", "--name", run.name, "--network", "host", *names, run.image, *run.command]
        return argv, {**os.environ, **environment}

    def start(self, run: JobRun) -> subprocess.Popen:
        argv, env = self.argv(run)
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self, run: JobRun, process: subprocess.Popen, grace: float) -> None:
        # Killing the client would leave the container running: stop the container itself.
        subprocess.run([self.engine, "stop", "-t", str(int(grace)), run.name], capture_output=True,
                       timeout=grace + 60)
        _terminate(process, 5)


def _terminate(process: subprocess.Popen, grace: float, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; to the process's whole group if ``group``."""
    def send(sig: int) -> None:
        try:
            os.killpg(process.pid, sig) if group else process.send_signal(sig)
        except ProcessLookupError:
            pass

    if process.poll() is not None:
        return
    send(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)


def make_runner(runner: str, settings: dict[str, str]) -> JobRunner:
    if runner != "container":
        return LocalJobRunner()
    from metaflow_r.emulator.containers import require_engine

    engine = require_engine()
    image = settings["METAFLOW_BATCH_CONTAINER_IMAGE"]
    if subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode != 0:
        raise ConfigurationError(f"The image {image} is not in {engine}'s local images.",
                                 [("i", "Build it with `make image` in the repository, or name one with --image.")])
    # A container that cannot start fails every job with only an exit status (126 for podman's "cannot set
    # rlimit"): try one now. Where podman's defaults fail so, its settings for such hosts are used.
    said = _cannot_run(engine, image, os.environ)
    if said and engine == "podman" and "CONTAINERS_CONF" not in os.environ:
        from metaflow_r.core.procenv import engine_env

        if not _cannot_run(engine, image, engine_env(engine)):
            os.environ["CONTAINERS_CONF"] = engine_env(engine)["CONTAINERS_CONF"]  # for every job of this emulator
            print(f"podman could not start a container with its own settings ({said}); every job runs with "
                  f"CONTAINERS_CONF={os.environ['CONTAINERS_CONF']} (runc, capped limits).", flush=True)
            said = None
    if said:
        raise ConfigurationError(f"{engine} cannot run a container of {image}: {said}",
                                 [("i", "Where podman cannot set resource limits (rlimit, cgroups), install runc "
                                        "and the emulator uses its own settings for it."),
                                  ("i", "Or run jobs as local processes: --batch-runner local.")])
    return ContainerJobRunner(engine, settings)


def _cannot_run(engine: str, image: str, env: dict[str, str]) -> str | None:
    """What the engine says when a container of ``image`` cannot start with ``env``; None when it starts."""
    probe = subprocess.run([engine, "run", "--rm", "--network", "host", image, "true"], capture_output=True,
                           text=True, timeout=300, env=env)
    if probe.returncode == 0:
        return None
    return (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]


def run_attempt(runner: JobRunner, run: JobRun, timeout: float | None, log: Callable[[str], None],
                grace: float | None = None, terminated: Callable[[], bool] = lambda: False) -> tuple[int, bool]:
    """Run one attempt, passing each output line to ``log``; returns (exit status, timed out). The attempt
    is stopped at its timeout, or as soon as ``terminated()`` (TerminateJob)."""
    grace = STOP_GRACE_SECONDS if grace is None else grace
    try:
        process = runner.start(run)
    except OSError as exc:
        log(f"CannotStartContainerError: {run.command}: {exc}")
        return 127, False
    if not runner.running.add(run, process):  # the emulator began stopping meanwhile
        runner.stop(run, process, 0)
    timed_out = threading.Event()
    ended = threading.Event()

    def expire() -> None:
        timed_out.set()
        log(f"{TIMEOUT_REASON} ({timeout:g} s): stopping the job.")
        runner.stop(run, process, grace)

    def watch_for_termination() -> None:
        while not ended.wait(0.2):
            if terminated():
                runner.stop(run, process, grace)
                return

    threading.Thread(target=watch_for_termination, daemon=True).start()
    timer = threading.Timer(timeout, expire) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line:
                log(line)
        code = process.wait()
    finally:
        ended.set()
        runner.running.remove(run)
        if timer:
            timer.cancel()
    if timed_out.is_set():
        code = code if code not in (0, None) else 137
    return code, timed_out.is_set()


def run_job(self: Any, include_start_attempt: bool, job: Any) -> None:
    """Replaces moto's BatchSimpleBackend._mark_job_as_finished (which runs nothing): starts ``job`` in the
    background, as Batch does, to run attempt by attempt with ``self._metaflow_r_runner``."""
    self.backend._jobs[job.job_id] = job
    job.log_stream_name = job._stream_name
    if not include_start_attempt:  # an array parent: its children do the work
        job.job_started_at = datetime.datetime.now()
        job._mark_stopped(success=True)
        return
    runner: JobRunner = type(self)._metaflow_r_runner  # moto forwards instance lookups elsewhere
    if (job.array_properties or {}).get("index") is not None:
        # An array child runs where its array schedules it (moto_scale.py's pool), which waits for its end.
        _run_attempts(self, job, runner)
        return
    threading.Thread(target=_run_attempts, args=(self, job, runner), name=f"batch-job-{job.job_id}",
                     daemon=True).start()


def retry_allowed(strategy: dict[str, Any], exit_code: int, status_reason: str) -> bool:
    """Batch's retryStrategy.evaluateOnExit: the first rule whose every condition matches decides (RETRY or
    EXIT); when none matches, the job is retried. A pattern matches exactly, or by prefix when it ends in *."""
    def matches(pattern: str | None, value: str) -> bool:
        return pattern is None or (value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern)

    for rule in strategy.get("evaluateOnExit") or []:
        # onReason is the container's own reason (e.g. out of memory), which the emulator never gives.
        if matches(rule.get("onExitCode"), str(exit_code)) and matches(rule.get("onReason"), "") \
                and matches(rule.get("onStatusReason"), status_reason):
            return rule["action"].upper() == "RETRY"
    return True


def _run_attempts(self: Any, job: Any, runner: JobRunner) -> None:
    """Each attempt in turn, recording what Batch records; whatever goes wrong here fails the job, saying why."""
    from moto.core.utils import unix_time_millis

    try:
        container = job.job_definition.container_properties or {}
        command = job._add_parameters_to_command(job._get_container_property("command", []))
        # Definition, then overrides, then AWS_BATCH_JOB_ID: moto merges them in that order (call it once).
        environment = {e["name"]: e["value"] for e in job._get_container_property("environment", [])}
        environment.update(AWS_BATCH_JQ_NAME=job.job_queue.name,
                           AWS_BATCH_CE_NAME=job.job_queue.env_order_json[0]["computeEnvironment"].split("/")[-1])
        attempts = max(1, min(10, int((job.job_definition.retry_strategy or {}).get("attempts", 1) or 1)))
        timeout = (job.timeout or job.job_definition.timeout or {}).get("attemptDurationSeconds")
        self.logs_backend.ensure_log_group(job._log_group)
        self.logs_backend.ensure_log_stream(job._log_group, job._stream_name)

        def log(line: str) -> None:
            self.logs_backend.put_log_events(job._log_group, job._stream_name,
                                             [{"timestamp": int(unix_time_millis()), "message": line}])

        for attempt in range(1, attempts + 1):
            if runner.running.closed:  # the emulator is stopping: no attempt starts any more
                job.job_stopped_reason = job.job_stopped_reason or SHUTDOWN_REASON
                break
            if job.stop:  # terminated before this attempt started
                break
            job.job_started_at = datetime.datetime.now()
            job._start_attempt()
            job.status = "RUNNING"
            # An array child's id is "<parent>:<index>"; a container name may not hold ":".
            run = JobRun(f"metaflow-r-{job.job_id.replace(':', '-')}-{attempt}", container.get("image", ""), command,
                         {**environment, "AWS_BATCH_JOB_ATTEMPT": str(attempt)})
            code, timed_out = run_attempt(runner, run, timeout, log, terminated=lambda: job.stop)
            job.exit_code = code
            job.latest_attempt["container"]["exitCode"] = code
            job.latest_attempt["statusReason"] = (job.job_stopped_reason if job.stop else
                                                  TIMEOUT_REASON if timed_out else EXIT_REASON)
            if code == 0 or timed_out or job.stop:  # neither a timed-out nor a terminated job is retried
                break
            if not retry_allowed(job.job_definition.retry_strategy or {}, code, EXIT_REASON):
                break
            if attempt < attempts:
                job.job_stopped_at = datetime.datetime.now()
                job._stop_attempt()
        if job.exit_code != 0:
            job.job_stopped_reason = job.job_stopped_reason or (job.latest_attempt or {}).get("statusReason")
        job._mark_stopped(success=job.exit_code == 0 and not job.stop)
    except Exception as exc:  # noqa: BLE001 - a job never stays RUNNING for a fault of the emulator's own
        job.job_stopped_reason = f"The emulator could not run the job: {type(exc).__name__}: {exc}"
        job._mark_stopped(success=False)
