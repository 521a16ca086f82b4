# The R packages a flow needs, found in its parsed code per step and at the script's top level
# (R/packages.R), and declared with decorator("packages"); the backend checks them against the Batch image.

packages_of <- function(fn) metaflow:::needed_packages(metaflow:::function_packages(fn))
# Step code as text, made into functions here: R CMD check reads the tests' own code for packages they use,
# and these functions name packages on purpose.
code <- function(...) eval(parse(text = paste(..., sep = "\n"), keep.source = FALSE), envir = parent.frame())

test_that("every way R code loads or calls a package is found", {
  fn <- code("function(self) {",
              "  library(ggplot2)",
              "  library('tidyr')",
              "  require(dplyr)",
              "  requireNamespace('arrow', quietly = TRUE)",
              "  loadNamespace('zoo')",
              "  x <- data.table::data.table(a = 1)",
              "  y <- vctrs:::vec_ptype2",
              "  base::library(lattice)",
              "  suppressPackageStartupMessages(library(sf))",
              "  if (TRUE) library(package = purrr)",
              "}")
  expect_identical(packages_of(fn), sort(c("ggplot2", "tidyr", "dplyr", "arrow", "zoo", "data.table", "vctrs",
                                           "lattice", "sf", "purrr")))
})

test_that("code is parsed, not searched: strings, comments and unknown names are not packages", {
  fn <- code("function(self) {",
              "  # library(commented)",
              "  self$text <- 'library(quoted)'",
              "  pkg <- 'hidden'",
              "  library(pkg, character.only = TRUE)  # a variable: unknown before the task runs",
              "  requireNamespace(pkg)",
              "  library('literal', character.only = TRUE)",
              "  self$m <- matrix(1:4, 2)[, 1]",
              "}")
  expect_identical(packages_of(fn), "literal")
})

test_that("R's base packages and metaflow are left out; recommended ones are not, the image has none", {
  fn <- code("function(self) {",
              "  stats::sd(1)",
              "  utils::head(1)",
              "  library(methods)",
              "  parallel::detectCores()",
              "  metaflow::gather_inputs",
              "  MASS::rlm",
              "  Matrix::Matrix(0)",
              "}")
  expect_identical(packages_of(fn), c("MASS", "Matrix"))
})

test_that("a step counts the packages of the script's functions it calls, and only those", {
  env <- new.env(parent = globalenv())
  eval(parse(text = c("clean <- function(x) janitor::clean_names(x)", "prepare <- function(x) clean(x)",
                      "unused <- function() library(shiny)", "start <- function(self) self$x <- prepare(mtcars)")),
       envir = env)
  expect_identical(packages_of(env$start), "janitor")
})

test_that("each step has its own packages, declared ones added", {
  start <- code("function(self) self$dt <- data.table::as.data.table(mtcars)")
  end <- code("function(self) print(jsonlite::toJSON(1))")
  flow <- metaflow("PackagesFlow") %>%
    step(step = "start", r_function = start, next_step = "mid") %>%
    step(decorator("packages", packages = c("sf", "data.table")), step = "mid", next_step = "end") %>%
    step(step = "end", r_function = end)
  found <- metaflow:::flow_packages(flow)
  expect_identical(found$steps, list(start = "data.table", mid = c("data.table", "sf"), end = "jsonlite"))
  expect_identical(found$script, character())
})

test_that("the script's top level counts for every task, its function definitions do not", {
  dir <- withr::local_tempdir()
  writeLines(c("library(metaflow)", "library(data.table)", "source(\"helpers.R\")",
               "fit <- function(self) ranger::ranger", "x <- readr::read_csv"), file.path(dir, "flow.R"))
  writeLines(c("suppressMessages(library(arrow))", "helper <- function() library(shiny)"), file.path(dir, "helpers.R"))
  expect_identical(metaflow:::needed_packages(metaflow:::script_packages(file.path(dir, "flow.R"))),
                   c("arrow", "data.table", "readr"))
  expect_identical(metaflow:::script_packages(NULL), character())
})

test_that("the spec sends each step's packages and the script's", {
  dir <- withr::local_tempdir()
  script <- file.path(dir, "flow.R")
  writeLines("library(data.table)", script)
  flow <- metaflow("SpecFlow") %>%
    step(step = "start", r_function = code("function(self) sf::st_point(c(1, 2))"), next_step = "end") %>%
    step(step = "end")
  spec <- jsonlite::fromJSON(metaflow:::flow_spec(flow, script), simplifyVector = FALSE)
  expect_identical(spec$packages, list("data.table"))
  expect_identical(spec$steps[[1]]$packages, list("sf"))
  expect_identical(spec$steps[[2]]$packages, list())
  parsed <- metaflow:::backend("core.spec")$parse_spec(metaflow:::flow_spec(flow, script))
  expect_identical(unlist(parsed$steps[[1]]$packages), "sf")
})

test_that("decorator(\"packages\") takes R package names and says what is wrong", {
  expect_s3_class(decorator("packages", packages = "data.table"), "metaflow_decorator")
  expect_error(decorator("packages", packages = "data table"), class = "metaflow_decorator_error")
  expect_error(decorator("packages", packages = c("sf", NA)), class = "metaflow_decorator_error")
  expect_error(decorator("packages"), class = "metaflow_decorator_error")
  expect_snapshot(error = TRUE, {
    decorator("packages", packages = "1bad")
    decorator("packages", "data.table")
    metaflow("F", decorator("packages", packages = "sf"))
  })
})

test_that("create in a session refuses a flow whose image lacks a package: an R condition, before AWS", {
  dir <- withr::local_tempdir()
  manifest <- file.path(dir, "r-packages.json")
  writeLines('{"packages": {"jsonlite": "1.8.4"}}', manifest)
  # Every setting, and an endpoint that answers nothing: a call to AWS would fail with another error.
  withr::local_envvar(
    METAFLOW_HOME = dir, METAFLOW_DATASTORE_SYSROOT_S3 = "s3://nowhere/metaflow", METAFLOW_BATCH_JOB_QUEUE = "queue",
    METAFLOW_ECS_S3_ACCESS_IAM_ROLE = "arn:aws:iam::123456789012:role/batch",
    METAFLOW_SFN_IAM_ROLE = "arn:aws:iam::123456789012:role/sfn", METAFLOW_SFN_DYNAMO_DB_TABLE = "table",
    METAFLOW_BATCH_CONTAINER_IMAGE = "registry.invalid/metaflow-r:1", METAFLOW_BATCH_IMAGE_MANIFEST = manifest,
    AWS_ENDPOINT_URL = "http://127.0.0.1:9", AWS_ACCESS_KEY_ID = "none", AWS_SECRET_ACCESS_KEY = "none",
    AWS_DEFAULT_REGION = "us-east-1"
  )
  script <- file.path(dir, "table_flow.R")
  writeLines(flow_script(
    "start <- function(self) self$rows <- nrow(data.table::as.data.table(mtcars))",
    pipeline = c('metaflow("TableFlow") %>%', 'step(step = "start", r_function = start, next_step = "end") %>%',
                 'step(step = "end")'),
    run_call = 'run(step_functions = "create")'
  ), script)
  caught <- withr::with_dir(dir, tryCatch(capture.output(source(script)), metaflow_error = identity))
  expect_s3_class(caught, "metaflow_missing_packages")
  expect_s3_class(caught, "metaflow_configuration_error")
  expect_match(conditionMessage(caught), "lacks R package data.table", fixed = TRUE)
  expect_match(conditionMessage(caught), "data.table: used by step start.", fixed = TRUE)
  expect_identical(unlist(caught$packages), "data.table")
  expect_identical(caught$status, 5L)
})
