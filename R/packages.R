# The R packages a flow needs where its tasks run, found in its code as renv finds a project's: the parsed
# code is walked (never its text) for library(x), require(x), requireNamespace("x"), loadNamespace("x"),
# x::f and x:::f. Per step: its function and the flow's own functions it reaches (as its code hash,
# step-hash.R), plus what decorator("packages") declares; and the script's top level, which every task runs
# when it sources the script. The backend checks them against the Batch image before any AWS call
# (aws/batch/image_packages.py), so a package missing there is named at `create`, not in a job's log.

# Packages of R's base priority: every R has them. Recommended ones (MASS, lattice, ...) are not listed:
# Debian's r-base-core, which the image is built from, holds none of them.
base_r_packages <- c("base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods", "parallel",
                     "splines", "stats", "stats4", "tcltk", "tools", "utils")

# The packages of a flow: `script`, those its top level uses; `steps`, each step's (named by step).
flow_packages <- function(flow, script = NULL) {
  steps <- lapply(flow$steps, function(s) {
    declared <- unlist(lapply(s$decorators, function(d) if (identical(d$name, "packages")) d$attributes$packages))
    needed_packages(c(function_packages(s$r_function), declared))
  })
  list(script = needed_packages(script_packages(script)), steps = steps)
}

# Sorted, once each, without R's base packages and metaflow itself (the image always has them).
needed_packages <- function(packages) {
  packages <- unique(as.character(packages))
  sort(packages[grepl(rules()$package_name$pattern, packages) & !packages %in% c(base_r_packages, "metaflow")])
}

# A step function's packages and those of the flow's own functions it calls.
function_packages <- function(fn) {
  if (!is.function(fn) || is.primitive(fn)) return(character())
  functions <- c(list(fn), flow_functions_reached(fn, list()))
  unlist(lapply(functions, function(f) c(code_packages(formals(f)), code_packages(body(f)))))
}

# The packages a script's top-level code uses (each task sources the script, so every task needs them),
# and those of the files it source()s by a literal path beside it. Function definitions are left out:
# their code runs only when called, and a step's calls are counted with the step.
script_packages <- function(script, seen = character()) {
  if (is.null(script) || !file.exists(script) || script %in% seen) return(character())
  exprs <- tryCatch(parse(script, keep.source = FALSE), error = function(e) NULL)
  sourced <- unlist(lapply(exprs, sourced_files, directory = dirname(script)))
  c(unlist(lapply(exprs, code_packages, functions = FALSE)),
    unlist(lapply(sourced, script_packages, seen = c(seen, script))))
}

# The files `expr` source()s by a literal path, made absolute against the script's directory.
sourced_files <- function(expr, directory) {
  if (!is.call(expr) || !rlang::is_call(expr, "source", ns = c("", "base"))) return(character())
  file <- expr[[2]]
  if (!is.character(file) || length(file) != 1) return(character())
  path <- if (grepl("^(/|~)", file)) path.expand(file) else file.path(directory, file)
  if (file.exists(path)) normalizePath(path) else character()
}

# Every package `expr` (a call, a function's body or its formals) names; with `functions = FALSE` the
# bodies of function definitions inside it are left out.
code_packages <- function(expr, functions = TRUE) {
  if (is.pairlist(expr) || is.expression(expr) || is.list(expr)) {
    return(unlist(lapply(seq_along(expr), function(i) {
      if (is.call(expr[[i]]) || is.pairlist(expr[[i]])) code_packages(expr[[i]], functions)
    })))
  }
  if (!is.call(expr)) return(character())
  if (!functions && identical(expr[[1]], as.name("function"))) return(character())
  parts <- unlist(lapply(seq_along(expr), function(i) {
    if (is.call(expr[[i]]) || (i > 1 && is.pairlist(expr[[i]]))) code_packages(expr[[i]], functions)
  }))
  c(call_package(expr), parts)
}

# The package one call names: x::f, x:::f, library(x), require(x), requireNamespace("x"), loadNamespace("x").
call_package <- function(call) {
  head <- call[[1]]
  if (rlang::is_call(call, c("::", ":::"))) return(symbol_or_string(call[[2]]))
  if (rlang::is_call(head, c("::", ":::")) && rlang::is_symbol(head[[2]], "base")) head <- head[[3]]
  if (!rlang::is_symbol(head)) return(NULL)
  name <- as.character(head)
  attaching <- name %in% c("library", "require")
  if (!attaching && !name %in% c("requireNamespace", "loadNamespace")) return(NULL)
  definition <- switch(name, library = base::library, require = base::require,
                       requireNamespace = base::requireNamespace, loadNamespace = base::loadNamespace)
  matched <- tryCatch(match.call(definition, call), error = function(e) NULL)
  package <- if (!is.null(matched)) matched$package
  # library(x) takes x as a name unless character.only = TRUE; a name then is a variable, unknown here.
  if (attaching && !isTRUE(matched$character.only)) return(symbol_or_string(package))
  if (is.character(package) && length(package) == 1) package
}

symbol_or_string <- function(x) {
  if (rlang::is_symbol(x)) return(as.character(x))
  if (is.character(x) && length(x) == 1) x
}
