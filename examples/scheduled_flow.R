library(metaflow)
start <- function(self){
print(Sys.time())
}
end <- function(self){
print("Scheduled successfully")
}
metaflow("ScheduledFlow",
decorator("schedule", hourly=TRUE)) %>%
step(step="start",
r_function=start,
next_step="end") %>%
step(step="end",
r_function=end) %>%
run()
