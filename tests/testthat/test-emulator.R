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
