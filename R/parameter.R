#' Add a parameter to a flow
#'
#' Parameters are read-only inputs of a run, readable in every step as `self$<name>`. On the command line
#' they become options: `Rscript flow.R run --alpha 0.5`; from R, `run(alpha = 0.5)`.
#'
#' @param flow A flow from [metaflow()].
#' @param name The parameter's name; also its command-line option `--name`.
#' @param help Help text shown by `Rscript flow.R run --help`.
#' @param default The value used when none is given.
#' @param type One of `"str"`, `"int"`, `"float"`, `"bool"` (R's `"character"`, `"integer"`,
#'   `"numeric"`, `"logical"` work too). Inferred from `default` when `NULL`, as R types it: `default = 5`
#'   is numeric (a step reads `5`, and `--n_folds 2.5` is accepted), `default = 5L` is an integer (then
#'   `--n_folds 2.5` is refused); write `5L` or `type = "integer"` for a count such as a number of folds.
#' @param required If `TRUE`, a run without a value fails before anything starts.
#' @param is_flag If `TRUE`, the option takes no value: `--name` sets it to `TRUE`.
#' @param separator If set, a string value is split on it into a character vector.
#' @return The flow, with the parameter added.
#' @examples
#' metaflow("ParameterFlow") %>%
#'   parameter("alpha", help = "learning rate", default = 0.1)
#' @export
parameter <- function(flow, name, help = NULL, default = NULL, type = NULL, required = FALSE,
                      is_flag = FALSE, separator = NULL) {
  check_flow(flow)
  check_name(name, "name", "parameter_error")
  if (name %in% reserved_parameter_names()) {
    abort(c("Parameter name {.val {name}} is reserved.", "i" = reserved_why(name), "i" = "Choose another name."),
          "parameter_error")
  }
  if (name %in% vapply(flow$parameters, `[[`, "", "name")) {
    abort(c("Parameter {.val {name}} is defined twice.", "i" = "Give every parameter a distinct name."),
          "parameter_error")
  }
  check_flag(required, "required", "parameter_error")
  check_flag(is_flag, "is_flag", "parameter_error")
  if (!is.null(help) && !(is.character(help) && length(help) == 1)) {
    abort("{.arg help} must be a single string, not {.obj_type_friendly {help}}.", "parameter_error")
  }
  if (!is.null(separator) && !(is.character(separator) && length(separator) == 1 && nzchar(separator))) {
    abort("{.arg separator} must be a non-empty string, not {.obj_type_friendly {separator}}.", "parameter_error")
  }
  if (is.double(default) && any(is.nan(default) | is.infinite(default))) {
    abort(c("{.arg default} of parameter {.val {name}} must be a finite number.",
            "x" = "You supplied {.val {default}}.", "i" = "NaN and infinite values cannot reach a step exactly."),
          "parameter_error")
  }
  if (!is.null(default) && !(is.atomic(default) && length(default) >= 1 && !anyNA(default))) {
    abort(c("{.arg default} of parameter {.val {name}} must be a string, number or logical.",
            "x" = "You supplied {.obj_type_friendly {default}}."), "parameter_error")
  }
  type <- parameter_type(type, default, is_flag, name)
  if (!is.null(default) && length(default) > 1) {
    if (is.null(separator)) {
      abort(c("{.arg default} of parameter {.val {name}} has {length(default)} values.",
              "i" = "Give a single value, or set {.arg separator} for a list-valued parameter."), "parameter_error")
    }
    default <- paste(default, collapse = separator)
  }
  flow$parameters[[length(flow$parameters) + 1]] <- list(
    name = name, help = help, default = default, type = type, required = required,
    is_flag = is_flag, separator = separator
  )
  flow
}

parameter_type <- function(type, default, is_flag, name, call = rlang::caller_env()) {
  if (is_flag) {
    return("bool")
  }
  if (is.null(type)) {
    if (is.null(default)) return("str")
    return(switch(typeof(default), integer = "int", double = "float", logical = "bool", "str"))
  }
  spellings <- parameter_types()
  canonical <- names(spellings)[vapply(spellings, function(s) isTRUE(type %in% s), logical(1))]
  if (!is.character(type) || length(type) != 1 || length(canonical) != 1) {
    abort(c("{.arg type} of parameter {.val {name}} is not a known type.",
            "x" = "You supplied {.val {format(type)}}.",
            "i" = "Use one of {.val {names(spellings)}}."), "parameter_error", call = call)
  }
  canonical
}

check_flag <- function(x, arg, kind, call = rlang::caller_env()) {
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    abort("{.arg {arg}} must be TRUE or FALSE, not {.obj_type_friendly {x}}.", kind, call = call)
  }
}
