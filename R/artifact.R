# Artifact files: an R object written to, and read back from, an RDS blob of the datastore.
#
# Every blob is a gzip file, which readRDS() reads as it always has (blobs of earlier versions were gzip at
# level 6). Its CRC lets readRDS() notice a damaged blob. The bytes inside are deflated at level 1 only
# when a sample of them shows that compression pays; otherwise (numeric data, mostly) they are stored as
# they are, at disk speed, where compressing would cost seconds per hundred megabytes and save little.

# Below this size a blob is kept as it is: compressing it would save little and cost a second pass.
compress_min_bytes <- 256 * 1024
# Compress when a sample deflates to less than this share of its size.
compress_max_ratio <- 0.5

write_artifact <- function(value, path, name = basename(path), refhook = NULL) {
  progress <- artifact_progress("Storing", name, as.numeric(utils::object.size(value)))
  writing_file({
    con <- gzfile(path, "wb", compression = 0)
    tryCatch(serialize(value, con, refhook = refhook), finally = close(con))
    size <- file.size(path)
    compressed <- size >= compress_min_bytes && compression_pays(path)
    if (compressed) size <- recompress(path)
  }, path, "artifact {.val {name}} of step {.val {step}}", name = name, step = task_step())
  progress(size, if (compressed) "compressed" else "stored as is")
  invisible(path)
}

# Deflates four slices spread over the file (raw bytes of a level-0 gzip file: the serialised object).
compression_pays <- function(path, slice = 64 * 1024) {
  size <- file.size(path)
  con <- file(path, "rb")
  on.exit(close(con))
  raw_bytes <- packed_bytes <- 0
  for (offset in floor(seq(0, size - slice, length.out = 4))) {
    seek(con, offset)
    bytes <- readBin(con, "raw", slice)
    raw_bytes <- raw_bytes + length(bytes)
    packed_bytes <- packed_bytes + length(memCompress(bytes, "gzip"))
  }
  packed_bytes < compress_max_ratio * raw_bytes
}

# Rewrites a level-0 gzip file at level 1, in slices (the object is not held twice in memory); its new size.
recompress <- function(path) {
  packed <- paste0(path, ".part")
  from <- gzfile(path, "rb")
  to <- gzfile(packed, "wb", compression = 1)
  repeat {
    bytes <- readBin(from, "raw", 8 * 1024^2)
    if (!length(bytes)) break
    writeBin(bytes, to)
  }
  close(from)
  close(to)
  file.rename(packed, path)
  file.size(path)
}

# A damaged blob either fails to read (an error) or fails gzip's CRC (a warning from R, after a value that
# is wrong): both are one error naming the file. An S4 object's class lives in a package that readRDS()
# does not load; R then loads it lazily in the middle of the first method dispatch, and that first call
# fails ("invalid 'type' (S4) of argument" for sum() on a Matrix): loading it up front makes S4 artifacts
# work at once.
read_artifact <- function(path, name = basename(path), bytes = file.size(path)) {
  progress <- artifact_progress("Loading", name, bytes)
  warned <- list()
  value <- withCallingHandlers(readRDS(path),
    warning = function(w) {
      warned[[length(warned) + 1]] <<- w
      invokeRestart("muffleWarning")
    },
    error = function(e) artifact_damaged(path, c(conditionMessage(e), warning_messages(warned))))
  crc_failed <- length(warned) && gettext("invalid or incomplete compressed data", domain = "R") %in%
    warning_messages(warned)
  if (crc_failed) {
    artifact_damaged(path, warning_messages(warned))
  }
  for (w in warned) warning(w)
  if (isS4(value)) {
    package <- attr(class(value), "package")
    if (!is.null(package)) requireNamespace(package, quietly = TRUE)
  }
  progress()
  value
}

warning_messages <- function(warned) vapply(warned, conditionMessage, "")

artifact_damaged <- function(path, problems) {
  abort(c("The artifact file {.file {path}} cannot be read: it is damaged.",
          stats::setNames(cli_escape(problems), rep("x", length(problems))),
          "i" = "Run the step that made it again ({.code resume}) to store it anew."),
        "datastore_error", call = NULL)
}
