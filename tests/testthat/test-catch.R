catch_flow <- function(catch) {
  flow_script(
    "start <- function(self) self$kept <- 'from start'",
    "risky <- function(self) { self$partial <- 1; stop('the service is down') }",
    "end <- function(self) cat('kept:', self$kept, '| caught:', conditionMessage(self$problem), '| partial:', tryCatch(self$partial, error = function(e) 'absent'), '\\n')",
    pipeline = c('metaflow("CatchFlow") %>%',
                 'step(step = "start", r_function = start, next_step = "risky") %>%',
                 sprintf('step(%s step = "risky", r_function = risky, next_step = "end") %%>%%', catch),
                 'step(step = "end", r_function = end)')
  )
}

test_that("decorator('catch') records the step's error in its var and the run goes on", {
  result <- rscript_flow(catch_flow('decorator("retry", times = 1), decorator("catch", var = "problem"),'))
  expect_equal(result$status, 0, info = result$output)
  expect_match(result$stdout, "risky/[0-9]+ \\(pid [0-9]+\\)\\] Task failed \\(exit status 1\\); retrying")
  expect_match(result$stdout, "decorator\\(\"catch\"\\) records the error and the run goes on")
  expect_match(result$stdout, "kept: from start | caught: the service is down", fixed = TRUE)
  expect_match(result$stdout, "| partial: absent", fixed = TRUE)  # the failed attempt's artifacts are gone
})

test_that("without catch the same failure fails the run", {
  result <- rscript_flow(catch_flow(""))
  expect_equal(result$status, 1)
  expect_false(grepl("goes on", result$stdout))
})
