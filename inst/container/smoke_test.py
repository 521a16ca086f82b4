"""The image build's smoke test: one real task with the image's own Python and R.

A Batch job downloads the flow's code package, unpacks it with this image's Python and runs a step in
R. This does the same offline: it builds a package of a tiny flow that reads a helper and a data file
beside its script, unpacks it, and runs the flow there. Exits non-zero (failing the build) otherwise.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from metaflow_r.aws.code_package import build_package, extract_package

FLOW = """library(metaflow)
source("helper.R")
start <- function(self) self$answer <- helper(read.csv("numbers.csv")$n)
end <- function(self) cat("smoke test answer:", self$answer, "\\n")
metaflow("SmokeTestFlow") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""
SPEC = {"name": "SmokeTestFlow", "script": None, "parameters": [], "decorators": [], "package_suffixes": [".csv"],
        "steps": [{"name": "start", "next": ["end"], "join": False, "foreach": None, "decorators": []},
                  {"name": "end", "next": [], "join": False, "foreach": None, "decorators": []}]}


def main() -> int:
    with tempfile.TemporaryDirectory() as work:
        project, unpacked = Path(work, "project"), Path(work, "unpacked")
        project.mkdir()
        (project / "flow.R").write_text(FLOW)
        (project / "helper.R").write_text("helper <- function(n) sum(n)\n")
        (project / "numbers.csv").write_text("n\n40\n2\n")
        script = str(project / "flow.R")
        package = build_package(script, {**SPEC, "script": script}, {"python": sys.version.split()[0]}, (".csv",))
        manifest = extract_package(package.data, package.sha, str(unpacked))
        done = subprocess.run(["Rscript", manifest["script"], "run"], cwd=unpacked, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0 or "smoke test answer: 42" not in done.stdout:
            print(f"Smoke test failed (exit status {done.returncode}):\n{done.stdout}\n{done.stderr}", file=sys.stderr)
            return 1
    print(f"Smoke test passed: a code package unpacked and ran with Python {sys.version.split()[0]} and R.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
