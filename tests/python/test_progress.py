"""What a local run prints: a counter per foreach step, live on a terminal and in plain lines elsewhere."""
from __future__ import annotations

import io
import os
import pty
import re
import shutil
import subprocess

import pytest

from metaflow_r.runtime.progress import RunConsole


def feed(console: RunConsole, step: str, width: int) -> None:
    for _ in range(width):
        console.queued(step)
    for i in range(width):
        console.started(step)
        console.task_line(f"1/{step}/{i}", "pid 99", step, "status", "Task is starting.")
        console.task_line(f"1/{step}/{i}", "pid 99", step, "stdout", f"output of task {i}")
        console.ended(step, done=True)
        console.task_line(f"1/{step}/{i}", "pid 99", step, "status", "Task finished successfully.")


def test_elsewhere_every_line_stays_and_the_counter_is_a_line_per_tenth():
    out = io.StringIO()
    console = RunConsole({"body"}, out, live=False)
    feed(console, "body", 40)
    lines = out.getvalue().splitlines()
    counters = [line for line in lines if line.startswith("  body:")]
    assert counters == [f"  body: {n}/40 done" for n in [1, *range(4, 41, 4)]]  # the first, then each tenth
    assert sum("Task is starting." in line for line in lines) == 40
    assert "\r" not in out.getvalue()


def test_on_a_terminal_the_counter_is_redrawn_in_place_instead_of_the_routine_lines():
    out = io.StringIO()
    console = RunConsole({"body"}, out, live=True)
    feed(console, "body", 12)
    console.task_line("1/end/13", "pid 99", "end", "status", "Task is starting.")  # not a counted step: kept
    console.close()
    text = out.getvalue()
    assert text.count("Task is starting") == 1 and "[1/end/13 (pid 99)] Task is starting." in text
    assert "Task finished successfully" not in text and "output of task 11" in text
    assert "\r\x1b[K  body: 12/12 done" in text
    assert text.endswith("\r\x1b[K")  # closed: the counter line is cleared, the terminal ready for what follows


WIDE = """library(metaflow)
start <- function(self) self$items <- 1:30
body <- function(self) self$y <- self$input
join <- function(self, inputs) NULL
metaflow("WideFlow") %>%
  step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%
  step(step = "body", r_function = body, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end") %>%
  run()
"""


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")
def test_a_real_run_on_a_terminal_and_in_a_pipe(tmp_path):
    script = tmp_path / "wide.R"
    script.write_text(WIDE)
    piped = subprocess.run(["Rscript", str(script), "run", "--max-workers", "2"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert "  body: 30/30 done" in piped.stdout and piped.stdout.count("Task is starting.") == 33

    leader, follower = pty.openpty()
    process = subprocess.Popen(["Rscript", str(script), "run", "--max-workers", "2"], cwd=tmp_path,
                               stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: the run ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=300) == 0
    shown = b"".join(chunks).decode()
    assert re.search(r"\r\x1b\[K  body: 30/30 done", shown)
    assert len(re.findall(r"/body/\d+ \(pid \d+\)\] Task is starting", shown)) == 0  # the counter stands for them
    assert shown.count("Task is starting.") == 3  # start, join, end


class InterruptedConsole(io.StringIO):
    """R's console as reticulate hands it to Python: Ctrl-C while R prints fails the write."""

    def write(self, text: str) -> int:
        raise RuntimeError("(Unknown exception occurred)")


def test_ctrl_c_while_r_prints_a_line_is_an_interrupt_not_a_failure_of_the_run():
    console = RunConsole({"body"}, InterruptedConsole(), live=False)
    with pytest.raises(KeyboardInterrupt):
        console.task_line("1/start/1", "pid 99", "start", "stdout", "hello")


def test_a_console_that_cannot_encode_a_line_is_not_mistaken_for_an_interrupt():
    console = RunConsole(set(), io.TextIOWrapper(io.BytesIO(), encoding="ascii"), live=False)
    with pytest.raises(UnicodeEncodeError):
        console.task_line("1/start/1", "pid 99", "start", "stdout", "caf\u00e9")
