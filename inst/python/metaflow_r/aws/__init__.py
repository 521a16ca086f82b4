"""Everything that talks to AWS: one session and one error translation for every call, the code
package, AWS Batch (job definitions, the job's task, a local run's jobs) and Step Functions
(compiler, quotas, deployer, executions)."""
