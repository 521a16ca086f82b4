# A nested foreach: one task per (letter, number) pair, joined twice.
library(metaflow)

start <- function(self) self$letters <- c("a", "b", "c")
per_letter <- function(self) self$numbers <- 1:2
per_number <- function(self) {
  stack <- self$foreach_stack()
  self$label <- paste0(stack[[1]]$value, self$input)
  self$position <- c(stack[[1]]$index, self$index)
}
join_numbers <- function(self, inputs) self$labels <- unlist(gather_inputs(inputs, "label"))
join_letters <- function(self, inputs) self$labels <- unlist(gather_inputs(inputs, "labels"))
end <- function(self) print(paste(self$labels, collapse = " "))

metaflow("ForeachFlow") %>%
  step(step = "start", r_function = start, next_step = "per_letter", foreach = "letters") %>%
  step(step = "per_letter", r_function = per_letter, next_step = "per_number", foreach = "numbers") %>%
  step(step = "per_number", r_function = per_number, next_step = "join_numbers") %>%
  step(step = "join_numbers", r_function = join_numbers, next_step = "join_letters", join = TRUE) %>%
  step(step = "join_letters", r_function = join_letters, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
