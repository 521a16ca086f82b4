# The Client API's namespace: which runs flow_client and friends can see. A package-level setting, kept in
# `the$namespace` once set_namespace() was called; until then the default, `user:<you>`.

#' Choose which runs the Client API sees
#'
#' Every run is tagged with the namespace it ran in: a local run with `user:<name>` (the name comes from
#' `METAFLOW_USER`, else `USER`, else `USERNAME`, else the login name), a production run with
#' `production:<token>`. The Client API shows only the runs of the current namespace: by default your own,
#' `user:<you>`. `set_namespace("user:someone")` switches to someone else's runs; `set_namespace(NULL)`
#' sees every run; `set_default_namespace()` goes back to your own.
#'
#' Asking for a run outside the current namespace, with [run_client] or a step or task of it, is an error
#' that names the namespace; flows' `runs`, `latest_run` and `latest_successful_run` skip such runs.
#'
#' @param ns A namespace such as `"user:alice"` or `"production:myflow-0-abcd"` (any tag works), or
#'   `NULL` for every namespace.
#' @return `set_namespace()` and `set_default_namespace()` return the previous namespace, invisibly, so it
#'   can be restored. `get_namespace()` returns the current namespace, `NULL` meaning every namespace.
#' @examples
#' \dontrun{
#' get_namespace()                 # "user:alice"
#' old <- set_namespace(NULL)      # see everyone's runs
#' flow_client$new("BranchFlow")$runs
#' set_namespace(old)
#' set_default_namespace()
#' }
#' @export
set_namespace <- function(ns = NULL) {
  if (!is.null(ns) && (!is.character(ns) || length(ns) != 1 || is.na(ns) || !nzchar(ns))) {
    abort(c("{.arg ns} must be a namespace such as {.val user:alice}, or {.code NULL} for every namespace.",
                     "x" = "You supplied {.obj_type_friendly {ns}}."), "usage_error")
  }
  old <- get_namespace()
  the$namespace <- list(ns = ns)
  invisible(old)
}

#' @rdname set_namespace
#' @export
get_namespace <- function() {
  if (is.null(the$namespace)) default_namespace() else the$namespace$ns
}

#' @rdname set_namespace
#' @export
set_default_namespace <- function() {
  old <- get_namespace()
  the$namespace <- NULL
  invisible(old)
}

#' Work in another namespace for a while, or find a flow's production namespace
#'
#' `with_namespace()` evaluates `code` with the Client API's namespace set to `ns` (see [set_namespace()])
#' and puts the previous one back afterwards. `production_namespace()` is the namespace a flow deployed with
#' `step_functions = "create"` runs in, `production:<token>`, read from its deployment record in the S3
#' datastore (`METAFLOW_DATASTORE_SYSROOT_S3`).
#'
#' @param ns A namespace, or `NULL` for every namespace.
#' @param code Code to evaluate in it.
#' @param flow A flow from [metaflow()] or a flow's name.
#' @return `with_namespace()`: the value of `code`. `production_namespace()`: the namespace, a string.
#' @examples
#' \dontrun{
#' set_namespace(production_namespace("ParameterFlow"))
#' flow_client$new("ParameterFlow")$latest_run
#' with_namespace(NULL, flow_client$new("ParameterFlow")$runs)
#' }
#' @export
with_namespace <- function(ns, code) {
  old <- set_namespace(ns)
  on.exit(set_namespace(old), add = TRUE)
  force(code)
}

#' @rdname with_namespace
#' @export
production_namespace <- function(flow) {
  name <- if (inherits(flow, "metaflow_flow")) flow$name else check_flow_name(flow, "flow")
  client_query("production_namespace", name)
}

# `user:<name>`, the namespace local runs are tagged with: the user as the backend's current_user() sees it.
default_namespace <- function() {
  config <- backend("core.config")
  sync_python_env()
  paste0("user:", config$current_user())
}

# The error for a namespace's empty view, naming the namespace and the way out.
namespace_hint <- function() {
  ns <- get_namespace()
  if (is.null(ns)) return(character())
  c("i" = paste0("Only runs in namespace {.val ", cli_escape(ns), "} are visible; ",
                 "{.code set_namespace(NULL)} shows every namespace."))
}
