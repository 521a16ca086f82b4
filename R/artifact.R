# Reading an artifact file (an RDS blob from the datastore) back into R.
#
# An S4 object's class lives in a package that readRDS() does not load; R then loads it lazily in the
# middle of the first method dispatch, and that first call fails ("invalid 'type' (S4) of argument"
# for sum() on a Matrix). Loading the class's package up front makes S4 artifacts work at once.
read_artifact <- function(path) {
  # A damaged file warns before it fails: the warnings belong to the one error that names the file.
  warned <- list()
  value <- tryCatch(
    withCallingHandlers(readRDS(path), warning = function(w) {
      warned[[length(warned) + 1]] <<- w
      invokeRestart("muffleWarning")
    }),
    error = function(e) {
      abort(c("The artifact file {.file {path}} cannot be read: it is damaged.",
              "x" = cli_escape(conditionMessage(e)),
              stats::setNames(vapply(warned, function(w) cli_escape(conditionMessage(w)), ""),
                              rep("x", length(warned))),
              "i" = "Run the step that made it again ({.code resume}) to store it anew."),
            "datastore_error", call = NULL)
    })
  for (w in warned) warning(w)
  if (isS4(value)) {
    package <- attr(class(value), "package")
    if (!is.null(package)) requireNamespace(package, quietly = TRUE)
  }
  value
}
