seed_parameter_flow <- readLines(test_path("../../examples/parameter_flow.R"))

test_that("the seed's ParameterFlow runs with its default and with --alpha", {
  default <- rscript_flow(seed_parameter_flow)
  expect_equal(default$status, 0)
  expect_match(default$stdout, "alpha is 0.1")
  expect_match(default$stdout, "alpha still is 0.1")
  expect_match(default$stdout, "Done! Run ParameterFlow/[0-9]+ succeeded")
  given <- rscript_flow(seed_parameter_flow, c("run", "--alpha", "0.5"), dir = default$dir)
  expect_equal(given$status, 0)
  expect_match(given$stdout, "alpha still is 0.5")
  expect_length(list.dirs(file.path(default$dir, ".metaflow", "ParameterFlow"), recursive = FALSE), 3)
})

test_that("task output names the run, step and task", {
  result <- rscript_flow(seed_parameter_flow)
  expect_match(result$stdout, "\\[[0-9]+/start/1 \\(pid [0-9]+\\)\\] \\[1\\] \"alpha is 0.1\"")
  expect_match(result$stdout, "\\[[0-9]+/end/2 \\(pid [0-9]+\\)\\] Task finished successfully.")
})

test_that("source() runs the flow from its own run() arguments and returns the exit status", {
  dir <- withr::local_tempdir()
  code <- sub("^run\\(\\)$", "run(alpha = 0.5)", seed_parameter_flow)
  writeLines(code, file.path(dir, "flow.R"))
  result <- processx::run(file.path(R.home("bin"), "Rscript"),
                          c("-e", "status <- source('flow.R'); cat('status', status$value, status$visible, '\\n')"),
                          wd = dir, error_on_status = FALSE)
  expect_match(result$stdout, "alpha still is 0.5")
  expect_match(result$stdout, "status 0 FALSE")
})

test_that("show prints steps and edges, as text and as mermaid", {
  result <- rscript_flow(seed_parameter_flow, "show")
  expect_equal(result$status, 0)
  expect_match(result$stdout, "start\n    => end", fixed = TRUE)
  expect_match(result$stdout, "--alpha (float, default 0.1)  learning rate", fixed = TRUE)
  mermaid <- rscript_flow(seed_parameter_flow, c("show", "--mermaid"), dir = result$dir)
  expect_match(mermaid$stdout, "flowchart TD\n    step_start[\"start\"]\n    step_end[\"end\"]\n    step_start --> step_end",
               fixed = TRUE)
  expect_false(dir.exists(file.path(result$dir, ".metaflow")))
})

test_that("--help lists the commands and run --help the parameters", {
  help <- rscript_flow(seed_parameter_flow, "--help")
  expect_equal(help$status, 0)
  expect_match(help$stdout, "Usage: Rscript flow.R")
  for (command in c("run", "show", "resume")) expect_match(help$stdout, command)
  run_help <- rscript_flow(seed_parameter_flow, c("run", "--help"), dir = help$dir)
  expect_match(run_help$stdout, "--alpha FLOAT")
  expect_match(run_help$stdout, "learning rate")
  expect_match(run_help$stdout, "--max-workers")
})

test_that("a bad option or parameter value exits non-zero with one clear message", {
  unknown <- rscript_flow(seed_parameter_flow, c("run", "--alpah", "1"))
  expect_equal(unknown$status, 2)
  expect_match(unknown$stderr, "No such option.*--alpah")
  expect_no_traceback(unknown)
  wrong <- rscript_flow(seed_parameter_flow, c("run", "--alpha", "abc"), dir = unknown$dir)
  expect_equal(wrong$status, 2)
  expect_match(wrong$stderr, "'abc' is not a valid float")
  expect_false(dir.exists(file.path(unknown$dir, ".metaflow")))
})

test_that("a failing step shows its R error and step name, and the run exits 1", {
  result <- rscript_flow(flow_script(
    "start <- function(self) self$x <- 1",
    "broken <- function(self) stop('the model did not converge')",
    pipeline = c('metaflow("FailingFlow") %>%',
                 'step(step = "start", r_function = start, next_step = "broken") %>%',
                 'step(step = "broken", r_function = broken, next_step = "end") %>%',
                 'step(step = "end")')
  ))
  expect_equal(result$status, 1)
  expect_match(result$stdout, "Error in step 'broken': the model did not converge", fixed = TRUE)
  expect_match(result$stderr, "failed in step 'broken'")
  expect_no_traceback(result)
  broken <- list.files(file.path(result$dir, ".metaflow", "FailingFlow"), pattern = "DONE.json",
                       recursive = TRUE, full.names = TRUE)
  failed <- Filter(function(f) grepl("/broken/", f), broken)
  expect_false(jsonlite::fromJSON(failed)$successful)
})

graph_error <- function(pipeline) {
  rscript_flow(flow_script("f <- function(self) NULL", "j <- function(self, inputs) NULL",
                           pipeline = c('metaflow("BadFlow") %>%', pipeline)))
}

test_that("invalid graphs are refused before anything runs", {
  cases <- list(
    list(c('step(step = "start", r_function = f, next_step = "ende") %>%', 'step(step = "end")'),
         "next_step 'ende', which is not a step"),
    list('step(step = "start", r_function = f, next_step = "a") %>% step(step = "a", next_step = "start")',
         "has no 'end' step"),
    list(c('step(step = "start", next_step = "a") %>%', 'step(step = "a", next_step = "b") %>%',
           'step(step = "b", next_step = c("a", "end")) %>%', 'step(step = "end")'),
         "cycle: a -> b -> a"),
    list(c('step(step = "start", next_step = c("a", "b")) %>%', 'step(step = "a", next_step = "j") %>%',
           'step(step = "b", next_step = "j") %>%', 'step(step = "j", next_step = "end") %>%', 'step(step = "end")'),
         "several parents \\(a, b\\) but is not a join")
  )
  for (case in cases) {
    result <- graph_error(case[[1]])
    expect_equal(result$status, 3)
    expect_match(result$stderr, case[[2]])
    expect_no_traceback(result)
    expect_false(dir.exists(file.path(result$dir, ".metaflow")))
  }
})

test_that("a foreach over something that is not a vector fails naming the step", {
  result <- rscript_flow(flow_script(
    "start <- function(self) self$items <- function(x) x",
    pipeline = c('metaflow("NotVector") %>%',
                 'step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%',
                 'step(step = "body", next_step = "join") %>%',
                 'step(step = "join", r_function = function(self, inputs) NULL, next_step = "end", join = TRUE) %>%',
                 'step(step = "end")')
  ))
  expect_equal(result$status, 1)
  expect_match(result$stdout, "Error in step 'start'")
  expect_match(result$stdout, "must be a vector or a list")
  expect_length(list.files(file.path(result$dir, ".metaflow", "NotVector", "data"), recursive = TRUE), 0)
})

test_that("retry reruns a failed task locally, and times = 0 never does", {
  flaky <- flow_script(
    "start <- function(self) if (current('retry_count') < 1) stop('transient') else self$ok <- TRUE",
    pipeline = c('metaflow("Flaky") %>%',
                 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end", r_function = function(self) print(self$ok))')
  )
  without <- rscript_flow(flaky)
  expect_equal(without$status, 1)
  with_retry <- rscript_flow(flaky, c("--with", "retry", "run"), dir = without$dir)
  expect_equal(with_retry$status, 0)
  expect_match(with_retry$stdout, "retrying")
  expect_match(with_retry$stdout, "[1] TRUE", fixed = TRUE)
  never <- sub('step(step = "start"', 'step(decorator("retry", times = 0), step = "start"', flaky, fixed = TRUE)
  refused <- rscript_flow(never, c("--with", "retry", "run"), dir = without$dir)
  expect_equal(refused$status, 1)
  expect_false(grepl("retrying", refused$stdout))
})

test_that("resume reruns from the failed step and reuses the finished ones", {
  code <- flow_script(
    "start <- function(self) self$stamp <- runif(1)",
    "middle <- function(self) if (!file.exists('go')) stop('not yet') else self$seen <- self$stamp",
    "end <- function(self) print(self$seen == self$stamp)",
    pipeline = c('metaflow("Resumable") %>%',
                 'step(step = "start", r_function = start, next_step = "middle") %>%',
                 'step(step = "middle", r_function = middle, next_step = "end") %>%',
                 'step(step = "end", r_function = end)')
  )
  first <- rscript_flow(code)
  expect_equal(first$status, 1)
  file.create(file.path(first$dir, "go"))
  resumed <- rscript_flow(code, "resume", dir = first$dir)
  expect_equal(resumed$status, 0)
  expect_match(resumed$stdout, "start/1\\] Cloned from run")
  expect_false(grepl("start/1 \\(pid", resumed$stdout))
  expect_match(resumed$stdout, "[1] TRUE", fixed = TRUE)
})

test_that("run() accepts Metaflow R's own arguments", {
  dir <- withr::local_tempdir()
  code <- sub("^run\\(\\)$", "run(max_workers = 2, datastore = 'local', metadata = 'local', package_suffixes = '.R', batch = FALSE, with = 'retry')",
              seed_parameter_flow)
  writeLines(code, file.path(dir, "flow.R"))
  result <- processx::run(file.path(R.home("bin"), "Rscript"), c("-e", "source('flow.R')"), wd = dir,
                          error_on_status = FALSE)
  expect_equal(result$status, 0)
  expect_match(result$stdout, "alpha still is 0.1")
})

test_that("run(package_suffixes =) puts data beside the script in the code package", {
  pipeline <- c('metaflow("DataFlow") %>%', 'step(step = "start", next_step = "end") %>%', 'step(step = "end")')
  dir <- withr::local_tempdir()
  writeLines(c("n", "1"), file.path(dir, "data.csv"))
  without <- rscript_flow(flow_script(pipeline = pipeline), c("step-functions", "create", "--only-json"), dir = dir)
  expect_equal(without$status, 0, info = without$output)
  expect_match(without$stderr, "Code package: 1 file(s)", fixed = TRUE)
  expect_match(without$stderr, "left out of the code package.*data.csv")
  for (suffixes in c('".csv"', 'c(".R", ".csv")', '".R,.csv"')) {
    with <- rscript_flow(flow_script(pipeline = pipeline, run_call = sprintf("run(package_suffixes = %s)", suffixes)),
                         c("step-functions", "create", "--only-json"), dir = dir)
    expect_equal(with$status, 0, info = with$output)
    expect_match(with$stderr, "Code package: 2 file(s)", fixed = TRUE)
    expect_match(with$stderr, "data.csv", fixed = TRUE)
    expect_no_match(with$stderr, "left out")
    expect_equal(jsonlite::fromJSON(with$stdout)$StartAt, "metaflow-parameters")
  }
})

test_that("the README and the vignette show a foreach and a join that run, and predict from its best fit", {
  example <- readLines(test_path("../../examples/model_flow.R"))
  body <- paste(example[-1], collapse = "\n")  # without its comment line
  for (doc in c("../../README.md", "../../vignettes/scheduling-flows.Rmd")) {
    expect_true(grepl(body, paste(readLines(test_path(doc)), collapse = "\n"), fixed = TRUE), label = doc)
  }
  result <- rscript_flow(example)
  expect_equal(result$status, 0)
  expect_match(result$stdout, "best model: mpg ~ wt + qsec + am", fixed = TRUE)
  withr::local_dir(result$dir)
  run <- flow_client$new("ModelFlow")$latest_successful_run
  expect_length(run_client$new("ModelFlow", run)$step("fit")$tasks, 3)
  best <- run_client$new("ModelFlow", run)$artifact("best")
  expect_equal(predict(best, newdata = mtcars[1:3, ]), predict(lm(mpg ~ wt + qsec + am, mtcars), mtcars[1:3, ]))
})

wide_flow <- function(fit = "function(self) { if (self$input == 3 && !file.exists('fixed')) stop('item 3 fails'); self$y <- self$input }") {
  flow_script(
    "start <- function(self) self$items <- 1:10",
    paste("fit <-", fit),
    "join <- function(self, inputs) self$ys <- unlist(gather_inputs(inputs, 'y'))",
    "end <- function(self) cat('ys:', self$ys, '\\n')",
    pipeline = c('metaflow("WideFlow") %>%',
                 'step(step = "start", r_function = start, next_step = "fit", foreach = "items") %>%',
                 'step(step = "fit", r_function = fit, next_step = "join") %>%',
                 'step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%',
                 'step(step = "end", r_function = end)'))
}

test_that("resume keeps a failed foreach's finished tasks while the step's code is unchanged, and says so", {
  first <- rscript_flow(wide_flow())
  expect_equal(first$status, 1)
  file.create(file.path(first$dir, "fixed"))
  resumed <- rscript_flow(wide_flow(), "resume", dir = first$dir)
  expect_equal(resumed$status, 0, info = resumed$output)
  expect_match(resumed$stdout, "Step 'fit' is unchanged since run [0-9]+: its finished tasks with unchanged inputs are reused")
  # A failed task stops the run: the tasks that had finished by then are reused, the others run.
  finished <- lengths(regmatches(first$stdout, gregexpr("/fit/[0-9]+ \\(pid [0-9]+\\)\\] Task finished", first$stdout)))
  expect_gte(finished, 1)
  cloned <- lengths(regmatches(resumed$stdout, gregexpr("/fit/[0-9]+\\] Cloned from run", resumed$stdout)))
  ran <- lengths(regmatches(resumed$stdout, gregexpr("/fit/[0-9]+ \\(pid [0-9]+\\)\\] Task is starting", resumed$stdout)))
  expect_identical(c(cloned, ran), c(finished, 10L - finished))
  expect_match(resumed$stdout, "ys: 1 2 3 4 5 6 7 8 9 10", fixed = TRUE)
})

test_that("resume reruns every task of a step whose code changed, or of a step named", {
  first <- rscript_flow(wide_flow())
  fixed <- wide_flow("function(self) self$y <- self$input * 10  # the fix")
  resumed <- rscript_flow(fixed, "resume", dir = first$dir)
  expect_equal(resumed$status, 0, info = resumed$output)
  expect_match(resumed$stdout, "Step 'fit' changed since run [0-9]+: its tasks run again.")
  expect_no_match(resumed$stdout, "/fit/[0-9]+\\] Cloned")
  expect_match(resumed$stdout, "ys: 10 20 30 40 50 60 70 80 90 100", fixed = TRUE)
  again <- rscript_flow(fixed, c("resume", "fit"), dir = first$dir)
  expect_equal(again$status, 0, info = again$output)
  expect_length(regmatches(again$stdout, gregexpr("/fit/[0-9]+ \\(pid [0-9]+\\)\\] Task is starting", again$stdout))[[1]], 10)
})

test_that("a helper the step calls is part of its code: changing it reruns the step's tasks", {
  helper_flow <- function(factor) {
    code <- wide_flow("function(self) { if (self$input == 3 && !file.exists('fixed')) stop('item 3 fails'); self$y <- scale_it(self$input) }")
    c(code[1], sprintf("scale_it <- function(x) x * %d", factor), code[-1])
  }
  first <- rscript_flow(helper_flow(1))
  file.create(file.path(first$dir, "fixed"))
  resumed <- rscript_flow(helper_flow(2), "resume", dir = first$dir)
  expect_match(resumed$stdout, "Step 'fit' changed since run")
  expect_match(resumed$stdout, "ys: 2 4 6 8 10 12 14 16 18 20", fixed = TRUE)
})

test_that("run(resume = TRUE, origin_run_id =) resumes the run named, from an R session", {
  first <- rscript_flow(wide_flow())
  later <- rscript_flow(wide_flow(), dir = first$dir)
  origin <- regmatches(first$stdout, regexpr("(?<=run-id )[0-9]+", first$stdout, perl = TRUE))
  file.create(file.path(first$dir, "fixed"))
  code <- sub("^run\\(\\)$", sprintf("run(resume = TRUE, origin_run_id = '%s')", origin), wide_flow())
  writeLines(code, file.path(first$dir, "flow.R"))
  result <- processx::run(file.path(R.home("bin"), "Rscript"), c("-e", "source('flow.R')"), wd = first$dir,
                          error_on_status = FALSE)
  expect_equal(result$status, 0, info = result$stderr)
  expect_match(result$stdout, sprintf("Cloned from run %s", origin), fixed = TRUE)
  expect_error(args_from_call(list(), metaflow("F"), origin_run_id = "1"), "names the run that `run\\(resume = TRUE\\)`")
  expect_identical(args_from_call(list(), metaflow("F"), resume = TRUE, origin_run_id = "sfn-1"),
                   c("resume", "--origin-run-id", "sfn-1"))
})

test_that("a driver script that source()s the flow runs once: workers load the flow's file, not the driver", {
  dir <- withr::local_tempdir()
  writeLines(flow_script(
    "start <- function(self) self$items <- 1:4",
    pipeline = c('metaflow("DrivenFlow") %>%',
                 'step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%',
                 'step(step = "body", next_step = "join") %>%',
                 'step(step = "join", r_function = function(self, inputs) NULL, next_step = "end", join = TRUE) %>%',
                 'step(step = "end")')), file.path(dir, "flow.R"))
  result <- rscript_flow(c("cat('driver before\\n', file = 'trace.txt', append = TRUE)",
                           "source('flow.R')",
                           "cat('driver after\\n', file = 'trace.txt', append = TRUE)"),
                         args = c("run", "--max-workers", "2"), dir = dir, file = "driver.R")
  expect_equal(result$status, 0, info = result$output)
  expect_equal(readLines(file.path(dir, "trace.txt")), c("driver before", "driver after"))
  run <- jsonlite::read_json(Sys.glob(file.path(dir, ".metaflow", "DrivenFlow", "*", "_run.json")))
  expect_equal(basename(run$spec$script), "flow.R")  # what a deployment packages and its jobs run
})
