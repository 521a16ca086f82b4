# A modelling flow: one lm() fit per formula in a foreach, and a join that keeps the best.
library(metaflow)

start <- function(self) self$formulas <- c("mpg ~ wt", "mpg ~ wt + hp", "mpg ~ wt + qsec + am")
fit <- function(self) {
  self$formula <- self$input                  # this task's item of the foreach
  self$model <- lm(as.formula(self$formula), data = mtcars)
  self$r_squared <- summary(self$model)$adj.r.squared
}
pick <- function(self, inputs) {              # a join step: one input per fit task
  r_squared <- unlist(gather_inputs(inputs, "r_squared"))
  self$best <- gather_inputs(inputs, "model")[[which.max(r_squared)]]
}
end <- function(self) print(paste("best model:", deparse(formula(self$best))))

metaflow("ModelFlow") %>%
  step(step = "start", r_function = start, next_step = "fit", foreach = "formulas") %>%
  step(step = "fit", r_function = fit, next_step = "pick") %>%
  step(step = "pick", r_function = pick, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
