# The rules a flow obeys: names, reserved words, parameter types, decorators and their arguments, from
# the table the Python backend enforces too (inst/python/metaflow_r/data/rules.json). R checks each rule
# where the user types it; the backend checks the same rules on what R sends.

rules <- function() {
  if (is.null(the$rules)) {
    the$rules <- jsonlite::fromJSON(backend_data_file("rules.json"), simplifyVector = TRUE)
  }
  the$rules
}

is_valid_name <- function(x) {
  is.character(x) && length(x) == 1 && !is.na(x) && grepl(rules()$name$pattern, x)
}

reserved_names <- function() rules()$reserved_names$names

reserved_parameter_names <- function() union(reserved_names(), rules()$reserved_parameter_names$names)

# Why a name is reserved, in words a user can act on (names and `{` escaped for cli).
reserved_why <- function(name) {
  entry <- if (name %in% reserved_names()) rules()$reserved_names else rules()$reserved_parameter_names
  cli_escape(gsub("{name}", name, entry$what, fixed = TRUE))
}

# Parameter types and the R spellings of each: list(str = c("str", "character", "string"), ...).
parameter_types <- function() rules()$parameter_types

decorator_rules <- function() rules()$decorators

# What each kind of decorator argument accepts; rules.py checks the same kinds on the JSON R sends.
argument_fits <- function(kind, value) {
  single <- length(value) == 1 && !is.na(value)
  switch(kind,
    flag = is.logical(value) && single,
    count = is.numeric(value) && single && value >= 0 && value == round(value),
    duration = is.numeric(value) && single && value >= 0,
    amount = is.numeric(value) && single && value > 0,
    string = is.character(value) && single && nzchar(value),
    name = is_valid_name(value),
    variables = is.list(value) && length(value) > 0 && !is.null(names(value)) && all(nzchar(names(value))) &&
      all(vapply(value, function(v) (is.character(v) || is.numeric(v)) && length(v) == 1, logical(1))),
    platform = is.character(value) && single && toupper(value) %in% c("EC2", "FARGATE"),
    packages = is.character(value) && length(value) > 0 && !anyNA(value) &&
      all(grepl(rules()$package_name$pattern, value))
  )
}
