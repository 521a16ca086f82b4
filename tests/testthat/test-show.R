square_flow <- function(end_name = "end") {
  metaflow("SquareFlow") %>%
    parameter("n", default = 3, type = "int", help = "How many.") %>%
    step(step = "start", r_function = function(self) self$xs <- seq_len(self$n), next_step = "body",
         foreach = "xs") %>%
    step(step = "body", r_function = function(self) self$y <- self$input^2, next_step = "join") %>%
    step(step = "join", r_function = function(self, inputs) NULL, next_step = end_name, join = TRUE) %>%
    step(step = "end")
}

test_that("show() returns the graph as text, which prints as itself", {
  text <- show(square_flow())
  expect_s3_class(text, "metaflow_diagram")
  expect_identical(strsplit(as.character(text), "\n")[[1]], c(
    "Flow SquareFlow", "", "Parameters:", "  --n (int, default 3)  How many.", "",
    "Steps:", "  start  (foreach over xs)", "    => body", "  body", "    => join",
    "  join  (joins body)", "    => end", "  end"
  ))
  expect_output(print(text), "Steps:\n  start  (foreach over xs)\n    => body", fixed = TRUE)
  expect_false(inherits(as.character(text), "metaflow_diagram"))
})

test_that("show(format = \"mermaid\") names nodes apart from Mermaid's keywords and labels them with the steps", {
  mermaid <- show(square_flow(), format = "mermaid")
  expect_identical(strsplit(as.character(mermaid), "\n")[[1]], c(
    "flowchart TD",
    "    step_start[\"start\"]", "    step_body[\"body\"]", "    step_join[\"join\"]", "    step_end[\"end\"]",
    "    step_start -->|\"foreach xs\"| step_body",
    "    step_body --> step_join",
    "    step_join --> step_end"
  ))
  expect_output(print(mermaid), "^flowchart TD\n")
})

test_that("show() checks the graph and its arguments", {
  expect_error(show(square_flow(end_name = "nowhere")),
               "Step 'join' has next_step 'nowhere', which is not a step of the flow")
  expect_error(show(square_flow(), format = "svg"), "`format` must be \"text\" or \"mermaid\".*You supplied \"svg\"")
  expect_error(show(square_flow(), format = c("text", "mermaid")), "`format` must be")
  expect_error(show(square_flow(), format = 1), "You supplied a number")
  expect_error(show(list(name = "x"), format = "mermaid"), "Expected a flow made by `metaflow\\(\\)`")
})

test_that("show() on an S4 object is methods::show(), which it masks", {
  expect_output(show(methods::getClass("numeric")), "Class \"numeric\"", fixed = TRUE)
})

test_that("show() on anything but a flow is methods::show(), unchanged", {
  expect_identical(utils::capture.output(show(1:3)), utils::capture.output(methods::show(1:3)))
  expect_identical(utils::capture.output(show(object = mtcars[1:2, 1:3])),
                   utils::capture.output(methods::show(mtcars[1:2, 1:3])))
  expect_error(show(list(name = "x"), format = "text"), "Expected a flow made by `metaflow\\(\\)`")
})
