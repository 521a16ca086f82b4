test_that("parameter types are inferred from the default", {
  flow <- metaflow("F") %>%
    parameter("alpha", default = 0.1) %>%
    parameter("n", default = 3L) %>%
    parameter("label", default = "x") %>%
    parameter("flag", is_flag = TRUE) %>%
    parameter("on", default = TRUE)
  types <- vapply(flow$parameters, `[[`, "", "type")
  expect_equal(types, c("float", "int", "str", "bool", "bool"))
})

test_that("R type names are accepted", {
  flow <- metaflow("F") %>% parameter("n", type = "integer") %>% parameter("x", type = "numeric")
  expect_equal(vapply(flow$parameters, `[[`, "", "type"), c("int", "float"))
})

test_that("bad parameters are refused where they are written", {
  flow <- metaflow("F")
  expect_error(parameter(flow, "a", type = "complex"), "not a known type")
  expect_error(parameter(flow, "input"), "reserved")
  expect_error(parameter(flow, "my-param"), "single name")
  expect_error(parameter(flow %>% parameter("a"), "a"), "defined twice")
  expect_error(parameter(flow, "a", default = list(1)), "string, number or logical")
  expect_error(parameter(flow, "a", default = c(1, 2)), "separator")
  expect_error(parameter(flow, "a", required = NA), "TRUE or FALSE")
  expect_error(parameter(flow, "a", default = Inf), "finite number")
  expect_error(parameter(flow, "a", default = NaN), "finite number")
})

test_that("a vector default with a separator is stored joined", {
  flow <- metaflow("F") %>% parameter("xs", default = c("a", "b"), separator = ",")
  expect_equal(flow$parameters[[1]]$default, "a,b")
})
