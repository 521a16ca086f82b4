# The flow rules come from one table (inst/python/metaflow_r/data/rules.json): R checks them where the
# user types, and the backend enforces the same rules on what R sends. These tests hold the two checks
# to the same verdicts, across the JSON that carries a value from R to Python.

backend_accepts <- function(decorator_name, attributes) {
  d <- structure(list(name = decorator_name, attributes = attributes), class = "metaflow_decorator")
  flow <- metaflow("RulesFlow")
  flow$steps <- list(
    start = list(step = "start", next_step = "end", join = FALSE, foreach = NULL, decorators = list(d)),
    end = list(step = "end", next_step = NULL, join = FALSE, foreach = NULL, decorators = list())
  )
  spec <- metaflow:::flow_spec(flow, "/nowhere/flow.R")
  tryCatch({
    metaflow:::backend("core.graph")$FlowGraph(metaflow:::backend("core.spec")$parse_spec(spec))
    TRUE
  }, error = function(e) FALSE)
}

test_that("R and the backend agree on every kind of decorator argument", {
  samples <- list(
    list("retry", "times", list(0, 2, 2L, -1, 1.5, "2", TRUE, NA, c(1, 2))),
    list("retry", "minutes_between_retries", list(0, 0.5, -0.1, "1")),
    list("resources", "cpu", list(1, 0.25, 0, -2, "4", FALSE)),
    list("resources", "gpu", list(0, 1, 1.5, -1)),
    list("catch", "var", list("problem", "_x", "not a name", "1x", 3, "")),
    list("catch", "print_exception", list(TRUE, FALSE, "yes", 1, NA)),
    list("batch", "image", list("r:4", "", 3, c("a", "b"))),
    list("batch", "platform", list("fargate", "EC2", "Fargate", "lambda", "", 1, c("ec2", "fargate"), NA)),
    list("batch", "shared_memory", list(2048, 0, -1, "64")),
    list("environment", "vars", list(list(TZ = "UTC"), list(N = 1), list(), list("UTC"), c(TZ = "UTC"))),
    list("packages", "packages", list("data.table", c("data.table", "sf"), "R6", "1x", "x.", "", NA, 3,
                                      character(), c("ok", NA), list("a")))
  )
  for (sample in samples) {
    kind <- metaflow:::rules()$decorators[[sample[[1]]]]$arguments[[sample[[2]]]]
    for (value in sample[[3]]) {
      in_r <- isTRUE(metaflow:::argument_fits(kind, value))
      attributes <- stats::setNames(list(value), sample[[2]])
      expect_identical(backend_accepts(sample[[1]], attributes), in_r,
                       info = sprintf("%s(%s = %s)", sample[[1]], sample[[2]], deparse(value)))
    }
  }
})

test_that("what R refuses as a parameter name, the backend refuses too, and run()'s arguments are reserved", {
  reserved <- metaflow:::reserved_parameter_names()
  # seed alone is free: a flow's own parameter of that name takes run(seed =) (test-task-rng.R).
  expect_setequal(setdiff(names(formals(run)), c("...", reserved)), "seed")
  for (name in c("input", "max_workers", "tags", "wait", "help", "flow")) {
    expect_error(metaflow("F") %>% parameter(name), class = "metaflow_parameter_error")
    spec <- metaflow:::flow_spec(
      structure(list(name = "F", decorators = list(), steps = list(),
                     parameters = list(list(name = name, help = NULL, default = NULL, type = "str",
                                            required = FALSE, is_flag = FALSE, separator = NULL))),
                class = "metaflow_flow"), "/nowhere/flow.R")
    expect_error(metaflow:::backend("core.graph")$check_names(metaflow:::backend("core.spec")$parse_spec(spec)),
                 "is reserved")
  }
})

test_that("parameter types and their R spellings come from the table", {
  types <- metaflow:::parameter_types()
  expect_setequal(names(types), c("str", "int", "float", "bool"))
  for (canonical in names(types)) {
    for (spelling in types[[canonical]]) {
      flow <- metaflow("F") %>% parameter("p", type = spelling)
      expect_identical(flow$parameters[[1]]$type, canonical)
    }
  }
})
