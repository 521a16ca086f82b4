#' Collect one artifact from every input of a join
#'
#' @param inputs The `inputs` argument of a join step's function.
#' @param input The artifact's name.
#' @return A list with the artifact's value in each input, in input order.
#' @examples
#' \dontrun{
#' join <- function(self, inputs) self$scores <- unlist(gather_inputs(inputs, "score"))
#' }
#' @export
gather_inputs <- function(inputs, input) {
  lapply(unname(inputs), function(i) i[[input]])
}

#' Merge the artifacts of a join's inputs into `self`
#'
#' Every artifact that all inputs carrying it agree on (same content) is set on `self`; artifacts
#' already set on `self` and those named in `exclude` are left alone. If inputs disagree on any other
#' artifact, nothing is set and a `MergeArtifactsException` error names the artifacts in conflict.
#'
#' @param flow The join step's `self`.
#' @param inputs The join step's `inputs`.
#' @param exclude Names (a list or character vector) of artifacts not to merge.
#' @return `self`, invisibly.
#' @examples
#' \dontrun{
#' join <- function(self, inputs) merge_artifacts(self, inputs, exclude = list("score"))
#' }
#' @export
merge_artifacts <- function(flow, inputs, exclude = list()) {
  self <- flow
  if (!inherits(self, "metaflow_self")) {
    abort("{.fn merge_artifacts} takes the join step's {.arg self} as its first argument.", "usage_error")
  }
  ctx <- self_state(self, ".ctx")
  skip <- c(unlist(exclude), ctx$parameter_names, names(self))
  merged <- list()
  conflicts <- character()
  for (input in unname(inputs)) {
    for (name in setdiff(names(self_state(input, ".refs")), skip)) {
      ref <- self_state(input, ".refs")[[name]]
      if (is.null(merged[[name]])) {
        merged[[name]] <- ref
      } else if (!identical(merged[[name]]$sha, ref$sha)) {
        conflicts <- union(conflicts, name)
      }
    }
  }
  if (length(conflicts)) {
    abort(c(
      paste("MergeArtifactsException: step {.val {ctx$step}} cannot merge {.val {conflicts}}:",
            "the inputs hold different values."),
      "i" = "Set those artifacts in the join step before merging, or pass {.code exclude = list(...)}."
    ), "merge_conflict", call = NULL)
  }
  assign(".refs", c(self_state(self, ".refs"), merged), envir = self)
  invisible(self)
}
