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
#' * `environment` (step): `vars`, a named list of environment variables set for the step's tasks.
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
  unknown <- setdiff(names(args), names(known_decorators[[x]]))
  if (length(unknown)) {
    cli::cli_abort(c("{.code decorator(\"{x}\")} has no argument {.arg {unknown}}.",
                     "i" = "Its arguments are {.arg {names(known_decorators[[x]])}}."))
  }
  for (arg in names(args)) {
    check_decorator_value(x, arg, args[[arg]], known_decorators[[x]][[arg]])
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

# Each decorator's arguments and the kind of value each takes (see check_decorator_value()).
known_decorators <- list(
  schedule = c(hourly = "flag", daily = "flag", weekly = "flag", cron = "string"),  # EventBridge cron is UTC
  retry = c(times = "count", minutes_between_retries = "duration"),
  catch = c(var = "name", print_exception = "flag"),
  timeout = c(seconds = "duration", minutes = "duration", hours = "duration"),
  resources = c(cpu = "amount", memory = "amount", gpu = "count", shared_memory = "amount"),
  batch = c(cpu = "amount", memory = "amount", gpu = "count", image = "string", queue = "string",
            iam_role = "string", shared_memory = "amount"),
  environment = c(vars = "variables")
)
flow_decorators <- c("schedule")

# Checked where the user wrote it, so Python never sees a value of the wrong kind.
check_decorator_value <- function(decorator, arg, value, kind) {
  single <- length(value) == 1 && !is.na(value)
  ok <- switch(kind,
    flag = is.logical(value) && single,
    count = is.numeric(value) && single && value >= 0 && value == round(value),
    duration = is.numeric(value) && single && value >= 0,
    amount = is.numeric(value) && single && value > 0,
    string = is.character(value) && single && nzchar(value),
    name = is.character(value) && single && grepl("^[A-Za-z_][A-Za-z0-9_]*$", value),
    variables = is.list(value) && length(value) > 0 && !is.null(names(value)) && all(nzchar(names(value))) &&
      all(vapply(value, function(v) (is.character(v) || is.numeric(v)) && length(v) == 1, logical(1)))
  )
  if (!isTRUE(ok)) {
    wanted <- switch(kind,
      flag = "TRUE or FALSE", count = "a whole number >= 0", duration = "a number >= 0",
      amount = "a number > 0", string = "a non-empty string", name = "an artifact name",
      variables = "a named list of strings, e.g. list(TZ = \"UTC\")"
    )
    cli::cli_abort(c("{.arg {arg}} of {.code decorator(\"{decorator}\")} must be {wanted}.",
                     "x" = "You supplied {.val {format(value)}}."), call = NULL)
  }
}

check_schedule <- function(args) {
  chosen <- Filter(function(v) isTRUE(v) || is.character(v), args[c("hourly", "daily", "weekly", "cron")])
  if (length(chosen) != 1) {
    cli::cli_abort(c("{.code decorator(\"schedule\")} needs exactly one of {.arg hourly}, {.arg daily},
                      {.arg weekly} or {.arg cron}.",
                     "i" = "For example {.code decorator(\"schedule\", daily = TRUE)}."))
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
