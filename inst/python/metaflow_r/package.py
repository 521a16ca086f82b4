"""The code package: a deterministic, content-hashed tarball of the flow's directory for Batch jobs.

Holds the flow script, the files beside it with a packaged suffix, and ``metaflow.json`` (the graph
spec, the script's name, the versions used). The same inputs always give the same bytes and sha.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

DEFAULT_SUFFIXES = (".R", ".r")
EXCLUDED_DIRS = {".metaflow", ".venv", ".git", "node_modules", "__pycache__", ".Rproj.user"}
MAX_FILE_BYTES = 10 * 1024 * 1024
MANIFEST = "metaflow.json"


@dataclass(frozen=True)
class CodePackage:
    data: bytes
    sha: str
    files: tuple[str, ...]
    skipped: tuple[str, ...]  # files left out for their size


def build_package(script: str, spec: dict[str, Any], versions: dict[str, str],
                  suffixes: tuple[str, ...] = ()) -> CodePackage:
    root = Path(script).parent
    wanted = tuple(DEFAULT_SUFFIXES) + tuple(s if s.startswith(".") else f".{s}" for s in suffixes)
    files: list[str] = []
    skipped: list[str] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in sorted(names):
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if not name.endswith(wanted) and path != Path(script):
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                skipped.append(relative)
                continue
            files.append(relative)
    manifest = {"spec": spec, "script": Path(script).name, "versions": versions, "files": files}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, json.dumps(manifest, sort_keys=True, indent=1).encode())
        for relative in files:
            _add(tar, relative, Path(root, relative).read_bytes())
    data = gzip.compress(buffer.getvalue(), mtime=0)
    return CodePackage(data, hashlib.sha256(data).hexdigest(), tuple(files), tuple(skipped))


def _add(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(content))


def extract_package(data: bytes, expected_sha: str, target: str) -> dict[str, Any]:
    """Unpack a package after checking its hash; returns its manifest."""
    sha = hashlib.sha256(data).hexdigest()
    if sha != expected_sha:
        raise UsageError(f"The code package's hash is {sha}, not the expected {expected_sha}.",
                         [("i", "Deploy again with step-functions create.")])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r") as tar:
        tar.extractall(target, filter="data")
    return json.loads(Path(target, MANIFEST).read_text())
