skip_if_not_installed("Matrix")

client_test_dir()
run_flow_code <- c(
  "library(metaflow)",
  "start <- function(self) {",
  "  self$number <- 42.5",
  "  self$ints <- 1:3",
  "  self$df <- data.frame(x = 1:3, y = c('a', 'b', 'c'))",
  "  self$lst <- list(a = 1, b = list(c = 'deep'))",
  "  self$mat <- Matrix::sparseMatrix(i = c(1, 3), j = c(2, 1), x = c(5, 7), dims = c(3, 3))",
  "}",
  "end <- function(self) {",
  "  if (self$fail) stop('failing on purpose')",
  "  self$total <- sum(self$ints)",
  "}",
  "metaflow('ClientRunFlow') %>%",
  "  parameter('fail', is_flag = TRUE) %>%",
  "  step(step = 'start', r_function = start, next_step = 'end') %>%",
  "  step(step = 'end', r_function = end) %>%",
  "  run()"
)
ok_id <- client_expect_run(client_run_flow(run_flow_code))
failed <- client_run_flow(run_flow_code, c("run", "--fail"))
failed_id <- client_expect_run(failed, status = 1)

test_that("artifacts round-trip: numbers, a data.frame, a list, an S4 Matrix", {
  run <- run_client$new("ClientRunFlow", ok_id)
  expect_identical(run$artifact("total"), 6L)
  start <- run$step("start")$task(run$step("start")$tasks)
  expect_identical(start$artifact("number"), 42.5)
  expect_identical(start$artifact("ints"), 1:3)
  expect_identical(start$artifact("df"), data.frame(x = 1:3, y = c("a", "b", "c")))
  expect_identical(start$artifact("lst"), list(a = 1, b = list(c = "deep")))
  mat <- start$artifact("mat")
  expect_s4_class(mat, "dgCMatrix")
  expect_identical(as.matrix(mat), matrix(c(0, 0, 7, 5, 0, 0, 0, 0, 0), 3, 3))
  expect_identical(run$artifact("mat"), mat)  # the end step passed it on unchanged
})

test_that("a run is found by flow name and id, by pathspec, and from its flow", {
  flow <- flow_client$new("ClientRunFlow")
  by_name <- run_client$new("ClientRunFlow", ok_id)
  by_pathspec <- run_client$new(paste0("ClientRunFlow/", ok_id))
  from_flow <- run_client$new(flow, ok_id)
  from_method <- flow$run(ok_id)
  by_number <- run_client$new("ClientRunFlow", as.numeric(ok_id))
  for (run in list(by_name, by_pathspec, from_flow, from_method, by_number)) {
    expect_s3_class(run, "run_client")
    expect_identical(run$id, ok_id)
    expect_identical(run$pathspec, paste0("ClientRunFlow/", ok_id))
  }
  expect_identical(by_name$run_id, ok_id)
  expect_identical(by_name$flow_name, "ClientRunFlow")
  expect_identical(by_name$parent, "ClientRunFlow")
  expect_identical(run_client$new(flow, "latest_successful_run")$id, ok_id)
  expect_identical(run_client$new("ClientRunFlow", "latest_run")$id, failed_id)
})

test_that("a successful run's status, steps, tags, times and parameters", {
  run <- run_client$new("ClientRunFlow", ok_id)
  expect_true(run$finished)
  expect_true(run$successful)
  expect_identical(run$steps, c("start", "end"))
  expect_identical(run$end_task, "2")
  expect_setequal(run$artifacts, c("fail", "number", "ints", "df", "lst", "mat", "total"))
  expect_true(get_namespace() %in% run$tags)
  expect_s3_class(run$created_at, "POSIXct")
  expect_true(run$finished_at >= run$created_at)
  expect_false(run$parameters$fail)
  expect_s3_class(run$step("end"), "step_client")
  expect_output(print(run), paste0("ClientRunFlow/", ok_id, ": successful"), fixed = TRUE)
  expect_output(run$summary(), "Steps \\(tasks\\): start \\(1\\), end \\(1\\)")
})

test_that("after a failed run, latest_run is the failed one and latest_successful_run the one before", {
  expect_match(failed$stdout, "failing on purpose")
  flow <- flow_client$new("ClientRunFlow")
  expect_identical(flow$runs, c(failed_id, ok_id))
  expect_identical(flow$latest_run, failed_id)
  expect_identical(flow$latest_successful_run, ok_id)
  run <- flow$run(failed_id)
  expect_true(run$finished)
  expect_false(run$successful)
  expect_true(run$parameters$fail)
  expect_output(run$summary(), "Status:\\s+failed")
  end <- run$step("end")$task(run$end_task)
  expect_false(end$successful)
  expect_match(end$stderr, "failing on purpose")
  expect_error(run$artifact("total"), "has no attribute 'total'.*The task failed")
})

test_that("a missing artifact is an error that lists the ones there are", {
  run <- run_client$new("ClientRunFlow", ok_id)
  expect_error(run$artifact("nope"), "has no attribute 'nope'")
  expect_error(run$artifact("nope"), "Its artifacts:.*total")
  expect_error(run$artifact(c("a", "b")), "must be an artifact's name")
})

test_that("a run that does not exist is a clean error, without a Python traceback", {
  err <- expect_error(run_client$new("ClientRunFlow", "123"), "Run ClientRunFlow/123 does not exist")
  expect_s3_class(err, "rlang_error")
  expect_no_match(conditionMessage(err), "Traceback|py_last_error|metaflow_r\\.errors")
  expect_match(conditionMessage(err), 'flow_client$new("ClientRunFlow")$runs', fixed = TRUE)
  expect_error(run_client$new("ClientRunFlow/1/2"), "Expected a pathspec like")
  expect_error(run_client$new(flow_client$new("ClientRunFlow")), "needs a `run_id`")
  expect_error(run_client$new("ClientRunFlow", "1/2"), "must be an id, not a pathspec")
})

test_that("report() writes the run's report beside its data, returns the path invisibly, and opens only if asked", {
  run <- run_client$new("ClientRunFlow", failed_id)
  opened <- NULL
  withr::local_options(browser = function(url) opened <<- url)
  expect_invisible(run$report())
  path <- run$report()
  expect_null(opened)  # not an interactive session
  expect_identical(normalizePath(path), normalizePath(file.path(".metaflow", "ClientRunFlow", failed_id, "_report.html")))
  # The run printed the same path when it ended.
  expect_match(failed$stderr, paste0("Report: ", path), fixed = TRUE)
  html <- paste(readLines(path, warn = FALSE), collapse = "\n")
  expect_match(html, 'data-step="start" data-status="succeeded"', fixed = TRUE)
  expect_match(html, 'data-step="end" data-status="failed"', fixed = TRUE)
  expect_match(html, "failing on purpose", fixed = TRUE)
  # The run's record keeps the flow's spec, so the graph is the flow's even without the script.
  expect_match(html, "The graph is the flow's.", fixed = TRUE)
  expect_identical(run$report(open = TRUE), path)
  expect_identical(opened, path)
})

test_that("report(open = TRUE) with no display names the file instead of calling the browser", {
  run <- run_client$new("ClientRunFlow", failed_id)
  called <- withr::local_tempfile()
  browser <- withr::local_tempfile(fileext = ".sh")
  writeLines(c("#!/bin/sh", paste("echo \"$1\" >", shQuote(called))), browser)
  Sys.chmod(browser, "0755")
  withr::local_options(browser = browser)
  withr::local_envvar(DISPLAY = "", WAYLAND_DISPLAY = "")
  skip_if(Sys.info()[["sysname"]] == "Darwin", "macOS always has a browser to show")
  expect_message(path <- run$report(open = TRUE), "No browser to open it here; the report is")
  expect_false(file.exists(called))
  withr::local_envvar(DISPLAY = ":0")
  expect_no_message(run$report(open = TRUE))
  # The shell creates the file before echo writes to it: wait for the line, not for the file.
  for (i in 1:50) if (!file.exists(called) || !length(readLines(called))) Sys.sleep(0.1)
  expect_identical(readLines(called), path)
})

test_that("report() with the flow draws the flow's graph, to the file asked for", {
  flow <- metaflow("ClientRunFlow") %>%
    step(step = "start", next_step = "end") %>%
    step(step = "end")
  file <- file.path(withr::local_tempdir(), "sub", "run.html")
  path <- run_client$new("ClientRunFlow", ok_id)$report(file = file, flow = flow)
  expect_identical(path, normalizePath(file))
  html <- paste(readLines(path, warn = FALSE), collapse = "\n")
  expect_match(html, "The graph is the flow's.", fixed = TRUE)
  expect_match(html, 'data-step="end" data-status="succeeded"', fixed = TRUE)
})

test_that("report() refuses bad arguments with one clear error each", {
  run <- run_client$new("ClientRunFlow", ok_id)
  other <- metaflow("OtherFlow") %>% step(step = "start", next_step = "end") %>% step(step = "end")
  expect_error(run$report(file = 1), "`file` must be a file path")
  expect_error(run$report(open = NA), "`open` must be `TRUE` or `FALSE`")
  expect_error(run$report(flow = other), "is flow \"OtherFlow\", but this run is of \"ClientRunFlow\"")
  expect_error(run$report(flow = "ClientRunFlow"), "Expected a flow made by")
  dir <- withr::local_tempdir()
  expect_error(run$report(file = dir), "it is a directory")
})
