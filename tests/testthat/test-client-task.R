client_test_dir()
task_flow_code <- c(
  "library(metaflow)",
  "start <- function(self) {",
  "  print('hello from start')",
  "  message('a note on stderr')",
  "  self$x <- 1",
  "}",
  "flaky <- function(self) {",
  "  if (current('retry_count') == 0) stop('the first attempt fails')",
  "  self$y <- self$x + 1",
  "}",
  "metaflow('ClientTaskFlow') %>%",
  "  step(step = 'start', r_function = start, next_step = 'flaky') %>%",
  "  step(decorator('retry', times = 1), step = 'flaky', r_function = flaky, next_step = 'end') %>%",
  "  step(step = 'end') %>%",
  "  run()"
)
task_run_id <- client_expect_run(client_run_flow(task_flow_code))
task_run <- run_client$new("ClientTaskFlow", task_run_id)
start_pathspec <- paste0("ClientTaskFlow/", task_run_id, "/start/1")

test_that("a task is found from its step or by pathspec", {
  step <- task_run$step("start")
  by_step <- task_client$new(step, "1")
  by_number <- step$task(1)
  by_pathspec <- task_client$new(start_pathspec)
  by_step_pathspec <- task_client$new(paste0("ClientTaskFlow/", task_run_id, "/start"), "1")
  from_client <- mf_client$new()$task(step, "1")
  from_shortcut <- new_task("ClientTaskFlow", task_run_id, "start", "1")
  for (task in list(by_step, by_number, by_pathspec, by_step_pathspec, from_client, from_shortcut)) {
    expect_s3_class(task, "task_client")
    expect_identical(task$pathspec, start_pathspec)
    expect_identical(task$artifact("x"), 1)
  }
  expect_identical(by_step$id, "1")
  expect_identical(by_step$task_id, "1")
  expect_identical(by_step$parent, "start")
  expect_identical(by_step$step_name, "start")
  expect_identical(by_step$run_id, task_run_id)
  expect_identical(by_step$flow_name, "ClientTaskFlow")
  expect_identical(by_step$tags, task_run$tags)
})

test_that("a task's artifacts, status and times", {
  task <- task_client$new(start_pathspec)
  expect_identical(task$artifacts, "x")
  expect_true(task$finished)
  expect_true(task$successful)
  expect_null(task$exception)
  expect_identical(task$retry_count, 0L)
  expect_null(task$index)
  expect_s3_class(task$created_at, "POSIXct")
  expect_true(task$finished_at >= task$created_at)
  expect_output(print(task), "start/1: successful, 1 artifact(s)", fixed = TRUE)
  expect_output(task$summary(), "Artifacts:\\s+x")
})

test_that("stdout and stderr are what the step printed", {
  task <- task_client$new(start_pathspec)
  expect_match(task$stdout, "hello from start")
  expect_no_match(task$stdout, "a note on stderr")
  expect_match(task$stderr, "a note on stderr")
})

test_that("a retried task shows its successful latest attempt", {
  flaky <- task_run$step("flaky")
  expect_length(flaky$tasks, 1)
  task <- flaky$task(flaky$tasks)
  expect_identical(task$retry_count, 1L)
  expect_identical(task$attempt, 1L)
  expect_true(task$successful)
  expect_identical(task$artifact("y"), 2)
  expect_no_match(task$stderr, "the first attempt fails")
  expect_identical(task$input_paths, paste0(task_run_id, "/start/1"))
})

test_that("a missing artifact or task is a clear error", {
  task <- task_client$new(start_pathspec)
  expect_error(task$artifact("nope"), "has no attribute 'nope'")
  expect_error(task$artifact("nope"), "Its artifacts: \"x\"")
  err <- expect_error(task_client$new(paste0("ClientTaskFlow/", task_run_id, "/start/99")),
                      "does not exist or never finished")
  expect_no_match(conditionMessage(err), "Traceback")
  expect_error(task_client$new(task_run$step("start")), "needs a `task_id`")
  expect_error(task_client$new("ClientTaskFlow/1/start"), "Expected a pathspec like")
})

test_that("a task's artifacts come as a table with type, size and preview; a failed attempt has its R error", {
  table <- task_client$new(start_pathspec)$artifacts_table()
  expect_identical(table$name, "x")
  expect_identical(table$type, "numeric")
  expect_true(table$size > 0)
  expect_identical(table$preview, "num 1")
  flaky <- task_run$step("flaky")$task(task_run$step("flaky")$tasks[1])
  expect_null(flaky$error)  # its latest attempt succeeded
})

many_flow_code <- c(
  "library(metaflow)",
  "start <- function(self) {",
  "  for (i in 1:300) self[[sprintf('a_%03d', i)]] <- if (i %% 2) i else as.character(i)",
  "  big <- data.frame(x = seq(0.5, 1e5, by = 0.5), day = as.Date('2024-01-01') + 0:199999)",
  "  attr(big, 'note') <- 'kept'",
  "  self$big <- structure(big, class = c('big_frame', 'data.frame'))",
  "}",
  "metaflow('ManyArtifactsFlow') %>%",
  "  step(step = 'start', r_function = start, next_step = 'end') %>%",
  "  step(step = 'end') %>%",
  "  run()"
)
many_run_id <- client_expect_run(client_run_flow(many_flow_code, env = c(METAFLOW_R_PROGRESS_BYTES = "1e6")))
many_pathspec <- paste0("ManyArtifactsFlow/", many_run_id, "/start/1")

test_that("every artifact of a task with many reads back as the step stored it", {
  task <- task_client$new(many_pathspec)
  names <- grep("^a_", task$artifacts, value = TRUE)
  expect_length(names, 300)
  values <- lapply(names, task$artifact)
  expect_identical(values, lapply(1:300, function(i) if (i %% 2) i else as.character(i)))
  previews <- task$artifacts_table()$preview
  expect_identical(previews[task$artifacts_table()$name %in% c("a_001", "a_002")], c("int 1", "chr \"2\""))
})

test_that("a large artifact round-trips exactly, and storing it showed progress in the task's stderr", {
  task <- task_client$new(many_pathspec)
  big <- data.frame(x = seq(0.5, 1e5, by = 0.5), day = as.Date("2024-01-01") + 0:199999)
  attr(big, "note") <- "kept"
  expect_identical(task$artifact("big"), structure(big, class = c("big_frame", "data.frame")))
  expect_match(task$stderr, "Storing artifact 'big' \\([0-9.]+ MB\\)\\.\\.\\.")
  expect_no_match(task$stderr, "artifact 'a_")
})
