# Per-task overhead of the local runtime: a trivial foreach, 40 wide and 1 wide, at --max-workers 2.
#
# The marginal cost of a task is (T(40) - T(1)) / 39 tasks, times 2 because two run at once; it is
# printed next to a bare `Rscript -e 1` start measured in the same run. Usage:
#   Rscript bench/foreach_overhead.R [repetitions]
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 3L
rscript <- file.path(R.home("bin"), "Rscript")
dir <- tempfile("metaflow-bench-")
dir.create(dir)
script <- file.path(dir, "wide.R")
writeLines(c(
  "library(metaflow)",
  "width <- as.integer(Sys.getenv('BENCH_WIDTH'))",
  "metaflow('WideFlow') %>%",
  "  step(step = 'start', r_function = function(self) self$items <- seq_len(width), next_step = 'body', foreach = 'items') %>%",
  "  step(step = 'body', r_function = function(self) self$out <- self$input, next_step = 'join') %>%",
  "  step(step = 'join', r_function = function(self, inputs) NULL, next_step = 'end', join = TRUE) %>%",
  "  step(step = 'end') %>%",
  "  run()"
), script)

elapsed <- function(command, args, env = character()) {
  started <- Sys.time()
  status <- system2(command, args, stdout = FALSE, stderr = FALSE, env = env)
  if (status != 0) stop("benchmark command failed: ", paste(command, paste(args, collapse = " ")))
  as.numeric(Sys.time() - started, units = "secs")
}
run_flow <- function(width) {
  elapsed(rscript, c(script, "run", "--max-workers", "2"),
          env = c(sprintf("BENCH_WIDTH=%d", width), sprintf("METAFLOW_DATASTORE_SYSROOT_LOCAL=%s", dir)))
}

bare <- median(vapply(1:5, function(i) elapsed(rscript, c("-e", "1")), 0))
wide <- median(vapply(seq_len(reps), function(i) run_flow(40), 0))
narrow <- median(vapply(seq_len(reps), function(i) run_flow(1), 0))
per_task <- (wide - narrow) / 39 * 2

cat(sprintf("%-44s %8s\n", "measure (median)", "seconds"))
cat(sprintf("%-44s %8.3f\n", "bare `Rscript -e 1`", bare))
cat(sprintf("%-44s %8.3f\n", "run, 40-wide foreach, --max-workers 2", wide))
cat(sprintf("%-44s %8.3f\n", "run, 1-wide foreach, --max-workers 2", narrow))
cat(sprintf("%-44s %8.3f\n", "per-task overhead", per_task))
cat(sprintf("%-44s %8.1fx\n", "per-task overhead / bare Rscript start", per_task / bare))
unlink(dir, recursive = TRUE)
