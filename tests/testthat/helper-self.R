# A `self` as a task sees it, with inherited artifacts stored as RDS files like the datastore's blobs.
fake_self <- function(artifacts = list(), parameters = character(), step = "s", join = NULL,
                      read_only = FALSE, split_stack = list(), dir = withr::local_tempdir(.local_envir = parent.frame())) {
  refs <- list()
  for (name in names(artifacts)) {
    path <- tempfile(tmpdir = dir, fileext = ".rds")
    saveRDS(artifacts[[name]], path)
    refs[[name]] <- list(sha = unname(tools::md5sum(path)), path = path)
  }
  ctx <- list(step = step, run_id = "1", task_id = "2", parameter_names = as.list(parameters),
              join = join, split_stack = split_stack)
  metaflow:::new_self(ctx, refs, read_only = read_only)
}
