test_that("decorators keep their arguments", {
  d <- decorator("retry", times = 2)
  expect_s3_class(d, "metaflow_decorator")
  expect_equal(d$attributes, list(times = 2))
  expect_output(print(d), "@retry\\(times=2\\)")
})

test_that("unknown decorators and arguments are named in the error", {
  expect_error(decorator("retyr"), "not a decorator")
  expect_error(decorator("retry", tims = 1), "no argument")
  expect_error(decorator("retry", 1), "must be named")
  expect_error(decorator("retry", times = -1), "whole number")
  expect_error(decorator("retry", times = 1.5), "whole number")
})

test_that("a schedule needs exactly one of hourly, daily, weekly, cron", {
  expect_s3_class(decorator("schedule", weekly = TRUE), "metaflow_decorator")
  expect_s3_class(decorator("schedule", cron = "0 10 * * ? *"), "metaflow_decorator")
  expect_error(decorator("schedule"), "exactly one")
  expect_error(decorator("schedule", hourly = TRUE, daily = TRUE), "exactly one")
  expect_error(decorator("schedule", cron = 5), "non-empty string")
  expect_error(decorator("schedule", daily = 1), "TRUE or FALSE")
  expect_error(decorator("schedule", cron = ""), "non-empty string")
})

test_that("a schedule has no timezone: EventBridge cron runs in UTC", {
  expect_error(decorator("schedule", cron = "0 10 * * ? *", timezone = "Europe/Paris"), "no argument")
})

test_that("every decorator argument is checked where it is written", {
  expect_error(decorator("timeout", minutes = "ten"), "must be a number >= 0")
  expect_error(decorator("resources", cpu = 0), "must be a number > 0")
  expect_error(decorator("resources", memory = "4G"), "must be a number > 0")
  expect_error(decorator("resources", gpu = 1.5), "whole number")
  expect_error(decorator("catch", var = "not a name"), "artifact name")
  expect_error(decorator("catch", print_exception = "yes"), "TRUE or FALSE")
  expect_error(decorator("batch", image = ""), "non-empty string")
  expect_error(decorator("environment", vars = c(A = "1")), "named list")
  expect_s3_class(decorator("environment", vars = list(TZ = "UTC")), "metaflow_decorator")
  expect_s3_class(decorator("resources", cpu = 2, memory = 8192, gpu = 1), "metaflow_decorator")
})

# What the backend says when it meets the same bad decorator in a spec (a flow sent without R's checks).
backend_words <- function(name, attributes, where) {
  rules <- metaflow:::backend("core.rules")  # first: it chooses the package's Python
  helper <- reticulate::py_run_string(paste(
    "def metaflow_words(check, *args):",
    "    try:",
    "        check(*args)",
    "    except Exception as error:",
    "        return [type(error).__name__, str(error)]",
    sep = "\n"), convert = TRUE)
  helper$metaflow_words(rules$check_decorator, name, attributes, where)
}

r_words <- function(expr) {
  withr::local_options(cli.width = Inf, cli.num_colors = 1, cli.unicode = TRUE)
  cli::ansi_strip(conditionMessage(tryCatch(expr, metaflow_decorator_error = identity)))
}

test_that("R and the backend tell the same words for the same bad decorator", {
  expect_identical(backend_words("retyr", list(), 'step("start")'),
                   c("DecoratorError", r_words(decorator("retyr"))))
  expect_identical(backend_words("retry", list(tims = 1L), 'step("start")'),
                   c("DecoratorError", r_words(decorator("retry", tims = 1L))))
  expect_identical(backend_words("schedule", list(hourly = TRUE, daily = TRUE), "metaflow()"),
                   c("DecoratorError", r_words(decorator("schedule", hourly = TRUE, daily = TRUE))))
  expect_identical(backend_words("retry", list(), "metaflow()"),
                   c("DecoratorError", r_words(metaflow("F", decorator("retry")))))
  # A value is written as each language writes it: the statement is the same.
  first_line <- function(text) strsplit(text, "\n", fixed = TRUE)[[1]][1]
  expect_identical(first_line(backend_words("retry", list(times = -1L), 'step("start")')[[2]]),
                   first_line(r_words(decorator("retry", times = -1L))))
})

test_that("a flow decorator piped onto the flow decorates it; a step decorator piped there is told where it goes", {
  piped <- metaflow("PipedFlow") %>% decorator("schedule", cron = "0 10 * * ? *")
  expect_identical(piped$decorators, metaflow("PipedFlow", decorator("schedule", cron = "0 10 * * ? *"))$decorators)
  expect_error(metaflow("PipedFlow") %>% decorator("retry", times = 2),
               "cannot decorate `metaflow\\(\\)`.*inside `step\\(\\)`", class = "metaflow_decorator_error")
})

test_that("Python's True and False, as the scheduling guide writes them, are read as TRUE and FALSE", {
  expect_message(weekly <- decorator("schedule", weekly = True), "read Python's `True` as R's `TRUE`")
  expect_identical(weekly, decorator("schedule", weekly = TRUE))
  expect_identical(suppressMessages(decorator("catch", print_exception = False)),
                   decorator("catch", print_exception = FALSE))
  # A True the user defined is theirs, and is not rewritten.
  True <- "yes"
  expect_error(decorator("schedule", weekly = True), "TRUE or FALSE")
})
