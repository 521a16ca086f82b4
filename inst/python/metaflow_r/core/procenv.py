"""Environment for the processes we start.

R puts Debian's library directory first on LD_LIBRARY_PATH; a Python started under it would load the
system libpython instead of the one it was built with. Every child gets our interpreter's lib dir first.
"""
from __future__ import annotations

import os
import sysconfig


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        current = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *current])
    env.update(extra or {})
    return env
