# debug_task(): a task's own inputs in the console, to reproduce what its step function did.

debug_dir <- client_test_dir()
debug_code <- c(
  "library(metaflow)",
  "start <- function(self) { self$scale <- 10; self$items <- c(3, 4) }",
  "body <- function(self) self$scaled <- self$input * self$scale",
  "join <- function(self, inputs) self$total <- sum(unlist(gather_inputs(inputs, 'scaled')))",
  "check <- function(self) if (self$total > self$limit) stop('total ', self$total, ' over the limit')",
  "metaflow('DebugFlow') %>% parameter('limit', default = 50) %>%",
  "  step(step = 'start', r_function = start, next_step = 'body', foreach = 'items') %>%",
  "  step(step = 'body', r_function = body, next_step = 'join') %>%",
  "  step(step = 'join', r_function = join, next_step = 'check', join = TRUE) %>%",
  "  step(step = 'check', r_function = check, next_step = 'end') %>%",
  "  step(step = 'end') %>%",
  "  run()"
)
debug_run <- client_expect_run(client_run_flow(debug_code), status = 1)
check <- function(self) if (self$total > self$limit) stop("total ", self$total, " over the limit")

test_that("the failed task's self reproduces its error in the console", {
  task <- run_client$new("DebugFlow", debug_run)$step("check")$task("5")
  expect_false(task$successful)
  expect_identical(conditionMessage(task$error), "total 70 over the limit")
  expect_identical(task$error$traceback, c("check(self)", "stop(\"total \", self$total, \" over the limit\")"))
  expect_message(debug_task(task$pathspec), "check(task$self)", fixed = TRUE)
  started <- suppressMessages(debug_task(task$pathspec))
  expect_identical(started$self$total, 70)
  expect_identical(started$self$limit, 50)  # the run's parameter
  expect_null(started$inputs)
  expect_error(check(started$self), "total 70 over the limit")
})

test_that("a foreach task's self has its input and index; a join's inputs are its inputs", {
  body <- suppressMessages(debug_task(paste0("DebugFlow/", debug_run, "/body/3")))
  expect_identical(body$self$input, 4)
  expect_identical(body$self$index, 1L)
  expect_identical(body$self$scale, 10)
  join <- suppressMessages(debug_task(paste0("DebugFlow/", debug_run, "/join/4")))
  expect_length(join$inputs, 2)
  expect_identical(unlist(lapply(join$inputs, function(i) i$scaled)), c(30, 40))
  expect_output(print(join$inputs[[2]]), paste0("<metaflow self: ", debug_run, "/body/3>"), fixed = TRUE)
})
