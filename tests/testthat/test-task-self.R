test_that("artifacts persist through self: inherited, assigned, modified in place", {
  self <- fake_self(list(x = 1, df = data.frame(a = 1:2)))
  expect_equal(self$x, 1)
  self$y <- "new"
  self$df$b <- c("u", "v")
  expect_equal(self$y, "new")
  expect_equal(self[["df"]]$b, c("u", "v"))
  expect_equal(names(self), c("df", "x", "y"))
})

test_that("a step function's assignments reach the caller's self", {
  self <- fake_self()
  f <- function(self) self$z <- 42
  f(self)
  expect_equal(self$z, 42)
})

test_that("only assigned artifacts are written again; inherited ones keep their hash", {
  self <- fake_self(list(x = 1, untouched = 2))
  self$x
  self$y <- 3
  out_dir <- withr::local_tempdir()
  outputs <- metaflow:::self_outputs(self, out_dir)
  expect_named(outputs, c("x", "untouched", "y"), ignore.order = TRUE)
  expect_true(!is.null(outputs$x$sha) && !is.null(outputs$untouched$sha))
  expect_equal(readRDS(file.path(out_dir, outputs$y$file)), 3)
})

test_that("reading a missing artifact says 'has no attribute'", {
  self <- fake_self(list(x = 1), step = "train")
  expect_error(self$nope, "'self' has no attribute 'nope'")
  expect_error(self$nope, "train")
})

test_that("assigning a parameter raises an AttributeError", {
  self <- fake_self(list(alpha = 0.1), parameters = "alpha")
  expect_equal(self$alpha, 0.1)
  expect_error(self$alpha <- 2, "AttributeError")
  expect_equal(self$alpha, 0.1)
})

test_that("reserved names cannot be assigned", {
  self <- fake_self()
  expect_error(self$input <- 1, "AttributeError")
  expect_error(self$index <- 1, "AttributeError")
})

test_that("input, index and foreach_stack come from the foreach frames, outermost first", {
  dir <- withr::local_tempdir()
  outer <- file.path(dir, "outer.rds")
  inner <- file.path(dir, "inner.rds")
  saveRDS(c("a", "b"), outer)
  saveRDS(list(10, 20, 30), inner)
  stack <- list(
    list(kind = "foreach", step = "start", index = 1, num_splits = 2, var_path = outer),
    list(kind = "branch", step = "mid", index = "x", num_splits = 2),
    list(kind = "foreach", step = "x", index = 2, num_splits = 3, var_path = inner)
  )
  self <- fake_self(split_stack = stack)
  expect_equal(self$input, 30)
  expect_equal(self$index, 2)
  expect_equal(self$foreach_stack(), list(
    list(index = 1, num_splits = 2, value = "b"),
    list(index = 2, num_splits = 3, value = 30)
  ))
})

test_that("input outside a foreach is a clear error", {
  expect_error(fake_self(step = "start")$input, "only in steps that run inside a foreach")
})

test_that("a scalar's preview is what str() shows, written without str()", {
  by_str <- function(value) {
    text <- utils::capture.output(utils::str(value, max.level = 1, vec.len = 3, nchar.max = 60, list.len = 5,
                                             give.attr = FALSE, give.head = TRUE))
    gsub("\\s+", " ", trimws(paste(text, collapse = " ")))
  }
  scalars <- list(1, 1L, 3.14159, -2.5, 1e15, 123456, 1234567, 0.000123, 1e-10, NaN, -Inf, 2^31, 1 / 3, 999.5,
                  NA, NA_integer_, NA_real_, NA_character_, TRUE, "a", "a  b", "say \"hi\"", strrep("x", 50),
                  strrep("x", 70), "tab\there", "caf\u00e9")
  for (value in scalars) expect_identical(metaflow:::artifact_preview(value), by_str(value))
  expect_false(is.null(metaflow:::scalar_preview(3.14159)))
})
