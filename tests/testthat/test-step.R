test_that("step() records the step with its decorators", {
  flow <- metaflow("F") %>%
    step(decorator("retry", times = 0), step = "start", r_function = function(self) NULL,
         next_step = c("a", "b"))
  s <- flow$steps$start
  expect_equal(s$next_step, c("a", "b"))
  expect_equal(s$decorators[[1]]$attributes$times, 0)
})

test_that("step() checks its arguments where the user typed them", {
  flow <- metaflow("F")
  expect_error(step(flow), "needs a name")
  expect_error(step(flow, step = "start", r_function = "start"), "must be a function")
  expect_error(step(flow, step = "j", r_function = function(self) NULL, join = TRUE), "needs 2")
  expect_error(step(flow, step = "start", next_step = 1), "step name")
  expect_error(step(flow, step = "start", foreach = "not a name"), "single name")
  expect_error(step(flow, step = "start", join = "yes"), "TRUE or FALSE")
  expect_error(step(flow %>% step(step = "start"), step = "start"), "defined twice")
  expect_error(step(flow, "retry", step = "start"), "must be decorators")
  expect_error(step(flow, decorator("schedule", daily = TRUE), step = "start"), "cannot decorate")
})

test_that("step() without step = is stats::step(), unchanged, which it masks", {
  fit <- stats::lm(mpg ~ wt + hp + qsec, data = mtcars)
  expect_equal(step(fit, trace = 0), stats::step(fit, trace = 0))
  expect_equal(step(object = fit, direction = "backward", trace = 0),
               stats::step(fit, direction = "backward", trace = 0))
  # Its refits find data that lives only where the user called it, and the model is fitted once per call.
  fits <- 0
  select <- function() {
    cars <- mtcars
    fitted <- function() {
      fits <<- fits + 1
      stats::lm(mpg ~ wt + hp + qsec, data = cars)
    }
    step(fitted(), trace = 0)
  }
  expect_s3_class(select(), "lm")
  expect_identical(fits, 1)
  expect_equal(fit %>% step(trace = 0), stats::step(fit, trace = 0))
})
