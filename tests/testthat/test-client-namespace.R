client_test_dir()
ns_flow_code <- c(
  "library(metaflow)",
  "start <- function(self) self$who <- current('username')",
  "metaflow('ClientNsFlow') %>%",
  "  step(step = 'start', r_function = start, next_step = 'end') %>%",
  "  step(step = 'end') %>%",
  "  run()"
)
mine <- client_expect_run(client_run_flow(ns_flow_code))
theirs <- client_expect_run(client_run_flow(ns_flow_code, env = c(METAFLOW_USER = "someone_else")))

test_that("the default namespace is the user's own, the one local runs are tagged with", {
  me <- run_client$new("ClientNsFlow", mine)$user
  expect_identical(get_namespace(), paste0("user:", me))
  expect_true(get_namespace() %in% run_client$new("ClientNsFlow", mine)$tags)
  withr::local_envvar(METAFLOW_USER = "zed")
  expect_identical(get_namespace(), "user:zed")
  expect_null(flow_client$new("ClientNsFlow")$latest_run)
})

test_that("a run in another namespace is invisible until set_namespace(NULL)", {
  withr::defer(set_default_namespace())
  flow <- flow_client$new("ClientNsFlow")
  expect_identical(flow$runs, mine)
  expect_identical(flow$latest_run, mine)
  err <- expect_error(run_client$new("ClientNsFlow", theirs), "not in namespace 'user:")
  expect_match(conditionMessage(err), "set_namespace(NULL)", fixed = TRUE)
  expect_error(task_client$new(paste0("ClientNsFlow/", theirs, "/start/1")), "not in namespace")
  expect_true(flow$run(mine)$is_in_namespace())

  own <- get_namespace()
  expect_identical(set_namespace(NULL), own)
  expect_null(get_namespace())
  expect_identical(flow$runs, c(theirs, mine))
  run <- run_client$new("ClientNsFlow", theirs)
  expect_true("user:someone_else" %in% run$tags)
  expect_identical(run$user, "someone_else")
  expect_identical(run$step("start")$task("1")$artifact("who"), "someone_else")
  expect_output(flow$summary(), "Namespace:\\s+\\(every namespace\\)")
})

test_that("set_namespace() switches to another user's runs and returns the previous namespace", {
  withr::defer(set_default_namespace())
  own <- get_namespace()
  previous <- set_namespace("user:someone_else")
  expect_identical(previous, own)
  expect_identical(get_namespace(), "user:someone_else")
  flow <- flow_client$new("ClientNsFlow")
  expect_identical(flow$runs, theirs)
  expect_identical(flow$latest_successful_run, theirs)
  expect_error(flow$run(mine), "not in namespace 'user:someone_else'")
  expect_identical(set_default_namespace(), "user:someone_else")
  expect_identical(get_namespace(), own)
  expect_identical(flow_client$new("ClientNsFlow")$runs, mine)
})

test_that("a flow with no run in the namespace still exists, with no runs", {
  withr::defer(set_default_namespace())
  set_namespace("user:nobody")
  expect_true("ClientNsFlow" %in% list_flows())
  flow <- flow_client$new("ClientNsFlow")
  expect_identical(flow$runs, character())
  expect_null(flow$latest_run)
  expect_error(flow$run("latest_run"), "has no run to read.*user:nobody.*set_namespace\\(NULL\\)")
})

test_that("set_namespace() takes one string or NULL", {
  expect_error(set_namespace(1), "must be a namespace")
  expect_error(set_namespace(c("a", "b")), "must be a namespace")
  expect_identical(get_namespace(), paste0("user:", run_client$new("ClientNsFlow", mine)$user))
})
