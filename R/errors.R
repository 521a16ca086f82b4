# Errors of the package. Every error is a `metaflow_error` with a more specific class, so code can catch
# one kind: tryCatch(run(...), metaflow_graph_error = function(e) ...). The kinds:
#
#   metaflow_usage_error          a function or command called the wrong way
#   metaflow_graph_error          the flow's steps do not make a valid graph
#   metaflow_parameter_error      a parameter, or a value given for one
#   metaflow_decorator_error      a decorator or one of its arguments
#   metaflow_attribute_error      a step read or wrote an artifact it may not (`self$x`)
#   metaflow_foreach_error        a foreach step's variable cannot be split over
#   metaflow_merge_conflict       merge_artifacts() met inputs that disagree
#   metaflow_quit_error           a step called quit() instead of returning
#   metaflow_datastore_error      a run, step, task or artifact that is not there
#   metaflow_configuration_error  a missing or invalid setting
#   metaflow_aws_error            AWS refused or could not be reached
#   metaflow_run_failed           a run ended with a failed task (metaflow_run_interrupted: by Ctrl-C)
#   metaflow_installation_error   the package or its Python backend is incomplete
#   metaflow_protocol_error       R and the backend come from different versions
#   metaflow_emulator_error       the offline AWS emulator did not start
#   metaflow_backend_error        the backend failed unexpectedly (a bug)
#
# Errors raised by the backend carry the same classes (errors.py maps each Python class to one).

abort <- function(message, kind, ..., call = rlang::caller_env(), .envir = parent.frame()) {
  cli::cli_abort(message, class = c(paste0("metaflow_", kind), "metaflow_error"), ..., call = call,
                 .envir = .envir)
}

# A backend error as an R error: a MetaflowRError keeps its message, bullets and classes; anything else
# is a bug, reported with the Python error as its parent.
abort_backend_error <- function(e, call = NULL) {
  exception <- python_exception(e)
  if (!is.null(exception) && reticulate::py_has_attr(exception, "r_classes")) {
    message <- reticulate::py_to_r(reticulate::py_get_attr(exception, "message"))
    bullets <- reticulate::py_to_r(reticulate::py_get_attr(exception, "bullets"))
    classes <- unlist(reticulate::py_to_r(exception$r_classes()))
    kinds <- vapply(bullets, function(b) as.character(b[[1]]), "")
    texts <- vapply(bullets, function(b) cli_escape(as.character(b[[2]])), "")
    cli::cli_abort(c(cli_escape(message), stats::setNames(texts, kinds)), class = classes, call = call,
                   exit_code = reticulate::py_to_r(exception$exit_code))
  }
  abort(c("The metaflow backend failed.",
          "x" = cli_escape(python_error_text(conditionMessage(e))),
          "i" = "This is a bug in {.pkg metaflow}; please report it with the output of {.code reticulate::py_last_error()}."),
        "backend_error", call = call, parent = e)
}

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
