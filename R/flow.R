#' Start a flow
#'
#' A flow is a directed graph of steps. Build it with pipes: `metaflow()` first, then [parameter()] and
#' [step()], then [run()].
#'
#' @param name The flow's name: letters, digits and underscores, starting with a letter.
#' @param ... Flow-level decorators made with [decorator()], such as `decorator("schedule", hourly = TRUE)`.
#' @param seed The seed of the flow's runs, a whole number from 1 to 2147483646 (`run(seed =)` or `--seed`
#'   wins for one run). Each task then draws from its own L'Ecuyer-CMRG stream, derived from the seed and the
#'   task's place in the graph (its step and foreach indices), as `parallel::nextRNGStream()` makes them: the
#'   same draws in every task, locally, on `resume`, with `--with batch` and on Step Functions. Without it
#'   each run draws a seed of its own, recorded with the run (`run_client$seed`, and in the report). A
#'   step's own `set.seed()` works as in R; one at the top of the script does not reach the tasks.
#' @return A `metaflow_flow` object to pipe into [parameter()], [step()] and [run()].
#' @examples
#' start <- function(self) self$x <- 1
#' end <- function(self) print(self$x)
#' flow <- metaflow("HelloFlow") %>%
#'   step(step = "start", r_function = start, next_step = "end") %>%
#'   step(step = "end", r_function = end)
#' flow
#' @export
metaflow <- function(name, ..., seed = NULL) {
  check_name(name, "name", "graph_error")
  if (!is.null(seed)) seed <- check_seed(seed)
  decorators <- list(...)
  check_decorators(decorators, "metaflow()")
  expect_run(name)
  structure(
    list(name = name, decorators = unname(decorators), parameters = list(), steps = list(), seed = seed),
    class = "metaflow_flow"
  )
}

#' @export
print.metaflow_flow <- function(x, ...) {
  plural <- function(n, what) sprintf("%d %s%s", n, what, if (n == 1) "" else "s")
  cat(sprintf("Flow %s: %s, %s\n", x$name, plural(length(x$steps), "step"), plural(length(x$parameters), "parameter")))
  for (d in x$decorators) cat("  ", format(d), "\n", sep = "")
  for (p in x$parameters) {
    default <- if (!is.null(p$default)) paste0(", default ", format(p$default)) else ""
    cat(sprintf("  parameter %s (%s%s%s)%s\n", p$name, p$type, default, if (isTRUE(p$required)) ", required" else "",
                if (!is.null(p$help)) paste0(": ", p$help) else ""))
  }
  for (s in x$steps) {
    arrow <- if (length(s$next_step)) paste(" ->", paste(s$next_step, collapse = ", ")) else ""
    kind <- c(if (!is.null(s$foreach)) paste("foreach over", s$foreach), if (isTRUE(s$join)) "join")
    decorators <- vapply(s$decorators, format, "")
    cat(sprintf("  %s%s%s%s\n", s$step, arrow,
                if (length(kind)) paste0(" (", paste(kind, collapse = ", "), ")") else "",
                if (length(decorators)) paste0(" ", decorators, collapse = "") else ""))
  }
  invisible(x)
}

check_flow <- function(flow, call = rlang::caller_env()) {
  if (!inherits(flow, "metaflow_flow")) {
    abort(c(
      "Expected a flow made by {.fn metaflow}.",
      "x" = "Got {.obj_type_friendly {flow}}.",
      "i" = "Start the pipe with {.code metaflow(\"MyFlow\") %>% ...}."
    ), "usage_error", call = call)
  }
}

check_name <- function(x, arg, kind, call = rlang::caller_env()) {
  if (!is_valid_name(x)) {
    abort(c(
      "{.arg {arg}} must be a single name of {rules()$name$what}.",
      "x" = "You supplied {.val {format(x)}}."
    ), kind, call = call)
  }
}

# step() masks stats::step, as in Metaflow's R package. library() stays quiet about it when the attached
# environment holds `.conflicts.OK`, so every task's output is the step's own.
.onAttach <- function(libname, pkgname) {
  assign(".conflicts.OK", TRUE, envir = as.environment(paste0("package:", pkgname)))
}

# `Rscript flow.R run` on a script whose pipe never reaches run() would otherwise exit 0 having run
# nothing. When R exits after defining a flow under a command without running it, it says so and the
# exit status is 1.
expect_run <- function(name) {
  the$defined_flow <- name
  if (interactive() || !length(script_args()) || isTRUE(the$expecting_run)) return(invisible())
  the$expecting_run <- TRUE
  reg.finalizer(the, function(env) {
    if (!isTRUE(env$ran)) {
      message(sprintf("Flow '%s' was not run: the script ended before reaching run().\n%s", env$defined_flow,
                      "\u2139 A flow script ends its pipe with `%>% run()`."))
      quit(save = "no", status = 1)
    }
  }, onexit = TRUE)
  invisible()
}
