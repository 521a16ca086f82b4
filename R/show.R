#' Show a flow's graph
#'
#' @description
#' A flow's graph as text: its parameters and its steps with the steps that follow each (`format = "text"`),
#' or a [Mermaid](https://mermaid.js.org/) flowchart (`format = "mermaid"`), which GitHub, Quarto and R Markdown
#' draw. The graph is checked first, so a flow that could not run is an error here too, with the same message.
#' `Rscript flow.R show` and `Rscript flow.R show --mermaid` print the same text.
#'
#' In the Mermaid text each step is a node named `step_<name>` and labelled with the step's name (a node
#' called `end` would end the diagram in Mermaid).
#'
#' `show()` masks [methods::show()]: given anything but a flow (and no `format`), it is `methods::show()`,
#' so objects still show as before.
#'
#' @param object A flow from [metaflow()].
#' @param format `"text"` (the default) or `"mermaid"`.
#' @return The diagram as one string (lines separated by `"\n"`) of class `metaflow_diagram`, which prints
#'   as the text itself; `as.character()` drops the class.
#' @seealso [run()] with `show = TRUE`, which prints the text form from a flow script.
#' @examples
#' \dontrun{
#' start <- function(self) self$xs <- 1:3
#' body <- function(self) self$y <- self$input^2
#' join <- function(self, inputs) self$ys <- unlist(gather_inputs(inputs, "y"))
#' flow <- metaflow("SquareFlow") %>%
#'   step(step = "start", r_function = start, next_step = "body", foreach = "xs") %>%
#'   step(step = "body", r_function = body, next_step = "join") %>%
#'   step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
#'   step(step = "end")
#' show(flow)
#' show(flow, format = "mermaid")
#' # In a Quarto or R Markdown chunk with `results: asis`:
#' cat("```{mermaid}", show(flow, format = "mermaid"), "```", sep = "\n")
#' }
#' @export
show <- function(object, format = "text") {
  if (!inherits(object, "metaflow_flow") && missing(format)) {
    return(methods::show(object))
  }
  flow <- object
  call <- sys.call()
  check_flow(flow, call = call)
  formats <- c("text", "mermaid")
  if (!is.character(format) || length(format) != 1 || !format %in% formats) {
    supplied <- if (is.character(format)) "You supplied {.val {format}}."
                else "You supplied {.obj_type_friendly {format}}."
    abort(c("{.arg format} must be {.or {.val {formats}}}.", "x" = supplied), "usage_error", call = call)
  }
  spec <- flow_spec(flow, NULL)
  text <- tryCatch(backend("report.show")$render(spec, format), error = function(e) abort_backend_error(e, call))
  structure(text, class = "metaflow_diagram")
}

#' @export
print.metaflow_diagram <- function(x, ...) {
  cat(x, "\n", sep = "")
  invisible(x)
}
