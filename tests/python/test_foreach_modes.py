"""Which construct each foreach gets (foreach_modes.py), and create refusing a plan that breaks a quota.

Through ``plan_deployment``, which compiles, chooses, and checks the budget (quota.py) before any AWS call;
the command line's options and messages are in test_sfn_cli.py."""
from __future__ import annotations

import copy

import pytest
from conftest import BRANCHING_BODY, FOREACH, NESTED_FOREACH, make_spec, step, write_flow_script

from metaflow_r.aws.settings import DeploySettings
from metaflow_r.aws.step_functions.plan import plan_deployment
from metaflow_r.aws.step_functions.quota import HISTORY_EVENTS, QuotaExceeded
from metaflow_r.core.errors import UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec


def plan(tmp_path, spec, *, modes=(), widths=(), max_workers=100):
    spec = copy.deepcopy(spec)
    spec["script"] = write_flow_script(tmp_path)
    settings = DeploySettings(s3_root="s3://mf-modes/metaflow", job_queue="queue", batch_role="arn:batch",
                              sfn_role="arn:sfn", dynamo_table="table", image="image")
    return plan_deployment(FlowGraph(parse_spec(spec)), spec, settings, max_workers=max_workers, with_retry=None,
                           versions={}, foreach_mode=tuple(modes), max_num_splits=tuple(widths))


@pytest.mark.parametrize("widths, max_workers, expected", [
    (("40",), 100, "inline"),  # every item at once within the inline Map's 40
    (("1900",), 10, "inline"),  # 10 at a time, 19,033 events: within 80 % of the quota
    (("2000",), 100, "array"),  # an inline Map would run 40, not 100, at once
    (("2000",), 10, "array"),  # 20,033 events: beyond 80 % of the quota
    ((), 100, "array"),  # the default, 10,000 items
])
def test_auto_keeps_a_narrow_foreach_inline_and_runs_a_wide_one_step_body_as_array_jobs(tmp_path, widths,
                                                                                          max_workers, expected):
    assert plan(tmp_path, FOREACH, widths=widths, max_workers=max_workers).budget.modes == {"start": expected}


def test_auto_runs_a_wide_body_of_several_steps_as_a_distributed_map(tmp_path):
    assert plan(tmp_path, BRANCHING_BODY).budget.modes == {"start": "distributed"}
    assert plan(tmp_path, BRANCHING_BODY, widths=["30"]).budget.modes == {"start": "inline"}


def test_auto_chooses_nested_foreaches_together(tmp_path):
    # 100 x 100 inline would be a history of about 100,000 events: the outer foreach becomes a distributed Map,
    # and each child execution runs its inner foreach inline (about 1,000 events each).
    budget = plan(tmp_path, NESTED_FOREACH, widths=["100"], max_workers=10).budget
    assert budget.modes == {"start": "distributed", "per_letter": "inline"}
    assert budget.largest_history < HISTORY_EVENTS * 0.8
    wide = plan(tmp_path, NESTED_FOREACH).budget
    assert wide.modes == {"start": "distributed", "per_letter": "array"}
    assert wide.run_history == plan(tmp_path, NESTED_FOREACH, widths=["3"], modes=["distributed", "per_letter=array"]
                                    ).budget.run_history  # the run's own history does not depend on the width


def test_a_foreach_forced_inline_fits_up_to_the_history_quota_and_no_further(tmp_path):
    # The example: ten events an item, plus the run's other states (33 events here).
    fits = plan(tmp_path, FOREACH, modes=["inline"], widths=["2496"], max_workers=10).budget
    assert fits.run_history == 24_993
    with pytest.raises(QuotaExceeded) as refused:
        plan(tmp_path, FOREACH, modes=["inline"], widths=["2497"], max_workers=10)
    message = str(refused.value)
    assert "25,003 history events" in message and "25,000" in message
    assert "--foreach-mode" in message and "--max-num-splits (now start 2,497)" in message


def test_an_inline_foreach_of_100000_items_breaks_the_payload_and_item_quotas_too(tmp_path):
    with pytest.raises(QuotaExceeded) as refused:
        plan(tmp_path, FOREACH, modes=["inline"], widths=["100000"])
    message = str(refused.value)
    assert "history events" in message
    assert "a state holds at most 262,144" in message
    assert "an item holds at most 409,600" in message


def test_array_jobs_and_distributed_maps_fit_a_100000_wide_foreach(tmp_path):
    for modes in (["array"], ["distributed"]):
        budget = plan(tmp_path, FOREACH, modes=modes, widths=["100000"]).budget
        # An array job per 10,000 items: ten chunks of ten events each in the run's history.
        assert budget.largest_history < 200 and budget.batch_jobs == 100_003


@pytest.mark.parametrize("option, value, message", [
    ("modes", "array", "cannot run as Batch array jobs: its body is more than one step"),
    ("modes", "serial", "is not a construct"),
    ("modes", "fan=inline", "'fan' is not a foreach step"),
    ("widths", "0", "is not a positive whole number"),
    ("widths", "lots", "is not a positive whole number"),
    ("widths", "join=10", "'join' is not a foreach step"),
])
def test_bad_options_are_one_clear_error(tmp_path, option, value, message):
    with pytest.raises(UsageError, match=message):
        plan(tmp_path, BRANCHING_BODY, **{option: [value]})


def test_one_foreach_can_be_named_apart_from_the_others(tmp_path):
    budget = plan(tmp_path, NESTED_FOREACH, modes=["distributed", "per_letter=inline"],
                  widths=["start=5000", "per_letter=20"]).budget
    assert budget.modes == {"start": "distributed", "per_letter": "inline"}
    assert budget.widths == {"start": 5000, "per_letter": 20}
    assert budget.child_executions == 5000 and budget.batch_jobs == 3 + 5000 * (2 + 20)


def test_a_foreach_task_learns_its_bound_and_what_to_publish(tmp_path):
    definition = plan(tmp_path, FOREACH, widths=["777"]).definition
    env = {e["Name"]: e.get("Value") for e in definition["States"]["start"]["Parameters"]["ContainerOverrides"]
           ["Environment"]}
    assert env["METAFLOW_MAX_NUM_SPLITS"] == "777" and env["METAFLOW_FOREACH_MODE"] == "array"


def test_a_flow_without_foreach_has_a_small_constant_budget(tmp_path):
    spec = make_spec("Plain", [step("start", "end"), step("end")])
    budget = plan(tmp_path, spec).budget
    assert budget.modes == {} and budget.transitions == 4 and budget.batch_jobs == 2
    assert budget.run_history == 2 + 2 + 2 + 6 + 6  # execution, Choice, Pass, two tasks
