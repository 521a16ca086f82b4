# Resume after one failed item of a wide foreach, against a full rerun: a foreach `width` wide (default
# 1000) whose last item fails until a file `fixed` exists; the time of `resume` (which reuses the finished
# items and runs the failed one, the join and end) next to that of a whole run. Both at --max-workers 2.
# Usage:
#   Rscript bench/resume_wide.R [width] [repetitions]
args <- commandArgs(trailingOnly = TRUE)
width <- if (length(args) >= 1) as.integer(args[1]) else 1000L
reps <- if (length(args) >= 2) as.integer(args[2]) else 1L
rscript <- file.path(R.home("bin"), "Rscript")
dir <- tempfile("metaflow-bench-resume-")
dir.create(dir)
script <- file.path(dir, "resume.R")
writeLines(c(
  "library(metaflow)",
  "width <- as.integer(Sys.getenv('BENCH_WIDTH'))",
  "fit <- function(self) {",
  "  if (self$input == width && !file.exists('fixed')) stop('the last item fails')",
  "  self$fit <- lm(mpg ~ wt, data = mtcars[sample(nrow(mtcars), replace = TRUE), ])",
  "}",
  "metaflow('ResumeBench') %>%",
  "  step(step = 'start', r_function = function(self) self$items <- seq_len(width), next_step = 'fit', foreach = 'items') %>%",
  "  step(step = 'fit', r_function = fit, next_step = 'join') %>%",
  "  step(step = 'join', r_function = function(self, inputs) NULL, next_step = 'end', join = TRUE) %>%",
  "  step(step = 'end') %>%",
  "  run()"
), script)

elapsed <- function(command, expect_status = 0) {
  started <- Sys.time()
  output <- suppressWarnings(system2(rscript, c(script, command, "--max-workers", "2"), stdout = TRUE, stderr = TRUE,
                                     env = c(sprintf("BENCH_WIDTH=%d", width))))
  status <- attr(output, "status") %||% 0L
  if (status != expect_status) stop("`", paste(command, collapse = " "), "` ended with ", status, ":\n",
                                    paste(tail(output, 20), collapse = "\n"))
  list(seconds = as.numeric(Sys.time() - started, units = "secs"), output = output)
}
`%||%` <- function(x, y) if (is.null(x)) y else x
count <- function(output, pattern) sum(grepl(pattern, output))

old <- setwd(dir)
results <- lapply(seq_len(reps), function(i) {
  unlink(c("fixed", ".metaflow"), recursive = TRUE)
  failed <- elapsed("run", expect_status = 1)
  file.create("fixed")
  resumed <- elapsed("resume")
  full <- elapsed("run")
  c(failed = failed$seconds, resume = resumed$seconds, full = full$seconds,
    cloned = count(resumed$output, "/fit/[0-9]+\\] Cloned from run"),
    ran = count(resumed$output, "/fit/[0-9]+ \\(pid [0-9]+\\)\\] Task is starting"))
})
setwd(old)
table <- do.call(rbind, results)
cat(sprintf("width %d, --max-workers 2, %d repetition(s); load average before: %s\n", width, reps,
            paste(readLines("/proc/loadavg"), collapse = "")))
cat(sprintf("%-46s %10s\n", "measure (median)", "value"))
cat(sprintf("%-46s %10.1f\n", "run with the last item failing, s", median(table[, "failed"])))
cat(sprintf("%-46s %10.1f\n", "resume after the fix, s", median(table[, "resume"])))
cat(sprintf("%-46s %10.1f\n", "full rerun, s", median(table[, "full"])))
cat(sprintf("%-46s %10d\n", "fit tasks reused by the resume", as.integer(median(table[, "cloned"]))))
cat(sprintf("%-46s %10d\n", "fit tasks the resume ran", as.integer(median(table[, "ran"]))))
unlink(dir, recursive = TRUE)
