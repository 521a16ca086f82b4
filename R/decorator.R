#' Decorate a flow or a step
#'
#' Flow decorators go in [metaflow()]; step decorators in [step()].
#'
#' Known decorators and their arguments:
#' * `schedule` (flow): `hourly`, `daily`, `weekly` (each `TRUE`), or `cron` (an AWS cron expression
#'   such as `"0 10 * * ? *"`); used by `step-functions create`.
#' * `retry` (step): `times` (default 3; `0` never retries), `minutes_between_retries`.
#' * `catch` (step): `var`, `print_exception`. When the step's last attempt fails, the run goes on: the
#'   error is stored in `self$<var>` as an R error condition (read it with `conditionMessage()`), the
#'   step's inherited artifacts pass on, and what the failed attempt assigned is dropped.
#' * `timeout` (step): `seconds`, `minutes`, `hours`; a task running longer is stopped and fails.
#' * `resources` (step): `cpu`, `memory` (MB), `gpu`; the Batch job's size on Step Functions.
#' * `batch` (step): `cpu`, `memory`, `gpu`, `image`, `queue`, `iam_role`.
#' * `environment` (step): `vars`, a named list of environment variables.
#'
#' @param x The decorator's name.
#' @param ... Its arguments, named.
#' @param .convert_args Accepted for compatibility; arguments are always kept as R values.
#' @return A `metaflow_decorator` object.
#' @examples
#' decorator("retry", times = 0)
#' decorator("schedule", cron = "0 10 * * ? *")
#' @export
decorator <- function(x, ..., .convert_args = TRUE) {
  if (!is.character(x) || length(x) != 1 || !x %in% names(known_decorators)) {
    cli::cli_abort(c("{.val {format(x)}} is not a decorator.",
                     "i" = "Known decorators: {.val {names(known_decorators)}}."))
  }
  args <- list(...)
  if (length(args) && (is.null(names(args)) || any(!nzchar(names(args))))) {
    cli::cli_abort(c("Arguments of {.code decorator(\"{x}\")} must be named.",
                     "i" = "For example {.code decorator(\"retry\", times = 2)}."))
  }
  unknown <- setdiff(names(args), known_decorators[[x]])
  if (length(unknown)) {
    cli::cli_abort(c("{.code decorator(\"{x}\")} has no argument {.arg {unknown}}.",
                     "i" = "Its arguments are {.arg {known_decorators[[x]]}}."))
  }
  if (x == "retry" && !is.null(args$times)) {
    times <- args$times
    if (!is.numeric(times) || length(times) != 1 || is.na(times) || times < 0 || times != round(times)) {
      cli::cli_abort(c("{.arg times} of {.code decorator(\"retry\")} must be a whole number >= 0.",
                       "x" = "You supplied {.val {format(times)}}."))
    }
  }
  if (x == "schedule") check_schedule(args)
  structure(list(name = x, attributes = args), class = "metaflow_decorator")
}

#' @export
print.metaflow_decorator <- function(x, ...) {
  args <- vapply(x$attributes, function(v) paste(format(v), collapse = ","), "")
  cat(sprintf("@%s(%s)\n", x$name, paste(names(args), args, sep = "=", collapse = ", ")))
  invisible(x)
}

known_decorators <- list(
  schedule = c("hourly", "daily", "weekly", "cron"),  # EventBridge cron is UTC: no timezone
  retry = c("times", "minutes_between_retries"),
  catch = c("var", "print_exception"),
  timeout = c("seconds", "minutes", "hours"),
  resources = c("cpu", "memory", "gpu", "shared_memory"),
  batch = c("cpu", "memory", "gpu", "image", "queue", "iam_role", "shared_memory"),
  environment = c("vars")
)
flow_decorators <- c("schedule")

check_schedule <- function(args) {
  chosen <- Filter(function(v) !isFALSE(v) && !is.null(v), args[c("hourly", "daily", "weekly", "cron")])
  if (length(chosen) != 1) {
    cli::cli_abort(c("{.code decorator(\"schedule\")} needs exactly one of {.arg hourly}, {.arg daily},
                      {.arg weekly} or {.arg cron}.",
                     "i" = "For example {.code decorator(\"schedule\", daily = TRUE)}."))
  }
  if (!is.null(args$cron) && !(is.character(args$cron) && length(args$cron) == 1)) {
    cli::cli_abort("{.arg cron} must be a single string such as {.val 0 10 * * ? *}.")
  }
}

check_decorators <- function(decorators, where) {
  for (d in decorators) {
    if (!inherits(d, "metaflow_decorator")) {
      cli::cli_abort(c("Unnamed arguments of {.code {where}} must be decorators.",
                       "x" = "Got {.obj_type_friendly {d}}.",
                       "i" = "Make one with {.code decorator(\"retry\", times = 2)}; name the other arguments."),
                     call = NULL)
    }
    at_flow <- startsWith(where, "metaflow")
    if (at_flow != (d$name %in% flow_decorators)) {
      cli::cli_abort(c("{.code decorator(\"{d$name}\")} cannot decorate {.code {where}}.",
                       "i" = if (at_flow) "Put step decorators inside {.fn step}."
                             else "Put flow decorators inside {.fn metaflow}."), call = NULL)
    }
  }
}
