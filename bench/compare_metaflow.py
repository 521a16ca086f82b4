"""This package (R) against Python Metaflow, end to end: a trivial foreach, N wide, at --max-workers 2.

Run by bench/compare_metaflow.sh with bench/.venv-metaflow's python (it has Python Metaflow and psutil).
Each run is the whole command, `Rscript wide.R run ...` or `python wide_flow.py run ...`, with a fresh
datastore of its own. The runs alternate A B A B (R, then Python, `reps` times), so a drift of the
machine hits both alike; the table shows medians. Then this package alone at a small width, to check
that its peak memory is flat in the foreach width.

Memory is sampled every 50 ms over the whole process tree of the command (it and all its descendants,
listed by psutil, each read from /proc/PID/smaps_rollup): the sum of RSS, and the sum of PSS
(proportional set size, which splits each shared page among the processes that map it, so forked
copy-on-write children are not counted twice). The peak of each sum over the run is reported. A process
that lives less than 50 ms may be missed.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version

import psutil

SAMPLE_SECONDS = 0.05
MIB = 1024 * 1024

R_FLOW = """\
library(metaflow)
width <- as.integer(Sys.getenv('BENCH_WIDTH'))
metaflow('WideFlow') %>%
  step(step = 'start', r_function = function(self) self$items <- seq_len(width), next_step = 'body', foreach = 'items') %>%
  step(step = 'body', r_function = function(self) self$out <- self$input, next_step = 'join') %>%
  step(step = 'join', r_function = function(self, inputs) NULL, next_step = 'end', join = TRUE) %>%
  step(step = 'end') %>%
  run()
"""

PY_FLOW = """\
import os
from metaflow import FlowSpec, step


class WideFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(1, int(os.environ["BENCH_WIDTH"]) + 1))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.out = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    WideFlow()
"""


def rss_pss(pid: int) -> tuple[int, int]:
    """A process's RSS and PSS in bytes, read together from /proc/PID/smaps_rollup (0, 0 if it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """The summed RSS and PSS, in bytes, of root and all its descendants."""
    try:
        pids = [root.pid] + [child.pid for child in root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    sizes = [rss_pss(pid) for pid in pids]
    return sum(rss for rss, _ in sizes), sum(pss for _, pss in sizes)


def measure(label: str, command: list[str], env: dict[str, str], cwd: str) -> dict[str, float]:
    """Runs command to its end; returns its wall time (s) and peak tree RSS and PSS (MiB)."""
    log_path = os.path.join(cwd, f"{label}.log")
    peak = {"rss": 0, "pss": 0}
    done = threading.Event()
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = psutil.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)

        def sample() -> None:
            while not done.is_set():
                rss, pss = tree_memory(proc)
                peak["rss"] = max(peak["rss"], rss)
                peak["pss"] = max(peak["pss"], pss)
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        status = proc.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    if status != 0:
        with open(log_path, errors="replace") as log:
            tail = log.readlines()[-30:]
        sys.exit(f"{label} failed with status {status}: {' '.join(command)}\n{''.join(tail)}")
    result = {"wall": wall, "rss": peak["rss"] / MIB, "pss": peak["pss"] / MIB}
    print(f"  {label:<18} {wall:8.1f} s   peak RSS {result['rss']:7.0f} MiB   peak PSS {result['pss']:7.0f} MiB",
          flush=True)
    return result


def command_output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        return f"({error})"


def print_machine(rscript: str) -> None:
    os_name = platform.platform()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        os_name = fields.get("PRETTY_NAME", os_name).strip('"')
    mem_line = next((line for line in command_output(["free", "-g"]).splitlines() if line.startswith("Mem:")), "?")
    r_versions = command_output([rscript, "-e", 'cat(R.version.string, "/ metaflow (R)", '
                                                'format(packageVersion("metaflow")))'])
    print(f"machine: {command_output(['nproc'])} cores (nproc); memory GiB (free -g) "
          f"total {mem_line.split()[1] if len(mem_line.split()) > 1 else '?'}; {os_name}")
    print(f"R:       {r_versions}")
    print(f"Python:  {platform.python_version()} / metaflow (Python) {version('metaflow')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=int(os.environ.get("BENCH_WIDTH", "1000")))
    parser.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "2")))
    parser.add_argument("--small-width", type=int, default=int(os.environ.get("BENCH_SMALL_WIDTH", "100")))
    args = parser.parse_args()

    rscript = shutil.which("Rscript") or sys.exit("Rscript not found")
    print_machine(rscript)
    load_start = os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix="metaflow-compare-")
    with open(os.path.join(workdir, "wide.R"), "w") as f:
        f.write(R_FLOW)
    with open(os.path.join(workdir, "wide_flow.py"), "w") as f:
        f.write(PY_FLOW)

    def env_for(width: int, datastore: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "BENCH_WIDTH": str(width),
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": os.path.join(workdir, datastore),  # fresh for each run
            "METAFLOW_HOME": os.path.join(workdir, "no-config"),  # no ~/.metaflowconfig profile applies
            # Python Metaflow: a fixed user (user:bench) whoever runs it; local datastore and metadata.
            "METAFLOW_USER": "bench",
            "USERNAME": "bench",
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local",
        })
        return env

    def run_r(width: int, label: str) -> dict[str, float]:
        return measure(label, [rscript, "wide.R", "run", "--max-workers", "2"], env_for(width, f"ds-{label}"),
                       workdir)

    def run_python(width: int, label: str) -> dict[str, float]:
        # --max-num-splits: Python Metaflow refuses a foreach wider than 100 by default.
        # --no-pylint: no lint before the run (pylint is not installed in the venv either).
        command = [sys.executable, "wide_flow.py", "--no-pylint", "run", "--max-workers", "2",
                   "--max-num-splits", str(max(args.width, 100))]
        return measure(label, command, env_for(width, f"ds-{label}"), workdir)

    print(f"\n{args.width}-wide trivial foreach, --max-workers 2, reps {args.reps}, alternating A B A B "
          f"(A = R package, B = Python Metaflow); flows and logs in {workdir}, removed at the end unless a run fails")
    r_runs, py_runs = [], []
    for i in range(1, args.reps + 1):
        r_runs.append(run_r(args.width, f"R-{args.width}-{i}"))
        py_runs.append(run_python(args.width, f"python-{args.width}-{i}"))
    print(f"\nR package alone at width {args.small_width}, reps {args.reps} (memory flatness)")
    small_runs = [run_r(args.small_width, f"R-{args.small_width}-{i}") for i in range(1, args.reps + 1)]

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    r_wall, py_wall = med(r_runs, "wall"), med(py_runs, "wall")
    print(f"\nResults: medians of {args.reps}; memory = peak over the run of the process tree's summed "
          f"RSS / PSS, sampled every {SAMPLE_SECONDS * 1000:.0f} ms")
    print(f"{'':<34} {'wall s':>8} {'peak RSS MiB':>13} {'peak PSS MiB':>13}")
    for name, runs in ((f"R package, width {args.width}", r_runs), (f"Python Metaflow, width {args.width}", py_runs),
                       (f"R package, width {args.small_width}", small_runs)):
        print(f"{name:<34} {med(runs, 'wall'):8.1f} {med(runs, 'rss'):13.0f} {med(runs, 'pss'):13.0f}")
    speedup = py_wall / r_wall
    print(f"\nwall time, Python / R at width {args.width}: {speedup:.2f}x  (target: at least 3x; "
          f"{'met' if speedup >= 3 else 'NOT met'})")
    ratio = med(r_runs, "pss") / med(small_runs, "pss")
    print(f"R peak PSS, width {args.width} / width {args.small_width}: {ratio:.2f}  "
          f"(target: within 20 %, 0.80 to 1.20; {'met' if 0.8 <= ratio <= 1.2 else 'NOT met'})")
    ratio = med(r_runs, "rss") / med(small_runs, "rss")
    print(f"R peak RSS, width {args.width} / width {args.small_width}: {ratio:.2f}  "
          f"(for reference only: the RSS sum counts the pages a forked task shares with its worker again)")
    print(f"load average (1 min): {load_start:.2f} before the first run (other work on the machine), "
          f"{os.getloadavg()[0]:.2f} at the end (this benchmark's own tasks included)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
