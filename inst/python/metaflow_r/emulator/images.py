"""Images built with the local container engine: the R-package label every Batch image carries, and the image
``Rscript flow.R image build`` derives from the configured one with the R packages a flow needs.

Beside containers.py because both drive the local Docker or Podman, which only this part of the backend does.
The derived image installs Debian's ``r-cran-*`` build of each package (no compiler, no CRAN), writes the
manifest again, and is tagged by a hash of its base and its sorted packages, so the same flow gives the same
tag and a second build is a no-op.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from metaflow_r.aws.batch.image_packages import LABEL, MANIFEST_PATH, local_label, parse_manifest
from metaflow_r.core.errors import ConfigurationError
from metaflow_r.core.procenv import engine_env

# The script that writes the manifest, as the metaflow R package installs it in the image (inst/container/).
WRITE_MANIFEST = "Rscript -e 'source(system.file(\"container\", \"r-packages.R\", package = \"metaflow\"))' >/dev/null"
APT_TIMEOUT = 900  # seconds: apt-get update and install of a few packages from a slow mirror


def has_image(engine: str, image: str) -> bool:
    return subprocess.run([engine, "image", "inspect", image], capture_output=True, env=engine_env(engine)).returncode == 0


def label_packages(engine: str, image: str, echo: Callable[[str], None], also: tuple[str, ...] = ()) -> dict[str, str]:
    """Copy ``image``'s manifest file into its label (a layer-less rebuild under the same tag, and the tags
    ``also``), so the check reads it with ``image inspect`` alone; returns the packages."""
    done = subprocess.run([engine, "run", "--rm", "--network", "host", image, "cat", MANIFEST_PATH],
                          capture_output=True, text=True, env=engine_env(engine), timeout=APT_TIMEOUT)
    if done.returncode != 0:
        raise ConfigurationError(f"Image {image} has no manifest of its R packages at {MANIFEST_PATH}.",
                                 [("x", done.stderr.strip()[-500:]),
                                  ("i", "Build it from inst/container/Dockerfile (make image), which writes one.")])
    compact = json.dumps(json.loads(done.stdout), separators=(",", ":"), sort_keys=True)
    with tempfile.TemporaryDirectory(prefix="metaflow-r-label-") as context:
        Path(context, "Dockerfile").write_text(f"FROM {image}\n", encoding="utf-8")
        _run([engine, "build", *_no_pull(engine), "--label", f"{LABEL}={compact}", "-t", image,
              *(a for tag in also for a in ("-t", tag)), context], engine)
    echo(f"{image} labelled {LABEL} ({len(json.loads(compact)['packages'])} R packages).")
    return parse_manifest(compact, image)


def debian_name(package: str) -> str:
    """Debian's binary package of CRAN package ``package``: r-cran-<name in lower case>, dots kept."""
    return f"r-cran-{package.lower()}"


def derived_tag(base: str, packages: list[str]) -> str:
    """``<base's repository>:r-<12 hex>``, a hash of the base and the sorted packages."""
    digest = hashlib.sha256("\n".join([base, *sorted(packages)]).encode()).hexdigest()[:12]
    repository = base.rsplit(":", 1)[0] if ":" in base.rsplit("/", 1)[-1] else base
    return f"{repository.split('@')[0]}:r-{digest}"


def dockerfile(base: str, packages: list[str]) -> str:
    debs = " ".join(debian_name(p) for p in sorted(packages))
    return (f"FROM {base}\n"
            "USER 0\n"
            f"RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {debs} "
            f"&& rm -rf /var/lib/apt/lists/* && {WRITE_MANIFEST}\n"
            "USER 1000:1000\n")


def not_in_debian(engine: str, base: str, packages: list[str]) -> list[str]:
    """The packages whose r-cran-* package the base image's apt sources do not have."""
    script = ('apt-get update -qq >/dev/null 2>&1 || { echo "apt-get update failed" >&2; exit 3; }; '
              'for p in "$@"; do apt-cache show --no-all-versions "$p" >/dev/null 2>&1 && echo "$p"; done')
    done = subprocess.run([engine, "run", "--rm", "--user", "0", "--network", "host", base, "sh", "-c", script, "sh",
                           *(debian_name(p) for p in packages)], capture_output=True, text=True,
                          env=engine_env(engine), timeout=APT_TIMEOUT)
    if done.returncode != 0:
        raise ConfigurationError(f"The apt sources of image {base} cannot be read.",
                                 [("x", done.stderr.strip()[-500:] or f"exit status {done.returncode}")])
    found = set(done.stdout.split())
    return [p for p in packages if debian_name(p) not in found]


def build_derived(engine: str, base: str, needed: list[str], echo: Callable[[str], None]) -> tuple[str, list[str]]:
    """The image holding ``needed`` (built FROM ``base`` when it lacks some), and the packages it added."""
    if not has_image(engine, base):
        raise ConfigurationError(f"Image {base} is not in the local {engine}.",
                                 [("i", f"Pull it first: {engine} pull {base}")])
    label = local_label(base)
    held = parse_manifest(label, base) if label is not None else {}
    if label is None:
        echo(f"Image {base} carries no list of its R packages; every package the flow uses is installed.")
    missing = [p for p in needed if p not in held]
    if not missing:
        echo(f"Image {base} already holds every R package the flow uses ({', '.join(needed) or 'none'}).")
        return base, []
    tag = derived_tag(base, missing)
    if has_image(engine, tag):
        echo(f"{tag} is up to date.")
        return tag, missing
    absent = not_in_debian(engine, base, missing)
    if absent:
        raise ConfigurationError(
            f"Debian has no r-cran-* package for {', '.join(absent)}.",
            [("i", f"Install {'it' if len(absent) == 1 else 'them'} in a Dockerfile of your own, FROM {base}: as root, "
                   "Rscript -e 'install.packages(...)' (with the build tools a package needs), then "
                   f"`{WRITE_MANIFEST.removesuffix(' >/dev/null')}` to record the packages, then USER 1000:1000."),
             ("i", f"The others are in Debian: {', '.join(debian_name(p) for p in missing if p not in absent)}." if
              len(absent) < len(missing) else "Check the names: R package names are case-sensitive.")])
    with tempfile.TemporaryDirectory(prefix="metaflow-r-derived-") as context:
        Path(context, "Dockerfile").write_text(dockerfile(base, missing), encoding="utf-8")
        _run([engine, "build", *_no_pull(engine), "-t", tag, context], engine)
    label_packages(engine, tag, echo)
    return tag, missing


def _no_pull(engine: str) -> list[str]:
    return ["--pull=never"] if engine == "podman" else []  # the base is local (checked above); Docker's default


def _run(command: list[str], engine: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=engine_env(engine))
    if done.returncode != 0:
        raise ConfigurationError(f"`{' '.join(command[:3])} ...` failed with exit status {done.returncode}.",
                                 [("x", line) for line in done.stderr.strip().splitlines()[-8:]])
