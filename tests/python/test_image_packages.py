"""The R packages a flow's steps use, checked against the Batch image before any AWS call
(aws/batch/image_packages.py): `create`, `run --with batch` and a decorator("batch") step of a local run
refuse a flow whose image lacks one, naming the package and its steps, with nothing uploaded or created."""
from __future__ import annotations

import json

import boto3
import pytest
from conftest import SFN_BUCKET, make_spec, step, write_flow_script

from metaflow_r.aws.batch import image_packages
from metaflow_r.aws.batch.image_packages import check_image_packages, image_packages as read_image_packages
from metaflow_r.cli.entry import main
from metaflow_r.core.errors import ConfigurationError, MissingRPackages
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec

VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}
IMAGE_HOLDS = {"packages": {"jsonlite": "1.8.4", "cli": "3.6.0", "Matrix": "1.5-3"}}


def packaged_step(name, next_steps=None, packages=(), decorators=None):
    return {**step(name, next_steps, decorators=decorators), "packages": list(packages)}


def table_flow(script, top_level=(), fit_decorators=None):
    """start -> fit (data.table, jsonlite) -> end (data.table::fwrite), as R's flow_spec() sends it."""
    return {**make_spec("TableFlow", [
        packaged_step("start", "fit"),
        packaged_step("fit", "end", ["data.table", "jsonlite"], decorators=fit_decorators),
        packaged_step("end", packages=["data.table", "sf"]),
    ], script=script), "packages": list(top_level)}


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    """The image's manifest as a file (what a user with the image only in ECR writes once)."""
    path = tmp_path / "r-packages.json"
    path.write_text(json.dumps(IMAGE_HOLDS))
    monkeypatch.setenv("METAFLOW_BATCH_IMAGE_MANIFEST", str(path))
    monkeypatch.setattr(image_packages, "local_label", lambda image: None)  # whatever images this host has
    return path


def cli(capsys, argv, spec, launch_dir):
    code = main(argv, json.dumps(spec), {"launch_dir": str(launch_dir), "rscript": "Rscript", "versions": VERSIONS})
    out, err = capsys.readouterr()
    return code, out, err


def nothing_on_aws():
    s3 = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=SFN_BUCKET).get("Contents", [])
    machines = boto3.client("stepfunctions", region_name="us-east-1").list_state_machines()["stateMachines"]
    definitions = boto3.client("batch", region_name="us-east-1").describe_job_definitions()["jobDefinitions"]
    return s3 == [] and machines == [] and definitions == []


def graph_of(spec):
    return FlowGraph(parse_spec(json.dumps(spec)))


# -- the check ---------------------------------------------------------------------------------------------


def test_each_missing_package_is_named_with_the_steps_using_it(tmp_path):
    graph = graph_of(table_flow(write_flow_script(tmp_path), top_level=["arrow"]))
    label = lambda image: json.dumps(IMAGE_HOLDS)  # noqa: E731
    with pytest.raises(MissingRPackages) as caught:
        check_image_packages(graph, {s: "img:1" for s in ("start", "fit", "end")}, print, "FIX", label)
    text = str(caught.value)
    assert text.splitlines()[0] == ("The image img:1 lacks R packages arrow, data.table, sf, which the flow's "
                                    "steps on AWS Batch use.")
    assert "arrow: used by the script's top level (every step)." in text
    assert "data.table: used by steps fit, end." in text
    assert "sf: used by step end." in text
    assert "jsonlite" not in text  # the image has it
    assert "Build an image with them: FIX" in text
    assert caught.value.exit_code == 5
    assert caught.value.r_classes()[:2] == ["metaflow_missing_packages", "metaflow_configuration_error"]
    assert caught.value.data == {"packages": ["arrow", "data.table", "sf"], "steps": ["end", "fit", "the script's "
                                                                                                   "top level"]}


def test_only_the_steps_on_batch_count(tmp_path):
    graph = graph_of(table_flow(write_flow_script(tmp_path)))
    label = lambda image: json.dumps({"packages": ["jsonlite", "data.table"]})  # noqa: E731
    check_image_packages(graph, {"fit": "img:1"}, print, "FIX", label)  # end (sf) stays local
    with pytest.raises(MissingRPackages, match="sf: used by step end"):
        check_image_packages(graph, {"fit": "img:1", "end": "img:1"}, print, "FIX", label)


def test_each_step_is_checked_against_its_own_image(tmp_path):
    graph = graph_of(table_flow(write_flow_script(tmp_path)))
    held = {"big:1": {"packages": ["jsonlite", "data.table", "sf"]}, "small:1": {"packages": ["jsonlite"]},
            "mid:1": {"packages": ["data.table"]}}
    label = lambda image: json.dumps(held[image])  # noqa: E731
    check_image_packages(graph, {"fit": "big:1", "end": "big:1"}, print, "FIX", label)
    with pytest.raises(MissingRPackages) as caught:
        check_image_packages(graph, {"fit": "small:1", "end": "mid:1", "start": "small:1"}, print, "FIX", label)
    assert str(caught.value).splitlines()[:3] == [
        "The images mid:1, small:1 lack R packages data.table, sf, which the flow's steps on AWS Batch use.",
        "\u2716 sf: used by step end (image mid:1).", "\u2716 data.table: used by step fit (image small:1)."]


def test_an_image_whose_packages_cannot_be_known_is_a_warning(tmp_path, no_metaflow_settings):
    graph = graph_of(table_flow(write_flow_script(tmp_path)))
    said = []
    check_image_packages(graph, {"fit": "remote:1"}, said.append, "FIX", lambda image: None)
    assert said == ["Warning: the R packages of image remote:1 are unknown here, so data.table, jsonlite could not "
                    "be checked. Set METAFLOW_BATCH_IMAGE_MANIFEST to its manifest (/opt/metaflow-r/r-packages.json "
                    "in the image), or pull the image, to check them before the jobs run."]
    said.clear()
    check_image_packages(graph, {"start": "remote:1"}, said.append, "FIX", lambda image: None)
    assert said == []  # a step using no package needs no list


def test_a_manifest_setting_that_is_not_a_manifest_is_refused(tmp_path, no_metaflow_settings, monkeypatch):
    monkeypatch.setenv("METAFLOW_BATCH_IMAGE_MANIFEST", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigurationError, match="which is not a file"):
        read_image_packages("remote:1", lambda image: None)
    (tmp_path / "bad.json").write_text("[1, 2]")
    monkeypatch.setenv("METAFLOW_BATCH_IMAGE_MANIFEST", str(tmp_path / "bad.json"))
    with pytest.raises(ConfigurationError, match="is not a manifest of R packages"):
        read_image_packages("remote:1", lambda image: None)


def test_the_local_label_wins_over_the_setting(tmp_path, no_metaflow_settings, monkeypatch):
    (tmp_path / "m.json").write_text(json.dumps({"packages": {"a": "1"}}))
    monkeypatch.setenv("METAFLOW_BATCH_IMAGE_MANIFEST", str(tmp_path / "m.json"))
    held, source = read_image_packages("img:1", lambda image: json.dumps({"packages": {"b": "2"}}))
    assert (held, source) == ({"b": "2"}, "the label of image img:1")
    held, source = read_image_packages("img:1", lambda image: None)
    assert (held, source) == ({"a": "1"}, str(tmp_path / "m.json"))


# -- the commands: refused before any AWS call --------------------------------------------------------------


def test_create_refuses_with_nothing_uploaded_or_created(capsys, moto_aws, manifest, launch_dir):
    spec = table_flow(write_flow_script(launch_dir, "table_flow.R"))
    code, out, err = cli(capsys, ["step-functions", "create"], spec, launch_dir)
    assert code == 5, out + err
    assert "The image 123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:1.0 lacks R packages data.table, sf" \
        in err
    assert "Build an image with them: Rscript table_flow.R image build" in err
    assert nothing_on_aws()


def test_create_goes_on_when_the_image_has_every_package(capsys, moto_aws, manifest, launch_dir):
    manifest.write_text(json.dumps({"packages": {"data.table": "1.14.8", "jsonlite": "1", "sf": "1"}}))
    code, out, err = cli(capsys, ["step-functions", "create"], table_flow(write_flow_script(launch_dir)), launch_dir)
    assert code == 0, out + err
    assert "is deployed to Step Functions" in out


def test_only_json_checks_no_image(capsys, no_metaflow_settings, launch_dir, monkeypatch):
    monkeypatch.setattr(image_packages, "local_label", lambda image: pytest.fail("looked at an image"))
    code, out, err = cli(capsys, ["step-functions", "create", "--only-json"], table_flow(write_flow_script(launch_dir)),
                         launch_dir)
    assert code == 0, err


def test_run_with_batch_refuses_before_any_aws_call(capsys, moto_aws, manifest, launch_dir):
    code, out, err = cli(capsys, ["run", "--with", "batch"], table_flow(write_flow_script(launch_dir)), launch_dir)
    assert code == 5, out + err
    assert "lacks R packages data.table, sf" in err
    assert "data.table: used by steps fit, end." in err
    assert nothing_on_aws()


def test_a_batch_decorated_step_of_a_local_run_is_checked_alone(capsys, moto_aws, manifest, launch_dir):
    batch = [{"name": "batch", "attributes": {"memory": 4096}}]
    code, out, err = cli(capsys, ["run"], table_flow(write_flow_script(launch_dir), fit_decorators=batch), launch_dir)
    assert code == 5, out + err
    assert "lacks R package data.table, which" in err and "data.table: used by step fit." in err
    assert "sf" not in err  # end runs locally
    assert nothing_on_aws()


# -- the derived image (built for real in test_image_e2e.py) ------------------------------------------------


def test_the_derived_tag_is_a_hash_of_the_base_and_the_sorted_packages():
    from metaflow_r.emulator.images import derived_tag

    tag = derived_tag("123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:1.0", ["sf", "data.table"])
    assert tag.startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:r-")
    assert tag == derived_tag("123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:1.0", ["data.table", "sf"])
    assert tag != derived_tag("123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:1.1", ["data.table", "sf"])
    assert tag != derived_tag("123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:1.0", ["data.table"])
    assert derived_tag("localhost:5000/metaflow-r", ["sf"]).startswith("localhost:5000/metaflow-r:r-")


def test_the_derived_image_installs_debian_builds_and_writes_the_manifest_again():
    from metaflow_r.emulator.images import debian_name, dockerfile

    assert debian_name("data.table") == "r-cran-data.table" and debian_name("Rcpp") == "r-cran-rcpp"
    text = dockerfile("metaflow-r:1.0", ["sf", "data.table"])
    assert text.splitlines()[0] == "FROM metaflow-r:1.0"
    assert "apt-get install -y --no-install-recommends r-cran-data.table r-cran-sf" in text
    assert "r-packages.R" in text and text.splitlines()[-1] == "USER 1000:1000"


def test_image_build_needs_an_image_to_build_from(capsys, no_metaflow_settings, launch_dir):
    code, out, err = cli(capsys, ["image", "build"], table_flow(write_flow_script(launch_dir)), launch_dir)
    assert code == 5
    assert "`image build` needs the image to build from." in err and "--base IMAGE" in err


def test_image_build_says_how_to_push_a_local_or_a_registry_tag():
    from metaflow_r.cli.image import _push_lines

    assert _push_lines("metaflow-r:r-abc") == ["docker tag metaflow-r:r-abc <registry>/metaflow-r:r-abc",
                                               "docker push <registry>/metaflow-r:r-abc",
                                               "export METAFLOW_BATCH_CONTAINER_IMAGE=<registry>/metaflow-r:r-abc"]
    ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:r-abc"
    assert _push_lines(ecr) == [f"docker push {ecr}", f"export METAFLOW_BATCH_CONTAINER_IMAGE={ecr}"]
