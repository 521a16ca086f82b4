"""The command line, in-process through ``main(argv, spec_json, info)``: output, help and exit codes."""
from __future__ import annotations

import pytest
from conftest import as_json, make_spec, param, step

from metaflow_r.cli.entry import main


def cli(capsys, argv, spec, launch_dir):
    code = main(argv, as_json(spec) if isinstance(spec, dict) else spec,
                {"launch_dir": str(launch_dir), "rscript": "Rscript"})
    out, err = capsys.readouterr()
    return code, out, err


def with_script(spec, launch_dir):
    spec["script"] = str(launch_dir / "flow.R")
    return spec


# -- show ----------------------------------------------------------------------------------------


def test_show_linear(capsys, linear_spec, launch_dir):
    code, out, err = cli(capsys, ["show"], linear_spec, launch_dir)
    assert code == 0 and err == ""
    assert out.splitlines() == ["Flow LinearFlow", "", "Steps:", "  start", "    => a", "  a", "    => end", "  end"]


def test_show_branch_names_the_join_inputs(capsys, branch_spec, launch_dir):
    code, out, _ = cli(capsys, ["show"], branch_spec, launch_dir)
    assert code == 0
    assert "  start\n    => a, b\n" in out
    assert "  join  (joins a, b)\n    => end" in out


def test_show_foreach_and_parameters(capsys, foreach_spec, launch_dir):
    foreach_spec["parameters"] = [param("alpha", default=0.5, type="float", help="Step size."),
                                  param("token", required=True)]
    code, out, _ = cli(capsys, ["show"], foreach_spec, launch_dir)
    assert code == 0
    assert "Parameters:\n  --alpha (float, default 0.5)  Step size.\n  --token (str, required)\n" in out
    assert "  start  (foreach over items)\n    => body" in out


def test_show_mermaid(capsys, nested_foreach_spec, launch_dir):
    code, out, _ = cli(capsys, ["show", "--mermaid"], nested_foreach_spec, launch_dir)
    assert code == 0
    assert out.splitlines() == [
        "flowchart TD",
        '    step_start["start"]',
        '    step_per_letter["per_letter"]',
        '    step_per_number["per_number"]',
        '    step_join_numbers["join_numbers"]',
        '    step_join_letters["join_letters"]',
        '    step_end["end"]',
        '    step_start -->|"foreach letters"| step_per_letter',
        '    step_per_letter -->|"foreach numbers"| step_per_number',
        "    step_per_number --> step_join_numbers",
        "    step_join_numbers --> step_join_letters",
        "    step_join_letters --> step_end",
    ]


def test_show_mermaid_branch(capsys, branch_spec, launch_dir):
    code, out, _ = cli(capsys, ["show", "--mermaid"], branch_spec, launch_dir)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    edges = {"    step_start --> step_a", "    step_start --> step_b", "    step_a --> step_join",
             "    step_b --> step_join", "    step_join --> step_end"}
    assert set(lines[6:]) == edges and len(lines) == 11


# -- help ----------------------------------------------------------------------------------------


def test_help_lists_commands(capsys, linear_spec, launch_dir):
    code, out, _ = cli(capsys, ["--help"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 0
    assert "Usage: Rscript flow.R" in out
    assert "Flow LinearFlow." in out
    for command in ("run", "resume", "show"):
        assert f"  {command} " in out
    assert "--with DECORATOR" in out


def test_run_help_lists_parameters_with_help(capsys, param_spec, launch_dir):
    code, out, _ = cli(capsys, ["run", "--help"], with_script(param_spec, launch_dir), launch_dir)
    assert code == 0
    assert "Usage: Rscript flow.R run [OPTIONS]" in out
    assert "--alpha FLOAT" in out and "Learning rate." in out
    assert "--n_items INTEGER" in out and "How many items." in out
    assert "--dry_run / --no-dry_run" in out
    assert "--token TEXT" in out and "[required]" in out
    assert "--max-workers" in out
    assert not (launch_dir / ".metaflow").exists()


def test_help_without_a_flow(capsys, launch_dir):
    code, out, _ = cli(capsys, ["--help"], None, launch_dir)
    assert code == 0
    assert "Usage: metaflow-r" in out and "The metaflow R backend." in out


# -- errors --------------------------------------------------------------------------------------


def test_unknown_option(capsys, linear_spec, launch_dir):
    code, out, err = cli(capsys, ["run", "--bogus", "1"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2
    assert "No such option" in err and "--bogus" in err
    assert "Traceback" not in out + err
    assert not (launch_dir / ".metaflow").exists()


def test_unknown_command(capsys, linear_spec, launch_dir):
    code, _, err = cli(capsys, ["frobnicate"], linear_spec, launch_dir)
    assert code == 2
    assert "No such command 'frobnicate'" in err


def test_bad_parameter_value(capsys, param_spec, launch_dir):
    code, out, err = cli(capsys, ["run", "--token", "t", "--n_items", "lots"], with_script(param_spec, launch_dir),
                         launch_dir)
    assert code == 2
    assert "Invalid value for '--n_items': 'lots' is not a valid integer." in err
    assert "Traceback" not in out + err
    assert not (launch_dir / ".metaflow").exists()


def test_missing_required_parameter(capsys, param_spec, launch_dir):
    code, _, err = cli(capsys, ["run"], with_script(param_spec, launch_dir), launch_dir)
    assert code == 2
    assert "Missing option '--token'" in err
    assert not (launch_dir / ".metaflow").exists()


def test_bad_value_of_a_list_parameter(capsys, launch_dir):
    spec = with_script(make_spec("F", [step("start", "end"), step("end")],
                                 parameters=[param("sizes", type="int", default="1,2", separator=",")]), launch_dir)
    code, out, err = cli(capsys, ["run", "--sizes", "1,x"], spec, launch_dir)
    assert code == 2
    assert "Parameter 'sizes': 'x' is not a valid integer." in err
    assert "Traceback" not in out + err
    assert not (launch_dir / ".metaflow").exists()


@pytest.mark.parametrize("command", [["show"], ["run"], ["resume"]])
def test_invalid_graph(capsys, launch_dir, command):
    spec = make_spec("F", [step("start", "trian"), step("train", "end"), step("end")],
                     script=str(launch_dir / "flow.R"))
    code, out, err = cli(capsys, command, spec, launch_dir)
    assert code == 3
    assert "Error: Step 'start' has next_step 'trian', which is not a step of the flow." in err
    assert "The steps are: start, train, end." in err
    assert "Traceback" not in out + err
    assert not (launch_dir / ".metaflow").exists()


def test_malformed_spec(capsys, launch_dir):
    code, out, err = cli(capsys, ["show"], '{"steps": [}', launch_dir)
    assert code == 3
    assert "The flow description sent by R is malformed." in err
    assert "Traceback" not in out + err


def test_command_needing_a_flow(capsys, launch_dir):
    code, _, err = cli(capsys, ["show"], None, launch_dir)
    assert code == 2
    assert "This command needs a flow." in err


def test_with_bogus_decorator(capsys, linear_spec, launch_dir):
    code, out, err = cli(capsys, ["--with", "bogus", "run"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2
    assert "--with 'bogus' is not supported." in err
    assert "Use --with retry, --with retry:times=N, or --with batch" in err
    assert "Traceback" not in out + err
    assert not (launch_dir / ".metaflow").exists()


@pytest.mark.parametrize("entry", ["retry:times=two", "retry:tries=2", "retry:times=-1"])
def test_with_retry_bad_attribute(capsys, linear_spec, launch_dir, entry):
    code, _, err = cli(capsys, ["--with", entry, "run"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2
    assert f"--with '{entry}': cannot read" in err
    assert not (launch_dir / ".metaflow").exists()


def test_with_batch_names_every_missing_setting_before_anything_runs(capsys, linear_spec, launch_dir):
    code, out, err = cli(capsys, ["run", "--with", "batch"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 5
    assert "Running steps on AWS Batch (--with batch) needs settings that are missing:" in err
    for name in ("METAFLOW_DATASTORE_SYSROOT_S3", "METAFLOW_BATCH_JOB_QUEUE", "METAFLOW_ECS_S3_ACCESS_IAM_ROLE",
                 "METAFLOW_BATCH_CONTAINER_IMAGE"):
        assert name in err
    # A local run on Batch has no state machine: Step Functions' own settings are not asked for.
    assert "SFN_IAM_ROLE" not in err and "DYNAMO_DB" not in err
    assert "Traceback" not in out + err and not (launch_dir / ".metaflow").exists()


def test_with_batch_refuses_a_local_datastore(capsys, linear_spec, launch_dir):
    code, _, err = cli(capsys, ["--datastore", "local", "--with", "batch", "run"],
                       with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2
    assert "--with batch stores the run in S3; --datastore local cannot hold it." in err
    assert not (launch_dir / ".metaflow").exists()


@pytest.mark.parametrize("entry, says", [
    ("batch:cpu=lots", "cpu must be"), ("batch:gpus=1", "batch takes"), ("batch:cpu", "cannot read 'cpu'"),
    ("batch:memory=-5", "memory must be")])
def test_with_batch_bad_attribute(capsys, linear_spec, launch_dir, entry, says):
    code, _, err = cli(capsys, ["run", "--with", entry], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2
    assert f"--with '{entry}'" in err and says in err
    assert not (launch_dir / ".metaflow").exists()


def test_run_without_a_script(capsys, linear_spec, launch_dir):
    code, _, err = cli(capsys, ["run"], linear_spec, launch_dir)
    assert code == 2
    assert "The flow's script is unknown" in err


def test_bad_datastore_choice(capsys, linear_spec, launch_dir):
    code, _, err = cli(capsys, ["--datastore", "gcs", "show"], linear_spec, launch_dir)
    assert code == 2
    assert "Invalid value for '--datastore'" in err


def test_s3_datastore_without_configuration(capsys, linear_spec, launch_dir, monkeypatch):
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_S3", raising=False)
    monkeypatch.setenv("METAFLOW_HOME", str(launch_dir / "no-config"))
    code, out, err = cli(capsys, ["--datastore", "s3", "run"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 5
    assert "No S3 datastore is configured." in err
    assert "Traceback" not in out + err


def test_resume_without_runs(capsys, linear_spec, launch_dir):
    code, _, err = cli(capsys, ["resume"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2
    assert "Flow LinearFlow has no ended run of yours" in err


def test_resume_of_an_unknown_run(capsys, linear_spec, launch_dir):
    from metaflow_r.datastore.flow import FlowDatastore
    from metaflow_r.datastore.storage import LocalStorage

    ds = FlowDatastore(LocalStorage(launch_dir / ".metaflow"), "LinearFlow")
    ds.new_run([], {}, "ann", run_id="111")
    code, _, err = cli(capsys, ["resume", "--origin-run-id", "111"], with_script(linear_spec, launch_dir),
                       launch_dir)
    assert code == 2 and "Run LinearFlow/111 has not ended: it cannot be resumed yet." in err
    ds.finish_run("111", False)
    code, _, err = cli(capsys, ["resume", "--origin-run-id", "999"], with_script(linear_spec, launch_dir),
                       launch_dir)
    assert code == 2
    assert "Run LinearFlow/999 does not exist." in err
    assert "Known runs: 111." in err
    code, _, err = cli(capsys, ["resume", "nostep", "--origin-run-id", "111"], with_script(linear_spec, launch_dir),
                       launch_dir)
    assert code == 2
    assert "The flow has no step 'nostep' to resume from." in err


def test_the_datastore_root_comes_from_the_environment(capsys, linear_spec, launch_dir, monkeypatch):
    from metaflow_r.datastore.flow import FlowDatastore
    from metaflow_r.datastore.storage import LocalStorage

    monkeypatch.setenv("METAFLOW_USER", "ann")
    ds = FlowDatastore(LocalStorage(launch_dir / ".metaflow"), "LinearFlow")
    ds.new_run(["user:ann"], {}, "ann", run_id="111")
    ds.finish_run("111", False)
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(launch_dir / "elsewhere"))
    code, _, err = cli(capsys, ["resume"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2 and "Flow LinearFlow has no ended run of yours" in err
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_LOCAL")
    code, _, err = cli(capsys, ["resume", "nostep"], with_script(linear_spec, launch_dir), launch_dir)
    assert code == 2 and "The flow has no step 'nostep'" in err


# -- Ctrl-C ----------------------------------------------------------------------------------------


class CtrlCWhenWritten:
    """A console where the user presses Ctrl-C as soon as something is printed."""

    def __init__(self, after: str = "") -> None:
        self.after, self.text = after, ""

    def write(self, text: str) -> int:
        if self.after in self.text + text:
            self.after = "\0never"  # one Ctrl-C
            raise KeyboardInterrupt
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_ctrl_c_outside_a_run_exits_130_and_says_so(capsys, linear_spec, launch_dir, monkeypatch):
    monkeypatch.setattr("sys.stdout", CtrlCWhenWritten())
    code, _, err = cli(capsys, ["show"], linear_spec, launch_dir)
    assert (code, err.strip()) == (130, "Interrupted.")


def test_ctrl_c_while_an_error_is_reported_still_exits_130_without_a_traceback(capsys, launch_dir, monkeypatch):
    stderr = CtrlCWhenWritten(after="Error:")
    monkeypatch.setattr("sys.stderr", stderr)
    code = main(["resume"], as_json(with_script(make_spec("F", [step("start", "end"), step("end")]), launch_dir)),
                {"launch_dir": str(launch_dir), "rscript": "Rscript"})
    assert code == 130 and "Traceback" not in stderr.text
