#' Information about the task that is running
#'
#' @param value One of `"flow_name"`, `"run_id"`, `"step_name"`, `"task_id"`, `"retry_count"`,
#'   `"pathspec"`, `"username"`, `"namespace"`, `"tags"`, `"is_running_flow"`.
#' @return The value; `current("is_running_flow")` is `FALSE` outside a task, and every other value is
#'   an error there.
#' @examples
#' current("is_running_flow")
#' @export
current <- function(value) {
  known <- c("flow_name", "run_id", "step_name", "task_id", "retry_count", "pathspec", "username", "namespace",
             "tags", "is_running_flow")
  ctx <- the$task
  if (identical(value, "is_running_flow")) {
    return(!is.null(ctx))
  }
  if (is.null(ctx)) {
    abort(c("{.fn current} has no value outside a running task.",
                     "i" = "Call it inside a step function."), "usage_error")
  }
  if (!is.character(value) || length(value) != 1 || !value %in% known) {
    abort(c("{.fn current} knows no {.val {value}}.", "i" = "Ask for one of {.val {known}}."), "usage_error")
  }
  switch(value,
    flow_name = ctx$flow,
    run_id = ctx$run_id,
    step_name = ctx$step,
    task_id = ctx$task_id,
    retry_count = as.integer(ctx$retry_count),
    pathspec = paste(ctx$flow, ctx$run_id, ctx$step, ctx$task_id, sep = "/"),
    username = ctx$user,
    namespace = ctx$namespace,
    tags = unlist(ctx$tags)
  )
}
