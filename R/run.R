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
#' @param package_suffixes Suffixes of files beside the script to put in the code package that
#'   `step_functions = "create"` uploads, e.g. `c(".R", ".csv")` or Metaflow's `".R,.csv"` (`.R` files
#'   always go in). The command line's `--package-suffixes=.R,.csv` adds to them.
#' @param metadata,batch Accepted for compatibility with Metaflow R scripts.
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
    args <- args_from_call(list(...), step_functions = step_functions, max_workers = max_workers,
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

# Runs one task; an R error becomes a message naming the step and status 1.
run_task_reporting_errors <- function(flow, args) {
  # Task output becomes log lines prefixed by the runtime: never wrap messages at the console width.
  old <- options(cli.width = 10000)
  on.exit({options(old); the$task <- NULL}, add = TRUE)
  tryCatch(run_task(flow, args), error = function(e) {
    step <- if (!is.null(the$task)) the$task$step else "?"
    cat(sprintf("Error in step '%s': %s\n", step, conditionMessage(e)), file = stderr())
    1L
  })
}

args_from_call <- function(params, step_functions = NULL, max_workers = NULL, with = NULL, resume = NULL,
                           show = FALSE, help = FALSE, datastore = NULL, metadata = NULL, batch = FALSE,
                           tags = NULL) {
  if (length(params) && (is.null(names(params)) || any(!nzchar(names(params))))) {
    cli::cli_abort(c("Parameter values given to {.fn run} must be named.", "i" = "For example {.code run(alpha = 0.5)}."))
  }
  if (!is.null(metadata) && !identical(metadata, "local")) {
    cli::cli_inform(c("i" = "{.arg metadata} = {.val {metadata}} is not used: run metadata lives in the datastore."))
  }
  if (isTRUE(batch)) {
    cli::cli_inform(c("i" = "{.arg batch} is not used: to run on AWS Batch, use {.code run(step_functions = \"create\")}."))
  }
  global <- c(unlist(lapply(with, function(w) c("--with", w))),
              if (!is.null(datastore)) c("--datastore", datastore))
  if (isTRUE(help)) return(c(global, "--help"))
  if (isTRUE(show)) return(c(global, "show"))
  if (!is.null(step_functions)) {
    command <- c("step-functions", step_functions)
  } else if (!is.null(resume)) {
    command <- c("resume", if (is.character(resume)) resume)
  } else {
    command <- "run"
  }
  c(global, command,
    if (!is.null(max_workers)) c("--max-workers", format(max_workers)),
    unlist(lapply(tags, function(t) c("--tag", t))),
    parameter_args(params))
}

parameter_args <- function(params) {
  unlist(lapply(names(params), function(name) {
    value <- params[[name]]
    if (is.logical(value) && length(value) == 1 && !is.na(value)) {
      return(if (value) paste0("--", name) else paste0("--no-", name))
    }
    c(paste0("--", name), paste(format(value, digits = 15, scientific = FALSE, trim = TRUE), collapse = ","))
  }))
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
  cli::cli_abort(c("{.fn run} cannot tell which script defines this flow.",
                   "i" = "Save the flow in a file and {.code source()} it, or run {.code Rscript flow.R run}."),
                 call = NULL)
}

rscript_path <- function() file.path(R.home("bin"), "Rscript")
