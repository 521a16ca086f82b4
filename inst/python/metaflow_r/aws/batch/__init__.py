"""AWS Batch: job definitions, the task a job runs, and a local run's attempts as jobs."""
