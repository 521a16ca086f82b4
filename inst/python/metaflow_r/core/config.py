"""Settings as Metaflow users know them: environment variables, then ~/.metaflowconfig/config.json."""
from __future__ import annotations

import getpass
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _config_file() -> dict[str, Any]:
    home = os.environ.get("METAFLOW_HOME", str(Path.home() / ".metaflowconfig"))
    profile = os.environ.get("METAFLOW_PROFILE")
    path = Path(home, f"config_{profile}.json" if profile else "config.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def setting(name: str, default: str | None = None) -> str | None:
    """``METAFLOW_<name>`` from the environment, else from the config file, else ``default``."""
    key = f"METAFLOW_{name}"
    return os.environ.get(key) or _config_file().get(key) or default


def current_user() -> str:
    for key in ("METAFLOW_USER", "USER", "USERNAME"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry, as in some containers
        return "unknown"


def default_datastore() -> str:
    return setting("DEFAULT_DATASTORE", "local") or "local"
