"""`make image`: build the Batch image from inst/container/Dockerfile, tagged by a hash of its inputs.

The tag is ``metaflow-r:<12 hex digits>``, a SHA-256 over the Dockerfile, .dockerignore and every file
the Dockerfile's COPY instructions take from the build context. An image with that tag already present
means nothing changed: the second `make image` returns at once, and any change to an input builds anew.
The build is also tagged ``metaflow-r:latest``, the emulator's default image. Its manifest of R packages
(/opt/metaflow-r/r-packages.json) is then copied into its label ``org.metaflow-r.r-packages``.

Docker (when its daemon answers) pulls ``debian:bookworm-slim`` as usual. Podman on a machine that cannot
reach a registry gets an equivalent base made with debootstrap from the host's own apt mirror, with the
host's apt, pip and CA settings copied in so the build's apt-get and pip work as they do on the host.

    python tools/batch_image.py            build if needed; print the tag
    python tools/batch_image.py --tag      print the tag only
"""
from __future__ import annotations

import argparse
import fcntl
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metaflow_r.core.errors import MetaflowRError
from metaflow_r.core.procenv import engine_env
from metaflow_r.emulator.containers import require_engine
from metaflow_r.emulator.images import has_image, label_packages

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "inst" / "container" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
REPOSITORY = "metaflow-r"
BASE = "docker.io/library/debian:bookworm-slim"
SUITE = "bookworm"


# -- the inputs and their hash ------------------------------------------------------------------------

def dockerignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str] | None = None) -> bool:
    """Docker's rule, near enough: a pattern excludes a path or any directory above it, `**/` matches at
    any depth, the last matching pattern wins and a `!` pattern re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pattern in dockerignore_patterns() if patterns is None else patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            rest = pattern[3:]
            match = any(fnmatch.fnmatchcase(p, rest) or fnmatch.fnmatchcase(p, "*/" + rest) for p in prefixes)
        else:
            match = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)
        if match:
            result = not negate
    return result


def copied_sources() -> list[str]:
    """The build-context paths named by the Dockerfile's COPY instructions (the last word is the target)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def inputs() -> list[str]:
    """Every file the image is built from, relative to the repository root, sorted."""
    patterns = dockerignore_patterns()
    found = {"inst/container/Dockerfile", ".dockerignore"}
    for source in copied_sources():
        path = ROOT / source
        if path.is_file():
            found.add(source)
            continue
        for directory, subdirs, names in os.walk(path):
            relative_dir = Path(directory).relative_to(ROOT).as_posix()
            subdirs[:] = [d for d in subdirs if not ignored(f"{relative_dir}/{d}", patterns)]
            found.update(f"{relative_dir}/{n}" for n in names if not ignored(f"{relative_dir}/{n}", patterns))
    return sorted(found)


def image_tag() -> str:
    digest = hashlib.sha256()
    for relative in inputs():
        path = ROOT / relative
        # The mode matters too: ./configure must stay executable.
        digest.update(f"{relative}\0{path.stat().st_mode & 0o111:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


# -- the engine ---------------------------------------------------------------------------------------

def run(command: list[str], **kwargs) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)


# -- a base image without a registry --------------------------------------------------------------------

def host_mirror() -> str:
    """The Debian mirror the host's apt sources name (deb822 .sources or one-line .list format)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s", line + " ")
            if match:
                return match.group(1)
    return "http://deb.debian.org/debian"


def copy_host_settings(rootfs: Path) -> None:
    """What the build's apt-get and pip need to work here as on the host: apt sources and Acquire
    settings (mirror, proxy), global pip configuration, locally added CA certificates."""
    apt = Path("/etc/apt")
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in (".list", ".sources"):
            shutil.copy2(path, rootfs / path.relative_to("/"))
    for path in sorted((apt / "apt.conf.d").glob("*")):
        if path.is_file() and "Acquire::" in path.read_text(errors="replace"):
            shutil.copy2(path, rootfs / path.relative_to("/"))
    for path in (Path("/etc/pip.conf"), Path("/etc/xdg/pip")):
        target = rootfs / path.relative_to("/")
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        elif path.is_file():
            shutil.copy2(path, target)
    certificates = Path("/usr/local/share/ca-certificates")
    if certificates.is_dir():
        shutil.copytree(certificates, rootfs / certificates.relative_to("/"), dirs_exist_ok=True)


def debootstrap_base(engine: str) -> None:
    if shutil.which("debootstrap") is None:
        sys.exit(f"{BASE} cannot be pulled and debootstrap is missing: apt-get install debootstrap")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="metaflow-r-rootfs-", dir="/var/tmp") as directory:
        rootfs = Path(directory)
        run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), host_mirror()], stdout=subprocess.DEVNULL)
        copy_host_settings(rootfs)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run([engine, "import", "--change", 'CMD ["bash"]', "--change", "LABEL metaflow-r.base=debootstrap",
             "-", BASE], stdin=tar.stdout, stdout=subprocess.DEVNULL, env=engine_env(engine))
        if tar.wait() != 0:
            sys.exit("tar of the debootstrap root failed")
    print(f"Base {BASE} made from the apt mirror in {time.time() - started:.0f} s.", flush=True)


def ensure_base(engine: str) -> None:
    """Docker's build pulls the base itself; Podman pulls it here, or makes it when no registry answers."""
    if engine == "docker" or has_image(engine, BASE):
        return
    pulled = subprocess.run([engine, "pull", BASE], capture_output=True, text=True, env=engine_env(engine))
    if pulled.returncode != 0:
        print(f"{BASE} cannot be pulled ({pulled.stderr.strip().splitlines()[-1:]}); making it with debootstrap.",
              flush=True)
        debootstrap_base(engine)


def build() -> str:
    engine = require_engine()
    tag = image_tag()
    # Builds of one tag wait for each other (parallel test workers, two `make image`): the second finds
    # the image the first built instead of building it again beside it.
    with open(Path(tempfile.gettempdir()) / f"metaflow-r-image-{tag.split(':')[1]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if has_image(engine, tag):
            print(f"{tag} is up to date.", flush=True)
            return tag
        ensure_base(engine)
        started = time.time()
        run([engine, "build", "-f", str(DOCKERFILE), "-t", tag, "-t", f"{REPOSITORY}:latest", str(ROOT)],
            env=engine_env(engine))
        # The manifest the build wrote, copied into the label the R-package check reads without a container.
        label_packages(engine, tag, lambda line: print(line, flush=True), also=(f"{REPOSITORY}:latest",))
        print(f"{tag} built with {engine} in {time.time() - started:.0f} s.", flush=True)
        return tag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", action="store_true", help="print the tag the inputs give, build nothing")
    args = parser.parse_args()
    if args.tag:
        print(image_tag())
        return 0
    try:
        print(build())
    except subprocess.CalledProcessError as exc:
        print(f"Building the image failed: {' '.join(exc.cmd)} exited with {exc.returncode}.", file=sys.stderr)
        return 1
    except MetaflowRError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
