# The Client API's tests read real runs. A test file calls client_test_dir() and client_run_flow() at its
# top level, so its flows run once per file, in a temporary directory that stays the working directory
# (where the client finds the datastore) until the file's tests are done.

client_test_dir <- function(env = parent.frame()) {
  dir <- withr::local_tempdir("metaflow-client-", .local_envir = env)
  withr::local_dir(dir, .local_envir = env)
  withr::local_envvar(METAFLOW_DATASTORE_SYSROOT_LOCAL = NA, .local_envir = env)
  metaflow::set_default_namespace()
  withr::defer(metaflow::set_default_namespace(), envir = env)
  dir
}

# Runs `Rscript flow.R <args>` in `dir` as a user would; returns processx's result plus the run's id.
client_run_flow <- function(code, args = "run", dir = getwd(), env = character(), file = "flow.R") {
  script <- file.path(dir, file)
  writeLines(code, script)
  id_file <- tempfile("run-id-")
  on.exit(unlink(id_file), add = TRUE)
  result <- processx::run(file.path(R.home("bin"), "Rscript"), c(script, args, "--run-id-file", id_file),
                          wd = dir, error_on_status = FALSE, env = if (length(env)) c("current", env))
  result$run_id <- if (file.exists(id_file)) readLines(id_file, warn = FALSE) else NA_character_
  result
}

# A run that must have succeeded, for the runs a test file builds on.
client_expect_run <- function(result, status = 0) {
  if (result$status != status || is.na(result$run_id)) {
    stop("The flow run for the client tests ended with status ", result$status, ":\n", result$stdout,
         result$stderr, call. = FALSE)
  }
  result$run_id
}
