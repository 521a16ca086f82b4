# Artifacts R cannot carry to another process are refused at the end of the step that stores them.

test_that("a connection stored in a step fails that step, naming the artifact, and the next never runs", {
  result <- rscript_flow(flow_script(
    "start <- function(self) self$log <- file('user.log', 'w')",
    "end <- function(self) writeLines('from end', self$log)",
    pipeline = c('metaflow("ConnectionFlow") %>%',
                 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end", r_function = end)')
  ))
  expect_equal(result$status, 1, info = result$output)
  expect_match(result$stdout, "Error in step 'start'", fixed = TRUE)
  expect_match(result$stdout, "Artifact \"log\" cannot be stored: `log` is a connection", fixed = TRUE)
  expect_false(grepl("from end", paste(readLines(file.path(result$dir, "user.log")), collapse = "\n")))
})

test_that("an external pointer anywhere in an artifact is refused, naming where, and nothing is left written", {
  path <- withr::local_tempfile(fileext = ".rds")
  handle <- new("externalptr")
  model <- list(coef = 1:3, fit = list(state = structure(1, handle = handle)))
  caught <- tryCatch(save_portable_artifact("model", model, path), error = identity)
  expect_s3_class(caught, "metaflow_artifact_error")
  expect_match(conditionMessage(caught), "`attr(model$fit$state, \"handle\")` is an external pointer", fixed = TRUE)
  expect_false(file.exists(path))

  env <- new.env()
  env$con <- textConnection("x")
  on.exit(close(env$con), add = TRUE)
  closure <- local(function() con, env)
  caught <- tryCatch(save_portable_artifact("f", closure, path), error = identity)
  expect_match(conditionMessage(caught), "`environment(f)$con` is a connection", fixed = TRUE)
})

test_that("what R carries across processes is stored as before: closures, environments, S4, data frames", {
  path <- withr::local_tempfile(fileext = ".rds")
  env <- new.env()
  env$self_ref <- env  # a cycle is walked once
  values <- list(fn = local(function(x) x + k, list2env(list(k = 2))), env = env, df = data.frame(a = 1:2),
                 s4 = Matrix::Matrix(c(1, 0, 0, 2), 2), f = stats::lm)
  for (name in names(values)) {
    save_portable_artifact(name, values[[name]], path)
    expect_true(file.exists(path), info = name)
  }
  expect_equal(readRDS(path), stats::lm)
})
