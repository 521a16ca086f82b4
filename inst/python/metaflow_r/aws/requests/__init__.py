"""What AWS documents it refuses, checked before a request is sent: the deployer's own checks, and the strict
half of the emulator.

moto accepts nearly anything, so each request the backend sends to AWS is checked here against the rules the
AWS API references and user guides state for it, each rule citing its page: ``batch`` (RegisterJobDefinition,
SubmitJob), ``schedules`` (EventBridge PutRule), ``states`` and ``integrations`` (CreateStateMachine,
UpdateStateMachine, StartExecution). The checks are pure: they read a request exactly as boto3 takes it and
raise AwsRuleError naming the rule broken and the fix. The deploy plan (step_functions/plan.py) runs them on
everything a deployment would send before its first call; the emulator (emulator/strict.py) on every matching
request it receives; ``check_request`` (requests/check.py) is the table both use.
"""
