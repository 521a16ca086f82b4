#' Add a step to a flow
#'
#' @param flow A flow from [metaflow()].
#' @param ... Step decorators made with [decorator()], e.g. `decorator("retry", times = 0)`.
#' @param step The step's name. Every flow has a `"start"` and an `"end"` step.
#' @param r_function The function run by the step: `function(self)`, or `function(self, inputs)` for a
#'   join. `NULL` makes a step that only passes its artifacts on.
#' @param next_step The name of the following step, or several names to branch. `NULL` only for `"end"`.
#' @param join `TRUE` for a step that joins a branch or a foreach; its function gets `inputs`.
#' @param foreach The name of an artifact (a vector or list) set by this step: the next step runs once
#'   per element, reading it as `self$input` and its 0-based position as `self$index`.
#' @return The flow, with the step added.
#'
#'   `step()` masks [stats::step()]: a call without `step =` is `stats::step()`'s, evaluated where it was
#'   written and unchanged, so `step(lm(mpg ~ ., mtcars))` still selects a model.
#' @examples
#' start <- function(self) self$items <- c("a", "b")
#' body <- function(self) self$upper <- toupper(self$input)
#' join <- function(self, inputs) self$all <- gather_inputs(inputs, "upper")
#' metaflow("ForeachFlow") %>%
#'   step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%
#'   step(step = "body", r_function = body, next_step = "join") %>%
#'   step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
#'   step(step = "end")
#' @export
step <- function(flow, ..., step, r_function = NULL, next_step = NULL, join = FALSE, foreach = NULL) {
  if (missing(step)) {
    if (!missing(flow) && inherits(flow, "metaflow_flow")) {
      abort(c("{.fn step} needs a name.", "i" = "Write {.code step(step = \"start\", ...)}."), "graph_error")
    }
    # Every step of a flow is named: this is a call of the stats::step() we mask. Its other arguments are
    # evaluated where the user wrote them; the first, evaluated above, is passed as it is (not twice).
    args <- as.list(match.call())[-1]
    if (!missing(flow)) args <- c(list(flow), args[names(args) != "flow"])
    return(eval(as.call(c(quote(stats::step), args)), parent.frame()))
  }
  check_flow(flow)
  check_name(step, "step", "graph_error")
  decorators <- list(...)
  check_decorators(decorators, sprintf("step(\"%s\")", step))
  if (step %in% names(flow$steps)) {
    abort(c("Step {.val {step}} is defined twice.", "i" = "Give every step a distinct name."), "graph_error")
  }
  check_flag(join, "join", "graph_error")
  if (!is.null(r_function) && !is.function(r_function)) {
    abort(c("{.arg r_function} of step {.val {step}} must be a function.",
            "x" = "You supplied {.obj_type_friendly {r_function}}."), "graph_error")
  }
  if (!is.null(r_function)) {
    arity <- length(formals(r_function))
    wanted <- if (join) 2 else 1
    if (arity < wanted && !"..." %in% names(formals(r_function))) {
      abort(c(
        "{.arg r_function} of step {.val {step}} takes {arity} argument{?s} but needs {wanted}.",
        "i" = if (join) "A join step's function is {.code function(self, inputs)}."
              else "A step's function is {.code function(self)}."
      ), "graph_error")
    }
  }
  if (!is.null(next_step) && (!is.character(next_step) || anyNA(next_step) || length(next_step) == 0)) {
    abort(c("{.arg next_step} of step {.val {step}} must be step name(s).",
            "x" = "You supplied {.obj_type_friendly {next_step}}."), "graph_error")
  }
  if (!is.null(foreach)) check_name(foreach, "foreach", "graph_error")
  # The name the user wrote, so a task's traceback shows `start(self)` rather than an anonymous call.
  r_function_name <- substitute(r_function)
  flow$steps[[step]] <- list(
    step = step, r_function = r_function, next_step = next_step, join = join,
    foreach = foreach, decorators = unname(decorators),
    r_function_name = if (is.name(r_function_name)) as.character(r_function_name)
  )
  flow
}
