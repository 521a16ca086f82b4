"""Start-up and memory, this package (R) against Python Metaflow, alternated A B A B.

Run by bench/startup_memory.sh with bench/.venv-metaflow's python (Python Metaflow and psutil). Measures:

- `show` and `run --help`: the whole command's wall time;
- the seed's ParameterFlow `run`: its whole wall time, and the time until its first task's first line of
  output reaches the command's stdout (what a user waits for before anything of theirs runs);
- a trivial foreach, 40 and 1,000 wide, at --max-workers 2 and 16: peak PSS of the command's process tree
  (bench/compare_metaflow.py explains the sampling), and wall time.

Every figure is the median of `reps` runs; the load average before and after is printed beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from compare_metaflow import PY_FLOW, R_FLOW, measure, print_machine

R_PARAMETER_FLOW = """\
library(metaflow)
start <- function(self) print(paste("alpha is", self$alpha))
end <- function(self) print(paste("alpha still is", self$alpha))
metaflow("ParameterFlow") %>%
  parameter("alpha", help = "learning rate", default = 0.1) %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""

PY_PARAMETER_FLOW = """\
from metaflow import FlowSpec, Parameter, step


class ParameterFlow(FlowSpec):
    alpha = Parameter("alpha", help="learning rate", default=0.1)

    @step
    def start(self):
        print("alpha is", self.alpha)
        self.next(self.end)

    @step
    def end(self):
        print("alpha still is", self.alpha)


if __name__ == "__main__":
    ParameterFlow()
"""

FIRST_TASK_LINE = b"alpha is"


def timed(command: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """The command's wall time, and the time until FIRST_TASK_LINE appeared on its output (nan if never)."""
    started = time.perf_counter()
    first = float("nan")
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    output = bytearray()
    for line in proc.stdout:
        output += line
        if FIRST_TASK_LINE in line and first != first:
            first = time.perf_counter() - started
    status = proc.wait()
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"failed with status {status}: {' '.join(command)}\n{output.decode(errors='replace')[-3000:]}")
    return wall, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "3")))
    parser.add_argument("--widths", default=os.environ.get("BENCH_WIDTHS", "40,1000"))
    parser.add_argument("--workers", default=os.environ.get("BENCH_WORKERS", "2,16"))
    args = parser.parse_args()
    rscript = "Rscript"
    print_machine(rscript)
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    work = tempfile.mkdtemp(prefix="metaflow-startup-")
    for name, text in {"parameter_flow.R": R_PARAMETER_FLOW, "parameter_flow.py": PY_PARAMETER_FLOW,
                       "wide.R": R_FLOW, "wide_flow.py": PY_FLOW}.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    runs = 0

    def env(**extra: str) -> dict[str, str]:
        nonlocal runs
        runs += 1
        return {**os.environ, "METAFLOW_DATASTORE_SYSROOT_LOCAL": os.path.join(work, f"ds-{runs}"),
                "METAFLOW_HOME": os.path.join(work, "no-config"), "METAFLOW_USER": "bench", "USERNAME": "bench",
                "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local", **extra}

    ours = {"show": [rscript, "parameter_flow.R", "show"], "run --help": [rscript, "parameter_flow.R", "run", "--help"],
            "ParameterFlow run": [rscript, "parameter_flow.R", "run"]}
    theirs = {"show": [sys.executable, "parameter_flow.py", "--no-pylint", "show"],
              "run --help": [sys.executable, "parameter_flow.py", "--no-pylint", "run", "--help"],
              "ParameterFlow run": [sys.executable, "parameter_flow.py", "--no-pylint", "run"]}
    print(f"\nStart-up, medians of {args.reps} (A B alternated): wall s; first task = s until its first line")
    print(f"{'':<22} {'ours':>8} {'Metaflow':>9} {'ratio':>6}   {'first task ours':>15} {'Metaflow':>9}")
    for what in ours:
        mine, other = [], []
        for _ in range(args.reps):
            mine.append(timed(ours[what], env(), work))
            other.append(timed(theirs[what], env(), work))
        wall = statistics.median(w for w, _ in mine), statistics.median(w for w, _ in other)
        first = statistics.median(f for _, f in mine), statistics.median(f for _, f in other)
        tail = f"   {first[0]:15.2f} {first[1]:9.2f}" if what == "ParameterFlow run" else ""
        print(f"{what:<22} {wall[0]:8.2f} {wall[1]:9.2f} {wall[0] / wall[1]:6.2f}{tail}", flush=True)

    print(f"\nMemory: a trivial foreach, peak PSS of the process tree, medians of {args.reps}")
    print(f"{'':<22} {'ours MiB':>9} {'Metaflow':>9} {'ratio':>6}   {'wall ours':>9} {'Metaflow':>9}")
    for width in map(int, args.widths.split(",")):
        for workers in map(int, args.workers.split(",")):
            mine, other = [], []
            for i in range(args.reps):
                mine.append(measure(f"R-{width}-{workers}-{i}", [rscript, "wide.R", "run", "--max-workers",
                                                                 str(workers)], env(BENCH_WIDTH=str(width)), work))
                other.append(measure(f"py-{width}-{workers}-{i}",
                                     [sys.executable, "wide_flow.py", "--no-pylint", "run", "--max-workers",
                                      str(workers), "--max-num-splits", str(max(width, 100))],
                                     env(BENCH_WIDTH=str(width)), work))
            pss = statistics.median(r["pss"] for r in mine), statistics.median(r["pss"] for r in other)
            wall = statistics.median(r["wall"] for r in mine), statistics.median(r["wall"] for r in other)
            print(f"{f'{width} wide, {workers} workers':<22} {pss[0]:9.0f} {pss[1]:9.0f} {pss[0] / pss[1]:6.2f}   "
                  f"{wall[0]:9.1f} {wall[1]:9.1f}", flush=True)
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
