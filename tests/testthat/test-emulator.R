# Production from an R session, on the offline emulator: deploy, trigger and wait, read the production run,
# while local runs stay local.

seed <- readLines(test_path("../../examples/parameter_flow.R"))

seed_with_last_line <- function(dir, last_line) {
  path <- file.path(dir, paste0("flow-", gsub("[^a-z]", "", last_line), ".R"))
  writeLines(sub("^run\\(\\)$", last_line, seed), path)
  path
}

test_that("from an R session: create returns the deployment, trigger with wait the production run", {
  withr::local_envvar(METAFLOW_DEFAULT_DATASTORE = NA, AWS_ENDPOINT_URL = NA, METAFLOW_DATASTORE_SYSROOT_S3 = NA,
                      METAFLOW_DATASTORE_SYSROOT_LOCAL = NA)
  dir <- withr::local_tempdir()
  withr::local_dir(dir)
  local <- seed_with_last_line(dir, "run(alpha = 0.25)")
  capture.output(source(local))
  before <- flow_client$new("ParameterFlow")$latest_run

  emu <- emulator_start(port = 0)
  on.exit(if (emu$process$is_alive()) emulator_stop(emu), add = TRUE)
  expect_match(Sys.getenv("AWS_ENDPOINT_URL"), "^http://127.0.0.1:[0-9]+$")
  expect_equal(Sys.getenv("METAFLOW_DEFAULT_DATASTORE"), "")  # local runs stay local

  capture.output(deployment <- source(seed_with_last_line(dir, 'run(step_functions = "create")'))$value)
  expect_s3_class(deployment, "metaflow_deployment")
  expect_match(deployment$namespace, "^production:parameterflow-")
  expect_identical(production_namespace("ParameterFlow"), deployment$namespace)
  expect_output(print(deployment), "namespace: +production:parameterflow-")

  trigger <- seed_with_last_line(dir, 'run(step_functions = "trigger", alpha = 0.5, wait = TRUE)')
  progress <- capture.output(production <- source(trigger)$value)
  expect_true(any(grepl("^  start: 1 done", progress)), info = paste(progress, collapse = "\n"))
  expect_true(any(grepl("SUCCEEDED", progress)))
  expect_s3_class(production, "run_client")
  expect_true(production$successful)
  expect_equal(production$artifact("alpha"), 0.5)

  started <- source(seed_with_last_line(dir, 'run(step_functions = "trigger", alpha = 0.75)'))$value
  expect_s3_class(started, "metaflow_triggered_run")
  expect_match(started$run_id, "^sfn-")

  # The Client API sees local and production runs side by side, each where it ran.
  expect_identical(flow_client$new("ParameterFlow")$latest_run, before)
  runs <- with_namespace(NULL, flow_client$new("ParameterFlow")$runs_table())
  expect_setequal(runs$datastore[runs$run_id %in% c(before, production$id)], c("local", "s3"))
  local_run <- flow_client$new("ParameterFlow")$latest_run
  capture.output(source(local))  # a local run made while the emulator runs ...
  made_meanwhile <- flow_client$new("ParameterFlow")$latest_run

  emulator_stop(emu)
  expect_false(emu$process$is_alive())
  expect_equal(Sys.getenv("AWS_ENDPOINT_URL"), "")
  expect_identical(flow_client$new("ParameterFlow")$latest_run, made_meanwhile)  # ... is still there
  expect_false(identical(made_meanwhile, local_run))
})

test_that("a failed production run is as usable from R as a local one: its task, its R error, debug_task()", {
  withr::local_envvar(METAFLOW_DEFAULT_DATASTORE = NA, AWS_ENDPOINT_URL = NA, METAFLOW_DATASTORE_SYSROOT_S3 = NA,
                      METAFLOW_DATASTORE_SYSROOT_LOCAL = NA)
  dir <- withr::local_tempdir()
  withr::local_dir(dir)
  flow <- c(
    "library(metaflow)",
    "start <- function(self) self$items <- 1:4",
    "fit_model <- function(self) {",
    "  if (self$input == 3) stop('the model did not converge for item 3')",
    "  self$fit <- self$input",
    "}",
    "join <- function(self, inputs) self$fits <- gather_inputs(inputs, 'fit')",
    "metaflow('FitFlow') %>%",
    "  step(step = 'start', r_function = start, next_step = 'fit_model', foreach = 'items') %>%",
    "  step(step = 'fit_model', r_function = fit_model, next_step = 'join') %>%",
    "  step(step = 'join', r_function = join, join = TRUE, next_step = 'end') %>%",
    "  step(step = 'end') %>%")
  writeLines(c(flow, "  run()"), "fit.R")
  emu <- emulator_start(port = 0)
  on.exit(if (emu$process$is_alive()) emulator_stop(emu), add = TRUE)
  # Its foreach as Batch array jobs: one job of 4 children.
  expect_equal(system2(file.path(R.home("bin"), "Rscript"), c("fit.R", "step-functions", "create", "--foreach-mode",
                                                             "array"), stdout = FALSE, stderr = FALSE), 0)
  writeLines(c(flow, "  run(step_functions = 'trigger', wait = TRUE)"), "trigger.R")
  progress <- capture.output(caught <- tryCatch(source("trigger.R"), metaflow_run_failed = identity))
  expect_s3_class(caught, "metaflow_run_failed")
  expect_identical(caught$step, "fit_model")
  expect_identical(caught$pathspec, paste0("FitFlow/", caught$run_id, "/fit_model/fit_model-2"))
  expect_match(caught$error_message, "the model did not converge for item 3", fixed = TRUE)
  expect_match(conditionMessage(caught), "the model did not converge for item 3", fixed = TRUE)
  # The counter counts the array's children, and says what failed.
  expect_true("  fit_model: 3 done, 1 failed" %in% progress, info = paste(progress, collapse = "\n"))
  expect_false(any(grepl("^  start: .*failed", progress)))
  # The task as it started, whatever the namespace (the run is in the production one).
  started <- suppressMessages(debug_task(caught$pathspec))
  expect_equal(started$self$input, 3L)
})

test_that("emulator_stop() stops the Batch jobs still running, and what their steps started", {
  withr::local_envvar(METAFLOW_DEFAULT_DATASTORE = NA, AWS_ENDPOINT_URL = NA, METAFLOW_DATASTORE_SYSROOT_S3 = NA,
                      METAFLOW_DATASTORE_SYSROOT_LOCAL = NA)
  dir <- withr::local_tempdir()
  withr::local_dir(dir)
  writeLines(c(
    "library(metaflow)",
    "start <- function(self) {",
    sprintf("  system('sleep 600 & echo $! > %s/background.pid')", dir),
    sprintf("  cat(Sys.getpid(), file = '%s/task.pid')", dir),
    "  repeat Sys.sleep(1)",
    "}",
    "metaflow('ForeverFlow') %>%",
    "  step(step = 'start', r_function = start, next_step = 'end') %>%",
    "  step(step = 'end') %>%",
    "  run()"), "forever.R")
  emu <- emulator_start(port = 0)
  on.exit(if (emu$process$is_alive()) emulator_stop(emu), add = TRUE)
  rscript <- file.path(R.home("bin"), "Rscript")
  expect_equal(system2(rscript, c("forever.R", "step-functions", "create"), stdout = FALSE, stderr = FALSE), 0)
  expect_equal(system2(rscript, c("forever.R", "step-functions", "trigger"), stdout = FALSE, stderr = FALSE), 0)
  deadline <- Sys.time() + 180
  while (!all(file.exists(c("task.pid", "background.pid"))) && Sys.time() < deadline) Sys.sleep(0.5)
  alive <- function(pid) {  # a zombie has ended: only its parent has not collected it
    stat <- suppressWarnings(tryCatch(readLines(sprintf("/proc/%d/stat", pid)), error = function(e) ""))
    nzchar(stat[1]) && !grepl(") Z ", stat[1], fixed = TRUE)
  }
  pids <- as.integer(c(readLines("task.pid", warn = FALSE), readLines("background.pid", warn = FALSE)))
  expect_true(all(vapply(pids, alive, logical(1))))  # both running
  emulator_stop(emu)
  gone <- function() !any(vapply(pids, alive, logical(1)))
  deadline <- Sys.time() + 30
  while (!gone() && Sys.time() < deadline) Sys.sleep(0.5)
  expect_true(gone(), info = "the job's task or its background process outlived the emulator")
})

test_that("an emulator on a busy port is reported with the emulator's own words, not after a wait", {
  withr::local_envvar(AWS_ENDPOINT_URL = NA)
  port <- metaflow:::backend("emulator.server")$free_port()
  blocker <- serverSocket(port)
  on.exit(close(blocker), add = TRUE)
  caught <- tryCatch(emulator_start(port = port), error = identity)
  expect_s3_class(caught, "metaflow_emulator_error")
  # The emulator exited saying why (before, it hung, and this said only "not ready after 60 s").
  expect_match(conditionMessage(caught), "Address already in use")
})

test_that("emulator_start() checks its runner and image before starting anything", {
  expect_error(emulator_start(batch_runner = "docker"), "should be one of")
  expect_error(emulator_start(image = c("a", "b")), "must be one image name")
})

test_that("emulator_start(batch_runner = 'container') names the missing image and how to build it", {
  engine <- Filter(function(e) nzchar(Sys.which(e)) && system2(e, "info", stdout = FALSE, stderr = FALSE) == 0,
                   c("docker", "podman"))
  skip_if(length(engine) == 0, "no container engine answers here (docker info, podman info)")
  expect_error(emulator_start(port = 0, batch_runner = "container", image = "metaflow-r:no-such-tag"),
               "metaflow-r:no-such-tag.*make image")
})
