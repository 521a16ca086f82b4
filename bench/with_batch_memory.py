"""Peak memory of `run --with batch` on this machine's side: the process tree of `Rscript wide.R run --with
batch` (the R running the script, the backend's runtime with its Batch launcher, the reaper), with the
emulator (a moto server on 127.0.0.1, Batch jobs as local processes) standing in for AWS. The jobs are not
in that tree: on AWS they run elsewhere. Sampled as compare_metaflow.py samples (peak summed PSS).

    bench/with_metaflow.sh with_batch_memory.py [--width 40] [--workers 2,16]

Python Metaflow's side is not measured: its `--with batch` needs AWS Batch itself.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from compare_metaflow import R_FLOW, measure

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_env(env_file: Path) -> dict[str, str]:
    env = dict(os.environ)
    for line in env_file.read_text().splitlines():
        line = line.removeprefix("export ").strip()
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value.strip("'\"")
    return env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--workers", default="2,16")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="metaflow-bench-batch-"))
    # The width is written into the script: a Batch job has its own environment, not the shell's.
    (work / "wide.R").write_text(R_FLOW.replace("as.integer(Sys.getenv('BENCH_WIDTH'))", f"{args.width}L"))
    env_file = work / "aws.env"
    emulator = subprocess.Popen([str(ROOT / ".venv" / "bin" / "metaflow-r"), "emulator", "--port", str(free_port()),
                                 "--env-file", str(env_file)], cwd=work, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        env = emulator_env(env_file)
        for workers in args.workers.split(","):
            result = measure(f"R-batch-{args.width}-{workers}", ["Rscript", "wide.R", "run", "--with", "batch",
                                                                 "--max-workers", workers], env, str(work))
            print(f"{args.width} wide, --with batch, {workers} workers: peak PSS {result['pss']:.0f} MiB, "
                  f"wall {result['wall']:.1f} s", flush=True)
    finally:
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
