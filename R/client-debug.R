#' Reproduce a task in the console
#'
#' Gives the `self` a task's step function started with (its inherited artifacts, the run's parameters,
#' its foreach frame) and, for a join, its `inputs`, so the step function can be called on them in the
#' console: `start(task$self)`, or `join(task$self, task$inputs)`. Nothing done to this `self` is stored.
#' The same as `task_client$new(pathspec)$debug()`.
#'
#' @param pathspec A task's pathspec, `"Flow/run_id/step/task_id"`, as a failed run's error names it (its
#'   `pathspec` field, for a local or a production run), in any namespace.
#' @return A list with `self` and `inputs` (`NULL` for a step that is no join), invisibly.
#' @examples
#' \dontrun{
#' task <- debug_task("FailFlow/1712345678901234/start/1")
#' start(task$self)  # the step's function, on what the task saw
#' }
#' @export
debug_task <- function(pathspec) {
  # A pathspec names one task: it is found whatever the namespace (a production run's task too, as a failed
  # production run's condition names it); namespaces only filter what listings show.
  task <- with_namespace(NULL, task_client$new(pathspec))
  started <- task$debug()
  cli::cli_inform(c("i" = paste("{.code $self} is what task {.val {pathspec}} started with; call its step function",
                                "on it, e.g. {.code {task$step_name}(task$self)}.")))
  invisible(started)
}
