#' metaflow: data science flows in R, run locally or on AWS Step Functions
#'
#' Build a flow with [metaflow()], [step()], [parameter()] and [decorator()], and end its pipe with [run()]:
#' `Rscript flow.R run` runs it on this machine, `Rscript flow.R step-functions create` deploys the same
#' script to AWS Step Functions, each step an AWS Batch job. Read every run's artifacts with the Client
#' API ([flow_client], [run_client]). Install the Python backend once with [install_metaflow()].
#'
#' @keywords internal
#' @docType package
#' @name metaflow-package
#' @aliases metaflow-package
NULL

#' @importFrom R6 R6Class
NULL
