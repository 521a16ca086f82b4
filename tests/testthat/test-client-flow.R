flow_dir <- client_test_dir()
flow_code <- c(
  "library(metaflow)",
  "start <- function(self) self$n <- 1",
  "metaflow('ClientFlowA') %>%",
  "  step(step = 'start', r_function = start, next_step = 'end') %>%",
  "  step(step = 'end') %>%",
  "  run()"
)
first <- client_expect_run(client_run_flow(flow_code))
second <- client_expect_run(client_run_flow(flow_code, c("run", "--tag", "nightly")))

test_that("a flow lists its runs newest first", {
  flow <- flow_client$new("ClientFlowA")
  expect_s3_class(flow, "flow_client")
  expect_identical(flow$runs, c(second, first))
  expect_identical(flow$latest_run, second)
  expect_identical(flow$latest_successful_run, second)
  expect_identical(flow$name, "ClientFlowA")
  expect_identical(flow$id, "ClientFlowA")
  expect_identical(flow$pathspec, "ClientFlowA")
  expect_null(flow$parent)
  expect_setequal(flow$tags, c(get_namespace(), "nightly"))
  expect_identical(flow$created_at, run_client$new("ClientFlowA", first)$created_at)
})

test_that("a flow gives its runs as run_clients", {
  flow <- flow_client$new("ClientFlowA")
  run <- flow$run(first)
  expect_s3_class(run, "run_client")
  expect_identical(run$pathspec, paste0("ClientFlowA/", first))
  expect_identical(flow$run("latest_run")$id, second)
  tagged <- flow$runs_with_tags("nightly")
  expect_length(tagged, 1)
  expect_identical(tagged[[1]]$id, second)
  expect_length(flow$runs_with_tags(), 2)
})

test_that("mf_client and list_flows() reach the same flows", {
  expect_identical(list_flows(), "ClientFlowA")
  client <- mf_client$new()
  expect_identical(client$flows, "ClientFlowA")
  expect_identical(client$flow("ClientFlowA")$runs, c(second, first))
  expect_identical(client$run(client$flow("ClientFlowA"), first)$id, first)
  expect_identical(new_flow("ClientFlowA")$runs, c(second, first))
  expect_identical(new_run("ClientFlowA", first)$id, first)
  expect_identical(new_step("ClientFlowA", first, "start")$tasks, "1")
  expect_output(print(client), "Flows: ClientFlowA")
})

test_that("a flow's summary and print show its runs", {
  flow <- flow_client$new("ClientFlowA")
  out <- capture.output(summary <- flow$summary())
  expect_match(out[1], "Flow Summary: ClientFlowA")
  expect_match(out, "Latest successful run:\\s+[0-9]+", all = FALSE)
  expect_match(out, "Runs:\\s+2", all = FALSE)
  expect_identical(summary$Runs, 2L)
  expect_output(print(flow), "ClientFlowA: 2 run(s) in namespace user:", fixed = TRUE)
})

test_that("the datastore is found from a subdirectory or from METAFLOW_DATASTORE_SYSROOT_LOCAL", {
  sub <- file.path(flow_dir, "deeper", "still")
  dir.create(sub, recursive = TRUE)
  withr::with_dir(sub, expect_identical(flow_client$new("ClientFlowA")$runs, c(second, first)))
  elsewhere <- withr::local_tempdir()
  withr::local_dir(elsewhere)
  withr::with_envvar(c(METAFLOW_DATASTORE_SYSROOT_LOCAL = flow_dir),
                     expect_identical(flow_client$new("ClientFlowA")$latest_run, second))
  withr::with_envvar(c(METAFLOW_DATASTORE_SYSROOT_LOCAL = elsewhere), {
    expect_identical(list_flows(), character())
    expect_error(flow_client$new("ClientFlowA"), "Run the flow first")
  })
})

test_that("a flow that does not exist is an error naming the flows there are", {
  err <- expect_error(flow_client$new("NoSuchFlow"), "Flow \"NoSuchFlow\" does not exist")
  expect_match(conditionMessage(err), "Flows there: \"ClientFlowA\"")
  expect_error(flow_client$new(c("a", "b")), "must be a flow's name")
  expect_error(flow_client$new("ClientFlowA/1"), "must be a flow's name")
})

test_that("a flow's runs come as a table too, newest first", {
  table <- flow_client$new("ClientFlowA")$runs_table()
  expect_s3_class(table, "data.frame")
  expect_identical(table$run_id, c(second, first))
  expect_identical(table$status, c("successful", "successful"))
  expect_identical(table$datastore, c("local", "local"))
  expect_s3_class(table$created_at, "POSIXct")
  expect_true(all(table$finished_at >= table$created_at))
})

test_that("the runs table prints run ids and statuses whole, at any console width", {
  skip_if_not_installed("tibble")
  withr::local_options(width = 60)
  out <- capture.output(print(flow_client$new("ClientFlowA")$runs_table()))
  expect_match(out, second, fixed = TRUE, all = FALSE)
  expect_match(out, first, fixed = TRUE, all = FALSE)
  expect_match(out, "successful", fixed = TRUE, all = FALSE)
  expect_no_match(out[-length(out)], "\u2026")
})
