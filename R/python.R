# The bridge to the Python backend (inst/python/metaflow_r), loaded once per R session, on first use.
# Tasks never load it: a task is plain R, which keeps each task's start-up cheap.

python_path <- function() {
  from_env <- Sys.getenv("METAFLOW_R_PYTHON")
  if (nzchar(from_env)) return(from_env)
  recorded <- system.file("venv-python", package = "metaflow")
  if (nzchar(recorded)) return(readLines(recorded, n = 1))
  ""
}

backend <- function() {
  if (!is.null(the$backend)) return(the$backend)
  python <- python_path()
  if (!nzchar(python) || !file.exists(python)) {
    cli::cli_abort(c(
      "The Python backend of {.pkg metaflow} is not installed.",
      "x" = if (nzchar(python)) "{.file {python}} does not exist." else "No Python interpreter is recorded.",
      "i" = "Run {.code make setup} in the repository, or set {.envvar METAFLOW_R_PYTHON} to a Python with {.code metaflow_r} installed."
    ), call = NULL)
  }
  Sys.setenv(RETICULATE_PYTHON = python)
  reticulate::use_python(python, required = TRUE)
  the$backend <- reticulate::import("metaflow_r", convert = TRUE)
  the$backend
}
