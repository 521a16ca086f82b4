"""A wide foreach of real R tasks on the offline emulator: deploy once, run it 30 wide and N wide, and report
the wall time and the size of each run's execution history (which must not grow with the width).

    .venv/bin/python bench/emulator_wide.py --width 3000 --mode array          # about 40 min on 2 cores
    .venv/bin/python bench/emulator_wide.py --width 300 --mode distributed --max-workers 4

Each item is a Batch job running `metaflow-r batch-task` and an R task, as on AWS. The suite's
tests/python/test_foreach_scale.py runs 3,000 items with stand-in jobs instead (no R), in seconds.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

FLOW = """\
library(metaflow)
metaflow('EmulatedWideFlow') %>%
  parameter('width', default = 30L) %>%
  step(step = 'start', r_function = function(self) self$items <- seq_len(self$width), next_step = 'body',
       foreach = 'items') %>%
  step(step = 'body', r_function = function(self) self$out <- self$input, next_step = 'join') %>%
  step(step = 'join', r_function = function(self, inputs) self$n <- length(inputs), next_step = 'end', join = TRUE) %>%
  step(step = 'end') %>%
  run()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=3000)
    parser.add_argument("--mode", choices=["array", "distributed"], default="array")
    parser.add_argument("--max-workers", type=int, default=2)
    args = parser.parse_args()
    metaflow_r = str(Path(sys.executable).with_name("metaflow-r"))
    work = Path(tempfile.mkdtemp(prefix="emulator-wide-"))
    script = work / "wide.R"
    script.write_text(FLOW)
    env_file, log = work / "aws.env", open(work / "emulator.log", "w")
    server = subprocess.Popen([metaflow_r, "emulator", "--port", "0", "--env-file", str(env_file)], stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        while not env_file.exists():
            assert server.poll() is None, (work / "emulator.log").read_text()
            time.sleep(0.2)
        settings = dict(line[len("export "):].strip().split("=", 1) for line in env_file.read_text().splitlines())
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}, **settings}

        def rscript(*argv: str) -> str:
            done = subprocess.run(["Rscript", str(script), *argv], cwd=work, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"Rscript {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
            return done.stdout

        rscript("step-functions", "create", "--foreach-mode", args.mode, "--max-workers", str(args.max_workers),
                "--max-num-splits", str(args.width))
        sfn = boto3.client("stepfunctions", endpoint_url=settings["AWS_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id="emulated", aws_secret_access_key="emulated")
        arn = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
                   if m["name"] == "EmulatedWideFlow")
        print(f"EmulatedWideFlow, foreach as {args.mode}, --max-workers {args.max_workers}, {os.cpu_count()} cores")
        for width in (30, args.width):
            began = time.time()
            rscript("step-functions", "trigger", "--run-id", f"wide-{width}", "--width", str(width), "--wait")
            seconds = time.time() - began
            execution = arn.replace(":stateMachine:", ":execution:") + f":wide-{width}"
            events = [e for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution)
                      for e in page["events"]]
            print(f"  {width:>6,} items: SUCCEEDED in {seconds:7.1f} s ({seconds / (width + 3):.2f} s a task); "
                  f"the run's history: {len(events)} events")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
