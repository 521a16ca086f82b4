#' Decorate a flow or a step
#'
#' Flow decorators go in [metaflow()] (or are piped onto it: `metaflow("F") %>% decorator("schedule",
#' daily = TRUE)`); step decorators in [step()]. Python's `True` and `False`, as Metaflow's guides write
#' them (`decorator("schedule", weekly = True)`), are read as `TRUE` and `FALSE`.
#'
#' Known decorators and their arguments:
#' * `schedule` (flow): `hourly`, `daily`, `weekly` (each `TRUE`), or `cron` (an AWS cron expression
#'   such as `"0 10 * * ? *"`); used by `step-functions create`.
#' * `retry` (step): `times` (default 3; `0` never retries; at most 9 on AWS Batch, which runs a job at most 10
#'   times), `minutes_between_retries` (on Step Functions the state machine waits that long between attempts).
#' * `catch` (step): `var`, `print_exception`. When the step's last attempt fails, the run goes on: the
#'   error is stored in `self$<var>` as an R error condition (read it with `conditionMessage()`), the
#'   step's inherited artifacts pass on, and what the failed attempt assigned is dropped.
#' * `timeout` (step): `seconds`, `minutes`, `hours`; a task running longer is stopped and fails.
#' * `resources` (step): `cpu`, `memory` (MB), `gpu`, `shared_memory` (MB of `/dev/shm`); the Batch job's size on
#'   Step Functions and with `run --with batch`. A local run ignores it.
#' * `batch` (step): `cpu`, `memory`, `gpu`, `shared_memory`, `image`, `queue`, `iam_role`, and `platform`:
#'   `"ec2"` (the default: whole vCPUs) or `"fargate"` (0.25 to 32 vCPU with the memory AWS pairs with each; no
#'   GPU or `shared_memory`; needs `METAFLOW_ECS_FARGATE_EXECUTION_ROLE` and a Fargate job queue). A local
#'   `run` runs the step's tasks as AWS Batch jobs (the other steps stay local, the run is stored in S3), as
#'   `--with batch` does for every step; it needs the same settings, and stops naming them when they are missing.
#' * `environment` (step): `vars`, a named list of environment variables set for the step's tasks.
#' * `packages` (step): `packages`, R package names the step needs that its code does not show, e.g. a
#'   package loaded by name from a variable (`library(pkg, character.only = TRUE)`) or used by a package it
#'   calls. The packages a step's code names (`library()`, `require()`, `requireNamespace()`,
#'   `loadNamespace()`, `pkg::f`) are found without it; [run()] documents the check made before a step runs
#'   on AWS Batch.
#'
#' @param x The decorator's name (or a flow piped in, followed by the name).
#' @param ... Its arguments, named.
#' @param .convert_args Accepted for compatibility; arguments are always kept as R values.
#' @return A `metaflow_decorator` object.
#' @examples
#' decorator("retry", times = 0)
#' decorator("schedule", cron = "0 10 * * ? *")
#' decorator("packages", packages = c("data.table", "sf"))
#' @export
decorator <- function(x, ..., .convert_args = TRUE) {
  if (inherits(x, "metaflow_flow")) return(decorate_flow(x, decorator(...)))
  known <- decorator_rules()
  if (!is.character(x) || length(x) != 1 || !x %in% names(known)) {
    abort_decorator("unknown", name = quoted(paste(format(x), collapse = ", ")),
                    known = join_list(names(known), "and", quote = "\""))
  }
  args <- decorator_arguments(rlang::enquos(...), x)
  if (length(args) && (is.null(names(args)) || any(!nzchar(names(args))))) {
    abort(c("Arguments of {.code decorator(\"{x}\")} must be named.",
            "i" = "For example {.code decorator(\"retry\", times = 2)}."), "decorator_error")
  }
  arguments <- known[[x]]$arguments
  unknown <- setdiff(names(args), names(arguments))
  if (length(unknown)) {
    abort_decorator("unknown_argument", name = x, argument = join_list(unknown, "and"),
                    arguments = join_list(names(arguments), "and"))
  }
  for (arg in names(args)) {
    check_decorator_value(x, arg, args[[arg]], arguments[[arg]])
  }
  check_exactly_one(x, args, known[[x]])
  # Named even when empty, so the spec sends an object.
  structure(list(name = x, attributes = structure(args, names = as.character(names(args)))),
            class = "metaflow_decorator")
}

# `metaflow("F") %>% decorator("schedule", hourly = TRUE)`, the pipe a user guesses, adds a flow decorator as
# metaflow("F", decorator(...)) does; a step decorator piped onto a flow is told where it goes.
decorate_flow <- function(flow, decorator, call = rlang::caller_env()) {
  check_decorators(list(decorator), "metaflow()", call = call)
  flow$decorators[[length(flow$decorators) + 1]] <- decorator
  flow
}

# The arguments' values. The scheduling guide writes Python's `weekly=True`: a bare `True` or `False` that
# names no R object is read as TRUE or FALSE, with a note, where R would stop at "object 'True' not found".
decorator_arguments <- function(quosures, name) {
  lapply(quosures, function(quosure) {
    expr <- rlang::quo_get_expr(quosure)
    word <- if (rlang::is_symbol(expr, c("True", "False"))) as.character(expr) else ""
    if (!nzchar(word) || exists(word, envir = rlang::quo_get_env(quosure))) return(rlang::eval_tidy(quosure))
    value <- word == "True"
    cli::cli_inform(c("i" = "{.code decorator(\"{name}\")}: read Python's {.code {word}} as R's {.code {value}}."),
                    .frequency = "once", .frequency_id = paste("python", name, word))
    value
  })
}

#' @export
format.metaflow_decorator <- function(x, ...) {
  args <- vapply(x$attributes, function(v) paste(format(v), collapse = ","), "")
  sprintf("@%s(%s)", x$name, paste(names(args), args, sep = "=", collapse = ", "))
}

#' @export
print.metaflow_decorator <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

# Checked where the user wrote it, so Python never sees a value of the wrong kind.
check_decorator_value <- function(decorator, arg, value, kind, call = rlang::caller_env()) {
  if (!isTRUE(argument_fits(kind, value))) {
    abort_decorator("bad_value", name = decorator, argument = arg, kind = rules()$argument_kinds[[kind]],
                    value = quoted(paste(format(value), collapse = ", ")), call = call)
  }
}

# decorator("schedule") takes exactly one of hourly, daily, weekly and cron.
check_exactly_one <- function(name, args, rule, call = rlang::caller_env()) {
  one_of <- rule$exactly_one_of
  if (is.null(one_of)) return(invisible())
  chosen <- Filter(function(v) !is.null(v) && !isFALSE(v), args[intersect(one_of, names(args))])
  if (length(chosen) != 1) {
    abort_decorator("exactly_one", name = name, arguments = join_list(one_of, "or"), example = rule$example,
                    call = call)
  }
}

check_decorators <- function(decorators, where, call = rlang::caller_env()) {
  for (d in decorators) {
    if (!inherits(d, "metaflow_decorator")) {
      abort(c("Unnamed arguments of {.code {where}} must be decorators.",
              "x" = "Got {.obj_type_friendly {d}}.",
              "i" = "Make one with {.code decorator(\"retry\", times = 2)}; name the other arguments."),
            "decorator_error", call = call)
    }
    at_flow <- startsWith(where, "metaflow")
    if (at_flow != identical(decorator_rules()[[d$name]]$scope, "flow")) {
      instead <- rules()$decorator_messages[[if (at_flow) "step_scope" else "flow_scope"]]
      abort_decorator("wrong_scope", name = d$name, where = where, instead = instead, call = call)
    }
  }
}

# Signals the decorator error rules.json's decorator_messages[[key]] describes, the backend's words for the
# same mistake: each {placeholder} filled with `values`, text between backticks shown as code.
abort_decorator <- function(key, ..., call = rlang::caller_env()) {
  entry <- rules()$decorator_messages[[key]]
  values <- list(...)
  fill <- function(text) {
    for (name in names(values)) text <- gsub(paste0("{", name, "}"), values[[name]], text, fixed = TRUE)
    gsub("`([^`]*)`", "{.code \\1}", cli_escape(text))
  }
  bullets <- vapply(entry[setdiff(names(entry), "message")], fill, "")
  abort(c(fill(entry$message), bullets), "decorator_error", call = call)
}

# "a", "b", and "c" as cli writes a vector: items in `quote`s, the last joined with `conjunction`.
join_list <- function(items, conjunction, quote = "`") {
  quoted <- paste0(quote, items, quote)
  if (length(quoted) <= 2) return(paste(quoted, collapse = paste0(" ", conjunction, " ")))
  paste0(paste(quoted[-length(quoted)], collapse = ", "), ", ", conjunction, " ", quoted[length(quoted)])
}

quoted <- function(text) paste0("\"", text, "\"")
