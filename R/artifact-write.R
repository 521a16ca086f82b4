# A task's write that failed for want of room: a full disk, or a file over the file size limit (`ulimit -f`).
#
# R says only "error writing to connection". Told here as the backend tells its own writes
# (inst/python/metaflow_r/core/write_failures.py), with the same condition classes and words: what was
# being written, where, and how to make room. The cause is read from what is left: the file at the limit
# (Linux's /proc/self/limits), or its disk (nearly) full. The half-written file is removed first, so nothing
# of it is read later, and so the task's error document fits where it did not.

# Below this much free space a failed write failed for want of room (core/write_failures.py's bound).
nearly_full_bytes <- 2^20

# Evaluates `expr`, which writes `path`; its failure for want of room becomes one error naming `what`, a
# cli template of the values in `...` ("artifact {.val {name}} of step {.val {step}}"). Any other error,
# the package's own among them, passes unchanged.
writing_file <- function(expr, path, what, ...) {
  values <- list(...)
  tryCatch(expr, error = function(e) {
    if (inherits(e, "metaflow_error")) stop(e)
    write_failed(e, path, what, values)
  })
}

write_failed <- function(e, path, what, values) {
  size <- file.size(path)
  limit <- file_size_limit()
  free <- free_bytes(dirname(path))
  unlink(c(path, paste0(path, ".part")))
  where <- list2env(c(values, list(path = path, limit = format(limit, big.mark = ",", scientific = FALSE))))
  # Outside a task (the command handed to the backend) no run has begun: nothing to resume.
  then <- if (is.null(the$task)) "then start the run again." else "then resume the run."
  if (!is.na(limit) && !is.na(size) && size >= limit) {
    abort(c(paste0(capitalise(what), " could not be written to {.file {path}}: it exceeds the file size limit ",
                   "(ulimit -f) of {limit} bytes."),
            "i" = paste("Raise the limit ({.code ulimit -f unlimited}, in the shell that starts the run) or store",
                        "the data in smaller artifacts;", then)),
          "file_too_large", call = NULL, parent = e, .envir = where)
  }
  if (!is.na(free) && free < nearly_full_bytes) {
    abort(c(paste0("The disk is full: ", what, " could not be written to {.file {path}}."),
            "i" = paste("Free some space on the disk holding the run's scratch area, or point {.envvar TMPDIR}",
                        "at a directory on a disk with room;", then)),
          "disk_full", call = NULL, parent = e, .envir = where)
  }
  stop(e)
}

# The soft file size limit in bytes, NA when there is none (or it cannot be read: not Linux).
file_size_limit <- function() {
  limits <- tryCatch(readLines("/proc/self/limits", warn = FALSE), condition = function(e) character())
  line <- grep("^Max file size", limits, value = TRUE)
  if (!length(line)) return(NA_real_)
  soft <- strsplit(trimws(sub("^Max file size", "", line[[1]])), "\\s+")[[1]][1]
  if (identical(soft, "unlimited")) NA_real_ else as.numeric(soft)
}

free_bytes <- function(directory) {
  tryCatch(as.numeric(ps::ps_disk_usage(directory)$available), error = function(e) NA_real_)
}

task_step <- function() the$task$step %||% "?"

capitalise <- function(text) paste0(toupper(substr(text, 1, 1)), substr(text, 2, nchar(text)))
