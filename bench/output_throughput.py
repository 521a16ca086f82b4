"""How fast a task's output is read: the same bytes as lines, and as one endless line (a progress bar
redrawn with "\\r" never ends its line). First through launchers.LineBuffer alone, in 64 KiB reads as a
pipe delivers them; then end to end, a real local run whose step prints 100 MB with cat(). Linear reading
keeps the two forms within a small factor; the quadratic reader this replaced took 57 s on the endless
100 MB against 2.3 s in lines.

    .venv/bin/python bench/output_throughput.py [MiB]
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from metaflow_r.runtime.pipes import LineBuffer


def seconds(data: bytes) -> float:
    buffer = LineBuffer()
    began = time.perf_counter()
    for at in range(0, len(data), 65536):
        buffer.feed(data[at:at + 65536])
    buffer.rest()
    return time.perf_counter() - began


FLOW = """library(metaflow)
start <- function(self) cat(OUTPUT)
metaflow("OutputFlow") %>% step(step = "start", r_function = start, next_step = "end") %>% step(step = "end") %>% run()
"""


def run_seconds(output: str) -> float:
    with tempfile.TemporaryDirectory() as directory:
        script = os.path.join(directory, "flow.R")
        with open(script, "w") as handle:
            handle.write(FLOW.replace("OUTPUT", output))
        began = time.perf_counter()
        subprocess.run(["Rscript", script, "run"], cwd=directory, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - began


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    in_lines = seconds((b"x" * 1023 + b"\n") * (mib << 10))
    endless = seconds(b"\r" * (mib << 20))
    print(f"LineBuffer, {mib} MiB in 1 KiB lines: {in_lines:.3f} s; as one endless line: {endless:.3f} s "
          f"({endless / in_lines:.2f}x)")
    lines = run_seconds('rep(paste0(strrep("y", 99), "\\n"), 1e6)')
    endless_run = run_seconds('strrep("y", 1e8)')
    print(f"A local run printing 100 MB: in lines {lines:.1f} s; without a newline {endless_run:.1f} s "
          f"({endless_run / lines:.2f}x)")


if __name__ == "__main__":
    main()
