# Every task of a local run is a fork of one warm R: the R that runs `Rscript flow.R run`
# (R/backend-process.R), or, for run() in an R session, one `Rscript flow.R worker` the runtime starts.
# That R loaded the package and sourced the flow once; each fork is a copy-on-write snapshot of it, so a
# task costs a fork and the pages it writes, not an R start-up or an R per worker slot, no state leaks
# from one task to the next, and a crash takes only its fork.
#
# The runtime (runtime/forks.py) asks for a task with a line on `requests`: its token, its context file,
# the FIFOs its stdout and stderr go to and its temporary directory, tab-separated. This R forks and
# answers "<token> forked <pid>" on `replies`; the fork answers "<token> exited <status>" when its task
# is over, after all it printed. A fork that dies without a word is seen gone by the runtime.

# `Rscript flow.R worker`: the pipes are inherited file descriptors the runtime names in the environment.
run_worker <- function(flow) {
  fds <- as.integer(strsplit(Sys.getenv(protocol()$task_channel_variable), ",", fixed = TRUE)[[1]])
  requests <- processx::conn_create_fd(fds[1])
  replies <- processx::conn_create_fd(fds[2])
  serve_tasks(flow, requests, replies)
  invisible(0L)
}

# Forks a task for each request until the runtime closes `requests`. `interrupted` is called on a Ctrl-C
# (the forks ignore it: the runtime stops them, and says why).
serve_tasks <- function(flow, requests, replies, interrupted = function() NULL) {
  forked <- FALSE
  repeat {
    state <- tryCatch(processx::poll(list(requests), 1000)[[1]], interrupt = function(e) {
      interrupted()
      "interrupted"
    })
    if (!identical(state, "ready")) next
    for (request in processx::conn_read_lines(requests)) {
      if (!forked) {
        protocol()  # read once here, not in every fork
        isolate_flow_tempdir()
        # A full collection now leaves every object in R's old generation with room to allocate before the
        # next: a fork's own collections then mark only what it made, instead of writing (so copying) every
        # shared page. (A 40-wide run at 2 workers: peak 111 MiB instead of 118.)
        gc(full = TRUE)
        forked <- TRUE
      }
      fork_task(flow, request, replies)
    }
    if (!processx::conn_is_incomplete(requests)) break
  }
  tempdir(check = TRUE)  # a fork removed the spare (isolate_flow_tempdir): R code after run() needs one
  invisible()
}

fork_task <- function(flow, request, replies) {
  task <- as.list(stats::setNames(strsplit(request, "\t", fixed = TRUE)[[1]],
                                  c("token", "context", "stdout", "stderr", "tmp")))
  job <- tryCatch(parallel::mcparallel(run_forked_task(flow, task, replies), mc.set.seed = TRUE, detached = TRUE),
                  error = function(e) e)  # e.g. "unable to fork": that task fails, the run goes on
  if (inherits(job, "error")) {
    processx::conn_write(replies, sprintf("%s unforked %s\n", task$token, gsub("\n", " ", conditionMessage(job))))
  } else {
    processx::conn_write(replies, sprintf("%s forked %d\n", task$token, job$pid))
  }
}

run_forked_task <- function(flow, task, replies) {
  code <- 1L
  # Said once the task is over; the runtime then kills this fork with everything it left running (a job
  # of parallel::mcparallel() carries no mark of the task: it is found below this process).
  on.exit({
    processx::conn_write(replies, sprintf("%s exited %d\n", task$token, code))
    Sys.sleep(600)
  })
  # The task's output goes to its own FIFOs, read by the runtime: at the descriptors, so what the task's
  # subprocesses and compiled code print goes there too.
  processx::conn_set_stdout(processx::conn_connect_fifo(task$stdout, write = TRUE, nonblocking = FALSE))
  processx::conn_set_stderr(processx::conn_connect_fifo(task$stderr, write = TRUE, nonblocking = FALSE))
  # A tempdir() of its own, in the task's directory (removed with it): R makes a new one only when the
  # current one is gone, and the one inherited is the spare no one else uses.
  Sys.setenv(TMPDIR = task$tmp)
  unlink(tempdir(), recursive = TRUE)
  tempdir(check = TRUE)
  code <- suspendInterrupts(run_task_reporting_errors(flow, c("task", "--context", task$context)))
  flush(stdout())
  flush(stderr())
}

# A fork's tempdir() must be its own, yet R has one per process and makes a new one only when it is gone.
# So this R moves its tempdir, with what the flow's code put there, aside (a link keeps those paths
# working, for the forks and for code after run()) and takes a new, empty one that it never uses, the
# spare: each fork deletes the spare and makes its own. At R's exit, the moved directories and links go.
isolate_flow_tempdir <- function() {
  current <- tempdir()
  kept <- paste0(current, "-flow")
  if (!file.rename(current, kept)) return(invisible())  # forks then share this R's tempdir
  tempdir(check = TRUE)
  file.symlink(kept, current)
  if (is.null(the$moved_tempdirs)) {
    reg.finalizer(the, function(e) unlink(e$moved_tempdirs, recursive = TRUE), onexit = TRUE)
  }
  the$moved_tempdirs <- c(the$moved_tempdirs, current, kept)
  invisible()
}
