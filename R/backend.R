# The bridge to the Python backend (inst/python/metaflow_r), loaded once per R session, on first use.
# Tasks never load it: a task is plain R, which keeps each task's start-up cheap.

# The Python holding the backend, in the order ?install_metaflow documents; "" when none is found.
python_path <- function() {
  from_env <- Sys.getenv("METAFLOW_R_PYTHON")
  if (nzchar(from_env)) return(from_env)  # named explicitly: used (or said missing), never passed over
  recorded <- system.file("venv-python", package = "metaflow")  # configure's, when installed so
  # Each candidate only when the ones before it are missing: the last asks reticulate, which loads Matrix.
  candidates <- list(
    function() if (nzchar(recorded)) readLines(recorded, n = 1) else "",
    function() if (file.exists(remembered_python_file())) readLines(remembered_python_file(), n = 1) else "",
    function() file.path(virtualenv_path("r-metaflow"), "bin", "python")
  )
  for (candidate in candidates) {
    python <- candidate()
    if (nzchar(python) && file.exists(python)) return(python)
  }
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

install_advice <- c("i" = "Install it with {.code metaflow::install_metaflow()}.")

# The Python holding the backend, or an error saying how to install one.
installed_python <- function() {
  python <- python_path()
  if (!nzchar(python) || !file.exists(python)) {
    abort(c("The Python backend of {.pkg metaflow} is not installed.",
            "x" = if (nzchar(python)) "{.envvar METAFLOW_R_PYTHON} names {.file {python}}, which does not exist.",
            install_advice), "installation_error", call = NULL)
  }
  python
}

# The Python at `python` holds no backend (`found` FALSE) or one of another `version` than this package.
abort_backend_mismatch <- function(python, found, version, ...) {
  abort(c("The Python backend of {.pkg metaflow} at {.file {python}} is not this package's.",
          "x" = if (!found) "It has no {.code metaflow_r} module."
                else "It is version {version %||% 'unknown'}; this package is {backend_version()}.",
          install_advice, ...), "installation_error", call = NULL)
}

start_backend <- function() {
  python <- installed_python()
  Sys.setenv(RETICULATE_PYTHON = python)
  # Python's output goes through R's console, so sink(), capture.output() and knitr see it as R output.
  Sys.setenv(RETICULATE_REMAP_OUTPUT_STREAMS = "1")
  reticulate::use_python(python, required = TRUE)
  module <- tryCatch(reticulate::import("metaflow_r", convert = TRUE), error = function(e) NULL)
  version <- if (!is.null(module)) tryCatch(module$`__version__`, error = function(e) NULL)
  if (is.null(module) || !identical(version, backend_version())) {
    abort_backend_mismatch(python, !is.null(module), version, "i" = "Then restart R.")
  }
  the$backend <- module
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
