#' Run production offline: start and stop the AWS emulator
#'
#' `emulator_start()` starts the backend's offline AWS emulator (`metaflow-r emulator`): a moto server on
#' 127.0.0.1 whose Step Functions execute your deployed state machine and whose Batch runs each job as a
#' local R process, or, with `batch_runner = "container"`, in the job definition's image as AWS Batch
#' would (Docker or Podman; build the image with `make image`). It waits until the emulator is ready and
#' sets its settings (`AWS_ENDPOINT_URL`,
#' fake credentials, every `METAFLOW_*` variable) in this R session, so `run(step_functions = "create")`,
#' `run(step_functions = "trigger")` and the Client API talk to it. `emulator_stop()` stops it, with every
#' Batch job it is still running and what their steps started, and unsets them. Nothing leaves the machine.
#' Its state lives in memory: a stopped (or restarted) emulator has forgotten every deployment, execution
#' and S3 object.
#'
#' @param port The local port to listen on; `0` picks a free one.
#' @param env_file Where the emulator writes its settings as `export NAME=VALUE` lines, for a shell
#'   (`. file`).
#' @param timeout Seconds to wait for the emulator to be ready.
#' @param batch_runner `"local"` (each Batch job a local process) or `"container"` (each job in its image).
#' @param image The image deployed flows name (`METAFLOW_BATCH_CONTAINER_IMAGE`); with the container
#'   runner it must be a local image. Default: `metaflow-r:latest`, which `make image` tags.
#' @return `emulator_start()`: an emulator handle for `emulator_stop()`, with its `env` (the settings).
#' @examples
#' \dontrun{
#' emu <- emulator_start()
#' source("parameter_flow.R")  # a script ending in run(step_functions = "create")
#' emulator_stop(emu)
#' }
#' @export
emulator_start <- function(port = 5055L, env_file = tempfile("metaflow-emulator-", fileext = ".env"),
                           timeout = 60, batch_runner = c("local", "container"), image = NULL) {
  batch_runner <- match.arg(batch_runner)
  if (!is.null(image) && !(is.character(image) && length(image) == 1 && !is.na(image) && nzchar(image))) {
    abort(c("{.arg image} must be one image name, such as {.val metaflow-r:latest}.",
            "x" = "You supplied {.obj_type_friendly {image}}."), "usage_error")
  }
  here <- rlang::current_env()
  server <- backend("emulator.server")
  tryCatch(server$check_installed(), error = function(e) abort_backend_error(e, call = here))
  python <- python_path()
  command <- file.path(dirname(python), "metaflow-r")
  if (!file.exists(command)) {
    abort(c("The backend's {.code metaflow-r} command is not installed.",
            "x" = "{.file {command}} does not exist.",
            "i" = "Install the backend again: {.code metaflow::install_metaflow(emulator = TRUE)}."),
          "installation_error")
  }
  unlink(env_file)
  process <- processx::process$new(
    command, c("emulator", "--port", as.character(port), "--env-file", env_file, "--batch-runner", batch_runner,
               if (!is.null(image)) c("--image", image)),
    stdout = "|", stderr = "2>&1", cleanup = TRUE,
    env = c("current", LD_LIBRARY_PATH = python_library_path(python))  # its own libpython, not Debian's
  )
  deadline <- Sys.time() + timeout
  while (!file.exists(env_file)) {
    if (!process$is_alive() || Sys.time() > deadline) {
      output <- if (process$is_alive()) "" else process$read_all_output()
      process$kill()
      # The backend's own message names an image or engine problem and its fix; otherwise the port.
      hint <- if (!grepl("image|engine", output)) {
        c("i" = "Is the port in use? Try another: {.code emulator_start(port = 5056)}.")
      }
      abort(c("The AWS emulator did not start on port {port}.",
              "x" = if (nzchar(output)) output else "It was not ready after {timeout} s.", hint), "emulator_error")
    }
    Sys.sleep(0.1)
  }
  env <- unlist(server$read_env_file(env_file))
  do.call(Sys.setenv, as.list(env))
  cli::cli_alert_success(paste("AWS emulator running on {.url {env[['AWS_ENDPOINT_URL']]}};",
                               "its settings are set in this session."))
  cli::cli_alert_info("Its state is in memory only: {server$FORGETS}.")
  structure(list(process = process, env = env, env_file = env_file), class = "metaflow_emulator")
}

#' @rdname emulator_start
#' @param emulator The handle `emulator_start()` returned.
#' @export
emulator_stop <- function(emulator) {
  if (!inherits(emulator, "metaflow_emulator")) {
    abort("{.arg emulator} must be the handle {.fn emulator_start} returned.", "usage_error")
  }
  emulator$process$signal(15L)
  emulator$process$wait(30000)  # it stops its running Batch jobs first (a grace of seconds each, all at once)
  if (emulator$process$is_alive()) emulator$process$kill()
  Sys.unsetenv(names(emulator$env))
  cli::cli_alert_info("AWS emulator stopped.")
  invisible(emulator)
}
