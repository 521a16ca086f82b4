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
