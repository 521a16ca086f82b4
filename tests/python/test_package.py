"""The code package Batch jobs download: deterministic bytes, the right files, and a verified hash."""
from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest
from conftest import make_spec, step

from metaflow_r.aws.code_package import MANIFEST, build_package, extract_package
from metaflow_r.core.errors import UsageError

VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}


@pytest.fixture
def project(tmp_path):
    """A flow directory as users have them: the script, helpers, data, and things that must stay home."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "flow.R").write_text("source('helpers.R')\nmetaflow('PackFlow') %>% run()\n")
    (root / "helpers.R").write_text("helper <- function() 1\n")
    (root / "lower.r").write_text("x <- 1\n")
    (root / "lib").mkdir()
    (root / "lib" / "more.R").write_text("more <- 2\n")
    (root / "data.csv").write_text("a,b\n1,2\n")
    (root / "notes.txt").write_text("not code\n")
    for hidden in (".metaflow", ".venv", ".git"):
        (root / hidden).mkdir()
        (root / hidden / "inside.R").write_text("stay home\n")
        (root / hidden / "inside.csv").write_text("stay home\n")
    (root / ".metaflow" / "PackFlow").mkdir()
    (root / ".metaflow" / "PackFlow" / "artifact.R").write_text("stay home\n")
    return root


def spec_for(root, suffixes=()):
    spec = make_spec("PackFlow", [step("start", "end"), step("end")], script=str(root / "flow.R"))
    spec["package_suffixes"] = list(suffixes)
    return spec


def build(root, suffixes=()):
    return build_package(str(root / "flow.R"), spec_for(root, suffixes), VERSIONS, tuple(suffixes))


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_same_inputs_give_the_same_bytes(project):
    first = build(project)
    second = build(project)
    assert first.data == second.data and first.sha == second.sha
    # Touching files (a checkout, a copy) changes no byte of the package.
    for path in project.rglob("*"):
        if path.is_file():
            os.utime(path, (1_000_000, 1_000_000))
    assert build(project).sha == first.sha


def test_changing_a_helper_changes_the_package(project):
    before = build(project).sha
    (project / "helpers.R").write_text("helper <- function() 2\n")
    assert build(project).sha != before


def test_script_and_r_files_beside_it_are_packaged(project):
    package = build(project)
    assert set(package.files) == {"flow.R", "helpers.R", "lower.r", os.path.join("lib", "more.R")}
    content = members(package.data)
    assert set(content) == {MANIFEST, *package.files}
    assert content["helpers.R"] == b"helper <- function() 1\n"


def test_script_with_another_suffix_is_still_packaged(tmp_path):
    (tmp_path / "flow.Rscript").write_text("# the flow\n")
    spec = make_spec("PackFlow", [step("start", "end"), step("end")], script=str(tmp_path / "flow.Rscript"))
    package = build_package(str(tmp_path / "flow.Rscript"), spec, VERSIONS)
    assert "flow.Rscript" in package.files


@pytest.mark.parametrize("suffixes", [(".csv",), ("csv",)])
def test_package_suffixes_add_files(project, suffixes):
    package = build(project, suffixes)
    assert "data.csv" in package.files
    assert "notes.txt" not in package.files
    assert members(package.data)["data.csv"] == b"a,b\n1,2\n"


def test_hidden_and_tool_directories_are_left_out(project):
    package = build(project, (".csv",))
    assert not [f for f in package.files if f.startswith((".metaflow", ".venv", ".git"))]
    assert all("stay home" not in content.decode() for content in members(package.data).values())


def test_files_beside_the_script_that_are_left_out_are_named(project):
    package = build(project)
    assert set(package.left_out) == {"data.csv", "notes.txt"}
    assert build(project, (".csv",)).left_out == ("notes.txt",)
    assert package.size == sum((project / f).stat().st_size for f in package.files)


def test_a_linked_directory_is_packaged_as_a_linked_file_is(project, tmp_path):
    shared = tmp_path / "elsewhere"
    shared.mkdir()
    (shared / "helper2.R").write_text("helper2 <- function() 2\n")
    (project / "shared").symlink_to(shared, target_is_directory=True)
    (project / "linked.R").symlink_to(shared / "helper2.R")
    package = build(project)
    assert {"shared/helper2.R", "linked.R"} <= set(package.files)
    assert members(package.data)["shared/helper2.R"] == b"helper2 <- function() 2\n"


def test_a_directory_linking_to_one_it_is_in_is_refused_naming_it(project):
    (project / "lib" / "loop").symlink_to("..", target_is_directory=True)
    with pytest.raises(UsageError, match=r"cannot hold lib/loop: it links to a directory it is in \(\.\.\)"):
        build(project)


def test_metaflow_s_comma_separated_suffixes_work(project):
    package = build(project, (".R,.csv",))
    assert "data.csv" in package.files and "notes.txt" not in package.files


def test_a_package_over_the_limit_is_refused_before_any_file_is_read(project, monkeypatch):
    from metaflow_r.aws import code_package as package_module

    for name in ("big.csv", "bigger.csv"):
        with open(project / name, "wb") as handle:
            handle.truncate(60 * 1024 * 1024)  # sparse: no disk used
    read = []
    monkeypatch.setattr(package_module.Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(UsageError) as error:
        build(project, (".csv",))
    message = str(error.value)
    assert "125,829," in message and f"{package_module.MAX_PACKAGE_BYTES:,}" in message
    assert "bigger.csv" in message and "S3" in message
    assert read == []
    # Without the suffix the same directory packages fine: the data stays home.
    monkeypatch.undo()
    assert "big.csv" in build(project).left_out


def test_manifest_holds_the_spec_script_name_and_versions(project):
    import json

    manifest = json.loads(members(build(project).data)[MANIFEST])
    assert manifest["script"] == "flow.R"
    assert manifest["spec"]["name"] == "PackFlow"
    assert manifest["versions"] == VERSIONS


def test_extract_verifies_the_hash(project, tmp_path):
    package = build(project)
    target = tmp_path / "out"
    manifest = extract_package(package.data, package.sha, str(target))
    assert manifest["script"] == "flow.R"
    assert (target / "flow.R").read_text() == (project / "flow.R").read_text()
    assert (target / "lib" / "more.R").read_text() == "more <- 2\n"


def test_extract_refuses_a_tampered_package(project, tmp_path):
    package = build(project)
    tampered = bytearray(package.data)
    tampered[len(tampered) // 2] ^= 0xFF
    target = tmp_path / "out"
    with pytest.raises(UsageError, match="hash"):
        extract_package(bytes(tampered), package.sha, str(target))
    assert not target.exists() or not any(target.iterdir())


def test_extract_refuses_another_package_with_a_valid_hash_of_its_own(project, tmp_path):
    package = build(project)
    (project / "helpers.R").write_text("helper <- function() 'evil'\n")
    other = build(project)
    with pytest.raises(UsageError):
        extract_package(other.data, package.sha, str(tmp_path / "out"))


# -- a package holds only plain files and directories inside the target, on every Python -------------------


def hostile(member: tarfile.TarInfo, content: bytes = b"") -> tuple[bytes, str]:
    """A gzipped tar holding a manifest and ``member``, and its sha (so only the member is wrong)."""
    import hashlib

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        manifest = tarfile.TarInfo(MANIFEST)
        manifest.size = 2
        tar.addfile(manifest, io.BytesIO(b"{}"))
        tar.addfile(member, io.BytesIO(content) if member.isfile() else None)
    data = gzip.compress(buffer.getvalue())
    return data, hashlib.sha256(data).hexdigest()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size
    return info


@pytest.mark.parametrize("member, what", [
    (_member("../escape.R", size=1), "outside"),
    (_member("lib/../../escape.R", size=1), "outside"),
    (_member("/tmp/absolute.R", size=1), "outside"),
    (_member("link.R", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    (_member("hard.R", tarfile.LNKTYPE, "metaflow.json"), "link"),
    (_member("fifo", tarfile.FIFOTYPE), "special"),
    (_member("device", tarfile.CHRTYPE), "special"),
])
def test_extract_refuses_links_special_files_and_paths_outside(tmp_path, member, what):
    data, sha = hostile(member, b"x" * member.size)
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(UsageError, match=what):
        extract_package(data, sha, str(target))
    assert list(target.iterdir()) == []  # refused before anything is written
    assert not (tmp_path / "escape.R").exists()
