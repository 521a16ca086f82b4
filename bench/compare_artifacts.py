"""This package (R) against Python Metaflow: storing large and many artifacts, and reading them back.

Run by `bench/with_metaflow.sh compare_artifacts.py` with bench/.venv-metaflow's python (Python Metaflow,
pandas).
One flow, start -> end, whose start step stores, as BENCH_KIND says:
  frame   a numeric data frame of --mb MB (5 columns of normal draws; pandas for Python Metaflow)
  vector  a numeric vector of --vector-mb MB (a numpy array for Python Metaflow)
  many    1,000 small artifacts (a_0001 = 1 ... a_1000 = 1000)
Each run is the whole command (`Rscript artifacts.R run`, `python artifacts_flow.py run`) with a fresh
datastore, then a second process reads the artifacts back through each one's Client API. Runs alternate
A B A B (R, then Python) `reps` times; the table shows medians.

What is reported, per run: `task` the start task's wall time from its records (start to committed), `gen` the
part of it the step spent making the data (stored as the artifact gen_seconds, so `task - gen` is what
storing costs, task start-up included), `read` the time the reader process spent from naming the task (its
pathspec) to holding every value (interpreter start-up and library loading excluded), and `run` the
whole command's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from compare_metaflow import print_machine

R_FLOW = """\
library(metaflow)
fill <- function(self) {
  started <- Sys.time()
  n <- as.numeric(Sys.getenv('BENCH_MB')) * 1e6 / 8
  switch(Sys.getenv('BENCH_KIND'),
    frame = self$big <- as.data.frame(lapply(c(a = 1, b = 2, c = 3, d = 4, e = 5), function(i) rnorm(n / 5))),
    vector = self$big <- rnorm(n),
    many = for (i in 1:1000) self[[sprintf('a_%04d', i)]] <- i
  )
  self$gen_seconds <- as.numeric(difftime(Sys.time(), started, units = 'secs'))
}
metaflow('ArtifactFlow') %>%
  step(step = 'start', r_function = fill, next_step = 'end') %>%
  step(step = 'end') %>%
  run()
"""

R_READ = """\
suppressMessages(library(metaflow))
args <- commandArgs(TRUE)
flow <- flow_client$new('ArtifactFlow')
pathspec <- paste('ArtifactFlow', flow$latest_successful_run, 'start', '1', sep = '/')
started <- Sys.time()
task <- task_client$new(pathspec)
names <- if (args[[1]] == 'many') grep('^a_', task$artifacts, value = TRUE) else 'big'
values <- lapply(names, task$artifact)
read <- as.numeric(difftime(Sys.time(), started, units = 'secs'))
stopifnot(length(values) == length(names))
cat(jsonlite::toJSON(list(read = read, task = as.numeric(difftime(task$finished_at, task$created_at,
                                                                  units = 'secs')),
                          gen = task$artifact('gen_seconds')), auto_unbox = TRUE, digits = NA))
"""

PY_FLOW = """\
import os
import time

from metaflow import FlowSpec, step


class ArtifactFlow(FlowSpec):
    @step
    def start(self):
        import numpy as np
        import pandas as pd

        started = time.time()
        n = int(float(os.environ["BENCH_MB"]) * 1e6 / 8)
        kind = os.environ["BENCH_KIND"]
        if kind == "frame":
            self.big = pd.DataFrame({c: np.random.standard_normal(n // 5) for c in "abcde"})
        elif kind == "vector":
            self.big = np.random.standard_normal(n)
        else:
            for i in range(1, 1001):
                setattr(self, "a_%04d" % i, i)
        self.gen_seconds = time.time() - started
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ArtifactFlow()
"""

PY_READ = """\
import json
import sys
import time

from metaflow import Flow, Task

pathspec = Flow("ArtifactFlow").latest_successful_run["start"].task.pathspec
started = time.perf_counter()
task = Task(pathspec)
# Its fastest way: each artifact listed once, read from its DataArtifact (task[name] looks each name up
# again: 2 to 3 s for 1,000).
artifacts = [a for a in task if a.id.startswith("a_")] if sys.argv[1] == "many" else [task["big"]]
values = [artifact.data for artifact in artifacts]
read = time.perf_counter() - started
assert len(values) == (1000 if sys.argv[1] == "many" else 1)
print(json.dumps({"read": read, "task": (task.finished_at - task.created_at).total_seconds(),
                  "gen": task["gen_seconds"].data}))
"""


def run(command: list[str], env: dict[str, str], cwd: str, label: str) -> str:
    """Runs command to its end; its stdout, or the benchmark stops with its output's tail."""
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.exit(f"{label} failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "2")))
    parser.add_argument("--mb", type=float, default=200, help="size of the data frame (MB)")
    parser.add_argument("--vector-mb", type=float, default=1000, help="size of the numeric vector (MB); 0 skips it")
    parser.add_argument("--kinds", default="frame,vector,many")
    args = parser.parse_args()

    rscript = shutil.which("Rscript") or sys.exit("Rscript not found")
    print_machine(rscript)
    workdir = tempfile.mkdtemp(prefix="metaflow-artifacts-")
    for name, text in (("artifacts.R", R_FLOW), ("read.R", R_READ), ("artifacts_flow.py", PY_FLOW),
                       ("read.py", PY_READ)):
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)
    sizes = {"frame": args.mb, "vector": args.vector_mb, "many": 0}
    kinds = [k for k in args.kinds.split(",") if sizes[k] or k == "many"]

    def measure(side: str, kind: str, rep: int) -> dict[str, float]:
        env = dict(os.environ, BENCH_KIND=kind, BENCH_MB=str(sizes[kind]),
                   METAFLOW_DATASTORE_SYSROOT_LOCAL=os.path.join(workdir, f"ds-{side}-{kind}-{rep}"),
                   METAFLOW_HOME=os.path.join(workdir, "no-config"), METAFLOW_USER="bench", USERNAME="bench",
                   METAFLOW_DEFAULT_DATASTORE="local", METAFLOW_DEFAULT_METADATA="local")
        flow, reader = ([rscript, "artifacts.R", "run"], [rscript, "read.R", kind]) if side == "R" else \
            ([sys.executable, "artifacts_flow.py", "--no-pylint", "run"], [sys.executable, "read.py", kind])
        started = time.perf_counter()
        run(flow, env, workdir, f"{side} {kind} run")
        result = {"run": time.perf_counter() - started, **json.loads(run(reader, env, workdir, f"{side} {kind} read"))}
        shutil.rmtree(env["METAFLOW_DATASTORE_SYSROOT_LOCAL"], ignore_errors=True)
        print(f"  {side:<7} {kind:<7} {rep}: task {result['task']:7.2f} s (gen {result['gen']:5.2f})   "
              f"read {result['read']:7.2f} s   run {result['run']:7.2f} s   load {os.getloadavg()[0]:.2f}", flush=True)
        return result

    print(f"\nload average (1 min) at the start: {os.getloadavg()[0]:.2f}; sizes: frame {args.mb:g} MB, vector "
          f"{args.vector_mb:g} MB; reps {args.reps}, alternating R / Python; work in {workdir}")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for kind in kinds:
        for rep in range(1, args.reps + 1):
            for side in ("R", "Python"):
                results.setdefault((side, kind), []).append(measure(side, kind, rep))
    print(f"\nMedians of {args.reps} (seconds)\n{'':<18} {'task':>7} {'gen':>6} {'store':>7} {'read':>7} {'run':>7}")
    for (side, kind), runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in ("task", "gen", "read", "run")}
        print(f"{side + ' ' + kind:<18} {med['task']:7.2f} {med['gen']:6.2f} {med['task'] - med['gen']:7.2f} "
              f"{med['read']:7.2f} {med['run']:7.2f}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
