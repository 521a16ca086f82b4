# Each task's random-number stream. The backend derives it from the run's seed and the task's place in the
# graph (inst/python/metaflow_r/core/rng.py); the task starts from it, so a task draws the same numbers
# whichever process, fork or Batch job runs it, and a foreach's tasks draw from consecutive L'Ecuyer-CMRG
# streams, as parallel's mclapply() would give them.
seed_task_rng <- function(rng) {
  set.seed(rng$seed, kind = "L'Ecuyer-CMRG")
  state <- get(".Random.seed", envir = globalenv())
  for (i in seq_len(rng$stream)) state <- parallel::nextRNGStream(state)
  assign(".Random.seed", state, envir = globalenv())
}

# A run's seed as set.seed() takes it; the backend checks the same range (core/rng.py).
check_seed <- function(seed, call = rlang::caller_env()) {
  whole <- is.numeric(seed) && length(seed) == 1 && !is.na(seed) && seed == round(seed)
  if (!whole || seed < 1 || seed > 2147483646) {
    abort(c("{.arg seed} must be a whole number from 1 to 2147483646.",
            "x" = "You supplied {.obj_type_friendly {seed}}{if (whole) paste0(', ', format(seed))}.",
            "i" = "For example {.code seed = 42}."), "usage_error", call = call)
  }
  as.integer(seed)
}
