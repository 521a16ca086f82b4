# Running one task: `Rscript flow.R task --context FILE` on Batch, or a fork of the run's R locally
# (R/task-worker.R). Both run run_task_reporting_errors().
#
# The launcher prepared FILE, the protocol's context document (inherited artifacts, join inputs, foreach
# stack); this process runs the step function and leaves the artifacts it produced, as RDS files plus the
# outputs document, in the context's output_dir, or the task error document when the step failed. The
# launcher commits them; a task that dies here leaves nothing visible.

run_task <- function(flow, args) {
  context_file <- task_option(args, "--context")
  ctx <- jsonlite::fromJSON(context_file, simplifyVector = FALSE)
  the$task <- ctx
  step <- flow$steps[[ctx$step]]
  if (is.null(step)) {
    abort("The flow has no step {.val {ctx$step}}; the script changed since the run started.", "graph_error")
  }
  # Marks every process the step starts, even one in a session of its own: it ends with the task.
  do.call(Sys.setenv, stats::setNames(list(ctx$output_dir), protocol()$task_process_mark))
  if (length(ctx$environment)) {
    do.call(Sys.setenv, lapply(ctx$environment, as.character))  # the step's environment decorator
  }
  seed_task_rng(ctx$rng)
  started <- task_self(ctx)
  self <- started$self
  if (!is.null(ctx$catch)) {
    record_caught_error(self, ctx)
  } else if (!is.null(step$r_function)) {
    call_step_function(step, self, started$inputs)
  }
  num_splits <- if (!is.null(step$foreach)) foreach_width(self, step)
  outputs <- list(artifacts = self_outputs(self, ctx$output_dir), num_splits = num_splits)
  write_document(outputs, file.path(ctx$output_dir, protocol_file("outputs")))
  invisible(0L)
}

# Runs one task. An R error becomes the task error document (class, message, call, and the step
# function's frames down to the error) and a report on stderr, and the status is 1.
run_task_reporting_errors <- function(flow, args) {
  # Task output becomes log lines prefixed by the runtime: never wrap messages at the console width.
  old <- options(cli.width = 10000)
  on.exit(options(old), add = TRUE)
  on.exit(the$task <- NULL, add = TRUE)
  cat(protocol()$task_start_marker, "\n", sep = "")  # the launcher starts the task's clock here
  flush(stdout())
  frames <- character()
  tryCatch(
    withCallingHandlers(run_task(flow, args), error = function(e) frames <<- step_frames(flow)),
    error = function(e) {
      ctx <- the$task
      error <- task_error(e, frames)
      if (!is.null(ctx$output_dir)) {
        # A full disk may refuse it too: the launcher then tells why from what the task left (attempt.py).
        tryCatch(write_document(error, file.path(ctx$output_dir, protocol_file("task_error"))),
                 error = function(e) NULL)
      }
      cat(format_task_error(if (!is.null(ctx)) ctx$step else "?", error), sep = "\n", file = stderr())
      1L
    })
}

# quit() inside a step would end the process without a word: the task's artifacts lost, and nothing to say
# why it failed. The step function runs in an environment where quit() and q() are an error that says so
# (unless the flow's script defines functions of those names itself); the user's global environment is
# left alone.
guarded_from_quit <- function(fn) {
  guard <- function(save = "default", status = 0, runLast = TRUE) {  # nolint: object_name_linter (quit's own)
    abort(c("Step {.val {the$task$step}} called {.code quit(status = {status})}.",
            "i" = "A step ends by returning, and its artifacts are saved then; to fail it, call {.fn stop}."),
          "quit_error", call = NULL)
  }
  home <- environment(fn) %||% globalenv()
  guards <- new.env(parent = home)
  for (name in c("quit", "q")) {
    if (identical(get0(name, envir = home), get(name, envir = baseenv()))) assign(name, guard, envir = guards)
  }
  environment(fn) <- guards
  fn
}

# The task error document of an R condition.
task_error <- function(e, frames) {
  call <- conditionCall(e)
  list(class = I(class(e)), message = enc2utf8(conditionMessage(e)),
       call = if (!is.null(call)) one_line(call), traceback = I(enc2utf8(frames)))
}

# The calls from the step function down to the one that signalled the error, one line each, leaving out
# the frames of R's and rlang's signalling machinery. Called from the calling handler.
step_frames <- function(flow) {
  calls <- sys.calls()
  step <- flow$steps[[the$task$step %||% ""]]
  if (is.null(step) || is.null(step$r_function)) return(character())
  first <- Position(function(i) identical(sys.function(i), step$r_function, ignore.environment = TRUE),
                    seq_along(calls))
  if (is.na(first)) return(character())
  keep <- calls[first:(length(calls) - 2L)]  # the last two are the calling handler and this function
  signalling <- c(".handleSimpleError", "h", "signalCondition", "signal_abort", "abort", "cli_abort")
  while (length(keep) > 1 && is.name(keep[[length(keep)]][[1]]) &&
         as.character(keep[[length(keep)]][[1]]) %in% signalling) {
    keep <- keep[-length(keep)]
  }
  utils::head(vapply(keep, one_line, ""), 50)
}

one_line <- function(call) {
  text <- paste(trimws(deparse(call, width.cutoff = 200L, nlines = 5L)), collapse = " ")
  if (nchar(text) > 200) paste0(substr(text, 1, 197), "...") else text
}

# What a user reads of a task error: the message, the call that failed, the step function's frames.
format_task_error <- function(step, error) {
  frames <- unlist(error$traceback)
  c(sprintf("Error in step '%s': %s", step, error$message),
    if (!is.null(error$call)) sprintf("  Call: %s", error$call),
    if (length(frames)) c("  Backtrace (the step function first):",
                          sprintf("    %d: %s", seq_along(frames), frames)))
}

# Calls the step function under the name the user gave it, so errors and tracebacks read `start(self)`.
call_step_function <- function(step, self, inputs = NULL) {
  name <- as.name(step$r_function_name %||% step$step)  # an anonymous function goes by its step
  scope <- new.env(parent = emptyenv())
  assign(as.character(name), guarded_from_quit(step$r_function), envir = scope)
  assign("self", self, envir = scope)
  assign("inputs", inputs, envir = scope)
  call <- if (is.null(inputs)) call(as.character(name), quote(self)) else
    call(as.character(name), quote(self), quote(inputs))
  eval(call, scope)
}

# The fallback attempt of a step with decorator("catch"), run after its last attempt failed: instead of
# the step function, it stores the error in the decorator's `var` (as an R error condition) and passes
# the step's inherited artifacts on, so the run goes on.
record_caught_error <- function(self, ctx) {
  caught <- ctx$catch
  error <- caught$error
  if (!isFALSE(caught$print_exception)) {
    cat(sprintf("decorator(\"catch\") caught the failure of step '%s':\n", ctx$step))
    cat(format_task_error(ctx$step, error), sep = "\n")
  }
  if (!is.null(caught$var)) {
    condition <- structure(class = unlist(error$class),
                           list(message = error$message, call = NULL, step = ctx$step,
                                traceback = unlist(error$traceback)))
    self_set(self, caught$var, condition)
  }
}

task_option <- function(args, name) {
  at <- match(name, args)
  if (is.na(at) || at == length(args)) {
    abort(c("The {.code task} command needs {.arg {name}}.",
                     "i" = "Tasks are launched by {.code run} or by a Step Functions job; run the flow instead."),
        "usage_error")
  }
  args[[at + 1]]
}

# Parameters are read-only for step functions (self_set refuses them), so the start task stores them directly.
self_set_parameter <- function(self, name, value) {
  self_store(self, name, if (is.list(value)) unlist(value) else value)
}

# The `self` a task starts with (the start step's also holds the run's parameters), and for a join its
# `inputs`: from the task's context, in a task or when a user debugs one (task_client$self()).
task_self <- function(ctx) {
  self <- new_self(ctx, ctx$artifacts)
  for (name in names(ctx$parameters)) {
    self_set_parameter(self, name, ctx$parameters[[name]])
  }
  list(self = self, inputs = if (!is.null(ctx$join)) join_inputs(ctx))
}

# A branch join's inputs are named by the step they come from; a foreach join's are in split order. Each
# input is the task it came from: its own pathspec, its own foreach frame.
join_inputs <- function(ctx) {
  inputs <- lapply(ctx$inputs, function(input) {
    parts <- strsplit(input$pathspec, "/", fixed = TRUE)[[1]]
    input_ctx <- utils::modifyList(ctx, list(step = parts[2], task_id = parts[3], join = NULL))
    new_self(input_ctx, input$artifacts, read_only = TRUE)
  })
  if (identical(ctx$join, "branch")) {
    names(inputs) <- vapply(ctx$inputs, `[[`, "", "step")
  }
  inputs
}

foreach_width <- function(self, step) {
  var <- step$foreach
  if (!self_has(self, var)) {
    abort(c("Step {.val {step$step}} has {.code foreach = \"{var}\"} but never sets {.code self${var}}.",
                     "i" = "Assign the vector or list to split over to {.code self${var}}."),
          "foreach_error", call = NULL)
  }
  value <- self_get(self, var)
  if (!(is.atomic(value) || is.list(value)) || is.null(value) || is.environment(value)) {
    abort(c("Step {.val {step$step}}: the foreach variable {.code self${var}} must be a vector or a list.",
                     "x" = "It is {.obj_type_friendly {value}}.",
                     "i" = "Assign a vector or list with one element per task to run."), "foreach_error", call = NULL)
  }
  if (length(value) == 0) {
    abort(c("Step {.val {step$step}}: the foreach variable {.code self${var}} is empty.",
                     "i" = "A foreach needs at least one element to split over."), "foreach_error", call = NULL)
  }
  length(value)
}
