#' A step of a run
#'
#' @description
#' One step of a run and its tasks: one task for a plain step, one per branch for the steps of a branch,
#' one per element for the body of a foreach. Create it from a [run_client] and a step name, or from a
#' pathspec `"Flow/run_id/step"`. Only tasks that finished (successfully or not) are listed.
#'
#' @examples
#' \dontrun{
#' run <- run_client$new("ForeachFlow/1712345678901234")
#' body <- step_client$new(run, "per_number")
#' body <- step_client$new("ForeachFlow/1712345678901234/per_number")
#' body$tasks                                     # task ids
#' lapply(body$tasks, function(id) body$task(id)$artifact("label"))
#' body$summary()
#' }
#' @export
step_client <- R6::R6Class("step_client",
  public = list(
    #' @description Find a step of a run.
    #' @param run A [run_client], a run's pathspec `"Flow/run_id"`, or a step's pathspec
    #'   `"Flow/run_id/step"` (then leave out `step_id`).
    #' @param step_id The step's name, such as `"start"`.
    initialize = function(run, step_id = NULL) {
      if (is.null(step_id)) {
        if (inherits(run, "run_client")) {
          abort(c("{.code step_client$new()} needs a {.arg step_id} with a {.cls run_client}.",
                           "i" = "For example {.code step_client$new(run, \"end\")}."), "usage_error", call = NULL)
        }
        parts <- split_pathspec(run, 3, "MyFlow/1712345678901234/start")
        run <- run_client$new(parts[[1]], parts[[2]])
        step_id <- parts[[3]]
      } else {
        if (!inherits(run, "run_client")) run <- run_client$new(run)
        step_id <- client_id(step_id, "step_id")
      }
      if (!length(client_query("tasks", run$flow_name, run$id, step_id))) {
        steps <- run$steps
        abort(c("Run {.val {run$pathspec}} has no step {.val {step_id}}.",
                         "i" = if (length(steps)) "Its steps: {.val {steps}}."
                               else "None of its tasks has finished yet."), "datastore_error",
                       call = NULL)
      }
      private$run_ <- run
      private$step_ <- step_id
    },

    #' @description A task of this step.
    #' @param task_id The task's id, one of `$tasks`.
    #' @return A [task_client].
    task = function(task_id) task_client$new(self, task_id),

    #' @description The step's tasks as a table, in the order they were created.
    #' @return A data frame (a tibble when the tibble package is installed), one row per task: `task_id`,
    #'   `successful`, `attempt`, `index` (its position in the innermost foreach, or `NA`), `started_at`,
    #'   `finished_at`, `seconds`, `error` (why its latest attempt failed, or `NA`).
    tasks_table = function() {
      records <- private$records()
      col <- function(f, empty) unlist(lapply(records, function(r) f(r) %||% empty))
      started <- col(function(r) r$started_at, NA_real_)
      finished <- col(function(r) r$finished_at, NA_real_)
      index <- function(r) {
        frames <- Filter(function(f) identical(f$kind, "foreach"), r$split_stack)
        if (length(frames)) as.integer(frames[[length(frames)]]$index)
      }
      as_table(data.frame(
        task_id = col(function(r) r$task_id, NA_character_),
        successful = col(function(r) isTRUE(r$successful), NA),
        attempt = col(function(r) as.integer(r$attempt), NA_integer_),
        index = col(index, NA_integer_),
        started_at = client_time(started),
        finished_at = client_time(finished),
        seconds = finished - started,
        error = col(function(r) r$error, NA_character_),
        stringsAsFactors = FALSE
      ))
    },

    #' @description Print the step's tasks and times.
    #' @return The printed fields, invisibly.
    summary = function() {
      records <- private$records()
      successful <- vapply(records, function(r) isTRUE(r$successful), NA)
      created <- self$created_at
      finished <- self$finished_at
      cat_summary(paste0("Step Summary: ", self$pathspec), list(
        "Tasks" = sprintf("%d (%d successful, %d failed)", length(records), sum(successful), sum(!successful)),
        "Created at" = format_time(created),
        "Finished at" = format_time(finished),
        "Time" = format_duration(created, finished)
      ))
    },

    #' @description Print the step in one line.
    #' @param ... Ignored.
    print = function(...) {
      cat("<step_client> ", self$pathspec, ": ", length(self$tasks), " task(s)\n", sep = "")
      invisible(self)
    }
  ),
  private = list(
    run_ = NULL,
    step_ = NULL,
    records = function() client_query("tasks", private$run_$flow_name, private$run_$id, private$step_)
  ),
  active = list(
    #' @field id The step's name.
    id = function() private$step_,
    #' @field step_name The step's name.
    step_name = function() private$step_,
    #' @field pathspec `"Flow/run_id/step"`.
    pathspec = function() paste(private$run_$pathspec, private$step_, sep = "/"),
    #' @field parent The run's id.
    parent = function() private$run_$id,
    #' @field run_id The run's id.
    run_id = function() private$run_$id,
    #' @field flow_name The flow's name.
    flow_name = function() private$run_$flow_name,
    #' @field run The step's run, a [run_client].
    run = function() private$run_,
    #' @field tags The run's tags.
    tags = function() private$run_$tags,
    #' @field tasks The ids of the step's finished tasks, in the order they were created.
    tasks = function() vapply(private$records(), function(r) r$task_id, ""),
    #' @field task_ids The same as `tasks`.
    task_ids = function() self$tasks,
    #' @field a_task The id of the step's first task.
    a_task = function() {
      ids <- self$tasks
      if (length(ids)) ids[[1]] else NULL
    },
    #' @field created_at When the step's first task started (`POSIXct`).
    created_at = function() {
      records <- private$records()
      if (length(records)) client_time(min(vapply(records, function(r) r$started_at, 0))) else NULL
    },
    #' @field finished_at When the step's last task ended (`POSIXct`).
    finished_at = function() {
      records <- private$records()
      if (length(records)) client_time(max(vapply(records, function(r) r$finished_at, 0))) else NULL
    }
  )
)
