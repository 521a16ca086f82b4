library(testthat)
library(metaflow)

# The tests run flows: they need the Python backend (metaflow::install_metaflow()) and the repository's
# examples, so they run in a clone of it (make test), and say so where the package is checked without them.
examples <- file.path("..", "..", "examples")
if (dir.exists(examples) || dir.exists(file.path("..", "examples"))) {
  test_check("metaflow")
} else {
  message("metaflow's tests run in a clone of its repository (make test): they need its examples and backend.")
}
