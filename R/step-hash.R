# A step's code as resume compares it (inst/python/metaflow_r/runtime/resume.py): its function and every
# function of the flow's own code it reaches, directly or through one another (helpers defined in the
# script or the .R files it sources; functions of installed packages are their versions' business), each
# deparsed without its source reference so that comments and layout do not count, then hashed.
step_code_hash <- function(fn) {
  if (!is.function(fn)) return(NULL)
  reached <- flow_functions_reached(fn, list())
  code <- vapply(c(list(fn), reached[sort(names(reached))]),
                 function(f) paste(deparse(utils::removeSource(f)), collapse = "\n"), "")
  rlang::hash(c(names(code), code))
}

flow_functions_reached <- function(fn, reached) {
  env <- environment(fn) %||% globalenv()
  for (name in setdiff(all.names(body(fn)), names(reached))) {
    if (!exists(name, envir = env, mode = "function")) next
    found <- get(name, envir = env, mode = "function")
    if (is.primitive(found) || isNamespace(topenv(environment(found)))) next
    reached[[name]] <- found
    reached <- flow_functions_reached(found, reached)
  }
  reached
}
