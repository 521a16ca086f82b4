"""Environment for the processes we start.

R puts Debian's library directory first on LD_LIBRARY_PATH; a Python started under it would load the
system libpython instead of the one it was built with. Every child gets our interpreter's lib dir first.
A container engine (Docker or Podman) gets the package's Podman settings.
"""
from __future__ import annotations

import os
import sysconfig

from metaflow_r.core import DATA_DIR

ENGINES = ("docker", "podman")
# runc and capped limits, for hosts where podman's defaults cannot start a container (see the file).
PODMAN_CONF = DATA_DIR / "podman-containers.conf"


def library_path() -> str:
    """LD_LIBRARY_PATH for a process we start: this interpreter's lib dir first (R, starting this Python,
    does the same: python_library_path() in R/backend-process.R)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    return os.pathsep.join([libdir, *current] if libdir else current)


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    path = library_path()
    if path:
        env["LD_LIBRARY_PATH"] = path
    env.update(extra or {})
    return env


def engine_env(engine: str) -> dict[str, str]:
    """The environment to run ``engine`` with: podman reads the package's containers.conf unless the user
    names one (tools/batch_image.py, whose builds need it on such hosts before any container ran)."""
    env = dict(os.environ)
    if engine == "podman":
        env.setdefault("CONTAINERS_CONF", str(PODMAN_CONF))
    return env
