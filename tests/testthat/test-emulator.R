test_that("emulator_start() runs production offline from an R session, emulator_stop() ends it", {
  withr::local_envvar(METAFLOW_DEFAULT_DATASTORE = NA, AWS_ENDPOINT_URL = NA)
  emu <- emulator_start(port = 0)
  on.exit(if (emu$process$is_alive()) emulator_stop(emu), add = TRUE)
  expect_match(Sys.getenv("AWS_ENDPOINT_URL"), "^http://127.0.0.1:[0-9]+$")
  expect_equal(Sys.getenv("METAFLOW_DEFAULT_DATASTORE"), "s3")

  dir <- withr::local_tempdir()
  seed <- readLines(test_path("../../examples/parameter_flow.R"))
  writeLines(sub("^run\\(\\)$", "run(step_functions = 'create')", seed), file.path(dir, "flow.R"))
  rscript <- file.path(R.home("bin"), "Rscript")
  created <- processx::run(rscript, c("-e", "source('flow.R')"), wd = dir, error_on_status = FALSE)
  expect_equal(created$status, 0, info = paste(created$stdout, created$stderr))
  namespace <- sub(".*Its runs are in namespace (production:[^ ]+)\\.\n.*", "\\1", created$stdout)
  triggered <- processx::run(rscript, c("flow.R", "step-functions", "trigger", "--alpha", "0.5", "--run-id",
                                        "from-r", "--wait"), wd = dir, error_on_status = FALSE)
  expect_equal(triggered$status, 0, info = paste(triggered$stdout, triggered$stderr))

  old <- set_namespace(namespace)
  on.exit(set_namespace(old), add = TRUE)
  expect_equal(run_client$new("ParameterFlow/from-r")$artifact("alpha"), 0.5)

  emulator_stop(emu)
  expect_false(emu$process$is_alive())
  expect_equal(Sys.getenv("AWS_ENDPOINT_URL"), "")
})
