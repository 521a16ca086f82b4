# Running one task: `Rscript flow.R task --context FILE`, launched by the local runtime or a Batch job.
#
# The launcher prepared FILE (inherited artifacts, join inputs, foreach stack); this process runs the step
# function and leaves the artifacts it produced, as RDS files plus outputs.json, in the context's
# output_dir. The launcher commits them; a task that dies here leaves nothing visible.

run_task <- function(flow, args) {
  context_file <- task_option(args, "--context")
  ctx <- jsonlite::fromJSON(context_file, simplifyVector = FALSE)
  the$task <- ctx
  step <- flow$steps[[ctx$step]]
  if (is.null(step)) {
    cli::cli_abort("The flow has no step {.val {ctx$step}}; the script changed since the run started.")
  }
  if (length(ctx$environment)) {
    do.call(Sys.setenv, lapply(ctx$environment, as.character))  # decorator("environment", vars = ...)
  }
  self <- new_self(ctx, ctx$artifacts)
  for (name in names(ctx$parameters)) {
    self_set_parameter(self, name, ctx$parameters[[name]])
  }
  if (!is.null(ctx$catch)) {
    record_caught_error(self, ctx)
  } else if (!is.null(step$r_function)) {
    if (is.null(ctx$join)) {
      step$r_function(self)
    } else {
      step$r_function(self, join_inputs(ctx))
    }
  }
  outputs <- list(artifacts = self_outputs(self, ctx$output_dir))
  if (!is.null(step$foreach)) {
    outputs$num_splits <- foreach_width(self, step)
  }
  writeLines(jsonlite::toJSON(outputs, auto_unbox = TRUE, null = "null"),
             file.path(ctx$output_dir, "outputs.json"))
  invisible(0L)
}

# The fallback attempt of a step with decorator("catch"), run after its last attempt failed: instead of
# the step function, it stores the error in the decorator's `var` (as an R error condition) and passes
# the step's inherited artifacts on, so the run goes on.
record_caught_error <- function(self, ctx) {
  caught <- ctx$catch
  if (!isFALSE(caught$print_exception)) {
    cat(sprintf("decorator(\"catch\") caught the failure of step '%s':\n%s\n", ctx$step, caught$error))
  }
  if (!is.null(caught$var)) {
    self_set(self, caught$var, simpleError(caught$error))
  }
}

task_option <- function(args, name) {
  at <- match(name, args)
  if (is.na(at) || at == length(args)) {
    cli::cli_abort(c("The {.code task} command needs {.arg {name}}.",
                     "i" = "Tasks are launched by {.code run} or by a Step Functions job; run the flow instead."))
  }
  args[[at + 1]]
}

# Parameters are read-only for step functions (self_set refuses them), so the start task stores them directly.
self_set_parameter <- function(self, name, value) {
  self_store(self, name, if (is.list(value)) unlist(value) else value)
}

# A branch join's inputs are named by the step they come from; a foreach join's are in split order.
join_inputs <- function(ctx) {
  inputs <- lapply(ctx$inputs, function(input) new_self(ctx, input$artifacts, read_only = TRUE))
  if (identical(ctx$join, "branch")) {
    names(inputs) <- vapply(ctx$inputs, `[[`, "", "step")
  }
  inputs
}

foreach_width <- function(self, step) {
  var <- step$foreach
  if (!self_has(self, var)) {
    cli::cli_abort(c("Step {.val {step$step}} has {.code foreach = \"{var}\"} but never sets {.code self${var}}.",
                     "i" = "Assign the vector or list to split over to {.code self${var}}."), call = NULL)
  }
  value <- self_get(self, var)
  if (!(is.atomic(value) || is.list(value)) || is.null(value) || is.environment(value)) {
    cli::cli_abort(c("Step {.val {step$step}}: the foreach variable {.code self${var}} must be a vector or a list.",
                     "x" = "It is {.obj_type_friendly {value}}.",
                     "i" = "Assign a vector or list with one element per task to run."), call = NULL)
  }
  if (length(value) == 0) {
    cli::cli_abort(c("Step {.val {step$step}}: the foreach variable {.code self${var}} is empty.",
                     "i" = "A foreach needs at least one element to split over."), call = NULL)
  }
  length(value)
}
