test_that("metaflow() starts a flow with its decorators", {
  flow <- metaflow("HelloFlow", decorator("schedule", hourly = TRUE))
  expect_s3_class(flow, "metaflow_flow")
  expect_equal(flow$name, "HelloFlow")
  expect_equal(flow$decorators[[1]]$name, "schedule")
})

test_that("metaflow() rejects names that are not identifiers", {
  expect_error(metaflow("my flow"), "single name")
  expect_error(metaflow(42), "single name")
})

test_that("flow-level arguments must be flow decorators", {
  expect_error(metaflow("F", "retry"), "must be decorators")
  expect_error(metaflow("F", decorator("retry")), "cannot decorate")
})

test_that("a flow prints its steps and edges", {
  flow <- metaflow("F") %>%
    step(step = "start", next_step = "end") %>%
    step(step = "end")
  expect_snapshot(print(flow))
})

test_that("steps refuse a value that is not a flow", {
  expect_error(step(list(), step = "start"), "made by")
})
