#' A run of a flow
#'
#' @description
#' One run: its status, its steps, and the artifacts of its `end` step. Create it from a [flow_client]
#' and a run id, from a flow's name and a run id, or from a pathspec `"Flow/run_id"`. The run must be in
#' the current namespace (see [set_namespace()]); asking for a run outside it is an error that says so.
#'
#' `$artifact(name)` reads an artifact as the `end` step left it, as Metaflow's R package does; an
#' artifact of another step is read through `$step(name)$task(id)$artifact(name)`.
#'
#' @examples
#' \dontrun{
#' run <- run_client$new("BranchFlow", "1712345678901234")
#' run <- run_client$new("BranchFlow/1712345678901234")
#' run <- flow_client$new("BranchFlow")$run("latest_successful_run")
#' run$successful
#' run$steps                  # in the order they started
#' run$artifact("xs")
#' run$step("join")$tasks
#' run$summary()
#' run$report()               # an HTML report of the run; opens in a browser
#' }
#' @export
run_client <- R6::R6Class("run_client",
  public = list(
    #' @description Find a run.
    #' @param flow A [flow_client], a flow's name, or a pathspec `"Flow/run_id"` (then leave out `run_id`).
    #' @param run_id The run's id, or `"latest_run"` / `"latest_successful_run"` of the flow.
    initialize = function(flow, run_id = NULL) {
      if (is.null(run_id)) {
        if (inherits(flow, "flow_client")) {
          abort(c("{.code run_client$new()} needs a {.arg run_id} with a {.cls flow_client}.",
                           "i" = "For example {.code run_client$new(flow, flow$latest_run)}."),
                         "usage_error", call = NULL)
        }
        parts <- split_pathspec(flow, 2, "MyFlow/1712345678901234")
        flow_name <- parts[[1]]
        run_id <- parts[[2]]
      } else {
        flow_name <- if (inherits(flow, "flow_client")) flow$name else check_flow_name(flow, "flow")
        run_id <- client_id(run_id, "run_id")
        if (run_id %in% c("latest_run", "latest_successful_run")) {
          flow_obj <- if (inherits(flow, "flow_client")) flow else flow_client$new(flow_name)
          latest <- flow_obj[[run_id]]
          if (is.null(latest)) {
            what <- if (run_id == "latest_run") "run" else "successful run"
            abort(c("Flow {.val {flow_name}} has no {what} to read.", namespace_hint()), "datastore_error", call = NULL)
          }
          run_id <- latest
        }
      }
      private$flow_ <- flow_name
      private$id_ <- run_id
      private$record_ <- client_query("run", flow_name, run_id, get_namespace())
    },

    #' @description A step of this run.
    #' @param step_id The step's name, such as `"start"`.
    #' @return A [step_client].
    step = function(step_id) step_client$new(self, step_id),

    #' @description Read an artifact of the run's `end` step.
    #' @param name The artifact's name.
    #' @return The R object the `end` step's task saved under `name`.
    artifact = function(name) {
      task <- self$end_task
      if (is.null(task)) {
        status <- private$info()
        abort(c(
          "Run {.val {self$pathspec}} has no {.val end} step to read {.val {name}} from.",
          "x" = if (isTRUE(status$finished)) "The run failed before its end step."
                else "The run has not reached its end step yet.",
          "i" = paste("Read it from a task of the step that set it, e.g.",
                      "{.code run$step(\"start\")$task(\"1\")$artifact(\"{name}\")}.")
        ), "datastore_error", call = NULL)
      }
      task_client$new(step_client$new(self, "end"), task)$artifact(name)
    },

    #' @description Whether the current namespace includes this run.
    #' @return `TRUE` or `FALSE`.
    is_in_namespace = function() {
      ns <- get_namespace()
      is.null(ns) || ns %in% self$tags
    },

    #' @description Print the run's status, times, steps and end artifacts.
    #' @return The printed fields, invisibly.
    summary = function() {
      info <- private$info()
      steps <- private$step_infos()
      created <- client_time(info$created_at)
      finished <- client_time(info$finished_at)
      counts <- vapply(steps, function(s) sprintf("%s (%d)", s$step, length(s$task_ids)), "")
      cat_summary(paste0("Run Summary: ", self$pathspec), list(
        "Status" = run_status(info),
        "Created at" = format_time(created),
        "Finished at" = format_time(finished),
        "Time" = format_duration(created, finished),
        "Steps (tasks)" = counts,
        "Tags" = self$tags,
        "Artifacts" = self$artifacts
      ))
    },

    #' @description Write the run's report: one HTML file showing the graph coloured by each step's status
    #'   (succeeded, failed, running, stopped, not reached), a timeline of every task attempt, the failed
    #'   tasks' errors and output, and each step's artifacts with their type, size and a preview. The file
    #'   is self-contained: it opens anywhere, offline. `Rscript flow.R report RUN_ID` writes the same file,
    #'   and every local run prints the path of its own.
    #' @param file Where to write it. By default beside the run's data in a local datastore
    #'   (`.metaflow/<Flow>/<run>/_report.html`), and in the system's temporary directory for a run read
    #'   from S3 (a production run).
    #' @param flow The flow from [metaflow()], if you have it: the graph then also shows the steps the run
    #'   never reached. Without it the graph is drawn from the steps the run recorded.
    #' @param open Whether to open the file in a browser; by default only in an interactive session.
    #' @return The file's path, invisibly.
    report = function(file = NULL, flow = NULL, open = interactive()) {
      if (!is.null(file) && (!is.character(file) || length(file) != 1 || is.na(file) || !nzchar(file))) {
        abort(c("{.arg file} must be a file path or {.code NULL}.",
                "x" = "You supplied {.obj_type_friendly {file}}."), "usage_error", call = NULL)
      }
      if (!is.null(flow)) {
        check_flow(flow, call = NULL)
        if (!identical(flow$name, private$flow_)) {
          abort(c("{.arg flow} is flow {.val {flow$name}}, but this run is of {.val {private$flow_}}.",
                  "i" = "Pass the flow that made the run, or leave {.arg flow} out."), "usage_error", call = NULL)
        }
      }
      if (!isTRUE(open) && !isFALSE(open)) {
        abort(c("{.arg open} must be {.code TRUE} or {.code FALSE}.",
                "x" = "You supplied {.obj_type_friendly {open}}."), "usage_error", call = NULL)
      }
      spec <- if (is.null(flow)) NULL else flow_spec(flow, NULL)
      path <- client_query("report", private$flow_, private$id_, spec,
                           if (is.null(file)) NULL else normalizePath(file, mustWork = FALSE))
      if (open) open_in_browser(path)
      invisible(path)
    },

    #' @description Print the run in one line.
    #' @param ... Ignored.
    print = function(...) {
      info <- private$info()
      cat("<run_client> ", self$pathspec, ": ", run_status(info), ", started ",
          format_time(client_time(info$created_at)), "\n", sep = "")
      invisible(self)
    }
  ),
  private = list(
    flow_ = NULL,
    id_ = NULL,
    record_ = NULL,
    # The run's record now: finished, successful and finished_at change while it runs.
    info = function() client_query("run", private$flow_, private$id_, NULL),
    step_infos = function() client_query("steps", private$flow_, private$id_)
  ),
  active = list(
    #' @field id The run's id.
    id = function() private$id_,
    #' @field run_id The run's id.
    run_id = function() private$id_,
    #' @field flow_name The flow's name.
    flow_name = function() private$flow_,
    #' @field parent The flow's name.
    parent = function() private$flow_,
    #' @field pathspec `"Flow/run_id"`.
    pathspec = function() paste(private$flow_, private$id_, sep = "/"),
    #' @field tags The run's tags, its namespace (`user:<name>`) among them.
    tags = function() as.character(unlist(private$record_$tags)),
    #' @field user Who started the run.
    user = function() private$record_$user,
    #' @field parameters The run's parameter values, a named list.
    parameters = function() private$record_$parameters,
    #' @field seed The run's seed, from which every task's random-number stream derives (see [metaflow()]):
    #'   `run(seed = )` with it draws the same numbers again.
    seed = function() private$record_$seed,
    #' @field created_at When the run started (`POSIXct`).
    created_at = function() client_time(private$record_$created_at),
    #' @field finished `TRUE` once the run has ended, successfully or not.
    finished = function() isTRUE(private$info()$finished),
    #' @field successful `TRUE` if the run ended and every step succeeded.
    successful = function() isTRUE(private$info()$successful),
    #' @field finished_at When the run ended (`POSIXct`), or `NULL` while it runs.
    finished_at = function() client_time(private$info()$finished_at),
    #' @field steps The names of the run's steps, in the order they started.
    steps = function() vapply(private$step_infos(), function(s) s$step, ""),
    #' @field end_task The id of the `end` step's task, or `NULL` if the run never reached it.
    end_task = function() {
      tasks <- client_query("tasks", private$flow_, private$id_, "end")  # reads the end step only
      if (length(tasks)) tasks[[1]]$task_id else NULL
    },
    #' @field artifacts The names of the `end` step's artifacts, or `NULL` if the run never reached it.
    artifacts = function() {
      task <- self$end_task
      if (is.null(task)) NULL else task_client$new(step_client$new(self, "end"), task)$artifacts
    }
  )
)

run_status <- function(info) {
  if (!isTRUE(info$finished)) "running" else if (isTRUE(info$successful)) "successful" else "failed"
}
