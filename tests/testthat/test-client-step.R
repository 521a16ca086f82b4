client_test_dir()
shapes_code <- c(
  "library(metaflow)",
  "start <- function(self) self$base <- 1",
  "a <- function(self) self$from <- 'a'",
  "b <- function(self) self$from <- 'b'",
  "join_ab <- function(self, inputs) {",
  "  self$froms <- unlist(gather_inputs(inputs, 'from'))",
  "  self$xs <- c(10, 20, 30)",
  "}",
  "body <- function(self) self$y <- self$input * 2",
  "gather <- function(self, inputs) self$ys <- unlist(gather_inputs(inputs, 'y'))",
  "metaflow('ClientShapesFlow') %>%",
  "  step(step = 'start', r_function = start, next_step = c('a', 'b')) %>%",
  "  step(step = 'a', r_function = a, next_step = 'join_ab') %>%",
  "  step(step = 'b', r_function = b, next_step = 'join_ab') %>%",
  "  step(step = 'join_ab', r_function = join_ab, next_step = 'body', join = TRUE, foreach = 'xs') %>%",
  "  step(step = 'body', r_function = body, next_step = 'gather') %>%",
  "  step(step = 'gather', r_function = gather, next_step = 'end', join = TRUE) %>%",
  "  step(step = 'end') %>%",
  "  run()"
)
shapes_id <- client_expect_run(client_run_flow(shapes_code))
shapes_run <- run_client$new("ClientShapesFlow", shapes_id)

test_that("a run's steps come in the order they started", {
  steps <- shapes_run$steps
  expect_setequal(steps, c("start", "a", "b", "join_ab", "body", "gather", "end"))
  expect_identical(steps[c(1, 4:7)], c("start", "join_ab", "body", "gather", "end"))
})

test_that("a branch has one task per branch and a foreach one task per element", {
  counts <- vapply(shapes_run$steps, function(s) length(shapes_run$step(s)$tasks), 0L)
  expect_identical(counts[["a"]], 1L)
  expect_identical(counts[["b"]], 1L)
  expect_identical(counts[["body"]], 3L)
  expect_identical(sum(counts), 9L)
  expect_identical(shapes_run$step("join_ab")$task(shapes_run$step("join_ab")$a_task)$artifact("froms"),
                   c("a", "b"))
})

test_that("each foreach task knows its index and reads its own artifacts", {
  body <- shapes_run$step("body")
  tasks <- lapply(body$tasks, body$task)
  expect_identical(vapply(tasks, function(t) t$index, 0L), 0:2)
  expect_identical(vapply(tasks, function(t) t$artifact("y"), 0), c(20, 40, 60))
  expect_identical(shapes_run$artifact("ys"), c(20, 40, 60))
  expect_null(shapes_run$step("start")$task(shapes_run$step("start")$a_task)$index)
})

test_that("a step is found from its run or by pathspec", {
  pathspec <- paste0("ClientShapesFlow/", shapes_id, "/body")
  by_run <- step_client$new(shapes_run, "body")
  by_pathspec <- step_client$new(pathspec)
  by_run_pathspec <- step_client$new(paste0("ClientShapesFlow/", shapes_id), "body")
  from_client <- mf_client$new()$step(shapes_run, "body")
  for (step in list(by_run, by_pathspec, by_run_pathspec, from_client)) {
    expect_s3_class(step, "step_client")
    expect_identical(step$pathspec, pathspec)
    expect_identical(step$tasks, by_run$tasks)
  }
  expect_identical(by_run$task_ids, by_run$tasks)
  expect_identical(by_run$id, "body")
  expect_identical(by_run$step_name, "body")
  expect_identical(by_run$parent, shapes_id)
  expect_identical(by_run$run_id, shapes_id)
  expect_identical(by_run$flow_name, "ClientShapesFlow")
  expect_identical(by_run$tags, shapes_run$tags)
  expect_true(by_run$finished_at >= by_run$created_at)
})

test_that("a step's summary counts its tasks", {
  body <- shapes_run$step("body")
  expect_output(body$summary(), "Tasks:\\s+3 \\(3 successful, 0 failed\\)")
  expect_output(print(body), "body: 3 task(s)", fixed = TRUE)
  expect_output(shapes_run$summary(), "body (3)", fixed = TRUE)
})

test_that("a step that does not exist is an error naming the steps there are", {
  expect_error(shapes_run$step("nope"), "has no step \"nope\".*Its steps:.*start")
  expect_error(step_client$new(paste0("ClientShapesFlow/", shapes_id)), "Expected a pathspec like")
  expect_error(step_client$new(shapes_run), "needs a `step_id`")
})

test_that("a step's tasks come as a table: status, attempt, foreach index and timing", {
  table <- shapes_run$step("body")$tasks_table()
  expect_s3_class(table, "data.frame")
  expect_identical(nrow(table), 3L)
  expect_identical(table$index, 0:2)
  expect_true(all(table$successful))
  expect_identical(table$attempt, c(0L, 0L, 0L))
  expect_true(all(table$seconds >= 0))
  expect_true(all(is.na(table$error)))
})
