"""The process ``Rscript flow.R <command>`` starts: the command in a Python of its own, R waiting beside it.

Embedding Python in the script's R (reticulate) costs every command about a second and 160 MiB (reticulate
loads Matrix); a child process costs neither. R writes the request (the command line, the flow's spec, what
R knows of itself) to a JSON file, runs ``main(FILE)`` in a session of its own (R/backend-process.R, once it
has checked the backend's version) and forwards a Ctrl-C it takes; this process ends when R does, so ``kill``
of the script stops the run.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def main(request_file: str) -> None:
    """Run the request's command (R's bootstrap has checked this backend is the R package's version)."""
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    end_with_parent()
    from metaflow_r.cli.entry import main as run_command

    sys.exit(run_command(request["argv"], request["spec"], request["info"]))


def end_with_parent() -> None:
    """SIGTERM this process when R (its parent) ends, however it ends: R cannot pass on a kill it dies of."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    else:  # no parent-death signal: watch for being adopted
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    if os.getppid() != parent:  # R ended before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    main(sys.argv[1])
