# Writes the manifest of the R packages this R holds, as the Batch image records them at build time
# (inst/container/Dockerfile, and an image `Rscript flow.R image build` derives from it):
# {"r": "4.2.2", "packages": {"<name>": "<version>", ...}} to /opt/metaflow-r/r-packages.json (or the file
# named as the first argument), and on stdout. The backend reads it, or the same JSON in the image's label
# org.metaflow-r.r-packages, to check a flow's packages before any AWS call (aws/batch/image_packages.py).
target <- commandArgs(trailingOnly = TRUE)[1]
if (is.na(target)) target <- "/opt/metaflow-r/r-packages.json"
installed <- utils::installed.packages()[, c("Package", "Version"), drop = FALSE]
installed <- installed[!duplicated(installed[, "Package"]), , drop = FALSE]  # the first on .libPaths() loads
installed <- installed[order(installed[, "Package"]), , drop = FALSE]
manifest <- list(r = paste(R.version$major, R.version$minor, sep = "."),
                 packages = as.list(stats::setNames(installed[, "Version"], installed[, "Package"])))
json <- jsonlite::toJSON(manifest, auto_unbox = TRUE)
dir.create(dirname(target), showWarnings = FALSE, recursive = TRUE)
writeLines(json, target)
writeLines(json)
