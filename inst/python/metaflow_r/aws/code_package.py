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
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from metaflow_r.core.errors import UsageError

DEFAULT_SUFFIXES = (".R", ".r")
EXCLUDED_DIRS = {".metaflow", ".venv", ".git", "node_modules", "__pycache__", ".Rproj.user"}
# Every Batch task downloads and unpacks the whole package, in memory, before its step starts, and the
# package is uploaded in one PutObject; AWS advises multipart uploads above 100 MB. Data that large
# belongs in S3, read by the step, not in the code package.
MAX_PACKAGE_BYTES = 100 * 1024 * 1024
MANIFEST = "metaflow.json"


@dataclass(frozen=True)
class CodePackage:
    data: bytes
    sha: str
    files: tuple[str, ...]
    size: int  # bytes of the packaged files, uncompressed
    left_out: tuple[str, ...]  # files beside the script whose suffix is not packaged


def normalise_suffixes(suffixes: Iterable[str]) -> tuple[str, ...]:
    """``".csv"``, ``"csv"`` and ``".R,.csv"`` (Metaflow's --package-suffixes form) all work."""
    found: list[str] = []
    for entry in suffixes:
        for suffix in str(entry).split(","):
            suffix = suffix.strip()
            if suffix:
                found.append(suffix if suffix.startswith(".") else f".{suffix}")
    return tuple(dict.fromkeys(found))


def build_package(script: str, spec: dict[str, Any], versions: dict[str, str],
                  suffixes: Iterable[str] = ()) -> CodePackage:
    root = Path(script).parent
    wanted = DEFAULT_SUFFIXES + normalise_suffixes(suffixes)
    files: list[str] = []
    left_out: list[str] = []
    for directory, names in _walk(root):
        for name in names:
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if name.startswith(".") or not path.is_file():
                continue
            if name.endswith(wanted) or path == Path(script):
                files.append(relative)
            else:
                left_out.append(relative)
    _check_size(root, files)
    manifest = {"spec": spec, "script": Path(script).name, "versions": versions, "files": files}
    buffer = io.BytesIO()
    size = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, json.dumps(manifest, sort_keys=True, indent=1).encode())
        for relative in files:
            content = Path(root, relative).read_bytes()
            size += len(content)
            _add(tar, relative, content)
    data = gzip.compress(buffer.getvalue(), mtime=0)
    return CodePackage(data, hashlib.sha256(data).hexdigest(), tuple(files), size, tuple(left_out))


def _walk(root: Path) -> Iterable[tuple[str, list[str]]]:
    """Each directory below ``root`` with its file names, sorted. A linked directory is followed, as a linked
    file is (a job sees what the script sees); one that links back to a directory it is in is refused."""
    for directory, subdirs, names in os.walk(root, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        here = Path(directory).resolve()
        for name in subdirs:
            if here.is_relative_to(Path(directory, name).resolve()):
                link = Path(directory, name).relative_to(root).as_posix()
                raise UsageError(f"The code package cannot hold {link}: it links to a directory it is in "
                                 f"({os.readlink(Path(directory, name))}), so it would hold itself forever.",
                                 [("i", "Remove the link, or make it point elsewhere, then deploy again.")])
        yield directory, sorted(names)


def _check_size(root: Path, files: list[str]) -> None:
    """Refuse, before reading anything, a package over MAX_PACKAGE_BYTES, naming the largest files."""
    sizes = {relative: Path(root, relative).stat().st_size for relative in files}
    total = sum(sizes.values())
    if total <= MAX_PACKAGE_BYTES:
        return
    largest = sorted(sizes, key=lambda f: -sizes[f])[:5]
    raise UsageError(
        f"The code package would hold {total:,} bytes; the limit is {MAX_PACKAGE_BYTES:,} "
        f"({MAX_PACKAGE_BYTES // 1024 // 1024} MB), since every Batch task downloads and unpacks all of it.",
        [("x", f"Largest: {', '.join(f'{f} ({sizes[f]:,} bytes)' for f in largest)}."),
         ("i", "Put large data in S3 and read it in the step; package only code and small files."),
         ("i", "Or drop a suffix from --package-suffixes, or move the files out of the script's directory.")])


def _add(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(content))


def extract_package(data: bytes, expected_sha: str, target: str) -> dict[str, Any]:
    """Unpack a package after checking its hash; returns its manifest.

    Written out member by member rather than with ``extractall``: its safety ``filter`` argument is
    missing from Debian bookworm's Python 3.11.2 (the image's), and a package may hold only plain files
    and directories with relative paths that stay inside ``target``, whatever the Python."""
    sha = hashlib.sha256(data).hexdigest()
    if sha != expected_sha:
        raise UsageError(f"The code package's hash is {sha}, not the expected {expected_sha}.",
                         [("i", "Deploy again with step-functions create.")])
    root = Path(target)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        for member in members:
            path = root.joinpath(*member.name.split("/"))
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # a regular file, checked above
            path.write_bytes(source.read())
            path.chmod(0o644)
    return json.loads(Path(target, MANIFEST).read_text())


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = name.split("/")
    if member.issym() or member.islnk():
        kind = "a link"
    elif not (member.isfile() or member.isdir()):
        kind = "a special file"
    elif not name or posixpath.isabs(name) or ".." in parts:
        kind = "a path outside the package"
    else:
        return
    raise UsageError(f"The code package holds {kind} ({name!r}); it was not made by step-functions create.",
                     [("i", "Deploy again with step-functions create.")])
