test_that("current() outside a task says so", {
  expect_false(current("is_running_flow"))
  expect_error(current("task_id"), "outside a running task")
})
