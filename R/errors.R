#' Conditions metaflow signals
#'
#' Every error of the package is an R condition of class `metaflow_error` and of one or more specific
#' classes, the same whether R or the Python backend found the problem, so code can catch one kind:
#' `tryCatch(run(flow), metaflow_graph_error = function(e) ...)`. A condition carries its own class and
#' every parent's, most specific first. Under `Rscript flow.R <command>`, a command that ends in one of
#' them exits with its status. The table is the package's catalogue of conditions
#' (`system.file("python/metaflow_r/data/errors.json", package = "metaflow")`).
#'
#' | class | parent | exit status | what it means |
#' |---|---|---|---|
#' | `metaflow_error` |  | 1 | every error of the package |
#' | `metaflow_usage_error` | `metaflow_error` | 2 | a function or command called the wrong way |
#' | `metaflow_parameter_error` | `metaflow_usage_error` | 2 | a parameter defined, or given a value, wrongly |
#' | `metaflow_not_deployed` | `metaflow_usage_error` | 2 | the flow is not deployed to AWS Step Functions |
#' | `metaflow_quota_error` | `metaflow_usage_error` | 2 | the flow's state machine would break an AWS quota |
#' | `metaflow_aws_rule_error` | `metaflow_usage_error` | 2 | a request AWS would refuse, caught before it is sent |
#' | `metaflow_graph_error` | `metaflow_error` | 3 | the flow's steps do not make a valid graph |
#' | `metaflow_decorator_error` | `metaflow_graph_error` | 3 | a decorator, or one of its arguments |
#' | `metaflow_datastore_error` | `metaflow_error` | 4 | a run, step, task or artifact that is not there |
#' | `metaflow_damaged_record` | `metaflow_datastore_error` | 4 | a stored record that cannot be read |
#' | `metaflow_disk_full` | `metaflow_datastore_error` | 4 | a disk filled up while a run wrote to it |
#' | `metaflow_file_too_large` | `metaflow_datastore_error` | 4 | a file outgrew the file size limit (ulimit -f) |
#' | `metaflow_configuration_error` | `metaflow_error` | 5 | a missing or invalid setting |
#' | `metaflow_missing_packages` | `metaflow_configuration_error` | 5 | the Batch image lacks a step's R packages |
#' | `metaflow_aws_error` | `metaflow_error` | 6 | AWS refused a request or could not be reached |
#' | `metaflow_protocol_error` | `metaflow_error` | 7 | R and the backend come from different versions |
#' | `metaflow_run_failed` | `metaflow_error` | 1 | a run ended with a failed task |
#' | `metaflow_run_interrupted` | `metaflow_run_failed` | 130 | a run stopped by the user (Ctrl-C) |
#' | `metaflow_foreach_error` | `metaflow_error` | 1 | a foreach step's variable cannot be split over |
#' | `metaflow_foreach_too_wide` | `metaflow_foreach_error` | 86 | a foreach wider than its deployment takes |
#' | `metaflow_attribute_error` | `metaflow_error` | 1 | a step read or wrote an artifact it may not (self$x) |
#' | `metaflow_artifact_error` | `metaflow_error` | 1 | an artifact no other process can use (a connection, a pointer) |
#' | `metaflow_merge_conflict` | `metaflow_error` | 1 | merge_artifacts() met inputs that disagree |
#' | `metaflow_quit_error` | `metaflow_error` | 1 | a step called quit() instead of returning |
#' | `metaflow_installation_error` | `metaflow_error` | 1 | the Python backend is missing or incomplete |
#' | `metaflow_emulator_error` | `metaflow_error` | 1 | the offline AWS emulator did not start |
#' | `metaflow_backend_error` | `metaflow_error` | 1 | the backend failed unexpectedly (a bug) |
#'
#' A failed run's `metaflow_run_failed` carries `run_id`, `step`, `pathspec` (the failing task's) and
#' `error_message` (its R error). A task that failed without
#' an R error (read with the Client API, or caught by `decorator("catch")`) has one of these classes:
#'
#' * `metaflow_task_failure`: the task failed without an R error (it crashed or was killed)
#' * `metaflow_timeout`: the task ran longer than its decorator("timeout") allows
#' * `metaflow_job_stopped`: AWS Batch stopped the task's job
#' * `metaflow_batch_job_error`: a Batch job ended without running the task
#' * `metaflow_task_setup_error`: the task could not start (code package, image, settings)
#' * `metaflow_protocol_error`: the task's error document does not follow the protocol
#' * `metaflow_disk_full`: a disk filled up while the task's files were written
#' * `metaflow_file_too_large`: a file the task wrote outgrew the file size limit (ulimit -f)
#'
#' @name metaflow_conditions
#' @aliases metaflow_error
#' @examples
#' caught <- tryCatch(decorator("retry", times = -1), metaflow_error = function(e) class(e))
#' caught
NULL

# The catalogue's classes of condition `class` and its parents, most specific first.
condition_classes <- function(class) {
  if (is.null(the$conditions)) {
    entries <- jsonlite::fromJSON(backend_data_file("errors.json"), simplifyVector = FALSE)$conditions
    the$conditions <- stats::setNames(lapply(entries, function(e) e$parent), vapply(entries, `[[`, "", "class"))
  }
  if (!class %in% names(the$conditions)) stop("metaflow bug: ", class, " is not in data/errors.json")
  chain <- character()
  while (!is.null(class)) {
    chain <- c(chain, class)
    class <- the$conditions[[class]]
  }
  chain
}

# Signals condition `metaflow_<kind>` (a class of the catalogue) with its parents' classes.
abort <- function(message, kind, ..., call = rlang::caller_env(), .envir = parent.frame()) {
  cli::cli_abort(message, class = condition_classes(paste0("metaflow_", kind)), ..., call = call,
                 .envir = .envir)
}

# A backend error as an R error: a MetaflowRError keeps its message, bullets and classes; anything else
# is a bug, reported with the Python error as its parent.
abort_backend_error <- function(e, call = NULL) {
  exception <- python_exception(e)
  if (!is.null(exception) && reticulate::py_has_attr(exception, "r_classes")) {
    field <- function(name) r_value(reticulate::py_get_attr(exception, name))
    message <- field("message")
    bullets <- field("bullets")
    classes <- unlist(r_value(reticulate::py_call(reticulate::py_get_attr(exception, "r_classes"))))
    kinds <- vapply(bullets, function(b) as.character(b[[1]]), "")
    texts <- vapply(bullets, function(b) cli_escape(as.character(b[[2]])), "")
    status <- as.integer(field("exit_code"))
    fields <- field("data")  # e.g. a failed run's run_id, step and pathspec
    rlang::inject(cli::cli_abort(c(cli_escape(message), stats::setNames(texts, kinds)), class = classes,
                                 call = call, exit_code = status, status = status, !!!fields))
  }
  abort(c("The metaflow backend failed.",
          "x" = cli_escape(python_error_text(conditionMessage(e))),
          "i" = paste("This is a bug in {.pkg metaflow}; please report it with the output of",
                      "{.code reticulate::py_last_error()}.")),
        "backend_error", call = call, parent = e)
}

# A Python value in R, whether or not reticulate converted it already.
r_value <- function(x) if (inherits(x, "python.builtin.object")) reticulate::py_to_r(x) else x

# The Python exception behind an R error, if it is one: the condition itself in recent reticulate, else
# the one reticulate::py_last_error() recorded for this very message.
python_exception <- function(e) {
  if (inherits(e, "python.builtin.BaseException")) return(e)
  last <- tryCatch(reticulate::py_last_error(), error = function(err) NULL)
  if (is.null(last) || is.null(last$value)) return(NULL)
  first_line <- strsplit(last$value, "\n", fixed = TRUE)[[1]][1]
  if (is.na(first_line) || !grepl(first_line, conditionMessage(e), fixed = TRUE)) return(NULL)
  attr(last, "exception")
}

# A Python error's message without reticulate's decorations: the exception's module path, the
# traceback and the hint to call py_last_error().
python_error_text <- function(message) {
  message <- sub("\n*(Detailed traceback|Run `reticulate::py_last_error\\(\\)`).*$", "", message)
  message <- sub("^[A-Za-z_][A-Za-z0-9_.]*\\.([A-Za-z_][A-Za-z0-9_]*: )", "\\1", message)
  trimws(message)
}

cli_escape <- function(x) gsub("}", "}}", gsub("{", "{{", x, fixed = TRUE), fixed = TRUE)
