#' A flow and its runs
#'
#' @description
#' The Client API's top object, with Metaflow R's names. A flow exists once it has run at least once in the
#' datastore (see [mf_client] for where that is). Its runs are those in the current namespace (see
#' [set_namespace()]), newest first; like in Metaflow's R package, `runs`, `latest_run` and
#' `latest_successful_run` are run *ids*: pass one to `$run()` for a [run_client].
#'
#' @examples
#' \dontrun{
#' flow <- flow_client$new("BranchFlow")
#' flow$runs                      # newest first
#' run <- flow$run(flow$latest_successful_run)
#' run$artifact("xs")
#' flow$summary()
#' }
#' @export
flow_client <- R6::R6Class("flow_client",
  public = list(
    #' @description Find a flow in the datastore.
    #' @param flow_id The flow's name, such as `"HelloFlow"`.
    initialize = function(flow_id) {
      check_flow_name(flow_id, "flow_id")
      flows <- list_flows()
      if (!flow_id %in% flows) {
        roots <- unlist(client_query("datastore_root"))
        abort(c("Flow {.val {flow_id}} does not exist.",
                "x" = "{cli::qty(length(roots))}The datastore{?s} {.path {roots}} {?has/have} no run of it.",
                "i" = if (length(flows)) "Flows there: {.val {flows}}." else
                  "Run the flow first, e.g. {.code Rscript flow.R run}.",
                "i" = paste("The local datastore is the {.file .metaflow} directory in the working directory or",
                            "its parents, or the one in {.envvar METAFLOW_DATASTORE_SYSROOT_LOCAL}; production runs",
                            "are in the S3 one, {.envvar METAFLOW_DATASTORE_SYSROOT_S3}.")),
              "datastore_error", call = NULL)
      }
      private$name_ <- flow_id
    },

    #' @description A run of this flow.
    #' @param run_id The run's id, or `"latest_run"` / `"latest_successful_run"`.
    #' @return A [run_client].
    run = function(run_id) run_client$new(self, run_id),

    #' @description The runs that carry every one of the given tags.
    #' @param ... Tags, as strings.
    #' @return A list of [run_client]s, newest first.
    runs_with_tags = function(...) {
      wanted <- as.character(unlist(list(...)))
      infos <- Filter(function(info) all(wanted %in% unlist(info$tags)), private$run_infos())
      lapply(infos, function(info) run_client$new(self, info$run_id))
    },

    #' @description The flow's runs as a table, newest first: id, status, times, where they ran.
    #' @return A data frame (a tibble when the tibble package is installed), one row per visible run:
    #'   `run_id`, `status` ("successful", "failed" or "running"), `created_at`, `finished_at`, `reason`
    #'   (why a run that ended did not succeed), `namespace`, `datastore` ("local" or "s3").
    runs_table = function() {
      infos <- private$run_infos()
      col <- function(f, empty = NA_character_) unlist(lapply(infos, function(i) f(i) %||% empty))
      as_runs_table(data.frame(
        run_id = col(function(i) i$run_id),
        status = col(run_status),
        created_at = client_time(col(function(i) i$created_at, NA_real_)),
        finished_at = client_time(col(function(i) i$finished_at, NA_real_)),
        reason = col(function(i) i$reason),
        namespace = col(function(i) i$namespace),
        datastore = col(function(i) i$datastore),
        stringsAsFactors = FALSE
      ))
    },

    #' @description Print how many runs the flow has and its latest ones.
    #' @return The printed fields, invisibly.
    summary = function() {
      infos <- private$run_infos()
      cat_summary(paste0("Flow Summary: ", private$name_), list(
        "Namespace" = get_namespace() %||% "(every namespace)",
        "Created at" = format_time(self$created_at),
        "Latest run" = private$first_id(infos),
        "Latest successful run" = private$first_id(Filter(function(i) isTRUE(i$successful), infos)),
        "Runs" = length(infos)
      ))
    },

    #' @description Print the flow in one line.
    #' @param ... Ignored.
    print = function(...) {
      cat("<flow_client> ", private$name_, ": ", length(self$runs), " run(s) in namespace ",
          get_namespace() %||% "(every namespace)", "\n", sep = "")
      invisible(self)
    }
  ),
  private = list(
    name_ = NULL,
    run_infos = function() client_query("runs", private$name_, get_namespace()),
    first_id = function(infos) if (length(infos)) infos[[1]]$run_id else NULL
  ),
  active = list(
    #' @field id The flow's name.
    id = function() private$name_,
    #' @field name The flow's name.
    name = function() private$name_,
    #' @field pathspec The flow's pathspec: its name.
    pathspec = function() private$name_,
    #' @field parent Always `NULL`: a flow is the top object.
    parent = function() NULL,
    #' @field tags The tags of the flow's visible runs, sorted.
    tags = function() sort(unique(as.character(unlist(lapply(private$run_infos(), `[[`, "tags"))))),
    #' @field created_at When the flow's earliest visible run started (`POSIXct`), or `NULL`.
    created_at = function() {
      infos <- private$run_infos()
      if (length(infos)) client_time(infos[[length(infos)]]$created_at) else NULL
    },
    #' @field runs The ids of the flow's runs in the current namespace, newest first.
    runs = function() vapply(private$run_infos(), function(info) info$run_id, ""),
    #' @field latest_run The id of the newest run in the current namespace, or `NULL`.
    latest_run = function() private$first_id(private$run_infos()),
    #' @field latest_successful_run The id of the newest successful run in the current namespace, or `NULL`.
    latest_successful_run = function() {
      private$first_id(Filter(function(info) isTRUE(info$successful), private$run_infos()))
    }
  )
)

check_flow_name <- function(x, arg) {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x) || grepl("/", x, fixed = TRUE)) {
    abort(c("{.arg {arg}} must be a flow's name, such as {.val HelloFlow}.",
                     "x" = if (is.character(x) && length(x) == 1) "You supplied {.val {x}}." else
                       "You supplied {.obj_type_friendly {x}}."), "usage_error", call = NULL)
  }
  x
}

`%||%` <- function(x, y) if (is.null(x)) y else x
