# run()'s own arguments, from an RStudio session, become the same command line Rscript would get.
flow_with <- function(...) {
  flow <- metaflow("ArgsFlow")
  for (p in list(...)) flow <- do.call(parameter, c(list(flow), p))
  flow
}
args_of <- function(params, flow = flow_with(), ...) metaflow:::args_from_call(params, flow, ...)

test_that("run(alpha = 0.5) is `run --alpha 0.5`", {
  flow <- flow_with(list("alpha", default = 0.1), list("n", default = 1L), list("label", default = "x"))
  expect_equal(args_of(list(alpha = 0.5), flow), c("run", "--alpha", "0.5"))
  expect_equal(args_of(list(n = 100000L, label = "a_b"), flow), c("run", "--n", "100000", "--label", "a_b"))
})

test_that("step_functions = 'create' and 'trigger' become step-functions commands", {
  expect_equal(args_of(list(), step_functions = "create", with = "retry", max_workers = 500),
               c("--with", "retry", "step-functions", "create", "--max-workers", "500"))
  expect_equal(args_of(list(alpha = 0.5), flow_with(list("alpha", default = 0.1)), step_functions = "trigger"),
               c("step-functions", "trigger", "--alpha", "0.5"))
})

test_that("flags, logical values, vectors, show, help and resume map to their options", {
  flow <- flow_with(list("verbose", is_flag = TRUE), list("quiet", is_flag = TRUE), list("b", default = TRUE),
                    list("xs", default = c(1, 2), separator = ","), list("ys", default = "a", separator = ";"))
  expect_equal(args_of(list(verbose = TRUE, quiet = FALSE), flow), c("run", "--verbose", "--no-quiet"))
  expect_equal(args_of(list(b = FALSE), flow), c("run", "--b", "false"))
  expect_equal(args_of(list(xs = c(1, 2.5)), flow), c("run", "--xs", "1,2.5"))
  expect_equal(args_of(list(ys = c("a", "b")), flow), c("run", "--ys", "a;b"))
  expect_equal(args_of(list(), show = TRUE), "show")
  expect_equal(args_of(list(), help = TRUE), "--help")
  expect_equal(args_of(list(), resume = "train"), c("resume", "train"))
  expect_equal(args_of(list(), datastore = "s3", tags = c("a", "b")),
               c("--datastore", "s3", "run", "--tag", "a", "--tag", "b"))
})

test_that("unnamed, unknown and ill-typed values are refused where they are written", {
  flow <- flow_with(list("alpha", default = 0.1), list("n", default = 1L), list("xs", default = "a", separator = ","))
  expect_error(args_of(list(0.5), flow), "must be named", class = "metaflow_parameter_error")
  expect_error(args_of(list(beta = 1), flow), "has no parameter \"beta\"", class = "metaflow_parameter_error")
  expect_error(args_of(list(alpha = "abc"), flow), "must be a finite number")
  expect_error(args_of(list(alpha = Inf), flow), "must be a finite number")
  expect_error(args_of(list(alpha = c(1, 2)), flow), "single value")
  expect_error(args_of(list(n = 2147483648), flow), "integer range")
  expect_error(args_of(list(n = 1.5), flow), "whole number")
  expect_error(args_of(list(xs = c("a", "b,c")), flow), "holds its separator")
})

test_that("Metaflow R's metadata argument is accepted with a note", {
  expect_message(args_of(list(), metadata = "service"), "not used")
})

test_that("batch = TRUE runs each step on AWS Batch, as with = \"batch\" does", {
  expect_identical(args_of(list(), batch = TRUE), c("--with", "batch", "run"))
  expect_identical(args_of(list(), with = "retry", batch = TRUE), c("--with", "retry", "--with", "batch", "run"))
  expect_identical(args_of(list(), with = "batch:cpu=2"), c("--with", "batch:cpu=2", "run"))
})

test_that("numbers keep every digit on the way to the command line", {
  flow <- flow_with(list("alpha", default = 0.1))
  for (x in c(pi, 0.1, 1 / 3, 0.123456789012, 1e-300, 123456789.123456789, -2.5e17)) {
    text <- args_of(list(alpha = x), flow)[3]
    expect_identical(as.numeric(text), x, info = text)
  }
  expect_equal(args_of(list(alpha = 0.1), flow)[3], "0.1")
})

test_that("a parameter named f is a parameter, not the flow, and reaches the step", {
  result <- rscript_flow(flow_script(
    "start <- function(self) cat('f is', sprintf('%.17g', self$f), '\\n')",
    pipeline = c('metaflow("PartialFlow") %>% parameter("f", default = 1) %>%',
                 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end")'),
    run_call = "run(f = pi)"
  ), args = character())
  expect_equal(result$status, 0, info = result$output)
  expect_match(result$stdout, "f is 3.1415926535897931", fixed = TRUE)  # pi, every digit
})
