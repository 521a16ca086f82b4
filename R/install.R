#' Install the Python backend
#'
#' @description
#' metaflow's runtime, deployer and Client API are a Python backend, which R reaches through reticulate.
#' `install_metaflow()` makes a Python virtual environment and installs into it the backend that ships
#' inside this R package, at this package's version. Run it once after installing or updating the
#' package; `library(metaflow)` then finds the backend by itself. No root is needed, nor any clone of the
#' project's repository: only a Python 3.10 or newer with its `venv` module, and the Python package
#' registry for the backend's dependencies.
#'
#' @details
#' `library(metaflow)` looks for the backend in this order: the Python named by the environment variable
#' `METAFLOW_R_PYTHON`; the one recorded when the package was installed with `METAFLOW_R_PYTHON` set (as
#' `make setup` does in a clone of the repository); the one `install_metaflow()` installed last; the
#' environment named `r-metaflow` among reticulate's virtual environments. A backend of another version
#' than the R package is refused, with the advice to run `install_metaflow()` again.
#'
#' @param envname Where the environment goes: a name, for one of reticulate's virtual environments (in
#'   [reticulate::virtualenv_root()]), or a path.
#' @param python The Python to make it with. By default, the first `python3` on the `PATH` that is 3.10 or
#'   newer.
#' @param emulator `TRUE` also installs what the offline AWS emulator ([emulator_start()]) needs.
#' @param force `TRUE` makes the environment anew even where one exists.
#' @return The path of the environment's Python, invisibly.
#' @examples
#' \dontrun{
#' install_metaflow()
#' install_metaflow(emulator = TRUE)                 # also the offline AWS emulator
#' install_metaflow(envname = "~/envs/metaflow")     # an environment at a path of your choice
#' }
#' @export
install_metaflow <- function(envname = "r-metaflow", python = NULL, emulator = FALSE, force = FALSE) {
  check_string(envname, "envname")
  if (!is.null(python)) check_string(python, "python")
  check_flag(emulator, "emulator", "usage_error")
  check_flag(force, "force", "usage_error")
  home <- virtualenv_path(envname)
  base <- python %||% find_base_python()
  if (force) unlink(home, recursive = TRUE)
  venv_python <- file.path(home, "bin", "python")
  if (!file.exists(venv_python)) {
    cli::cli_progress_step("Making a Python environment in {.path {home}}")
    run_or_abort(base, c("-m", "venv", home), "Python could not make an environment in {.path {home}}.")
  }
  cli::cli_progress_step("Installing the backend {backend_version()}{if (emulator) ' with the emulator'} into it")
  source <- file.path(tempfile("metaflow-backend-"), "python")
  dir.create(dirname(source))
  on.exit(unlink(dirname(source), recursive = TRUE), add = TRUE)
  # Built from a copy: pip writes its build files beside the sources, and a package library may be read-only.
  file.copy(system.file("python", package = "metaflow"), dirname(source), recursive = TRUE)
  processx::run(venv_python, c("-m", "pip", "uninstall", "--yes", "--quiet", "metaflow-r"), error_on_status = FALSE)
  run_or_abort(venv_python, c("-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                              paste0(source, if (emulator) "[emulator]")),
               "pip could not install the backend into {.path {home}}.")
  cli::cli_progress_done()
  remember_python(venv_python)
  cli::cli_alert_success("The metaflow backend {backend_version()} is installed in {.path {home}}.")
  if (!is.null(the$backend) && !identical(normalizePath(reticulate::py_config()$python), normalizePath(venv_python))) {
    cli::cli_alert_info("This R session already runs another Python: restart R to use the new backend.")
  }
  invisible(venv_python)
}

virtualenv_path <- function(envname) {
  if (grepl("[/\\\\~]", envname) || startsWith(envname, ".")) return(normalizePath(envname, mustWork = FALSE))
  file.path(normalizePath(reticulate::virtualenv_root(), mustWork = FALSE), envname)
}

# The first python3 on the PATH that can hold the backend.
find_base_python <- function(call = rlang::caller_env()) {
  for (name in c("python3", "python3.13", "python3.12", "python3.11", "python3.10", "python")) {
    found <- Sys.which(name)
    if (nzchar(found) && python_is_recent(found)) return(unname(found))
  }
  abort(c("No Python 3.10 or newer was found to install the metaflow backend with.",
          "i" = paste("Install Python 3.10 or newer with its {.code venv} module",
                      "(Debian, Ubuntu: {.code apt install python3-venv}),"),
          "i" = "or name one: {.code install_metaflow(python = \"/path/to/python3\")}."), "installation_error",
        call = call)
}

python_is_recent <- function(python) {
  said <- tryCatch(processx::run(python, c("-c", "import sys; print(sys.version_info >= (3, 10))"),
                                 error_on_status = FALSE, timeout = 30)$stdout, error = function(e) "")
  identical(trimws(said), "True")
}

run_or_abort <- function(command, args, problem, call = rlang::caller_env(), .envir = parent.frame()) {
  done <- processx::run(command, args, error_on_status = FALSE, stderr_to_stdout = TRUE)
  if (done$status != 0) {
    said <- utils::tail(strsplit(done$stdout, "\n", fixed = TRUE)[[1]], 12)
    abort(c(problem, "x" = cli_escape(paste(said, collapse = "\n"))), "installation_error", call = call,
          .envir = .envir)
  }
  invisible(done)
}

# Where install_metaflow() records the Python it installed, for library(metaflow) in later sessions.
remembered_python_file <- function() file.path(tools::R_user_dir("metaflow", "config"), "python")

remember_python <- function(python) {
  dir.create(dirname(remembered_python_file()), recursive = TRUE, showWarnings = FALSE)
  writeLines(python, remembered_python_file())
}

# The backend version this R package needs: its own.
backend_version <- function() as.character(utils::packageVersion("metaflow"))

check_string <- function(x, arg, call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    abort(c("{.arg {arg}} must be one non-empty string.", "x" = "You supplied {.obj_type_friendly {x}}."),
          "usage_error", call = call)
  }
}
