#' Run a flow
#'
#' The last call of a flow script. Under `Rscript flow.R <command> ...` it runs the command given on the
#' command line; called with its own arguments (`source("flow.R")` in RStudio, or `Rscript flow.R` with no
#' command) it builds the same command from them. Commands: `run` (the default), `show`, `resume`,
#' `step_functions = "create"` and `"trigger"`.
#'
#' Before a step runs on AWS Batch (`step_functions = "create"`, `with = "batch"`, or a step's
#' `decorator("batch")`), the R packages it uses are checked against those its image records, before any
#' AWS call: the packages its code names (`library()`, `require()`, `requireNamespace()`,
#' `loadNamespace()`, `pkg::f`, in its function and the script's functions it calls), those of the
#' script's top level, and those `decorator("packages")` declares. A missing one is a
#' `metaflow_missing_packages` error naming it and its steps; `Rscript flow.R image build` builds an image
#' that holds them.
#'
#' From R, a failure is an R error of class `metaflow_error` and a kind: a run that fails signals
#' `metaflow_run_failed` (with fields `run_id`, `step`, `pathspec`, the failing task's, which
#' [debug_task()] takes, `error_message`, the step's R error, and `status`; the same for a production run
#' followed with `wait = TRUE`), a graph error
#' `metaflow_graph_error`, a bad parameter value `metaflow_parameter_error`; catch them with
#' [tryCatch()]. Under `Rscript flow.R <command>`, a failure ends the process with its exit status.
#'
#' @param flow A flow from [metaflow()].
#' @param ... Parameter values, e.g. `alpha = 0.5`, checked against the flow's [parameter()]s.
#' @param step_functions `"create"` or `"trigger"` to deploy or start the flow on AWS Step Functions.
#' @param max_workers The most tasks run at once (default 16 locally).
#' @param with Decorators applied to every step, e.g. `"retry"`, or `"batch"` to run each step as an AWS
#'   Batch job (sized with Metaflow's syntax: `"batch:cpu=2,memory=8192"`).
#' @param resume A step name: resume the latest run from that step (`TRUE` for its failed step). Resuming
#'   from the failed step reuses the finished tasks of that step and of the steps after it too, where their
#'   code and inputs are unchanged; naming a step runs it and the steps after it again.
#' @param origin_run_id With `resume`: the run to resume (default: your latest), such as a production run's
#'   `"sfn-..."` id.
#' @param show If `TRUE`, print the graph instead of running.
#' @param help If `TRUE`, print the command-line help.
#' @param datastore `"local"` (default) or `"s3"`.
#' @param package_suffixes Suffixes of files beside the script to put in the code package that
#'   `step_functions = "create"` uploads, e.g. `c(".R", ".csv")` or Metaflow's `".R,.csv"` (`.R` files
#'   always go in). The command line's `--package-suffixes=.R,.csv` adds to them.
#' @param metadata Accepted for compatibility with Metaflow R scripts.
#' @param batch `TRUE` runs each step as an AWS Batch job, as Metaflow R's `run(batch = TRUE)`: the same
#'   as `with = "batch"`. The run stays local (its graph walk, retries, resume), its artifacts are in S3.
#' @param tags Tags added to the run.
#' @param seed The run's seed (a whole number from 1 to 2147483646), winning over [metaflow()]'s: each task
#'   draws from its own random-number stream derived from it, so the same seed gives the same draws (with
#'   `step_functions = "trigger"`, the production run's seed, as `trigger --seed`). In a
#'   flow with a [parameter()] named `seed`, `seed =` (and `--seed`) is that parameter's value instead, and
#'   the run's seed comes from [metaflow()]'s.
#' @param wait With `step_functions = "trigger"`: follow the run until it ends, printing how each step
#'   stands, and return it as a [run_client] (a failed run is a `metaflow_run_failed` error).
#' @return `0` invisibly after a local run, `show` or `help`. With `step_functions = "create"`, the
#'   deployment (state machine, production namespace, schedule) invisibly; with `"trigger"`, the started
#'   run (its `run_id` and `namespace`), or with `wait = TRUE` a [run_client] of it.
#' @examples
#' \dontrun{
#' metaflow("ParameterFlow") %>%
#'   parameter("alpha", default = 0.1) %>%
#'   step(step = "start", r_function = function(self) print(self$alpha), next_step = "end") %>%
#'   step(step = "end") %>%
#'   run(alpha = 0.5)
#'
#' # In a script that source()s a flow ending in run(step_functions = "trigger", wait = TRUE):
#' prod_run <- source("parameter_flow.R")$value
#' prod_run$artifact("alpha")
#' }
#' @export
run <- function(flow, ..., step_functions = NULL, max_workers = NULL, with = NULL, resume = NULL,
                show = FALSE, help = FALSE, datastore = NULL, metadata = NULL, package_suffixes = NULL,
                batch = FALSE, tags = NULL, wait = FALSE, seed = NULL, origin_run_id = NULL) {
  the$ran <- TRUE  # first: an error below is run()'s own, not a script that never reached run()
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
  args <- script_args()
  if (identical(args[1], "task")) {
    return(task_command(flow, args))
  }
  if (identical(args[1], "worker")) {
    return(invisible(run_worker(flow)))
  }
  # Called with its own arguments, run() answers as an R function: R errors, R objects, R hints.
  from_call <- !length(args)
  if (from_call) {
    args <- args_from_call(params, flow, step_functions = step_functions, max_workers = max_workers,
                           with = with, resume = resume, show = show, help = help, datastore = datastore,
                           metadata = metadata, batch = batch, tags = tags, wait = wait, seed = seed,
                           origin_run_id = origin_run_id)
  }
  spec <- flow_spec(flow, script_path(), package_suffixes)
  info <- list(launch_dir = getwd(), rscript = rscript_path(), r_session = from_call,
               versions = list(R = R.version.string, metaflow = as.character(utils::packageVersion("metaflow"))))
  if (!from_call) {
    status <- run_backend_process(args, spec, info, flow)
    if (status != 0L) quit(save = "no", status = status)
    return(invisible(status))
  }
  cli_module <- backend("cli")
  sync_python_env()
  status <- as.integer(cli_module$main(as.list(args), spec, info))
  interrupted_status <- as.integer(cli_module$INTERRUPTED_EXIT)
  outcome <- cli_module$last_outcome()
  if (!is.null(outcome$error)) abort_backend_error(outcome$error, call = rlang::current_call())
  if (status == interrupted_status) rlang::interrupt()  # Ctrl-C outside a run: R's own interrupt
  run_result(outcome$result, status)
}

# What run() returns in R for what the command made.
run_result <- function(result, status) {
  kind <- result$kind %||% ""
  if (kind == "deployment") {
    return(invisible(structure(result[c("flow", "state_machine_arn", "namespace", "schedule")],
                               class = "metaflow_deployment")))
  }
  if (kind == "triggered") {
    if (isTRUE(result$waited)) {
      return(with_namespace(result$namespace, run_client$new(result$flow, result$run_id)))
    }
    return(structure(result[c("flow", "run_id", "namespace")], class = "metaflow_triggered_run"))
  }
  invisible(status)
}

#' @export
print.metaflow_deployment <- function(x, ...) {
  cat(sprintf("<metaflow deployment> %s on AWS Step Functions\n", x$flow))
  cat(sprintf("  state machine: %s\n  namespace:     %s\n  schedule:      %s\n", x$state_machine_arn,
              x$namespace, x$schedule %||% "none (trigger it to run)"))
  invisible(x)
}

#' @export
print.metaflow_triggered_run <- function(x, ...) {
  cat(sprintf("<metaflow run> %s/%s on AWS Step Functions, in namespace %s\n", x$flow, x$run_id, x$namespace))
  cat(sprintf("  read it when it ends: with_namespace(\"%s\", run_client$new(\"%s/%s\"))\n", x$namespace,
              x$flow, x$run_id))
  invisible(x)
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
  packages <- flow_packages(flow, script)
  steps <- lapply(unname(flow$steps), function(s) {
    list(name = s$step, `next` = as.list(s$next_step), join = s$join, foreach = s$foreach,
         decorators = lapply(s$decorators, unclass), code_hash = step_code_hash(s$r_function),
         packages = as.list(packages$steps[[s$step]]))
  })
  spec <- list(name = flow$name, script = script, parameters = flow$parameters,
               decorators = lapply(flow$decorators, unclass), steps = steps,
               package_suffixes = as.list(package_suffixes), seed = flow$seed, packages = as.list(packages$script))
  as.character(jsonlite::toJSON(spec, auto_unbox = TRUE, null = "null", na = "null", digits = NA))
}

# The script that defines the flow: from Rscript's --file=, or from the source() call running it.
script_path <- function() {
  # The file holding the flow is the innermost source() that reached run(), not the script that called
  # it: workers and Batch jobs run that file, and a driver script must not run again in each of them.
  for (frame in rev(sys.frames())) {
    ofile <- get0("ofile", envir = frame, inherits = FALSE)
    if (is.character(ofile) && length(ofile) == 1 && file.exists(ofile)) return(normalizePath(ofile))
  }
  file_arg <- grep("^--file=", commandArgs(), value = TRUE)
  if (length(file_arg) && !interactive()) {
    # Rscript writes each space of the script's path as "~+~".
    return(normalizePath(gsub("~+~", " ", sub("^--file=", "", file_arg[1]), fixed = TRUE)))
  }
  NULL  # a flow built in the console: commands that need its file say so (show does not)
}

rscript_path <- function() file.path(R.home("bin"), "Rscript")
