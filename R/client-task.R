#' A task of a step
#'
#' @description
#' One task: its artifacts, its status, its output. Create it from a [step_client] and a task id, or from
#' a pathspec `"Flow/run_id/step/task_id"`. A task that was retried shows its latest attempt: its
#' artifacts, status and output are that attempt's, and `$retry_count` says which one it is (0 for the
#' first). A failed attempt keeps no artifacts.
#'
#' @examples
#' \dontrun{
#' task <- task_client$new("BranchFlow/1712345678901234/end/5")
#' task <- step_client$new("BranchFlow/1712345678901234/end")$task("5")
#' task$artifacts
#' task$artifact("xs")
#' cat(task$stdout)
#' task$summary()
#' }
#' @export
task_client <- R6::R6Class("task_client",
  public = list(
    #' @description Find a task.
    #' @param step A [step_client], a step's pathspec `"Flow/run_id/step"`, or a task's pathspec
    #'   `"Flow/run_id/step/task_id"` (then leave out `task_id`).
    #' @param task_id The task's id, one of the step's `$tasks`.
    initialize = function(step, task_id = NULL) {
      if (is.null(task_id)) {
        if (inherits(step, "step_client")) {
          abort(c("{.code task_client$new()} needs a {.arg task_id} with a {.cls step_client}.",
                           "i" = "For example {.code task_client$new(step, step$tasks[1])}."),
                         "usage_error", call = NULL)
        }
        parts <- split_pathspec(step, 4, "MyFlow/1712345678901234/start/1")
        step <- step_client$new(run_client$new(parts[[1]], parts[[2]]), parts[[3]])
        task_id <- parts[[4]]
      } else {
        if (!inherits(step, "step_client")) step <- step_client$new(step)
        task_id <- client_id(task_id, "task_id")
      }
      private$step_ <- step
      private$id_ <- task_id
      private$record()  # the task must exist
      invisible(self)
    },

    #' @description Read one of the task's artifacts.
    #' @param name The artifact's name, one of `$artifacts`.
    #' @return The R object the task saved under `name`.
    artifact = function(name) {
      if (!is.character(name) || length(name) != 1 || is.na(name) || !nzchar(name)) {
        abort(c("{.arg name} must be an artifact's name.",
                         "x" = "You supplied {.obj_type_friendly {name}}."), "usage_error", call = NULL)
      }
      found <- private$by_name()[[name]]
      if (is.null(found)) {
        record <- private$record()
        known <- names(record$artifacts)
        abort(c(
          "Task {.val {self$pathspec}} has no attribute '{name}'.",
          "x" = if (!isTRUE(record$successful))
            "The task failed ({record$error %||% 'no reason recorded'}); a failed task keeps no artifacts.",
          "i" = if (length(known)) "Its artifacts: {.val {known}}." else "It has no artifacts."
        ), "datastore_error", call = NULL)
      }
      path <- private$blob_path(found$sha)
      read_artifact(path, name, found$size %||% file.size(path))
    },

    #' @description Print the task's status, times and artifacts.
    #' @return The printed fields, invisibly.
    summary = function() {
      record <- private$record()
      created <- client_time(record$started_at)
      finished <- client_time(record$finished_at)
      cat_summary(paste0("Task Summary: ", self$pathspec), list(
        "Status" = if (isTRUE(record$successful)) "successful" else paste0("failed (", record$error %||% "?", ")"),
        "Attempt" = record$attempt,
        "Foreach index" = self$index,
        "Created at" = format_time(created),
        "Finished at" = format_time(finished),
        "Time" = format_duration(created, finished),
        "Artifacts" = names(record$artifacts)
      ))
    },

    #' @description What the task's step function started with, to reproduce the task in the console (see
    #'   [debug_task()]): `self` (its inherited artifacts, the run's parameters, its foreach frames) and, for
    #'   a join, `inputs`. What the function assigns is kept in this `self` only.
    #' @return A list with `self` and `inputs` (`NULL` for a step that is no join).
    debug = function() {
      task_self(client_query("task_context", private$step_$flow_name, private$step_$run_id, private$step_$id,
                             private$id_))
    },

    #' @description The task's artifacts as a table: name, type, size in bytes and a preview.
    #' @return A data frame (a tibble when the tibble package is installed), one row per artifact.
    artifacts_table = function() {
      record <- private$record()
      info <- record$artifact_info
      names <- names(record$artifacts) %||% character()
      field <- function(what, empty) unlist(lapply(names, function(n) info[[n]][[what]] %||% empty))
      as_table(data.frame(name = names, type = field("type", NA_character_),
                          size = as.numeric(field("size", NA_real_)), preview = field("preview", NA_character_),
                          stringsAsFactors = FALSE))
    },

    #' @description Print the task in one line.
    #' @param ... Ignored.
    print = function(...) {
      record <- private$record()
      cat("<task_client> ", self$pathspec, ": ", if (isTRUE(record$successful)) "successful" else "failed",
          if (record$attempt > 0) paste0(" (attempt ", record$attempt, ")"), ", ",
          length(record$artifacts), " artifact(s)\n", sep = "")
      invisible(self)
    }
  ),
  private = list(
    step_ = NULL,
    id_ = NULL,
    record_ = NULL,
    paths_ = NULL,
    by_name_ = NULL,
    # The task's latest committed attempt. A failed one is read again each time (a retry can commit a newer
    # one); a successful one is final, so it is read and converted once.
    record = function() {
      if (is.null(private$record_)) {
        record <- client_query("task", private$step_$flow_name, private$step_$run_id, private$step_$id, private$id_)
        if (!isTRUE(record$successful)) return(record)
        private$record_ <- record
      }
      private$record_
    },
    # The artifacts by name, each list(sha, size), in an environment: with 1,000 artifacts a lookup by name
    # in a list costs more than reading a small artifact. Kept with a successful record.
    by_name = function() {
      record <- private$record()
      if (!is.null(private$by_name_) && isTRUE(record$successful)) return(private$by_name_)
      names <- names(record$artifacts) %||% character()
      sizes <- lapply(unname(record$artifact_info[names]), function(info) info$size)
      entries <- Map(function(sha, size) list(sha = sha, size = size), unname(record$artifacts), sizes)
      private$by_name_ <- list2env(stats::setNames(entries, names), parent = emptyenv())
    },
    # A local file holding the blob: the paths a local datastore needs no download for are asked once, for
    # every artifact of the task; any other blob is fetched when it is read.
    blob_path = function(sha) {
      if (is.null(private$paths_)) {
        paths <- client_query("artifact_paths", self$flow_name, private$step_$run_id,
                              as.list(unique(unlist(private$record()$artifacts))))
        private$paths_ <- list2env(paths, parent = emptyenv())
      }
      private$paths_[[sha]] %||% client_query("artifact_path", self$flow_name, private$step_$run_id, sha)
    },
    log = function(stream) {
      client_query("log", private$step_$flow_name, private$step_$run_id, private$step_$id, private$id_,
                   as.integer(private$record()$attempt), stream)
    }
  ),
  active = list(
    #' @field id The task's id.
    id = function() private$id_,
    #' @field task_id The task's id.
    task_id = function() private$id_,
    #' @field pathspec `"Flow/run_id/step/task_id"`.
    pathspec = function() paste(private$step_$pathspec, private$id_, sep = "/"),
    #' @field parent The step's name.
    parent = function() private$step_$id,
    #' @field step_name The step's name.
    step_name = function() private$step_$id,
    #' @field run_id The run's id.
    run_id = function() private$step_$run_id,
    #' @field flow_name The flow's name.
    flow_name = function() private$step_$flow_name,
    #' @field tags The run's tags.
    tags = function() private$step_$tags,
    #' @field artifacts The names of the task's artifacts (none if it failed).
    artifacts = function() names(private$record()$artifacts) %||% character(),
    #' @field finished `TRUE`: only finished tasks can be read.
    finished = function() TRUE,
    #' @field successful `TRUE` if the task's latest attempt succeeded.
    successful = function() isTRUE(private$record()$successful),
    #' @field exception Why the latest attempt failed (such as `"exit status 1"`), or `NULL`.
    exception = function() private$record()$error,
    #' @field error The R error of the latest attempt, if it failed with one: its message, call and the step
    #'   function's frames (`$traceback`), as a condition of the class it had; else `NULL`.
    error = function() {
      error <- private$record()$exception
      if (is.null(error)) return(NULL)
      structure(class = unlist(error$class),
                list(message = error$message, call = NULL, call_text = error$call,
                     traceback = unlist(error$traceback)))
    },
    #' @field created_at When the latest attempt started (`POSIXct`).
    created_at = function() client_time(private$record()$started_at),
    #' @field finished_at When the latest attempt ended (`POSIXct`).
    finished_at = function() client_time(private$record()$finished_at),
    #' @field retry_count The latest attempt's number: 0 for the first, 1 after one retry, ...
    retry_count = function() as.integer(private$record()$attempt),
    #' @field attempt The same as `retry_count`.
    attempt = function() self$retry_count,
    #' @field index The task's position in its innermost foreach (from 0), or `NULL` outside a foreach.
    index = function() {
      frames <- Filter(function(f) identical(f$kind, "foreach"), private$record()$split_stack)
      if (length(frames)) as.integer(frames[[length(frames)]]$index) else NULL
    },
    #' @field input_paths The pathspecs (`run_id/step/task_id`) of the tasks this one started from.
    input_paths = function() as.character(unlist(private$record()$input_paths)),
    #' @field stdout What the latest attempt printed to standard output.
    stdout = function() private$log("stdout"),
    #' @field stderr What the latest attempt printed to standard error.
    stderr = function() private$log("stderr")
  )
)
