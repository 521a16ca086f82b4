# run()'s own arguments, from an RStudio session, become the same command line Rscript would get.
args_of <- function(...) metaflow:::args_from_call(...)

test_that("run(alpha = 0.5) is `run --alpha 0.5`", {
  expect_equal(args_of(list(alpha = 0.5)), c("run", "--alpha", "0.5"))
  expect_equal(args_of(list(n = 100000L, name = "a_b")), c("run", "--n", "100000", "--name", "a_b"))
})

test_that("step_functions = 'create' and 'trigger' become step-functions commands", {
  expect_equal(args_of(list(), step_functions = "create", with = "retry", max_workers = 500),
               c("--with", "retry", "step-functions", "create", "--max-workers", "500"))
  expect_equal(args_of(list(alpha = 0.5), step_functions = "trigger"),
               c("step-functions", "trigger", "--alpha", "0.5"))
})

test_that("flags, vectors, show, help and resume map to their options", {
  expect_equal(args_of(list(verbose = TRUE, quiet = FALSE)), c("run", "--verbose", "--no-quiet"))
  expect_equal(args_of(list(xs = c(1, 2))), c("run", "--xs", "1,2"))
  expect_equal(args_of(list(), show = TRUE), "show")
  expect_equal(args_of(list(), help = TRUE), "--help")
  expect_equal(args_of(list(), resume = "train"), c("resume", "train"))
  expect_equal(args_of(list(), datastore = "s3", tags = c("a", "b")),
               c("--datastore", "s3", "run", "--tag", "a", "--tag", "b"))
})

test_that("unnamed parameter values are refused", {
  expect_error(args_of(list(0.5)), "must be named")
})

test_that("Metaflow R's metadata and batch arguments are accepted with a note", {
  expect_message(args_of(list(), metadata = "service"), "not used")
  expect_message(args_of(list(), batch = TRUE), "step_functions")
})

test_that("numbers keep their precision on the way to the command line", {
  expect_equal(args_of(list(alpha = 0.123456789012)), c("run", "--alpha", "0.123456789012"))
})
