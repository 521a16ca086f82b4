# `self`, the object a step function reads and writes artifacts through.
#
# It is an environment (so `self$x <- 1` inside a step function changes the caller's object) holding:
#   .values  artifacts read or assigned during this task
#   .dirty   names assigned during this task (only these are serialised again)
#   .refs    inherited artifacts not yet read: name -> list(sha, path); read lazily on first access
#   .ctx     the task context: step name, parameter names, foreach stack
#   .read_only TRUE for the inputs of a join

new_self <- function(ctx, refs, read_only = FALSE) {
  self <- new.env(parent = emptyenv())
  self$.values <- new.env(parent = emptyenv())
  self$.dirty <- character()
  self$.refs <- refs
  self$.ctx <- ctx
  self$.read_only <- read_only
  class(self) <- "metaflow_self"
  self
}

self_state <- function(self, name) get(name, envir = self, inherits = FALSE)

#' @export
`$.metaflow_self` <- function(x, name) self_get(x, name)

#' @export
`[[.metaflow_self` <- function(x, i, ...) self_get(x, i)

#' @export
`$<-.metaflow_self` <- function(x, name, value) self_set(x, name, value)  # nolint: object_name_linter

#' @export
`[[<-.metaflow_self` <- function(x, i, value) self_set(x, i, value)

#' @export
names.metaflow_self <- function(x) {
  sort(union(ls(self_state(x, ".values")), names(self_state(x, ".refs"))))
}

#' @export
print.metaflow_self <- function(x, ...) {
  ctx <- self_state(x, ".ctx")
  cat(sprintf("<metaflow self: %s/%s/%s> artifacts: %s\n", ctx$run_id, ctx$step, ctx$task_id,
              paste(names(x), collapse = ", ")))
  invisible(x)
}

self_has <- function(self, name) {
  exists(name, envir = self_state(self, ".values"), inherits = FALSE) ||
    name %in% names(self_state(self, ".refs"))
}

self_get <- function(self, name) {
  switch(name,
    input = return(foreach_frame_value(top_foreach_frame(self, "input"))),
    index = return(top_foreach_frame(self, "index")$index),
    foreach_stack = return(function() foreach_stack(self)),
    NULL
  )
  values <- self_state(self, ".values")
  if (exists(name, envir = values, inherits = FALSE)) {
    return(get(name, envir = values, inherits = FALSE))
  }
  ref <- self_state(self, ".refs")[[name]]
  if (is.null(ref)) {
    ctx <- self_state(self, ".ctx")
    hint <- if (!is.null(ctx$join) && !self_state(self, ".read_only")) {
      "A join sees its inputs' artifacts only through {.arg inputs} or after {.fn merge_artifacts}."
    } else {
      "Set it in an earlier step with {.code self${name} <- ...}."
    }
    abort(c("Step {.val {ctx$step}}: 'self' has no attribute '{name}'.", "i" = hint), "attribute_error", call = NULL)
  }
  value <- read_artifact(ref$path, name)
  assign(name, value, envir = values)
  value
}

self_set <- function(self, name, value) {
  ctx <- self_state(self, ".ctx")
  if (self_state(self, ".read_only")) {
    abort(c("AttributeError: the inputs of a join are read-only (tried to set {.val {name}}).",
                     "i" = "Set artifacts on {.arg self}, not on {.arg inputs}."), "attribute_error", call = NULL)
  }
  if (name %in% ctx$parameter_names) {
    abort(c("AttributeError: {.val {name}} is a parameter and cannot be assigned in step {.val {ctx$step}}.",
                     "i" = "Store a derived value under another name."), "attribute_error", call = NULL)
  }
  if (name %in% reserved_names() || startsWith(name, ".")) {
    abort(c("AttributeError: {.val {name}} is a reserved name and cannot be assigned.",
                     "i" = "Reserved names: {.val {reserved_names()}}."), "attribute_error", call = NULL)
  }
  self_store(self, name, value)
}

# Keep a value as an artifact of this task: it will be serialised when the task ends.
self_store <- function(self, name, value) {
  assign(name, value, envir = self_state(self, ".values"))
  assign(".dirty", union(self_state(self, ".dirty"), name), envir = self)
  self
}

# The artifacts a task saves: assigned values are new files, everything else keeps its content hash.
self_outputs <- function(self, output_dir) {
  values <- self_state(self, ".values")
  dirty <- self_state(self, ".dirty")
  refs <- self_state(self, ".refs")
  out <- structure(lapply(refs, function(ref) list(sha = ref$sha)), names = as.character(names(refs)))
  for (i in seq_along(dirty)) {
    file <- sprintf("artifact-%d.rds", i)
    value <- get(dirty[[i]], envir = values)
    save_portable_artifact(dirty[[i]], value, file.path(output_dir, file))
    out[[dirty[[i]]]] <- list(file = file, type = class(value)[1], preview = artifact_preview(value))
  }
  out
}

# A short, one-line view of an artifact for reports and listings: what str() shows first.
artifact_preview <- function(value) {
  text <- scalar_preview(value) %||% tryCatch(
    utils::capture.output(utils::str(value, max.level = 1, vec.len = 3, nchar.max = 60, list.len = 5,
                                     give.attr = FALSE, give.head = TRUE)),
    error = function(e) character()
  )
  text <- gsub("\\s+", " ", trimws(paste(text, collapse = " ")))
  if (nchar(text) > 200) paste0(substr(text, 1, 197), "...") else enc2utf8(text)
}

# str() costs half a millisecond, most of a small artifact's whole cost; a task's many artifacts are mostly
# plain scalars, which this writes as str() does. NULL for anything else.
scalar_preview <- function(value) {
  if (length(value) != 1 || !is.null(attributes(value))) return(NULL)
  switch(typeof(value),
    logical = paste("logi", value),
    integer = paste("int", value),
    double = paste("num", format(value, digits = 3, drop0trailing = TRUE)),
    character = if (is.na(value) || (nchar(value, "bytes") <= 50 && !grepl("[^ -~]", value))) {
      paste("chr", encodeString(value, quote = '"', na.encode = FALSE))
    }
  )
}

foreach_frames <- function(self) {
  Filter(function(f) identical(f$kind, "foreach"), self_state(self, ".ctx")$split_stack)
}

top_foreach_frame <- function(self, what) {
  frames <- foreach_frames(self)
  if (!length(frames)) {
    abort(c("Step {.val {self_state(self, '.ctx')$step}}: 'self' has no attribute '{what}'.",
            "i" = "{.code self${what}} exists only in steps that run inside a foreach."),
          "attribute_error", call = NULL)
  }
  frames[[length(frames)]]
}

# A foreach frame's value: one element of the split artifact, read once per task (the file can be big).
foreach_frame_value <- function(frame) {
  key <- paste(frame$var_path, frame$index)
  if (is.null(frame_values[[key]])) {
    frame_values[[key]] <- list(read_artifact(frame$var_path)[[frame$index + 1]])
  }
  frame_values[[key]][[1]]
}
frame_values <- new.env(parent = emptyenv())

foreach_stack <- function(self) {
  lapply(foreach_frames(self), function(frame) {
    list(index = frame$index, num_splits = frame$num_splits, value = foreach_frame_value(frame))
  })
}
