# The flow examples/check-production.sh deploys to check what only real AWS shows (docs/production.md):
# the image Batch pulled, the job role reaching S3 and DynamoDB, a foreach through DynamoDB and a Map
# state, Batch's own retry, a data file in the code package, and the job's CloudWatch log.
library(metaflow)

start <- function(self) {
  python <- system2(Sys.getenv("METAFLOW_R_PYTHON", "python3"), "--version", stdout = TRUE)
  cat("image: user=", Sys.info()[["effective_user"]], " uid=", system2("id", "-u", stdout = TRUE), " python=", python,
      " ", R.version.string, "\n", sep = "")
  for (name in c("AWS_BATCH_JOB_ID", "AWS_BATCH_JQ_NAME", "AWS_BATCH_CE_NAME", "AWS_DEFAULT_REGION")) {
    cat(name, "=", Sys.getenv(name), "\n", sep = "")
  }
  message("a line on stderr reaches the log too")
  self$numbers <- read.csv("numbers.csv")$n
}
square <- function(self) {
  if (current("retry_count") == 0) stop("the first attempt fails on purpose, to check Batch's retry")
  self$square <- self$input^2
}
join <- function(self, inputs) self$total <- sum(unlist(gather_inputs(inputs, "square")))
end <- function(self) cat("total of squares:", self$total, "\n")

metaflow("ProductionCheckFlow") %>%
  step(step = "start", r_function = start, next_step = "square", foreach = "numbers") %>%
  step(decorator("retry", times = 1), step = "square", r_function = square, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
