"""AWS Step Functions: the pure compiler (graph to ASL), foreach constructs and quotas,
the schedule, the deployer, and following executions."""
