# A branch: two steps run in parallel from start, and a join merges what they agree on.
library(metaflow)

start <- function(self) {
  self$shared <- "same in both branches"
  self$x <- 1
}
a <- function(self) self$x <- self$x + 10
b <- function(self) self$x <- self$x + 20
join <- function(self, inputs) {
  self$xs <- c(a = inputs$a$x, b = inputs$b$x)
  merge_artifacts(self, inputs, exclude = list("x"))
}
end <- function(self) print(paste("sum is", sum(self$xs), "and shared is", self$shared))

metaflow("BranchFlow") %>%
  step(step = "start", r_function = start, next_step = c("a", "b")) %>%
  step(step = "a", r_function = a, next_step = "join") %>%
  step(step = "b", r_function = b, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
