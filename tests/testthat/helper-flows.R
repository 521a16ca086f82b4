# Runs a flow script the way users do, `Rscript flow.R <args>`, in its own directory.
rscript_flow <- function(code, args = "run", dir = withr::local_tempdir(.local_envir = parent.frame()),
                         env = character(), file = "flow.R") {
  script <- file.path(dir, file)
  writeLines(code, script)
  result <- processx::run(file.path(R.home("bin"), "Rscript"), c(script, args), wd = dir,
                          error_on_status = FALSE, env = if (length(env)) c("current", env))
  result$dir <- dir
  result$output <- paste(result$stdout, result$stderr)
  result
}

# A flow script: step functions as text, then the pipeline (lines joined by the user's own %>%), then run().
flow_script <- function(..., pipeline, run_call = "run()") {
  last <- length(pipeline)
  pipeline[last] <- paste(pipeline[last], "%>%")
  c("library(metaflow)", ..., pipeline, run_call)
}

expect_no_traceback <- function(result) {
  expect_false(grepl("Traceback", result$output, fixed = TRUE))
}
