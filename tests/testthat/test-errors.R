# Every error is a classed condition that names the user's call, with the message users read.

flow_with_steps <- function() {
  metaflow("F") %>% step(step = "start", next_step = "end") %>% step(step = "end")
}

test_that("builder errors are classed by kind and report the builder the user called", {
  expect_snapshot(error = TRUE, {
    metaflow("my flow")
    step(list(), step = "start")
    metaflow("F") %>% step(step = "start", next_step = 1)
    metaflow("F") %>% parameter("input")
    metaflow("F") %>% parameter("max_workers")
    metaflow("F") %>% parameter("alpha", required = NA)
    metaflow("F") %>% parameter("alpha", type = "complex")
    decorator("retry", times = -1)
    decorator("schedule", hourly = TRUE, daily = TRUE)
    metaflow("F", decorator("retry"))
  })
  expect_error(metaflow("my flow"), class = "metaflow_graph_error")
  expect_error(step(list(), step = "start"), class = "metaflow_usage_error")
  expect_error(metaflow("F") %>% parameter("input"), class = "metaflow_parameter_error")
  expect_error(decorator("retry", times = -1), class = "metaflow_decorator_error")
  expect_error(decorator("retry", times = -1), class = "metaflow_error")
})

test_that("the call reported is the user's, never an internal helper", {
  caught <- tryCatch(metaflow("F") %>% parameter("alpha", required = NA), error = identity)
  expect_identical(as.character(conditionCall(caught)[[1]]), "parameter")
  caught <- tryCatch(decorator("resources", cpu = 0), error = identity)
  expect_identical(as.character(conditionCall(caught)[[1]]), "decorator")
  caught <- tryCatch(run(flow_with_steps(), 0.5), error = identity)
  expect_s3_class(caught, "metaflow_parameter_error")
  expect_identical(as.character(conditionCall(caught)[[1]]), "run")
})

test_that("errors raised inside a step carry their kind", {
  ctx <- list(step = "s", parameter_names = list("alpha"), split_stack = list())
  self <- metaflow:::new_self(ctx, list())
  expect_error(self$alpha <- 1, class = "metaflow_attribute_error")
  expect_error(self$missing, class = "metaflow_attribute_error")
  expect_error(self$input, class = "metaflow_attribute_error")
  expect_error(current("run_id"), class = "metaflow_usage_error")
  expect_snapshot(error = TRUE, {
    self$alpha <- 1
    current("what")
  })
})

test_that("an error from the backend keeps its class, message and bullets", {
  dir <- withr::local_tempdir()
  withr::local_envvar(METAFLOW_DATASTORE_SYSROOT_LOCAL = dir, METAFLOW_DEFAULT_DATASTORE = "local")
  dir.create(file.path(dir, ".metaflow", "SomeFlow", "123"), recursive = TRUE)
  writeLines("{}", file.path(dir, ".metaflow", "SomeFlow", "123", "_run.json"))
  caught <- tryCatch(metaflow:::client_query("run", "SomeFlow", "456", NULL), error = identity)
  expect_s3_class(caught, "metaflow_datastore_error")
  expect_s3_class(caught, "metaflow_error")
  expect_identical(caught$exit_code, 4L)
  expect_snapshot(error = TRUE, metaflow:::client_query("run", "SomeFlow", "456", NULL))
})

test_that("each condition's classes are the catalogue's: its own and its parents', as the backend gives them", {
  catalogue <- jsonlite::fromJSON(metaflow:::backend_data_file("errors.json"), simplifyVector = FALSE)$conditions
  expect_identical(class(tryCatch(decorator("retry", times = -1), error = identity))[1:3],
                   c("metaflow_decorator_error", "metaflow_graph_error", "metaflow_error"))
  expect_identical(class(tryCatch(metaflow("F") %>% parameter("input"), error = identity))[1:3],
                   c("metaflow_parameter_error", "metaflow_usage_error", "metaflow_error"))
  errors <- metaflow:::backend("core.errors")
  for (entry in Filter(function(e) !is.null(e$python), catalogue)) {
    from_python <- unlist(errors[[entry$python]]$r_classes())
    expect_identical(from_python, metaflow:::condition_classes(entry$class), info = entry$class)
    expect_identical(as.integer(errors[[entry$python]]$exit_code), as.integer(entry$exit_code), info = entry$class)
  }
})

test_that("?metaflow_conditions documents exactly the catalogue's conditions", {
  catalogue <- jsonlite::fromJSON(metaflow:::backend_data_file("errors.json"), simplifyVector = FALSE)
  rd <- tools::Rd_db("metaflow")[["metaflow_conditions.Rd"]]
  text <- paste(utils::capture.output(tools::Rd2txt(rd, options = list(underline_titles = FALSE))), collapse = "\n")
  documented <- setdiff(unique(regmatches(text, gregexpr("metaflow_[a-z_]+", text))[[1]]), "metaflow_r")
  listed <- c(vapply(catalogue$conditions, `[[`, "", "class"), vapply(catalogue$task_failures, `[[`, "", "class"))
  expect_setequal(documented, listed)
})
