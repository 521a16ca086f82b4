# A warm worker: `Rscript flow.R worker`, started by the local runtime once per worker slot.
#
# It has loaded the package and sourced the flow once; for each task it reads a context file's path on
# stdin, forks, runs the task in the child (a copy-on-write snapshot of the worker, so no state leaks from
# one task to the next and a crash takes only the child), and reports the child's exit status on stdout
# after everything the child printed. Starting a task this way costs a fork, not an R start-up.

run_worker <- function(flow) {
  protocol()  # read once here, not in every forked task
  # The secret that follows the exit marker: unset before any fork, so no task can print it by mistake.
  nonce <- Sys.getenv(protocol()$worker_nonce_variable)
  Sys.unsetenv(protocol()$worker_nonce_variable)
  input <- file("stdin", open = "r")
  on.exit(close(input), add = TRUE)
  flow_files <- tempdir_contents()  # what the flow's own code put there as it was sourced: every task sees it
  repeat {
    context_file <- readLines(input, n = 1)
    if (!length(context_file) || !nzchar(context_file)) break
    tempdir(check = TRUE)  # a task that ended R with base::quit() took the session's tempdir with it
    job <- parallel::mcparallel(run_forked_task(flow, context_file), mc.set.seed = TRUE, silent = FALSE)
    status <- parallel::mccollect(job, wait = TRUE)[[1]]
    # A fork shares the worker's tempdir(): what a task wrote there must not be seen by the next one.
    unlink(setdiff(tempdir_contents(), flow_files), recursive = TRUE, force = TRUE)
    # A child killed by a signal returns nothing: that task failed.
    code <- if (is.numeric(status) && length(status) == 1) as.integer(status) else 1L
    cat(protocol()$worker_exit_marker, nonce, " ", code, "\n", sep = "")
    flush(stdout())
  }
  invisible(0L)
}

run_forked_task <- function(flow, context_file) {
  code <- run_task_reporting_errors(flow, c("task", "--context", context_file))
  flush(stdout())
  flush(stderr())
  code
}

tempdir_contents <- function() list.files(tempdir(), all.files = TRUE, full.names = TRUE, no.. = TRUE)
