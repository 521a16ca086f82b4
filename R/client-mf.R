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
      cat("<mf_client> ", paste(unlist(client_query("datastore_root")), collapse = " and "), "\n", sep = "")
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
  client <- backend("client.queries")
  sync_python_env()
  result <- tryCatch(client[[query]](...), error = function(e) abort_backend_error(e))
  for (note in client$take_notes()) {
    what <- if (note[[1]] == "damaged_record") "Skipped a damaged record." else "Skipped a datastore."
    cli::cli_warn(c(what, "x" = cli_escape(note[[2]])), class = paste0("metaflow_", note[[1]]))
  }
  result
}

# -- small shared helpers ------------------------------------------------------------------------------

# An id the user typed: a string, or a whole number written without an exponent.
client_id <- function(x, arg, call = NULL) {
  if (is.numeric(x) && length(x) == 1 && !is.na(x) && x == round(x) && x >= 0) {
    x <- format(x, scientific = FALSE, trim = TRUE)
  }
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    abort(c("{.arg {arg}} must be a single id, such as {.val 1712345678901234} or {.val end}.",
                     "x" = "You supplied {.obj_type_friendly {x}}."), "usage_error", call = call)
  }
  if (grepl("/", x, fixed = TRUE)) {
    abort(c("{.arg {arg}} must be an id, not a pathspec.",
                     "x" = "You supplied {.val {x}}.",
                     "i" = paste("Pass a pathspec as the only argument, e.g.",
                                 "{.code run_client$new(\"MyFlow/1712345678901234\")}.")), "usage_error",
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
    abort(c("Expected a pathspec like {.val {example}}.",
                     "x" = "You supplied {.val {format(pathspec)}}."), "usage_error",
                   call = call)
  }
  parts
}

client_time <- function(seconds) if (is.null(seconds)) NULL else .POSIXct(seconds)

# A table of Client API results: a tibble when the tibble package is installed, else a data frame.
as_table <- function(df) {
  if (requireNamespace("tibble", quietly = TRUE)) tibble::as_tibble(df) else df
}

# The runs table, whose ids and statuses a user copies: tibble would cut them to "17966…" and "succe…".
as_runs_table <- function(df) {
  table <- as_table(df)
  if (inherits(table, "tbl_df")) class(table) <- c("metaflow_runs_table", class(table))
  table
}

#' @export
print.metaflow_runs_table <- function(x, ...) {
  # pillar shortens character columns to pillar.min_chars to fit more of them; with none shortened, the
  # columns that do not fit are named under the table instead.
  previous <- options(pillar.min_chars = Inf)
  on.exit(options(previous))
  NextMethod()
}

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

# utils::browseURL() hands the file to xdg-open even where no display exists, and xdg-open then fills the
# console with its complaints; a session with no browser to show is told where the file is instead.
open_in_browser <- function(path) {
  browser <- getOption("browser")
  if (is.function(browser) || can_show_browser(browser)) return(utils::browseURL(path))
  cli::cli_inform(c("i" = "No browser to open it here; the report is {.path {path}}."))
}

can_show_browser <- function(browser) {
  if (!is.character(browser) || length(browser) != 1 || !nzchar(Sys.which(browser))) return(FALSE)
  if (.Platform$OS.type == "windows" || Sys.info()[["sysname"]] == "Darwin") return(TRUE)
  nzchar(Sys.getenv("DISPLAY")) || nzchar(Sys.getenv("WAYLAND_DISPLAY"))
}
