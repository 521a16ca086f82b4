# Issue 21: a 10-wide foreach drawing runif(1) gave one value in every task on Batch and fresh values on
# every local run, whatever set.seed() the script made.
rng_flow <- function(seed = NULL, draw = "function(self) self$u <- runif(1)") {
  c("library(metaflow)",
    "set.seed(42)",  # what users write at the top of a script: it must not decide the tasks' draws
    "start <- function(self) self$items <- 1:10",
    paste("draw <-", draw),
    "join <- function(self, inputs) self$us <- unlist(gather_inputs(inputs, 'u'))",
    "end <- function(self) cat('draws:', sprintf('%.12f', self$us), '\\n')",
    sprintf("metaflow('RngFlow'%s) %%>%%", if (is.null(seed)) "" else paste0(", seed = ", seed)),
    "  step(step = 'start', r_function = start, next_step = 'draw', foreach = 'items') %>%",
    "  step(step = 'draw', r_function = draw, next_step = 'join') %>%",
    "  step(step = 'join', r_function = join, next_step = 'end', join = TRUE) %>%",
    "  step(step = 'end', r_function = end) %>%",
    "  run()")
}

draws_of <- function(result) {
  expect_equal(result$status, 0, info = result$output)
  line <- regmatches(result$stdout, regexpr("draws: [^\n]*", result$stdout))
  as.numeric(strsplit(trimws(sub("draws: ", "", line)), " ")[[1]])
}

test_that("a seeded run draws the same numbers in every task however it is scheduled, one stream per task", {
  given <- rscript_flow(rng_flow(), c("run", "--seed", "7"))
  seeded <- draws_of(given)
  expect_length(unique(seeded), 10)
  # The seed is said at the start of the run, after the run-start line, with where it came from.
  expect_match(given$stdout, "Workflow starting [^\n]*\nSeed 7 \\(from --seed\\): each task draws")
  one_at_a_time <- draws_of(rscript_flow(rng_flow(), c("run", "--seed", "7", "--max-workers", "1")))
  expect_identical(one_at_a_time, seeded)
  # The flow's own seed does the same; another seed draws other numbers.
  from_flow <- rscript_flow(rng_flow(seed = 7))
  expect_identical(draws_of(from_flow), seeded)
  expect_match(from_flow$stdout, "Seed 7 (from metaflow(seed =))", fixed = TRUE)
  expect_false(any(draws_of(rscript_flow(rng_flow(), c("run", "--seed", "8"))) %in% seeded))
})

test_that("an unseeded run draws anew each time, and its recorded seed draws the same again", {
  dir <- withr::local_tempdir()
  unseeded <- rscript_flow(rng_flow(), dir = dir)
  expect_false(grepl("Seed ", unseeded$stdout, fixed = TRUE))  # drawn, not set: recorded, not said
  first <- draws_of(unseeded)
  second <- draws_of(rscript_flow(rng_flow(), dir = dir))
  expect_length(unique(first), 10)
  expect_false(any(second %in% first))
  withr::local_dir(dir)
  runs <- flow_client$new("RngFlow")$runs
  seed <- run_client$new("RngFlow", runs[2])$seed
  expect_true(is.numeric(seed) && seed >= 1)
  expect_identical(draws_of(rscript_flow(rng_flow(), c("run", "--seed", seed), dir = dir)), first)
  report <- paste(readLines(run_client$new("RngFlow", runs[2])$report(), warn = FALSE), collapse = "\n")
  expect_match(report, paste0("<td>Seed</td><td><code>", seed, "</code>"), fixed = TRUE)
})

test_that("a resumed run draws in its rerun tasks what they would have drawn", {
  failing <- "function(self) { if (self$input == 3 && !file.exists('fixed')) stop('item 3 fails'); self$u <- runif(1) }"
  dir <- withr::local_tempdir()
  failed <- rscript_flow(rng_flow(draw = failing), c("run", "--seed", "7"), dir = dir)
  expect_equal(failed$status, 1)
  file.create(file.path(dir, "fixed"))
  resuming <- rscript_flow(rng_flow(draw = failing), "resume", dir = dir)
  expect_match(resuming$stdout, "Seed 7 \\(from run [0-9]+\\)")
  resumed <- draws_of(resuming)
  expect_identical(resumed, draws_of(rscript_flow(rng_flow(), c("run", "--seed", "7"))))
})

test_that("run(seed =) and metaflow(seed =) take a whole number, and say so otherwise", {
  expect_identical(args_from_call(list(), metaflow("F"), seed = 7), c("run", "--seed", "7"))
  expect_identical(args_from_call(list(), metaflow("F"), step_functions = "trigger", seed = 7),
                   c("step-functions", "trigger", "--seed", "7"))  # a production run's seed
  expect_error(metaflow("F", seed = 1.5), "`seed` must be a whole number from 1 to 2147483646", class = "metaflow_usage_error")
  expect_error(metaflow("F", seed = "42"), "You supplied a string", class = "metaflow_usage_error")
  expect_error(args_from_call(list(), metaflow("F"), seed = 0), "You supplied a number, 0")
  expect_identical(metaflow("F", seed = 42)$seed, 42L)
})

test_that("a flow's own parameter named seed keeps --seed and run(seed =), and the flow's seed still seeds", {
  code <- c("library(metaflow)",
            "start <- function(self) { self$u <- runif(1); cat('seed parameter:', self$seed, '\\n') }",
            "end <- function(self) cat('draw:', sprintf('%.12f', self$u), '\\n')",
            "metaflow('SeedParameterFlow', seed = 5) %>%",
            "  parameter('seed', default = 1L) %>%",
            "  step(step = 'start', r_function = start, next_step = 'end') %>%",
            "  step(step = 'end', r_function = end) %>%",
            "  run(seed = as.integer(Sys.getenv('SEED_VALUE', '3')))")
  draw <- function(result) {
    expect_equal(result$status, 0, info = result$output)
    regmatches(result$stdout, regexpr("draw: [^\n]*", result$stdout))
  }
  from_shell <- rscript_flow(code, c("run", "--seed", "9"))
  expect_match(from_shell$stdout, "seed parameter: 9", fixed = TRUE)
  from_r <- rscript_flow(code, character(), env = c(SEED_VALUE = "9"))  # run(seed = 9) in the script
  expect_match(from_r$stdout, "seed parameter: 9", fixed = TRUE)
  # Both runs drew from the flow's seed, 5, not from the parameter's value.
  expect_identical(draw(from_r), draw(from_shell))
  expect_identical(draw(rscript_flow(sub("seed = 5", "seed = 6", code, fixed = TRUE), c("run", "--seed", "9"))) ==
                     draw(from_shell), FALSE)
})
