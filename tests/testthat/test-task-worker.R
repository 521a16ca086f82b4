foreach_flow <- function(body, retry = "") {
  flow_script(
    "start <- function(self) self$items <- 1:4",
    paste("body <- function(self) {", body, "}"),
    "join <- function(self, inputs) self$values <- unlist(gather_inputs(inputs, 'value'))",
    "end <- function(self) cat('values:', self$values, '\\n')",
    pipeline = c('metaflow("WorkerFlow") %>%',
                 'step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%',
                 sprintf('step(%s step = "body", r_function = body, next_step = "join") %%>%%', retry),
                 'step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%',
                 'step(step = "end", r_function = end)')
  )
}

test_that("a global assignment in one task is invisible to the next forked from the same R", {
  result <- rscript_flow(foreach_flow(paste(
    "if (exists('leak', envir = globalenv())) stop('state leaked from an earlier task')",
    "assign('leak', self$input, envir = globalenv())",
    "self$value <- Sys.getpid()", sep = "; ")), args = c("run", "--max-workers", "1"))
  expect_equal(result$status, 0, info = result$output)
  pids <- as.integer(strsplit(sub(".*values: ([0-9 ]+).*", "\\1", result$stdout), " ")[[1]])
  expect_length(unique(pids), 4)  # each task ran in its own process
})

test_that("tasks forked from the same R draw different random numbers", {
  result <- rscript_flow(foreach_flow("self$value <- runif(1)"), args = c("run", "--max-workers", "1"))
  expect_equal(result$status, 0, info = result$output)
  values <- strsplit(sub(".*values: ([0-9. e-]+)\n.*", "\\1", result$stdout), " ")[[1]]
  expect_length(unique(values), 4)
})

test_that("a task killed mid-run fails alone; its retry runs in a fresh process and the run succeeds", {
  body <- paste(
    "writeLines(as.character(Sys.getpid()), sprintf('pid-%d-%d', self$index, current('retry_count')))",
    "if (self$index == 1 && current('retry_count') == 0) tools::pskill(Sys.getpid(), tools::SIGKILL)",
    "self$value <- self$input", sep = "; ")
  result <- rscript_flow(foreach_flow(body, retry = 'decorator("retry", times = 1),'),
                         args = c("run", "--max-workers", "2"))
  expect_equal(result$status, 0, info = result$output)
  expect_match(result$stdout, "body/[0-9]+ \\(pid [0-9]+\\)\\] Task failed \\(exit status 1\\); retrying")
  expect_match(result$stdout, "values: 1 2 3 4")
  first <- readLines(file.path(result$dir, "pid-1-0"))
  retried <- readLines(file.path(result$dir, "pid-1-1"))
  expect_false(identical(first, retried))
})

test_that("a task that exceeds its timeout is stopped and the run fails naming it", {
  result <- rscript_flow(flow_script(
    "start <- function(self) Sys.sleep(30)",
    pipeline = c('metaflow("SlowFlow") %>%',
                 'step(decorator("timeout", seconds = 1), step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end")')
  ))
  expect_equal(result$status, 1)
  expect_match(result$stdout, "Task failed \\(timed out after 1 s\\)")
})

test_that("a step whose output does not end in a newline finishes and shows that output", {
  result <- rscript_flow(flow_script(
    "start <- function(self) cat('no newline at the end')",
    pipeline = c('metaflow("NoNewline") %>%',
                 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end")')
  ))
  expect_equal(result$status, 0, info = result$output)
  expect_match(result$stdout, "start/1 \\(pid [0-9]+\\)\\] no newline at the end\n")
})
