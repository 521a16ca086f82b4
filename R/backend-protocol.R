# The protocol between R and Python: document file names and shared constants, from the
# file the backend reads too (inst/python/metaflow_r/data/protocol.json). Each document's JSON Schema is
# beside it, in data/schemas/; Python checks every document against it.

protocol <- function() {
  if (is.null(the$protocol)) {
    the$protocol <- jsonlite::fromJSON(backend_data_file("protocol.json"), simplifyVector = TRUE)
  }
  the$protocol
}

protocol_file <- function(document) protocol()$files[[document]]

# A file shipped with the Python backend, shared by both languages.
backend_data_file <- function(...) {
  path <- system.file("python", "metaflow_r", "data", ..., package = "metaflow")
  if (!nzchar(path)) {
    # Not abort(): its classes come from one of these files.
    cli::cli_abort(c("The {.pkg metaflow} installation is incomplete: {.file {file.path(...)}} is missing.",
                     "i" = "Reinstall the package."), class = c("metaflow_installation_error", "metaflow_error"),
                   call = NULL)
  }
  path
}

# A document for Python, as JSON: vectors of length one become scalars unless wrapped in I(). R only warns
# when the disk refuses the end of a small file: a document cut short is an error, told as a full disk.
write_document <- function(document, path) {
  text <- jsonlite::toJSON(document, auto_unbox = TRUE, null = "null", digits = NA)
  writing_file({
    refused <- NULL
    withCallingHandlers(writeLines(text, path, useBytes = TRUE), warning = function(w) {
      refused <<- w
      invokeRestart("muffleWarning")  # once writeLines() has closed the file
    })
    if (!is.null(refused)) stop(conditionMessage(refused), call. = FALSE)
  }, path, paste0("the document {.file {file}}", if (!is.null(the$task)) " of step {.val {step}}"),
  file = basename(path), step = task_step())
}
