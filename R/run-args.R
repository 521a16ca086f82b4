# run()'s own arguments, in an R session, become the command line `Rscript flow.R ...` would get. Each
# parameter value is checked against the flow's parameter() where the user typed it, and written so that
# it reaches the step exactly: a number with the digits that give it back, a vector joined with the
# parameter's own separator, a logical as the flag or value it is.

args_from_call <- function(params, flow, step_functions = NULL, max_workers = NULL, with = NULL, resume = NULL,
                           show = FALSE, help = FALSE, datastore = NULL, metadata = NULL, batch = FALSE,
                           tags = NULL, wait = FALSE, seed = NULL, origin_run_id = NULL,
                           call = rlang::caller_env()) {
  # A flow's own parameter named seed takes run(seed =); the run's seed then comes from metaflow(seed =).
  if (!is.null(seed) && "seed" %in% vapply(flow$parameters, `[[`, "", "name")) {
    params$seed <- seed
    seed <- NULL
  }
  if (length(params) && (is.null(names(params)) || any(!nzchar(names(params))))) {
    abort(c("Parameter values given to {.fn run} must be named.", "i" = "For example {.code run(alpha = 0.5)}."),
          "parameter_error", call = call)
  }
  if (!is.null(metadata) && !identical(metadata, "local")) {
    cli::cli_inform(c("i" = "{.arg metadata} = {.val {metadata}} is not used: run metadata lives in the datastore."))
  }
  if (isTRUE(batch)) with <- c(with, "batch")  # Metaflow R's run(batch = TRUE): each step a Batch job
  global <- c(unlist(lapply(with, function(w) c("--with", w))),
              if (!is.null(datastore)) c("--datastore", datastore))
  if (isTRUE(help)) return(c(global, "--help"))
  if (isTRUE(show)) return(c(global, "show"))
  if (!is.null(step_functions)) {
    command <- c("step-functions", step_functions)
  } else if (!is.null(resume)) {
    command <- c("resume", if (is.character(resume)) resume, origin_run_option(origin_run_id, call))
  } else {
    command <- "run"
  }
  if (!is.null(origin_run_id) && (is.null(resume) || !is.null(step_functions))) {
    abort(c("{.arg origin_run_id} names the run that {.code run(resume = TRUE)} resumes.",
            "i" = "Write {.code run(resume = TRUE, origin_run_id = \"{format(origin_run_id)}\")}."), "usage_error",
          call = call)
  }
  if (isTRUE(wait) && !identical(step_functions, "trigger")) {
    abort(c("{.arg wait} applies to {.code step_functions = \"trigger\"} only.",
            "i" = "A local run always ends before {.fn run} returns."), "usage_error", call = call)
  }
  c(global, command,
    if (isTRUE(wait)) "--wait",
    if (!is.null(max_workers)) c("--max-workers", format(max_workers)),
    unlist(lapply(tags, function(t) c("--tag", t))),
    if (!is.null(seed)) c("--seed", format(check_seed(seed, call = call))),
    parameter_args(params, flow, call))
}

parameter_args <- function(params, flow, call = rlang::caller_env()) {
  defined <- stats::setNames(flow$parameters, vapply(flow$parameters, `[[`, "", "name"))
  unlist(lapply(names(params), function(name) {
    value <- params[[name]]
    parameter <- defined[[name]]
    if (is.null(parameter)) {
      abort(c("Flow {.val {flow$name}} has no parameter {.val {name}}.",
              "i" = if (length(defined)) "Its parameters: {.val {names(defined)}}." else "It has no parameters."),
            "parameter_error", call = call)
    }
    if (is.null(value)) return(NULL)  # not given: the default applies
    if (isTRUE(parameter$is_flag)) {
      check_value(name, value, is.logical(value) && length(value) == 1 && !is.na(value), wanted("bool"), call)
      return(paste0(if (value) "--" else "--no-", name))
    }
    separator <- parameter$separator
    if (is.null(separator)) {
      check_value(name, value, length(value) == 1, "a single value", call)
    }
    text <- vapply(value, parameter_text, "", type = parameter$type, name = name, call = call)
    if (!is.null(separator) && any(grepl(separator, text, fixed = TRUE))) {
      abort(c("A value of parameter {.val {name}} holds its separator {.val {separator}}.",
              "x" = "You supplied {.val {value}}."), "parameter_error", call = call)
    }
    c(paste0("--", name), paste(text, collapse = separator %||% ""))
  }))
}

# One value as the command line reads it, refused when the parameter's type cannot hold it exactly.
parameter_text <- function(value, type, name, call) {
  switch(type,
    bool = {
      check_value(name, value, is.logical(value) && !is.na(value), wanted("bool"), call)
      if (value) "true" else "false"
    },
    int = {
      check_value(name, value, is.numeric(value) && !is.na(value) && value == round(value) &&
                    abs(value) <= rules()$parameter_values$int$largest, wanted("int"), call)
      format(value, scientific = FALSE, trim = TRUE)
    },
    float = {
      check_value(name, value, is.numeric(value) && is.finite(value), wanted("float"), call)
      exact_number(value)
    },
    {
      check_value(name, value, is.atomic(value) && !is.na(value), wanted("str"), call)
      as.character(value)
    }
  )
}

# The shortest text that reads back as the same double: 15 significant digits, up to the 17 any needs.
exact_number <- function(x) {
  for (digits in 15:17) {
    text <- formatC(x, digits = digits, format = "g")
    if (as.numeric(text) == x) break
  }
  trimws(text)
}

# What a value of parameter type `type` must be, in the words the backend uses too (rules.json).
wanted <- function(type) rules()$parameter_values[[type]]$what

check_value <- function(name, value, ok, wanted, call) {
  if (!isTRUE(ok)) {
    abort(c("Parameter {.val {name}} must be {wanted}.",
            "x" = "You supplied {.obj_type_friendly {value}}: {.val {format(value)}}."),
          "parameter_error", call = call)
  }
}

origin_run_option <- function(origin_run_id, call) {
  if (is.null(origin_run_id)) return(NULL)
  if (!is.character(origin_run_id) || length(origin_run_id) != 1 || is.na(origin_run_id) || !nzchar(origin_run_id)) {
    abort(c("{.arg origin_run_id} must be a run id, such as {.val 1796615020527042} or {.val sfn-...}.",
            "x" = "You supplied {.obj_type_friendly {origin_run_id}}."), "usage_error", call = call)
  }
  c("--origin-run-id", origin_run_id)
}
