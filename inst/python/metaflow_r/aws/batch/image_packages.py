"""The R packages a flow's Batch jobs need, checked against what their image holds before any AWS call.

R finds each step's packages in its code and its decorator("packages") (R/packages.R), and those of the
script's top level, which every task runs; a job whose image lacks one would fail with "there is no package
called ..." in its log. The image records what it holds at build time (inst/container/r-packages.R): the
file ``MANIFEST_PATH`` in the image and the same JSON in its label ``LABEL``. Without pulling anything, the
list comes from, first found:

1. the label of the image in a local Docker or Podman (``image inspect``: exact, and nothing is pulled);
2. the manifest file ``METAFLOW_BATCH_IMAGE_MANIFEST`` names (``docker run --rm IMAGE cat MANIFEST_PATH``
   writes one), for an image that lives only in a registry such as ECR.

Neither: a warning names the packages left unchecked, and the command goes on.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Mapping

from metaflow_r.core.config import setting
from metaflow_r.core.errors import ConfigurationError, MissingRPackages
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.procenv import ENGINES, engine_env

LABEL = "org.metaflow-r.r-packages"
MANIFEST_PATH = "/opt/metaflow-r/r-packages.json"
MANIFEST_SETTING = "BATCH_IMAGE_MANIFEST"
TOP_LEVEL = "the script's top level"
INSPECT_TIMEOUT = 30  # seconds


def needed_packages(graph: FlowGraph, steps: list[str]) -> dict[str, list[str]]:
    """Each package the tasks of ``steps`` need, with what uses it: steps, or the script's top level."""
    users: dict[str, list[str]] = {package: [TOP_LEVEL] for package in graph.spec.packages}
    for step in steps:
        for package in graph[step].spec.packages:
            users.setdefault(package, []).append(step)
    return dict(sorted(users.items()))


def parse_manifest(text: str, source: str) -> dict[str, str]:
    """Package name -> version, from a manifest's JSON (``{"packages": {"name": "version"}}``)."""
    try:
        packages = json.loads(text)["packages"]
        if isinstance(packages, list):  # a list of names is enough to check by
            packages = {name: "" for name in packages}
        return {str(name): str(version) for name, version in dict(packages).items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{source} is not a manifest of R packages.",
                                 [("x", f"It does not read as {{\"packages\": {{name: version}}}}: {exc}"),
                                  ("i", f"Write it from the image: docker run --rm IMAGE cat {MANIFEST_PATH}")]) \
            from None


def local_label(image: str) -> str | None:
    """The image's package label, when a local Docker or Podman holds the image; never pulls it."""
    for engine in ENGINES:
        if shutil.which(engine) is None:
            continue
        try:
            done = subprocess.run([engine, "image", "inspect", "--format", "{{json .Config.Labels}}", image],
                                  capture_output=True, text=True, timeout=INSPECT_TIMEOUT, env=engine_env(engine))
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            labels = json.loads(done.stdout.strip() or "null") or {}
            if LABEL in labels:
                return labels[LABEL]
    return None


def image_packages(image: str, label: Callable[[str], str | None] = local_label) -> tuple[dict[str, str], str] | None:
    """What ``image`` holds and where that was read, or None when it cannot be known here."""
    found = label(image)
    if found is not None:
        return parse_manifest(found, f"The label {LABEL} of image {image}"), f"the label of image {image}"
    path = setting(MANIFEST_SETTING)
    if path:
        manifest = Path(path).expanduser()
        if not manifest.is_file():
            raise ConfigurationError(f"METAFLOW_{MANIFEST_SETTING} names {path}, which is not a file.",
                                     [("i", f"Write it from the image: docker run --rm IMAGE cat {MANIFEST_PATH} > "
                                            f"{path}")])
        return parse_manifest(manifest.read_text(encoding="utf-8"), str(manifest)), str(manifest)
    return None


def check_image_packages(graph: FlowGraph, images: Mapping[str, str], echo: Callable[[str], None],
                         fix: str, label: Callable[[str], str | None] = local_label) -> None:
    """Refuse, naming each package and its steps, when an image of ``images`` (step -> image) lacks a package
    its steps need; ``fix`` is the command that builds an image with them."""
    missing: list[tuple[str, str, list[str]]] = []
    unknown: dict[str, list[str]] = {}
    by_image: dict[str, list[str]] = {}
    for step, image in images.items():
        by_image.setdefault(image, []).append(step)
    for image, steps in sorted(by_image.items()):
        needed = needed_packages(graph, steps)
        if not needed:
            continue
        held = image_packages(image, label)
        if held is None:
            unknown[image] = list(needed)
            continue
        missing += [(image, package, users) for package, users in needed.items() if package not in held[0]]
    for image, packages in unknown.items():
        echo(f"Warning: the R packages of image {image} are unknown here, so {', '.join(packages)} could not be "
             f"checked. Set METAFLOW_{MANIFEST_SETTING} to its manifest ({MANIFEST_PATH} in the image), or pull "
             f"the image, to check them before the jobs run.")
    if missing:
        raise _missing_error(missing, fix)


def _missing_error(missing: list[tuple[str, str, list[str]]], fix: str) -> MissingRPackages:
    images = sorted({image for image, _, _ in missing})
    bullets: list[tuple[str, str]] = []
    for image, package, users in missing:
        where = f" (image {image})" if len(images) > 1 else ""
        bullets.append(("x", f"{package}: used by {_users(users)}{where}."))
    names = sorted({package for _, package, _ in missing})
    bullets += [("i", f"Build an image with them: {fix} (Debian's r-cran-* packages added to the image), push it "
                      "and name it in METAFLOW_BATCH_CONTAINER_IMAGE (docs/production.md)."),
                ("i", "A package the code does not show goes in decorator(\"packages\", packages = ...).")]
    return MissingRPackages(f"The image{'s' if len(images) > 1 else ''} {', '.join(images)} lack{'' if len(images) > 1 else 's'} R package{'s' if len(names) > 1 else ''} "
                            f"{', '.join(names)}, which the flow's steps on AWS Batch use.", bullets,
                            data={"packages": names, "steps": sorted({u for _, _, us in missing for u in us})})


def _users(users: list[str]) -> str:
    steps = [u for u in users if u != TOP_LEVEL]
    parts = ([TOP_LEVEL + " (every step)"] if TOP_LEVEL in users else []) + \
        ([f"step{'s' if len(steps) > 1 else ''} {', '.join(steps)}"] if steps else [])
    return " and ".join(parts)

