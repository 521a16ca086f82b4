"""``image build``: the Batch image a flow's R packages need, derived from the configured one."""
from __future__ import annotations

import click

from metaflow_r.cli.invocation import current
from metaflow_r.core.config import setting
from metaflow_r.core.errors import ConfigurationError


@click.group("image", help="The AWS Batch image the flow's steps run in.")
def image_group() -> None:
    """Only a group: its commands load the container code when they run."""


@image_group.command("build", help="Build an image holding every R package the flow's steps use: FROM "
                                   "METAFLOW_BATCH_CONTAINER_IMAGE (or --base), with Debian's r-cran-* packages, "
                                   "tagged r-<hash of the base and the packages>. Prints the tag.")
@click.option("--base", default=None, metavar="IMAGE",
              help="The image to build from (default: METAFLOW_BATCH_CONTAINER_IMAGE); it must be local.")
def build(base: str | None) -> None:
    from metaflow_r.aws.batch.image_packages import needed_packages
    from metaflow_r.emulator.containers import require_engine
    from metaflow_r.emulator.images import build_derived

    invocation = current()
    graph = invocation.graph()
    base = base or setting("BATCH_CONTAINER_IMAGE")
    if not base:
        raise ConfigurationError("`image build` needs the image to build from.",
                                 [("i", "Set METAFLOW_BATCH_CONTAINER_IMAGE, or pass --base IMAGE.")])
    needed = list(needed_packages(graph, [node.name for node in graph]))
    tag, added = build_derived(require_engine(), base, needed, click.echo)
    invocation.result = {"kind": "image", "image": tag, "added": added}
    if added:
        click.echo(f"Image {tag} holds {', '.join(added)} on top of {base}.")
        click.echo("Push it where AWS Batch pulls from, and name it for create and run --with batch:")
        for line in _push_lines(tag):
            click.echo(f"  {line}")
    click.echo(tag)


def _push_lines(tag: str) -> list[str]:
    """docker tag (for a local name) and push, and the setting that names the pushed image."""
    first = tag.split("/", 1)[0]
    in_registry = "/" in tag and ("." in first or ":" in first)  # a registry host, as Docker reads a name
    pushed = tag if in_registry else f"<registry>/{tag.rsplit('/', 1)[-1]}"
    return [*([] if in_registry else [f"docker tag {tag} {pushed}"]), f"docker push {pushed}",
            f"export METAFLOW_BATCH_CONTAINER_IMAGE={pushed}"]
