# run() called with its own arguments, as in an RStudio session that source()s a flow: failures are R
# conditions, results are R objects, hints are R code. (testthat's R is such a session: no command line.)

session_flow <- function(dir, body, run_call = "run()", name = "SessionFlow") {
  path <- file.path(dir, "flow.R")
  writeLines(flow_script(
    body,
    pipeline = c(sprintf('metaflow("%s") %%>%% parameter("alpha", default = 0.1) %%>%%', name),
                 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end")'),
    run_call = run_call
  ), path)
  path
}

in_dir <- function(dir, code) withr::with_dir(dir, withr::with_envvar(c(METAFLOW_DATASTORE_SYSROOT_LOCAL = NA), code))

test_that("a failed run is a metaflow_run_failed condition with the run, the step and an R hint", {
  dir <- withr::local_tempdir()
  script <- session_flow(dir, "start <- function(self) stop('no convergence')")
  caught <- in_dir(dir, tryCatch(suppressMessages(capture.output(source(script))), metaflow_run_failed = identity))
  expect_s3_class(caught, "metaflow_run_failed")
  expect_s3_class(caught, "metaflow_error")
  expect_match(caught$run_id, "^[0-9]+$")
  expect_identical(caught$step, "start")
  expect_identical(caught$pathspec, paste0("SessionFlow/", caught$run_id, "/start/1"))
  # The step's own R error, in the condition and its message, as the task's stderr showed it.
  expect_match(caught$error_message, "no convergence", fixed = TRUE)
  expect_match(conditionMessage(caught), "no convergence", fixed = TRUE)
  expect_identical(caught$status, 1L)
  expect_match(conditionMessage(caught), "run(resume = TRUE)", fixed = TRUE)  # not `Rscript flow.R resume`
  expect_false(grepl("Rscript", conditionMessage(caught)))
})

test_that("a graph error and a bad parameter value are caught like any R error", {
  dir <- withr::local_tempdir()
  bad_next <- file.path(dir, "bad_next.R")
  writeLines(flow_script(pipeline = c('metaflow("BadNext") %>%', 'step(step = "start", next_step = "middle") %>%',
                                      'step(step = "end")')), bad_next)
  expect_error(in_dir(dir, source(bad_next)), "next_step 'middle'", class = "metaflow_graph_error")
  script <- session_flow(dir, "start <- function(self) NULL", 'run(alpha = "abc")')
  caught <- in_dir(dir, tryCatch(source(script), error = identity))
  expect_s3_class(caught, "metaflow_parameter_error")
  expect_false(grepl("Usage:|Invalid value", conditionMessage(caught)))
  expect_false(dir.exists(file.path(dir, ".metaflow")))  # nothing ran
})

test_that("a script after a failed run() does not carry on", {
  dir <- withr::local_tempdir()
  script <- session_flow(dir, "start <- function(self) stop('boom')", "run()\ncat('carried on\\n')")
  result <- processx::run(file.path(R.home("bin"), "Rscript"), c("-e", "source('flow.R')"), wd = dir,
                          error_on_status = FALSE)
  expect_false(result$status == 0)
  expect_false(grepl("carried on", result$stdout))
  expect_match(result$stderr, "failed in step 'start'")
})

test_that("an error inside run() is not followed by a claim that the script never reached run()", {
  result <- rscript_flow(flow_script("start <- function(self) NULL",
                                     pipeline = c('metaflow("NoClaim") %>% parameter("alpha", default = 1) %>%',
                                                  'step(step = "start", r_function = start, next_step = "end") %>%',
                                                  'step(step = "end")'),
                                     run_call = 'run(alpha = "abc")'), args = character())
  expect_false(result$status == 0)
  expect_match(result$stderr, "must be a finite number")
  expect_false(grepl("was not run", result$output))
})

test_that("a successful local run still returns 0 invisibly", {
  dir <- withr::local_tempdir()
  script <- session_flow(dir, "start <- function(self) cat('alpha', self$alpha, '\\n')", "run(alpha = 0.5)")
  capture.output(value <- in_dir(dir, withVisible(source(script)$value)))
  expect_identical(value$value, 0L)
})

test_that("show works on a flow built in the console, with no script", {
  flow <- metaflow("ConsoleFlow") %>% step(step = "start", next_step = "end") %>% step(step = "end")
  expect_output(run(flow, show = TRUE), "start\n    => end", fixed = TRUE)
  expect_error(run(flow), "script is unknown", class = "metaflow_usage_error")
})

test_that("a script whose path holds a space runs without a warning", {
  dir <- withr::local_tempdir()
  result <- rscript_flow(readLines(test_path("../../examples/parameter_flow.R")), dir = dir, file = "my flow.R")
  expect_equal(result$status, 0, info = result$output)
  expect_false(grepl("Warning", result$output))
})

test_that("print(flow) shows its parameters, decorators and steps on standard output", {
  flow <- metaflow("PrintedFlow", decorator("schedule", daily = TRUE)) %>%
    parameter("alpha", help = "learning rate", default = 0.1) %>%
    step(decorator("retry", times = 2), step = "start", next_step = "body", foreach = "items") %>%
    step(step = "body", next_step = "join") %>%
    step(step = "join", next_step = "end", join = TRUE) %>%
    step(step = "end")
  expect_snapshot(print(flow))
  expect_output(print(flow), "parameter alpha (float, default 0.1): learning rate", fixed = TRUE)
})

test_that("the vignette is installed", {
  expect_true("scheduling-flows" %in% utils::vignette(package = "metaflow")$results[, "Item"])
})
