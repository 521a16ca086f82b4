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

# Writing artifact files: fast for numeric data, compressed when that pays, every blob checked on reading.

expect_gzip_file <- function(path) {
  expect_identical(readBin(path, "raw", 2), as.raw(c(0x1f, 0x8b)))  # as blobs always were: gzip's CRC checks them
}

test_that("a large numeric artifact round-trips exactly, stored as is", {
  path <- withr::local_tempfile()
  value <- data.frame(x = stats::rnorm(2e5), when = as.Date("2024-01-01") + 1:2e5, group = factor(1:2e5 %% 7))
  attr(value, "note") <- "kept"
  class(value) <- c("my_frame", class(value))
  metaflow:::write_artifact(value, path)
  expect_gzip_file(path)
  expect_gt(file.size(path), as.numeric(object.size(value$x)))  # the doubles were not compressed
  expect_identical(metaflow:::read_artifact(path), value)
})

test_that("a compressible artifact is compressed, and reads back the same", {
  path <- withr::local_tempfile()
  value <- rep(c("alpha", "beta"), 5e5)
  metaflow:::write_artifact(value, path)
  expect_gzip_file(path)
  expect_lt(file.size(path), length(serialize(value, NULL)) / 10)
  expect_identical(metaflow:::read_artifact(path), value)
})

test_that("an artifact stored by earlier versions (saveRDS, gzip level 6) still reads", {
  path <- withr::local_tempfile()
  value <- list(n = 1:10, s = "old", m = matrix(stats::runif(6), 2))
  saveRDS(value, path)
  expect_identical(metaflow:::read_artifact(path), value)
})

test_that("a damaged artifact stored as is is an error naming the file, not a wrong value", {
  path <- withr::local_tempfile()
  metaflow:::write_artifact(stats::rnorm(1e5), path)
  bytes <- readBin(path, "raw", file.size(path))
  bytes[4e5] <- xor(bytes[4e5], as.raw(1))
  writeBin(bytes, path)
  caught <- tryCatch(metaflow:::read_artifact(path), error = identity)
  expect_s3_class(caught, "metaflow_datastore_error")
  expect_match(conditionMessage(caught), basename(path), fixed = TRUE)
  expect_match(conditionMessage(caught), "damaged")
})

test_that("storing or loading a large artifact says so on stderr; a small one prints nothing", {
  path <- withr::local_tempfile()
  withr::local_envvar(METAFLOW_R_PROGRESS_BYTES = "1e6")
  stored <- testthat::capture_messages(metaflow:::write_artifact(stats::rnorm(2e5), path, "big"))
  expect_length(stored, 2)
  expect_match(stored[[1]], "^Storing artifact 'big' \\(1.6 MB\\)\\.\\.\\.")
  expect_match(stored[[2]], "^Storing artifact 'big' took [0-9.]+ s \\(1.6 MB, stored as is\\)")
  loaded <- testthat::capture_messages(metaflow:::read_artifact(path, "big"))
  expect_length(loaded, 2)
  expect_match(loaded[[1]], "^Loading artifact 'big' \\(1.6 MB\\)\\.\\.\\.")
  expect_match(loaded[[2]], "^Loading artifact 'big' took [0-9.]+ s \\(1.6 MB\\)")
  expect_silent(metaflow:::write_artifact(1:10, path, "small"))
  expect_silent(metaflow:::read_artifact(path, "small"))
})
