# The bridge to the Python backend (inst/python/metaflow_r), loaded once per R session, on first use.
# Tasks never load it: a task is plain R, which keeps each task's start-up cheap.

python_path <- function() {
  from_env <- Sys.getenv("METAFLOW_R_PYTHON")
  if (nzchar(from_env)) return(from_env)
  recorded <- system.file("venv-python", package = "metaflow")
  if (nzchar(recorded)) return(readLines(recorded, n = 1))
  ""
}

# The backend's module `metaflow_r.<module>` (the package itself without one), e.g. backend("cli").
backend <- function(module = NULL) {
  if (is.null(the$backend)) start_backend()
  if (is.null(module)) return(the$backend)
  if (is.null(the$modules[[module]])) {
    the$modules[[module]] <- reticulate::import(paste0("metaflow_r.", module), convert = TRUE)
  }
  the$modules[[module]]
}

start_backend <- function() {
  python <- python_path()
  if (!nzchar(python) || !file.exists(python)) {
    abort(c(
      "The Python backend of {.pkg metaflow} is not installed.",
      "x" = if (nzchar(python)) "{.file {python}} does not exist." else "No Python interpreter is recorded.",
      "i" = "Run {.code make setup} in the repository, or set {.envvar METAFLOW_R_PYTHON} to a Python with {.code metaflow_r} installed."
    ), "installation_error", call = NULL)
  }
  Sys.setenv(RETICULATE_PYTHON = python)
  # Python's output goes through R's console, so sink(), capture.output() and knitr see it as R output.
  Sys.setenv(RETICULATE_REMAP_OUTPUT_STREAMS = "1")
  reticulate::use_python(python, required = TRUE)
  the$backend <- reticulate::import("metaflow_r", convert = TRUE)
  the$modules <- list()
  invisible(the$backend)
}

# Python copied the environment when it started; R's Sys.setenv() since then is invisible to it. The
# settings the backend depends on (METAFLOW_* and AWS_* variables, the user) are copied over before each
# call, so `Sys.setenv(METAFLOW_USER = ...)` or an emulator's settings apply mid-session.
sync_python_env <- function() {
  backend()  # Python must be the backend's before os is imported
  environ <- reticulate::import("os", convert = FALSE)$environ
  in_python <- reticulate::py_to_r(reticulate::import_builtins(convert = FALSE)$list(environ))
  names <- union(grep("^(METAFLOW|AWS)_", names(Sys.getenv()), value = TRUE),
                 grep("^(METAFLOW|AWS)_", unlist(in_python), value = TRUE))
  for (name in c(names, "USER", "USERNAME")) {
    value <- Sys.getenv(name, unset = NA)
    if (is.na(value)) {
      environ$pop(name, NULL)
    } else {
      environ$`__setitem__`(name, value)
    }
  }
  invisible()
}
