# The Client API's entry points (mf_client, list_flows) and its plumbing: every read goes through
# client_query(), which calls one read-only query of the backend's metaflow_r.client module and shows a
# Python error as a cli error, never as a traceback.

#' Read flows, runs, steps, tasks and artifacts
#'
#' @description
#' A factory for the Client API's objects, as in Metaflow's R package: `mf_client$new()$flow("MyFlow")`
#' is the same as `flow_client$new("MyFlow")`. The Client API reads the datastore of local runs: the
#' `.metaflow` directory in the working directory or its nearest parent holding one, or the one in
#' `METAFLOW_DATASTORE_SYSROOT_LOCAL`. Runs are filtered by the current namespace, see [set_namespace()].
#'
#' @seealso [flow_client], [run_client], [step_client], [task_client], [list_flows()].
#' @examples
#' \dontrun{
#' client <- mf_client$new()
#' client$flows
#' flow <- client$flow("BranchFlow")
#' run <- client$run(flow, flow$latest_successful_run)
#' run$artifact("xs")
#' }
#' @export
mf_client <- R6::R6Class("mf_client",
  public = list(
    #' @description A flow.
    #' @param flow_id The flow's name, such as `"HelloFlow"`.
    #' @return A [flow_client].
    flow = function(flow_id) flow_client$new(flow_id),

    #' @description A run of a flow.
    #' @param flow A [flow_client] or a flow's name.
    #' @param run_id The run's id.
    #' @return A [run_client].
    run = function(flow, run_id) run_client$new(flow, run_id),

    #' @description A step of a run.
    #' @param run A [run_client].
    #' @param step_id The step's name, such as `"start"`.
    #' @return A [step_client].
    step = function(run, step_id) step_client$new(run, step_id),

    #' @description A task of a step.
    #' @param step A [step_client].
    #' @param task_id The task's id.
    #' @return A [task_client].
    task = function(step, task_id) task_client$new(step, task_id),

    #' @description Print the datastore this client reads and its flows.
    #' @param ... Ignored.
    print = function(...) {
      flows <- self$flows
      cat("<mf_client> ", client_query("datastore_root"), "\n", sep = "")
      cat("Flows: ", if (length(flows)) paste(flows, collapse = ", ") else "none", "\n", sep = "")
      invisible(self)
    }
  ),
  active = list(
    #' @field flows The names of the flows in the datastore (see [list_flows()]).
    flows = function() list_flows()
  )
)

#' The flows in the datastore
#'
#' Every flow with at least one run in the datastore, whatever the namespace: a flow whose runs are all in
#' other namespaces is listed, but its `runs` are empty until [set_namespace()] lets them in.
#'
#' @return A character vector of flow names, sorted.
#' @examples
#' \dontrun{
#' list_flows()
#' }
#' @export
list_flows <- function() {
  as.character(unlist(client_query("list_flows")))
}

#' Shortcuts to the Client API, as in Metaflow's R package
#'
#' `new_flow("F")` is `flow_client$new("F")`, `new_run("F", id)` is `run_client$new("F", id)`, and so on.
#'
#' @param flow_id A flow's name.
#' @param run_id A run's id.
#' @param step_id A step's name.
#' @param task_id A task's id.
#' @return A [flow_client], [run_client], [step_client] or [task_client].
#' @examples
#' \dontrun{
#' new_task("BranchFlow", "1712345678901234", "end", "5")$artifact("xs")
#' }
#' @name client_shortcuts
NULL

#' @rdname client_shortcuts
#' @export
new_flow <- function(flow_id) flow_client$new(flow_id)

#' @rdname client_shortcuts
#' @export
new_run <- function(flow_id, run_id) run_client$new(flow_id, run_id)

#' @rdname client_shortcuts
#' @export
new_step <- function(flow_id, run_id, step_id) step_client$new(run_client$new(flow_id, run_id), step_id)

#' @rdname client_shortcuts
#' @export
new_task <- function(flow_id, run_id, step_id, task_id) {
  task_client$new(step_client$new(run_client$new(flow_id, run_id), step_id), task_id)
}

# -- plumbing ------------------------------------------------------------------------------------------

# Calls metaflow_r.client.<query>(...). A Python error becomes a cli error with the same text.
client_query <- function(query, ...) {
  client <- backend()$client
  sync_python_env()
  tryCatch(client[[query]](...),
           error = function(e) abort_backend_error(e))
}

abort_backend_error <- function(e, call = NULL) {
  exception <- python_exception(e)
  if (!is.null(exception) && reticulate::py_has_attr(exception, "bullets")) {
    message <- reticulate::py_to_r(reticulate::py_get_attr(exception, "message"))
    bullets <- reticulate::py_to_r(reticulate::py_get_attr(exception, "bullets"))
    kinds <- vapply(bullets, function(b) as.character(b[[1]]), "")
    texts <- vapply(bullets, function(b) cli_escape(as.character(b[[2]])), "")
    cli::cli_abort(c(cli_escape(message), stats::setNames(texts, kinds)), call = call)
  }
  cli::cli_abort(c("The metaflow backend failed to read the datastore.",
                   "x" = cli_escape(python_error_text(conditionMessage(e))),
                   "i" = "Check that the datastore is readable; if it is, this is a bug in {.pkg metaflow}."),
                 call = call)
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

# -- small shared helpers ------------------------------------------------------------------------------

# An id the user typed: a string, or a whole number written without an exponent.
client_id <- function(x, arg, call = NULL) {
  if (is.numeric(x) && length(x) == 1 && !is.na(x) && x == round(x) && x >= 0) {
    x <- format(x, scientific = FALSE, trim = TRUE)
  }
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    cli::cli_abort(c("{.arg {arg}} must be a single id, such as {.val 1712345678901234} or {.val end}.",
                     "x" = "You supplied {.obj_type_friendly {x}}."), call = call)
  }
  if (grepl("/", x, fixed = TRUE)) {
    cli::cli_abort(c("{.arg {arg}} must be an id, not a pathspec.",
                     "x" = "You supplied {.val {x}}.",
                     "i" = "Pass a pathspec as the only argument, e.g. {.code run_client$new(\"MyFlow/1712345678901234\")}."),
                   call = call)
  }
  x
}

# A pathspec the user typed, such as "Flow/run/step", split into its `n` parts.
split_pathspec <- function(pathspec, n, example, call = NULL) {
  parts <- if (is.character(pathspec) && length(pathspec) == 1 && !is.na(pathspec)) {
    strsplit(pathspec, "/", fixed = TRUE)[[1]]
  }
  if (length(parts) != n || any(!nzchar(parts)) || endsWith(pathspec, "/")) {
    cli::cli_abort(c("Expected a pathspec like {.val {example}}.",
                     "x" = "You supplied {.val {format(pathspec)}}."),
                   call = call)
  }
  parts
}

client_time <- function(seconds) if (is.null(seconds)) NULL else .POSIXct(seconds)

format_time <- function(time) if (is.null(time)) "-" else format(time, "%Y-%m-%d %H:%M:%S")

format_duration <- function(from, to) {
  if (is.null(from) || is.null(to)) return("-")
  format(round(difftime(to, from), 2))
}

# A summary as Metaflow's R package prints it: a rule, then aligned "label: value" lines.
cat_summary <- function(title, fields) {
  cat(cli::rule(left = title), "\n", sep = "")
  width <- max(nchar(names(fields)))
  for (name in names(fields)) {
    value <- fields[[name]]
    if (!length(value)) value <- "-"
    cat("    ", formatC(paste0(name, ":"), width = -(width + 2)), paste(value, collapse = ", "), "\n", sep = "")
  }
  invisible(fields)
}
