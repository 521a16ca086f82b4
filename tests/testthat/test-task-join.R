test_that("gather_inputs collects one artifact per input, in order", {
  inputs <- list(a = fake_self(list(x = 1), read_only = TRUE), b = fake_self(list(x = 2), read_only = TRUE))
  expect_equal(gather_inputs(inputs, "x"), list(1, 2))
  expect_equal(inputs$b$x, 2)
})

test_that("inputs of a join are read-only", {
  input <- fake_self(list(x = 1), read_only = TRUE)
  expect_error(input$x <- 2, "read-only")
})

test_that("a join sees no input artifact until merge_artifacts()", {
  self <- fake_self(parameters = "alpha", join = "branch")
  expect_error(self$shared, "has no attribute")
  expect_error(self$shared, "merge_artifacts")
})

test_that("merge_artifacts sets what the inputs agree on and skips excluded and set names", {
  dir <- withr::local_tempdir()
  same <- file.path(dir, "same.rds")
  saveRDS("shared", same)
  input <- function(x, own) {
    input <- fake_self(list(x = x, own = own), read_only = TRUE)
    refs <- get(".refs", envir = input)
    refs$shared <- list(sha = "same-sha", path = same)
    assign(".refs", refs, envir = input)
    input
  }
  inputs <- list(a = input(1, "a"), b = input(2, "b"))
  self <- fake_self(join = "branch")
  self$own <- "mine"
  merge_artifacts(self, inputs, exclude = list("x"))
  expect_equal(self$shared, "shared")
  expect_equal(self$own, "mine")
  expect_error(self$x, "has no attribute")
})

test_that("a merge conflict names MergeArtifactsException and sets nothing", {
  inputs <- list(a = fake_self(list(x = 1, y = 1), read_only = TRUE),
                 b = fake_self(list(x = 2, y = 1), read_only = TRUE))
  self <- fake_self(join = "branch")
  expect_error(merge_artifacts(self, inputs), "MergeArtifactsException")
  expect_error(merge_artifacts(self, inputs), "\"x\"")
  expect_equal(names(self), character())
})

test_that("a foreach of one item gives its join one input; one of none is refused, saying why", {
  code <- flow_script(
    "start <- function(self) self$items <- seq_len(self$n)",
    "join <- function(self, inputs) self$got <- length(inputs)",
    pipeline = c('metaflow("WidthFlow") %>% parameter("n", default = 1L) %>%',
                 'step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%',
                 'step(step = "body", r_function = function(self) self$v <- self$input, next_step = "join") %>%',
                 'step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%',
                 'step(step = "end", r_function = function(self) cat("join got", self$got, "inputs\\n"))'))
  one <- rscript_flow(code)
  expect_equal(one$status, 0, info = one$output)
  expect_match(one$stdout, "join got 1 inputs", fixed = TRUE)
  none <- rscript_flow(code, args = c("run", "--n", "0"))
  expect_equal(none$status, 1, info = none$output)
  expect_match(none$output, "A foreach needs at least one element to split over.", fixed = TRUE)
})
