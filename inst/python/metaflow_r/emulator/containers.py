"""Which container engine runs here: Docker when its daemon answers, else Podman.

A ``docker`` client without a daemon is common (and useless); a user's machine usually has a working
Docker, a CI machine often only Podman. Both take the same ``run`` and ``build`` arguments we use.
"""
from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

from metaflow_r.core.errors import ConfigurationError
from metaflow_r.core.procenv import ENGINES


@lru_cache(maxsize=1)
def container_engine() -> str | None:
    """``"docker"`` or ``"podman"``, whichever answers first, or None when neither can run a container."""
    for engine in ENGINES:
        if shutil.which(engine) is None:
            continue
        try:
            answered = subprocess.run([engine, "info"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            answered = False
        if answered:
            return engine
    return None


def require_engine() -> str:
    engine = container_engine()
    if engine is None:
        raise ConfigurationError(
            "No container engine answers here: neither `docker info` nor `podman info` succeeds.",
            [("i", "Start the Docker daemon, or install Podman (Debian: apt-get install podman runc)."),
             ("i", "Or run Batch jobs as local processes: metaflow-r emulator --batch-runner local.")])
    return engine
