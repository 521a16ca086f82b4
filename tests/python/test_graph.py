"""Graph validation: every invalid graph gets a specific message; valid graphs are analysed correctly."""
from __future__ import annotations

import re

import pytest
from conftest import make_spec, param, step

from metaflow_r.core.errors import GraphError, ParameterError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec


def graph_of(spec) -> FlowGraph:
    return FlowGraph(parse_spec(spec))


def graph_error(spec, match: str) -> GraphError:
    with pytest.raises(GraphError, match=match) as info:
        graph_of(spec)
    assert info.value.exit_code == 3
    return info.value


def parameter_error(spec, match: str) -> ParameterError:
    """A parameter defined the wrong way: metaflow_parameter_error, as R's parameter() says it (exit 2)."""
    with pytest.raises(ParameterError, match=match) as info:
        graph_of(spec)
    assert info.value.exit_code == 2 and "metaflow_parameter_error" in info.value.r_classes()
    return info.value


# -- edges ---------------------------------------------------------------------------------------


def test_unknown_next_step_names_the_step_and_lists_the_steps():
    spec = make_spec("F", [step("start", "trian"), step("train", "end"), step("end")])
    error = graph_error(spec, r"Step 'start' has next_step 'trian', which is not a step of the flow")
    assert "The steps are: start, train, end." in str(error)


@pytest.mark.parametrize("missing", ["start", "end"])
def test_missing_start_or_end(missing):
    steps = [step("start", "middle"), step("middle", "end"), step("end")]
    if missing == "start":
        steps = [step("begin", "middle")] + steps[1:]
    else:
        steps = steps[:1] + [step("middle", "finish"), step("finish")]
    graph_error(make_spec("F", steps), rf"The flow has no '{missing}' step")


def test_cycle_shows_the_path():
    spec = make_spec("F", [step("start", "a"), step("a", "b"), step("b", ["a", "end"]), step("end")])
    graph_error(spec, re.escape("The flow has a cycle: a -> b -> a."))


def test_self_loop_is_a_cycle():
    spec = make_spec("F", [step("start", "a"), step("a", ["a", "end"]), step("end")])
    graph_error(spec, re.escape("The flow has a cycle: a -> a."))


def test_multiple_parents_without_join():
    spec = make_spec("F", [step("start", ["a", "b"]), step("a", "merge"), step("b", "merge"),
                           step("merge", "end"), step("end")])
    error = graph_error(spec, r"Step 'merge' has several parents \(a, b\) but is not a join")
    assert "join = TRUE" in str(error)


def test_join_that_joins_nothing():
    spec = make_spec("F", [step("start", "middle"), step("middle", "end", join=True), step("end")])
    graph_error(spec, r"Step 'middle' is declared join = TRUE but joins no split")


def test_branch_join_missing_a_branch():
    spec = make_spec("F", [step("start", ["a", "b", "c"]), step("a", "join"), step("b", "join"),
                           step("c", "end"), step("join", "end", join=True), step("end")])
    graph_error(spec, r"Step 'join' joins 2 step\(s\) but the split at 'start' opens 3")


def test_join_of_steps_from_different_splits():
    # a opens an inner split; the join takes one inner branch and one outer branch.
    spec = make_spec("F", [step("start", ["a", "b"]), step("a", ["a1", "a2"]), step("a1", "join"),
                           step("a2", "join"), step("b", "join"), step("join", "end", join=True), step("end")])
    graph_error(spec, r"Step 'join' joins steps from different splits \(a1, a2, b\)")


def test_foreach_join_with_two_inputs_is_rejected():
    spec = make_spec("F", [step("start", ["a", "b"]), step("a", "body", foreach="xs"), step("b", "join"),
                           step("body", "join"), step("join", "end", join=True), step("end")])
    graph_error(spec, r"Step 'join' joins steps from different splits")


def test_unjoined_split_before_end():
    spec = make_spec("F", [step("start", "body", foreach="items"), step("body", "end"), step("end")])
    graph_error(spec, r"The split at step 'start' is never joined before \"end\"")


def test_unjoined_inner_split_is_named():
    spec = make_spec("F", [step("start", "outer", foreach="xs"), step("outer", "inner", foreach="ys"),
                           step("inner", "join", join=False), step("join", "end", join=True), step("end")])
    graph_error(spec, r"The split at step 'start' is never joined")


def test_foreach_with_two_next_steps():
    spec = make_spec("F", [step("start", ["a", "b"], foreach="items"), step("a", "join"), step("b", "join"),
                           step("join", "end", join=True), step("end")])
    graph_error(spec, r"Step 'start' is a foreach and must have exactly one next_step")


def test_end_with_a_next_step():
    spec = make_spec("F", [step("start", "end"), step("end", "start")])
    graph_error(spec, r"The \"end\" step must not have a next_step")


def test_step_without_next_step():
    spec = make_spec("F", [step("start", "a"), step("a"), step("end")])
    graph_error(spec, r"Step 'a' has no next_step")


def test_same_next_step_twice():
    spec = make_spec("F", [step("start", ["a", "a"]), step("a", "end"), step("end")])
    graph_error(spec, r"Step 'start' names the same next_step twice")


def test_start_cannot_be_a_next_step():
    spec = make_spec("F", [step("start", "a"), step("a", ["start", "end"]), step("end")])
    error = graph_error(spec, r"The \"start\" step cannot be a next_step")
    assert "It follows a." in str(error)


def test_unreachable_step():
    spec = make_spec("F", [step("start", "end"), step("orphan", "end"), step("end")])
    graph_error(spec, r"Step 'orphan' cannot be reached from \"start\"")


# -- names -----------------------------------------------------------------------------------------


def test_duplicate_steps():
    spec = make_spec("F", [step("start", "a"), step("a", "end"), step("a", "end"), step("end")])
    graph_error(spec, r"Step 'a' is defined twice")


@pytest.mark.parametrize("bad", ["1st", "has-dash", "has space", ""])
def test_bad_step_names(bad):
    spec = make_spec("F", [step("start", bad), step(bad, "end"), step("end")])
    graph_error(spec, rf"Step name {re.escape(repr(bad))} is not a valid name")


@pytest.mark.parametrize("bad", ["My-Flow", "9Flow", ""])
def test_bad_flow_name(bad):
    spec = make_spec(bad, [step("start", "end"), step("end")])
    graph_error(spec, rf"The flow name {re.escape(repr(bad))} is not a valid name")


def test_foreach_must_name_an_artifact():
    spec = make_spec("F", [step("start", "body", foreach="my items"), step("body", "join"),
                           step("join", "end", join=True), step("end")])
    graph_error(spec, r"Step 'start' has foreach = 'my items', which is not an artifact name")


@pytest.mark.parametrize("reserved", ["input", "index", "foreach_stack", "name", "next", "run_id", "task_id",
                                      "step_name"])
def test_reserved_parameter_names(reserved):
    spec = make_spec("F", [step("start", "end"), step("end")], parameters=[param(reserved)])
    error = parameter_error(spec, rf"Parameter name '{reserved}' is reserved")
    assert "Choose another name" in str(error)


def test_bad_parameter_name():
    spec = make_spec("F", [step("start", "end"), step("end")], parameters=[param("learning-rate")])
    parameter_error(spec, r"Parameter name 'learning-rate' is not a valid name")


def test_bad_parameter_type():
    spec = make_spec("F", [step("start", "end"), step("end")], parameters=[param("alpha", type="double")])
    error = parameter_error(spec, r"Parameter 'alpha' has type 'double'")
    assert "str, int, float, bool" in str(error)


def test_duplicate_parameter():
    spec = make_spec("F", [step("start", "end"), step("end")], parameters=[param("alpha"), param("alpha")])
    parameter_error(spec, r"Parameter 'alpha' is defined twice")


@pytest.mark.parametrize("bad", ["not json", "[]", '{"steps": []}', '{"name": "F", "steps": [{"next": []}]}'])
def test_malformed_spec(bad):
    with pytest.raises(GraphError, match="The flow description sent by R is malformed") as info:
        parse_spec(bad)
    assert info.value.exit_code == 3


# -- analysis of valid graphs ----------------------------------------------------------------------


def assert_topological(graph: FlowGraph):
    order = list(graph.order)
    assert order[0] == "start" and order[-1] == "end"
    assert sorted(order) == sorted(graph.nodes)
    for node in graph:
        for child in node.next:
            assert order.index(node.name) < order.index(child), (node.name, child, order)
    assert [n.name for n in graph] == order


def test_linear_analysis(linear_spec):
    graph = graph_of(linear_spec)
    assert graph.order == ["start", "a", "end"]
    for node in graph:
        assert node.split_parents == [] and node.matching_split is None and not node.is_join
    assert graph["a"].parents == ["start"]
    assert graph.descendants("a") == {"a", "end"}


def test_branch_analysis(branch_spec):
    graph = graph_of(branch_spec)
    assert_topological(graph)
    assert graph["start"].is_branch and not graph["start"].is_foreach
    assert graph["a"].split_parents == ["start"] and graph["b"].split_parents == ["start"]
    assert sorted(graph["join"].parents) == ["a", "b"]
    assert graph["join"].matching_split == "start"
    assert graph["join"].split_parents == []
    assert graph.join_kind("join") == "branch"
    assert graph["end"].split_parents == []
    assert graph.descendants("b") == {"b", "join", "end"}


def test_foreach_analysis(foreach_spec):
    graph = graph_of(foreach_spec)
    assert graph.order == ["start", "body", "join", "end"]
    assert graph["start"].is_foreach and not graph["start"].is_branch
    assert graph["body"].split_parents == ["start"]
    assert graph["join"].matching_split == "start"
    assert graph.join_kind("join") == "foreach"


def test_nested_foreach_analysis(nested_foreach_spec):
    graph = graph_of(nested_foreach_spec)
    assert graph.order == ["start", "per_letter", "per_number", "join_numbers", "join_letters", "end"]
    assert graph["per_letter"].split_parents == ["start"]
    assert graph["per_number"].split_parents == ["start", "per_letter"]
    assert graph["join_numbers"].matching_split == "per_letter"
    assert graph["join_numbers"].split_parents == ["start"]
    assert graph["join_letters"].matching_split == "start"
    assert graph["join_letters"].split_parents == []
    assert graph.join_kind("join_numbers") == graph.join_kind("join_letters") == "foreach"


def test_branch_inside_foreach_analysis():
    spec = make_spec("F", [
        step("start", "fan", foreach="items"),
        step("fan", ["x", "y"]),
        step("x", "join_branch"),
        step("y", "join_branch"),
        step("join_branch", "join_foreach", join=True),
        step("join_foreach", "end", join=True),
        step("end"),
    ])
    graph = graph_of(spec)
    assert_topological(graph)
    assert graph["x"].split_parents == ["start", "fan"]
    assert graph["join_branch"].matching_split == "fan"
    assert graph.join_kind("join_branch") == "branch"
    assert graph["join_branch"].split_parents == ["start"]
    assert graph.join_kind("join_foreach") == "foreach"
    assert graph["end"].split_parents == []


def test_uneven_branches_are_ordered_topologically():
    spec = make_spec("F", [
        step("start", ["long1", "short"]),
        step("long1", "long2"),
        step("long2", "long3"),
        step("long3", "join"),
        step("short", "join"),
        step("join", "end", join=True),
        step("end"),
    ])
    graph = graph_of(spec)
    assert_topological(graph)
    assert graph["long3"].split_parents == ["start"]
    assert graph["join"].matching_split == "start"


def test_step_order_in_the_spec_does_not_matter(branch_spec):
    branch_spec["steps"].reverse()
    graph = graph_of(branch_spec)
    assert_topological(graph)
    assert graph.join_kind("join") == "branch"


def test_decorators_and_parameters_are_parsed():
    spec = make_spec("F", [step("start", "end", decorators=[{"name": "retry", "attributes": {"times": 0}}]),
                           step("end", decorators=[{"name": "timeout", "attributes": {}}])],
                     parameters=[param("alpha", default=0.5, type="float", help="A.")], script="/x/flow.R")
    flow = parse_spec(spec)
    start, end = flow.steps
    assert start.decorator("retry").attributes == {"times": 0}
    assert end.decorator("timeout").attributes == {}
    assert end.decorator("retry") is None
    assert flow.parameters[0].default == 0.5 and flow.parameters[0].type == "float"
    assert flow.script == "/x/flow.R"


def test_a_thousand_step_chain_validates_and_orders():
    """Deep graphs must not hit Python's recursion limit (the order is computed iteratively)."""
    n = 1000
    names = ["start", *[f"s{i}" for i in range(1, n - 1)], "end"]
    steps = [step(a, b) for a, b in zip(names, names[1:])] + [step("end")]
    graph = FlowGraph(parse_spec(make_spec("DeepFlow", steps)))
    assert graph.order == names
