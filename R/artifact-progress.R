# Progress of storing or loading a large artifact: a line when it starts and one when it ends, on stderr
# (a task's log, or the R console), so that seconds spent on a big object are never silent. Smaller
# artifacts print nothing. METAFLOW_R_PROGRESS_BYTES sets the size from which lines are printed.

progress_min_bytes <- function() {
  setting <- Sys.getenv("METAFLOW_R_PROGRESS_BYTES")
  bytes <- if (nzchar(setting)) suppressWarnings(as.numeric(setting)) else NA  # suppressWarnings() is slow
  if (is.na(bytes)) 100e6 else bytes
}

# Says that `verb` (Storing, Loading) of artifact `name` began; returns the function that says it ended.
artifact_progress <- function(verb, name, bytes) {
  if (is.na(bytes) || bytes < progress_min_bytes()) return(no_progress)
  started <- Sys.time()
  message(sprintf("%s artifact '%s' (%s)...", verb, name, format_bytes(bytes)))
  function(stored_bytes = bytes, how = NULL) {
    seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
    message(sprintf("%s artifact '%s' took %.1f s (%s%s)", verb, name, seconds, format_bytes(stored_bytes),
                    if (is.null(how)) "" else paste(",", how)))
  }
}

no_progress <- function(...) invisible()

format_bytes <- function(bytes) format(structure(bytes, class = "object_size"), units = "auto", standard = "SI")
