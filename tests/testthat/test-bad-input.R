# Scripts that are wrong before the backend is ever reached.

test_that("a flow script that never calls run() fails saying so, and writes nothing", {
  script <- c(
    "library(metaflow)",
    "start <- function(self) print('start ran')",
    "end <- function(self) print('end ran')",
    "metaflow(\"NoRunFlow\") %>%",
    "  step(step = \"start\", r_function = start, next_step = \"end\") %>%",
    "  step(step = \"end\", r_function = end)"
  )
  result <- rscript_flow(script, "run")
  expect_equal(result$status, 1)
  expect_match(result$stderr, "Flow 'NoRunFlow' was not run: the script ended before reaching run()")
  expect_match(result$stderr, "%>% run()", fixed = TRUE)
  expect_false(grepl("ran", result$stdout))
  expect_false(grepl("Workflow starting|Done!|succeeded|run-id", result$output))
  expect_no_traceback(result)
  expect_false(dir.exists(file.path(result$dir, ".metaflow")))
  expect_setequal(list.files(result$dir, all.files = TRUE, no.. = TRUE), "flow.R")
})

test_that("a flow script with bytes that are not UTF-8 fails in R's parser, before anything runs", {
  dir <- withr::local_tempdir()
  script <- file.path(dir, "flow.R")
  # A Latin-1 e-acute (0xE9) inside a string literal.
  writeBin(c(charToRaw("library(metaflow)\nmetaflow(\"Caf"), as.raw(0xe9),
             charToRaw("Flow\") %>%\n  step(step = \"start\", next_step = \"end\") %>%\n  step(step = \"end\") %>%\n  run()\n")),
           script)
  result <- processx::run(file.path(R.home("bin"), "Rscript"), c(script, "run"), wd = dir, error_on_status = FALSE,
                          env = c("current", LANG = "C.UTF-8", LC_ALL = "C.UTF-8"))
  expect_false(result$status == 0)
  expect_match(result$stderr, "invalid multibyte character")
  expect_false(grepl("Traceback", paste(result$stdout, result$stderr), fixed = TRUE))
  expect_false(dir.exists(file.path(dir, ".metaflow")))
})

test_that("printing a flow before running it is fine; an error before run() keeps its own message", {
  printed <- rscript_flow(flow_script(
    "start <- function(self) print('start ran')",
    pipeline = c('flow <- metaflow("PrintedFlow") %>%',
                 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end")'),
    run_call = "print(flow)\nrun(flow)"
  ))
  expect_equal(printed$status, 0, info = printed$output)
  expect_match(printed$stdout, "start ran")
  failing <- rscript_flow(c("library(metaflow)", "flow <- metaflow('Broken')", "stop('my own mistake')"))
  expect_equal(failing$status, 1)
  expect_match(failing$stderr, "my own mistake")
})
