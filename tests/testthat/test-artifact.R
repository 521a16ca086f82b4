# Reading artifact files: a damaged one is an error that names the file.

test_that("a damaged artifact file is a datastore error naming the file", {
  path <- withr::local_tempfile()
  writeBin(as.raw(c(0x1f, 0x8b, 0x08, 0x00, 1, 2, 3)), path)  # a gzip header, then nothing readable
  caught <- tryCatch(metaflow:::read_artifact(path), error = identity)
  expect_s3_class(caught, "metaflow_datastore_error")
  expect_match(conditionMessage(caught), basename(path), fixed = TRUE)
  expect_match(conditionMessage(caught), "damaged")
  saveRDS(list(a = 1), path)
  expect_identical(metaflow:::read_artifact(path), list(a = 1))
})

test_that("the Client API skips a damaged run record with a warning naming it, and lists the others", {
  dir <- withr::local_tempdir()
  withr::local_envvar(METAFLOW_DATASTORE_SYSROOT_LOCAL = dir, METAFLOW_DEFAULT_DATASTORE = "local")
  runs <- file.path(dir, ".metaflow", "DamagedFlow", c("1", "2"))
  for (run in runs) dir.create(run, recursive = TRUE)
  writeLines('{"flow": "DamagedFlow", "run_id": "2", "user": "ann", "tags": ["user:ann"], "parameters": {},
              "created_at": 1}', file.path(runs[2], "_run.json"))
  writeLines('{"flow": "DamagedFl', file.path(runs[1], "_run.json"))
  set_namespace(NULL)
  withr::defer(set_default_namespace())
  expect_warning(ids <- flow_client$new("DamagedFlow")$runs, "DamagedFlow/1/_run.json is damaged",
                 class = "metaflow_damaged_record")
  expect_identical(ids, "2")
})
