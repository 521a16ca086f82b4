# What an artifact may not hold: a link to memory of the R process that made it.
#
# An artifact is read back by another process. A connection is a number into this process's table of
# connections, and an external pointer an address in its memory: saved, the first would write into
# whatever connection has that number there, the second comes back as `<pointer: (nil)>`. Such an
# artifact is refused at the end of the step that stores it, as Metaflow refuses what it cannot pickle.

# Stores `value` at `path` (write_artifact()); refuses it, naming the artifact, if it holds such a link.
save_portable_artifact <- function(name, value, path) {
  pointers <- 0L
  # R's serializer hands every external pointer (and environment) it meets to the hook: no extra pass.
  write_artifact(value, path, name, refhook = function(x) {
    if (typeof(x) == "externalptr") pointers <<- pointers + 1L
    NULL  # serialise it as usual
  })
  where <- if (pointers > 0L) process_bound_part(value, name, new.env())
  if (is.null(where)) return(invisible())
  unlink(path)
  abort(c(paste("Artifact {.val {name}} cannot be stored: {.code {where$path}} is {where$kind},",
                "which only this R process can use."),
          "x" = "Saved, it would mean another connection or nothing at all in the step that reads it.",
          "i" = paste("Store what it stands for instead (a file's path, a model's parameters), and open or build",
                      "it again in the step that uses it.")),
        "artifact_error", call = NULL)
}

# The first part of `value` that is a connection or an external pointer, as list(path, kind), or NULL.
# data.table's own pointer (.internal.selfref) is rebuilt by data.table after reading: it is not one.
process_bound_part <- function(value, path, seen) {
  if (inherits(value, "connection")) return(list(path = path, kind = "a connection"))
  if (typeof(value) == "externalptr") return(list(path = path, kind = "an external pointer (a C object's address)"))
  parts <- portable_parts(value, path, seen)
  for (i in seq_along(parts)) {
    found <- process_bound_part(parts[[i]], names(parts)[[i]], seen)
    if (!is.null(found)) return(found)
  }
  NULL
}

# The parts of `value` the serializer writes, named by how a user would reach them.
portable_parts <- function(value, path, seen) {
  attrs <- as.list(attributes(value))
  attrs <- attrs[setdiff(names(attrs), ".internal.selfref")]
  parts <- stats::setNames(attrs, sprintf("attr(%s, \"%s\")", path, names(attrs)))
  if (is.function(value) && !is.primitive(value)) {
    parts <- c(parts, stats::setNames(list(environment(value)), sprintf("environment(%s)", path)))
  } else if (is.environment(value) && !visited_environment(value, seen)) {
    names <- ls(value, all.names = TRUE)
    parts <- c(parts, stats::setNames(mget(names, envir = value), sprintf("%s$%s", path, names)))
  } else if (is.list(value)) {
    labels <- names(value) %||% rep("", length(value))
    labels <- ifelse(nzchar(labels), sprintf("%s$%s", path, labels), sprintf("%s[[%d]]", path, seq_along(value)))
    parts <- c(parts, stats::setNames(as.list(value), labels))
  }
  parts
}

# Whether to skip an environment: one serialised by name (global, a namespace, a package), or seen before.
visited_environment <- function(env, seen) {
  if (identical(env, globalenv()) || identical(env, emptyenv()) || identical(env, baseenv()) ||
        isNamespace(env) || !is.null(attr(env, "name"))) {
    return(TRUE)
  }
  key <- format(env)  # "<environment: 0x...>": unique while the environment lives
  if (exists(key, envir = seen, inherits = FALSE)) return(TRUE)
  assign(key, TRUE, envir = seen)
  FALSE
}
