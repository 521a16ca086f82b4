# `Rscript flow.R <command>` runs its command in a Python process of its own (metaflow_r.cli.from_r) rather
# than in R through reticulate, which would load Matrix: about a second and 160 MiB saved on every command,
# `show` and `--help` included. run() in an R session keeps the embedded backend, for R conditions and objects.

# Runs the command; returns its exit status. The child has a session of its own, so a Ctrl-C reaches R
# alone and is passed on once; it ends when R ends (cli/from_r.py), so a kill of the script stops the run.
# Meanwhile this R, which has sourced the flow, forks the run's local tasks (R/task-worker.R): the child
# gets the task channel's ends as its file descriptors 3 (requests) and 4 (replies).
run_backend_process <- function(args, spec, info, flow) {
  python <- installed_python()
  request <- tempfile("metaflow-command-", fileext = ".json")
  mismatch <- paste0(request, ".mismatch")
  on.exit(unlink(c(request, mismatch)), add = TRUE)
  info$task_channel <- c(3L, 4L)
  write_document(list(argv = as.list(args), spec = spec, info = info), request)  # a full disk: one clear error
  flush(stdout())
  flush(stderr())
  requests <- processx::conn_create_pipepair()
  replies <- processx::conn_create_pipepair()
  process <- processx::process$new(python, c("-c", from_r_bootstrap, request, backend_version(), mismatch),
                                   stdin = "", stdout = "", stderr = "", cleanup = TRUE,
                                   connections = list(requests[[2]], replies[[1]]),
                                   env = c("current", LD_LIBRARY_PATH = python_library_path(python)))
  close(requests[[2]])
  close(replies[[1]])
  serve_tasks(flow, requests[[1]], replies[[2]], interrupted = function() process$interrupt())
  close(requests[[1]])
  close(replies[[2]])
  while (process$is_alive()) {
    tryCatch(process$wait(), interrupt = function(e) process$interrupt())
  }
  if (file.exists(mismatch)) {
    installed <- jsonlite::fromJSON(mismatch)
    abort_backend_mismatch(python, !is.null(installed), installed)
  }
  process$get_exit_status()
}

# Runs the command only with a backend of this package's version; otherwise writes the version it found
# (null: none) to the file R then reads, to refuse it as run() in an R session does (abort_backend_mismatch).
from_r_bootstrap <- paste(
  "import json, sys",
  "request, wanted, mismatch = sys.argv[1:]",
  "try:",
  "    from metaflow_r import __version__ as installed",
  "except ImportError:",
  "    installed = None",
  "if installed != wanted:",
  "    open(mismatch, 'w').write(json.dumps(installed))",
  "    sys.exit(1)",
  "from metaflow_r.cli.from_r import main",
  "main(request)",
  sep = "\n")

# LD_LIBRARY_PATH for the backend's Python: R puts Debian's library directory first, where a Python built
# with a shared libpython (pyenv, conda) would load the system's instead of its own (in its prefix's lib).
python_library_path <- function(python) {
  own <- file.path(dirname(dirname(normalizePath(python, mustWork = FALSE))), "lib")
  current <- strsplit(Sys.getenv("LD_LIBRARY_PATH"), .Platform$path.sep, fixed = TRUE)[[1]]
  paste(unique(c(own, current[nzchar(current)])), collapse = .Platform$path.sep)
}
