test_that("branches, foreach, nested foreach and joins behave as Metaflow R users rely on", {
  dir <- withr::local_tempdir()
  writeLines("helper <- function() 'utils.R was sourced'", file.path(dir, "utils.R"))
  result <- rscript_flow(flow_script(
    "start <- function(self) { source('utils.R'); self$m <- Matrix::Matrix(c(1, 0, 0, 2), 2); self$who <- helper() }",
    "a <- function(self) self$x <- 'from a'",
    "b <- function(self) self$x <- 'from b'",
    "branch_join <- function(self, inputs) {",
    "  self$xs <- paste(inputs$a$x, inputs$b$x)",
    "  self$saw_x <- tryCatch({ self$x; 'yes' }, error = function(e) conditionMessage(e))",
    "  merge_artifacts(self, inputs, exclude = list('x'))",
    "  self$items <- c('p', 'q')",
    "}",
    "outer <- function(self) self$inner <- 1:2",
    "inner <- function(self) {",
    "  s <- self$foreach_stack()",
    "  self$cell <- sprintf('%s%d@%d.%d', s[[1]]$value, self$input, s[[1]]$index, self$index)",
    "  self$splits <- c(s[[1]]$num_splits, s[[2]]$num_splits)",
    "}",
    "join_inner <- function(self, inputs) {",
    "  self$cells <- unlist(gather_inputs(inputs, 'cell'))",
    "  merge_artifacts(self, inputs, exclude = list('cell', 'splits'))",
    "}",
    "join_outer <- function(self, inputs) {",
    "  self$all <- unlist(gather_inputs(inputs, 'cells'))",
    "  self$unnamed <- is.null(names(inputs))",
    "  merge_artifacts(self, inputs, exclude = list('cells', 'inner'))",
    "}",
    "single <- function(self) self$single <- 'one'",
    "body <- function(self) self$got <- self$input",
    "join_single <- function(self, inputs) { self$n_single <- length(inputs); merge_artifacts(self, inputs) }",
    "end <- function(self) {",
    "  cat('xs:', self$xs, '\\n')",
    "  cat('saw_x:', self$saw_x, '\\n')",
    "  cat('all:', self$all, '\\n')",
    "  cat('unnamed:', self$unnamed, '\\n')",
    "  cat('S4:', class(self$m), sum(self$m), '\\n')",
    "  cat('who:', self$who, '\\n')",
    "  cat('n_single:', self$n_single, '\\n')",
    "  cat('pathspec:', current('flow_name'), current('step_name'), current('retry_count'), '\\n')",
    "}",
    pipeline = c(
      'metaflow("ShapesFlow") %>%',
      'step(step = "start", r_function = start, next_step = c("a", "b")) %>%',
      'step(step = "a", r_function = a, next_step = "branch_join") %>%',
      'step(step = "b", r_function = b, next_step = "branch_join") %>%',
      'step(step = "branch_join", r_function = branch_join, next_step = "outer", join = TRUE, foreach = "items") %>%',
      'step(step = "outer", r_function = outer, next_step = "inner", foreach = "inner") %>%',
      'step(step = "inner", r_function = inner, next_step = "join_inner") %>%',
      'step(step = "join_inner", r_function = join_inner, next_step = "join_outer", join = TRUE) %>%',
      'step(step = "join_outer", r_function = join_outer, next_step = "single", join = TRUE) %>%',
      'step(step = "single", r_function = single, next_step = "body", foreach = "single") %>%',
      'step(step = "body", r_function = body, next_step = "join_single") %>%',
      'step(step = "join_single", r_function = join_single, next_step = "end", join = TRUE) %>%',
      'step(step = "end", r_function = end)'
    )
  ), args = c("run", "--max-workers", "3"), dir = dir)
  expect_equal(result$status, 0, info = result$output)
  expect_match(result$stdout, "xs: from a from b")
  expect_match(result$stdout, "saw_x: Step \"branch_join\": 'self' has no attribute 'x'", fixed = TRUE)
  expect_match(result$stdout, "all: p1@0.0 p2@0.1 q1@1.0 q2@1.1", fixed = TRUE)
  expect_match(result$stdout, "unnamed: TRUE")
  expect_match(result$stdout, "S4: ddiMatrix 3|S4: dgCMatrix 3|S4: d[a-z]+Matrix 3")
  expect_match(result$stdout, "who: utils.R was sourced")
  expect_match(result$stdout, "n_single: 1")
  expect_match(result$stdout, "pathspec: ShapesFlow end 0")
  run_dir <- grep("/[0-9]+$", list.dirs(file.path(dir, ".metaflow", "ShapesFlow"), recursive = FALSE), value = TRUE)
  expect_length(list.dirs(file.path(run_dir, "inner"), recursive = FALSE), 4)
})

test_that("a merge conflict in a join fails the run naming MergeArtifactsException", {
  result <- rscript_flow(flow_script(
    "a <- function(self) self$x <- 1",
    "b <- function(self) self$x <- 2",
    "join <- function(self, inputs) merge_artifacts(self, inputs)",
    pipeline = c('metaflow("ConflictFlow") %>%',
                 'step(step = "start", next_step = c("a", "b")) %>%',
                 'step(step = "a", r_function = a, next_step = "join") %>%',
                 'step(step = "b", r_function = b, next_step = "join") %>%',
                 'step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%',
                 'step(step = "end")')
  ))
  expect_equal(result$status, 1)
  expect_match(result$stdout, "Error in step 'join': MergeArtifactsException")
  expect_match(result$stdout, "\"x\"")
})

test_that("assigning a parameter inside a step fails with AttributeError", {
  result <- rscript_flow(flow_script(
    "start <- function(self) self$alpha <- 2",
    pipeline = c('metaflow("AssignParam") %>% parameter("alpha", default = 1) %>%',
                 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end")')
  ))
  expect_equal(result$status, 1)
  expect_match(result$stdout, "AttributeError")
})

test_that("--max-workers bounds how many tasks run at once", {
  result <- rscript_flow(flow_script(
    "start <- function(self) self$items <- 1:6",
    "body <- function(self) { cat('begin\\n', file = 'events', append = TRUE); Sys.sleep(0.6); cat('end\\n', file = 'events', append = TRUE) }",
    pipeline = c('metaflow("Bounded") %>%',
                 'step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%',
                 'step(step = "body", r_function = body, next_step = "join") %>%',
                 'step(step = "join", r_function = function(self, inputs) NULL, next_step = "end", join = TRUE) %>%',
                 'step(step = "end")')
  ), args = c("run", "--max-workers", "2"))
  expect_equal(result$status, 0, info = result$output)
  # The tasks' begin and end lines, in the order they were appended: how many ran at once, with no clock.
  events <- readLines(file.path(result$dir, "events"))
  expect_equal(sum(events == "begin"), 6)
  overlap <- cumsum(ifelse(events == "begin", 1, -1))
  expect_lte(max(overlap), 2)
  expect_gte(max(overlap), 2)
})

test_that("decorator('environment') sets variables for its step only", {
  result <- rscript_flow(flow_script(
    "start <- function(self) cat('start sees:', Sys.getenv('MODEL_STAGE', 'unset'), '\\n')",
    "end <- function(self) cat('end sees:', Sys.getenv('MODEL_STAGE', 'unset'), '\\n')",
    pipeline = c('metaflow("EnvFlow") %>%',
                 'step(decorator("environment", vars = list(MODEL_STAGE = "prod")), step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end", r_function = end)')
  ))
  expect_equal(result$status, 0, info = result$output)
  expect_match(result$stdout, "start sees: prod")
  expect_match(result$stdout, "end sees: unset")
})
