#' Run a flow
#'
#' The last call of a flow script. Under `Rscript flow.R <command> ...` it runs the command given on the
#' command line; in an interactive session (`source("flow.R")`) it builds the same command from its own
#' arguments. Commands: `run` (the default), `show`, `resume`, and the `task` command the runtime uses.
#'
#' @param flow A flow from [metaflow()].
#' @param ... Parameter values, e.g. `alpha = 0.5`.
#' @param step_functions `"create"` or `"trigger"` to deploy or start the flow on AWS Step Functions.
#' @param max_workers The most tasks run at once (default 16 locally).
#' @param with Decorators applied to every step, e.g. `"retry"`.
#' @param resume A step name: resume the latest run from that step (`TRUE` for its failed step).
#' @param show If `TRUE`, print the graph instead of running.
#' @param help If `TRUE`, print the command-line help.
#' @param datastore `"local"` (default) or `"s3"`.
#' @param metadata,package_suffixes,batch Accepted for compatibility with Metaflow R scripts.
#' @param tags Tags added to the run.
#' @return The exit status, invisibly: 0 on success. Under `Rscript`, a failure ends the process with
#'   that status.
#' @examples
#' \dontrun{
#' metaflow("ParameterFlow") %>%
#'   parameter("alpha", default = 0.1) %>%
#'   step(step = "start", r_function = function(self) print(self$alpha), next_step = "end") %>%
#'   step(step = "end") %>%
#'   run(alpha = 0.5)
#' }
#' @export
run <- function(flow, ..., step_functions = NULL, max_workers = NULL, with = NULL, resume = NULL,
                show = FALSE, help = FALSE, datastore = NULL, metadata = NULL, package_suffixes = NULL,
                batch = FALSE, tags = NULL) {
  params <- list(...)
  # R matches `f = 1` to `flow` by partial matching: then the flow is among `...` and `f` is a parameter.
  partial <- intersect(names(sys.call()), c("f", "fl", "flo"))
  if (length(partial) && !inherits(flow, "metaflow_flow")) {
    at <- which(vapply(params, inherits, logical(1), "metaflow_flow") & !nzchar(rlang::names2(params)))[1]
    if (!is.na(at)) {
      params <- c(stats::setNames(list(flow), partial), params[-at])
      flow <- list(...)[[at]]
    }
  }
  check_flow(flow)
  the$ran <- TRUE
  args <- script_args()
  if (identical(args[1], "task")) {
    return(task_command(flow, args))
  }
  if (identical(args[1], "worker")) {
    return(invisible(run_worker(flow)))
  }
  if (!length(args)) {
    args <- args_from_call(params, flow, step_functions = step_functions, max_workers = max_workers,
                           with = with, resume = resume, show = show, help = help, datastore = datastore,
                           metadata = metadata, batch = batch, tags = tags)
  }
  spec <- flow_spec(flow, script_path(), package_suffixes)
  info <- list(launch_dir = getwd(), rscript = rscript_path(),
               versions = list(R = R.version.string, metaflow = as.character(utils::packageVersion("metaflow"))))
  cli_module <- backend()$cli
  sync_python_env()
  status <- cli_module$main(as.list(args), spec, info)
  status <- as.integer(status)
  if (!interactive() && status != 0L) quit(save = "no", status = status)
  invisible(status)
}

# Arguments after the script name, when R runs the script (Rscript flow.R ...), else none.
script_args <- function() {
  if (interactive() || !length(grep("^--file=", commandArgs()))) return(character())
  commandArgs(trailingOnly = TRUE)
}

task_command <- function(flow, args) {
  status <- run_task_reporting_errors(flow, args)
  if (!interactive()) quit(save = "no", status = status)
  invisible(status)
}

# The graph spec sent to Python: everything but the functions, which stay in R.
flow_spec <- function(flow, script, package_suffixes = NULL) {
  steps <- lapply(unname(flow$steps), function(s) {
    list(name = s$step, `next` = as.list(s$next_step), join = s$join, foreach = s$foreach,
         decorators = lapply(s$decorators, unclass))
  })
  spec <- list(name = flow$name, script = script, parameters = flow$parameters,
               decorators = lapply(flow$decorators, unclass), steps = steps,
               package_suffixes = as.list(package_suffixes))
  as.character(jsonlite::toJSON(spec, auto_unbox = TRUE, null = "null", na = "null", digits = NA))
}

# The script that defines the flow: from Rscript's --file=, or from the source() call running it.
script_path <- function() {
  file_arg <- grep("^--file=", commandArgs(), value = TRUE)
  if (length(file_arg) && !interactive()) {
    return(normalizePath(sub("^--file=", "", file_arg[1])))
  }
  for (frame in rev(sys.frames())) {
    ofile <- get0("ofile", envir = frame, inherits = FALSE)
    if (is.character(ofile) && length(ofile) == 1 && file.exists(ofile)) return(normalizePath(ofile))
  }
  abort(c("{.fn run} cannot tell which script defines this flow.",
                   "i" = "Save the flow in a file and {.code source()} it, or run {.code Rscript flow.R run}."), "usage_error",
                 call = NULL)
}

rscript_path <- function() file.path(R.home("bin"), "Rscript")
